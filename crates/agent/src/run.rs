//! `usher-agent run`: IMDS (and the Arc-style endpoint), and the extension loop that follows the
//! VM's desired extensions by long poll, reconnecting with backoff.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::api::Api;
use crate::config::AgentConfig;
use crate::handler::{self, Machine, RunLog};
use crate::imds::{self, Imds};
use crate::state::{ExtensionState, StateDir};

/// How long one long poll waits at the server.
const POLL_WAIT_SECS: u64 = 50;

/// Where the Arc-style challenge files live (the path MSAL and azure-identity read).
pub const ARC_TOKEN_DIR: &str = "/var/opt/azcmagent/tokens";

/// Adds 169.254.169.254 to the loopback interface (IMDS's well-known address), if missing.
fn ensure_link_local(addr: &SocketAddr) -> Result<()> {
    let ip = addr.ip().to_string();
    if ip != "169.254.169.254" {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["addr", "add", "169.254.169.254/32", "dev", "lo"])
        .output()
        .context("cannot run `ip` to add 169.254.169.254 to the loopback interface")?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains("File exists") || err.contains("already assigned") {
        Ok(())
    } else {
        anyhow::bail!(
            "cannot add 169.254.169.254 to the loopback interface: {}",
            err.trim()
        )
    }
}

/// The Arc-style challenge file: random content, root only.
fn arc_secret() -> Result<(String, String)> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(ARC_TOKEN_DIR).with_context(|| format!("cannot create {ARC_TOKEN_DIR}"))?;
    std::fs::set_permissions(ARC_TOKEN_DIR, std::fs::Permissions::from_mode(0o700))?;
    let name = uuid::Uuid::new_v4().simple().to_string();
    let path = format!("{ARC_TOKEN_DIR}/{name}.key");
    let secret = usher_crypto::b64url(uuid::Uuid::new_v4().as_bytes())
        + &usher_crypto::b64url(uuid::Uuid::new_v4().as_bytes());
    crate::state::write_atomic(std::path::Path::new(&path), secret.as_bytes(), 0o600)?;
    Ok((path, secret))
}

async fn serve(addr: SocketAddr, router: axum::Router) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "IMDS stopped");
        }
    }))
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(
    state: StateDir,
    config: AgentConfig,
    imds_address: Option<SocketAddr>,
    arc_address: Option<SocketAddr>,
) -> Result<()> {
    let joined = state.joined()?.context(
        "this machine is not joined: run `usher-agent join --server URL --ca-file F --token T` first",
    )?;
    let der =
        std::fs::read(state.key_path()).context("the machine key is missing from the state directory")?;
    let key = usher_crypto::jwt::SigningKey::from_pkcs8("machine", &der)
        .map_err(|e| anyhow::anyhow!("the machine key is damaged: {e}"))?;
    let api = Arc::new(Api::new(
        &joined.server,
        &state.ca_path(),
        key,
        &joined.vm_resource_id,
        &joined.audience,
    )?);
    let arc = match arc_address {
        Some(_) => Some(arc_secret()?),
        None => None,
    };
    let imds = Arc::new(Imds::new(api.clone(), arc.clone()));
    let mut tasks = Vec::new();
    if let Some(addr) = imds_address {
        ensure_link_local(&addr)?;
        tasks.push(serve(addr, imds::router(imds.clone(), false)).await?);
        tracing::info!(%addr, "IMDS listening");
    }
    if let Some(addr) = arc_address {
        tasks.push(serve(addr, imds::router(imds.clone(), true)).await?);
        tracing::info!(%addr, "Arc-style identity endpoint listening");
    }
    let mut status = state.status()?;
    status.imds_address = imds_address.map(|a| a.to_string());
    status.arc_address = arc_address.map(|a| a.to_string());
    state.save_status(&status)?;
    let login_state = Arc::new(crate::local::LoginState::new(
        api.clone(),
        config.clone(),
        std::path::Path::new("/"),
        &state.logins_path(),
        &state.sessions_path(),
    ));
    tasks.push(tokio::spawn({
        let ls = login_state.clone();
        async move {
            if let Err(e) = ls.serve().await {
                tracing::error!(error = %format!("{e:#}"), "the local socket stopped");
            }
        }
    }));
    if crate::nssfiles::login_installed(std::path::Path::new("/")) {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = crate::handler::renew_host_certificate(&api, std::path::Path::new("/")).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot renew the host certificate");
            }
        }));
    }
    tasks.push(tokio::spawn(session_lock_loop(api.clone(), login_state.clone())));
    let logins = tokio::spawn(login_cache_loop(
        api.clone(),
        state.clone(),
        login_state,
        config.shell(),
    ));
    let looper = tokio::spawn(extension_loop(api, state.clone(), config));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    looper.abort();
    logins.abort();
    for t in tasks {
        t.abort();
    }
    if let Some((path, _)) = arc {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Disconnects idle sessions (SPEC L7): a look every second at each session's I/O.
async fn session_lock_loop(api: Arc<Api>, logins: Arc<crate::local::LoginState>) {
    let mut activity = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if logins.idle_limit().is_none() {
            activity.clear();
            continue;
        }
        // Reading /proc and ending sessions blocks: off the async workers.
        let ls = logins.clone();
        let Ok((back, locked)) = tokio::task::spawn_blocking(move || {
            let locked = ls.lock_idle_sessions(&mut activity);
            (activity, locked)
        })
        .await
        else {
            tracing::error!("the session lock check failed");
            activity = std::collections::HashMap::new();
            continue;
        };
        activity = back;
        if !locked.is_empty() {
            crate::local::report_ended(&api, locked, "idleLock").await;
        }
    }
}

/// Keeps the login cache (`logins.json` in the state directory) in step with the server: a long
/// poll that returns as soon as users, groups or roles change.
pub async fn login_cache_loop(
    api: Arc<Api>,
    state: StateDir,
    logins: Arc<crate::local::LoginState>,
    shell: String,
) {
    let mut known = String::new();
    let mut backoff = 1u64;
    loop {
        match api.logins(&known, POLL_WAIT_SECS).await {
            Ok(v) => {
                backoff = 1;
                logins.mark_synced();
                let fp = v["fingerprint"].as_str().unwrap_or_default().to_owned();
                if fp != known {
                    // Revocation first (SPEC L8): sessions of users who lost their login end now.
                    let ended = logins.apply_snapshot(&v);
                    if !ended.is_empty() {
                        let api = api.clone();
                        tokio::spawn(async move { crate::local::report_ended(&api, ended, "revoked").await });
                    }
                    let body = serde_json::to_vec_pretty(&v).unwrap_or_default();
                    let root = std::path::Path::new("/");
                    let written =
                        crate::state::write_atomic(&state.logins_path(), &body, 0o600).and_then(|()| {
                            if crate::nssfiles::login_installed(root) {
                                crate::nssfiles::write(root, &v, &shell)
                            } else {
                                Ok(())
                            }
                        });
                    match written {
                        Ok(()) => known = fp,
                        Err(e) => tracing::error!(error = %format!("{e:#}"), "cannot write the login cache"),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = backoff, "cannot refresh the login cache");
                tokio::time::sleep(Duration::from_secs(backoff)).await;
                backoff = (backoff * 2).min(30);
            }
        }
    }
}

/// Follows the desired extensions forever.
pub async fn extension_loop(api: Arc<Api>, state: StateDir, config: AgentConfig) {
    let mut known = String::new();
    let mut backoff = 1u64;
    loop {
        // A report the server has not received yet is sent again soon, not after a long poll.
        let pending = state
            .status()
            .map(|s| s.extensions.values().any(|e| !e.reported))
            .unwrap_or(false);
        let (ask, wait) = if pending {
            tokio::time::sleep(Duration::from_secs(backoff.min(5))).await;
            (String::new(), 0)
        } else {
            (known.clone(), POLL_WAIT_SECS)
        };
        match api.extensions(&ask, wait).await {
            Ok(v) => {
                backoff = 1;
                known = v["fingerprint"].as_str().unwrap_or_default().to_owned();
                let list = v["extensions"].as_array().cloned().unwrap_or_default();
                if let Err(e) = apply(&api, &state, &config, &list).await {
                    tracing::error!(error = %format!("{e:#}"), "applying extensions failed");
                    known.clear();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = backoff, "cannot reach the server");
                tokio::time::sleep(Duration::from_secs(backoff)).await;
                backoff = (backoff * 2).min(30);
            }
        }
    }
}

fn canonical(ext: &Value) -> String {
    ext["handler"].as_str().map_or_else(
        || {
            format!(
                "{}.{}",
                ext["publisher"].as_str().unwrap_or_default(),
                ext["type"].as_str().unwrap_or_default()
            )
        },
        str::to_owned,
    )
}

/// Brings the machine to the desired extensions, reporting each outcome.
pub async fn apply(api: &Api, state: &StateDir, config: &AgentConfig, desired: &[Value]) -> Result<()> {
    let mut status = state.status()?;
    status.last_contact = Some(crate::now());
    state.save_status(&status)?;
    let machine = Machine {
        api,
        state,
        config,
        root: PathBuf::from("/"),
    };
    for ext in desired {
        let name = ext["name"].as_str().unwrap_or_default().to_owned();
        let generation = ext["generation"].as_u64().unwrap_or(0);
        let provisioning = ext["provisioningState"].as_str().unwrap_or_default();
        let handled = status.extensions.get(&name).cloned();
        if handled
            .as_ref()
            .is_some_and(|h| h.generation == generation && h.reported)
        {
            continue;
        }
        if let Some(h) = handled
            .as_ref()
            .filter(|h| h.generation == generation && !h.reported)
        {
            // Applied, but the server did not get the report: send it again.
            let (kind, code) = report_kind(h);
            if api
                .report(&name, generation, kind, code, &h.message)
                .await
                .is_ok()
            {
                mark_reported(state, &name)?;
            }
            continue;
        }
        let handler_name = canonical(ext);
        let dir = state.extension_dir(&handler_name);
        let previous_failed = handled.as_ref().is_some_and(|h| h.state == "Failed");
        let started_ms = crate::now_ms();
        let mut log = RunLog::start(&dir, previous_failed, handled.as_ref().map(|h| h.started_ms));
        let (state_text, outcome, device) =
            if ext["handler"].as_str() != Some(usher_proto::compute::LINUX_LOGIN_CANONICAL) {
                let m = format!("usher's agent does not run the extension {handler_name}.");
                log.line(&m);
                (
                    "Failed",
                    handler::Outcome {
                        exit_code: handler::EXIT_FAILED,
                        message: m,
                    },
                    None,
                )
            } else if provisioning == "Deleting" && ext["handlerOsType"].as_str() == Some("Windows") {
                // The Windows handler never installs anything on Linux: nothing to take back.
                log.line("Nothing to remove: this instance never ran on this machine.");
                (
                    "Removed",
                    handler::Outcome {
                        exit_code: 0,
                        message: "Nothing to remove.".into(),
                    },
                    None,
                )
            } else if provisioning == "Deleting" {
                let o = machine.uninstall(&mut log).await;
                (if o.exit_code == 0 { "Removed" } else { "Failed" }, o, None)
            } else {
                let (o, device) = machine.install(ext, &mut log).await;
                (if o.exit_code == 0 { "Succeeded" } else { "Failed" }, o, device)
            };
        let mut status = state.status()?;
        if state_text == "Removed" {
            status.device_id = None;
        } else if let Some(d) = device {
            status.device_id = Some(d);
        }
        let entry = ExtensionState {
            name: name.clone(),
            kind: format!(
                "{}.{}",
                ext["publisher"].as_str().unwrap_or_default(),
                ext["type"].as_str().unwrap_or_default()
            ),
            handler: handler_name,
            generation,
            state: state_text.to_owned(),
            code: outcome.exit_code,
            message: outcome.message.clone(),
            time: crate::now(),
            started_ms,
            reported: false,
        };
        status.extensions.insert(name.clone(), entry.clone());
        state.save_status(&status)?;
        let (kind, code) = report_kind(&entry);
        match api.report(&name, generation, kind, code, &outcome.message).await {
            Ok(_) => mark_reported(state, &name)?,
            Err(e) => {
                tracing::warn!(error = %e, extension = name, "the report did not reach the server; it will be sent again")
            }
        }
    }
    // Extensions the server no longer lists were removed before this machine applied them.
    let listed: Vec<&str> = desired.iter().filter_map(|e| e["name"].as_str()).collect();
    let mut status = state.status()?;
    let gone: Vec<String> = status
        .extensions
        .keys()
        .filter(|k| !listed.contains(&k.as_str()))
        .cloned()
        .collect();
    for name in gone {
        let Some(h) = status.extensions.get(&name).cloned() else {
            continue;
        };
        // Whatever the last run left (a device, files), it goes: the entry stays until it has.
        let installed_something = h.handler == usher_proto::compute::LINUX_LOGIN_CANONICAL
            && h.kind
                != format!(
                    "{}.{}",
                    usher_proto::compute::AZURE_LOGIN_EXTENSION_PUBLISHER,
                    usher_proto::compute::WINDOWS_LOGIN_EXTENSION
                )
            && (h.state == "Succeeded" || status.device_id.is_some() || h.state == "Failed");
        if installed_something {
            let mut log = RunLog::start(
                &state.extension_dir(&h.handler),
                h.state == "Failed",
                Some(h.started_ms),
            );
            let o = machine.uninstall(&mut log).await;
            tracing::info!(
                extension = name,
                code = o.exit_code,
                "removed an extension the server no longer lists"
            );
            if o.exit_code != 0 {
                continue;
            }
            status.device_id = None;
        }
        status.extensions.remove(&name);
    }
    state.save_status(&status)?;
    Ok(())
}

fn report_kind(h: &ExtensionState) -> (&'static str, i64) {
    match h.state.as_str() {
        "Succeeded" => ("Succeeded", 0),
        "Removed" => ("Removed", 0),
        _ => ("Failed", h.code),
    }
}

fn mark_reported(state: &StateDir, name: &str) -> Result<()> {
    let mut status = state.status()?;
    if let Some(e) = status.extensions.get_mut(name) {
        if e.state == "Removed" {
            status.extensions.remove(name);
        } else {
            e.reported = true;
        }
    }
    state.save_status(&status)
}
