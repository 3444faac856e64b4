//! The client-credentials grant: app-only tokens for confidential clients (secret or key).

use usher_proto::oauth::{TokenRequest, TokenResponse};

use super::Attempt;
use crate::client_auth::{ClientAuthMethod, ClientCredentials};
use crate::scopes::ScopeRequest;
use crate::{Idp, IdpError, IdpResult};

impl Idp {
    pub(super) async fn client_credentials_grant(
        &self,
        req: &TokenRequest,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
    ) -> IdpResult<TokenResponse> {
        let (app, method) = self.authenticated_client(creds, attempt).await?;
        if method == ClientAuthMethod::None {
            return Err(IdpError::client_credentials_required());
        }
        attempt.methods.push(
            if method == ClientAuthMethod::Key {
                "clientAssertion"
            } else {
                "clientSecret"
            }
            .into(),
        );
        let scope = req
            .scope
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| IdpError::missing("scope"))?;
        let scopes = ScopeRequest::parse(scope)?;
        if !scopes.oidc.is_empty()
            || scopes.resource_scopes.iter().any(|s| s != ".default")
            || scopes.resource.is_none()
        {
            return Err(IdpError::new(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            ));
        }
        let sp = self
            .directory()
            .find_service_principal_cached(&app.app_id)
            .await?
            .ok_or_else(|| {
                IdpError::new(
                    "invalid_client",
                    7000229,
                    format!(
                        "The client application {} is missing service principal in the tenant {}.",
                        app.app_id,
                        self.tenant().id
                    ),
                )
            })?;
        if !sp.account_enabled {
            return Err(IdpError::new(
                "unauthorized_client",
                7000112,
                "Application is disabled.",
            ));
        }
        let resource = self.resolve_resource(&scopes).await?;
        attempt.resource = resource.audience(self).to_owned();
        self.app_token(&sp, &resource, method.acr())
    }
}
