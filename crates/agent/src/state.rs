//! The agent's state directory (default `/var/lib/usher`, mode 0700): the machine key, what the
//! join returned, the status the `status` command reads, extension logs and backups. Every file
//! is written to a temporary name and renamed, so a reader never sees half a file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/usher";

/// What a successful join recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    /// The server's URL as given at join.
    pub server: String,
    /// The audience the server expects of the machine's assertions (its public URL's agent path).
    #[serde(default)]
    pub audience: String,
    /// The tenant.
    pub tenant_id: String,
    /// The VM's ARM id.
    pub vm_resource_id: String,
    /// The VM's `vmId`.
    pub vm_id: String,
    /// The host name at join (the device name).
    pub hostname: String,
    /// When (unix seconds).
    pub joined_at: i64,
}

/// One extension as the agent last handled it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionState {
    /// Instance name.
    pub name: String,
    /// `publisher.type` as set.
    pub kind: String,
    /// The handler that ran (canonical name).
    pub handler: String,
    /// The generation applied.
    pub generation: u64,
    /// `Succeeded`, `Failed`, `Transitioning`.
    pub state: String,
    /// The exit code (0 on success).
    pub code: i64,
    /// What happened.
    pub message: String,
    /// When (unix seconds).
    pub time: i64,
    /// When the run started (unix milliseconds; names its log if it failed).
    #[serde(default)]
    pub started_ms: i64,
    /// Whether the server has the report.
    #[serde(default)]
    pub reported: bool,
}

/// What the running agent tells `usher-agent status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Last successful call to the server (unix seconds).
    pub last_contact: Option<i64>,
    /// The device object, once the login extension joined the directory.
    pub device_id: Option<String>,
    /// Where IMDS listens.
    pub imds_address: Option<String>,
    /// Where the Arc-style endpoint listens.
    pub arc_address: Option<String>,
    /// Extensions by instance name.
    pub extensions: BTreeMap<String, ExtensionState>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(root: &Path) -> Result<Self> {
        match fs::metadata(root) {
            Ok(meta) => {
                // An existing directory is never re-permissioned (a mistyped path such as
                // /var/lib must not change): it must already be private.
                if meta.permissions().mode() & 0o077 != 0 {
                    anyhow::bail!(
                        "the state directory {} is open to other users (mode {:o}); use a directory of its own with mode 0700",
                        root.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
            }
            Err(_) => {
                fs::create_dir_all(root)
                    .with_context(|| format!("cannot create the state directory {}", root.display()))?;
                fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("cannot restrict {}", root.display()))?;
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A state directory that may not exist (for read-only commands).
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The machine's private key (PKCS#8 DER, mode 0600).
    pub fn key_path(&self) -> PathBuf {
        self.root.join("machine.key")
    }

    /// The server's CA certificate, copied at join.
    pub fn ca_path(&self) -> PathBuf {
        self.root.join("server-ca.pem")
    }

    fn join_path(&self) -> PathBuf {
        self.root.join("join.json")
    }

    fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// The log directory of an extension handler.
    pub fn extension_dir(&self, canonical: &str) -> PathBuf {
        self.root.join("extensions").join(canonical)
    }

    /// The login cache: who may log in to this machine, with UIDs (written atomically).
    pub fn logins_path(&self) -> PathBuf {
        self.root.join("logins.json")
    }

    /// The PAM sessions the agent knows of (for revocation).
    pub fn sessions_path(&self) -> PathBuf {
        self.root.join("sessions.json")
    }

    /// Where replaced files are kept until the extension is removed.
    pub fn backup_dir(&self) -> PathBuf {
        self.root.join("backup")
    }

    /// The join record, if the machine is joined.
    pub fn joined(&self) -> Result<Option<Joined>> {
        read_json(&self.join_path())
    }

    /// Records the join.
    pub fn save_joined(&self, j: &Joined) -> Result<()> {
        write_atomic(&self.join_path(), &serde_json::to_vec_pretty(j)?, 0o600)
    }

    /// The running agent's status (empty before the first run).
    pub fn status(&self) -> Result<AgentStatus> {
        Ok(read_json(&self.status_path())?.unwrap_or_default())
    }

    /// Saves the status.
    pub fn save_status(&self, s: &AgentStatus) -> Result<()> {
        write_atomic(&self.status_path(), &serde_json::to_vec_pretty(s)?, 0o600)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("state")).unwrap();
        assert!(
            StateDir::open(tmp.path()).is_err()
                || fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o077 == 0
        );
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            StateDir::open(tmp.path()).is_err(),
            "an existing directory open to others is refused, not changed"
        );
        assert_eq!(
            fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs::metadata(tmp.path().join("state"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert!(dir.joined().unwrap().is_none());
        let mut s = AgentStatus::default();
        s.extensions.insert(
            "x".into(),
            ExtensionState {
                generation: 3,
                ..Default::default()
            },
        );
        dir.save_status(&s).unwrap();
        assert_eq!(
            fs::metadata(tmp.path().join("state").join("status.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(dir.status().unwrap().extensions["x"].generation, 3);
        fs::write(tmp.path().join("state").join("join.json"), b"{not json").unwrap();
        assert!(
            dir.joined().is_err(),
            "a damaged file is an error, not 'not joined'"
        );
    }
}
