//! Login machinery shared by the SSH tests and the login benchmark: a machine with its agent,
//! the login extension and Debian's sshd; a client with its own `usher` sign-in and an
//! `/etc/hosts` naming the machines.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use usher_testkit::TestServer;

use super::{DEBIAN12, Machine, free_port, target_dir};

pub fn cli_path() -> PathBuf {
    let p = target_dir().join("usher");
    assert!(
        p.exists(),
        "{} is missing: build it first (cargo build -p usher-cli; scripts/test.sh does)",
        p.display()
    );
    p
}

/// A machine with its agent running, the login extension Succeeded, and sshd listening.
pub struct Host {
    pub m: Machine,
    pub vm: String,
    pub port: u16,
    pub sshd: Option<tokio::process::Child>,
}

impl Host {
    pub async fn up(s: &TestServer, admin: &str, rg: &str, name: &str, extra_config: &str) -> Host {
        let mut m = Machine::new(name, DEBIAN12);
        m.set_config(&format!(
            "agent_socket = \"{}\"\n{extra_config}",
            m.state().join("agent.sock").display()
        ));
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
        let body = json!({"location": "southcentralus", "identity": {"type": "SystemAssigned"}, "properties": {
            "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2"}},
            "osProfile": {"adminUsername": "azureuser", "adminPassword": "Long-enough-pass-1"}}});
        let (st, b) = s.api("PUT", &vm, admin, Some(body)).await;
        assert_eq!(st, 201, "{b}");
        let (st, t) = s.api("POST", &format!("{vm}/onboardingToken"), admin, None).await;
        assert_eq!(st, 200, "{t}");
        let (code, out, err) = m.join(s, t["onboardingToken"].as_str().unwrap()).await;
        assert_eq!(code, 0, "{out}{err}");
        m.start(&[]);
        let (st, b) = s
            .api(
                "PUT",
                &format!("{vm}/extensions/LoginForLinux"),
                admin,
                Some(json!({"location": "southcentralus", "properties": {"publisher": "Usher.Identity", "type": "LoginForLinux", "settings": {}}})),
            )
            .await;
        assert!(st == 201 || st == 200, "{b}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, e) = s
                .api(
                    "GET",
                    &format!("{vm}/extensions/LoginForLinux?$expand=instanceView"),
                    admin,
                    None,
                )
                .await;
            match e["properties"]["provisioningState"].as_str() {
                Some("Succeeded") => break,
                Some("Failed") => panic!("the login extension failed on {name}: {e}"),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the login extension never finished on {name}: {e}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut h = Host {
            m,
            vm,
            port: free_port(),
            sshd: None,
        };
        h.start_sshd().await;
        h
    }

    /// Debian's sshd, as packaged, with its default configuration (plus our drop-in).
    pub async fn start_sshd(&mut self) {
        let (code, out, err) = self.m.run_on("/usr/sbin/sshd", &["-t"]).await;
        assert_eq!(code, 0, "sshd -t on {}: {out}{err}", self.m.name);
        let log = self.m.dir.path().join("sshd.log");
        let port = self.port.to_string();
        let mut c = self.m.on(
            "/usr/sbin/sshd",
            &[
                "-D",
                "-p",
                &port,
                "-o",
                "ListenAddress=127.0.0.1",
                "-E",
                log.to_str().unwrap(),
            ],
        );
        c.stdout(Stdio::null()).stderr(Stdio::null());
        self.sshd = Some(c.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "sshd never listened: {}",
                self.sshd_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.m.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.m.stop().await;
    }
}

/// A user at a client machine: their own `usher` sign-in, and `/etc/hosts` naming the machines.
pub struct Client {
    pub config: tempfile::TempDir,
    pub hosts: PathBuf,
    pub server: String,
    pub ca: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Client {
    pub async fn signed_in(s: &TestServer, upn: &str, password: &str, names: &[&str]) -> Client {
        let config = tempfile::tempdir().unwrap();
        let hosts = config.path().join("hosts");
        let mut text = String::from("127.0.0.1 localhost\n");
        for n in names {
            text.push_str(&format!("127.0.0.1 {n}\n"));
        }
        std::fs::write(&hosts, text).unwrap();
        let c = Client {
            config,
            hosts,
            server: s.url.clone(),
            ca: s.ca.clone(),
        };
        let out = c.usher(&["login", "-u", upn, "-p", password]).await;
        assert_eq!(out.code, 0, "login {upn}: {out:?}");
        c
    }

    /// `PROGRAM ARGS` in a mount namespace with the client's `/etc/hosts`, with the client's
    /// `usher` settings in the environment.
    pub fn command(&self, program: &std::path::Path, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/hosts && shift && exec \"$@\"",
            "sh",
        ])
        .arg(&self.hosts)
        .arg(program)
        .args(args)
        .env("USHER_CONFIG_DIR", self.config.path())
        .env("USHER_SERVER", &self.server)
        .env("USHER_CA_FILE", &self.ca)
        .env("HOME", self.config.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        c
    }

    async fn output(&self, program: &std::path::Path, args: &[&str]) -> Out {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(program, args).output())
            .await
            .unwrap_or_else(|_| panic!("{} timed out", program.display()))
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `usher ARGS` on the client.
    pub async fn usher(&self, args: &[&str]) -> Out {
        self.output(&cli_path(), args).await
    }

    /// Runs `usher ssh config` for `host` with keys in `keys`; returns the config file written.
    pub async fn ssh_config(&self, host: &Host, keys: &std::path::Path) -> PathBuf {
        let port = host.port.to_string();
        let out = self
            .usher(&[
                "ssh",
                "config",
                "--hostname",
                &host.m.name,
                "--port",
                &port,
                "--yes",
                "--keys-dir",
                keys.to_str().unwrap(),
            ])
            .await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout.contains(&format!("Host {}", host.m.name)) && out.stdout.contains("CertificateFile"),
            "{out:?}"
        );
        let file = self.config.path().join(format!("ssh_config.{}", host.m.name));
        std::fs::write(&file, &out.stdout).unwrap();
        file
    }

    pub async fn ssh(&self, host: &Host, command: &[&str]) -> Out {
        let port = host.port.to_string();
        let mut args = vec![
            "ssh",
            "vm",
            "--hostname",
            host.m.name.as_str(),
            "--port",
            &port,
            "--yes",
            "--",
            "-o",
            "BatchMode=yes",
        ];
        args.extend_from_slice(command);
        self.usher(&args).await
    }

    /// Plain `ssh` (no usher) with options, in the client's namespace.
    pub async fn plain_ssh(&self, args: &[&str]) -> Out {
        self.output(std::path::Path::new("ssh"), args).await
    }
}

pub async fn assign(
    s: &TestServer,
    admin: &str,
    scope: &str,
    sub: &str,
    role: &str,
    principal: &str,
) -> String {
    let name = uuid::Uuid::new_v4().to_string();
    let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let (st, b) = s
        .api("PUT", &id, admin, Some(json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
            "principalId": principal}})))
        .await;
    assert_eq!(st, 201, "{b}");
    id
}

pub async fn group_with(s: &TestServer, admin: &str, name: &str, member: &str) -> String {
    let (st, g) = s
        .api("POST", "/v1.0/groups", admin, Some(json!({"displayName": name, "mailNickname": name, "securityEnabled": true, "mailEnabled": false})))
        .await;
    assert_eq!(st, 201, "{g}");
    let g = g["id"].as_str().unwrap().to_owned();
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/groups/{g}/members/$ref"),
            admin,
            Some(json!({"@odata.id": format!("{}/v1.0/directoryObjects/{member}", s.url)})),
        )
        .await;
    assert!(st == 204 || st == 200, "{b}");
    g
}

pub async fn setup() -> (TestServer, String, String, String) {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let (_, subs) = s.api("GET", "/subscriptions", &admin, None).await;
    let sub = subs["value"][0]["subscriptionId"].as_str().unwrap().to_owned();
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    let (st, b) = s
        .api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;
    assert!(st == 201 || st == 200, "{b}");
    (s, admin, sub, rg)
}

/// The uid the login cache gives a user on a machine.
pub fn uid_on(h: &Host, upn: &str) -> u64 {
    let cache: Value =
        serde_json::from_slice(&std::fs::read(h.m.state().join("logins.json")).unwrap()).unwrap();
    cache["logins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["userPrincipalName"] == upn)
        .unwrap()["uid"]
        .as_u64()
        .unwrap()
}

pub async fn wait_for_login(h: &Host, upn: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(h.m.etc("usher/passwd")).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(&format!("{upn}:"))) == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{upn} never {} on {}",
            if present { "appeared" } else { "left" },
            h.m.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Turns on per-user MFA (enforced) for a user.
pub async fn enforce_mfa(s: &TestServer, admin: &str, user: &str) {
    let (st, b) = s
        .api(
            "PATCH",
            &format!("/beta/users/{user}/authentication/requirements"),
            admin,
            Some(json!({"perUserMfaState": "enforced"})),
        )
        .await;
    assert!(st == 204 || st == 200, "{b}");
}
