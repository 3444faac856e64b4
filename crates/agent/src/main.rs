//! `usher-agent`: the program on every machine (SPEC X1–X5). It joins the machine with a one-time
//! token, serves IMDS with the VM's identity, runs the login extension, and answers `status` and
//! `doctor`.

mod api;
mod config;
mod doctor;
mod files;
mod handler;
mod imds;
mod local;
mod loginconf;
mod nssfiles;
mod run;
mod state;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{AgentConfig, CONFIG_FILE};
use crate::state::{Joined, StateDir};

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    usher_core::Clock::now_unix(&usher_core::SystemClock)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[derive(Debug, Parser)]
#[command(
    name = "usher-agent",
    version,
    about = "usher's machine agent: join, IMDS, the login extension, status and doctor"
)]
struct Cli {
    /// The state directory [default: state_dir in /etc/usher/agent.toml, else /var/lib/usher].
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join this machine to its VM with a one-time token (from `usher vm create` or `usher vm onboarding-token`).
    Join {
        /// The server's public URL.
        #[arg(long, value_name = "URL")]
        server: String,
        /// The CA certificate that signs the server's certificate.
        #[arg(long = "ca-file", value_name = "FILE")]
        ca_file: PathBuf,
        /// The join token (works once, for an hour).
        #[arg(long, value_name = "TOKEN", env = "USHER_JOIN_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Run: serve IMDS and apply the VM's extensions until stopped.
    Run {
        /// IMDS's address (HOST:PORT or `off`); 169.254.169.254 is added to the loopback interface first [default: 127.0.0.1:40342].
        #[arg(long = "imds-address", value_name = "ADDR")]
        imds_address: Option<String>,
        /// The Arc-style identity endpoint's address (HOST:PORT or `off`) [default: off].
        #[arg(long = "arc-address", value_name = "ADDR")]
        arc_address: Option<String>,
    },
    /// Show whether the machine is joined, its device and its extensions (reads the state directory only).
    Status {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Run the troubleshooting checks: IMDS, identity, the device-registration token, endpoints, login configuration, name resolution.
    Doctor {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// Ask this DNS server (an IP address) for the server's name.
        #[arg(long, value_name = "SERVER")]
        dns: Option<std::net::IpAddr>,
        /// Only list the endpoints this machine must reach.
        #[arg(long = "list-endpoints")]
        list_endpoints: bool,
        /// Print the equivalent curl and nslookup commands instead of running the checks.
        #[arg(long)]
        commands: bool,
    },
}

fn hostname() -> String {
    handler::hostname(Path::new("/"))
}

async fn join(state: &StateDir, server: &str, ca_file: &Path, token: &str) -> Result<()> {
    if let Some(j) = state.joined()? {
        let status = state.status()?;
        let login = status
            .extensions
            .values()
            .any(|e| e.handler == usher_proto::compute::LINUX_LOGIN_CANONICAL && e.state != "Removed");
        if login || status.device_id.is_some() {
            bail!(
                "this machine is joined to tenant {} (VM {}) and its login extension is installed or its device registered; remove the extension (usher vm extension delete) before joining it elsewhere",
                j.tenant_id,
                j.vm_resource_id
            );
        }
    }
    let host = hostname();
    let key = usher_crypto::jwt::SigningKey::generate("machine")
        .map_err(|e| anyhow::anyhow!("cannot create the machine key: {e}"))?;
    // The key is on disk before the token is spent: a failed write cannot waste the token.
    let pending = state.key_path().with_extension("pending");
    state::write_atomic(&pending, key.pkcs8(), 0o600)?;
    let config = match api::join(server, ca_file, token, &key, &host).await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(e);
        }
    };
    std::fs::rename(&pending, state.key_path()).context("cannot put the machine key in place")?;
    let ca = std::fs::read(ca_file).with_context(|| format!("cannot read {}", ca_file.display()))?;
    state::write_atomic(&state.ca_path(), &ca, 0o644)?;
    let joined = Joined {
        server: server.trim_end_matches('/').to_owned(),
        audience: config["agentAudience"].as_str().unwrap_or_default().to_owned(),
        tenant_id: config["tenantId"].as_str().unwrap_or_default().to_owned(),
        vm_resource_id: config["vmResourceId"].as_str().unwrap_or_default().to_owned(),
        vm_id: config["vmId"].as_str().unwrap_or_default().to_owned(),
        hostname: host.clone(),
        joined_at: now(),
    };
    state.save_joined(&joined)?;
    let mut status = state.status()?;
    status.extensions.clear();
    status.device_id = None;
    state.save_status(&status)?;
    println!(
        "Joined: this machine ('{host}') is VM {} in tenant {}{}.",
        joined.vm_resource_id,
        joined.tenant_id,
        if config["identity"].is_object() {
            format!(
                ", with identity {}",
                config["identity"]["principalId"].as_str().unwrap_or_default()
            )
        } else {
            " (the VM has no system-assigned identity yet)".to_owned()
        }
    );
    Ok(())
}

async fn main_async(cli: Cli) -> Result<ExitCode> {
    let config = AgentConfig::load(Path::new(CONFIG_FILE))?;
    let state_path = config.state_dir(cli.state_dir.as_deref());
    match cli.command {
        Command::Join {
            server,
            ca_file,
            token,
        } => {
            let state = StateDir::open(&state_path)?;
            join(&state, &server, &ca_file, token.trim()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            imds_address,
            arc_address,
        } => {
            let state = StateDir::open(&state_path)?;
            let arc = arc_address
                .or_else(|| config.arc_address.clone())
                .unwrap_or_else(|| "off".to_owned());
            // With the Arc-style endpoint on, plain IMDS (which anyone on the machine may call)
            // is off unless asked for explicitly: the challenge is the point.
            let default_imds = if config::address(&arc)?.is_some() {
                "off"
            } else {
                config::DEFAULT_IMDS_ADDRESS
            };
            let imds = imds_address
                .or_else(|| config.imds_address.clone())
                .unwrap_or_else(|| default_imds.to_owned());
            if config::address(&imds)?.is_some() && config::address(&arc)?.is_some() {
                tracing::warn!(
                    "plain IMDS and the Arc-style endpoint both serve the identity: any process on this machine can take it through IMDS"
                );
            }
            run::run(
                state,
                config.clone(),
                config::address(&imds)?,
                config::address(&arc)?,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { output } => {
            let v = status::status_json(&StateDir::at(&state_path))?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => print!("{}", status::status_text(&v)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor {
            output,
            dns,
            list_endpoints,
            commands,
        } => {
            let state = StateDir::at(&state_path);
            if commands {
                let joined = state
                    .joined()?
                    .context("this machine has not joined: the commands need the server it joins")?;
                let imds = state
                    .status()?
                    .imds_address
                    .unwrap_or_else(|| config::DEFAULT_IMDS_ADDRESS.to_owned());
                for line in doctor::commands(&joined, &imds, &state.ca_path(), dns) {
                    println!("{line}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if list_endpoints {
                let joined = state
                    .joined()?
                    .context("this machine has not joined: the endpoints are those of the server it joins")?;
                let list = doctor::endpoints(&joined.server, &joined.tenant_id);
                match output {
                    Output::Json => println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &list
                                .iter()
                                .map(|(k, u)| serde_json::json!({"kind": k, "url": u}))
                                .collect::<Vec<_>>()
                        )?
                    ),
                    Output::Text => {
                        for (k, u) in list {
                            println!("{k:<24} {u}");
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let checks = doctor::run(&state, dns).await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &checks.iter().map(doctor::Check::json).collect::<Vec<_>>()
                    )?
                ),
                Output::Text => {
                    for c in &checks {
                        println!("{}", c.text());
                    }
                }
            }
            Ok(if checks.iter().all(|c| c.pass) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("USHER_AGENT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("usher-agent: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("usher-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod unit_file_tests {
    /// The systemd unit in the repository runs this binary's `run` and keeps its hardening.
    #[test]
    fn the_unit_runs_the_agent_hardened() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../packaging/systemd/usher-agent.service"
        );
        let unit = std::fs::read_to_string(path).unwrap();
        let directives: Vec<&str> = unit
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .collect();
        assert!(
            directives
                .iter()
                .any(|l| l.starts_with("ExecStart=") && l.ends_with("usher-agent run"))
        );
        for required in [
            "ProtectSystem=strict",
            "ReadWritePaths=/home",
            "RuntimeDirectory=usher",
            "PrivateTmp=yes",
            "NoNewPrivileges=yes",
            "UMask=0077",
            "StateDirectoryMode=0700",
            "RestrictNamespaces=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallFilter=@system-service",
        ] {
            assert!(directives.contains(&required), "{required} missing from {path}");
        }
        let caps = directives
            .iter()
            .find(|l| l.starts_with("CapabilityBoundingSet="))
            .unwrap();
        assert!(!caps.contains("CAP_SYS_ADMIN"), "{caps}");
    }
}
