//! The token cache: one signed-in account per config directory (`USHER_CONFIG_DIR`, default
//! `~/.usher`). The directory is created 0700, files are written 0600 by write-to-temp + rename,
//! and a lock file serialises refreshes between concurrent `usher` processes (the server
//! rotates refresh tokens and revokes the family on reuse, so two processes must never spend
//! the same one).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The cached sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Server URL, without a trailing slash.
    pub server: String,
    /// CA file trusted for the server, if one was given at login.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The tenant as given at login (`contoso.test`, `organizations`, a GUID).
    pub tenant: String,
    /// The tenant id from the token's `tid` claim.
    pub tenant_id: String,
    /// The user's UPN.
    pub user: String,
    /// The public client the tokens were issued to.
    pub client_id: String,
    /// The current access token (audience = the server's public URL).
    pub access_token: String,
    /// The current refresh token; replaced on every use.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Expiry of the access token, seconds since the epoch.
    pub expires_on: i64,
    /// Subscriptions seen at login, in the `az login` shape; the first is the default.
    #[serde(default)]
    pub subscriptions: Vec<Value>,
}

/// Where the cache lives.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    dir: PathBuf,
}

const SESSION_FILE: &str = "session.json";
const LOCK_FILE: &str = "session.lock";

impl ConfigDir {
    /// `USHER_CONFIG_DIR`, else `$HOME/.usher`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("USHER_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(ConfigDir::at(dir));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("cannot find the config directory: set USHER_CONFIG_DIR or HOME")?;
        Ok(ConfigDir::at(PathBuf::from(home).join(".usher")))
    }

    /// A cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        ConfigDir { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn session_path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// Creates the directory (mode 0700) when missing.
    pub fn ensure_dir(&self) -> Result<()> {
        if !self.dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// The cached session, or `None` when nobody is signed in.
    pub fn load(&self) -> Result<Option<Session>> {
        let path = self.session_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let session = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt; run 'usher login' again", path.display()))?;
        Ok(Some(session))
    }

    /// Writes the session (0600, atomically, synced to disk).
    pub fn save(&self, session: &Session) -> Result<()> {
        self.ensure_dir()?;
        let text = serde_json::to_vec_pretty(session).context("cannot serialise the session")?;
        write_private(&self.session_path(), &text)
    }

    /// Removes the cached session; true when there was one.
    pub fn remove(&self) -> Result<bool> {
        let path = self.session_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }

    /// Takes the cache's exclusive lock (released when the returned file is dropped).
    pub fn lock(&self) -> Result<File> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }
}

/// Writes `bytes` to `path` with mode 0600 via a temporary file in the same directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn session() -> Session {
        Session {
            server: "https://127.0.0.1:8443".into(),
            ca_file: Some("/tmp/ca.pem".into()),
            tenant: "contoso.test".into(),
            tenant_id: "11111111-1111-1111-1111-111111111111".into(),
            user: "admin@contoso.test".into(),
            client_id: usher_client::CLI_CLIENT_ID.into(),
            access_token: "a.b.c".into(),
            refresh_token: Some("r1".into()),
            expires_on: 1_900_000_000,
            subscriptions: vec![],
        }
    }

    #[test]
    fn save_load_remove_with_private_modes() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let cfg = ConfigDir::at(tmp.path().join("nested").join(".usher"));
        assert_eq!(cfg.load()?, None);
        cfg.save(&session())?;
        let dir_mode = fs::metadata(cfg.path())?.permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let file_mode = fs::metadata(cfg.path().join(SESSION_FILE))?.permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        assert_eq!(cfg.load()?, Some(session()));

        let mut rotated = session();
        rotated.refresh_token = Some("r2".into());
        cfg.save(&rotated)?;
        assert_eq!(cfg.load()?.and_then(|s| s.refresh_token), Some("r2".into()));
        let file_mode = fs::metadata(cfg.path().join(SESSION_FILE))?.permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        // no temporary files are left behind
        let names: Vec<_> = fs::read_dir(cfg.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![SESSION_FILE.to_string()]);

        assert!(cfg.remove()?);
        assert!(!cfg.remove()?);
        assert_eq!(cfg.load()?, None);
        Ok(())
    }

    #[test]
    fn lock_file_is_private() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let cfg = ConfigDir::at(tmp.path());
        let guard = cfg.lock()?;
        let mode = fs::metadata(tmp.path().join(LOCK_FILE))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(guard);
        Ok(())
    }

    #[test]
    fn corrupt_cache_is_an_error() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let cfg = ConfigDir::at(tmp.path());
        fs::write(tmp.path().join(SESSION_FILE), b"{not json")?;
        assert!(cfg.load().is_err());
        Ok(())
    }
}
