//! The refresh-token grant: every use rotates the token; presenting a rotated token again revokes
//! its whole family (every token of that sign-in), as RFC 9700 asks for public clients.

use usher_directory::DirectoryError;
use usher_proto::oauth::{TokenRequest, TokenResponse};
use usher_store::StoreError;

use super::{Attempt, required};
use crate::client_auth::ClientCredentials;
use crate::scopes::ScopeRequest;
use crate::tokens::{Family, StoredRefresh, UserSignIn};
use crate::{Idp, IdpError, IdpResult, kinds};

impl Idp {
    pub(crate) async fn revoke_family(&self, family_id: &str) -> IdpResult<()> {
        let store = self.directory().store();
        for _ in 0..20 {
            let Some(mut rec) = store.get(kinds::REFRESH_FAMILY, family_id, self.now()).await? else {
                return Ok(());
            };
            let mut fam: Family = rec.decode()?;
            if fam.revoked {
                return Ok(());
            }
            fam.revoked = true;
            rec.data = serde_json::to_value(&fam).map_err(|_| IdpError::server_error())?;
            match store.update(rec).await {
                Ok(_) => {
                    tracing::warn!(
                        family_id,
                        user_id = fam.user_id,
                        "refresh token reused: family revoked"
                    );
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IdpError::server_error())
    }

    pub(crate) async fn family_is_live(&self, family_id: &str) -> IdpResult<bool> {
        let rec = self
            .directory()
            .store()
            .get(kinds::REFRESH_FAMILY, family_id, self.now())
            .await?;
        Ok(match rec {
            Some(r) => !r.decode::<Family>()?.revoked,
            None => false,
        })
    }

    pub(super) async fn refresh_grant(
        &self,
        req: &TokenRequest,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
        ssh: Option<&crate::ssh::SshRequest>,
        meta: &crate::RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let (client, method) = self.authenticated_client(creds, attempt).await?;
        attempt.methods.push("refreshToken".into());
        let token = required(&req.refresh_token, "refresh_token")?;
        let store = self.directory().store();
        let id = usher_crypto::secret::digest(token);
        let rec = store
            .get(kinds::REFRESH_TOKEN, &id, self.now())
            .await?
            .ok_or_else(IdpError::refresh_expired)?;
        let mut stored: StoredRefresh = rec.decode()?;
        attempt.user_id.clone_from(&stored.user_id);
        if stored.client_id != client.app_id {
            return Err(IdpError::new(
                "invalid_grant",
                70000,
                "The refresh token was issued to a different client.",
            ));
        }
        if stored.used {
            self.revoke_family(&stored.family_id).await?;
            return Err(IdpError::grant_revoked());
        }
        if !self.family_is_live(&stored.family_id).await? {
            return Err(IdpError::grant_revoked());
        }
        let user = match self.directory().get_user(&stored.user_id).await {
            Ok(u) => u,
            Err(DirectoryError::NotFound { .. }) => return Err(IdpError::refresh_expired()),
            Err(e) => return Err(e.into()),
        };
        attempt.upn.clone_from(&user.user_principal_name);
        if !user.account_enabled {
            return Err(IdpError::disabled());
        }
        // A password reset or change since this sign-in revokes its refresh tokens.
        if stored.auth_time < user.refresh_tokens_valid_from {
            self.revoke_family(&stored.family_id).await?;
            return Err(IdpError::grant_revoked());
        }
        // An SSH certificate is refused before the refresh token is spent, so a refusal leaves
        // the cached sign-in usable.
        let admission = match ssh {
            Some(req) => Some(self.admit_ssh(&user, &stored, req).await?),
            None => None,
        };
        // Conditional Access, also before the refresh token is spent.
        let scope_string = req
            .scope
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| stored.scope.clone());
        let mut scopes = ScopeRequest::parse(&scope_string)?;
        // The new token stays in the family, so keep offline access.
        scopes.oidc.insert("offline_access".into());
        let client_app = if client.is_public() {
            usher_authz::conditional::ClientApp::MobileAppsAndDesktopClients
        } else {
            usher_authz::conditional::ClientApp::Browser
        };
        let ctx = crate::conditional::SignInContext {
            fresh: false,
            ..crate::conditional::SignInContext::new(&meta.ip, &meta.user_agent, client_app)
        };
        let signin = UserSignIn {
            user,
            amr: stored.amr.clone(),
            auth_time: stored.auth_time,
            nonce: None,
        };
        let admitted = self.admit(&signin, &scopes, &ctx, attempt).await?;
        stored.used = true;
        let mut used = rec.clone();
        used.data = serde_json::to_value(&stored).map_err(|_| IdpError::server_error())?;
        match store.update(used).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                // Someone else used it at the same moment: that is reuse too.
                self.revoke_family(&stored.family_id).await?;
                return Err(IdpError::grant_revoked());
            }
            Err(e) => return Err(e.into()),
        }
        let (mut resp, resource) = self
            .user_tokens(
                &signin,
                &client,
                admitted,
                &scope_string,
                method.acr(),
                Some(stored.family_id.clone()),
            )
            .await?;
        attempt.resource = resource.audience(self).to_owned();
        if let (Some(req), Some(_)) = (ssh, admission) {
            let now = self.now();
            let until = now + crate::ssh::USER_CERT_SECS;
            let line = self.ssh().user_certificate(
                self.directory(),
                &req.key,
                &signin.user,
                &req.device_id,
                &meta.correlation_id,
                until,
            )?;
            // Azure's shape: the certificate's base64 alone, typed ssh-cert.
            resp.access_token = line.split(' ').nth(1).unwrap_or_default().to_owned();
            resp.token_type = "ssh-cert".into();
            resp.expires_in = until - now;
            resp.ext_expires_in = until - now;
            resp.id_token = None;
            attempt.methods.push("sshCertificate".into());
        }
        Ok(resp)
    }

    /// Per-user MFA and the resource manager's admission, for an SSH certificate.
    async fn admit_ssh(
        &self,
        user: &usher_directory::model::User,
        stored: &StoredRefresh,
        req: &crate::ssh::SshRequest,
    ) -> IdpResult<crate::ssh::Admission> {
        if user.mfa_state.requires_mfa() && !stored.amr.iter().any(|m| m == "mfa") {
            return Err(crate::ssh::mfa_needed());
        }
        let gate = self.ssh_gate().ok_or_else(|| {
            IdpError::new(
                "invalid_request",
                900144,
                "SSH certificates are not available on this server.",
            )
        })?;
        gate.admit(user, &req.device_id).await
    }
}
