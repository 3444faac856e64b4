//! One module per command group. Each `run` function prints its result through the context's
//! printer; helpers here resolve names to objects the way the Azure CLI does.

pub mod account;
pub mod app;
pub mod arm;
pub mod ca;
pub mod group;
pub mod login;
pub mod logs;
pub mod resource_group;
pub mod role;
pub mod sp;
pub mod ssh;
pub mod user;
pub mod vm;

use anyhow::{Result, anyhow};
use serde_json::Value;
use usher_client::{Client, encode_path_segment, odata_string};

use crate::cli::{AdCommand, Command};
use crate::context::Context;

/// Runs a parsed command.
pub async fn run(ctx: &Context, command: Command) -> Result<()> {
    match command {
        Command::Login(args) => login::login(ctx, args).await,
        Command::Logout => login::logout(ctx),
        Command::Account(cmd) => account::run(ctx, cmd).await,
        Command::Ad(ad) => match ad {
            AdCommand::User(cmd) => user::run(ctx, cmd).await,
            AdCommand::Group(cmd) => group::run(ctx, cmd).await,
            AdCommand::Sp(cmd) => sp::run(ctx, cmd).await,
            AdCommand::App(cmd) => app::run(ctx, cmd).await,
            AdCommand::Signin(cmd) => logs::signins(ctx, cmd).await,
            AdCommand::Audit(cmd) => logs::audits(ctx, cmd).await,
        },
        Command::Group(cmd) => resource_group::run(ctx, cmd).await,
        Command::Role(cmd) => role::run(ctx, cmd).await,
        Command::Vm(cmd) => vm::run(ctx, cmd).await,
        Command::Ssh(cmd) => ssh::run(ctx, cmd).await,
        Command::Ca(cmd) => ca::run(ctx, cmd).await,
    }
}

/// Whether `s` looks like a GUID (an object id or app id).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `/{collection}/{id}` with the id percent-encoded.
pub fn item_path(collection: &str, id: &str) -> String {
    format!("{collection}/{}", encode_path_segment(id))
}

/// An OData equality filter `field eq 'value'`.
pub fn eq_filter(field: &str, value: &str) -> String {
    format!("{field} eq {}", odata_string(value))
}

/// The error the Azure CLI gives for a name that matches nothing.
pub fn not_found(what: &str, name: &str) -> anyhow::Error {
    anyhow!("(Request_ResourceNotFound) No {what} matches '{name}': resource '{name}' does not exist.")
}

/// Lists `collection` with `$filter=field eq 'value'` and keeps only the items whose `field`
/// really equals `value` (case-insensitively), so that a server ignoring the filter still
/// gives the right answer.
pub async fn find_by(client: &Client, collection: &str, field: &str, value: &str) -> Result<Vec<Value>> {
    let filter = eq_filter(field, value);
    let items = match client
        .list(collection, &[("$filter", filter.as_str())], &[], None)
        .await
    {
        Ok(items) => items,
        // a server that does not support this filter: list everything and filter here
        Err(e) if e.status() == Some(400) => client.list(collection, &[], &[], None).await?,
        Err(e) => return Err(e.into()),
    };
    Ok(items
        .into_iter()
        .filter(|item| {
            item.get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
        .collect())
}

/// Exactly one match, or the Azure CLI's errors for none or several.
pub fn single(mut items: Vec<Value>, what: &str, name: &str) -> Result<Value> {
    match items.len() {
        0 => Err(not_found(what, name)),
        1 => Ok(items.remove(0)),
        _ => Err(anyhow!(
            "More than one {what} match the name of '{name}'. Please use the object id instead."
        )),
    }
}

/// The `id` of a Graph object.
pub fn object_id(item: &Value) -> Result<String> {
    item.get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the server's answer has no object id: {item}"))
}

/// Fetches an object by id; falls back to a lookup by `field` (app id, display name) when the
/// id is not found or is not a GUID.
pub async fn get_by_id_or(
    client: &Client,
    collection: &str,
    field: &str,
    what: &str,
    id: &str,
) -> Result<Value> {
    if is_guid(id) || field == "appId" {
        match client.get(&item_path(collection, id)).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() || e.status() == Some(400) => {}
            Err(e) => return Err(e.into()),
        }
    }
    single(find_by(client, collection, field, id).await?, what, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids() {
        assert!(is_guid("04b07795-8ddb-461a-bbee-02f9e1bf7b46"));
        assert!(is_guid("04B07795-8DDB-461A-BBEE-02F9E1BF7B46"));
        assert!(!is_guid("alice@contoso.test"));
        assert!(!is_guid("04b07795-8ddb-461a-bbee-02f9e1bf7b4"));
        assert!(!is_guid("Admins"));
    }

    #[test]
    fn filters_and_paths() {
        assert_eq!(eq_filter("displayName", "O'Neil"), "displayName eq 'O''Neil'");
        assert_eq!(item_path("/v1.0/users", "a b@c"), "/v1.0/users/a%20b@c");
    }

    #[test]
    fn single_match() -> Result<()> {
        let one = single(vec![serde_json::json!({"id": "1"})], "group", "g")?;
        assert_eq!(object_id(&one)?, "1");
        assert!(single(vec![], "group", "g").is_err());
        let two = vec![serde_json::json!({"id": "1"}), serde_json::json!({"id": "2"})];
        assert!(single(two, "group", "g").is_err());
        Ok(())
    }
}
