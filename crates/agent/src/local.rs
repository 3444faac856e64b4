//! The agent's local socket (`usher_proto::local`): the sshd principals helper and the PAM module
//! ask here, and the agent decides from its login cache, asking the server when the cache is
//! older than the staleness bound (and refusing when it cannot). It also records PAM sessions so
//! that revocation (SPEC L8) can end them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use usher_proto::local::{
    BAD_CREDENTIALS_TEXT, LocalReply, LocalRequest, MAX_LINE, NO_ROLE_TEXT, Outcome, canonical_user,
};

use crate::api::Api;
use crate::config::AgentConfig;

/// A user's right on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Virtual Machine Administrator Login.
    Admin,
    /// Virtual Machine User Login.
    User,
    /// Neither.
    Deny,
}

/// One user of the login cache.
#[derive(Debug, Clone)]
pub struct Login {
    /// Object id.
    pub principal_id: String,
    /// UID (and private group's GID).
    pub uid: u32,
    /// The right.
    pub right: Right,
}

/// The cache: who may log in here, as of `synced`.
#[derive(Debug, Default)]
struct Cache {
    users: HashMap<String, Login>,
    synced: Option<Instant>,
}

/// A PAM session the agent knows of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LiveSession {
    /// The user (canonical).
    pub user: String,
    /// The process that opened it (sshd's per-connection process).
    pub pid: u32,
    /// That process's start time (clock ticks since boot), so a reused PID is never hit.
    pub start: u64,
    /// When it opened.
    pub opened_at: i64,
}

/// Parses the users of a login snapshot.
pub fn users_of(snapshot: &Value) -> HashMap<String, Login> {
    let mut out = HashMap::new();
    for l in snapshot["logins"].as_array().into_iter().flatten() {
        let (Some(upn), Some(uid)) = (l["userPrincipalName"].as_str(), l["uid"].as_u64()) else {
            continue;
        };
        let right = match l["right"].as_str() {
            Some("admin") => Right::Admin,
            Some("user") => Right::User,
            _ => Right::Deny,
        };
        out.insert(
            upn.to_ascii_lowercase(),
            Login {
                principal_id: l["principalId"].as_str().unwrap_or_default().to_owned(),
                uid: u32::try_from(uid).unwrap_or(u32::MAX),
                right,
            },
        );
    }
    out
}

/// The agent's login state, shared by the socket, the cache loop and revocation.
#[derive(Debug)]
pub struct LoginState {
    api: Arc<Api>,
    config: AgentConfig,
    root: PathBuf,
    sessions_file: PathBuf,
    cache: RwLock<Cache>,
    sessions: Mutex<Vec<LiveSession>>,
    /// The tenant's session lock, seconds (0: off), from the last snapshot.
    tenant_idle_secs: std::sync::atomic::AtomicU64,
}

/// Process start time (field 22 of `/proc/PID/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// `pid` and every process below it.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && let Some(pp) = parent_of(p)
            {
                parents.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() && tree.len() < 10_000 {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

impl LoginState {
    /// State for `root` (the machine's `/`), with the cache as last written (stale until the
    /// first answer from the server).
    pub fn new(
        api: Arc<Api>,
        config: AgentConfig,
        root: &Path,
        logins_file: &Path,
        sessions_file: &Path,
    ) -> Self {
        let snapshot = std::fs::read(logins_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let users = snapshot.as_ref().map(users_of).unwrap_or_default();
        let tenant_idle = snapshot
            .as_ref()
            .and_then(|v| v["sessionIdleTimeoutSeconds"].as_u64())
            .unwrap_or(0);
        let sessions = std::fs::read(sessions_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            api,
            config,
            root: root.to_path_buf(),
            sessions_file: sessions_file.to_path_buf(),
            cache: RwLock::new(Cache { users, synced: None }),
            sessions: Mutex::new(sessions),
            tenant_idle_secs: std::sync::atomic::AtomicU64::new(tenant_idle),
        }
    }

    /// The session lock in effect: the machine's setting, else the tenant's; `None`: off.
    pub fn idle_limit(&self) -> Option<Duration> {
        let tenant = self.tenant_idle_secs.load(std::sync::atomic::Ordering::Relaxed);
        idle_limit(self.config.session_idle_timeout_secs, tenant)
    }

    /// Disconnects sessions with no input or output for the idle limit (SPEC L7): each is told
    /// why on its terminal or standard error, then ended. `activity` keeps each session's last
    /// I/O total and when it changed between calls. Returns the users locked out, with counts.
    pub fn lock_idle_sessions(
        &self,
        activity: &mut HashMap<(u32, u64), (u64, Instant)>,
    ) -> Vec<(String, String, u32)> {
        let Some(limit) = self.idle_limit() else {
            activity.clear();
            return vec![];
        };
        let Ok(mut sessions) = self.sessions.lock() else {
            return vec![];
        };
        let now = Instant::now();
        let mut locked: HashMap<String, u32> = HashMap::new();
        sessions.retain(|s| {
            if process_start(s.pid) != Some(s.start) {
                return false;
            }
            let io = session_io(s.pid);
            let entry = activity.entry((s.pid, s.start)).or_insert((io, now));
            if entry.0 != io {
                *entry = (io, now);
                return true;
            }
            if now.duration_since(entry.1) < limit {
                return true;
            }
            tell_session(s.pid, usher_proto::local::SESSION_LOCKED_TEXT);
            end_session(s.pid);
            *locked.entry(s.user.clone()).or_default() += 1;
            tracing::warn!(user = %s.user, pid = s.pid, idle_secs = limit.as_secs(), "idle session locked: disconnected");
            false
        });
        let live: std::collections::HashSet<(u32, u64)> = sessions.iter().map(|s| (s.pid, s.start)).collect();
        activity.retain(|k, _| live.contains(k));
        if !locked.is_empty() {
            self.save_sessions(&sessions);
        }
        let ids = self.cache.read().map(|c| c.users.clone()).unwrap_or_default();
        locked
            .into_iter()
            .map(|(u, n)| {
                let id = ids.get(&u).map(|l| l.principal_id.clone()).unwrap_or_default();
                (u, id, n)
            })
            .collect()
    }

    /// The server answered the long poll (with or without a change).
    pub fn mark_synced(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.synced = Some(Instant::now());
        }
    }

    /// A new snapshot: the cache follows, and sessions of users who lost their login end.
    /// Returns the users whose sessions were ended, with how many.
    pub fn apply_snapshot(&self, snapshot: &Value) -> Vec<(String, String, u32)> {
        let users = users_of(snapshot);
        self.tenant_idle_secs.store(
            snapshot["sessionIdleTimeoutSeconds"].as_u64().unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        let old = match self.cache.write() {
            Ok(mut c) => {
                c.synced = Some(Instant::now());
                std::mem::replace(&mut c.users, users.clone())
            }
            Err(_) => HashMap::new(),
        };
        self.revoke_except(&users, &old)
    }

    fn revoke_except(
        &self,
        users: &HashMap<String, Login>,
        old: &HashMap<String, Login>,
    ) -> Vec<(String, String, u32)> {
        let Ok(mut sessions) = self.sessions.lock() else {
            return vec![];
        };
        let mut ended: HashMap<String, u32> = HashMap::new();
        sessions.retain(|s| {
            let allowed = users.get(&s.user).is_some_and(|l| l.right != Right::Deny);
            if allowed {
                return true;
            }
            if process_start(s.pid) == Some(s.start) {
                end_session(s.pid);
                *ended.entry(s.user.clone()).or_default() += 1;
                tracing::warn!(user = %s.user, pid = s.pid, "login revoked: live session ended");
            }
            false
        });
        // Sessions whose process is gone are forgotten too.
        sessions.retain(|s| process_start(s.pid) == Some(s.start));
        self.save_sessions(&sessions);
        ended
            .into_iter()
            .map(|(u, n)| {
                let id = old.get(&u).map(|l| l.principal_id.clone()).unwrap_or_default();
                (u, id, n)
            })
            .collect()
    }

    fn save_sessions(&self, sessions: &[LiveSession]) {
        if let Ok(body) = serde_json::to_vec(sessions)
            && let Err(e) = crate::state::write_atomic(&self.sessions_file, &body, 0o600)
        {
            tracing::error!(error = %e, "cannot save the session list");
        }
    }

    /// The user's right here, from the cache while it is fresh, else from the server.
    /// `Err` when the cache is stale and the server cannot be asked: callers fail closed.
    pub async fn right(&self, user: &str) -> Result<Option<Login>, String> {
        let (fresh, cached) = {
            let c = self.cache.read().map_err(|_| "cache poisoned".to_owned())?;
            let fresh = c
                .synced
                .is_some_and(|t| t.elapsed() <= self.config.max_staleness());
            (fresh, c.users.get(user).cloned())
        };
        if fresh {
            return Ok(cached);
        }
        let asked = tokio::time::timeout(Duration::from_secs(5), self.api.login_check(user)).await;
        match asked {
            Ok(Ok(v)) => {
                let right = match v["decision"].as_str() {
                    Some("admin") => Right::Admin,
                    Some("user") => Right::User,
                    _ => Right::Deny,
                };
                Ok(cached.map(|l| Login { right, ..l }).or_else(|| {
                    (right != Right::Deny).then(|| Login {
                        principal_id: v["principalId"].as_str().unwrap_or_default().to_owned(),
                        uid: u32::MAX,
                        right,
                    })
                }))
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the server did not answer within 5 s".into()),
        }
    }

    /// Serves the socket until the task is dropped.
    pub async fn serve(self: Arc<Self>) -> Result<()> {
        let path = self.config.socket();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        tracing::info!(socket = %path.display(), "local socket listening");
        loop {
            let (stream, _) = listener.accept().await?;
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.conversation(stream).await {
                    tracing::debug!(error = %e, "local conversation ended");
                }
            });
        }
    }

    async fn conversation(&self, stream: UnixStream) -> Result<()> {
        // Only root may ask (sshd's helper runs as root; PAM runs in root's sshd, login, su).
        if stream.peer_cred().map(|c| c.uid()).ok() != Some(0) {
            anyhow::bail!("refused a caller that is not root");
        }
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(16 * MAX_LINE as u64)).lines();
        let mut talk = Talk { lines: &mut lines };
        let Some(first) = talk.next().await? else {
            return Ok(());
        };
        let replies = self.handle(first, &mut talk, &mut write).await?;
        send(&mut write, &replies).await
    }

    async fn handle(
        &self,
        req: LocalRequest,
        talk: &mut Talk<'_>,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> Result<LocalReply> {
        Ok(match req {
            LocalRequest::Principals { user, certificate } => LocalReply::Principals {
                principals: self.principals(&user, &certificate).await,
            },
            LocalRequest::Authenticate { user, rhost, .. } => {
                self.authenticate(&user, rhost, talk, write).await?
            }
            LocalRequest::Account { user, .. } => self.account(&user).await,
            LocalRequest::OpenSession { user, pid, .. } => self.open_session(&user, pid).await,
            LocalRequest::CloseSession { user, pid, .. } => self.close_session(&user, pid),
            LocalRequest::ChangePassword { user } => {
                if directory_name(&user).is_some() {
                    done(
                        Outcome::Denied,
                        format!(
                            "Directory passwords are not changed on this machine. Change yours at {}/changepassword.",
                            self.api.base()
                        ),
                    )
                } else {
                    done_silent(Outcome::UnknownUser)
                }
            }
            LocalRequest::Answer { .. } => done_silent(Outcome::AuthFailed),
        })
    }

    /// sshd's question: may `user` log in with this certificate? The certificate must be a user
    /// certificate of the tenant's CA, valid now, for this machine's device, naming `user`, and
    /// the user must have a login role here.
    async fn principals(&self, user: &str, certificate: &str) -> Vec<String> {
        match self.check_certificate(user, certificate).await {
            Ok(p) => vec![p],
            Err(why) => {
                tracing::warn!(user, reason = %why, "certificate refused");
                vec![]
            }
        }
    }

    async fn check_certificate(&self, user: &str, certificate: &str) -> Result<String, String> {
        let cert = usher_crypto::ssh::parse_certificate(certificate).map_err(|e| {
            format!(
                "unreadable certificate ({} bytes, starting {:?}): {e}",
                certificate.len(),
                certificate.chars().take(24).collect::<String>()
            )
        })?;
        let ca_text = std::fs::read_to_string(
            self.root
                .join(crate::loginconf::USER_CA_FILE.trim_start_matches('/')),
        )
        .map_err(|e| format!("no user CA on this machine: {e}"))?;
        let ca_line = ca_text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("the user CA file is empty")?;
        let ca = usher_crypto::ssh::SshPublicKey::from_openssh(ca_line)
            .map_err(|e| format!("the user CA file is unreadable: {e}"))?;
        if cert.signature_key != ca {
            return Err("not signed by the tenant's user CA".into());
        }
        if cert.cert_type != usher_crypto::ssh::CertType::User {
            return Err("not a user certificate".into());
        }
        let now = u64::try_from(crate::now()).unwrap_or(0);
        if now < cert.valid_after || now >= cert.valid_before {
            return Err("expired or not yet valid".into());
        }
        let device = device_id(&self.root).ok_or("this machine has no device id")?;
        let bound = cert
            .extensions
            .iter()
            .find(|(k, _)| k == usher_proto::local::DEVICE_EXTENSION)
            .map(|(_, v)| v.to_ascii_lowercase());
        if bound.as_deref() != Some(device.as_str()) {
            return Err(format!(
                "bound to device {} but this machine is {device}",
                bound.unwrap_or_else(|| "(none)".into())
            ));
        }
        let canonical = canonical_user(user);
        let principal = cert
            .principals
            .iter()
            .find(|p| p.to_ascii_lowercase() == canonical)
            .ok_or_else(|| format!("issued to {:?}, not {canonical}", cert.principals))?;
        match self.right(&canonical).await {
            Ok(Some(l)) if l.right != Right::Deny => Ok(principal.clone()),
            Ok(_) => Err("no login role on this machine".into()),
            Err(e) => Err(format!(
                "the login cache is stale and the server cannot be asked: {e}"
            )),
        }
    }

    async fn authenticate(
        &self,
        user: &str,
        rhost: Option<String>,
        talk: &mut Talk<'_>,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> Result<LocalReply> {
        let Some(canonical) = directory_name(user) else {
            return Ok(done_silent(Outcome::UnknownUser));
        };
        send(
            write,
            &LocalReply::Prompt {
                text: "Password: ".into(),
                echo: false,
            },
        )
        .await?;
        let Some(LocalRequest::Answer { text: password }) = talk.next().await? else {
            return Ok(done_silent(Outcome::AuthFailed));
        };
        // A user without a login here is told so, and the password goes nowhere: sshd does not
        // even pass it on for names it cannot resolve, and no lockout is counted for a machine
        // the user may not use.
        if let Err(refused) = self.login_here(&canonical).await {
            return Ok(refused);
        }
        let mut body = json!({"user": canonical, "password": password, "rhost": rhost});
        drop(password);
        let mut result = self.api.relay(&body).await;
        body["password"] = Value::Null;
        // One one-time code step at most.
        if let Ok(r) = &result
            && r["result"] == "code"
        {
            let flow = r["flow"].as_str().unwrap_or_default().to_owned();
            send(
                write,
                &LocalReply::Prompt {
                    text: r["prompt"].as_str().unwrap_or("One-time code: ").into(),
                    echo: true,
                },
            )
            .await?;
            let Some(LocalRequest::Answer { text: code }) = talk.next().await? else {
                return Ok(done_silent(Outcome::AuthFailed));
            };
            result = self
                .api
                .relay(&json!({"flow": flow, "code": code, "rhost": rhost}))
                .await;
        }
        Ok(match result {
            Ok(r) if r["result"] == "success" => done_silent(Outcome::Success),
            Ok(r) => {
                let message = r["message"].as_str().unwrap_or(BAD_CREDENTIALS_TEXT).to_owned();
                let outcome = match r["reason"].as_str() {
                    Some("Locked") => Outcome::MaxTries,
                    Some("NoRole") => Outcome::Denied,
                    _ => Outcome::AuthFailed,
                };
                tracing::info!(user = %canonical, reason = r["reason"].as_str().unwrap_or("code"), "password sign-in refused");
                done(outcome, message)
            }
            Err(e) => {
                tracing::warn!(user = %canonical, error = %e, "the password cannot be checked");
                done(Outcome::Unavailable, unavailable_text())
            }
        })
    }

    /// The user's login here, or the reply refusing it: L6's text without a role, "unavailable"
    /// when the cache is stale and the server cannot be asked.
    async fn login_here(&self, canonical: &str) -> Result<Login, LocalReply> {
        match self.right(canonical).await {
            Ok(Some(l)) if l.right != Right::Deny => Ok(l),
            Ok(_) => {
                tracing::info!(user = %canonical, "refused: no login role here");
                Err(done(Outcome::Denied, NO_ROLE_TEXT))
            }
            Err(e) => {
                tracing::warn!(user = %canonical, error = %e, "stale login cache and no server: refused");
                Err(done(Outcome::Unavailable, unavailable_text()))
            }
        }
    }

    async fn account(&self, user: &str) -> LocalReply {
        let Some(canonical) = directory_name(user) else {
            return done_silent(Outcome::UnknownUser);
        };
        match self.login_here(&canonical).await {
            Ok(_) => done_silent(Outcome::Success),
            Err(refused) => refused,
        }
    }

    async fn open_session(&self, user: &str, pid: u32) -> LocalReply {
        let Some(canonical) = directory_name(user) else {
            return done_silent(Outcome::UnknownUser);
        };
        let login = match self.login_here(&canonical).await {
            Ok(l) => l,
            Err(refused) => return refused,
        };
        if login.uid != u32::MAX
            && let Err(e) = make_home(&self.root, &canonical, login.uid)
        {
            tracing::error!(user = %canonical, error = %format!("{e:#}"), "cannot create the home directory");
        }
        if let Some(start) = process_start(pid)
            && let Ok(mut s) = self.sessions.lock()
        {
            s.push(LiveSession {
                user: canonical,
                pid,
                start,
                opened_at: crate::now(),
            });
            self.save_sessions(&s);
        }
        done_silent(Outcome::Success)
    }

    fn close_session(&self, user: &str, pid: u32) -> LocalReply {
        let Some(canonical) = directory_name(user) else {
            return done_silent(Outcome::UnknownUser);
        };
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|x| !(x.pid == pid && x.user == canonical));
            self.save_sessions(&s);
        }
        done_silent(Outcome::Success)
    }
}

/// The canonical name when `user` can be a directory user (`user@domain`, `USHER\\...`).
fn directory_name(user: &str) -> Option<String> {
    Some(canonical_user(user)).filter(|c| c.contains('@'))
}

fn unavailable_text() -> String {
    "The sign-in service on this machine cannot reach the directory. Try again later or contact your system administrator.".into()
}

fn done(outcome: Outcome, message: impl Into<String>) -> LocalReply {
    LocalReply::Done {
        outcome,
        message: Some(message.into()),
    }
}

fn done_silent(outcome: Outcome) -> LocalReply {
    LocalReply::Done {
        outcome,
        message: None,
    }
}

/// The device id the login extension wrote into `/etc/usher/login.conf`.
pub fn device_id(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("etc/usher/login.conf")).ok()?;
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "device_id").then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        })
        .filter(|d| !d.is_empty())
}

/// The session lock in effect: `machine` (0: off) wins over `tenant` (0: off).
pub fn idle_limit(machine: Option<u64>, tenant: u64) -> Option<Duration> {
    let secs = machine.unwrap_or(tenant);
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Bytes read and written so far by the session's own processes (sshd's are left out, so
/// keepalives and other protocol traffic never count as activity): any input or output moves it.
fn session_io(pid: u32) -> u64 {
    process_tree(pid)
        .iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim_end() != "sshd"))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/io")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    matches!(k, "rchar" | "wchar").then(|| v.trim().parse::<u64>().ok())?
                })
                .collect::<Vec<_>>()
        })
        .fold(0u64, u64::wrapping_add)
}

/// Writes a line to the terminal or standard error of a session's processes (each distinct
/// target once, never blocking on a full pipe), so the user sees why the session ends.
///
/// The agent is root and `/proc/PID/fd/2` reopens whatever the user's stderr names, so only a
/// pseudo-terminal (`/dev/pts/N`) or a pipe is ever written, checked by name before opening and
/// by type (and identity) after: never a file the user merely had open for reading.
fn tell_session(pid: u32, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
    const O_NONBLOCK: i32 = 0o4000;
    const O_NOCTTY: i32 = 0o400;
    let mut told = std::collections::HashSet::new();
    for p in process_tree(pid).iter().rev() {
        let fd = format!("/proc/{p}/fd/2");
        let Ok(target) = std::fs::read_link(&fd) else {
            continue;
        };
        let t = target.to_string_lossy().into_owned();
        let pts = t.starts_with("/dev/pts/") && t["/dev/pts/".len()..].bytes().all(|b| b.is_ascii_digit());
        let pipe = t.starts_with("pipe:[");
        if !(pts || pipe) || !told.insert(t) {
            continue;
        }
        let Ok(before) = std::fs::metadata(&fd) else {
            continue;
        };
        let Ok(mut f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK | O_NOCTTY)
            .open(&fd)
        else {
            continue;
        };
        let Ok(opened) = f.metadata() else {
            continue;
        };
        let kind_ok = if pts {
            opened.file_type().is_char_device()
        } else {
            opened.file_type().is_fifo()
        };
        // The same object that was checked, not one swapped in since.
        if kind_ok && opened.dev() == before.dev() && opened.ino() == before.ino() {
            let _ = f.write_all(format!("\r\n{text}\r\n").as_bytes());
        }
    }
}

/// Ends a session: every process below sshd's per-connection process, then that process.
fn end_session(pid: u32) {
    let tree = process_tree(pid);
    let args: Vec<String> = tree.iter().rev().map(u32::to_string).collect();
    let status = std::process::Command::new("kill")
        .arg("-KILL")
        .args(&args)
        .status();
    if let Err(e) = status {
        tracing::error!(error = %e, pid, "cannot end a session");
    }
}

/// Creates `/home/<user>` (0700, the user's) from `/etc/skel` on first login.
fn make_home(root: &Path, user: &str, uid: u32) -> Result<()> {
    let home = root.join("home").join(user);
    if home.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(root.join("home"))?;
    std::fs::create_dir(&home)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
    if let Ok(skel) = std::fs::read_dir(root.join("etc/skel")) {
        for e in skel.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let to = home.join(e.file_name());
                std::fs::copy(e.path(), &to)?;
                std::os::unix::fs::chown(&to, Some(uid), Some(uid))?;
            }
        }
    }
    std::os::unix::fs::chown(&home, Some(uid), Some(uid))?;
    Ok(())
}

struct Talk<'a> {
    lines: &'a mut tokio::io::Lines<BufReader<tokio::io::Take<tokio::net::unix::OwnedReadHalf>>>,
}

impl Talk<'_> {
    /// The next request; the PAM module waits for the user in between, so allow 5 minutes.
    async fn next(&mut self) -> Result<Option<LocalRequest>> {
        let line = tokio::time::timeout(Duration::from_secs(300), self.lines.next_line())
            .await
            .context("no answer within 5 minutes")??;
        match line {
            Some(l) if l.len() > MAX_LINE => anyhow::bail!("line too long"),
            Some(l) => Ok(Some(serde_json::from_str(&l).context("not a request")?)),
            None => Ok(None),
        }
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &LocalReply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok(())
}

/// Reports ended sessions to the server (the sign-in log records why).
/// Reports ended sessions; `reason` is `revoked` (L8) or `idleLock` (L7).
pub async fn report_ended(api: &Api, ended: Vec<(String, String, u32)>, reason: &str) {
    for (user, id, n) in ended {
        if let Err(e) = api.sessions_ended(&user, &id, n, reason).await {
            tracing::warn!(user, error = %e, "cannot report ended sessions");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn the_machine_setting_beats_the_tenant_and_zero_is_off() {
        assert_eq!(idle_limit(None, 0), None);
        assert_eq!(idle_limit(None, 600), Some(Duration::from_secs(600)));
        assert_eq!(idle_limit(Some(60), 600), Some(Duration::from_secs(60)));
        assert_eq!(idle_limit(Some(0), 600), None);
    }

    #[test]
    fn sessions_are_told_on_pipes_never_into_files() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stderr");
        std::fs::write(&file, "").unwrap();
        // stderr is a regular file the process could only read: the agent must not write it.
        let mut into_file = std::process::Command::new("sleep")
            .arg("3")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::open(&file).unwrap())
            .spawn()
            .unwrap();
        tell_session(into_file.id(), "locked");
        let _ = into_file.kill();
        let _ = into_file.wait();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
        // stderr is a pipe (a session without a terminal): the user reads why.
        let mut piped = std::process::Command::new("sleep")
            .arg("3")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tell_session(piped.id(), "locked");
        let _ = piped.kill();
        let mut err = String::new();
        piped.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let _ = piped.wait();
        assert!(err.contains("locked"), "{err:?}");
    }

    #[test]
    fn sshd_traffic_is_not_session_activity() {
        // The same program under sshd's name (keepalives, protocol traffic) counts for nothing.
        let dir = tempfile::tempdir().unwrap();
        let sshd = dir.path().join("sshd");
        std::fs::copy("/bin/cat", &sshd).unwrap();
        let mut child = std::process::Command::new(&sshd)
            .arg("/dev/zero")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let seen = session_io(child.id());
        let own: u64 = std::fs::read_to_string(format!("/proc/{}/io", child.id()))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("rchar: ").and_then(|v| v.parse::<u64>().ok()))
            .sum();
        let _ = child.kill();
        let _ = child.wait();
        assert!(own > 0, "the test process did read");
        assert_eq!(seen, 0, "an sshd-named process must not count");
    }

    #[test]
    fn session_io_grows_with_output() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 0.3; head -c 100000 /dev/zero > /dev/null; sleep 3"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let before = session_io(child.id());
        std::thread::sleep(Duration::from_millis(1200));
        let after = session_io(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(after >= before + 100_000, "{before} -> {after}");
    }

    #[test]
    fn snapshot_users_and_process_tree() {
        let snap = json!({"logins": [
            {"principalId": "p1", "userPrincipalName": "Ann@Contoso.test", "uid": 1879048192u64, "right": "admin"},
            {"principalId": "p2", "userPrincipalName": null, "uid": 1879048193u64, "right": "user"},
        ]});
        let users = users_of(&snap);
        assert_eq!(users.len(), 1);
        assert_eq!(users["ann@contoso.test"].right, Right::Admin);
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert_eq!(process_tree(me)[0], me);
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(process_tree(me).contains(&child.id()), "children are in the tree");
        end_session(child.id());
        let mut child = child;
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed");
    }
}
