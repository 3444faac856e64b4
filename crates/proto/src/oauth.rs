//! OAuth 2.0 / OpenID Connect wire types in Entra's v2 shapes.

use serde::{Deserialize, Serialize};

/// Grant type of the device flow (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Client assertion type of `private_key_jwt` (RFC 7523).
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A form-encoded request to the token endpoint (all grants).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TokenRequest {
    /// The grant.
    #[serde(default)]
    pub grant_type: String,
    /// Client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client secret (`client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    #[serde(default)]
    pub client_assertion_type: Option<String>,
    /// The client assertion JWT.
    #[serde(default)]
    pub client_assertion: Option<String>,
    /// Space-separated scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Password grant: user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Password grant: password.
    #[serde(default)]
    pub password: Option<String>,
    /// Authorization code grant: the code.
    #[serde(default)]
    pub code: Option<String>,
    /// Authorization code grant: the redirect URI of the request.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    #[serde(default)]
    pub code_verifier: Option<String>,
    /// Refresh grant: the refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Device grant: the device code.
    #[serde(default)]
    pub device_code: Option<String>,
    /// `ssh-cert` asks for an OpenSSH certificate instead of a bearer token (SPEC T7).
    #[serde(default)]
    pub token_type: Option<String>,
    /// For `ssh-cert`: the JWK of the public key to certify (JSON, or base64url of it).
    #[serde(default)]
    pub req_cnf: Option<String>,
    /// For `ssh-cert`: the device id of the one machine the certificate is for (usher's
    /// machine binding; Azure's certificates are not bound).
    #[serde(default)]
    pub device_id: Option<String>,
}

/// A successful token response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct TokenResponse {
    /// `Bearer`.
    pub token_type: String,
    /// Granted scopes.
    pub scope: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Same as `expires_in` (Entra compatibility).
    pub ext_expires_in: i64,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when `offline_access` was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The id token, when `openid` was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// base64url of `{"uid": oid, "utid": tid}` (MSAL's account key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<String>,
}

/// The device authorization response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct DeviceCodeResponse {
    /// Code the user types.
    pub user_code: String,
    /// Code the client polls with.
    pub device_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// Seconds until the codes expire.
    pub expires_in: i64,
    /// Polling interval in seconds.
    pub interval: i64,
    /// Instructions for the user.
    pub message: String,
}

/// An error of the token service in Entra's shape (SPEC T4).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct EntraError {
    /// OAuth error (`invalid_grant`, ...).
    pub error: String,
    /// `AADSTSnnnnn: ...`, then trace and correlation ids and timestamp.
    pub error_description: String,
    /// The AADSTS codes.
    pub error_codes: Vec<u32>,
    /// `YYYY-MM-DD hh:mm:ssZ`.
    pub timestamp: String,
    /// Trace id.
    pub trace_id: String,
    /// Correlation id.
    pub correlation_id: String,
    /// Link to the error code's documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
    /// Sub-error (`basic_action`, `user_password_expired`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
}
