//! `usher ssh vm` and `usher ssh config` (SPEC L1, L3, T7): the machine is found with a login role
//! only, the user allows the first connection (kept on the server), an ephemeral key gets a
//! one-hour certificate bound to that machine, and the system's `ssh` connects to the machine's
//! device name, trusting hosts through the tenant's host CA in `$USHER_CONFIG_DIR/known_hosts`
//! (never `~/.ssh`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use usher_client::Client;
use usher_core::well_known::VM_SIGN_IN_APP_ID as VM_SIGN_IN_APP;
use usher_proto::local::IP_ADDRESS_TEXT;

use crate::cli::{SshCommand, SshConfigArgs, SshTargetArgs, SshVmArgs};
use crate::commands::arm::{resource_group_scope, subscription_id};
use crate::config::Session;
use crate::context::Context;

/// Runs `usher ssh ...`.
pub async fn run(ctx: &Context, cmd: SshCommand) -> Result<()> {
    match cmd {
        SshCommand::Vm(args) => {
            let code = ssh_vm(ctx, args).await?;
            // The exit status is ssh's (the key and certificate are already removed).
            std::process::exit(code);
        }
        SshCommand::Config(args) => ssh_config(ctx, args).await,
    }
}

fn is_ip(text: &str) -> bool {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    t.parse::<std::net::IpAddr>().is_ok()
}

/// What the server is asked for: the VM's id, or the host name.
fn machine_of(args: &SshTargetArgs, session: &Session) -> Result<String> {
    match (&args.hostname, &args.resource_group, &args.name) {
        (Some(h), None, None) => {
            if is_ip(h) {
                bail!("{IP_ADDRESS_TEXT}");
            }
            Ok(h.trim().to_owned())
        }
        (None, Some(rg), Some(name)) => {
            let sub = subscription_id(&args.subscription, session)?;
            Ok(format!(
                "{}/providers/Microsoft.Compute/virtualMachines/{name}",
                resource_group_scope(&sub, rg)
            ))
        }
        _ => bail!("name the machine with --resource-group and --name, or with --hostname"),
    }
}

/// The machine as the server describes it to this user (refused with L6's text without a role).
async fn target(client: &Client, machine: &str) -> Result<Value> {
    client
        .get_query("/usher/ssh/target", &[("machine", machine)])
        .await
        .map_err(|e| {
            anyhow!(
                "{}",
                e.entra()
                    .map_or_else(|| e.to_string(), |x| x.message().to_owned())
            )
        })
}

/// Asks (or, with `--yes`, records) the first-connection consent (SPEC L3).
async fn ensure_consent(client: &Client, t: &Value, upn: &str, yes: bool) -> Result<()> {
    if t["consented"] == true {
        return Ok(());
    }
    let host = t["hostname"].as_str().unwrap_or_default();
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "This is your first sign-in to '{host}': allow it with --yes (or run interactively to be asked)."
            );
        }
        eprint!("Allow {upn} to sign in to '{host}'? Your answer is kept for 30 days. [y/N] ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            bail!("Not allowed: nothing was sent to '{host}'.");
        }
    }
    client
        .post("/usher/ssh/consent", &json!({"machine": t["deviceId"]}))
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// A fresh key, and its certificate for the device (spends and rotates the cached refresh token).
async fn certificate(
    ctx: &Context,
    client: &Client,
    device_id: &str,
) -> Result<(usher_crypto::ssh::SshUserKey, String)> {
    let seed: [u8; 32] = rand::random();
    let key = usher_crypto::ssh::SshUserKey::from_seed(&seed).map_err(|e| anyhow!("{e}"))?;
    let jwk = key.public_jwk().to_string();
    let _lock = ctx.config.lock()?;
    let mut session = ctx.session()?;
    let refresh = session
        .refresh_token
        .clone()
        .ok_or_else(|| anyhow!("No refresh token is cached. Please run 'usher login' to sign in."))?;
    let tenant = if session.tenant_id.is_empty() {
        session.tenant.clone()
    } else {
        session.tenant_id.clone()
    };
    let scope = format!("{VM_SIGN_IN_APP}/.default offline_access");
    let mut refresh = refresh;
    let mut stepped_up = false;
    let tokens = loop {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", session.client_id.as_str()),
            ("refresh_token", refresh.as_str()),
            ("scope", scope.as_str()),
            ("token_type", "ssh-cert"),
            ("req_cnf", jwk.as_str()),
            ("device_id", device_id),
        ];
        match client.token_request(&tenant, &form).await {
            Ok(t) => break t,
            Err(e) => {
                let code = e.entra().and_then(usher_client::EntraError::aadsts);
                let message = e
                    .entra()
                    .map_or_else(|| e.to_string(), |x| x.message().to_owned());
                match code {
                    // Step-up (Conditional Access or per-user MFA, or sign-in frequency): sign in
                    // again for the VM Sign-In app, once, then ask again with that sign-in.
                    Some(50076 | 70044) if !stepped_up => {
                        stepped_up = true;
                        eprintln!(
                            "Signing in to this machine needs a stronger or fresher sign-in: {}",
                            message.lines().next().unwrap_or_default()
                        );
                        let fresh = super::login::device_code_flow(client, &tenant, &scope).await?;
                        refresh = fresh.refresh_token.clone().ok_or_else(|| {
                            anyhow!("the server answered the sign-in without a refresh token")
                        })?;
                        session.refresh_token = Some(refresh.clone());
                        ctx.config.save(&session)?;
                    }
                    Some(53003) => bail!(
                        "{} ({})",
                        usher_proto::local::NO_ROLE_TEXT,
                        message.lines().next().unwrap_or_default()
                    ),
                    _ => bail!("{message}"),
                }
            }
        }
    };
    if let Some(rotated) = &tokens.refresh_token {
        session.refresh_token = Some(rotated.clone());
        ctx.config.save(&session)?;
    }
    if tokens.token_type != "ssh-cert" {
        bail!(
            "the server answered with a '{}' token instead of an SSH certificate",
            tokens.token_type
        );
    }
    let cert = format!("ssh-ed25519-cert-v01@openssh.com {} usher", tokens.access_token);
    Ok((key, cert))
}

/// `$USHER_CONFIG_DIR/known_hosts`, holding the tenant's host CA.
async fn known_hosts(ctx: &Context, client: &Client) -> Result<PathBuf> {
    let ca = client.get("/usher/ssh/ca").await.map_err(|e| anyhow!("{e}"))?;
    let line = ca["knownHosts"]
        .as_str()
        .context("the server published no host CA")?;
    ctx.config.ensure_dir()?;
    let path = ctx.config.path().join("known_hosts");
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if !current.lines().any(|l| l == line) {
        // Our file: the tenant's CA line replaces an older one.
        let kept: Vec<&str> = current
            .lines()
            .filter(|l| !l.contains("usher-host-ca-"))
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

fn write_private(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Writes `DIR/NAME` (the private key) and `DIR/NAME-cert.pub`, both 0600.
fn write_pair(
    dir: &Path,
    name: &str,
    upn: &str,
    key: &usher_crypto::ssh::SshUserKey,
    cert: &str,
) -> Result<(PathBuf, PathBuf)> {
    let key_path = dir.join(name);
    let cert_path = dir.join(format!("{name}-cert.pub"));
    write_private(&key_path, &key.to_openssh_private(upn, rand::random()), 0o600)?;
    write_private(&cert_path, &format!("{cert}\n"), 0o600)?;
    Ok((key_path, cert_path))
}

/// Checks the system's OpenSSH is 7.8 or later (SPEC L10).
fn check_openssh() -> Result<()> {
    let out = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .context("the system's ssh (OpenSSH 7.8 or later) is needed: install openssh-client")?;
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let version = text.split("OpenSSH_").nth(1).and_then(|v| {
        let mut parts = v.split(|c: char| !c.is_ascii_digit());
        Some((
            parts.next()?.parse::<u32>().ok()?,
            parts.next()?.parse::<u32>().ok()?,
        ))
    });
    match version {
        Some(v) if v >= (7, 8) => Ok(()),
        Some((a, b)) => bail!("OpenSSH {a}.{b} is too old: usher ssh needs OpenSSH 7.8 or later."),
        None => Ok(()),
    }
}

/// What both commands need before ssh runs: the machine, allowed (SPEC L3), the host CA in
/// `known_hosts`, and a fresh key with its certificate.
struct Prepared {
    host: String,
    upn: String,
    known: PathBuf,
    key: usher_crypto::ssh::SshUserKey,
    cert: String,
}

async fn prepare(ctx: &Context, target_args: &SshTargetArgs, yes: bool) -> Result<Prepared> {
    let (client, session) = ctx.api().await?;
    let machine = machine_of(target_args, &session)?;
    let t = target(&client, &machine).await?;
    let host = t["hostname"]
        .as_str()
        .context("the server named no host")?
        .to_owned();
    let device = t["deviceId"]
        .as_str()
        .context("the server named no device")?
        .to_owned();
    ensure_consent(&client, &t, &session.user, yes).await?;
    let known = known_hosts(ctx, &client).await?;
    let (key, cert) = certificate(ctx, &client, &device).await?;
    Ok(Prepared {
        host,
        upn: session.user,
        known,
        key,
        cert,
    })
}

async fn ssh_vm(ctx: &Context, args: SshVmArgs) -> Result<i32> {
    check_openssh()?;
    let Prepared {
        host,
        upn,
        known,
        key,
        cert,
    } = prepare(ctx, &args.target, args.yes).await?;
    let dir = tempfile::Builder::new()
        .prefix("usher-ssh-")
        .tempdir()
        .context("cannot make a private temporary directory")?;
    let (key_path, cert_path) = write_pair(dir.path(), "id", &upn, &key, &cert)?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-i")
        .arg(&key_path)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert_path.display()))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "PreferredAuthentications=publickey",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-l")
        .arg(&upn);
    if let Some(p) = args.port {
        cmd.arg("-p").arg(p.to_string());
    }
    cmd.arg(&host).args(&args.ssh_args);
    let status = cmd.status().context("cannot run ssh")?;
    drop(dir);
    Ok(status.code().unwrap_or(255))
}

async fn ssh_config(ctx: &Context, args: SshConfigArgs) -> Result<()> {
    let Prepared {
        host,
        upn,
        known,
        key,
        cert,
    } = prepare(ctx, &args.target, args.yes).await?;
    let keys = args
        .keys_dir
        .clone()
        .unwrap_or_else(|| ctx.config.path().join("ssh"));
    std::fs::create_dir_all(&keys)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700))?;
    }
    let (key_path, cert_path) = write_pair(&keys, &host, &upn, &key, &cert)?;
    let mut block = format!(
        "# usher: {host} (certificate valid for an hour: run `usher ssh config` again to renew)\nHost {host}\n  User {}\n  IdentityFile {}\n  CertificateFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
        upn,
        key_path.display(),
        cert_path.display(),
        known.display()
    );
    if let Some(p) = args.port {
        block.push_str(&format!("  Port {p}\n"));
    }
    match &args.file {
        Some(f) => {
            let current = std::fs::read_to_string(f).unwrap_or_default();
            let kept = remove_block(&current, &host);
            std::fs::write(f, format!("{kept}{block}"))
                .with_context(|| format!("cannot write {}", f.display()))?;
            eprintln!("Wrote the block for {host} to {}.", f.display());
        }
        None => print!("{block}"),
    }
    Ok(())
}

/// `text` without an earlier usher block for `host`.
fn remove_block(text: &str, host: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with(&format!("# usher: {host} ")) {
            skipping = true;
            continue;
        }
        if skipping && (line.starts_with("Host ") || line.starts_with("  ")) {
            if line.starts_with("Host ") && line != format!("Host {host}") {
                skipping = false;
            } else {
                continue;
            }
        } else {
            skipping = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_are_recognised() {
        assert!(is_ip("10.0.0.4"));
        assert!(is_ip("::1"));
        assert!(is_ip("[fe80::1]"));
        assert!(!is_ip("vm1.contoso.test"));
        assert!(!is_ip("myvm"));
    }

    #[test]
    fn config_blocks_are_replaced_not_repeated() {
        let old = "Host other\n  User x\n# usher: vm1 (certificate valid for an hour: run `usher ssh config` again to renew)\nHost vm1\n  User ann\n  Port 2222\nHost after\n  User y\n";
        let kept = remove_block(old, "vm1");
        assert_eq!(kept, "Host other\n  User x\nHost after\n  User y\n");
    }
}
