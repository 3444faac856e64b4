//! `usher group create|show|list|delete|exists` (ARM `/subscriptions/{sub}/resourceGroups`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::cli::{ResourceGroupCommand, ResourceGroupCreateArgs, ResourceGroupNameArgs};
use crate::commands::arm::{
    self, RESOURCES_API_VERSION, resource_group_scope, subscription_id, subscription_scope,
};
use crate::context::Context;

/// The error when a deletion needs confirmation and nobody can give it (knack's wording).
pub const NO_TTY: &str = "Unable to prompt for confirmation as no tty available. Use --yes.";

/// Runs a `group` command.
pub async fn run(ctx: &Context, cmd: ResourceGroupCommand) -> Result<()> {
    let (client, session) = ctx.api().await?;
    match cmd {
        ResourceGroupCommand::Create(args) => {
            let sub = subscription_id(&args.subscription, &session)?;
            let group = arm::send(
                &client,
                Method::PUT,
                &resource_group_scope(&sub, &args.name),
                RESOURCES_API_VERSION,
                &[],
                Some(&create_body(&args)),
            )
            .await?;
            ctx.print(&group)
        }
        ResourceGroupCommand::Show(args) => {
            let path = path_of(&args, &session)?;
            let group = arm::send(&client, Method::GET, &path, RESOURCES_API_VERSION, &[], None).await?;
            ctx.print(&group)
        }
        ResourceGroupCommand::List(args) => {
            let sub = subscription_id(&args, &session)?;
            let path = format!("{}/resourceGroups", subscription_scope(&sub));
            let groups = arm::list(&client, &path, RESOURCES_API_VERSION, &[]).await?;
            ctx.print(&Value::Array(groups))
        }
        ResourceGroupCommand::Delete(args) => {
            let path = path_of(&args.group, &session)?;
            if !args.yes {
                confirm()?;
            }
            arm::send(&client, Method::DELETE, &path, RESOURCES_API_VERSION, &[], None).await?;
            Ok(())
        }
        ResourceGroupCommand::Exists(args) => {
            let path = path_of(&args, &session)?;
            let exists = match arm::send(&client, Method::HEAD, &path, RESOURCES_API_VERSION, &[], None).await
            {
                Ok(_) => true,
                Err(e)
                    if e.downcast_ref::<usher_client::Error>()
                        .and_then(usher_client::Error::status)
                        == Some(404) =>
                {
                    false
                }
                Err(e) => return Err(e),
            };
            ctx.print(&json!(exists))
        }
    }
}

fn path_of(args: &ResourceGroupNameArgs, session: &crate::config::Session) -> Result<String> {
    let sub = subscription_id(&args.subscription, session)?;
    Ok(resource_group_scope(&sub, &args.name))
}

/// The ARM body of `group create`: `{"location", "tags"?}`.
pub fn create_body(args: &ResourceGroupCreateArgs) -> Value {
    let mut body = json!({"location": args.location});
    if let (Some(tags), Some(map)) = (&args.tags, body.as_object_mut()) {
        map.insert("tags".into(), Value::Object(parse_tags(tags)));
    }
    body
}

/// `key[=value]` pairs as az parses `--tags` (a bare key gets an empty value; `""` clears).
pub fn parse_tags(tags: &[String]) -> Map<String, Value> {
    tags.iter()
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (t.clone(), json!("")),
        })
        .collect()
}

/// Asks "Are you sure" on the terminal; refuses when stdin is not a terminal.
pub fn confirm() -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(anyhow!(NO_TTY));
    }
    eprint!("Are you sure you want to perform this operation? (y/n): ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(anyhow!("Operation cancelled."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::SubscriptionArg;

    #[test]
    fn body_and_tags() {
        let mut args = ResourceGroupCreateArgs {
            name: "rg".into(),
            location: "southcentralus".into(),
            tags: None,
            subscription: SubscriptionArg { subscription: None },
        };
        assert_eq!(create_body(&args), json!({"location": "southcentralus"}));
        args.tags = Some(vec!["env=prod".into(), "owner".into(), "a=b=c".into()]);
        assert_eq!(
            create_body(&args),
            json!({"location": "southcentralus", "tags": {"env": "prod", "owner": "", "a": "b=c"}})
        );
        args.tags = Some(vec![String::new()]);
        assert_eq!(
            create_body(&args),
            json!({"location": "southcentralus", "tags": {}})
        );
    }
}
