//! Server configuration: the validated form the binary builds from its file, flags and `USHER_*`
//! environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use zeroize::Zeroizing;

/// Errors that stop the server from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The directory failed.
    #[error(transparent)]
    Directory(#[from] usher_directory::DirectoryError),
    /// The token service failed to start.
    #[error("token service: {0}")]
    Idp(#[from] usher_idp::IdpError),
    /// The resource manager failed to start.
    #[error("resource manager: {0}")]
    Arm(#[from] usher_arm::ArmError),
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory (TLS material, keys, the SQLite database).
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Public URL (issuer base, audience); defaults to `https://{listen}`.
    pub public_url: String,
    /// The tenant's domain at first start.
    pub domain: String,
    /// Operator-supplied certificate chain and key (PEM); generated when absent.
    pub tls_cert: Option<PathBuf>,
    /// Operator-supplied key (PEM).
    pub tls_key: Option<PathBuf>,
    /// base64 of the 32-byte at-rest key; read from/generated into `data_dir/keys/at-rest.key` when absent.
    pub at_rest_key: Option<Zeroizing<String>>,
    /// The bootstrap administrator's password (first start only).
    pub bootstrap_password: Option<Zeroizing<String>>,
}

impl ServerConfig {
    /// A configuration with defaults for everything but the data dir and listen address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            public_url: String::new(),
            domain: "contoso.test".into(),
            tls_cert: None,
            tls_key: None,
            at_rest_key: None,
            bootstrap_password: None,
        }
    }

    /// The public URL, defaulting to the listen address.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if self.public_url.is_empty() {
            let host = match bound.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                std::net::IpAddr::V4(ip) if ip.is_unspecified() => "localhost".to_owned(),
                std::net::IpAddr::V4(ip) => ip.to_string(),
            };
            format!("https://{host}:{}", bound.port())
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}
