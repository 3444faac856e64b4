//! What every command needs: the global options, the token cache, the printer, and an
//! authenticated client whose access token is refreshed when it is close to expiry.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use serde_json::Value;
use usher_client::{CLI_LOGIN_SCOPE, Client, TokenResponse};

use crate::cli::{DEFAULT_SERVER, GlobalArgs};
use crate::config::{ConfigDir, Session};
use crate::jwt::Claims;
use crate::output::Printer;

/// Refresh the access token when it expires within this many seconds.
pub const REFRESH_MARGIN_SECS: i64 = 300;

/// The message the Azure CLI prints when nobody is signed in.
pub const NOT_LOGGED_IN: &str = "Please run 'usher login' to setup account.";

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The server URL as it is compared and stored: without a trailing slash.
pub fn normalize_server(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// Whether the session's access token must be refreshed before use.
pub fn needs_refresh(session: &Session, now: i64) -> bool {
    session.expires_on - now < REFRESH_MARGIN_SECS
}

/// The expiry of a token answer: the access token's `exp`, else now + `expires_in`.
pub fn expiry_of(tokens: &TokenResponse, claims: Option<&Claims>, now: i64) -> i64 {
    claims
        .and_then(|c| c.exp)
        .unwrap_or_else(|| now + i64::try_from(tokens.expires_in).unwrap_or(3600))
}

/// Writes a warning to stderr, as the Azure CLI does, unless `--only-show-errors`.
pub fn warn(global: &GlobalArgs, text: &str) {
    if !global.only_show_errors {
        eprintln!("WARNING: {text}");
    }
}

/// Shared state of one invocation.
#[derive(Debug)]
pub struct Context {
    /// Global options.
    pub global: GlobalArgs,
    /// The token cache.
    pub config: ConfigDir,
    /// Output settings.
    pub printer: Printer,
}

impl Context {
    /// Prints a command's result.
    pub fn print(&self, value: &Value) -> Result<()> {
        self.printer.print(value)
    }

    /// `--server` / `USHER_SERVER` when given.
    pub fn server_override(&self) -> Option<String> {
        self.global.server.as_deref().map(normalize_server)
    }

    /// The cached session; an error telling the user to log in when there is none (or it is
    /// for another server than `--server` names).
    pub fn session(&self) -> Result<Session> {
        let session = self.config.load()?.ok_or_else(|| anyhow!(NOT_LOGGED_IN))?;
        if let Some(server) = self.server_override()
            && server != normalize_server(&session.server)
        {
            return Err(anyhow!(
                "The cached sign-in is for {}, not {server}. {NOT_LOGGED_IN}",
                session.server
            ));
        }
        Ok(session)
    }

    /// The server and CA file for `usher login`: the options, else the cached sign-in's, else
    /// the default server.
    pub fn login_target(&self) -> Result<(String, Option<PathBuf>)> {
        let cached = self.config.load().ok().flatten();
        let server = self
            .server_override()
            .or_else(|| cached.as_ref().map(|s| normalize_server(&s.server)))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let ca = self.global.ca_file.clone().or_else(|| {
            cached
                .as_ref()
                .filter(|s| normalize_server(&s.server) == server)
                .and_then(|s| s.ca_file.clone())
        });
        Ok((server, ca))
    }

    /// An unauthenticated client for the cached session's server.
    pub fn client_for(&self, session: &Session) -> Result<Client> {
        let ca = self.global.ca_file.clone().or_else(|| session.ca_file.clone());
        Ok(Client::new(&session.server, ca.as_deref())?)
    }

    /// An authenticated client for Graph calls, refreshing the access token first when it
    /// expires within five minutes.
    pub async fn api(&self) -> Result<(Client, Session)> {
        let session = self.session()?;
        let client = self.client_for(&session)?;
        let session = if needs_refresh(&session, now()) {
            self.refresh(&client).await?
        } else {
            session
        };
        let authed = client.with_token(session.access_token.clone());
        Ok((authed, session))
    }

    /// Refreshes the cached tokens under the cache lock. Another process may have refreshed
    /// meanwhile: the session is re-read under the lock and only refreshed if still needed.
    /// The rotated refresh token is saved before anything else happens.
    async fn refresh(&self, client: &Client) -> Result<Session> {
        let _lock = self.config.lock()?;
        let mut session = self.session()?;
        if !needs_refresh(&session, now()) {
            return Ok(session);
        }
        let tokens = self
            .redeem_refresh_token(client, &mut session, Some(CLI_LOGIN_SCOPE))
            .await?;
        let claims = Claims::of(&tokens.access_token).ok();
        session.access_token = tokens.access_token.clone();
        session.expires_on = expiry_of(&tokens, claims.as_ref(), now());
        self.config.save(&session)?;
        Ok(session)
    }

    /// Spends the session's refresh token for `scope` and saves the rotated refresh token at
    /// once (the caller must hold the cache lock). The caller decides what to do with the
    /// access token.
    pub async fn redeem_refresh_token(
        &self,
        client: &Client,
        session: &mut Session,
        scope: Option<&str>,
    ) -> Result<TokenResponse> {
        let refresh_token = session.refresh_token.clone().ok_or_else(|| {
            anyhow!("The access token has expired and no refresh token is cached. {NOT_LOGGED_IN}")
        })?;
        let tenant = if session.tenant_id.is_empty() {
            session.tenant.clone()
        } else {
            session.tenant_id.clone()
        };
        let tokens = match client
            .refresh_grant(&tenant, &session.client_id, &refresh_token, scope)
            .await
        {
            Ok(t) => t,
            Err(e @ usher_client::Error::Entra(_)) => {
                return Err(anyhow!("{e} {NOT_LOGGED_IN}"));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(rotated) = &tokens.refresh_token {
            session.refresh_token = Some(rotated.clone());
            self.config.save(session)?;
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_on: i64) -> Session {
        Session {
            server: "https://127.0.0.1:8443".into(),
            ca_file: None,
            tenant: "contoso.test".into(),
            tenant_id: "t".into(),
            user: "u".into(),
            client_id: usher_client::CLI_CLIENT_ID.into(),
            access_token: "a".into(),
            refresh_token: Some("r".into()),
            expires_on,
            subscriptions: vec![],
        }
    }

    #[test]
    fn refresh_within_five_minutes_of_expiry() {
        let now = 1_000_000;
        assert!(needs_refresh(&session(now + 299), now));
        assert!(needs_refresh(&session(now - 10), now));
        assert!(!needs_refresh(&session(now + 301), now));
    }

    #[test]
    fn servers_compare_without_trailing_slash() {
        assert_eq!(normalize_server("https://h:8443/"), "https://h:8443");
        assert_eq!(normalize_server(" https://h:8443 "), "https://h:8443");
    }

    #[test]
    fn expiry_prefers_the_exp_claim() {
        let tokens = TokenResponse {
            token_type: "Bearer".into(),
            scope: String::new(),
            expires_in: 100,
            ext_expires_in: None,
            access_token: "a".into(),
            refresh_token: None,
            id_token: None,
            client_info: None,
        };
        assert_eq!(expiry_of(&tokens, None, 1000), 1100);
        let claims = Claims {
            exp: Some(5000),
            ..Claims::default()
        };
        assert_eq!(expiry_of(&tokens, Some(&claims), 1000), 5000);
    }
}
