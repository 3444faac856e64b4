//! SSH certificates (SPEC T7): the tenant's user and host certificate authorities, and the
//! `token_type=ssh-cert` answer of the token endpoint.
//!
//! A certificate is issued on the refresh-token grant (the CLI's cached sign-in, SPEC L1) for
//! the VM Sign-In resource, for one machine: before the refresh token is spent, the sign-in must
//! satisfy per-user MFA and the [`SshGate`] (the resource manager) must admit the user to that
//! machine (login role, first-connection consent). A refusal leaves the cached sign-in intact.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use usher_crypto::ssh::{CertSpec, CertType, SshCaKey, SshPublicKey};
use usher_directory::Directory;
use usher_directory::model::User;
use usher_store::Record;

use crate::{IdpError, IdpResult};

/// Record kind of the two authorities (ids `user`, `host`).
pub const SSH_CA: &str = "ssh_ca";
/// The VM Sign-In application (SPEC L1): the resource of SSH certificates.
pub use usher_core::well_known::VM_SIGN_IN_APP_ID as VM_SIGN_IN_APP;
/// Azure's Linux VM Sign-In application id, accepted as the same resource.
pub const LINUX_VM_SIGN_IN_APP: &str = "ce6ff14a-7fdc-4685-bbe0-f6afdfcfa8e0";
/// Longest user certificate (SPEC T7: at most an hour).
pub const USER_CERT_SECS: i64 = 3600;
/// Host certificates last 30 days; agents renew them well before.
pub const HOST_CERT_SECS: i64 = 30 * 86_400;
pub use usher_proto::local::DEVICE_EXTENSION;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCa {
    sealed_seed: String,
}

/// The tenant's SSH certificate authorities.
#[derive(Clone)]
pub struct SshAuthorities {
    user: Arc<SshCaKey>,
    host: Arc<SshCaKey>,
}

impl std::fmt::Debug for SshAuthorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshAuthorities")
            .field("user", &self.user.public_key().fingerprint())
            .field("host", &self.host.public_key().fingerprint())
            .finish()
    }
}

async fn load_or_create(dir: &Directory, id: &str) -> IdpResult<SshCaKey> {
    let aad = format!("ssh-ca:{id}");
    let now = dir.clock().now_unix();
    if let Some(rec) = dir.store().get(SSH_CA, id, now).await? {
        let stored: StoredCa = rec.decode()?;
        let seed = dir
            .sealing()
            .open(&stored.sealed_seed, &aad)
            .map_err(|_| IdpError::server_error())?;
        return SshCaKey::from_seed(&seed).map_err(|_| IdpError::server_error());
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    dir.rng().fill(seed.as_mut());
    let sealed_seed = dir
        .sealing()
        .seal(seed.as_ref(), &aad, dir.rng().as_ref())
        .map_err(|_| IdpError::server_error())?;
    let rec = Record::from_value(SSH_CA, id, &StoredCa { sealed_seed })?;
    match dir.store().insert(rec).await {
        Ok(_) => {
            tracing::info!(id, "created an SSH certificate authority");
            SshCaKey::from_seed(seed.as_ref()).map_err(|_| IdpError::server_error())
        }
        // Another replica created it at the same moment: use theirs.
        Err(usher_store::StoreError::Conflict { .. }) => Box::pin(load_or_create(dir, id)).await,
        Err(e) => Err(e.into()),
    }
}

impl SshAuthorities {
    /// Loads the authorities, creating them on first use.
    pub async fn load(dir: &Directory) -> IdpResult<Self> {
        Ok(Self {
            user: Arc::new(load_or_create(dir, "user").await?),
            host: Arc::new(load_or_create(dir, "host").await?),
        })
    }

    /// The user CA's public key (what machines put in `TrustedUserCAKeys`).
    pub fn user_ca(&self) -> SshPublicKey {
        self.user.public_key()
    }

    /// The host CA's public key (what clients trust with `@cert-authority`).
    pub fn host_ca(&self) -> SshPublicKey {
        self.host.public_key()
    }

    /// A host certificate for `hostname` (and its short name), valid 30 days.
    pub fn host_certificate(
        &self,
        dir: &Directory,
        host_key: &SshPublicKey,
        hostname: &str,
        device_id: &str,
    ) -> IdpResult<(String, i64)> {
        let now = dir.clock().now_unix();
        let mut principals = vec![hostname.to_ascii_lowercase()];
        if let Some((short, _)) = hostname.split_once('.') {
            principals.push(short.to_ascii_lowercase());
        }
        let spec = CertSpec {
            cert_type: CertType::Host,
            serial: serial(dir),
            key_id: format!("host:{device_id}"),
            principals,
            valid_after: u64::try_from(now - 300).unwrap_or(0),
            valid_before: u64::try_from(now + HOST_CERT_SECS).unwrap_or(0),
            critical_options: vec![],
            extensions: vec![],
        };
        let cert = sign(&self.host, host_key, &spec, dir)?;
        Ok((cert, now + HOST_CERT_SECS))
    }

    /// A user certificate for `user` on the device `device_id`, valid until `until`.
    pub fn user_certificate(
        &self,
        dir: &Directory,
        key: &SshPublicKey,
        user: &User,
        device_id: &str,
        sign_in_id: &str,
        until: i64,
    ) -> IdpResult<String> {
        let now = dir.clock().now_unix();
        let spec = CertSpec {
            cert_type: CertType::User,
            serial: serial(dir),
            key_id: sign_in_id.to_owned(),
            principals: vec![user.user_principal_name.to_ascii_lowercase()],
            // A minute back for clock skew between the client, the server and the machine.
            valid_after: u64::try_from(now - 60).unwrap_or(0),
            valid_before: u64::try_from(until.min(now + USER_CERT_SECS)).unwrap_or(0),
            critical_options: vec![],
            extensions: vec![
                (DEVICE_EXTENSION.to_owned(), device_id.to_owned()),
                ("permit-agent-forwarding".to_owned(), String::new()),
                ("permit-port-forwarding".to_owned(), String::new()),
                ("permit-pty".to_owned(), String::new()),
                ("permit-user-rc".to_owned(), String::new()),
            ],
        };
        sign(&self.user, key, &spec, dir)
    }
}

fn serial(dir: &Directory) -> u64 {
    let mut b = [0u8; 8];
    dir.rng().fill(&mut b);
    u64::from_be_bytes(b)
}

fn sign(ca: &SshCaKey, key: &SshPublicKey, spec: &CertSpec, dir: &Directory) -> IdpResult<String> {
    let mut nonce = [0u8; 32];
    dir.rng().fill(&mut nonce);
    usher_crypto::ssh::sign_certificate(ca, key, spec, &nonce).map_err(|_| IdpError::server_error())
}

/// The client's public key from `req_cnf`: a JWK as JSON, or base64url of that JSON.
pub fn key_from_req_cnf(req_cnf: &str) -> IdpResult<SshPublicKey> {
    let bad = |why: String| {
        IdpError::new(
            "invalid_request",
            900144,
            format!("req_cnf must be the JWK of the SSH public key to certify: {why}"),
        )
    };
    let text = req_cnf.trim();
    let json: serde_json::Value = if text.starts_with('{') {
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?
    } else {
        let bytes = usher_crypto::b64url_decode(text).map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?
    };
    SshPublicKey::from_jwk(&json).map_err(|e| bad(e.to_string()))
}

/// What the resource manager says about a user and a machine.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The machine's device name (what the certificate's user connects to).
    pub hostname: String,
}

/// The resource manager's side of certificate issuance: is this user admitted to this machine?
#[async_trait::async_trait]
pub trait SshGate: Send + Sync {
    /// Ok when `user` may log in to the device `device_id` and has allowed it (SPEC L3); else the
    /// refusal to return (L6 wording for a missing role).
    async fn admit(&self, user: &User, device_id: &str) -> IdpResult<Admission>;
}

/// An SSH certificate request of a token request.
#[derive(Debug, Clone)]
pub struct SshRequest {
    /// The key to certify.
    pub key: SshPublicKey,
    /// The target machine's device id.
    pub device_id: String,
}

/// AADSTS50076-style refusal when per-user MFA was not satisfied by the cached sign-in.
pub fn mfa_needed() -> IdpError {
    IdpError::new(
        "invalid_grant",
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to get an SSH certificate. Sign in again with your second method (usher login).",
    )
}

/// The refusal when a machine has not been allowed yet (SPEC L3): the client asks the user.
pub fn consent_required(hostname: &str) -> IdpError {
    IdpError::new(
        "consent_required",
        65001,
        format!(
            "You have not yet allowed signing in to '{hostname}'. Allow it (usher ssh asks; --yes answers) and try again."
        ),
    )
}
