//! Files the login extension owns on the machine. Each is written atomically; a file that was
//! there before (and is not ours) is backed up first and put back when the extension is removed.
//! Writing the same content again changes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::state::write_atomic;

/// The first line of every file usher writes: how a file is recognised as ours.
pub const MARKER: &str =
    "# Managed by usher-agent (login extension); removing the extension restores what was here.";

/// One managed file.
#[derive(Debug, Clone)]
pub struct ManagedFile {
    /// Where it goes (absolute).
    pub path: PathBuf,
    /// Its content after the marker line.
    pub body: String,
    /// Its mode.
    pub mode: u32,
}

/// Writes and removes managed files under `root` (the machine's `/`), backing up into `backups`.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
    backups: PathBuf,
}

fn backup_name(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').replace('/', "%")
}

impl Files {
    /// Files under `root`, backups in `backups`.
    pub fn new(root: &Path, backups: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            backups: backups.to_path_buf(),
        }
    }

    fn target(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Writes `f`. A file that is not ours is backed up first (the newest such content wins:
    /// it is what the operator last wanted there). Returns whether anything changed.
    pub fn install(&self, f: &ManagedFile) -> Result<bool> {
        let target = self.target(&f.path);
        let content = format!("{MARKER}\n{}", f.body);
        match fs::read_to_string(&target) {
            Ok(existing) if existing == content => return Ok(false),
            Ok(existing) if !existing.starts_with(MARKER) => {
                fs::create_dir_all(&self.backups)?;
                let backup = self.backups.join(backup_name(&f.path));
                fs::copy(&target, &backup).with_context(|| format!("cannot back up {}", target.display()))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
        }
        write_atomic(&target, content.as_bytes(), f.mode)?;
        Ok(true)
    }

    /// Takes `path` back: when it is ours (or gone), the backup returns or the file goes; a file
    /// someone put there since is left alone. Returns whether anything changed.
    pub fn remove(&self, path: &Path) -> Result<bool> {
        let target = self.target(path);
        let backup = self.backups.join(backup_name(path));
        let current = match fs::read_to_string(&target) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
        };
        if current.as_ref().is_some_and(|t| !t.starts_with(MARKER)) {
            // Replaced by someone since: theirs stays; the old backup is no longer wanted.
            if backup.exists() {
                fs::remove_file(&backup)?;
            }
            return Ok(false);
        }
        if backup.exists() {
            let saved = fs::read(&backup)?;
            let mode = fs::metadata(&backup)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap_or(0o644);
            write_atomic(&target, &saved, mode)?;
            fs::remove_file(&backup)?;
            return Ok(true);
        }
        if current.is_some() {
            fs::remove_file(&target).with_context(|| format!("cannot remove {}", target.display()))?;
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_removal_restores() {
        let tmp = tempfile::tempdir().unwrap();
        let files = Files::new(tmp.path(), &tmp.path().join("state/backup"));
        let conf = tmp.path().join("etc/ssh/sshd_config.d/10-usher.conf");
        fs::create_dir_all(conf.parent().unwrap()).unwrap();
        fs::write(&conf, "# the operator's own\n").unwrap();
        let f = ManagedFile {
            path: "/etc/ssh/sshd_config.d/10-usher.conf".into(),
            body: "X 1\n".into(),
            mode: 0o644,
        };
        assert!(files.install(&f).unwrap());
        assert!(
            !files.install(&f).unwrap(),
            "the same content again changes nothing"
        );
        assert!(fs::read_to_string(&conf).unwrap().starts_with(MARKER));
        let changed = ManagedFile {
            body: "X 2\n".into(),
            ..f.clone()
        };
        assert!(files.install(&changed).unwrap());
        assert!(files.remove(&f.path).unwrap());
        assert_eq!(
            fs::read_to_string(&conf).unwrap(),
            "# the operator's own\n",
            "the original came back"
        );
        assert!(!files.remove(&f.path).unwrap(), "removing again changes nothing");
        // Someone replaced our file since: theirs is left alone.
        files.install(&f).unwrap();
        fs::write(&conf, "# newer, by hand\n").unwrap();
        assert!(!files.remove(&f.path).unwrap());
        assert_eq!(fs::read_to_string(&conf).unwrap(), "# newer, by hand\n");
        // A file that was not there is simply removed.
        let new = ManagedFile {
            path: "/etc/usher/login.conf".into(),
            body: "a\n".into(),
            mode: 0o600,
        };
        files.install(&new).unwrap();
        assert!(files.remove(&new.path).unwrap());
        assert!(!tmp.path().join("etc/usher/login.conf").exists());
    }
}
