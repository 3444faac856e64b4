//! `usher-agent status` (the seed's `dsregcmd /status`): reads only the state directory, so it
//! works while `run` is running and when the server is away.

use anyhow::Result;
use serde_json::{Value, json};

use crate::state::StateDir;

/// The status as JSON (keys as the seed's tool names them).
pub fn status_json(state: &StateDir) -> Result<Value> {
    let joined = state.joined()?;
    let status = state.status()?;
    let extensions: Vec<Value> = status
        .extensions
        .values()
        .map(|e| {
            json!({
                "Name": e.name, "Type": e.kind, "Handler": e.handler, "State": e.state,
                "Code": e.code, "Message": e.message, "Generation": e.generation,
                "Time": usher_core::rfc3339(e.time), "Reported": e.reported,
            })
        })
        .collect();
    Ok(json!({
        "DeviceJoined": if status.device_id.is_some() { "YES" } else { "NO" },
        "MachineJoined": if joined.is_some() { "YES" } else { "NO" },
        "TenantId": joined.as_ref().map(|j| j.tenant_id.clone()).unwrap_or_default(),
        "DeviceId": status.device_id.clone().unwrap_or_default(),
        "DeviceName": joined.as_ref().map(|j| j.hostname.clone()).unwrap_or_default(),
        "VmResourceId": joined.as_ref().map(|j| j.vm_resource_id.clone()).unwrap_or_default(),
        "Server": joined.as_ref().map(|j| j.server.clone()).unwrap_or_default(),
        "Extensions": extensions,
        "LastContact": status.last_contact.map(usher_core::rfc3339).unwrap_or_default(),
        "ImdsAddress": status.imds_address.clone().unwrap_or_default(),
        "CachedLogins": std::fs::read(state.logins_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["logins"].as_array().map(Vec::len))
            .unwrap_or(0),
        "ArcAddress": status.arc_address.clone().unwrap_or_default(),
        // Directory users signed in on this machine now (PAM sessions the agent recorded).
        "SignedInUsers": signed_in_users(state),
    }))
}

/// The users with live sessions, each with how many, from the agent's session list (sessions
/// whose process is gone are not counted).
fn signed_in_users(state: &StateDir) -> Value {
    let sessions: Vec<crate::local::LiveSession> = std::fs::read(state.sessions_path())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut users: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for s in sessions {
        if crate::local::process_start(s.pid) == Some(s.start) {
            *users.entry(s.user).or_default() += 1;
        }
    }
    serde_json::to_value(users).unwrap_or(Value::Null)
}

/// The status as text, one `Name : value` per line.
pub fn status_text(v: &Value) -> String {
    let mut out = String::from(
        "+----------------------------------------------------------------------+\n| Device State                                                         |\n+----------------------------------------------------------------------+\n\n",
    );
    for k in [
        "DeviceJoined",
        "MachineJoined",
        "TenantId",
        "DeviceId",
        "DeviceName",
        "VmResourceId",
        "Server",
        "LastContact",
        "ImdsAddress",
        "ArcAddress",
    ] {
        out.push_str(&format!("{k:>20} : {}\n", v[k].as_str().unwrap_or_default()));
    }
    out.push_str("\n+----------------------------------------------------------------------+\n| Extensions                                                           |\n+----------------------------------------------------------------------+\n\n");
    match v["Extensions"].as_array() {
        Some(list) if !list.is_empty() => {
            for e in list {
                out.push_str(&format!(
                    "{:>20} : {} ({}), generation {}, code {}\n{:>20}   {}\n",
                    e["Name"].as_str().unwrap_or_default(),
                    e["State"].as_str().unwrap_or_default(),
                    e["Type"].as_str().unwrap_or_default(),
                    e["Generation"],
                    e["Code"],
                    "",
                    e["Message"].as_str().unwrap_or_default()
                ));
            }
        }
        _ => out.push_str("                none\n"),
    }
    out.push_str("\n+----------------------------------------------------------------------+\n| User State                                                           |\n+----------------------------------------------------------------------+\n\n");
    out.push_str(&format!("{:>20} : {}\n", "CachedLogins", v["CachedLogins"]));
    match v["SignedInUsers"].as_object() {
        Some(users) if !users.is_empty() => {
            for (user, n) in users {
                out.push_str(&format!("{user:>20} : signed in ({n} session(s))\n"));
            }
        }
        _ => out.push_str(&format!("{:>20} : none\n", "SignedInUsers")),
    }
    out
}
