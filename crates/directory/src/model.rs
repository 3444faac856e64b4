//! The directory's stored objects. Wire shapes (Graph) are produced by the server's edge.

use serde::{Deserialize, Serialize};
use usher_core::{MfaState, PasswordPolicy, UserType};

/// The tenant (SPEC D1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Tenant id (GUID).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Verified domains; the first is the default.
    pub domains: Vec<String>,
    /// Whether public clients may use the password grant (Entra's "allow public client flows").
    pub allow_public_client_flows: bool,
    /// Password policy.
    pub password_policy: PasswordPolicy,
    /// The default subscription created at first start.
    pub default_subscription_id: String,
    /// Whether every first-start step finished (a start interrupted earlier resumes them).
    #[serde(default = "yes")]
    pub bootstrap_complete: bool,
    /// Creation time.
    pub created_at: i64,
    /// SSH sessions idle this long are disconnected (SPEC L7); `None`: off. A machine's own
    /// setting overrides it.
    #[serde(default)]
    pub session_idle_timeout_secs: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Tenant {
    /// Whether `name` is this tenant's id or one of its domains (case-insensitive).
    pub fn answers_to(&self, name: &str) -> bool {
        self.id.eq_ignore_ascii_case(name) || self.domains.iter().any(|d| d.eq_ignore_ascii_case(name))
    }
}

/// A registered passkey (SPEC T6, C1's phishing-resistant strength).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyMethod {
    /// Method id (Graph's `fido2AuthenticationMethod.id`).
    pub id: String,
    /// The credential id (base64url), as the authenticator names it.
    pub credential_id: String,
    /// The user's name for it.
    pub display_name: String,
    /// When it was registered.
    pub created_at: i64,
    /// When it was last used to sign in.
    #[serde(default)]
    pub last_used_at: Option<i64>,
    /// The authenticator's signature counter as last seen (0: the authenticator keeps none).
    #[serde(default)]
    pub sign_count: u32,
    /// Whether the credential may be backed up (synced passkey).
    #[serde(default)]
    pub backup_eligible: bool,
    /// Whether it is backed up now.
    #[serde(default)]
    pub backup_state: bool,
    /// The relying-party library's stored credential (public key and algorithm).
    pub credential: serde_json::Value,
}

/// A registered TOTP authenticator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TotpMethod {
    /// The secret, sealed at rest.
    pub sealed_secret: String,
    /// Registration time.
    pub registered_at: i64,
    /// The last accepted time step (a code is accepted once).
    pub last_step: u64,
}

/// A user (SPEC D2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Object id.
    pub id: String,
    /// `user@domain`.
    pub user_principal_name: String,
    /// Display name.
    pub display_name: String,
    /// Mail nickname.
    pub mail_nickname: String,
    /// Whether the account may sign in.
    pub account_enabled: bool,
    /// Member or guest.
    pub user_type: UserType,
    /// argon2id PHC string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// A temporary password: must be changed at the next sign-in.
    pub force_change_password_next_sign_in: bool,
    /// When the password was last set.
    pub password_set_at: i64,
    /// Per-user MFA state.
    pub mfa_state: MfaState,
    /// Registered TOTP authenticator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpMethod>,
    /// Registered passkeys (WebAuthn credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passkeys: Vec<PasskeyMethod>,
    /// Directory role template ids held directly.
    #[serde(default)]
    pub directory_roles: Vec<String>,
    /// Refresh tokens of sign-ins before this time are refused (set by password resets and
    /// changes and by disabling the account).
    #[serde(default)]
    pub refresh_tokens_valid_from: i64,
    /// Creation time.
    pub created_at: i64,
}

/// A group (SPEC D3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Mail nickname.
    pub mail_nickname: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Security group.
    pub security_enabled: bool,
    /// Direct members' object ids (users, groups, service principals).
    #[serde(default)]
    pub members: Vec<String>,
    /// Directory role template ids granted to members.
    #[serde(default)]
    pub directory_roles: Vec<String>,
    /// Creation time.
    pub created_at: i64,
}

/// A client secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordCredential {
    /// Key id.
    pub key_id: String,
    /// Display name.
    pub display_name: String,
    /// SHA-256 of the secret.
    pub secret_digest: String,
    /// First three characters, shown to admins.
    pub hint: String,
    /// Start time.
    pub start: i64,
    /// End time.
    pub end: i64,
}

/// A public key for `private_key_jwt`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    /// Key id (also the JWK's `kid` when it has none).
    pub key_id: String,
    /// Display name.
    pub display_name: String,
    /// The public key.
    pub jwk: usher_crypto::jwt::Jwk,
}

/// An application registration (SPEC D4).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Object id.
    pub id: String,
    /// Application (client) id.
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// Identifier URIs (resources may be named by these).
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    /// Web redirect URIs (confidential client).
    #[serde(default)]
    pub web_redirect_uris: Vec<String>,
    /// Public-client redirect URIs.
    #[serde(default)]
    pub public_client_redirect_uris: Vec<String>,
    /// A public client (no secret; device code and, where allowed, password grant).
    #[serde(default)]
    pub is_fallback_public_client: bool,
    /// Client secrets.
    #[serde(default)]
    pub password_credentials: Vec<PasswordCredential>,
    /// Public keys.
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
    /// One of the built-in applications.
    #[serde(default)]
    pub builtin: bool,
    /// Creation time.
    pub created_at: i64,
}

impl Application {
    /// Whether this is a public client.
    pub fn is_public(&self) -> bool {
        self.is_fallback_public_client
    }

    /// Whether `uri` is registered, by exact string comparison.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.web_redirect_uris
            .iter()
            .chain(&self.public_client_redirect_uris)
            .any(|u| u == uri)
    }
}

/// A service principal: an application's presence in the tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    /// Object id.
    pub id: String,
    /// The application's id.
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// `Application` or `ManagedIdentity`.
    pub service_principal_type: String,
    /// Names the principal answers to (appId, identifier URIs).
    #[serde(default)]
    pub service_principal_names: Vec<String>,
    /// For a managed identity: `isExplicit=False` and the resource id it belongs to.
    #[serde(default)]
    pub alternative_names: Vec<String>,
    /// Whether it may sign in.
    pub account_enabled: bool,
    /// Creation time.
    pub created_at: i64,
}

/// Any directory object.
#[derive(Debug, Clone)]
pub enum DirectoryObject {
    /// A user.
    User(User),
    /// A group.
    Group(Group),
    /// A service principal.
    ServicePrincipal(ServicePrincipal),
}

impl DirectoryObject {
    /// The object id.
    pub fn id(&self) -> &str {
        match self {
            DirectoryObject::User(u) => &u.id,
            DirectoryObject::Group(g) => &g.id,
            DirectoryObject::ServicePrincipal(s) => &s.id,
        }
    }
}
