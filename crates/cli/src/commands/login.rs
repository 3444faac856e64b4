//! `usher login` and `usher logout`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Value, json};
use usher_client::{CLI_CLIENT_ID, CLI_LOGIN_SCOPE, Client, Error as ClientError, TokenResponse};

use crate::cli::LoginArgs;
use crate::config::Session;
use crate::context::{Context, expiry_of, now, warn};
use crate::jwt::Claims;

/// The ARM api-version used to list subscriptions (as `az login` does).
const SUBSCRIPTIONS_API_VERSION: &str = "2022-12-01";

/// The tenant to sign in to: `--tenant`, else the domain of the user name, else `organizations`.
pub fn default_tenant(tenant: Option<&str>, username: Option<&str>) -> String {
    if let Some(t) = tenant.filter(|t| !t.is_empty()) {
        return t.to_string();
    }
    username
        .and_then(|u| u.rsplit_once('@'))
        .map(|(_, domain)| domain.to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "organizations".to_string())
}

/// `usher login`.
pub async fn login(ctx: &Context, args: LoginArgs) -> Result<()> {
    let (server, ca_file) = ctx.login_target()?;
    let client = Client::new(&server, ca_file.as_deref())?;
    let tenant = default_tenant(args.tenant.as_deref(), args.username.as_deref());

    let tokens = match (&args.username, &args.password) {
        (Some(username), Some(password)) => {
            client
                .password_grant(&tenant, CLI_CLIENT_ID, username, password, CLI_LOGIN_SCOPE)
                .await?
        }
        _ => device_code_flow(&client, &tenant, CLI_LOGIN_SCOPE).await?,
    };

    let access = Claims::of(&tokens.access_token).ok();
    let id = tokens.id_token.as_deref().and_then(|t| Claims::of(t).ok());
    let tenant_id = access
        .as_ref()
        .and_then(|c| c.tid.clone())
        .or_else(|| id.as_ref().and_then(|c| c.tid.clone()))
        .unwrap_or_else(|| tenant.clone());
    let user = access
        .as_ref()
        .and_then(|c| c.upn.clone())
        .or_else(|| id.as_ref().and_then(|c| c.upn.clone()))
        .or_else(|| args.username.clone())
        .unwrap_or_default();
    let mut session = Session {
        server: server.clone(),
        ca_file: ca_file.map(|p| std::path::absolute(&p).unwrap_or(p)),
        tenant: tenant.clone(),
        tenant_id,
        user,
        client_id: CLI_CLIENT_ID.to_string(),
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        expires_on: expiry_of(&tokens, access.as_ref(), now()),
        subscriptions: Vec::new(),
    };
    // Persist the tokens before anything else: the refresh token is single-use.
    {
        let _lock = ctx.config.lock()?;
        ctx.config.save(&session)?;
    }

    let authed = client.with_token(tokens.access_token.clone());
    session.subscriptions = subscriptions(ctx, &authed, &session).await;
    {
        // Re-read under the lock: another process may have rotated the refresh token meanwhile.
        let _lock = ctx.config.lock()?;
        let mut current = ctx.config.load()?.unwrap_or_else(|| session.clone());
        current.subscriptions = session.subscriptions.clone();
        ctx.config.save(&current)?;
    }

    let shown = if session.subscriptions.is_empty() && args.allow_no_subscriptions {
        Value::Array(vec![tenant_level_account(&session, "cloudName")])
    } else {
        Value::Array(session.subscriptions.clone())
    };
    ctx.print(&shown)
}

/// Runs the device-code flow: shows the server's message on stderr and polls at the interval
/// the server asked for until the user finishes or the code expires.
pub(crate) async fn device_code_flow(client: &Client, tenant: &str, scope: &str) -> Result<TokenResponse> {
    let start = client.device_code_start(tenant, CLI_CLIENT_ID, scope).await?;
    if start.message.is_empty() {
        eprintln!(
            "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
            start.verification_uri, start.user_code
        );
    } else {
        eprintln!("{}", start.message);
    }
    let deadline = Instant::now() + Duration::from_secs(start.expires_in.max(1));
    let mut interval = start.interval.max(1);
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        match client
            .device_code_poll(tenant, CLI_CLIENT_ID, &start.device_code)
            .await
        {
            Ok(tokens) => return Ok(tokens),
            Err(ClientError::Entra(e)) if e.is_authorization_pending() => {}
            Err(ClientError::Entra(e)) if e.is_slow_down() => interval += 5,
            Err(e) => return Err(e.into()),
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "(AADSTS70019) The device code expired before the sign-in was completed. Run 'usher login' again."
            ));
        }
    }
}

/// Lists the user's subscriptions in the `az login` shape. The resource manager API may not
/// exist yet (404) or the user may have no access: then the list is empty.
async fn subscriptions(ctx: &Context, client: &Client, session: &Session) -> Vec<Value> {
    let answer = client
        .get_query("/subscriptions", &[("api-version", SUBSCRIPTIONS_API_VERSION)])
        .await;
    let value = match answer {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Vec::new(),
        Err(e) => {
            warn(&ctx.global, &format!("could not list subscriptions: {e}"));
            return Vec::new();
        }
    };
    let items = value
        .get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .enumerate()
        .map(|(i, sub)| az_subscription(sub, session, i == 0))
        .collect()
}

/// An ARM subscription as `az login` lists it.
pub fn az_subscription(sub: &Value, session: &Session, is_default: bool) -> Value {
    let text = |k: &str| sub.get(k).and_then(Value::as_str).map(str::to_string);
    let id = text("subscriptionId")
        .or_else(|| {
            text("id").map(|id| {
                id.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .unwrap_or_default();
    let tenant = text("tenantId").unwrap_or_else(|| session.tenant_id.clone());
    json!({
        "cloudName": "usher",
        "homeTenantId": text("homeTenantId").unwrap_or_else(|| tenant.clone()),
        "id": id,
        "isDefault": is_default,
        "managedByTenants": sub.get("managedByTenants").cloned().unwrap_or_else(|| json!([])),
        "name": text("displayName").unwrap_or_default(),
        "state": text("state").unwrap_or_else(|| "Enabled".to_string()),
        "tenantId": tenant,
        "user": {"name": session.user, "type": "user"},
    })
}

/// The account of a user without subscriptions, as az shows it with --allow-no-subscriptions.
/// `cloud_key` is `cloudName` (login) or `environmentName` (account show).
pub fn tenant_level_account(session: &Session, cloud_key: &str) -> Value {
    let mut v = json!({
        "homeTenantId": session.tenant_id,
        "id": session.tenant_id,
        "isDefault": true,
        "managedByTenants": [],
        "name": "N/A(tenant level account)",
        "state": "Enabled",
        "tenantId": session.tenant_id,
        "user": {"name": session.user, "type": "user"},
    });
    if let Some(map) = v.as_object_mut() {
        map.insert(cloud_key.to_string(), json!("usher"));
    }
    v
}

/// `usher logout`: forgets the cached tokens.
pub fn logout(ctx: &Context) -> Result<()> {
    let _lock = ctx.config.lock().context("cannot lock the token cache")?;
    ctx.config.remove()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            server: "https://127.0.0.1:8443".into(),
            ca_file: None,
            tenant: "contoso.test".into(),
            tenant_id: "tid".into(),
            user: "admin@contoso.test".into(),
            client_id: CLI_CLIENT_ID.into(),
            access_token: "a".into(),
            refresh_token: None,
            expires_on: 0,
            subscriptions: vec![],
        }
    }

    #[test]
    fn tenant_defaults() {
        assert_eq!(default_tenant(Some("t1"), Some("a@contoso.test")), "t1");
        assert_eq!(default_tenant(None, Some("a@contoso.test")), "contoso.test");
        assert_eq!(
            default_tenant(None, Some("USHER\\a@fabrikam.test")),
            "fabrikam.test"
        );
        assert_eq!(default_tenant(None, Some("plain")), "organizations");
        assert_eq!(default_tenant(None, None), "organizations");
    }

    #[test]
    fn subscription_in_az_shape() {
        let sub = json!({
            "id": "/subscriptions/0000-sub",
            "subscriptionId": "0000-sub",
            "displayName": "Default",
            "state": "Enabled",
            "tenantId": "tid"
        });
        let v = az_subscription(&sub, &session(), true);
        assert_eq!(v["id"], "0000-sub");
        assert_eq!(v["name"], "Default");
        assert_eq!(v["isDefault"], true);
        assert_eq!(v["user"]["name"], "admin@contoso.test");
        let only_id = az_subscription(&json!({"id": "/subscriptions/abc"}), &session(), false);
        assert_eq!(only_id["id"], "abc");
        assert_eq!(only_id["tenantId"], "tid");
    }

    #[test]
    fn tenant_level() {
        let v = tenant_level_account(&session(), "environmentName");
        assert_eq!(v["id"], "tid");
        assert_eq!(v["environmentName"], "usher");
        assert_eq!(v["name"], "N/A(tenant level account)");
    }
}
