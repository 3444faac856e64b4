//! Bearer-token authentication of API callers.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use serde_json::Value;

use crate::AppState;
use crate::error::ApiError;

/// Validated bearer tokens, by SHA-256 of the token: verifying an ES256 signature costs more than
/// the rest of a typical API request. An entry lives at most [`TOKEN_CACHE_SECS`] and never past
/// the token's `exp`, so a retired signing key stops being honoured within that time.
#[derive(Debug, Default)]
pub struct TokenCache(std::sync::RwLock<std::collections::HashMap<Vec<u8>, (Caller, i64)>>);

/// Longest life of a cache entry, in seconds.
pub const TOKEN_CACHE_SECS: i64 = 300;
const TOKEN_CACHE_MAX: usize = 50_000;

impl TokenCache {
    fn get(&self, digest: &[u8], now: i64) -> Option<Caller> {
        let map = self.0.read().ok()?;
        map.get(digest)
            .filter(|(_, until)| *until > now)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, digest: Vec<u8>, caller: Caller, until: i64) {
        if let Ok(mut map) = self.0.write() {
            if map.len() >= TOKEN_CACHE_MAX {
                map.clear();
            }
            map.insert(digest, (caller, until));
        }
    }
}

/// An authenticated caller of the API.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Object id (user or service principal).
    pub oid: String,
    /// UPN, for users.
    pub upn: Option<String>,
    /// Whether this is an app-only token.
    pub is_app: bool,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| ApiError::Unauthenticated("Access token is empty.".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated("The Authorization header must be a Bearer token.".into())
            })?;
        let token = token.trim();
        let now = state.dir().clock().now_unix();
        let digest = usher_crypto::secret::sha256(token.as_bytes());
        if let Some(c) = state.token_cache.get(&digest, now) {
            return Ok(c);
        }
        let public = state.idp.public_url().to_owned();
        let audiences = vec![public.clone(), format!("{public}/")];
        let claims = state
            .idp
            .validate_access_token(token, &audiences)
            .map_err(|e| ApiError::Unauthenticated(format!("Access token validation failure: {e}.")))?;
        let oid = claims
            .get("oid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if oid.is_empty() {
            return Err(ApiError::Unauthenticated(
                "Access token validation failure: the token has no oid.".into(),
            ));
        }
        let caller = Caller {
            oid,
            upn: claims.get("upn").and_then(Value::as_str).map(str::to_owned),
            is_app: claims.get("idtyp").and_then(Value::as_str) == Some("app"),
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(now);
        state
            .token_cache
            .put(digest, caller.clone(), exp.min(now + TOKEN_CACHE_SECS));
        Ok(caller)
    }
}

impl Caller {
    /// Refuses callers holding none of `roles` (directory role template ids).
    pub async fn require_role(&self, state: &AppState, roles: &[&str], action: &str) -> Result<(), ApiError> {
        if !self.is_app && state.dir().has_directory_role(&self.oid, roles).await? {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "Insufficient privileges to complete the operation: {action} needs one of the directory roles {}.",
            roles
                .iter()
                .map(|r| match *r {
                    usher_core::well_known::GLOBAL_ADMIN_ROLE => "Global Administrator",
                    usher_core::well_known::USER_ADMIN_ROLE => "User Administrator",
                    usher_core::well_known::CLOUD_APP_ADMIN_ROLE => "Cloud Application Administrator",
                    usher_core::well_known::CONDITIONAL_ACCESS_ADMIN_ROLE =>
                        "Conditional Access Administrator",
                    usher_core::well_known::SECURITY_ADMIN_ROLE => "Security Administrator",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Name for the audit log.
    pub fn name(&self) -> String {
        self.upn.clone().unwrap_or_else(|| self.oid.clone())
    }
}

/// A caller signed in as a user: app-only tokens are refused, since usher grants no application
/// permissions (Graph's `Directory.Read.All`) yet.
#[derive(Debug, Clone)]
pub struct UserCaller;

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_app {
            return Err(ApiError::Forbidden(
                "Insufficient privileges to complete the operation: app-only tokens need an application permission to read the directory, and none is granted.".into(),
            ));
        }
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::{Caller, TokenCache};

    #[test]
    fn cached_tokens_expire_and_are_keyed_by_digest() {
        let cache = TokenCache::default();
        let caller = Caller {
            oid: "o".into(),
            upn: None,
            is_app: false,
        };
        cache.put(b"digest-1".to_vec(), caller, 1_000);
        assert_eq!(cache.get(b"digest-1", 999).map(|c| c.oid), Some("o".into()));
        assert!(
            cache.get(b"digest-1", 1_000).is_none(),
            "not at or past the entry's end"
        );
        assert!(
            cache.get(b"digest-2", 999).is_none(),
            "another token is not a hit"
        );
    }
}
