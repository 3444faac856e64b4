//! The device authorization grant (RFC 8628) with its verification page at `/devicelogin`.

use serde::{Deserialize, Serialize};
use usher_proto::oauth::{DeviceCodeResponse, TokenRequest, TokenResponse};
use usher_store::Record;

use super::{Attempt, required};
use crate::client_auth::ClientCredentials;
use crate::scopes::ScopeRequest;
use crate::tokens::UserSignIn;
use crate::{Idp, IdpError, IdpResult, kinds};

/// The device authorization response.
pub type DeviceAuthorization = DeviceCodeResponse;

/// Lifetime of device and user codes.
const DEVICE_LIFETIME_SECS: i64 = 900;
/// Polling interval.
const INTERVAL_SECS: i64 = 5;
/// Letters of user codes: no vowels (no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A stored device code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredDevice {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    /// `pending`, `approved` or `declined`.
    pub status: String,
    pub user_id: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: i64,
}

/// Normalises a typed user code: upper case, letters only.
pub fn normalize_user_code(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Idp {
    /// Starts a device flow for a public client.
    pub async fn device_authorization(
        &self,
        tenant: &str,
        client_id: &str,
        scope: &str,
    ) -> IdpResult<DeviceAuthorization> {
        self.resolve_tenant(tenant)?;
        if client_id.is_empty() {
            return Err(IdpError::missing("client_id"));
        }
        let client = self.client(client_id).await?;
        if !client.is_public() {
            return Err(IdpError::new(
                "invalid_client",
                7000218,
                "The device code flow is allowed only for public clients.",
            ));
        }
        ScopeRequest::parse(scope)?;
        let rng = self.directory().rng();
        let device_code = usher_crypto::secret::generate(rng.as_ref());
        let user_code: String = (0..8)
            .map(|_| {
                let i = usize::try_from(rng.range(0, (USER_CODE_ALPHABET.len() - 1) as u64)).unwrap_or(0);
                char::from(USER_CODE_ALPHABET.get(i).copied().unwrap_or(b'B'))
            })
            .collect();
        let now = self.now();
        let stored = StoredDevice {
            client_id: client.app_id.clone(),
            client_name: client.display_name.clone(),
            scope: if scope.trim().is_empty() {
                "openid profile offline_access".into()
            } else {
                scope.to_owned()
            },
            status: "pending".into(),
            user_id: None,
            amr: vec![],
            auth_time: 0,
        };
        let rec = Record::from_value(
            kinds::DEVICE_CODE,
            usher_crypto::secret::digest(&device_code),
            &stored,
        )?
        .with_key(user_code.clone())
        .with_expiry(now + DEVICE_LIFETIME_SECS);
        self.directory().store().insert(rec).await?;
        let display = format!("{}-{}", &user_code[..4], &user_code[4..]);
        let uri = format!("{}/devicelogin", self.public_url());
        Ok(DeviceCodeResponse {
            message: format!(
                "To sign in, use a web browser to open the page {uri} and enter the code {display} to authenticate."
            ),
            user_code: display,
            device_code,
            verification_uri: uri,
            expires_in: DEVICE_LIFETIME_SECS,
            interval: INTERVAL_SECS,
        })
    }

    /// The pending device request a typed user code names: (record id, client display name).
    pub async fn find_device_request(&self, user_code: &str) -> IdpResult<Option<(String, String)>> {
        let code = normalize_user_code(user_code);
        let rec = self
            .directory()
            .store()
            .get_by_key(kinds::DEVICE_CODE, &code, self.now())
            .await?;
        match rec {
            Some(r) => {
                let d: StoredDevice = r.decode()?;
                Ok((d.status == "pending").then_some((r.id, d.client_name)))
            }
            None => Ok(None),
        }
    }

    /// Marks a device request approved by a signed-in user.
    pub(crate) async fn approve_device(
        &self,
        record_id: &str,
        user_id: &str,
        amr: &[String],
    ) -> IdpResult<()> {
        let store = self.directory().store();
        let now = self.now();
        let mut rec = store
            .get(kinds::DEVICE_CODE, record_id, now)
            .await?
            .ok_or_else(|| {
                IdpError::new(
                    "expired_token",
                    70019,
                    "The device code has expired; start the sign-in again.",
                )
            })?;
        let mut d: StoredDevice = rec.decode()?;
        if d.status != "pending" {
            return Err(IdpError::new(
                "invalid_grant",
                70000,
                "This code has been used already.",
            ));
        }
        d.status = "approved".into();
        d.user_id = Some(user_id.to_owned());
        d.amr = amr.to_vec();
        d.auth_time = now;
        rec.data = serde_json::to_value(&d).map_err(|_| IdpError::server_error())?;
        store.update(rec).await?;
        Ok(())
    }

    pub(super) async fn device_code_grant(
        &self,
        req: &TokenRequest,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
        meta: &crate::RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let (client, method) = self.authenticated_client(creds, attempt).await?;
        let code = required(&req.device_code, "device_code")?;
        let id = usher_crypto::secret::digest(code);
        let store = self.directory().store();
        let expired = || {
            IdpError::new(
                "expired_token",
                70019,
                "Verification code expired; start the sign-in again.",
            )
        };
        let rec = store
            .get(kinds::DEVICE_CODE, &id, self.now())
            .await?
            .ok_or_else(expired)?;
        let d: StoredDevice = rec.decode()?;
        if d.client_id != client.app_id {
            return Err(IdpError::new(
                "invalid_grant",
                70000,
                "The device code was issued to a different client.",
            ));
        }
        match d.status.as_str() {
            "pending" => {
                return Err(IdpError::new(
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                ));
            }
            "declined" => {
                return Err(IdpError::new(
                    "authorization_declined",
                    70000,
                    "The user declined the sign-in.",
                ));
            }
            _ => {}
        }
        // One-shot: whoever takes the approved code gets the tokens.
        let taken = store
            .take(kinds::DEVICE_CODE, &id, self.now())
            .await?
            .ok_or_else(expired)?;
        let d: StoredDevice = taken.decode()?;
        let user_id = d.user_id.clone().ok_or_else(IdpError::server_error)?;
        attempt.user_id.clone_from(&user_id);
        attempt.methods = d.amr.clone();
        let user = self
            .directory()
            .get_user(&user_id)
            .await
            .map_err(|_| IdpError::bad_credentials())?;
        attempt.upn.clone_from(&user.user_principal_name);
        if !user.account_enabled {
            return Err(IdpError::disabled());
        }
        let scopes = ScopeRequest::parse(&d.scope)?;
        let signin = UserSignIn {
            user,
            amr: d.amr.clone(),
            auth_time: d.auth_time,
            nonce: None,
        };
        let ctx = crate::conditional::SignInContext::new(
            &meta.ip,
            &meta.user_agent,
            usher_authz::conditional::ClientApp::MobileAppsAndDesktopClients,
        );
        let admitted = self.admit(&signin, &scopes, &ctx, attempt).await?;
        let (resp, resource) = self
            .user_tokens(&signin, &client, admitted, &d.scope, method.acr(), None)
            .await?;
        attempt.resource = resource.audience(self).to_owned();
        Ok(resp)
    }
}
