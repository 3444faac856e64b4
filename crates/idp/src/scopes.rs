//! Scope parsing: OIDC scopes, and the one resource the other scopes name.

use std::collections::BTreeSet;

use usher_directory::model::Application;

use crate::{Idp, IdpError, IdpResult};

/// The OpenID Connect scopes.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// What a scope parameter asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeRequest {
    /// OIDC scopes requested.
    pub oidc: BTreeSet<String>,
    /// The resource named, if any (without the scope suffix).
    pub resource: Option<String>,
    /// Scope names for the resource (`.default`, `user_impersonation`, ...).
    pub resource_scopes: Vec<String>,
}

impl ScopeRequest {
    /// Parses a space-separated scope string; scopes of more than one resource are refused.
    pub fn parse(scope: &str) -> IdpResult<Self> {
        let mut out = Self::default();
        for s in scope.split_whitespace() {
            if OIDC_SCOPES.contains(&s) {
                out.oidc.insert(s.to_owned());
                continue;
            }
            let (resource, name) = match s.rsplit_once('/') {
                Some((r, n)) if !r.is_empty() && !n.is_empty() => {
                    (r.trim_end_matches('/').to_owned(), n.to_owned())
                }
                Some((r, _)) if !r.is_empty() => (r.trim_end_matches('/').to_owned(), ".default".to_owned()),
                // A bare scope names a Graph permission: Graph is served at the public URL.
                _ => (String::new(), s.to_owned()),
            };
            if let Some(existing) = &out.resource
                && !existing.eq_ignore_ascii_case(&resource)
            {
                return Err(IdpError::invalid_scope(format!(
                    "The provided value for the input parameter 'scope' isn't valid: scopes for more than one resource ('{existing}', '{resource}') were requested."
                )));
            }
            out.resource = Some(resource);
            out.resource_scopes.push(name);
        }
        Ok(out)
    }

    /// Whether `offline_access` was asked for.
    pub fn offline(&self) -> bool {
        self.oidc.contains("offline_access")
    }

    /// Whether `openid` was asked for.
    pub fn openid(&self) -> bool {
        self.oidc.contains("openid")
    }
}

/// The resource a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The management and Graph APIs: audience = the public URL.
    Api,
    /// An application: audience = the name requested (appId or identifier URI).
    App {
        /// The application's appId.
        app_id: String,
        /// The audience put in tokens.
        audience: String,
        /// Display name, for the sign-in log.
        display_name: String,
    },
}

impl Resource {
    /// The `aud` claim.
    pub fn audience<'a>(&'a self, idp: &'a Idp) -> &'a str {
        match self {
            Resource::Api => idp.public_url(),
            Resource::App { audience, .. } => audience,
        }
    }
}

impl Idp {
    /// Resolves the resource of a scope request (the API when only OIDC scopes are present).
    pub async fn resolve_resource(&self, req: &ScopeRequest) -> IdpResult<Resource> {
        let Some(name) = req.resource.as_deref() else {
            return Ok(Resource::Api);
        };
        if name.is_empty() || name.trim_end_matches('/').eq_ignore_ascii_case(self.public_url()) {
            return Ok(Resource::Api);
        }
        let app: Option<Application> = self.directory().resolve_resource(name).await?;
        match app {
            Some(a) => {
                if self
                    .directory()
                    .find_service_principal_cached(&a.app_id)
                    .await?
                    .is_none()
                {
                    return Err(IdpError::resource_not_found(name));
                }
                Ok(Resource::App {
                    app_id: a.app_id.clone(),
                    audience: name.to_owned(),
                    display_name: a.display_name,
                })
            }
            None => Err(IdpError::resource_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oidc_and_one_resource() {
        let r =
            ScopeRequest::parse("openid profile offline_access https://h:8443/.default").unwrap_or_default();
        assert!(r.openid() && r.offline());
        assert_eq!(r.resource.as_deref(), Some("https://h:8443"));
        assert_eq!(r.resource_scopes, vec![".default"]);
        let r =
            ScopeRequest::parse("urn:ms-drs:enterpriseregistration.windows.net/.default").unwrap_or_default();
        assert_eq!(
            r.resource.as_deref(),
            Some("urn:ms-drs:enterpriseregistration.windows.net")
        );
        let r = ScopeRequest::parse("https://management.core.windows.net//.default").unwrap_or_default();
        assert_eq!(r.resource.as_deref(), Some("https://management.core.windows.net"));
        let r = ScopeRequest::parse("openid profile").unwrap_or_default();
        assert_eq!(r.resource, None);
        assert!(ScopeRequest::parse("a/.default b/.default").is_err());
    }
}
