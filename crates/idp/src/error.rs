use usher_directory::DirectoryError;

/// A refusal of the token service: an OAuth error, an AADSTS code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("AADSTS{code}: {description}")]
pub struct IdpError {
    /// OAuth error (`invalid_grant`, `invalid_client`, ...).
    pub error: &'static str,
    /// AADSTS code.
    pub code: u32,
    /// What happened, for people.
    pub description: String,
    /// Entra's sub-error, where it has one.
    pub suberror: Option<&'static str>,
}

impl IdpError {
    /// A new error.
    pub fn new(error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            error,
            code,
            description: description.into(),
            suberror: None,
        }
    }

    /// HTTP status: 401 for client authentication failures, 500/503 for server faults, else 400.
    pub fn status(&self) -> u16 {
        match self.error {
            "invalid_client" => 401,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        }
    }

    /// 50126.
    pub fn bad_credentials() -> Self {
        Self::new(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    }
    /// 50053.
    pub fn locked() -> Self {
        Self::new(
            "invalid_grant",
            50053,
            "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password.",
        )
    }
    /// 50055.
    pub fn password_expired(change_url: &str) -> Self {
        Self {
            suberror: Some("user_password_expired"),
            ..Self::new(
                "invalid_grant",
                50055,
                format!(
                    "The password is expired or temporary and must be changed. Change it at {change_url} and sign in again."
                ),
            )
        }
    }
    /// 50057.
    pub fn disabled() -> Self {
        Self::new("invalid_grant", 50057, "The user account is disabled.")
    }
    /// 50076.
    pub fn mfa_required() -> Self {
        Self {
            suberror: Some("basic_action"),
            ..Self::new(
                "invalid_grant",
                50076,
                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource. Sign in interactively (device code or browser).",
            )
        }
    }
    /// 700016.
    pub fn unknown_client(client_id: &str) -> Self {
        Self::new(
            "unauthorized_client",
            700016,
            format!("Application with identifier '{client_id}' was not found in the directory."),
        )
    }
    /// 90002.
    pub fn tenant_not_found(name: &str) -> Self {
        Self::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        )
    }
    /// 900144 / 9002313: a required parameter is missing or malformed.
    pub fn missing(param: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }
    /// 70011.
    pub fn invalid_scope(detail: impl Into<String>) -> Self {
        Self::new("invalid_scope", 70011, detail)
    }
    /// 500011.
    pub fn resource_not_found(resource: &str) -> Self {
        Self::new(
            "invalid_resource",
            500011,
            format!(
                "The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
            ),
        )
    }
    /// 7000215.
    pub fn bad_client_secret() -> Self {
        Self::new(
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        )
    }
    /// 7000218.
    pub fn client_credentials_required() -> Self {
        Self::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    }
    /// 70008.
    pub fn refresh_expired() -> Self {
        Self::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity or is not valid. Send a new interactive authorization request for this user and resource.",
        )
    }
    /// 50173.
    pub fn grant_revoked() -> Self {
        Self::new(
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. A refresh token was used twice, so every token of its sign-in has been revoked.",
        )
    }
    /// 500 with no internals.
    pub fn server_error() -> Self {
        Self::new(
            "server_error",
            90033,
            "A transient error has occurred. Please try again.",
        )
    }
}

impl From<DirectoryError> for IdpError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::TenantNotFound(t) => IdpError::tenant_not_found(&t),
            DirectoryError::Contended => IdpError::new(
                "temporarily_unavailable",
                90033,
                "The service is busy. Please try again.",
            ),
            other => {
                tracing::error!(error = %other, "directory failure in the token service");
                IdpError::server_error()
            }
        }
    }
}

impl From<usher_store::StoreError> for IdpError {
    fn from(e: usher_store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure in the token service");
        IdpError::server_error()
    }
}
