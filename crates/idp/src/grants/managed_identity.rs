//! Tokens for managed identities: a joined machine's agent (authenticated by its machine key,
//! SPEC X1) asks for a token of its VM's system-assigned identity, for one resource (an appId or
//! an identifier URI), as IMDS hands out (SPEC X2).

use usher_directory::model::DirectoryObject;
use usher_directory::{DirectoryError, SignInEvent};
use usher_proto::oauth::TokenResponse;

use crate::scopes::ScopeRequest;
use crate::{Idp, IdpError, IdpResult, RequestMeta};

impl Idp {
    /// A token of the managed identity `principal_id` for `resource`; logged as a sign-in.
    pub async fn managed_identity_token(
        &self,
        principal_id: &str,
        resource: &str,
        meta: &RequestMeta,
    ) -> IdpResult<TokenResponse> {
        let mut app = (String::new(), String::new());
        let mut audience = String::new();
        let result = self
            .managed_identity_token_inner(principal_id, resource, &mut app, &mut audience)
            .await;
        let (code, reason) = match &result {
            Ok(_) => (0, String::new()),
            Err(e) => (e.code, e.description.clone()),
        };
        self.directory()
            .log_sign_in(SignInEvent {
                user_principal_name: String::new(),
                user_id: principal_id.to_owned(),
                app_id: app.0,
                app_display_name: app.1,
                resource_id: audience,
                ip_address: meta.ip.clone(),
                client_app_used: "managedIdentity".into(),
                authentication_methods: vec!["machineKey".into()],
                error_code: code,
                failure_reason: reason,
                conditional_access_status: String::new(),
                correlation_id: meta.correlation_id.clone(),
                ..Default::default()
            })
            .await;
        result
    }

    async fn managed_identity_token_inner(
        &self,
        principal_id: &str,
        resource: &str,
        app: &mut (String, String),
        audience: &mut String,
    ) -> IdpResult<TokenResponse> {
        let identity_not_found = || IdpError::new("invalid_request", 0, "Identity not found");
        let sp = match self.directory().get_object(principal_id).await {
            Ok(DirectoryObject::ServicePrincipal(sp)) if sp.service_principal_type == "ManagedIdentity" => sp,
            Ok(_) | Err(DirectoryError::NotFound { .. }) => return Err(identity_not_found()),
            Err(e) => return Err(e.into()),
        };
        *app = (sp.app_id.clone(), sp.display_name.clone());
        if !sp.account_enabled {
            return Err(IdpError::new(
                "unauthorized_client",
                7000112,
                "The managed identity is disabled.",
            ));
        }
        let resource = resource.trim();
        if resource.is_empty() || resource.chars().any(char::is_whitespace) {
            return Err(IdpError::missing("resource"));
        }
        let scopes = ScopeRequest::parse(&format!("{}/.default", resource.trim_end_matches('/')))?;
        let target = self.resolve_resource(&scopes).await?;
        target.audience(self).clone_into(audience);
        self.app_token(&sp, &target, "2")
    }
}
