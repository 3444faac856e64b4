//! usher's token service (SPEC T1–T6): OAuth 2.0 / OpenID Connect with Entra's shapes. One module
//! per grant; the interactive sign-in (authorize and device code) is a step machine in `login`.
//! No HTTP here: the server's edge turns requests into calls and [`IdpError`]s into responses.
#![warn(missing_docs)]

pub mod client_auth;
pub mod conditional;
mod error;
pub mod grants;
pub mod keys;
pub mod login;
pub mod passkeys;
pub mod relay;
pub mod scopes;
pub mod ssh;
pub mod tokens;

use std::sync::Arc;

pub use error::IdpError;
use usher_directory::Directory;
use usher_directory::model::Tenant;

/// Result of token-service operations.
pub type IdpResult<T> = Result<T, IdpError>;

/// Record kinds of the token service.
pub mod kinds {
    /// Signing keys.
    pub const SIGNING_KEY: &str = "signing_key";
    /// Refresh tokens (id: digest of the token).
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// Refresh-token families.
    pub const REFRESH_FAMILY: &str = "refresh_family";
    /// Authorization codes (id: digest).
    pub const AUTH_CODE: &str = "auth_code";
    /// Device codes (id: digest; key: user code).
    pub const DEVICE_CODE: &str = "device_code";
    /// Interactive sign-in transactions.
    pub const LOGIN: &str = "login_txn";
    /// Client-assertion ids already used (replay protection).
    pub const ASSERTION_JTI: &str = "assertion_jti";
}

/// Request context the edge passes in.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// Client IP address.
    pub ip: String,
    /// Correlation id of the request.
    pub correlation_id: String,
    /// The client's User-Agent (its platform, for Conditional Access).
    pub user_agent: String,
}

/// The token service of one tenant.
#[derive(Debug, Clone)]
pub struct Idp {
    dir: Directory,
    tenant: Arc<Tenant>,
    public_url: Arc<str>,
    issuer: Arc<str>,
    keys: keys::KeyRing,
    ssh: ssh::SshAuthorities,
    ssh_gate: GateSlot,
    passkey_rp: passkeys::PasskeyRp,
}

/// Where the resource manager plugs in its [`ssh::SshGate`] (set once at start-up).
#[derive(Clone, Default)]
struct GateSlot(Arc<std::sync::OnceLock<Arc<dyn ssh::SshGate>>>);

impl std::fmt::Debug for GateSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "GateSlot(set)"
        } else {
            "GateSlot(unset)"
        })
    }
}

impl Idp {
    /// A token service for the directory's tenant, publishing under `public_url`.
    pub async fn new(dir: Directory, public_url: &str) -> IdpResult<Self> {
        let tenant = dir.tenant().await.map_err(IdpError::from)?;
        let keys = keys::KeyRing::load(&dir).await?;
        let ssh = ssh::SshAuthorities::load(&dir).await?;
        let public_url: Arc<str> = Arc::from(public_url.trim_end_matches('/'));
        let passkey_rp = passkeys::PasskeyRp::for_url(&public_url);
        let issuer: Arc<str> = Arc::from(format!("{public_url}/{}/v2.0", tenant.id));
        Ok(Self {
            dir,
            tenant: Arc::new(tenant),
            public_url,
            issuer,
            keys,
            ssh,
            ssh_gate: GateSlot::default(),
            passkey_rp,
        })
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The public URL (no trailing slash): the audience of the management and Graph APIs.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The issuer of every token: `{public}/{tenant id}/v2.0`.
    pub fn issuer(&self) -> String {
        self.issuer.to_string()
    }

    /// The issuer, borrowed.
    pub fn issuer_str(&self) -> &str {
        &self.issuer
    }

    /// The signing keys.
    pub fn keys(&self) -> &keys::KeyRing {
        &self.keys
    }

    /// The SSH certificate authorities.
    pub fn ssh(&self) -> &ssh::SshAuthorities {
        &self.ssh
    }

    /// Plugs in the resource manager's admission check for SSH certificates (once; later calls
    /// are ignored). Without it no certificate is issued.
    pub fn set_ssh_gate(&self, gate: Arc<dyn ssh::SshGate>) {
        let _ = self.ssh_gate.0.set(gate);
    }

    pub(crate) fn ssh_gate(&self) -> Option<Arc<dyn ssh::SshGate>> {
        self.ssh_gate.0.get().cloned()
    }

    /// Whether `name` (a path segment) designates this tenant; `common` and `organizations` do.
    pub fn resolve_tenant(&self, name: &str) -> IdpResult<()> {
        if self.tenant.answers_to(name)
            || name.eq_ignore_ascii_case("common")
            || name.eq_ignore_ascii_case("organizations")
        {
            Ok(())
        } else {
            Err(IdpError::tenant_not_found(name))
        }
    }

    fn now(&self) -> i64 {
        self.dir.clock().now_unix()
    }
}
