/// A refusal in Azure's ARM shape: `{"error": {"code", "message"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("({code}) {message}")]
pub struct ArmError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code.
    pub code: &'static str,
    /// What happened.
    pub message: String,
}

impl ArmError {
    /// A new error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// 403 AuthorizationFailed.
    pub fn authorization_failed(caller: &str, action: &str, scope: &str) -> Self {
        Self::new(
            403,
            "AuthorizationFailed",
            format!(
                "The client '{caller}' with object id '{caller}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        )
    }
    /// 404 for a missing resource group.
    pub fn resource_group_not_found(name: &str) -> Self {
        Self::new(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{name}' could not be found."),
        )
    }
    /// 404 for a missing subscription.
    pub fn subscription_not_found(id: &str) -> Self {
        Self::new(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{id}' could not be found."),
        )
    }
    /// 500.
    pub fn internal() -> Self {
        Self::new(
            500,
            "InternalServerError",
            "The server failed; the error was logged.",
        )
    }
}

impl From<usher_directory::DirectoryError> for ArmError {
    fn from(e: usher_directory::DirectoryError) -> Self {
        tracing::error!(error = %e, "directory failure in the resource manager");
        ArmError::internal()
    }
}

impl From<usher_store::StoreError> for ArmError {
    fn from(e: usher_store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure in the resource manager");
        ArmError::internal()
    }
}
