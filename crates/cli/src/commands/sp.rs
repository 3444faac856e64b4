//! `usher ad sp ...` (Graph `/v1.0/servicePrincipals`).

use anyhow::Result;
use serde_json::{Value, json};
use usher_client::Client;

use crate::cli::{SpCommand, SpListArgs};
use crate::commands::{eq_filter, get_by_id_or, item_path, object_id};
use crate::context::Context;

const SPS: &str = "/v1.0/servicePrincipals";

/// Runs an `sp` command.
pub async fn run(ctx: &Context, cmd: SpCommand) -> Result<()> {
    let (client, _session) = ctx.api().await?;
    match cmd {
        SpCommand::List(args) => ctx.print(&Value::Array(list(&client, SPS, &args).await?)),
        SpCommand::Show(args) => ctx.print(&resolve(&client, &args.id).await?),
        SpCommand::Create(args) => ctx.print(&client.post(SPS, &json!({"appId": args.id})).await?),
        SpCommand::Delete(args) => {
            let id = object_id(&resolve(&client, &args.id).await?)?;
            client.delete(&item_path(SPS, &id)).await?;
            Ok(())
        }
    }
}

/// A service principal by app id or object id.
pub async fn resolve(client: &Client, id: &str) -> Result<Value> {
    get_by_id_or(client, SPS, "appId", "service principal", id).await
}

/// Lists service principals or applications: `--app-id` and `--filter` become `$filter`,
/// `--display-name` becomes `$search="displayName:..."`; the answer is also filtered here.
pub async fn list(client: &Client, collection: &str, args: &SpListArgs) -> Result<Vec<Value>> {
    let mut filters = Vec::new();
    if let Some(app_id) = &args.app_id {
        filters.push(eq_filter("appId", app_id));
    }
    if let Some(f) = &args.filter {
        filters.push(f.clone());
    }
    let filter = filters.join(" and ");
    let search = args
        .display_name
        .as_ref()
        .map(|n| format!("\"displayName:{}\"", n.replace('"', "")));
    let mut query: Vec<(&str, &str)> = Vec::new();
    if !filter.is_empty() {
        query.push(("$filter", filter.as_str()));
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &search {
        query.push(("$search", s.as_str()));
        headers.push(("ConsistencyLevel", "eventual"));
    }
    let mut items = client.list(collection, &query, &headers, None).await?;
    if let Some(app_id) = &args.app_id {
        items.retain(|i| {
            i.get("appId")
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(app_id))
        });
    }
    if let Some(name) = &args.display_name {
        let name = name.to_lowercase();
        items.retain(|i| {
            i.get("displayName")
                .and_then(Value::as_str)
                .is_some_and(|v| v.to_lowercase().contains(&name))
        });
    }
    Ok(items)
}
