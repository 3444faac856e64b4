//! Per-machine settings: `/etc/usher/agent.toml` (optional; unknown keys refused), overridden by
//! command-line options. Only `/etc` (and `/home`) are private to a machine, so everything that
//! differs between machines sharing `/run`, `/tmp` and loopback lives here.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

/// The settings file.
pub const CONFIG_FILE: &str = "/etc/usher/agent.toml";
/// IMDS's default address (169.254.169.254:80 where the operator enables it).
pub const DEFAULT_IMDS_ADDRESS: &str = "127.0.0.1:40342";

/// The agent's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The state directory.
    pub state_dir: Option<PathBuf>,
    /// IMDS's address, or `off`.
    pub imds_address: Option<String>,
    /// The Arc-style identity endpoint's address, or `off` (the default).
    pub arc_address: Option<String>,
    /// Where the device-registration endpoint is, when the network reaches the server under
    /// another name than the one it publishes.
    pub device_registration_url: Option<String>,
    /// The local socket the PAM module and the sshd helper ask (default `/run/usher/agent.sock`).
    pub agent_socket: Option<PathBuf>,
    /// How old the login cache may get (seconds, default 300) before a login needs the
    /// server's fresh answer; past it, with the server unreachable, logins are refused.
    pub max_staleness_secs: Option<u64>,
    /// SSH sessions with no input or output for this long are disconnected (SPEC L7). Overrides
    /// the tenant's setting; 0 turns the lock off on this machine.
    pub session_idle_timeout_secs: Option<u64>,
    /// The login shell of directory users (default `/bin/bash`).
    pub shell: Option<String>,
    /// Where the modules and helper shipped with the agent are (default: the agent's own
    /// directory, then `/usr/lib/usher`).
    pub module_dir: Option<PathBuf>,
}

impl AgentConfig {
    /// Reads the settings file; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{} is not valid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The local socket's path.
    pub fn socket(&self) -> PathBuf {
        self.agent_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(usher_proto::local::DEFAULT_SOCKET))
    }

    /// The staleness bound.
    pub fn max_staleness(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.max_staleness_secs.unwrap_or(300).max(1))
    }

    /// The directory users' shell.
    pub fn shell(&self) -> String {
        self.shell.clone().unwrap_or_else(|| "/bin/bash".into())
    }

    /// The state directory: the option, else the file, else the default.
    pub fn state_dir(&self, option: Option<&Path>) -> PathBuf {
        option
            .map(Path::to_path_buf)
            .or_else(|| self.state_dir.clone())
            .unwrap_or_else(|| PathBuf::from(crate::state::DEFAULT_STATE_DIR))
    }
}

/// An address setting: `None` for `off`.
pub fn address(value: &str) -> Result<Option<std::net::SocketAddr>> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let with_port = if value.contains(':') {
        value.to_owned()
    } else {
        format!("{value}:80")
    };
    with_port
        .parse()
        .map(Some)
        .with_context(|| format!("'{value}' is not HOST:PORT (an IP address) or 'off'"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("agent.toml");
        assert!(AgentConfig::load(&f).unwrap().state_dir.is_none());
        std::fs::write(&f, "state_dir = \"/srv/u\"\nimds_address = \"off\"\n").unwrap();
        let c = AgentConfig::load(&f).unwrap();
        assert_eq!(c.state_dir(None), PathBuf::from("/srv/u"));
        assert_eq!(c.state_dir(Some(Path::new("/x"))), PathBuf::from("/x"));
        std::fs::write(&f, "stat_dir = 1\n").unwrap();
        assert!(AgentConfig::load(&f).is_err(), "unknown keys are refused");
        assert_eq!(address("off").unwrap(), None);
        assert_eq!(address("169.254.169.254").unwrap().unwrap().port(), 80);
        assert!(address("localhost:1").is_err());
    }
}
