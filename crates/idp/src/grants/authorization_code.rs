//! The authorization-code grant with PKCE (S256 only) and exact redirect-URI match. A code is
//! redeemed once; a second redemption revokes the tokens the first one produced.

use serde::{Deserialize, Serialize};
use usher_proto::oauth::{TokenRequest, TokenResponse};
use usher_store::StoreError;

use super::{Attempt, required};
use crate::client_auth::ClientCredentials;
use crate::scopes::ScopeRequest;
use crate::tokens::UserSignIn;
use crate::{Idp, IdpError, IdpResult, kinds};

/// A stored authorization code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub user_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: i64,
    pub family_id: String,
    pub used: bool,
}

/// Lifetime of an authorization code.
pub(crate) const CODE_LIFETIME_SECS: i64 = 300;

/// Whether a PKCE verifier is well formed (RFC 7636 §4.1).
fn verifier_is_well_formed(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    usher_crypto::b64url(&usher_crypto::secret::sha256(verifier.as_bytes()))
}

fn pkce_failed(detail: &str) -> IdpError {
    IdpError::new(
        "invalid_grant",
        501481,
        format!(
            "The code_verifier does not match the code_challenge supplied in the authorization request: {detail}."
        ),
    )
}

impl Idp {
    pub(super) async fn authorization_code_grant(
        &self,
        req: &TokenRequest,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
        meta: &crate::RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let (client, method) = self.authenticated_client(creds, attempt).await?;
        let code = required(&req.code, "code")?;
        let redirect_uri = req
            .redirect_uri
            .as_deref()
            .ok_or_else(|| IdpError::missing("redirect_uri"))?;
        let store = self.directory().store();
        let rec = store
            .get(kinds::AUTH_CODE, &usher_crypto::secret::digest(code), self.now())
            .await?
            .ok_or_else(|| {
                IdpError::new(
                    "invalid_grant",
                    70008,
                    "The provided authorization code has expired or is not valid.",
                )
            })?;
        let mut stored: StoredCode = rec.decode()?;
        attempt.user_id.clone_from(&stored.user_id);
        attempt.methods = stored.amr.clone();
        if stored.used {
            self.revoke_family(&stored.family_id).await?;
            return Err(IdpError::new(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed; the tokens it produced have been revoked.",
            ));
        }
        if stored.client_id != client.app_id {
            return Err(IdpError::new(
                "invalid_grant",
                70000,
                "The authorization code was issued to a different client.",
            ));
        }
        if stored.redirect_uri != redirect_uri {
            return Err(IdpError::new(
                "invalid_grant",
                50011,
                format!(
                    "The redirect URI '{redirect_uri}' does not match the one of the authorization request."
                ),
            ));
        }
        let verifier = req
            .code_verifier
            .as_deref()
            .ok_or_else(|| pkce_failed("the code_verifier parameter is missing"))?;
        if !verifier_is_well_formed(verifier) {
            return Err(pkce_failed(
                "the code_verifier is not 43-128 characters of [A-Za-z0-9-._~]",
            ));
        }
        if !usher_crypto::secret::ct_eq(&s256(verifier), &stored.code_challenge) {
            return Err(pkce_failed("the S256 hash of the code_verifier differs"));
        }
        // Only a request that passes every check spends the code.
        stored.used = true;
        let mut used = rec.clone();
        used.data = serde_json::to_value(&stored).map_err(|_| IdpError::server_error())?;
        match store.update(used).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                self.revoke_family(&stored.family_id).await?;
                return Err(IdpError::new(
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed.",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let user = self
            .directory()
            .get_user(&stored.user_id)
            .await
            .map_err(|_| IdpError::bad_credentials())?;
        attempt.upn.clone_from(&user.user_principal_name);
        if !user.account_enabled {
            return Err(IdpError::disabled());
        }
        let scopes = ScopeRequest::parse(&stored.scope)?;
        let signin = UserSignIn {
            user,
            amr: stored.amr.clone(),
            auth_time: stored.auth_time,
            nonce: stored.nonce.clone(),
        };
        let ctx = crate::conditional::SignInContext::new(
            &meta.ip,
            &meta.user_agent,
            usher_authz::conditional::ClientApp::Browser,
        );
        let admitted = self.admit(&signin, &scopes, &ctx, attempt).await?;
        let (resp, resource) = self
            .user_tokens(
                &signin,
                &client,
                admitted,
                &stored.scope,
                method.acr(),
                Some(stored.family_id.clone()),
            )
            .await?;
        attempt.resource = resource.audience(self).to_owned();
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn s256_and_verifier_format() {
        // Expected value computed independently with Python: base64url(sha256(verifier)) unpadded.
        assert_eq!(
            super::s256("dBjftJeZ4CVP-mJ0kzsUmDTGnYD2Zq-IyWy1WVhzUh8"),
            "S_iRQohY0oHGj-BZEA8yOOUYfv7Bpal32QqYbeMRMeM"
        );
        assert!(super::verifier_is_well_formed(
            "dBjftJeZ4CVP-mJ0kzsUmDTGnYD2Zq-IyWy1WVhzUh8"
        ));
        assert!(!super::verifier_is_well_formed("short"));
        assert!(!super::verifier_is_well_formed(&"a b".repeat(20)));
    }
}
