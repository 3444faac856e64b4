//! `usherd`: the usher server. Configuration comes from flags, then `USHER_*` environment
//! variables, then an optional TOML file (`--config`), then defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;
use usher_server::ServerConfig;
use usher_store::Store;
use zeroize::Zeroizing;

/// The usher server: directory, token service and management API over HTTPS.
#[derive(Debug, Parser)]
#[command(name = "usherd", version, about)]
struct Args {
    /// TOML configuration file (keys: data_dir, listen, public_url, database_url, domain, tls_cert, tls_key, log_format).
    #[arg(long, env = "USHER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: TLS material, keys and the embedded SQLite database [default: ./usher-data].
    #[arg(long, env = "USHER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long, env = "USHER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Public URL clients use; the issuer and token audience derive from it [default: https://LISTEN].
    #[arg(long, env = "USHER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Database: postgres://... for PostgreSQL, sqlite://... for another SQLite file [default: DATA_DIR/usher.db].
    #[arg(long, env = "USHER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The tenant's domain at first start [default: contoso.test].
    #[arg(long, env = "USHER_DOMAIN")]
    domain: Option<String>,
    /// Operator-supplied TLS certificate chain (PEM); a local CA is generated when absent.
    #[arg(long, env = "USHER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Operator-supplied TLS private key (PEM).
    #[arg(long, env = "USHER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "USHER_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    database_url: Option<String>,
    domain: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<String>,
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("USHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn open_store(
    database_url: Option<&str>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database_url {
        None => Arc::new(
            usher_store_sqlite::SqliteStore::open(&data_dir.join("usher.db"))
                .await
                .context("opening the SQLite database")?,
        ),
        Some(url) if url.starts_with("sqlite:") => Arc::new(
            usher_store_sqlite::SqliteStore::open_url(url)
                .await
                .context("opening the SQLite database")?,
        ),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Arc::new(
            usher_store_postgres::PostgresStore::connect(url)
                .await
                .context("connecting to PostgreSQL")?,
        ),
        Some(_) => bail!("--database-url must start with postgres:// or sqlite:"),
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?
        }
        None => FileConfig::default(),
    };
    let log_format = args
        .log_format
        .or(file.log_format)
        .unwrap_or_else(|| "text".into());
    if log_format != "text" && log_format != "json" {
        bail!("log_format must be `text` or `json`");
    }
    init_logging(&log_format);

    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("usher-data"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", data_dir.display()))?;
    }
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
    let mut config = ServerConfig::new(data_dir.clone(), listen);
    config.public_url = args.public_url.or(file.public_url).unwrap_or_default();
    config.domain = args
        .domain
        .or(file.domain)
        .unwrap_or_else(|| "contoso.test".into());
    config.tls_cert = args.tls_cert.or(file.tls_cert);
    config.tls_key = args.tls_key.or(file.tls_key);
    config.at_rest_key = std::env::var("USHER_AT_REST_KEY").ok().map(Zeroizing::new);
    config.bootstrap_password = std::env::var("USHER_BOOTSTRAP_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(Zeroizing::new);
    let database_url = args.database_url.or(file.database_url);

    let store = open_store(database_url.as_deref(), &data_dir).await?;
    let server = usher_server::start(config, store)
        .await
        .context("starting usherd")?;
    if server.bootstrapped {
        tracing::info!(
            tenant = server.tenant_id,
            admin = server.admin_upn,
            "created the tenant"
        );
        eprintln!(
            "usherd: created tenant {} with global administrator {}",
            server.tenant_id, server.admin_upn
        );
        if let Some(f) = &server.admin_password_file {
            eprintln!(
                "usherd: the administrator's generated password is in {} (mode 0600)",
                f.display()
            );
        }
    }
    if let Some(ca) = &server.ca_path {
        eprintln!("usherd: CA certificate: {}", ca.display());
    }
    eprintln!(
        "usherd: listening on {} (public URL {})",
        server.addr, server.public_url
    );
    tracing::info!(addr = %server.addr, public_url = server.public_url, "listening");

    let stop = server.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    server.wait().await;
    tracing::info!("stopped");
    Ok(())
}
