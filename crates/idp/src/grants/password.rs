//! The password grant (ROPC), only for public clients where the tenant allows public-client
//! flows: the first-party CLI. Answered with 50076 whenever the user needs MFA.

use usher_directory::PasswordCheck;
use usher_proto::oauth::{TokenRequest, TokenResponse};

use super::{Attempt, required};
use crate::client_auth::{ClientAuthMethod, ClientCredentials};
use crate::scopes::ScopeRequest;
use crate::tokens::UserSignIn;
use crate::{Idp, IdpError, IdpResult};

impl Idp {
    pub(super) async fn password_grant(
        &self,
        tenant: &str,
        req: &TokenRequest,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
        meta: &crate::RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let (client, method) = self.authenticated_client(creds, attempt).await?;
        // Read from the store: an administrator may change the setting at any time.
        let allowed = self.directory().tenant().await?.allow_public_client_flows;
        if method != ClientAuthMethod::None || !client.is_public() || !allowed {
            return Err(IdpError::new(
                "invalid_client",
                7000218,
                "The password grant is allowed only for public clients with public client flows enabled (the first-party CLI).",
            ));
        }
        let username = required(&req.username, "username")?;
        let password = req
            .password
            .as_deref()
            .ok_or_else(|| IdpError::missing("password"))?;
        attempt.upn = username.to_owned();
        if matches!(tenant.to_ascii_lowercase().as_str(), "common" | "organizations") {
            let domain = username.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
            self.resolve_tenant(domain)
                .map_err(|_| IdpError::bad_credentials())?;
        }
        let scope_string = req
            .scope
            .clone()
            .unwrap_or_else(|| "openid profile offline_access".into());
        let scopes = ScopeRequest::parse(&scope_string)?;
        attempt.methods.push("password".into());
        let user = match self.directory().check_password(username, password).await? {
            PasswordCheck::Valid(u) => u,
            PasswordCheck::Invalid => return Err(IdpError::bad_credentials()),
            PasswordCheck::Locked { .. } => return Err(IdpError::locked()),
            PasswordCheck::Disabled(u) => {
                attempt.user_id.clone_from(&u.id);
                return Err(IdpError::disabled());
            }
            PasswordCheck::MustChange(u) => {
                attempt.user_id.clone_from(&u.id);
                return Err(IdpError::password_expired(&format!(
                    "{}/changepassword",
                    self.public_url()
                )));
            }
        };
        attempt.user_id.clone_from(&user.id);
        attempt.upn.clone_from(&user.user_principal_name);
        if user.mfa_state.requires_mfa() {
            return Err(IdpError::mfa_required());
        }
        let now = self.now();
        let signin = UserSignIn {
            user: *user,
            amr: vec!["pwd".into()],
            auth_time: now,
            nonce: None,
        };
        let ctx = crate::conditional::SignInContext::new(
            &meta.ip,
            &meta.user_agent,
            usher_authz::conditional::ClientApp::MobileAppsAndDesktopClients,
        );
        let admitted = self.admit(&signin, &scopes, &ctx, attempt).await?;
        let (resp, resource) = self
            .user_tokens(&signin, &client, admitted, &scope_string, method.acr(), None)
            .await?;
        attempt.resource = resource.audience(self).to_owned();
        Ok(resp)
    }
}
