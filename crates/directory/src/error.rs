use usher_core::PolicyViolation;
use usher_crypto::CryptoError;
use usher_store::StoreError;

/// Errors of the directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The object does not exist.
    #[error("{what} `{id}` does not exist")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// The id or name given.
        id: String,
    },
    /// An object with that name exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A new password breaks the tenant's password policy.
    #[error("{0}")]
    PasswordPolicy(#[from] PolicyViolation),
    /// Concurrent changes kept this one from applying; retrying is safe.
    #[error("the object changed concurrently; retry")]
    Contended,
    /// The tenant was not found.
    #[error("tenant `{0}` not found")]
    TenantNotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// Cryptography failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => DirectoryError::NotFound {
                what: kind_name(&kind),
                id,
            },
            other => DirectoryError::Store(other),
        }
    }
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        crate::kinds::USER => "user",
        crate::kinds::GROUP => "group",
        crate::kinds::APPLICATION => "application",
        crate::kinds::SERVICE_PRINCIPAL => "service principal",
        crate::kinds::TENANT => "tenant",
        _ => "object",
    }
}
