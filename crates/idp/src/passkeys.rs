//! Passkeys (WebAuthn, SPEC T6 and C1's phishing-resistant strength) through `webauthn-rs`:
//! registration and sign-in ceremonies, user verification required. The relying party is the
//! server's public host; a server published under an IP address offers no passkeys (WebAuthn
//! needs a domain).
//!
//! Ceremony state lives in the sign-in transaction on the server, never with the browser.

use std::sync::Arc;

use serde_json::Value;
use usher_directory::model::{PasskeyMethod, User};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

use crate::{Idp, IdpError, IdpResult};

/// The `amr` of a passkey sign-in: a FIDO credential with user verification is two factors.
pub const PASSKEY_AMR: [&str; 2] = ["fido", "mfa"];

/// The relying party, when the public URL allows one.
#[derive(Clone)]
pub struct PasskeyRp(Option<Arc<Webauthn>>);

impl std::fmt::Debug for PasskeyRp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PasskeyRp(on)"
        } else {
            "PasskeyRp(off)"
        })
    }
}

impl PasskeyRp {
    /// The relying party for `public_url` (its host is the RP id), or off for an IP address.
    pub fn for_url(public_url: &str) -> Self {
        let built = Url::parse(public_url).ok().and_then(|url| {
            let host = url.domain()?.to_owned();
            WebauthnBuilder::new(&host, &url)
                .ok()?
                .rp_name("usher")
                .build()
                .ok()
        });
        Self(built.map(Arc::new))
    }

    /// Whether passkeys are offered.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }
}

fn unavailable() -> IdpError {
    IdpError::new(
        "invalid_request",
        900144,
        "Passkeys need the server to be published under a domain name (its public URL is an IP address).",
    )
}

fn bad(detail: impl std::fmt::Display) -> IdpError {
    IdpError::new(
        "invalid_request",
        900144,
        format!("The passkey was not accepted: {detail}."),
    )
}

fn stored(p: &PasskeyMethod) -> Option<Passkey> {
    serde_json::from_value(p.credential.clone()).ok()
}

fn to_json<T: serde::Serialize>(v: &T) -> IdpResult<String> {
    serde_json::to_string(v).map_err(|_| IdpError::server_error())
}

/// Reads a flag of the stored credential (counter and backup state at registration).
fn cred_field(v: &Value, key: &str) -> Option<Value> {
    v.get("cred").and_then(|c| c.get(key)).cloned()
}

impl Idp {
    fn rp(&self) -> IdpResult<&Webauthn> {
        self.passkey_rp.0.as_deref().ok_or_else(unavailable)
    }

    /// Whether passkeys are offered on this server.
    pub fn passkeys_enabled(&self) -> bool {
        self.passkey_rp.enabled()
    }

    /// Starts registering a passkey for `user`: the browser's options (JSON) and the state.
    pub fn start_passkey_registration(&self, user: &User) -> IdpResult<(String, String)> {
        let uid = Uuid::parse_str(&user.id).map_err(|_| IdpError::server_error())?;
        let exclude: Vec<_> = user
            .passkeys
            .iter()
            .filter_map(stored)
            .map(|p| p.cred_id().clone())
            .collect();
        let (options, state): (CreationChallengeResponse, PasskeyRegistration) = self
            .rp()?
            .start_passkey_registration(uid, &user.user_principal_name, &user.display_name, Some(exclude))
            .map_err(bad)?;
        Ok((to_json(&options)?, to_json(&state)?))
    }

    /// Finishes a registration: verifies the browser's answer against the state and stores the
    /// passkey under `name`.
    pub async fn finish_passkey_registration(
        &self,
        user: &User,
        response: &str,
        state: &str,
        name: &str,
    ) -> IdpResult<PasskeyMethod> {
        let reg: RegisterPublicKeyCredential = serde_json::from_str(response).map_err(bad)?;
        let state: PasskeyRegistration = serde_json::from_str(state).map_err(|_| IdpError::server_error())?;
        let passkey = self
            .rp()?
            .finish_passkey_registration(&reg, &state)
            .map_err(bad)?;
        let credential = serde_json::to_value(&passkey).map_err(|_| IdpError::server_error())?;
        let name = name.trim();
        let method = PasskeyMethod {
            id: self.directory().new_id(),
            credential_id: usher_crypto::b64url(passkey.cred_id()),
            display_name: if name.is_empty() {
                "Passkey".to_owned()
            } else {
                name.chars().take(64).collect()
            },
            created_at: self.now(),
            last_used_at: None,
            sign_count: cred_field(&credential, "counter")
                .and_then(|v| v.as_u64())
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            backup_eligible: cred_field(&credential, "backup_eligible")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            backup_state: cred_field(&credential, "backup_state")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            credential,
        };
        self.directory()
            .add_passkey(&user.id, method.clone())
            .await
            .map_err(|e| match e {
                usher_directory::DirectoryError::Invalid(m)
                | usher_directory::DirectoryError::AlreadyExists(m) => bad(m),
                other => IdpError::from(other),
            })?;
        Ok(method)
    }

    /// Starts a passkey sign-in for `user`; `None` when the user has no passkey.
    pub fn start_passkey_authentication(&self, user: &User) -> IdpResult<Option<(String, String)>> {
        let keys: Vec<Passkey> = user.passkeys.iter().filter_map(stored).collect();
        if keys.is_empty() {
            return Ok(None);
        }
        let (options, state): (RequestChallengeResponse, PasskeyAuthentication) =
            self.rp()?.start_passkey_authentication(&keys).map_err(bad)?;
        Ok(Some((to_json(&options)?, to_json(&state)?)))
    }

    /// Finishes a passkey sign-in: the signature, user verification, the counter (a counter
    /// that went backwards is refused: a cloned authenticator) and the backup state.
    pub async fn finish_passkey_authentication(
        &self,
        user: &User,
        response: &str,
        state: &str,
    ) -> IdpResult<()> {
        let cred: PublicKeyCredential = serde_json::from_str(response).map_err(bad)?;
        let state: PasskeyAuthentication =
            serde_json::from_str(state).map_err(|_| IdpError::server_error())?;
        let result = self
            .rp()?
            .finish_passkey_authentication(&cred, &state)
            .map_err(bad)?;
        if !result.user_verified() {
            return Err(bad("the authenticator did not verify the user"));
        }
        let cred_id = usher_crypto::b64url(result.cred_id());
        let Some(method) = user.passkeys.iter().find(|p| p.credential_id == cred_id) else {
            return Err(bad("it is not registered for this account"));
        };
        let counter = result.counter();
        if counter != 0 && counter <= method.sign_count {
            tracing::warn!(user = %user.user_principal_name, "passkey counter went backwards: possible clone");
            return Err(bad(
                "its signature counter went backwards (a cloned authenticator?)",
            ));
        }
        let mut updated = None;
        if let Some(mut pk) = stored(method)
            && pk.update_credential(&result) == Some(true)
        {
            updated = serde_json::to_value(&pk).ok();
        }
        self.directory()
            .record_passkey_use(&user.id, &cred_id, counter, result.backup_state(), updated)
            .await?;
        Ok(())
    }
}
