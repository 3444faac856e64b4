//! Client authentication at the token endpoint: client secrets (post or HTTP Basic) and
//! `private_key_jwt` (RFC 7523) with replay protection.

use std::sync::Arc;

use serde_json::Value;
use usher_crypto::jwt::{Expectations, KeySet, TokenError, TokenKind};
use usher_directory::model::Application;
use usher_proto::oauth::JWT_BEARER_ASSERTION;
use usher_store::{Record, StoreError};

use crate::{Idp, IdpError, IdpResult, kinds};

/// Longest accepted lifetime of a client assertion.
const MAX_ASSERTION_SECS: i64 = 600;

/// Credentials a client presented.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    /// Client id (from the body or HTTP Basic).
    pub client_id: Option<String>,
    /// Secret (from the body or HTTP Basic).
    pub secret: Option<String>,
    /// Assertion type.
    pub assertion_type: Option<String>,
    /// Assertion JWT.
    pub assertion: Option<String>,
}

/// How a client authenticated: Entra's `appidacr` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// A public client: nothing.
    None,
    /// A client secret.
    Secret,
    /// A certificate or key (`private_key_jwt`).
    Key,
}

impl ClientAuthMethod {
    /// The `appidacr` claim.
    pub fn acr(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "0",
            ClientAuthMethod::Secret => "1",
            ClientAuthMethod::Key => "2",
        }
    }
}

fn assertion_failed(reason: impl std::fmt::Display) -> IdpError {
    IdpError::new(
        "invalid_client",
        700027,
        format!("Client assertion failed signature validation: {reason}."),
    )
}

impl Idp {
    /// The client application of a request, or 700016.
    pub async fn client(&self, client_id: &str) -> IdpResult<Arc<Application>> {
        self.directory()
            .application_by_app_id_cached(client_id)
            .await?
            .ok_or_else(|| IdpError::unknown_client(client_id))
    }

    /// Authenticates the client. Public clients may present nothing; confidential clients must
    /// present a secret or an assertion. A public client presenting a secret is refused.
    pub async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
    ) -> IdpResult<(Arc<Application>, ClientAuthMethod)> {
        let client_id = creds
            .client_id
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| IdpError::missing("client_id"))?;
        let app = self.client(client_id).await?;
        if let Some(secret) = &creds.secret {
            if app.is_public() {
                return Err(IdpError::new(
                    "invalid_client",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                ));
            }
            let now = self.now();
            let ok = app
                .password_credentials
                .iter()
                .filter(|c| c.start <= now && now < c.end)
                .fold(false, |acc, c| {
                    usher_crypto::secret::matches(secret, &c.secret_digest) | acc
                });
            return if ok {
                Ok((app, ClientAuthMethod::Secret))
            } else {
                Err(IdpError::bad_client_secret())
            };
        }
        if let Some(assertion) = &creds.assertion {
            if creds.assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
                return Err(IdpError::new(
                    "invalid_request",
                    50027,
                    format!("client_assertion_type must be '{JWT_BEARER_ASSERTION}'."),
                ));
            }
            self.check_assertion(&app, assertion).await?;
            return Ok((app, ClientAuthMethod::Key));
        }
        if app.is_public() {
            Ok((app, ClientAuthMethod::None))
        } else {
            Err(IdpError::client_credentials_required())
        }
    }

    async fn check_assertion(&self, app: &Application, assertion: &str) -> IdpResult<()> {
        let jwks: Vec<_> = app.key_credentials.iter().map(|k| k.jwk.clone()).collect();
        if jwks.is_empty() {
            return Err(assertion_failed("the application has no keys"));
        }
        let keyset = KeySet::from_jwks(&jwks).map_err(assertion_failed)?;
        let audiences = vec![
            format!("{}/{}/oauth2/v2.0/token", self.public_url(), self.tenant().id),
            self.issuer(),
        ]
        .into_iter()
        .chain(
            self.tenant()
                .domains
                .iter()
                .map(|d| format!("{}/{d}/oauth2/v2.0/token", self.public_url())),
        )
        .collect::<Vec<_>>();
        let now = self.now();
        let claims = keyset
            .validate(
                assertion,
                &Expectations {
                    kind: TokenKind::ClientAssertion,
                    issuer: &app.app_id,
                    audiences: &audiences,
                    now,
                },
            )
            .map_err(|e| match e {
                TokenError::Expired | TokenError::NotYetValid => IdpError::new(
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                ),
                other => assertion_failed(other),
            })?;
        if claims.get("sub").and_then(Value::as_str) != Some(app.app_id.as_str()) {
            return Err(assertion_failed("sub must be the client id"));
        }
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp.saturating_sub(now) > MAX_ASSERTION_SECS {
            return Err(IdpError::new(
                "invalid_client",
                700024,
                "Client assertion lifetime is too long (at most 10 minutes).",
            ));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| assertion_failed("the jti claim is required"))?;
        let id = format!("{}:{jti}", app.app_id);
        let rec = Record::new(kinds::ASSERTION_JTI, id, Value::Null).with_expiry(exp.saturating_add(3600));
        match self.directory().store().insert(rec).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(IdpError::new(
                "invalid_client",
                700023,
                "Client assertion was already used (replayed jti).",
            )),
            Err(e) => Err(e.into()),
        }
    }
}
