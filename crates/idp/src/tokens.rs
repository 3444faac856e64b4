//! Minting access, id and refresh tokens (SPEC T3).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_crypto::jwt::TokenKind;
use usher_directory::model::{Application, ServicePrincipal, User};
use usher_proto::oauth::TokenResponse;
use usher_store::Record;

use crate::scopes::{Resource, ScopeRequest};
use crate::{Idp, IdpError, IdpResult, kinds};

/// Refresh-token lifetime: 90 days, rolling.
pub const REFRESH_LIFETIME_SECS: i64 = 90 * 86_400;
/// Id-token lifetime.
pub const ID_TOKEN_LIFETIME_SECS: i64 = 3600;

/// A user's sign-in that tokens are minted for.
#[derive(Debug, Clone)]
pub struct UserSignIn {
    /// The user.
    pub user: User,
    /// Authentication methods satisfied (`pwd`, `mfa`, `otp`).
    pub amr: Vec<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// OIDC nonce from the authorization request.
    pub nonce: Option<String>,
}

/// The claims of an app-only access token (typed: the token endpoint's hot path).
#[derive(Serialize)]
struct AppClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    sub: &'a str,
    oid: &'a str,
    tid: &'a str,
    roles: [&'a str; 0],
    appid: &'a str,
    azp: &'a str,
    appidacr: &'a str,
    azpacr: &'a str,
    idtyp: &'static str,
    uti: &'a str,
    ver: &'static str,
}

/// A stored refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredRefresh {
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub amr: Vec<String>,
    pub auth_time: i64,
    pub used: bool,
}

/// A refresh-token family (all tokens of one sign-in).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Family {
    pub user_id: String,
    pub client_id: String,
    pub revoked: bool,
}

impl Idp {
    fn access_lifetime(&self) -> i64 {
        i64::try_from(self.directory().rng().range(3600, 5400)).unwrap_or(3600)
    }

    fn new_uti(&self) -> String {
        self.directory().rng().token(16)
    }

    /// Signs an access token for a user.
    pub(crate) fn user_access_token(
        &self,
        s: &UserSignIn,
        client: &Application,
        resource: &Resource,
        scopes: &ScopeRequest,
        client_auth: &str,
    ) -> IdpResult<(String, i64)> {
        let now = self.now();
        let life = self.access_lifetime();
        let scp =
            if scopes.resource_scopes.is_empty() || scopes.resource_scopes.iter().all(|s| s == ".default") {
                "user_impersonation".to_owned()
            } else {
                scopes.resource_scopes.join(" ")
            };
        let mfa = s.amr.iter().any(|m| m == "mfa");
        let claims = json!({
            "aud": resource.audience(self),
            "iss": self.issuer(),
            "iat": now, "nbf": now, "exp": now + life,
            "sub": s.user.id, "oid": s.user.id, "tid": self.tenant().id,
            "upn": s.user.user_principal_name, "unique_name": s.user.user_principal_name,
            "preferred_username": s.user.user_principal_name, "name": s.user.display_name,
            "amr": s.amr, "acr": if mfa { "2" } else { "1" }, "auth_time": s.auth_time,
            "scp": scp,
            "appid": client.app_id, "azp": client.app_id,
            "appidacr": client_auth, "azpacr": client_auth,
            "idtyp": "user", "uti": self.new_uti(), "ver": "2.0",
        });
        let token = self
            .keys()
            .active()?
            .sign(TokenKind::Access, &claims)
            .map_err(|_| IdpError::server_error())?;
        Ok((token, life))
    }

    /// Signs an id token.
    fn id_token(&self, s: &UserSignIn, client: &Application) -> IdpResult<String> {
        let now = self.now();
        let mut claims = json!({
            "aud": client.app_id, "iss": self.issuer(),
            "iat": now, "nbf": now, "exp": now + ID_TOKEN_LIFETIME_SECS,
            "sub": s.user.id, "oid": s.user.id, "tid": self.tenant().id,
            "preferred_username": s.user.user_principal_name, "name": s.user.display_name,
            "amr": s.amr, "auth_time": s.auth_time, "ver": "2.0", "uti": self.new_uti(),
        });
        if let Some(n) = &s.nonce {
            claims["nonce"] = Value::String(n.clone());
        }
        self.keys()
            .active()?
            .sign(TokenKind::Id, &claims)
            .map_err(|_| IdpError::server_error())
    }

    /// Creates a refresh-token family for a new sign-in.
    pub(crate) async fn new_family(&self, user_id: &str, client_id: &str) -> IdpResult<String> {
        let id = self.directory().rng().token(16);
        let fam = Family {
            user_id: user_id.to_owned(),
            client_id: client_id.to_owned(),
            revoked: false,
        };
        self.directory()
            .store()
            .insert(
                Record::from_value(kinds::REFRESH_FAMILY, &id, &fam)?
                    .with_expiry(self.now() + REFRESH_LIFETIME_SECS * 4),
            )
            .await?;
        Ok(id)
    }

    /// Issues a refresh token in `family` (a new family when `None`).
    pub(crate) async fn refresh_token(
        &self,
        s: &UserSignIn,
        client_id: &str,
        scope: &str,
        family: Option<String>,
    ) -> IdpResult<String> {
        let now = self.now();
        let family_id = match family {
            Some(f) => f,
            None => self.new_family(&s.user.id, client_id).await?,
        };
        let token = format!(
            "rt.{}",
            usher_crypto::secret::generate(self.directory().rng().as_ref())
        );
        let stored = StoredRefresh {
            family_id,
            user_id: s.user.id.clone(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            amr: s.amr.clone(),
            auth_time: s.auth_time,
            used: false,
        };
        let id = usher_crypto::secret::digest(&token);
        self.directory()
            .store()
            .insert(
                Record::from_value(kinds::REFRESH_TOKEN, &id, &stored)?
                    .with_expiry(now + REFRESH_LIFETIME_SECS),
            )
            .await?;
        Ok(token)
    }

    /// Mints the full response for a user's sign-in.
    pub(crate) async fn user_tokens(
        &self,
        s: &UserSignIn,
        client: &Application,
        admitted: crate::conditional::Admitted,
        scope_string: &str,
        client_auth: &str,
        family: Option<String>,
    ) -> IdpResult<(TokenResponse, Resource)> {
        let resource = admitted.resource;
        let scopes = &admitted.scopes;
        let (access_token, life) = self.user_access_token(s, client, &resource, scopes, client_auth)?;
        let id_token = if scopes.openid() {
            Some(self.id_token(s, client)?)
        } else {
            None
        };
        let refresh_token = if scopes.offline() {
            Some(
                self.refresh_token(s, &client.app_id, scope_string, family)
                    .await?,
            )
        } else {
            None
        };
        let client_info = usher_crypto::b64url(
            json!({"uid": s.user.id, "utid": self.tenant().id})
                .to_string()
                .as_bytes(),
        );
        let mut granted: Vec<String> = match &resource {
            Resource::Api => scopes
                .resource_scopes
                .iter()
                .map(|n| format!("{}/{n}", self.public_url()))
                .collect(),
            Resource::App { audience, .. } => scopes
                .resource_scopes
                .iter()
                .map(|n| format!("{audience}/{n}"))
                .collect(),
        };
        granted.extend(scopes.oidc.iter().cloned());
        Ok((
            TokenResponse {
                token_type: "Bearer".into(),
                scope: granted.join(" "),
                expires_in: life,
                ext_expires_in: life,
                access_token,
                refresh_token,
                id_token,
                client_info: Some(client_info),
            },
            resource,
        ))
    }

    /// Mints an app-only access token for a service principal.
    pub(crate) fn app_token(
        &self,
        sp: &ServicePrincipal,
        resource: &Resource,
        client_auth: &str,
    ) -> IdpResult<TokenResponse> {
        let now = self.now();
        let life = self.access_lifetime();
        let uti = self.new_uti();
        let claims = AppClaims {
            aud: resource.audience(self),
            iss: self.issuer_str(),
            iat: now,
            nbf: now,
            exp: now + life,
            sub: &sp.id,
            oid: &sp.id,
            tid: &self.tenant().id,
            roles: [],
            appid: &sp.app_id,
            azp: &sp.app_id,
            appidacr: client_auth,
            azpacr: client_auth,
            idtyp: "app",
            uti: &uti,
            ver: "2.0",
        };
        let access_token = self
            .keys()
            .active()?
            .sign(TokenKind::Access, &claims)
            .map_err(|_| IdpError::server_error())?;
        Ok(TokenResponse {
            token_type: "Bearer".into(),
            scope: format!("{}/.default", resource.audience(self)),
            expires_in: life,
            ext_expires_in: life,
            access_token,
            ..Default::default()
        })
    }

    /// Validates an access token issued by this tenant for `audiences`.
    pub fn validate_access_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<serde_json::Map<String, Value>, usher_crypto::jwt::TokenError> {
        let issuer = self.issuer_str();
        let keyset = self
            .keys()
            .keyset()
            .map_err(|_| usher_crypto::jwt::TokenError::Malformed)?;
        keyset.validate(
            token,
            &usher_crypto::jwt::Expectations {
                kind: TokenKind::Access,
                issuer,
                audiences,
                now: self.now(),
            },
        )
    }
}
