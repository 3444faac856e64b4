//! Applications and service principals (SPEC D4), including the built-ins recreated on demand.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use usher_core::well_known;
use usher_crypto::jwt::Jwk;
use usher_store::{Record, StoreError};

use crate::model::{Application, KeyCredential, PasswordCredential, ServicePrincipal};
use crate::{DirResult, Directory, DirectoryError, kinds};

/// How long an application stays cached for the token endpoint's hot path, in seconds.
const APP_CACHE_SECS: i64 = 5;

/// A built-in application: (appId, display name, identifier URIs, public client).
pub(crate) const BUILTINS: &[(&str, &str, &[&str], bool)] = &[
    (
        well_known::VM_SIGN_IN_APP_ID,
        "Azure Windows VM Sign-In",
        &[],
        false,
    ),
    (
        well_known::REMOTE_DESKTOP_APP_ID,
        "Microsoft Remote Desktop",
        &[],
        false,
    ),
    (well_known::CLI_APP_ID, "Microsoft Azure CLI", &[], true),
    (
        well_known::DEVICE_REGISTRATION_APP_ID,
        "Device Registration Service",
        &[well_known::DEVICE_REGISTRATION_URI],
        false,
    ),
];

/// An application to register.
#[derive(Debug, Clone, Default)]
pub struct NewApplication {
    /// Display name.
    pub display_name: String,
    /// Identifier URIs.
    pub identifier_uris: Vec<String>,
    /// Web redirect URIs.
    pub web_redirect_uris: Vec<String>,
    /// Public-client redirect URIs.
    pub public_client_redirect_uris: Vec<String>,
    /// Public client.
    pub is_fallback_public_client: bool,
}

/// A cached lookup result and when it was read.
type Cached<T> = (Option<T>, i64);

/// Short-lived caches of applications and service principals by appId for the token endpoint.
#[derive(Debug, Default, Clone)]
pub(crate) struct AppCache {
    apps: Arc<RwLock<HashMap<String, Cached<Arc<Application>>>>>,
    sps: Arc<RwLock<HashMap<String, Cached<Arc<ServicePrincipal>>>>>,
}

fn cache_get<T: Clone>(map: &RwLock<HashMap<String, Cached<T>>>, key: &str, now: i64) -> Option<Option<T>> {
    let map = map.read().ok()?;
    map.get(key)
        .filter(|(_, at)| now - at < APP_CACHE_SECS)
        .map(|(v, _)| v.clone())
}

fn cache_put<T>(map: &RwLock<HashMap<String, Cached<T>>>, key: &str, value: Option<T>, now: i64) {
    if let Ok(mut map) = map.write() {
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(key.to_owned(), (value, now));
    }
}

impl AppCache {
    fn forget(&self, app_id: &str) {
        if let Ok(mut map) = self.apps.write() {
            map.remove(app_id);
        }
        if let Ok(mut map) = self.sps.write() {
            map.remove(app_id);
        }
    }
}

fn valid_redirect_uri(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else { return false };
    if u.fragment().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => true,
        "http" => matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        // Native apps' private-use schemes (RFC 8252).
        s => s.contains('.') || s == "ms-appx-web",
    }
}

impl Directory {
    pub(crate) fn builtin_application(&self, app_id: &str) -> Option<Application> {
        BUILTINS
            .iter()
            .find(|b| b.0 == app_id)
            .map(|(id, name, uris, public)| Application {
                id: self.new_id(),
                app_id: (*id).to_owned(),
                display_name: (*name).to_owned(),
                identifier_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
                web_redirect_uris: vec![],
                public_client_redirect_uris: if *public {
                    vec!["http://localhost".into()]
                } else {
                    vec![]
                },
                is_fallback_public_client: *public,
                password_credentials: vec![],
                key_credentials: vec![],
                builtin: true,
                created_at: self.now(),
            })
    }

    /// Registers an application.
    pub async fn create_application(&self, new: NewApplication) -> DirResult<Application> {
        if new.display_name.trim().is_empty() {
            return Err(DirectoryError::Invalid("displayName must not be empty".into()));
        }
        for uri in new
            .web_redirect_uris
            .iter()
            .chain(&new.public_client_redirect_uris)
        {
            if !valid_redirect_uri(uri) {
                return Err(DirectoryError::Invalid(format!(
                    "redirect URI `{uri}` is not allowed: use https (http only for localhost), without a fragment"
                )));
            }
        }
        let app = Application {
            id: self.new_id(),
            app_id: self.new_id(),
            display_name: new.display_name.trim().to_owned(),
            identifier_uris: new.identifier_uris,
            web_redirect_uris: new.web_redirect_uris,
            public_client_redirect_uris: new.public_client_redirect_uris,
            is_fallback_public_client: new.is_fallback_public_client,
            password_credentials: vec![],
            key_credentials: vec![],
            builtin: false,
            created_at: self.now(),
        };
        self.insert_application(&app).await?;
        Ok(app)
    }

    async fn insert_application(&self, app: &Application) -> DirResult<()> {
        let rec = Record::from_value(kinds::APPLICATION, &app.id, app)?.with_key(app.app_id.clone());
        self.store.insert(rec).await.map_err(|e| match e {
            StoreError::Conflict { .. } => DirectoryError::AlreadyExists(format!(
                "an application with appId `{}` already exists",
                app.app_id
            )),
            other => other.into(),
        })?;
        self.apps_cache.forget(&app.app_id);
        Ok(())
    }

    /// An application by object id or appId.
    pub async fn get_application(&self, id_or_app_id: &str) -> DirResult<Application> {
        let id = id_or_app_id.to_lowercase();
        let now = self.now();
        let rec = match self.store.get_by_key(kinds::APPLICATION, &id, now).await? {
            Some(r) => Some(r),
            None => self.store.get(kinds::APPLICATION, &id, now).await?,
        };
        rec.map(|r| r.decode())
            .transpose()?
            .ok_or_else(|| DirectoryError::NotFound {
                what: "application",
                id: id_or_app_id.to_owned(),
            })
    }

    /// An application by appId, through a cache of a few seconds (the token endpoint's path).
    pub async fn application_by_app_id_cached(&self, app_id: &str) -> DirResult<Option<Arc<Application>>> {
        let now = self.now();
        if let Some(hit) = cache_get(&self.apps_cache.apps, app_id, now) {
            return Ok(hit);
        }
        let app = match self
            .store
            .get_by_key(kinds::APPLICATION, &app_id.to_lowercase(), now)
            .await?
        {
            Some(r) => Some(Arc::new(r.decode::<Application>()?)),
            None => None,
        };
        cache_put(&self.apps_cache.apps, app_id, app.clone(), now);
        Ok(app)
    }

    /// All applications.
    pub async fn list_applications(&self) -> DirResult<Vec<Application>> {
        self.list_all(kinds::APPLICATION).await
    }

    /// Deletes an application and its service principal.
    pub async fn delete_application(&self, id_or_app_id: &str) -> DirResult<Application> {
        let app = self.get_application(id_or_app_id).await?;
        if let Some(sp) = self.find_service_principal(&app.app_id).await? {
            self.remove_from_all_groups(&sp.id).await?;
            self.store.delete(kinds::SERVICE_PRINCIPAL, &sp.id, None).await?;
        }
        self.store.delete(kinds::APPLICATION, &app.id, None).await?;
        self.apps_cache.forget(&app.app_id);
        Ok(app)
    }

    /// Adds a client secret; returns the credential and the secret text (shown once).
    pub async fn add_password(
        &self,
        id_or_app_id: &str,
        display_name: &str,
        lifetime_days: i64,
    ) -> DirResult<(PasswordCredential, String)> {
        let app = self.get_application(id_or_app_id).await?;
        let secret = usher_crypto::secret::generate(self.rng.as_ref());
        let now = self.now();
        let cred = PasswordCredential {
            key_id: self.new_id(),
            display_name: display_name.to_owned(),
            secret_digest: usher_crypto::secret::digest(&secret),
            hint: secret.chars().take(3).collect(),
            start: now,
            end: now + lifetime_days.clamp(1, 730) * 86_400,
        };
        let c = cred.clone();
        self.modify::<Application, _>(kinds::APPLICATION, &app.id, move |a| {
            a.password_credentials.push(c.clone());
            Ok(None)
        })
        .await?;
        self.apps_cache.forget(&app.app_id);
        Ok((cred, secret))
    }

    /// Adds a public key for `private_key_jwt`.
    pub async fn add_key(
        &self,
        id_or_app_id: &str,
        display_name: &str,
        mut jwk: Jwk,
    ) -> DirResult<KeyCredential> {
        let app = self.get_application(id_or_app_id).await?;
        usher_crypto::jwt::KeySet::from_jwks(&[Jwk {
            kid: Some(jwk.kid.clone().unwrap_or_else(|| "k".into())),
            ..jwk.clone()
        }])
        .map_err(|e| DirectoryError::Invalid(format!("the key is not usable: {e}")))?;
        let key_id = self.new_id();
        if jwk.kid.is_none() {
            jwk.kid = Some(key_id.clone());
        }
        let cred = KeyCredential {
            key_id,
            display_name: display_name.to_owned(),
            jwk,
        };
        let c = cred.clone();
        self.modify::<Application, _>(kinds::APPLICATION, &app.id, move |a| {
            a.key_credentials.push(c.clone());
            Ok(None)
        })
        .await?;
        self.apps_cache.forget(&app.app_id);
        Ok(cred)
    }

    /// Creates the service principal of an application. A built-in application that was deleted
    /// is recreated (the seed's "Missing application" fix).
    pub async fn create_service_principal(&self, app_id: &str) -> DirResult<ServicePrincipal> {
        let app_id = app_id.trim().to_lowercase();
        let app = match self.get_application(&app_id).await {
            Ok(a) => a,
            Err(DirectoryError::NotFound { .. }) => match self.builtin_application(&app_id) {
                Some(b) => {
                    self.insert_application(&b).await?;
                    b
                }
                None => {
                    return Err(DirectoryError::NotFound {
                        what: "application",
                        id: app_id,
                    });
                }
            },
            Err(e) => return Err(e),
        };
        if self.find_service_principal(&app.app_id).await?.is_some() {
            return Err(DirectoryError::AlreadyExists(format!(
                "a service principal for appId `{}` already exists",
                app.app_id
            )));
        }
        let mut names = vec![app.app_id.clone()];
        names.extend(app.identifier_uris.iter().cloned());
        let sp = ServicePrincipal {
            id: self.new_id(),
            app_id: app.app_id.clone(),
            display_name: app.display_name.clone(),
            service_principal_type: "Application".into(),
            service_principal_names: names,
            alternative_names: vec![],
            account_enabled: true,
            created_at: self.now(),
        };
        let rec = Record::from_value(kinds::SERVICE_PRINCIPAL, &sp.id, &sp)?.with_key(sp.app_id.clone());
        self.store.insert(rec).await.map_err(|e| match e {
            StoreError::Conflict { .. } => DirectoryError::AlreadyExists(format!(
                "a service principal for appId `{}` already exists",
                sp.app_id
            )),
            other => other.into(),
        })?;
        self.apps_cache.forget(&sp.app_id);
        Ok(sp)
    }

    /// Creates the service principal of a resource's system-assigned managed identity (SPEC A2):
    /// type `ManagedIdentity`, a fresh appId, no application object, named after the resource,
    /// with the resource id among its alternative names.
    pub async fn create_managed_identity(
        &self,
        display_name: &str,
        resource_id: &str,
    ) -> DirResult<ServicePrincipal> {
        let app_id = self.new_id();
        let sp = ServicePrincipal {
            id: self.new_id(),
            app_id: app_id.clone(),
            display_name: display_name.to_owned(),
            service_principal_type: "ManagedIdentity".into(),
            service_principal_names: vec![app_id, resource_id.to_owned()],
            alternative_names: vec!["isExplicit=False".into(), resource_id.to_owned()],
            account_enabled: true,
            created_at: self.now(),
        };
        let rec = Record::from_value(kinds::SERVICE_PRINCIPAL, &sp.id, &sp)?.with_key(sp.app_id.clone());
        self.store.insert(rec).await?;
        Ok(sp)
    }

    /// The service principal of an appId, through a cache of a few seconds (the token endpoint's path).
    pub async fn find_service_principal_cached(
        &self,
        app_id: &str,
    ) -> DirResult<Option<Arc<ServicePrincipal>>> {
        let now = self.now();
        if let Some(hit) = cache_get(&self.apps_cache.sps, app_id, now) {
            return Ok(hit);
        }
        let sp = self.find_service_principal(app_id).await?.map(Arc::new);
        cache_put(&self.apps_cache.sps, app_id, sp.clone(), now);
        Ok(sp)
    }

    /// The service principal of an appId.
    pub async fn find_service_principal(&self, app_id: &str) -> DirResult<Option<ServicePrincipal>> {
        let rec = self
            .store
            .get_by_key(kinds::SERVICE_PRINCIPAL, &app_id.to_lowercase(), self.now())
            .await?;
        rec.map(|r| r.decode().map_err(Into::into)).transpose()
    }

    /// A service principal by object id or appId.
    pub async fn get_service_principal(&self, id_or_app_id: &str) -> DirResult<ServicePrincipal> {
        if let Some(sp) = self.find_service_principal(id_or_app_id).await? {
            return Ok(sp);
        }
        let rec = self
            .store
            .get(kinds::SERVICE_PRINCIPAL, &id_or_app_id.to_lowercase(), self.now())
            .await?;
        rec.map(|r| r.decode())
            .transpose()?
            .ok_or_else(|| DirectoryError::NotFound {
                what: "service principal",
                id: id_or_app_id.to_owned(),
            })
    }

    /// All service principals.
    pub async fn list_service_principals(&self) -> DirResult<Vec<ServicePrincipal>> {
        self.list_all(kinds::SERVICE_PRINCIPAL).await
    }

    /// Deletes a service principal.
    pub async fn delete_service_principal(&self, id_or_app_id: &str) -> DirResult<ServicePrincipal> {
        let sp = self.get_service_principal(id_or_app_id).await?;
        self.remove_from_all_groups(&sp.id).await?;
        self.store.delete(kinds::SERVICE_PRINCIPAL, &sp.id, None).await?;
        self.apps_cache.forget(&sp.app_id);
        Ok(sp)
    }

    /// The application a resource name designates: an appId or an identifier URI.
    pub async fn resolve_resource(&self, name: &str) -> DirResult<Option<Application>> {
        if let Some(app) = self.application_by_app_id_cached(name).await? {
            return Ok(Some((*app).clone()));
        }
        let trimmed = name.trim_end_matches('/');
        Ok(self.list_applications().await?.into_iter().find(|a| {
            a.identifier_uris
                .iter()
                .any(|u| u.trim_end_matches('/').eq_ignore_ascii_case(trimmed))
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirect_uris() {
        assert!(super::valid_redirect_uri("https://app.example/cb"));
        assert!(super::valid_redirect_uri("http://localhost:8400/cb"));
        assert!(super::valid_redirect_uri("http://127.0.0.1/cb"));
        assert!(!super::valid_redirect_uri("http://app.example/cb"));
        assert!(!super::valid_redirect_uri("https://app.example/cb#x"));
        assert!(!super::valid_redirect_uri("not a url"));
        assert!(!super::valid_redirect_uri("javascript:alert(1)"));
    }
}
