//! TLS material: a local CA and a server certificate generated at first start (persisted under
//! `DATA_DIR/tls/`), or the operator's certificate and key. `ca.pem` is written before the server
//! listens, so clients can pin it.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::ServerConfig as RustlsConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file atomically with the given mode.
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn ca_params() -> Result<CertificateParams, ServerError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "usher local CA");
    dn.push(DnType::OrganizationName, "usher");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2046, 1, 1);
    Ok(p)
}

/// The names the server certificate must carry.
pub fn server_names(listen_ip: IpAddr, public_host: Option<&str>) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        listen_ip.to_string(),
        "127.0.0.1".to_owned(),
    ];
    if let Some(h) = public_host {
        names.push(h.trim_start_matches('[').trim_end_matches(']').to_owned());
    }
    names.sort();
    names.dedup();
    names
}

/// Where the generated TLS files live.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    /// `tls/ca.pem`.
    pub ca: PathBuf,
    /// `tls/ca.key`.
    pub ca_key: PathBuf,
    /// `tls/server.pem`.
    pub cert: PathBuf,
    /// `tls/server.key`.
    pub key: PathBuf,
    /// `tls/server.names`.
    pub names: PathBuf,
}

impl TlsPaths {
    /// Paths under `data_dir/tls`.
    pub fn under(data_dir: &Path) -> Self {
        let d = data_dir.join("tls");
        Self {
            ca: d.join("ca.pem"),
            ca_key: d.join("ca.key"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            names: d.join("server.names"),
        }
    }
}

/// Ensures the local CA and a server certificate for `names` exist; returns the paths.
pub fn ensure_generated(data_dir: &Path, names: &[String]) -> Result<TlsPaths, ServerError> {
    let paths = TlsPaths::under(data_dir);
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let ca_key = if paths.ca_key.exists() && paths.ca.exists() {
        let pem = std::fs::read_to_string(&paths.ca_key).map_err(io(&paths.ca_key))?;
        KeyPair::from_pem(&pem).map_err(|e| ServerError::Tls(format!("{}: {e}", paths.ca_key.display())))?
    } else {
        let key = KeyPair::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
        let cert = ca_params()?
            .self_signed(&key)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        write_private(&paths.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
        write_private(&paths.ca, cert.pem().as_bytes(), 0o644)?;
        // A new CA invalidates any server certificate from before.
        let _ = std::fs::remove_file(&paths.cert);
        key
    };
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&paths.names).unwrap_or_default();
    if paths.cert.exists() && paths.key.exists() && current == wanted {
        return Ok(paths);
    }
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| ServerError::Tls(e.to_string()))?;
    p.distinguished_name
        .push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e: rcgen::Error| ServerError::Tls(e.to_string())),
        })
        .collect::<Result<_, _>>()?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    write_private(&paths.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_private(&paths.cert, cert.pem().as_bytes(), 0o644)?;
    write_private(&paths.names, wanted.as_bytes(), 0o644)?;
    Ok(paths)
}

/// A rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<RustlsConfig>, ServerError> {
    let cert_pem = std::fs::read(cert).map_err(io(cert))?;
    let key_pem = std::fs::read(key).map_err(io(key))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate found",
            cert.display()
        )));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServerError::Tls(format!("{}: no private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = RustlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
