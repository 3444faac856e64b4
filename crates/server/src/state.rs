use std::sync::Arc;

use usher_directory::Directory;
use usher_idp::Idp;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The token service (and through it the directory).
    pub idp: Idp,
    /// The resource manager.
    pub arm: usher_arm::Arm,
    /// Validated bearer tokens.
    pub token_cache: Arc<crate::routes::TokenCache>,
    /// Prometheus text renderer.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The directory.
    pub fn dir(&self) -> &Directory {
        self.idp.directory()
    }
}
