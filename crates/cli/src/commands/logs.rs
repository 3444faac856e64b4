//! `usher ad signin list` and `usher ad audit list` (Graph `/v1.0/auditLogs`).

use anyhow::Result;
use serde_json::Value;

use crate::cli::{AuditCommand, SigninCommand};
use crate::commands::eq_filter;
use crate::context::Context;

/// `usher ad signin list`.
pub async fn signins(ctx: &Context, cmd: SigninCommand) -> Result<()> {
    let SigninCommand::List(args) = cmd;
    let (client, _session) = ctx.api().await?;
    let filter = args.upn.as_deref().map(|u| eq_filter("userPrincipalName", u));
    let top = args.top.map(|n| n.to_string());
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(f) = &filter {
        query.push(("$filter", f.as_str()));
    }
    if let Some(t) = &top {
        query.push(("$top", t.as_str()));
    }
    let mut items = client
        .list("/v1.0/auditLogs/signIns", &query, &[], args.top)
        .await?;
    if let Some(upn) = &args.upn {
        items.retain(|i| {
            i.get("userPrincipalName")
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case(upn))
        });
    }
    ctx.print(&Value::Array(items))
}

/// `usher ad audit list`.
pub async fn audits(ctx: &Context, cmd: AuditCommand) -> Result<()> {
    let AuditCommand::List(args) = cmd;
    let (client, _session) = ctx.api().await?;
    let top = args.top.map(|n| n.to_string());
    let query: Vec<(&str, &str)> = top.iter().map(|t| ("$top", t.as_str())).collect();
    let items = client
        .list("/v1.0/auditLogs/directoryAudits", &query, &[], args.top)
        .await?;
    ctx.print(&Value::Array(items))
}
