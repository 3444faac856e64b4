//! `usher ad group ...` (Graph `/v1.0/groups`).

use anyhow::Result;
use serde_json::{Value, json};
use usher_client::Client;

use crate::cli::{GroupCommand, GroupCreateArgs, GroupListArgs, MemberCommand};
use crate::commands::{eq_filter, get_by_id_or, item_path, object_id};
use crate::context::Context;

const GROUPS: &str = "/v1.0/groups";

/// Runs a `group` command.
pub async fn run(ctx: &Context, cmd: GroupCommand) -> Result<()> {
    let (client, _session) = ctx.api().await?;
    match cmd {
        GroupCommand::Create(args) => ctx.print(&client.post(GROUPS, &create_body(&args)).await?),
        GroupCommand::List(args) => ctx.print(&Value::Array(list(&client, &args).await?)),
        GroupCommand::Show(args) => ctx.print(&resolve(&client, &args.group).await?),
        GroupCommand::Delete(args) => {
            let id = object_id(&resolve(&client, &args.group).await?)?;
            client.delete(&item_path(GROUPS, &id)).await?;
            Ok(())
        }
        GroupCommand::Member(cmd) => member(ctx, &client, cmd).await,
    }
}

/// The Graph body of `group create` (a security group, as az creates).
pub fn create_body(args: &GroupCreateArgs) -> Value {
    let mut body = json!({
        "displayName": args.display_name,
        "mailNickname": args.mail_nickname,
        "mailEnabled": false,
        "securityEnabled": true,
    });
    if let (Some(d), Some(map)) = (&args.description, body.as_object_mut()) {
        map.insert("description".into(), json!(d));
    }
    body
}

async fn list(client: &Client, args: &GroupListArgs) -> Result<Vec<Value>> {
    let mut filters = Vec::new();
    if let Some(name) = &args.display_name {
        filters.push(eq_filter("displayName", name));
    }
    if let Some(f) = &args.filter {
        filters.push(f.clone());
    }
    let filter = filters.join(" and ");
    let query: Vec<(&str, &str)> = if filter.is_empty() {
        vec![]
    } else {
        vec![("$filter", filter.as_str())]
    };
    let mut items = client.list(GROUPS, &query, &[], None).await?;
    if let Some(name) = &args.display_name {
        items.retain(|i| {
            i.get("displayName")
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(name))
        });
    }
    Ok(items)
}

/// A group by object id or display name.
pub async fn resolve(client: &Client, group: &str) -> Result<Value> {
    get_by_id_or(client, GROUPS, "displayName", "group", group).await
}

/// The `@odata.id` reference of a directory object on this server.
pub fn member_ref(client: &Client, member_id: &str) -> Value {
    json!({
        "@odata.id": format!(
            "{}/v1.0/directoryObjects/{}",
            client.server_str(),
            usher_client::encode_path_segment(member_id)
        )
    })
}

async fn member(ctx: &Context, client: &Client, cmd: MemberCommand) -> Result<()> {
    match cmd {
        MemberCommand::Add(args) => {
            let gid = object_id(&resolve(client, &args.group).await?)?;
            client
                .post(
                    &format!("{}/members/$ref", item_path(GROUPS, &gid)),
                    &member_ref(client, &args.member_id),
                )
                .await?;
            Ok(())
        }
        MemberCommand::Remove(args) => {
            let gid = object_id(&resolve(client, &args.group).await?)?;
            client
                .delete(&format!(
                    "{}/members/{}/$ref",
                    item_path(GROUPS, &gid),
                    usher_client::encode_path_segment(&args.member_id)
                ))
                .await?;
            Ok(())
        }
        MemberCommand::List(args) => {
            let gid = object_id(&resolve(client, &args.group).await?)?;
            let members = client
                .list(&format!("{}/members", item_path(GROUPS, &gid)), &[], &[], None)
                .await?;
            ctx.print(&Value::Array(members))
        }
        MemberCommand::Check(args) => {
            let gid = object_id(&resolve(client, &args.group).await?)?;
            let members = client
                .list(
                    &format!("{}/transitiveMembers", item_path(GROUPS, &gid)),
                    &[],
                    &[],
                    None,
                )
                .await?;
            let found = members.iter().any(|m| {
                m.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.eq_ignore_ascii_case(&args.member_id))
            });
            ctx.print(&json!({"value": found}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_shape() {
        let args = GroupCreateArgs {
            display_name: "Admins".into(),
            mail_nickname: "admins".into(),
            description: Some("d".into()),
        };
        let v = create_body(&args);
        assert_eq!(v["displayName"], "Admins");
        assert_eq!(v["securityEnabled"], true);
        assert_eq!(v["description"], "d");
    }

    #[test]
    fn member_reference() -> Result<()> {
        let c = Client::new("https://127.0.0.1:8443/", None)?;
        assert_eq!(
            member_ref(&c, "abc"),
            json!({"@odata.id": "https://127.0.0.1:8443/v1.0/directoryObjects/abc"})
        );
        Ok(())
    }
}
