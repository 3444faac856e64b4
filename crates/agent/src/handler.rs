//! The login extension's handler (SPEC X3, D5): supported OS, identity, registration endpoint,
//! no other directory in charge, device join, the machine's login configuration. Each step is
//! written to `CommandExecution.log`; a failure carries the seed's exit code and message.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::Api;
use crate::config::AgentConfig;
use crate::files::{Files, ManagedFile};
use crate::state::StateDir;

/// The OS is not one the extension supports.
pub const EXIT_UNSUPPORTED_OS: i64 = 51;
/// Terminal error 1007: no identity (`DSREG_E_MSI_TENANTID_UNAVAILABLE`).
pub const EXIT_MSI_TENANTID_UNAVAILABLE: i64 = -2_145_648_574;
/// The device-registration endpoint cannot be reached (`DSREG_AUTOJOIN_DISC_FAILED`).
pub const EXIT_AUTOJOIN_DISC_FAILED: i64 = -2_145_648_607;
/// Another directory already provides users to this machine (SPEC D5).
pub const EXIT_OTHER_DIRECTORY: i64 = 52;
/// Another device already has this machine's host name (SPEC D5).
pub const EXIT_HOSTNAME_DUPLICATE: i64 = 53;
/// Anything else.
pub const EXIT_FAILED: i64 = 1;

/// The seed's text for exit code 51.
pub const UNSUPPORTED_OS_TEXT: &str = "This extension is not supported on the VM's operating system";

/// The log file of the current run.
pub const LOG_NAME: &str = "CommandExecution.log";

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0 on success.
    pub exit_code: i64,
    /// What happened, and on failure what to do.
    pub message: String,
}

impl Outcome {
    fn ok(message: impl Into<String>) -> Self {
        Self {
            exit_code: 0,
            message: message.into(),
        }
    }
    fn fail(exit_code: i64, message: impl Into<String>) -> Self {
        Self {
            exit_code,
            message: message.into(),
        }
    }
}

/// One run's log: `CommandExecution.log`, written as the run goes.
#[derive(Debug)]
pub struct RunLog {
    file: Option<fs::File>,
}

impl RunLog {
    /// Starts the log of a run in `dir`. When the previous run failed, its log is kept as
    /// `CommandExecution_YYYYMMDDHHMMSSSSS.log`: the UTC time that run started, to the
    /// millisecond (`failed_run_started_ms`; the file's time when it is unknown).
    pub fn start(dir: &Path, previous_failed: bool, failed_run_started_ms: Option<i64>) -> Self {
        let _ = fs::create_dir_all(dir);
        let current = dir.join(LOG_NAME);
        if previous_failed && let Ok(meta) = fs::metadata(&current) {
            let started = failed_run_started_ms
                .filter(|ms| *ms > 0)
                .and_then(|ms| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                })
                .or_else(|| meta.modified().ok().map(time::OffsetDateTime::from));
            let stamp = started
                .map(|t| {
                    format!(
                        "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second(),
                        t.millisecond()
                    )
                })
                .unwrap_or_else(|| "00000000000000000".into());
            let _ = fs::rename(&current, dir.join(format!("CommandExecution_{stamp}.log")));
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&current)
            .ok();
        Self { file }
    }

    /// Appends a line.
    pub fn line(&mut self, text: &str) {
        if let Some(f) = self.file.as_mut() {
            let now = time::OffsetDateTime::now_utc();
            let _ = writeln!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z {text}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            );
            let _ = f.flush();
        }
    }
}

/// What the handler works with.
#[derive(Debug)]
pub struct Machine<'a> {
    /// The server.
    pub api: &'a Api,
    /// The state directory.
    pub state: &'a StateDir,
    /// Per-machine settings.
    pub config: &'a AgentConfig,
    /// The machine's `/` (tests point it elsewhere only for unit tests).
    pub root: PathBuf,
}

/// `/etc/os-release`'s ID and VERSION_ID.
pub fn os_release(root: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(root.join("etc/os-release")).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    Some((field("ID")?, field("VERSION_ID").unwrap_or_default()))
}

/// Debian 11–13 and Ubuntu 22.04/24.04 (SPEC X3).
pub fn supported_os(id: &str, version: &str) -> bool {
    match id {
        "debian" => matches!(version, "11" | "12" | "13"),
        "ubuntu" => matches!(version, "22.04" | "24.04"),
        _ => false,
    }
}

/// The machine's host name (its UTS name).
pub fn hostname(root: &Path) -> String {
    let from_proc = fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let _ = root;
    from_proc.map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// Another directory already answering for users: nsswitch `sss`, `winbind` or `ldap` for
/// users or groups, an SSSD configuration, or Samba joined to Active Directory (SPEC D5).
pub fn other_directory(root: &Path) -> Option<String> {
    if let Ok(text) = fs::read_to_string(root.join("etc/nsswitch.conf")) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            for database in ["passwd:", "group:"] {
                if let Some(rest) = line.strip_prefix(database) {
                    for source in rest.split_whitespace() {
                        if matches!(source, "sss" | "winbind" | "ldap") {
                            return Some(format!(
                                "/etc/nsswitch.conf takes {} from '{source}'",
                                database.trim_end_matches(':')
                            ));
                        }
                    }
                }
            }
        }
    }
    if root.join("etc/sssd/sssd.conf").exists() {
        return Some("SSSD is configured (/etc/sssd/sssd.conf): the machine is joined to a directory through realmd/SSSD".into());
    }
    if let Ok(smb) = fs::read_to_string(root.join("etc/samba/smb.conf")) {
        let ads = smb.lines().any(|l| {
            let l = l
                .split(['#', ';'])
                .next()
                .unwrap_or_default()
                .replace(' ', "")
                .to_ascii_lowercase();
            l == "security=ads"
        });
        if ads {
            return Some(
                "Samba is joined to Active Directory (security = ads in /etc/samba/smb.conf)".into(),
            );
        }
    }
    None
}

/// The files the login extension writes whole: its configuration (naming the tenant, machine,
/// device and the agent's socket), the sshd drop-in, the user CA and sudoers.
pub fn login_files(config: &Value, device_id: &str, server: &str, socket: &Path) -> Vec<ManagedFile> {
    use crate::loginconf as lc;
    vec![
        ManagedFile {
            path: "/etc/usher/login.conf".into(),
            body: format!(
                "server = \"{server}\"\ntenant_id = \"{}\"\nvm_resource_id = \"{}\"\ndevice_id = \"{device_id}\"\nagent_socket = \"{}\"\n",
                config["tenantId"].as_str().unwrap_or_default(),
                config["vmResourceId"].as_str().unwrap_or_default(),
                socket.display()
            ),
            mode: 0o644,
        },
        ManagedFile {
            path: lc::USER_CA_FILE.into(),
            body: format!(
                "{}\n",
                config["sshUserCertificateAuthority"].as_str().unwrap_or_default()
            ),
            mode: 0o644,
        },
        ManagedFile {
            path: lc::SSHD_DROP_IN.into(),
            body: lc::sshd_drop_in(),
            mode: 0o644,
        },
        ManagedFile {
            path: lc::SUDOERS.into(),
            body: lc::sudoers(),
            mode: 0o440,
        },
    ]
}

/// The operator's files the extension adds lines to (nsswitch.conf and the PAM stacks that
/// exist), with their new content.
pub fn edited_files(root: &Path) -> Vec<ManagedFile> {
    use crate::loginconf as lc;
    let mut out = Vec::new();
    let read = |p: &str| fs::read_to_string(root.join(p.trim_start_matches('/'))).ok();
    if let Some(text) = read(lc::NSSWITCH) {
        out.push(ManagedFile {
            path: lc::NSSWITCH.into(),
            body: lc::nsswitch_with_usher(&text),
            mode: 0o644,
        });
    }
    for service in lc::PAM_SERVICES {
        if let Some(text) = read(service) {
            out.push(ManagedFile {
                path: service.into(),
                body: lc::pam_with_usher(&text),
                mode: 0o644,
            });
        }
    }
    out
}

/// Paths of every file the extension may own (for removal).
pub fn owned_paths() -> Vec<PathBuf> {
    use crate::loginconf as lc;
    let mut paths: Vec<PathBuf> = vec![
        "/etc/usher/login.conf".into(),
        lc::USER_CA_FILE.into(),
        lc::SSHD_DROP_IN.into(),
        lc::SUDOERS.into(),
        lc::NSSWITCH.into(),
    ];
    paths.extend(lc::PAM_SERVICES.iter().map(PathBuf::from));
    paths
}

/// The host key's certificate from the tenant's host CA (the key is made when missing, as
/// Debian's package would).
pub async fn renew_host_certificate(api: &Api, root: &Path) -> anyhow::Result<()> {
    use crate::loginconf as lc;
    use anyhow::Context as _;
    let key = root.join(lc::HOST_KEY.trim_start_matches('/'));
    let public = key.with_extension("pub");
    if !public.exists() {
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .context("cannot run ssh-keygen to make the host key")?;
        anyhow::ensure!(status.success(), "ssh-keygen could not make {}", key.display());
    }
    let line = fs::read_to_string(&public).with_context(|| format!("cannot read {}", public.display()))?;
    let answer = api
        .host_certificate(line.trim())
        .await
        .map_err(|e| anyhow::anyhow!("the server refused a host certificate: {e}"))?;
    let cert = answer["certificate"]
        .as_str()
        .context("no certificate in the answer")?;
    crate::state::write_atomic(
        &root.join(lc::HOST_CERT.trim_start_matches('/')),
        format!("{cert}\n").as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// Reloads sshd only through systemd and only where systemd runs the machine and sshd runs
/// under it: the extension never starts or signals what it did not start.
fn reload_sshd(log: &mut RunLog) {
    let systemd = fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd");
    if !systemd {
        log.line("sshd: not reloaded (systemd does not run this machine; sshd reads the new file when it next starts)");
        return;
    }
    let status = std::process::Command::new("systemctl")
        .args(["try-reload-or-restart", "ssh.service"])
        .status();
    log.line(&format!(
        "sshd: systemctl try-reload-or-restart ssh.service: {status:?}"
    ));
}

impl Machine<'_> {
    fn files(&self) -> Files {
        Files::new(&self.root, &self.state.backup_dir())
    }

    /// Installs (or re-applies) the login extension.
    pub async fn install(&self, ext: &Value, log: &mut RunLog) -> (Outcome, Option<String>) {
        log.line(&format!(
            "Running {} {} (generation {}) for {}",
            ext["publisher"].as_str().unwrap_or_default(),
            ext["type"].as_str().unwrap_or_default(),
            ext["generation"],
            ext["name"].as_str().unwrap_or_default()
        ));
        // 1. The operating system.
        if ext["handlerOsType"].as_str() == Some("Windows") {
            let m = format!(
                "{UNSUPPORTED_OS_TEXT}: {}.{} is for Windows and this machine runs Linux; set Usher.Identity LoginForLinux (or Microsoft.Azure.ActiveDirectory AADSSHLoginForLinux) instead.",
                ext["publisher"].as_str().unwrap_or_default(),
                ext["type"].as_str().unwrap_or_default()
            );
            log.line(&m);
            return (Outcome::fail(EXIT_UNSUPPORTED_OS, m), None);
        }
        match os_release(&self.root) {
            Some((id, version)) if supported_os(&id, &version) => {
                log.line(&format!("OS: {id} {version}: supported"))
            }
            found => {
                let what = found.map_or_else(
                    || "an unknown system (no /etc/os-release)".to_owned(),
                    |(i, v)| format!("{i} {v}"),
                );
                let m = format!(
                    "{UNSUPPORTED_OS_TEXT}: this machine runs {what}; supported are Debian 11, 12, 13 and Ubuntu 22.04, 24.04."
                );
                log.line(&m);
                return (Outcome::fail(EXIT_UNSUPPORTED_OS, m), None);
            }
        }
        // 2. The identity (what IMDS /metadata/identity/info answers).
        let config = match self.api.config().await {
            Ok(c) => c,
            Err(e) => {
                let m = format!("The server could not be asked for this machine's identity: {e}.");
                log.line(&m);
                return (Outcome::fail(EXIT_FAILED, m), None);
            }
        };
        if !config["identity"].is_object() {
            let m = "Terminal error 1007: exit code -2145648574 (DSREG_E_MSI_TENANTID_UNAVAILABLE): IMDS /metadata/identity/info has no tenant because the VM has no system-assigned managed identity. Turn it on (usher vm identity assign -g RG -n VM) and set the extension again.";
            log.line(m);
            return (Outcome::fail(EXIT_MSI_TENANTID_UNAVAILABLE, m), None);
        }
        log.line(&format!(
            "Identity: tenant {}, principal {}",
            config["tenantId"].as_str().unwrap_or_default(),
            config["identity"]["principalId"].as_str().unwrap_or_default()
        ));
        // 3. The device-registration endpoint.
        let registration = self
            .config
            .device_registration_url
            .clone()
            .unwrap_or_else(|| format!("{}/usher/agent/device", self.api.base()));
        match self.api.reachable(&registration).await {
            Ok(status) => log.line(&format!(
                "Device registration endpoint {registration}: reachable (HTTP {status})"
            )),
            Err(e) => {
                let m = format!(
                    "Exit code -2145648607 (DSREG_AUTOJOIN_DISC_FAILED): the device registration endpoint {registration} cannot be reached: {e}. Check outbound HTTPS to the server (usher-agent doctor lists the endpoints)."
                );
                log.line(&m);
                return (Outcome::fail(EXIT_AUTOJOIN_DISC_FAILED, m), None);
            }
        }
        // 4. No other directory in charge of users.
        if let Some(conflict) = other_directory(&self.root) {
            let m = format!(
                "This machine already takes users from another directory ({conflict}); remove that join first (realm leave, or SSSD/winbind), then set the extension again."
            );
            log.line(&m);
            return (Outcome::fail(EXIT_OTHER_DIRECTORY, m), None);
        }
        // 5. The device join.
        let host = hostname(&self.root);
        let (os, version) = os_release(&self.root).unwrap_or_default();
        let device_id = match self.api.register_device(&host, &os, &version).await {
            Ok(d) => d["deviceId"].as_str().unwrap_or_default().to_owned(),
            Err(e) if e.code == "HostnameDuplicate" => {
                log.line(&e.message);
                return (Outcome::fail(EXIT_HOSTNAME_DUPLICATE, e.message), None);
            }
            Err(e) => {
                let m = format!("The device join failed: {e}.");
                log.line(&m);
                return (Outcome::fail(EXIT_FAILED, m), None);
            }
        };
        log.line(&format!("Device joined: '{host}' ({device_id})"));
        // 6. The login configuration.
        // The modules and the sshd helper, from beside the agent.
        let dirs = crate::loginconf::module_dirs(self.config.module_dir.as_deref());
        match crate::loginconf::install_shipped(&self.root, &dirs) {
            Ok(done) => log.line(&format!("Installed {}", done.join(", "))),
            Err(e) => {
                let m = format!("Cannot install the login modules: {e:#}.");
                log.line(&m);
                return (Outcome::fail(EXIT_FAILED, m), Some(device_id));
            }
        }
        let files = self.files();
        let mut changed = false;
        let socket = self.config.socket();
        let mut all = login_files(&config, &device_id, self.api.base(), &socket);
        all.extend(edited_files(&self.root));
        for f in all {
            match files.install(&f) {
                Ok(c) => {
                    changed |= c;
                    log.line(&format!(
                        "{}: {}",
                        f.path.display(),
                        if c { "written" } else { "unchanged" }
                    ));
                }
                Err(e) => {
                    let m = format!("Cannot write {}: {e:#}.", f.path.display());
                    log.line(&m);
                    return (Outcome::fail(EXIT_FAILED, m), Some(device_id));
                }
            }
        }
        // The users and groups for NSS, from the login cache as it stands.
        let cache: Value = fs::read(self.state.logins_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({"logins": []}));
        if let Err(e) = crate::nssfiles::write(&self.root, &cache, &self.config.shell()) {
            let m = format!("Cannot write the NSS files: {e:#}.");
            log.line(&m);
            return (Outcome::fail(EXIT_FAILED, m), Some(device_id));
        }
        log.line("NSS: /etc/usher/passwd and /etc/usher/group written");
        match renew_host_certificate(self.api, &self.root).await {
            Ok(()) => log.line(&format!("Host certificate: {}", crate::loginconf::HOST_CERT)),
            Err(e) => {
                let m = format!("Cannot get a host certificate: {e:#}.");
                log.line(&m);
                return (Outcome::fail(EXIT_FAILED, m), Some(device_id));
            }
        }
        if changed {
            tokio::task::block_in_place(|| reload_sshd(log));
        }
        let m = format!(
            "Joined tenant {} as device '{host}' ({device_id}); login configuration in place.",
            config["tenantId"].as_str().unwrap_or_default()
        );
        log.line(&m);
        (Outcome::ok(m), Some(device_id))
    }

    /// Removes the extension: the device leaves the directory, the files go back.
    pub async fn uninstall(&self, log: &mut RunLog) -> Outcome {
        log.line("Removing the login extension");
        if let Err(e) = self.api.unregister_device().await {
            let m = format!("The device could not be removed from the directory: {e}.");
            log.line(&m);
            return Outcome::fail(EXIT_FAILED, m);
        }
        log.line("Device removed from the directory");
        let files = self.files();
        let mut changed = false;
        for p in owned_paths() {
            match files.remove(&p) {
                Ok(c) => {
                    changed |= c;
                    log.line(&format!(
                        "{}: {}",
                        p.display(),
                        if c { "restored" } else { "not ours, left alone" }
                    ));
                }
                Err(e) => {
                    let m = format!("Cannot restore {}: {e:#}.", p.display());
                    log.line(&m);
                    return Outcome::fail(EXIT_FAILED, m);
                }
            }
        }
        crate::nssfiles::remove(&self.root);
        crate::loginconf::remove_shipped(&self.root);
        let _ = fs::remove_file(
            self.root
                .join(crate::loginconf::HOST_CERT.trim_start_matches('/')),
        );
        if changed {
            tokio::task::block_in_place(|| reload_sshd(log));
        }
        Outcome::ok("The machine left the directory; its files are restored.")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn os_and_directories() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("etc")).unwrap();
        assert!(os_release(tmp.path()).is_none());
        fs::write(
            tmp.path().join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        let (id, v) = os_release(tmp.path()).unwrap();
        assert!(supported_os(&id, &v));
        assert!(!supported_os("centos", "7"));
        assert!(!supported_os("ubuntu", "20.04"));
        fs::write(
            tmp.path().join("etc/nsswitch.conf"),
            "passwd: files systemd # sss later\n",
        )
        .unwrap();
        assert!(other_directory(tmp.path()).is_none());
        fs::write(tmp.path().join("etc/nsswitch.conf"), "passwd:   files sss\n").unwrap();
        assert!(other_directory(tmp.path()).unwrap().contains("sss"));
        fs::write(
            tmp.path().join("etc/nsswitch.conf"),
            "passwd: files\ngroup: files winbind\n",
        )
        .unwrap();
        assert!(other_directory(tmp.path()).unwrap().contains("group"));
        fs::write(tmp.path().join("etc/nsswitch.conf"), "passwd: files\n").unwrap();
        fs::create_dir_all(tmp.path().join("etc/samba")).unwrap();
        fs::write(
            tmp.path().join("etc/samba/smb.conf"),
            "[global]\n   security = ADS\n",
        )
        .unwrap();
        assert!(other_directory(tmp.path()).unwrap().contains("Samba"));
    }

    #[test]
    fn failed_logs_are_kept_with_a_time_stamp() {
        let tmp = tempfile::tempdir().unwrap();
        let mut first = RunLog::start(tmp.path(), false, None);
        first.line("failed run");
        drop(first);
        // 2026-11-25T16:00:00.123Z
        let mut second = RunLog::start(tmp.path(), true, Some(1_795_622_400_123));
        second.line("second run");
        drop(second);
        let names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let kept: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("CommandExecution_"))
            .collect();
        assert_eq!(kept.len(), 1, "{names:?}");
        let stamp = kept[0]
            .trim_start_matches("CommandExecution_")
            .trim_end_matches(".log");
        assert!(
            stamp.len() == 17 && stamp.chars().all(|c| c.is_ascii_digit()),
            "{stamp}"
        );
        assert!(
            fs::read_to_string(tmp.path().join(LOG_NAME))
                .unwrap()
                .contains("second run")
        );
        // A run after a success overwrites.
        drop(RunLog::start(tmp.path(), false, None));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
