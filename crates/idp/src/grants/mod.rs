//! One module per grant of the token endpoint (SPEC T2).

mod authorization_code;
mod client_credentials;
mod device_code;
mod managed_identity;
mod password;
mod refresh;

pub use authorization_code::s256;
pub(crate) use authorization_code::{CODE_LIFETIME_SECS as CODE_LIFETIME, StoredCode as StoredCodeExport};
pub(crate) use device_code::StoredDevice;
pub use device_code::{DeviceAuthorization, normalize_user_code};

use usher_directory::SignInEvent;
use usher_proto::oauth::{DEVICE_CODE_GRANT, TokenRequest, TokenResponse};

use crate::client_auth::ClientCredentials;
use crate::{Idp, IdpError, IdpResult, RequestMeta};

/// A required, non-empty request parameter, or AADSTS900144 naming it.
pub(crate) fn required<'a>(value: &'a Option<String>, name: &str) -> IdpResult<&'a str> {
    value
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| IdpError::missing(name))
}

/// What the sign-in log records of an attempt.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    pub upn: String,
    pub user_id: String,
    pub app_id: String,
    pub app_name: String,
    pub resource: String,
    pub methods: Vec<String>,
    /// Conditional Access's evaluation, once made.
    pub ca: Option<crate::conditional::CaReport>,
}

impl Idp {
    /// The SSH certificate part of a token request, checked before anything is spent.
    fn ssh_request(&self, req: &TokenRequest) -> IdpResult<Option<crate::ssh::SshRequest>> {
        match req.token_type.as_deref() {
            None | Some("" | "bearer" | "Bearer") => return Ok(None),
            Some("ssh-cert") => {}
            Some(other) => {
                return Err(IdpError::new(
                    "invalid_request",
                    900144,
                    format!("token_type '{other}' is not supported; use ssh-cert or leave it out."),
                ));
            }
        }
        let scope = req.scope.as_deref().unwrap_or_default();
        let resource = crate::scopes::ScopeRequest::parse(scope)?
            .resource
            .unwrap_or_default();
        let app = resource.trim_end_matches('/').to_ascii_lowercase();
        if app != crate::ssh::VM_SIGN_IN_APP && app != crate::ssh::LINUX_VM_SIGN_IN_APP {
            return Err(IdpError::invalid_scope(format!(
                "SSH certificates are for the VM Sign-In resource: ask for scope {}/.default.",
                crate::ssh::VM_SIGN_IN_APP
            )));
        }
        let key = crate::ssh::key_from_req_cnf(required(&req.req_cnf, "req_cnf")?)?;
        let device_id = required(&req.device_id, "device_id")?.trim().to_ascii_lowercase();
        Ok(Some(crate::ssh::SshRequest { key, device_id }))
    }

    /// Authenticates the client of a grant and names it in the sign-in log.
    pub(crate) async fn authenticated_client(
        &self,
        creds: &ClientCredentials,
        attempt: &mut Attempt,
    ) -> IdpResult<(
        std::sync::Arc<usher_directory::model::Application>,
        crate::client_auth::ClientAuthMethod,
    )> {
        let (client, method) = self.authenticate_client(creds).await?;
        attempt.app_name.clone_from(&client.display_name);
        Ok((client, method))
    }

    /// Handles a token request. `basic` holds HTTP Basic client credentials, if any.
    pub async fn token(
        &self,
        tenant: &str,
        req: TokenRequest,
        basic: Option<(String, String)>,
        meta: &RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let mut attempt = Attempt {
            app_id: req.client_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        let grant = req.grant_type.clone();
        let result = self.dispatch(tenant, req, basic, meta, &mut attempt).await;
        if attempt.upn.is_empty()
            && !attempt.user_id.is_empty()
            && let Ok(u) = self.directory().get_user(&attempt.user_id).await
        {
            attempt.upn = u.user_principal_name;
        }
        let (code, reason) = match &result {
            Ok(_) => (0, String::new()),
            Err(e) => (e.code, e.description.clone()),
        };
        let mut event = SignInEvent {
            user_principal_name: attempt.upn,
            user_id: attempt.user_id,
            app_id: attempt.app_id,
            app_display_name: attempt.app_name,
            resource_id: attempt.resource,
            ip_address: meta.ip.clone(),
            client_app_used: grant,
            authentication_methods: attempt.methods,
            error_code: code,
            failure_reason: reason,
            conditional_access_status: String::new(),
            correlation_id: meta.correlation_id.clone(),
            ..Default::default()
        };
        if let Some(report) = &attempt.ca {
            report.log_into(&mut event);
            if result.is_ok()
                && let Err(e) = self.directory().note_network(&event.user_id, &meta.ip).await
            {
                tracing::warn!(error = %e, "could not record the sign-in's network");
            }
        }
        self.directory().log_sign_in(event).await;
        result
    }

    async fn dispatch(
        &self,
        tenant: &str,
        req: TokenRequest,
        basic: Option<(String, String)>,
        meta: &RequestMeta,
        attempt: &mut Attempt,
    ) -> IdpResult<TokenResponse> {
        self.resolve_tenant(tenant)?;
        let (basic_id, basic_secret) = basic.map_or((None, None), |(i, s)| (Some(i), Some(s)));
        if basic_id.is_some()
            && req
                .client_id
                .as_deref()
                .is_some_and(|c| Some(c) != basic_id.as_deref())
        {
            return Err(IdpError::new(
                "invalid_request",
                900144,
                "client_id in the body differs from the HTTP Basic client id.",
            ));
        }
        let creds = ClientCredentials {
            client_id: req.client_id.clone().or(basic_id),
            secret: req.client_secret.clone().or(basic_secret),
            assertion_type: req.client_assertion_type.clone(),
            assertion: req.client_assertion.clone(),
        };
        attempt.app_id = creds.client_id.clone().unwrap_or_default();
        if req.token_type.as_deref() == Some("ssh-cert") && req.grant_type != "refresh_token" {
            return Err(IdpError::new(
                "invalid_request",
                900144,
                "token_type=ssh-cert is issued on the refresh_token grant only: sign in first (usher login), then ask with the cached sign-in.",
            ));
        }
        match req.grant_type.as_str() {
            "password" => self.password_grant(tenant, &req, &creds, attempt, meta).await,
            "client_credentials" => self.client_credentials_grant(&req, &creds, attempt).await,
            "refresh_token" => {
                let ssh = self.ssh_request(&req)?;
                self.refresh_grant(&req, &creds, attempt, ssh.as_ref(), meta)
                    .await
            }
            "authorization_code" => self.authorization_code_grant(&req, &creds, attempt, meta).await,
            DEVICE_CODE_GRANT => self.device_code_grant(&req, &creds, attempt, meta).await,
            "" => Err(IdpError::missing("grant_type")),
            other => {
                let _ = meta;
                Err(IdpError::new(
                    "unsupported_grant_type",
                    70003,
                    format!("The app requested an unsupported grant type '{other}'."),
                ))
            }
        }
    }
}
