//! Microsoft Graph wire types used across crates.

use serde::{Deserialize, Serialize};

/// Graph's error envelope: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct GraphErrorBody {
    /// The error.
    pub error: GraphError,
}

/// A Graph error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct GraphError {
    /// `Request_ResourceNotFound`, `Authorization_RequestDenied`, ...
    pub code: String,
    /// What happened.
    pub message: String,
}
