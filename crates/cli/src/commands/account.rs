//! `usher account show|list|get-access-token`.

use anyhow::Result;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::cli::{AccountCommand, GetAccessTokenArgs};
use crate::commands::login::tenant_level_account;
use crate::config::Session;
use crate::context::{Context, expiry_of, normalize_server, now};
use crate::jwt::Claims;

/// Runs an `account` command.
pub async fn run(ctx: &Context, cmd: AccountCommand) -> Result<()> {
    match cmd {
        AccountCommand::Show => {
            let session = ctx.session()?;
            ctx.print(&account_show(&session))
        }
        AccountCommand::List => {
            let session = ctx.session()?;
            let list = if session.subscriptions.is_empty() {
                vec![tenant_level_account(&session, "cloudName")]
            } else {
                session.subscriptions.clone()
            };
            ctx.print(&Value::Array(list))
        }
        AccountCommand::GetAccessToken(args) => get_access_token(ctx, args).await,
    }
}

/// The `az account show` object for the cached sign-in: the default subscription, or the
/// tenant-level account when the user has none.
pub fn account_show(session: &Session) -> Value {
    let default = session
        .subscriptions
        .iter()
        .find(|s| s.get("isDefault").and_then(Value::as_bool) == Some(true))
        .or_else(|| session.subscriptions.first());
    match default {
        Some(sub) => {
            let text = |k: &str| sub.get(k).cloned().unwrap_or(Value::Null);
            json!({
                "environmentName": "usher",
                "homeTenantId": text("homeTenantId"),
                "id": text("id"),
                "isDefault": true,
                "managedByTenants": sub.get("managedByTenants").cloned().unwrap_or_else(|| json!([])),
                "name": text("name"),
                "state": text("state"),
                "tenantId": text("tenantId"),
                "user": {"name": session.user, "type": "user"},
            })
        }
        None => tenant_level_account(session, "environmentName"),
    }
}

/// `expiresOn` as the Azure CLI prints it (here in UTC): `2024-01-01 12:00:00.000000`.
pub fn expires_on_text(unix: i64) -> String {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]");
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The scope for `--resource R`: `R/.default`.
pub fn resource_scope(resource: &str) -> String {
    format!("{}/.default", resource.trim_end_matches('/'))
}

async fn get_access_token(ctx: &Context, args: GetAccessTokenArgs) -> Result<()> {
    let (client, session) = ctx.api().await?;
    let scope = match (&args.resource, args.scope.is_empty()) {
        (Some(r), _) if normalize_server(r) != normalize_server(&session.server) => Some(resource_scope(r)),
        (_, false) => Some(args.scope.join(" ")),
        _ => None,
    };
    let (token, expires_on) = match scope {
        None => (session.access_token.clone(), session.expires_on),
        Some(scope) => {
            let _lock = ctx.config.lock()?;
            let mut current = ctx.session()?;
            let tokens = ctx
                .redeem_refresh_token(&client, &mut current, Some(&scope))
                .await?;
            let claims = Claims::of(&tokens.access_token).ok();
            let exp = expiry_of(&tokens, claims.as_ref(), now());
            (tokens.access_token, exp)
        }
    };
    let account = account_show(&session);
    let subscription = if session.subscriptions.is_empty() {
        Value::Null
    } else {
        account.get("id").cloned().unwrap_or(Value::Null)
    };
    ctx.print(&json!({
        "accessToken": token,
        "expiresOn": expires_on_text(expires_on),
        "expires_on": expires_on,
        "subscription": subscription,
        "tenant": session.tenant_id,
        "tokenType": "Bearer",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, Printer, Query};

    fn session(subs: Vec<Value>) -> Session {
        Session {
            server: "https://127.0.0.1:8443".into(),
            ca_file: None,
            tenant: "contoso.test".into(),
            tenant_id: "11111111-1111-1111-1111-111111111111".into(),
            user: "admin@contoso.test".into(),
            client_id: usher_client::CLI_CLIENT_ID.into(),
            access_token: "a".into(),
            refresh_token: None,
            expires_on: 0,
            subscriptions: subs,
        }
    }

    #[test]
    fn show_without_subscriptions_is_the_tenant() {
        let v = account_show(&session(vec![]));
        assert_eq!(v["id"], "11111111-1111-1111-1111-111111111111");
        assert_eq!(v["tenantId"], "11111111-1111-1111-1111-111111111111");
        assert_eq!(v["homeTenantId"], "11111111-1111-1111-1111-111111111111");
        assert_eq!(v["environmentName"], "usher");
        assert_eq!(v["isDefault"], true);
        assert_eq!(v["state"], "Enabled");
        assert_eq!(v["user"], json!({"name": "admin@contoso.test", "type": "user"}));
    }

    #[test]
    fn show_with_subscription() {
        let sub = json!({"cloudName": "usher", "homeTenantId": "h", "id": "sub1", "isDefault": true,
            "managedByTenants": [], "name": "Default", "state": "Enabled", "tenantId": "t",
            "user": {"name": "admin@contoso.test", "type": "user"}});
        let v = account_show(&session(vec![sub]));
        assert_eq!(v["id"], "sub1");
        assert_eq!(v["name"], "Default");
        assert!(v.get("cloudName").is_none());
    }

    #[test]
    fn seed_query_prints_the_user_name() -> Result<()> {
        let printer = Printer {
            format: OutputFormat::Tsv,
            query: Some(Query::compile("user.name").map_err(anyhow::Error::msg)?),
            color: false,
        };
        assert_eq!(
            printer.render(&account_show(&session(vec![])))?,
            "admin@contoso.test\n"
        );
        Ok(())
    }

    #[test]
    fn expiry_text_and_scope() {
        assert_eq!(expires_on_text(0), "1970-01-01 00:00:00.000000");
        assert_eq!(resource_scope("api://app/"), "api://app/.default");
        assert_eq!(
            resource_scope("372140e0-b3b7-4226-8ef9-d57986796201"),
            "372140e0-b3b7-4226-8ef9-d57986796201/.default"
        );
    }
}
