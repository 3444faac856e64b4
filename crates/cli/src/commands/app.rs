//! `usher ad app ...` (Graph `/v1.0/applications`).

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use usher_client::Client;

use crate::cli::{AppCommand, AppCreateArgs, CredentialCommand};
use crate::commands::{get_by_id_or, item_path, object_id, sp};
use crate::context::Context;

const APPS: &str = "/v1.0/applications";

/// Runs an `app` command.
pub async fn run(ctx: &Context, cmd: AppCommand) -> Result<()> {
    let (client, session) = ctx.api().await?;
    match cmd {
        AppCommand::Create(args) => ctx.print(&client.post(APPS, &create_body(&args)).await?),
        AppCommand::List(args) => ctx.print(&Value::Array(sp::list(&client, APPS, &args).await?)),
        AppCommand::Show(args) => ctx.print(&resolve(&client, &args.id).await?),
        AppCommand::Delete(args) => {
            let id = object_id(&resolve(&client, &args.id).await?)?;
            client.delete(&item_path(APPS, &id)).await?;
            Ok(())
        }
        AppCommand::Credential(CredentialCommand::Reset(args)) => {
            let app = resolve(&client, &args.id).await?;
            let id = object_id(&app)?;
            let name = args.display_name.unwrap_or_else(|| "usher".to_string());
            let answer = client
                .post(
                    &format!("{}/addPassword", item_path(APPS, &id)),
                    &json!({"passwordCredential": {"displayName": name}}),
                )
                .await?;
            let password = answer
                .get("secretText")
                .cloned()
                .ok_or_else(|| anyhow!("the server's answer has no secretText"))?;
            ctx.print(&json!({
                "appId": app.get("appId").cloned().unwrap_or(Value::Null),
                "password": password,
                "tenant": session.tenant_id,
            }))
        }
    }
}

/// An application by object id or app id.
pub async fn resolve(client: &Client, id: &str) -> Result<Value> {
    get_by_id_or(client, APPS, "appId", "application", id).await
}

/// The Graph body of `app create`.
pub fn create_body(args: &AppCreateArgs) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("displayName".into(), json!(args.display_name));
    if !args.identifier_uris.is_empty() {
        body.insert("identifierUris".into(), json!(args.identifier_uris));
    }
    if !args.web_redirect_uris.is_empty() {
        body.insert("web".into(), json!({"redirectUris": args.web_redirect_uris}));
    }
    if !args.public_client_redirect_uris.is_empty() {
        body.insert(
            "publicClient".into(),
            json!({"redirectUris": args.public_client_redirect_uris}),
        );
    }
    if let Some(public) = args.is_fallback_public_client {
        body.insert("isFallbackPublicClient".into(), json!(public));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_shape() {
        let args = AppCreateArgs {
            display_name: "web".into(),
            web_redirect_uris: vec!["https://a/cb".into()],
            public_client_redirect_uris: vec![],
            identifier_uris: vec!["api://web".into()],
            is_fallback_public_client: None,
        };
        assert_eq!(
            create_body(&args),
            json!({"displayName": "web", "identifierUris": ["api://web"], "web": {"redirectUris": ["https://a/cb"]}})
        );
    }
}
