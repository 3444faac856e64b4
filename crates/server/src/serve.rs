//! Starting the server: keys, store, bootstrap, TLS, the accept loop and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use usher_core::{SystemClock, SystemRng};
use usher_crypto::at_rest::SealingKey;
use usher_directory::{BootstrapOptions, Directory};
use usher_idp::Idp;
use usher_store::Store;
use zeroize::Zeroizing;

use crate::tls::{self, write_private};
use crate::{AppState, ServerConfig, ServerError};

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The public URL.
    pub public_url: String,
    /// The CA certificate clients should trust (generated TLS only).
    pub ca_path: Option<PathBuf>,
    /// The tenant id.
    pub tenant_id: String,
    /// Whether this start created the tenant.
    pub bootstrapped: bool,
    /// File holding a generated administrator password, when one was generated.
    pub admin_password_file: Option<PathBuf>,
    /// The administrator's UPN.
    pub admin_upn: String,
    /// The application state (for in-process tests).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (at most 10 s), flushes logs.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.state.dir().logs().flush().await;
    }

    /// Waits until the server stops (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.task.await;
        self.state.dir().logs().flush().await;
    }

    /// A handle that triggers shutdown.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

fn load_or_create_at_rest_key(config: &ServerConfig) -> Result<Zeroizing<Vec<u8>>, ServerError> {
    let decode = |s: &str| -> Result<Zeroizing<Vec<u8>>, ServerError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ServerError::Config("the at-rest key must be base64 of 32 bytes".into()))?;
        if bytes.len() != 32 {
            return Err(ServerError::Config(
                "the at-rest key must be base64 of 32 bytes".into(),
            ));
        }
        Ok(Zeroizing::new(bytes))
    };
    if let Some(k) = &config.at_rest_key {
        return decode(k);
    }
    let dir = config.data_dir.join("keys");
    std::fs::create_dir_all(&dir).map_err(|source| ServerError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join("at-rest.key");
    if path.exists() {
        let s = Zeroizing::new(std::fs::read_to_string(&path).map_err(|source| ServerError::Io {
            path: path.clone(),
            source,
        })?);
        return decode(&s);
    }
    let mut bytes = Zeroizing::new(vec![0u8; 32]);
    usher_core::Rng::fill(&SystemRng, &mut bytes);
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*bytes));
    write_private(&path, text.as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), "generated the at-rest key: back it up with the database");
    Ok(bytes)
}

/// Starts the server on `store`; returns once it listens.
pub async fn start(config: ServerConfig, store: Arc<dyn Store>) -> Result<RunningServer, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    // Bind first (to learn the port), but listen only once the TLS files, ca.pem included, exist.
    let io_err = |source| ServerError::Io {
        path: PathBuf::from(config.listen.to_string()),
        source,
    };
    let socket = if config.listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(io_err)?;
    socket.set_reuseaddr(true).map_err(io_err)?;
    socket.bind(config.listen).map_err(io_err)?;
    let addr = socket.local_addr().map_err(io_err)?;
    let public_url = config.public_url_for(addr);
    let public_host = url::Url::parse(&public_url)
        .map_err(|e| ServerError::Config(format!("public URL `{public_url}`: {e}")))?
        .host_str()
        .map(str::to_owned);

    let (cert, key, ca_path) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), None),
        (None, None) => {
            let paths = tls::ensure_generated(
                &config.data_dir,
                &tls::server_names(addr.ip(), public_host.as_deref()),
            )?;
            (paths.cert, paths.key, Some(paths.ca))
        }
        _ => {
            return Err(ServerError::Config(
                "give both a TLS certificate and its key, or neither".into(),
            ));
        }
    };
    let acceptor = TlsAcceptor::from(tls::server_config(&cert, &key)?);

    let key_bytes = load_or_create_at_rest_key(&config)?;
    let sealing = SealingKey::from_bytes(&key_bytes).map_err(|e| ServerError::Config(e.to_string()))?;
    let fingerprint_key: Arc<[u8]> = Arc::from(usher_crypto::secret::sha256(
        &[b"usher lockout fingerprints\0".as_slice(), &key_bytes].concat(),
    ));
    let dir = Directory::new(
        store,
        Arc::new(SystemClock),
        Arc::new(SystemRng),
        Arc::new(sealing),
        fingerprint_key,
    );
    let report = dir
        .bootstrap(BootstrapOptions {
            domain: config.domain.clone(),
            display_name: format!("{} tenant", config.domain),
            admin_password: config.bootstrap_password.clone(),
        })
        .await?;
    let admin_password_file = match &report.generated_password {
        Some(pw) => {
            let path = config.data_dir.join("bootstrap-admin-password");
            write_private(&path, format!("{}\n", pw.as_str()).as_bytes(), 0o600)?;
            Some(path)
        }
        None => None,
    };
    let arm = usher_arm::Arm::load(dir.clone()).await?;
    let idp = Idp::new(dir, &public_url).await?;
    idp.set_ssh_gate(Arc::new(crate::routes::ssh::Gate(arm.clone())));
    let state = AppState {
        idp,
        arm,
        token_cache: Arc::new(crate::routes::TokenCache::default()),
        metrics: Arc::new(crate::metrics::Metrics::install()),
    };
    let router = crate::routes::router(state.clone());

    let listener: TcpListener = socket.listen(1024).map_err(io_err)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, router, shutdown_rx));
    spawn_janitor(state.clone(), shutdown_tx.subscribe());
    Ok(RunningServer {
        addr,
        public_url,
        ca_path,
        tenant_id: report.tenant.id.clone(),
        bootstrapped: report.created,
        admin_password_file,
        admin_upn: report.admin_upn,
        state,
        shutdown: shutdown_tx,
        task,
    })
}

fn spawn_janitor(state: AppState, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = stop.changed() => return,
            }
            ticks += 1;
            // Keys rotated by another replica, and retired keys past their overlap, take effect here.
            if let Err(e) = state.idp.keys().reload(state.dir()).await {
                tracing::warn!(error = %e, "could not reload signing keys");
            }
            if ticks.is_multiple_of(5) {
                let now = state.dir().clock().now_unix();
                if let Err(e) = state.dir().store().purge_expired(now).await {
                    tracing::warn!(error = %e, "could not purge expired records");
                }
            }
        }
    });
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    if let Some(uri) = crate::routes::normalize_path(req.uri()) {
                        *req.uri_mut() = uri;
                    }
                    tower::ServiceExt::oneshot(router.clone(), req)
                });
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}
