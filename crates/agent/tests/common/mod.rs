//! Test machines: each is a UTS + mount namespace held open by an anchor process, with its own
//! host name, its own copy of `/etc`, an overlay over `/usr` (what the login extension installs
//! there stays in the machine), and private `/run` and `/home`. Everything of the machine (its
//! agent, its sshd, commands run "on" it) enters that namespace with `nsenter`. Machines share
//! loopback with the server and with each other, as real machines share a network.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    reason = "test code shared by several test files"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod login;

use serde_json::Value;
use usher_testkit::TestServer;

pub const AGENT: &str = env!("CARGO_BIN_EXE_usher-agent");
pub const DEBIAN12: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory cargo put the agent in (and, built by `scripts/test.sh`, the NSS and PAM
/// modules, the sshd helper and the CLI).
pub fn target_dir() -> PathBuf {
    Path::new(AGENT).parent().unwrap().to_path_buf()
}

/// One machine.
pub struct Machine {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub imds_port: u16,
    pub agent: Option<tokio::process::Child>,
    pub extra: Vec<String>,
    /// Run the agent in a network namespace of its own (with only its loopback).
    pub own_network: bool,
    anchor: OnceLock<std::process::Child>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(a) = self.anchor.get_mut() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Machine {
    pub fn new(name: &str, os_release: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let ok = std::process::Command::new("cp")
            .args(["-a", "/etc"])
            .arg(&etc)
            .status()
            .unwrap();
        assert!(ok.success(), "copying /etc");
        // Debian's /etc/os-release is a symlink into /usr: the machine gets a file of its own.
        let _ = std::fs::remove_file(etc.join("os-release"));
        std::fs::write(etc.join("os-release"), os_release).unwrap();
        // As on a real machine, its own name resolves.
        let hosts = std::fs::read_to_string(etc.join("hosts")).unwrap_or_default();
        std::fs::write(etc.join("hosts"), format!("{hosts}127.0.1.1 {name}\n")).unwrap();
        for d in ["usr-upper", "usr-work", "home"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let imds_port = free_port();
        std::fs::create_dir_all(etc.join("usher")).unwrap();
        std::fs::write(
            etc.join("usher/agent.toml"),
            format!(
                "state_dir = \"{}\"\nimds_address = \"127.0.0.1:{imds_port}\"\nmodule_dir = \"{}\"\n",
                dir.path().join("state").display(),
                target_dir().display()
            ),
        )
        .unwrap();
        Machine {
            name: name.into(),
            dir,
            imds_port,
            agent: None,
            extra: vec![],
            own_network: false,
            anchor: OnceLock::new(),
        }
    }

    pub fn etc(&self, rel: &str) -> PathBuf {
        self.dir.path().join("etc").join(rel)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A path of the machine's own `/usr` as the overlay's upper layer holds it (what was
    /// installed into the machine).
    pub fn usr_upper(&self, rel: &str) -> PathBuf {
        self.dir.path().join("usr-upper").join(rel)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn set_config(&self, extra: &str) {
        let path = self.etc("usher/agent.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(extra);
        std::fs::write(path, text).unwrap();
    }

    /// The anchor's pid (the namespace), started on first use.
    pub fn anchor(&self) -> u32 {
        self.anchor
            .get_or_init(|| {
                let d = self.dir.path();
                let script = format!(
                    "set -e; mount --bind {etc} /etc; mount -t overlay overlay -o lowerdir=/usr,upperdir={up},workdir={work} /usr; \
                     mount -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/sshd; mount --bind {home} /home; hostname {name}; \
                     echo ready; exec sleep 100000",
                    etc = d.join("etc").display(),
                    up = d.join("usr-upper").display(),
                    work = d.join("usr-work").display(),
                    home = d.join("home").display(),
                    name = self.name
                );
                let mut child = std::process::Command::new("unshare")
                    .args(["--uts", "--mount", "--propagation", "private", "--", "sh", "-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap();
                let mut line = String::new();
                std::io::BufRead::read_line(
                    &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                    &mut line,
                )
                .unwrap();
                assert_eq!(line.trim(), "ready", "machine {} did not start", self.name);
                child
            })
            .id()
    }

    /// `PROGRAM ARGS` on the machine.
    pub fn on(&self, program: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("nsenter");
        c.args(["-t", &self.anchor().to_string(), "-m", "-u", "--"]);
        if self.own_network {
            c.args([
                "unshare",
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$@\"",
                "sh",
            ]);
        }
        c.arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// `usher-agent ARGS` on the machine.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = self.on(AGENT, args);
        c.args(&self.extra).env("USHER_AGENT_LOG", "info");
        c
    }

    /// Runs a program on the machine: (exit code, stdout, stderr), within 60 s.
    pub async fn run_on(&self, program: &str, args: &[&str]) -> (i32, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.on(program, args).output())
            .await
            .expect("command on the machine timed out")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn exec(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .expect("agent command timed out")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn join(&self, s: &TestServer, token: &str) -> (i32, String, String) {
        self.exec(&[
            "join",
            "--server",
            &s.url,
            "--ca-file",
            s.ca.to_str().unwrap(),
            "--token",
            token,
        ])
        .await
    }

    pub fn start(&mut self, extra: &[&str]) {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        let mut c = self.command(&args);
        c.stdout(Stdio::null()).stderr(Stdio::inherit());
        self.agent = Some(c.spawn().unwrap());
    }

    /// SIGTERM (the agent cleans up), then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            if let Some(pid) = a.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            if tokio::time::timeout(Duration::from_secs(10), a.wait())
                .await
                .is_err()
            {
                let _ = a.start_kill();
                let _ = a.wait().await;
            }
        }
    }

    /// IMDS on this machine: (status, body, headers).
    pub async fn imds(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        imds_get(self.imds_port, path, headers).await
    }

    pub async fn status(&self) -> Value {
        let (code, out, err) = self.exec(&["status", "-o", "json"]).await;
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }
}

pub async fn imds_get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut req = client.get(format!("http://127.0.0.1:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match req.try_clone().unwrap().send().await {
            Ok(r) => {
                let st = r.status().as_u16();
                let h = r.headers().clone();
                let text = r.text().await.unwrap();
                return (st, serde_json::from_str(&text).unwrap_or(Value::String(text)), h);
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("IMDS on {port} never answered: {e}"),
        }
    }
}
