//! `usher ca ...`: Conditional Access over Graph's `/identity/conditionalAccess` paths, what-if,
//! and user risk (`/identityProtection/riskyUsers`).

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use usher_client::Client;

use crate::cli::{
    CaCommand, CaLocationCommand, CaPolicyCommand, CaPolicyCreateArgs, CaRiskCommand, CaWhatIfArgs,
};
use crate::commands::{is_guid, item_path, object_id};
use crate::context::Context;

const POLICIES: &str = "/v1.0/identity/conditionalAccess/policies";
const LOCATIONS: &str = "/v1.0/identity/conditionalAccess/namedLocations";
const STRENGTHS: &str = "/v1.0/identity/conditionalAccess/authenticationStrength/policies";
const EVALUATE: &str = "/v1.0/identity/conditionalAccess/evaluate";
const RISKY: &str = "/v1.0/identityProtection/riskyUsers";

/// Runs a `ca` command.
pub async fn run(ctx: &Context, cmd: CaCommand) -> Result<()> {
    let (client, _session) = ctx.api().await?;
    match cmd {
        CaCommand::Policy(cmd) => policy(ctx, &client, cmd).await,
        CaCommand::Location(cmd) => location(ctx, &client, cmd).await,
        CaCommand::Strengths => ctx.print(&Value::Array(client.list(STRENGTHS, &[], &[], None).await?)),
        CaCommand::WhatIf(args) => ctx.print(&client.post(EVALUATE, &what_if_body(&args)).await?),
        CaCommand::Risk(cmd) => risk(ctx, &client, cmd).await,
    }
}

/// Reads a JSON document from a file, or standard input for `-`.
fn read_json(path: &Path) -> Result<Value> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("{} is not valid JSON: {e}", path.display()))
}

async fn policy(ctx: &Context, client: &Client, cmd: CaPolicyCommand) -> Result<()> {
    match cmd {
        CaPolicyCommand::Create(args) => {
            let body = match &args.file {
                Some(f) => read_json(f)?,
                None => policy_body(client, &args).await?,
            };
            ctx.print(&client.post(POLICIES, &body).await?)
        }
        CaPolicyCommand::List => ctx.print(&Value::Array(client.list(POLICIES, &[], &[], None).await?)),
        CaPolicyCommand::Show(a) => ctx.print(&resolve_policy(client, &a.policy).await?),
        CaPolicyCommand::Update(a) => {
            let id = object_id(&resolve_policy(client, &a.policy).await?)?;
            let mut patch = match &a.file {
                Some(f) => read_json(f)?,
                None => json!({}),
            };
            if let Some(state) = &a.state {
                patch["state"] = json!(state);
            }
            client.patch(&item_path(POLICIES, &id), &patch).await?;
            ctx.print(&client.get(&item_path(POLICIES, &id)).await?)
        }
        CaPolicyCommand::Delete(a) => {
            let id = object_id(&resolve_policy(client, &a.policy).await?)?;
            client.delete(&item_path(POLICIES, &id)).await?;
            Ok(())
        }
    }
}

/// An object of `collection` by id or display name (a name must match exactly one).
async fn resolve_named(client: &Client, collection: &str, what: &str, name: &str) -> Result<Value> {
    if is_guid(name) {
        match client.get(&item_path(collection, name)).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let matches: Vec<Value> = client
        .list(collection, &[], &[], None)
        .await?
        .into_iter()
        .filter(|p| {
            p["displayName"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .collect();
    match matches.len() {
        0 => bail!("No {what} '{name}' was found."),
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        n => bail!("{n} of them are called '{name}'; name the {what} by id."),
    }
}

/// A policy by id or display name.
async fn resolve_policy(client: &Client, policy: &str) -> Result<Value> {
    resolve_named(client, POLICIES, "Conditional Access policy", policy).await
}

/// Group names become object ids (the server takes ids; UPNs it resolves itself).
async fn group_ids(client: &Client, names: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for g in names {
        out.push(object_id(&crate::commands::group::resolve(client, g).await?)?);
    }
    Ok(out)
}

/// The Graph body of `ca policy create` from flags.
pub async fn policy_body(client: &Client, a: &CaPolicyCreateArgs) -> Result<Value> {
    let name = a
        .name
        .clone()
        .ok_or_else(|| anyhow!("--name is required without --file"))?;
    let state = match a.state.as_str() {
        "on" => "enabled",
        "report-only" | "reportOnly" => "enabledForReportingButNotEnforced",
        "off" => "disabled",
        other => other,
    };
    let mut users = json!({
        "includeUsers": a.users,
        "excludeUsers": a.exclude_users,
        "includeGroups": group_ids(client, &a.groups).await?,
        "excludeGroups": group_ids(client, &a.exclude_groups).await?,
        "includeRoles": a.roles,
    });
    if a.users.is_empty() && a.groups.is_empty() && a.roles.is_empty() {
        users["includeUsers"] = json!(["All"]);
    }
    let apps = if a.apps.is_empty() {
        vec!["All".to_owned()]
    } else {
        a.apps.clone()
    };
    let mut conditions = json!({
        "users": users,
        "applications": {"includeApplications": apps, "excludeApplications": a.exclude_apps},
        "signInRiskLevels": a.sign_in_risk,
        "userRiskLevels": a.user_risk,
        "clientAppTypes": if a.client_apps.is_empty() { vec!["all".to_owned()] } else { a.client_apps.clone() },
    });
    if !a.locations.is_empty() || !a.exclude_locations.is_empty() {
        let include = if a.locations.is_empty() {
            vec!["All".to_owned()]
        } else {
            a.locations.clone()
        };
        conditions["locations"] =
            json!({"includeLocations": include, "excludeLocations": a.exclude_locations});
    }
    if !a.platforms.is_empty() {
        conditions["platforms"] = json!({"includePlatforms": a.platforms});
    }
    let mut controls: Vec<&str> = Vec::new();
    if a.block {
        controls.push("block");
    }
    if a.mfa {
        controls.push("mfa");
    }
    if a.joined_device {
        controls.push("domainJoinedDevice");
    }
    let mut body = json!({"displayName": name, "state": state, "conditions": conditions});
    if !controls.is_empty() || a.strength.is_some() {
        let mut grant = json!({"operator": a.operator.to_ascii_uppercase(), "builtInControls": controls});
        if let Some(s) = &a.strength {
            let id = match s.to_ascii_lowercase().as_str() {
                "mfa" => usher_proto::ca::STRENGTH_MFA,
                "passwordlessmfa" | "passwordless" => usher_proto::ca::STRENGTH_PASSWORDLESS,
                "phishingresistantmfa" | "phishing-resistant" => usher_proto::ca::STRENGTH_PHISHING_RESISTANT,
                _ => s.as_str(),
            };
            grant["authenticationStrength"] = json!({"id": id});
        }
        body["grantControls"] = grant;
    }
    if let Some(h) = a.sign_in_frequency_hours {
        body["sessionControls"] =
            json!({"signInFrequency": {"isEnabled": true, "value": h, "type": "hours"}});
    }
    Ok(body)
}

async fn location(ctx: &Context, client: &Client, cmd: CaLocationCommand) -> Result<()> {
    match cmd {
        CaLocationCommand::Create(a) => {
            let ranges: Vec<Value> = a.ranges.iter().map(|r| json!({"cidrAddress": r})).collect();
            let body = json!({
                "@odata.type": "#microsoft.graph.ipNamedLocation",
                "displayName": a.name,
                "isTrusted": a.trusted,
                "ipRanges": ranges,
            });
            ctx.print(&client.post(LOCATIONS, &body).await?)
        }
        CaLocationCommand::List => ctx.print(&Value::Array(client.list(LOCATIONS, &[], &[], None).await?)),
        CaLocationCommand::Delete(a) => {
            let id = object_id(&resolve_named(client, LOCATIONS, "named location", &a.policy).await?)?;
            client.delete(&item_path(LOCATIONS, &id)).await?;
            Ok(())
        }
    }
}

/// The what-if request body.
pub fn what_if_body(a: &CaWhatIfArgs) -> Value {
    let mut body = json!({"user": a.user, "appId": a.app, "joinedDevice": a.joined_device});
    let mut set = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    };
    set("ipAddress", &a.ip);
    set("signInRiskLevel", &a.risk);
    set("userRiskLevel", &a.user_risk);
    set("devicePlatform", &a.platform);
    set("clientAppType", &a.client_app);
    if !a.methods.is_empty() {
        body["authenticationMethods"] = json!(a.methods);
    }
    body
}

async fn risk(ctx: &Context, client: &Client, cmd: CaRiskCommand) -> Result<()> {
    let (path, users) = match cmd {
        CaRiskCommand::List => return ctx.print(&Value::Array(client.list(RISKY, &[], &[], None).await?)),
        CaRiskCommand::ConfirmCompromised(a) => (format!("{RISKY}/confirmCompromised"), a.users),
        CaRiskCommand::Dismiss(a) => (format!("{RISKY}/dismiss"), a.users),
    };
    let mut ids = Vec::new();
    for u in &users {
        let user = client.get(&item_path("/v1.0/users", u)).await?;
        ids.push(object_id(&user)?);
    }
    client.post(&path, &json!({"userIds": ids})).await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn what_if_flags_become_the_request() {
        let cli = crate::cli::Cli::try_parse_from([
            "usher",
            "ca",
            "what-if",
            "--user",
            "ann@contoso.test",
            "--app",
            "372140e0-b3b7-4226-8ef9-d57986796201",
            "--ip",
            "10.0.0.1",
            "--risk",
            "high",
            "--methods",
            "pwd,otp,mfa",
        ])
        .unwrap();
        let crate::cli::Command::Ca(CaCommand::WhatIf(a)) = cli.command else {
            panic!("parsed as something else")
        };
        let b = what_if_body(&a);
        assert_eq!(b["user"], "ann@contoso.test");
        assert_eq!(b["ipAddress"], "10.0.0.1");
        assert_eq!(b["signInRiskLevel"], "high");
        assert_eq!(b["authenticationMethods"], json!(["pwd", "otp", "mfa"]));
        assert!(b.get("userRiskLevel").is_none());
    }

    #[test]
    fn file_and_flags_do_not_mix() {
        let r = crate::cli::Cli::try_parse_from([
            "usher", "ca", "policy", "create", "--file", "p.json", "--block",
        ]);
        assert!(r.is_err());
        let r = crate::cli::Cli::try_parse_from(["usher", "ca", "policy", "create", "--block"]);
        assert!(r.is_err(), "a name is needed without a file");
    }
}
