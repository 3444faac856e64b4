//! Logging in over SSH end to end (SPEC T7, L1–L8): two machines, each a namespace with its own
//! `/etc`, `/usr` overlay, agent and Debian's real `/usr/sbin/sshd` started with nothing but the
//! default configuration plus what the login extension installed; the real `usher` CLI and the
//! real `ssh` client, in a namespace whose `/etc/hosts` names the machines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::login::{
    Client, Host, Out, assign, cli_path, enforce_mfa, group_with, setup, uid_on, wait_for_login,
};
use serde_json::{Value, json};
use usher_testkit::TestServer;

const USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";
const ADMIN_LOGIN: &str = "1c0163c0-47e6-4577-8991-ea5c82e286e4";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const NO_ROLE: &str = "Your account is configured to prevent you from using this device. For more info, contact your system administrator.";
const BAD_CREDENTIALS: &str = "Your credentials did not work.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_logins_roles_admins_and_machine_binding() {
    let (s, admin, sub, rg) = setup().await;
    let mut alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let mut beta = Host::up(&s, &admin, &rg, "beta", "").await;

    // What the extension put on the machine, and nothing on the host.
    let nss = std::fs::read_to_string(alpha.m.etc("nsswitch.conf")).unwrap();
    assert!(nss.contains("passwd:         files usher systemd"), "{nss}");
    assert!(
        alpha
            .m
            .usr_upper("lib/x86_64-linux-gnu/libnss_usher.so.2")
            .exists()
    );
    assert!(
        alpha
            .m
            .usr_upper("lib/x86_64-linux-gnu/security/pam_usher.so")
            .exists()
    );
    assert!(alpha.m.usr_upper("libexec/usher/usher-principals").exists());
    assert!(
        !std::path::Path::new("/usr/lib/x86_64-linux-gnu/libnss_usher.so.2").exists(),
        "the host is untouched"
    );
    let pam = std::fs::read_to_string(alpha.m.etc("pam.d/sshd")).unwrap();
    assert_eq!(pam.matches("pam_usher.so").count(), 4, "{pam}");
    assert_eq!(
        std::fs::read_to_string(alpha.m.etc("sudoers.d/usher-admins"))
            .unwrap()
            .lines()
            .nth(1),
        Some("%usher-admins ALL=(ALL) NOPASSWD: ALL")
    );

    // The doctor sees the login layer in place and in effect (sshd -T included).
    let (_, out, err) = alpha.m.exec(&["doctor", "-o", "json"]).await;
    let checks: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    for name in ["login modules", "name service", "PAM", "sshd"] {
        let c = checks.as_array().unwrap().iter().find(|c| c["check"] == name);
        assert_eq!(
            c.map(|c| c["result"].clone()),
            Some(json!("PASS")),
            "{name}: {checks}"
        );
    }

    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let adam = s.create_user("adam@contoso.test", "Sunny-garden-42", false).await;
    let nora = s.create_user("nora@contoso.test", "Sunny-garden-43", false).await;
    let owen = s.create_user("owen@contoso.test", "Sunny-garden-44", false).await;
    let gina = s.create_user("gina@contoso.test", "Sunny-garden-45", false).await;
    let _ = nora;
    assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ann).await;
    assign(&s, &admin, &beta.vm, &sub, USER_LOGIN, &ann).await;
    assign(&s, &admin, &rg, &sub, ADMIN_LOGIN, &adam).await;
    assign(&s, &admin, &format!("/subscriptions/{sub}"), &sub, OWNER, &owen).await;
    // Gina: a member of "inner", itself a member of "outer", which has the role at the group.
    let inner = group_with(&s, &admin, "inner", &gina).await;
    let (_, outer) = s
        .api("POST", "/v1.0/groups", &admin, Some(json!({"displayName": "outer", "mailNickname": "outer", "securityEnabled": true, "mailEnabled": false})))
        .await;
    let outer = outer["id"].as_str().unwrap().to_owned();
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/groups/{outer}/members/$ref"),
            &admin,
            Some(json!({"@odata.id": format!("{}/v1.0/directoryObjects/{inner}", s.url)})),
        )
        .await;
    assert!(st == 204 || st == 200, "{b}");
    assign(&s, &admin, &rg, &sub, USER_LOGIN, &outer).await;
    for u in ["ann@contoso.test", "adam@contoso.test", "gina@contoso.test"] {
        wait_for_login(&alpha, u, true).await;
    }

    // User login: the directory UID, no usher-admins, no sudo.
    let c_ann = Client::signed_in(&s, "ann@contoso.test", "Sunny-garden-41", &["alpha", "beta"]).await;
    let out = c_ann.ssh(&alpha, &["id"]).await;
    assert_eq!(out.code, 0, "{out:?}\n{}", alpha.sshd_log());
    let uid = uid_on(&alpha, "ann@contoso.test");
    assert!(
        out.stdout.contains(&format!("uid={uid}(ann@contoso.test)")),
        "{out:?}"
    );
    assert!(!out.stdout.contains("usher-admins"), "{out:?}");
    let out = c_ann.ssh(&alpha, &["sudo", "-n", "true"]).await;
    assert_ne!(out.code, 0, "a regular user has no sudo: {out:?}");
    // The home directory was made on first login, the user's own.
    let home = alpha.m.home().join("ann@contoso.test");
    assert!(home.is_dir());
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&home).unwrap()) as u64,
        uid
    );

    // Administrator login: in usher-admins, sudo works.
    let c_adam = Client::signed_in(&s, "adam@contoso.test", "Sunny-garden-42", &["alpha", "beta"]).await;
    let out = c_adam
        .ssh(
            &alpha,
            &["id", "&&", "sudo", "-n", "true", "&&", "echo", "SUDO-OK"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}\n{}", alpha.sshd_log());
    assert!(out.stdout.contains("usher-admins"), "{out:?}");
    assert!(out.stdout.contains("SUDO-OK"), "{out:?}");

    // No role, and Owner at the subscription: refused with the L6 message before any ssh.
    for (upn, pw) in [
        ("nora@contoso.test", "Sunny-garden-43"),
        ("owen@contoso.test", "Sunny-garden-44"),
    ] {
        let c = Client::signed_in(&s, upn, pw, &["alpha"]).await;
        let out = c.ssh(&alpha, &["true"]).await;
        assert_ne!(out.code, 0, "{upn}: {out:?}");
        assert!(out.stderr.contains(NO_ROLE), "{upn}: {out:?}");
    }

    // A role through nested groups at the resource group: allowed.
    // Gina answers the first-connection question herself, at a terminal: "n" sends nothing,
    // "y" logs her in, and the answer is remembered (no question the next time).
    let c_gina = Client::signed_in(&s, "gina@contoso.test", "Sunny-garden-45", &["alpha"]).await;
    let at_terminal = |answer: &'static str| {
        let cmd = format!(
            "{} ssh vm --hostname alpha --port {} -- -o BatchMode=yes whoami",
            cli_path().display(),
            alpha.port
        );
        let c = &c_gina;
        async move {
            let mut script = c.command(std::path::Path::new("script"), &["-qec", &cmd, "/dev/null"]);
            script.stdin(Stdio::piped());
            let mut child = script.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            tokio::io::AsyncWriteExt::write_all(&mut stdin, answer.as_bytes())
                .await
                .unwrap();
            let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
                .await
                .unwrap()
                .unwrap();
            drop(stdin);
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (code, text) = at_terminal("n\n").await;
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("Allow gina@contoso.test to sign in to 'alpha'?"),
        "{text}"
    );
    assert!(text.contains("Not allowed"), "{text}");
    let (code, text) = at_terminal("y\n").await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("gina@contoso.test\r\n") || text.trim_end().ends_with("gina@contoso.test"),
        "{text}"
    );
    let out = c_gina
        .usher(&[
            "ssh",
            "vm",
            "--hostname",
            "alpha",
            "--port",
            &alpha.port.to_string(),
            "--",
            "-o",
            "BatchMode=yes",
            "whoami",
        ])
        .await;
    assert_eq!(
        out.code, 0,
        "remembered, so no question without a terminal: {out:?}"
    );
    assert_eq!(out.stdout.trim(), "gina@contoso.test");

    // An IP address is refused with the seed's explanation.
    let out = c_ann
        .usher(&["ssh", "vm", "--hostname", "127.0.0.1", "--yes"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("IP address cannot be used"), "{out:?}");

    // A certificate for alpha is refused on beta (where ann has a role too): `usher ssh config`
    // writes alpha's key and certificate, then plain ssh presents them to beta.
    let keys = c_ann.config.path().join("keys");
    let config_file = c_ann.ssh_config(&alpha, &keys).await;
    // Plain ssh with the block: works on alpha.
    let out = c_ann
        .plain_ssh(&[
            "-F",
            config_file.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "alpha",
            "whoami",
        ])
        .await;
    assert_eq!(
        out.code,
        0,
        "plain ssh with usher ssh config: {out:?}\n{}",
        alpha.sshd_log()
    );
    assert_eq!(out.stdout.trim(), "ann@contoso.test");
    let known = c_ann.config.path().join("known_hosts");
    let key = keys.join("alpha");
    let cert = keys.join("alpha-cert.pub");
    let out = c_ann
        .plain_ssh(&[
            "-i",
            key.to_str().unwrap(),
            "-o",
            &format!("CertificateFile={}", cert.display()),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known.display()),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            &beta.port.to_string(),
            "-l",
            "ann@contoso.test",
            "beta",
            "true",
        ])
        .await;
    assert_eq!(out.code, 255, "alpha's certificate must not open beta: {out:?}");
    // sshd writes the refused user's line as the connection closes, a moment after the client
    // has gone: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut agent_log = beta.sshd_log();
    while !agent_log.contains("ann@contoso.test") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        agent_log = beta.sshd_log();
    }
    assert!(agent_log.contains("ann@contoso.test"), "{agent_log}");

    // Host trust: the known_hosts file holds the tenant's host CA; a machine whose host key is
    // not certified for the name is refused without a question.
    let known_text = std::fs::read_to_string(&known).unwrap();
    assert!(
        known_text.starts_with("@cert-authority * ssh-ed25519 "),
        "{known_text}"
    );

    alpha.stop().await;
    beta.stop().await;
}

/// The password path: an `SSH_ASKPASS` program answers keyboard-interactive prompts from files
/// (the password, the one-time code) and records every prompt it was shown.
struct Askpass {
    dir: tempfile::TempDir,
}

impl Askpass {
    fn new() -> Askpass {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("askpass.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"$1\" >> \"$ASKPASS_DIR/prompts\"\ncase \"$1\" in\n  *ode*) cat \"$ASKPASS_DIR/code\" ;;\n  *) cat \"$ASKPASS_DIR/password\" ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        Askpass { dir }
    }

    fn prompts(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prompts")).unwrap_or_default()
    }

    /// `ssh -l USER -p PORT HOST echo LOGIN-OK` over keyboard-interactive only.
    async fn login(&self, host: &Host, user: &str, password: &str, code: &str) -> Out {
        std::fs::write(self.dir.path().join("password"), password).unwrap();
        std::fs::write(self.dir.path().join("code"), code).unwrap();
        let _ = std::fs::remove_file(self.dir.path().join("prompts"));
        let mut c = tokio::process::Command::new("setsid");
        c.args([
            "-w",
            "ssh",
            "-o",
            "PreferredAuthentications=keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(["-p", &host.port.to_string(), "-l", user, "127.0.0.1", "whoami"])
        .env("SSH_ASKPASS", self.dir.path().join("askpass.sh"))
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .env("ASKPASS_DIR", self.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), c.output())
            .await
            .expect("ssh timed out")
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The sign-in log entries of the VM Sign-In app (newest first).
async fn sign_ins(s: &TestServer, admin: &str) -> Vec<Value> {
    let (st, b) = s.api("GET", "/v1.0/auditLogs/signIns", admin, None).await;
    assert_eq!(st, 200, "{b}");
    b["value"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_path_one_time_codes_lockout_and_revocation() {
    let (s, admin, sub, rg) = setup().await;
    let mut alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let pia = s.create_user("pia@contoso.test", "Sunny-garden-51", false).await;
    let mia = s.create_user("mia@contoso.test", "Sunny-garden-52", false).await;
    let tess = s.create_user("tess@contoso.test", "Sunny-garden-53", true).await;
    let lou = s.create_user("lou@contoso.test", "Sunny-garden-54", false).await;
    let _nobody = s
        .create_user("nobody@contoso.test", "Sunny-garden-55", false)
        .await;
    for u in [&pia, &mia, &tess, &lou] {
        assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, u).await;
    }
    wait_for_login(&alpha, "lou@contoso.test", true).await;
    let ask = Askpass::new();

    // Password only (no MFA for pia): in, as the directory user; USHER\ is accepted.
    let out = ask.login(&alpha, "pia@contoso.test", "Sunny-garden-51", "").await;
    assert_eq!(
        out.code,
        0,
        "{out:?}\n{}\nprompts: {}",
        alpha.sshd_log(),
        ask.prompts()
    );
    assert_eq!(out.stdout.trim(), "pia@contoso.test");
    assert!(ask.prompts().contains("Password:"), "{}", ask.prompts());
    assert!(
        !ask.prompts().contains("code"),
        "no code asked without MFA: {}",
        ask.prompts()
    );
    let out = ask
        .login(&alpha, "USHER\\pia@contoso.test", "Sunny-garden-51", "")
        .await;
    assert_eq!(out.code, 0, "{out:?}\n{}", alpha.sshd_log());
    assert_eq!(out.stdout.trim(), "pia@contoso.test");
    // Wrong password: refused, with L6's wording.
    let out = ask.login(&alpha, "pia@contoso.test", "Wrong-garden-1", "").await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains(BAD_CREDENTIALS), "{out:?}");

    // MFA (per-user, enforced) with a registered authenticator: password, then a code.
    enforce_mfa(&s, &admin, &mia).await;
    let secret = b"usher-test-totp-secret-20bytes!!".to_vec();
    let dir = s.running().state.dir().clone();
    let now = usher_core::Clock::now_unix(&usher_core::SystemClock);
    let b32 = usher_crypto::totp::base32(&secret);
    let code_now = usher_crypto::totp::current_code(&b32, now).unwrap();
    assert!(dir.register_totp(&mia, &secret, &code_now).await.unwrap());
    // A wrong code: refused with the same wording.
    let out = ask
        .login(&alpha, "mia@contoso.test", "Sunny-garden-52", "000000")
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(ask.prompts().contains("One-time code"), "{}", ask.prompts());
    assert!(out.stderr.contains(BAD_CREDENTIALS), "{out:?}");
    // The next step's code (the registration used this one): in.
    let next = usher_crypto::totp::current_code(&b32, now + 30).unwrap();
    let out = ask
        .login(&alpha, "mia@contoso.test", "Sunny-garden-52", &next)
        .await;
    assert_eq!(out.code, 0, "{out:?}\n{}", alpha.sshd_log());
    assert_eq!(out.stdout.trim(), "mia@contoso.test");

    // A temporary password is refused, naming where to change it.
    let out = ask
        .login(&alpha, "tess@contoso.test", "Sunny-garden-53", "")
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains("/changepassword"), "{out:?}");

    // No role: the right password is not enough.
    let out = ask
        .login(&alpha, "nobody@contoso.test", "Sunny-garden-55", "")
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains(NO_ROLE), "{out:?}");

    // Smart lockout applies: ten different wrong passwords, then the right one is refused.
    for i in 0..10 {
        let out = ask
            .login(&alpha, "lou@contoso.test", &format!("Wrong-{i}-garden"), "")
            .await;
        assert_eq!(out.code, 255, "{out:?}");
    }
    let out = ask.login(&alpha, "lou@contoso.test", "Sunny-garden-54", "").await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains("locked"), "{out:?}");

    // Revocation (SPEC L8): a live session of pia ends when her role goes.
    let c_pia = Client::signed_in(&s, "pia@contoso.test", "Sunny-garden-51", &["alpha"]).await;
    let port = alpha.port.to_string();
    let mut live = c_pia.command(
        &cli_path(),
        &[
            "ssh",
            "vm",
            "--hostname",
            "alpha",
            "--port",
            &port,
            "--yes",
            "--",
            "-o",
            "BatchMode=yes",
            "sleep",
            "120",
        ],
    );
    live.stdout(Stdio::null());
    let mut live = live.spawn().unwrap();
    let sessions = alpha.m.state().join("sessions.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&sessions)
        .unwrap_or_default()
        .contains("pia@contoso.test")
    {
        assert!(
            Instant::now() < deadline,
            "the session never opened: {}",
            alpha.sshd_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // `usher-agent status` shows who is signed in.
    let status = alpha.m.status().await;
    assert_eq!(status["SignedInUsers"]["pia@contoso.test"], 1, "{status}");
    let (_, list) = s
        .api(
            "GET",
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments?$filter=assignedTo('{pia}')",
                alpha.vm
            ),
            &admin,
            None,
        )
        .await;
    let assignment = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["properties"]["principalId"] == pia.as_str())
        .unwrap_or_else(|| panic!("{list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, b) = s.api("DELETE", &assignment, &admin, None).await;
    assert_eq!(st, 200, "{b}");
    let removed = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(60), live.wait())
        .await
        .expect("the live session was not ended within 60 s")
        .unwrap();
    let took = removed.elapsed();
    assert!(!status.success(), "the session was ended, not finished");
    assert!(took < Duration::from_secs(5), "ended after {took:?} (target 5 s)");
    eprintln!("revocation: the live session ended {took:?} after the role was removed");
    // The sign-in log says why.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = sign_ins(&s, &admin).await;
        if let Some(e) = log.iter().find(|e| e["clientAppUsed"] == "sessionRevocation") {
            let why = e["status"]["failureReason"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(why.contains("login role on this machine was removed"), "{e}");
            assert_eq!(e["userPrincipalName"], "pia@contoso.test");
            break;
        }
        assert!(Instant::now() < deadline, "no revocation entry: {log:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And no new login.
    let out = ask.login(&alpha, "pia@contoso.test", "Sunny-garden-51", "").await;
    assert_eq!(out.code, 255, "{out:?}");
    alpha.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_down_expired_certificates_and_the_staleness_bound() {
    let (mut s, admin, sub, rg) = setup().await;
    let mut alpha = Host::up(&s, &admin, &rg, "alpha", "max_staleness_secs = 3\n").await;
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ann).await;
    wait_for_login(&alpha, "ann@contoso.test", true).await;
    let c = Client::signed_in(&s, "ann@contoso.test", "Sunny-garden-41", &["alpha"]).await;
    let keys = c.config.path().join("keys");
    let config_file = c.ssh_config(&alpha, &keys).await;
    let cf = config_file.to_str().unwrap().to_owned();
    let plain_args = ["-F", cf.as_str(), "-o", "BatchMode=yes", "alpha", "whoami"];
    assert_eq!(c.plain_ssh(&plain_args).await.code, 0);

    // An expired certificate from the tenant's CA, for this machine: refused by sshd.
    let device = common_device_id(&alpha);
    let seed = [7u8; 32];
    let key = usher_crypto::ssh::SshUserKey::from_seed(&seed).unwrap();
    let state = &s.running().state;
    let user = state.dir().get_user(&ann).await.unwrap();
    let now = usher_core::Clock::now_unix(&usher_core::SystemClock);
    let expired = state
        .idp
        .ssh()
        .user_certificate(
            state.dir(),
            &key.public_key(),
            &user,
            &device,
            "expired-test",
            now - 1,
        )
        .unwrap();
    let ekey = keys.join("expired");
    std::fs::write(&ekey, key.to_openssh_private("expired", 1).as_str()).unwrap();
    std::fs::set_permissions(&ekey, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(keys.join("expired-cert.pub"), format!("{expired}\n")).unwrap();
    let only_expired = c.config.path().join("only_expired");
    std::fs::write(
        &only_expired,
        format!(
            "Host alpha\n  User ann@contoso.test\n  Port {}\n  IdentityFile {}\n  CertificateFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            alpha.port,
            ekey.display(),
            keys.join("expired-cert.pub").display(),
            c.config.path().join("known_hosts").display()
        ),
    )
    .unwrap();
    let out = c
        .plain_ssh(&[
            "-F",
            only_expired.to_str().unwrap(),
            "-o",
            "BatchMode=yes",
            "alpha",
            "true",
        ])
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    let log = alpha.sshd_log();
    // The agent refuses it first ("expired or not yet valid"); sshd would too.
    assert!(
        log.contains("Certificate invalid: expired")
            || log.contains("Certificate does not contain an authorized principal"),
        "{log}"
    );

    // The agent stopped: NSS still answers at once, from its files; no login gets through.
    alpha.m.stop().await;
    let started = Instant::now();
    let (code, out, err) = alpha.m.run_on("getent", &["passwd", "ann@contoso.test"]).await;
    let took = started.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ann@contoso.test:"), "{out}");
    assert!(took < Duration::from_secs(1), "getent took {took:?}");
    let out = c.plain_ssh(&plain_args).await;
    assert_eq!(out.code, 255, "no agent, no login: {out:?}");

    // The agent back, the server gone: logins continue within the staleness bound (3 s here),
    // and are refused past it.
    alpha.m.start(&[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.plain_ssh(&plain_args).await.code != 0 {
        assert!(Instant::now() < deadline, "the agent never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
    let gone = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = c.plain_ssh(&plain_args).await;
    assert_eq!(
        out.code,
        255,
        "past the staleness bound with no server, no login ({:?} after): {out:?}",
        gone.elapsed()
    );
    alpha.stop().await;
}

fn common_device_id(h: &Host) -> String {
    let conf = std::fs::read_to_string(h.m.etc("usher/login.conf")).unwrap();
    conf.lines()
        .find_map(|l| {
            l.strip_prefix("device_id = \"")
                .map(|v| v.trim_end_matches('"').to_owned())
        })
        .unwrap()
}

/// An SSH certificate request on the refresh-token grant.
async fn cert_request(s: &TestServer, refresh: &str, jwk: &str, device: &str, scope: &str) -> (u16, Value) {
    s.token(&[
        ("grant_type", "refresh_token"),
        ("client_id", usher_testkit::CLI_CLIENT_ID),
        ("refresh_token", refresh),
        ("scope", scope),
        ("token_type", "ssh-cert"),
        ("req_cnf", jwk),
        ("device_id", device),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_issues_certificates_only_when_it_should() {
    let (s, admin, sub, rg) = setup().await;
    let mut alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let device = common_device_id(&alpha);
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let _nora = s.create_user("nora@contoso.test", "Sunny-garden-43", false).await;
    assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ann).await;
    let key = usher_crypto::ssh::SshUserKey::from_seed(&[9u8; 32]).unwrap();
    let jwk = key.public_jwk().to_string();
    let scope = "372140e0-b3b7-4226-8ef9-d57986796201/.default offline_access";
    let rt = |b: &Value| {
        b["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh token: {b}"))
            .to_owned()
    };

    // No role: L6's refusal, and the cached sign-in is not spent.
    let (st, b) = s.password_token("nora@contoso.test", "Sunny-garden-43").await;
    assert_eq!(st, 200, "{b}");
    let nora_rt = rt(&b);
    let (st, b) = cert_request(&s, &nora_rt, &jwk, &device, scope).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        b["error_codes"][0] == 50105 && b["error_description"].as_str().unwrap().contains(NO_ROLE),
        "{b}"
    );
    let (st, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", usher_testkit::CLI_CLIENT_ID),
            ("refresh_token", &nora_rt),
        ])
        .await;
    assert_eq!(
        st, 200,
        "a refused certificate leaves the refresh token usable: {b}"
    );

    let (st, b) = s.password_token("ann@contoso.test", "Sunny-garden-41").await;
    assert_eq!(st, 200, "{b}");
    let mut ann_rt = rt(&b);
    // Only for the VM Sign-In resource, with a usable key, for a named machine, on refresh.
    let (st, b) = cert_request(&s, &ann_rt, &jwk, &device, "openid offline_access").await;
    assert!(st == 400 && b["error_codes"][0] == 70011, "{b}");
    let p256 = json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}).to_string();
    let (st, b) = cert_request(&s, &ann_rt, &p256, &device, scope).await;
    assert!(
        st == 400 && b["error_description"].as_str().unwrap().contains("req_cnf"),
        "{b}"
    );
    let (st, b) = cert_request(&s, &ann_rt, &jwk, "", scope).await;
    assert!(
        st == 400 && b["error_description"].as_str().unwrap().contains("device_id"),
        "{b}"
    );
    let (st, b) = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", usher_testkit::CLI_CLIENT_ID),
            ("username", "ann@contoso.test"),
            ("password", "Sunny-garden-41"),
            ("scope", scope),
            ("token_type", "ssh-cert"),
            ("req_cnf", &jwk),
            ("device_id", &device),
        ])
        .await;
    assert!(
        st == 400
            && b["error_description"]
                .as_str()
                .unwrap()
                .contains("refresh_token grant"),
        "{b}"
    );

    // The first connection needs the user's consent (SPEC L3); then the certificate comes.
    let (st, b) = cert_request(&s, &ann_rt, &jwk, &device, scope).await;
    assert!(st == 400 && b["error_codes"][0] == 65001, "{b}");
    let user_token = {
        let (_, b) = s
            .token(&[
                ("grant_type", "refresh_token"),
                ("client_id", usher_testkit::CLI_CLIENT_ID),
                ("refresh_token", &ann_rt),
            ])
            .await;
        ann_rt = rt(&b);
        b["access_token"].as_str().unwrap().to_owned()
    };
    let (st, t) = s
        .api("GET", "/usher/ssh/target?machine=alpha", &user_token, None)
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (t["deviceId"].as_str(), t["consented"].as_bool()),
        (Some(device.as_str()), Some(false))
    );
    let (st, b) = s
        .api(
            "POST",
            "/usher/ssh/consent",
            &user_token,
            Some(json!({"machine": alpha.vm})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = cert_request(&s, &ann_rt, &jwk, &device, scope).await;
    assert_eq!(st, 200, "{b}");
    ann_rt = rt(&b);
    assert_eq!(b["token_type"], "ssh-cert");
    assert!(b["expires_in"].as_i64().unwrap() <= 3600);
    let cert = usher_crypto::ssh::parse_certificate(b["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(cert.principals, vec!["ann@contoso.test".to_owned()]);
    assert_eq!(cert.cert_type, usher_crypto::ssh::CertType::User);
    assert_eq!(cert.subject, key.public_key());
    assert!(cert.valid_before - cert.valid_after <= 3660, "{cert:?}");
    assert!(
        cert.extensions
            .contains(&("device-id@usher".to_owned(), device.clone())),
        "{cert:?}"
    );
    let (_, ca) = s.api("GET", "/usher/ssh/ca", &user_token, None).await;
    assert_eq!(
        cert.signature_key.to_openssh(),
        ca["userCertificateAuthority"].as_str().unwrap()
    );
    // The key id is the sign-in's correlation id, so the sign-in log finds it.
    let log = sign_ins(&s, &admin).await;
    assert!(
        log.iter()
            .any(|e| e["correlationId"] == cert.key_id.as_str() && e["status"]["errorCode"] == 0),
        "{}",
        cert.key_id
    );

    // Someone with no role learns nothing about the machine from the lookup either.
    let (_, b) = s.password_token("nora@contoso.test", "Sunny-garden-43").await;
    let nora_token = b["access_token"].as_str().unwrap().to_owned();
    for m in ["alpha", "no-such-machine"] {
        let (st, b) = s
            .api(
                "GET",
                &format!("/usher/ssh/target?machine={m}"),
                &nora_token,
                None,
            )
            .await;
        assert_eq!(st, 403, "{b}");
        assert!(b.to_string().contains(NO_ROLE), "{b}");
    }

    // Per-user MFA turned on after the sign-in: the cached sign-in no longer gets certificates.
    enforce_mfa(&s, &admin, &ann).await;
    let (_, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", usher_testkit::CLI_CLIENT_ID),
            ("refresh_token", &ann_rt),
        ])
        .await;
    ann_rt = rt(&b);
    let (st, b) = cert_request(&s, &ann_rt, &jwk, &device, scope).await;
    assert!(st == 400 && b["error_codes"][0] == 50076, "{b}");

    // Consent is kept for at most 15 machines: the 16th forgets the oldest.
    let arm = &s.running().state.arm;
    let ids: Vec<String> = (0..16)
        .map(|i| format!("00000000-0000-0000-0000-{i:012}"))
        .collect();
    for id in &ids {
        arm.consent(&ann, id).await.unwrap();
    }
    assert!(
        !arm.consented(&ann, &ids[0]).await.unwrap(),
        "the oldest is forgotten"
    );
    assert!(arm.consented(&ann, &ids[15]).await.unwrap());
    assert!(
        !arm.consented(&ann, &device).await.unwrap(),
        "alpha was older still"
    );
    alpha.stop().await;
}

/// The next one-time code after `last` (a step the server has not seen, within its window).
fn next_code(b32: &str, last: &mut u64) -> String {
    let now = usher_core::Clock::now_unix(&usher_core::SystemClock);
    let step = (*last + 1).max((now / 30) as u64 - 1);
    *last = step;
    usher_crypto::totp::current_code(b32, (step * 30) as i64).unwrap()
}

/// Drives the device-code pages for a user: password, then the one-time code the page asks for.
async fn approve_with_code(s: &TestServer, user_code: &str, upn: &str, password: &str, code: &str) {
    let c = s.client();
    let r = c
        .post(format!("{}/devicelogin", s.url))
        .form(&[("user_code", user_code)])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    let marker = "name=\"txn\" value=\"";
    let txn = page[page.find(marker).unwrap() + marker.len()..]
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let login = format!("{}/{}/login", s.url, s.tenant_id);
    let page = c
        .post(&login)
        .form(&[
            ("txn", txn.as_str()),
            ("step", "password"),
            ("username", upn),
            ("password", password),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("authenticator app"),
        "the page must ask for the code: {page}"
    );
    let page = c
        .post(&login)
        .form(&[("txn", txn.as_str()), ("step", "totp"), ("code", code)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"done\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_access_on_machines() {
    let (s, admin, sub, rg) = setup().await;
    let alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let cleo = s.create_user("cleo@contoso.test", "Sunny-garden-61", false).await;
    let bart = s.create_user("bart@contoso.test", "Sunny-garden-62", false).await;
    let rita = s.create_user("rita@contoso.test", "Sunny-garden-63", false).await;
    let nico = s.create_user("nico@contoso.test", "Sunny-garden-64", false).await;
    for u in [&cleo, &bart, &rita, &nico] {
        assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, u).await;
    }
    wait_for_login(&alpha, "nico@contoso.test", true).await;
    // Cleo has an authenticator; no per-user MFA: only the policy asks for it.
    let secret = b"usher-test-totp-secret-20bytes!!".to_vec();
    let b32 = usher_crypto::totp::base32(&secret);
    let now = usher_core::Clock::now_unix(&usher_core::SystemClock);
    let mut last = (now / 30) as u64 - 2;
    let first = next_code(&b32, &mut last);
    let dir = s.running().state.dir().clone();
    assert!(dir.register_totp(&cleo, &secret, &first).await.unwrap());

    // Policies through the CLI, from Graph JSON files.
    let ops = Client::signed_in(&s, "admin@contoso.test", usher_testkit::ADMIN_PASSWORD, &[]).await;
    let vm_app = "372140e0-b3b7-4226-8ef9-d57986796201";
    let policies = [
        (
            "mfa for machines",
            "enabled",
            json!({"users": {"includeUsers": [cleo]}}),
            json!(["mfa"]),
        ),
        (
            "block bart",
            "enabled",
            json!({"users": {"includeUsers": [bart]}}),
            json!(["block"]),
        ),
        (
            "block rita (report-only)",
            "enabledForReportingButNotEnforced",
            json!({"users": {"includeUsers": [rita]}}),
            json!(["block"]),
        ),
        (
            "no sign-ins from loopback for nico",
            "enabled",
            json!({"users": {"includeUsers": [nico]}, "locations": {"includeLocations": ["127.0.0.0/8"]}}),
            json!(["block"]),
        ),
    ];
    for (name, state, mut conditions, controls) in policies {
        conditions["applications"] = json!({"includeApplications": [vm_app]});
        let file = ops.config.path().join("policy.json");
        std::fs::write(
            &file,
            json!({"displayName": name, "state": state, "conditions": conditions,
                   "grantControls": {"operator": "OR", "builtInControls": controls}})
            .to_string(),
        )
        .unwrap();
        let out = ops
            .usher(&["ca", "policy", "create", "--file", file.to_str().unwrap()])
            .await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    // What-if agrees before anyone tries.
    let out = ops
        .usher(&[
            "ca",
            "what-if",
            "--user",
            "bart@contoso.test",
            "--app",
            vm_app,
            "-o",
            "json",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let w: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(w["decision"], "block", "{w}");
    let applied: Vec<&str> = w["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["applies"] == true)
        .map(|p| p["displayName"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["block bart"], "{w}");
    let out = ops
        .usher(&[
            "ca",
            "what-if",
            "--user",
            "cleo@contoso.test",
            "--app",
            vm_app,
            "-o",
            "json",
        ])
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()["decision"],
        "mfa",
        "{out:?}"
    );
    let out = ops
        .usher(&[
            "ca",
            "what-if",
            "--user",
            "rita@contoso.test",
            "--app",
            vm_app,
            "-o",
            "json",
        ])
        .await;
    let w: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(w["decision"], "allow", "report-only never decides: {w}");
    assert!(
        w["policies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["wouldHave"] == "block"),
        "{w}"
    );

    // MFA required: `usher ssh vm` asks for a sign-in with MFA, then logs in.
    let c_cleo = Client::signed_in(&s, "cleo@contoso.test", "Sunny-garden-61", &["alpha"]).await;
    let port = alpha.port.to_string();
    let mut cmd = c_cleo.command(
        &cli_path(),
        &[
            "ssh",
            "vm",
            "--hostname",
            "alpha",
            "--port",
            &port,
            "--yes",
            "--",
            "-o",
            "BatchMode=yes",
            "id",
            "-un",
        ],
    );
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let mut seen = String::new();
    let user_code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("enter the code ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("no device code in: {seen}")
    })
    .await
    .expect("the CLI did not ask for a sign-in");
    assert!(seen.contains("stronger or fresher sign-in"), "{seen}");
    let code = next_code(&b32, &mut last);
    approve_with_code(&s, &user_code, "cleo@contoso.test", "Sunny-garden-61", &code).await;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cleo@contoso.test");
    // Now the cached sign-in has MFA: the next login needs nothing more.
    let out = c_cleo.ssh(&alpha, &["true"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("enter the code"), "{out:?}");
    // The password path asks for the code because of the policy.
    let ask = Askpass::new();
    let code = next_code(&b32, &mut last);
    let out = ask
        .login(&alpha, "cleo@contoso.test", "Sunny-garden-61", &code)
        .await;
    assert_eq!(out.code, 0, "{out:?}\nprompts: {}", ask.prompts());
    assert!(ask.prompts().contains("One-time code"), "{}", ask.prompts());

    // Blocked: the certificate and the password are refused with L6's wording.
    let c_bart = Client::signed_in(&s, "bart@contoso.test", "Sunny-garden-62", &["alpha"]).await;
    let out = c_bart.ssh(&alpha, &["true"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(NO_ROLE) && out.stderr.contains("53003"),
        "{out:?}"
    );
    let out = ask
        .login(&alpha, "bart@contoso.test", "Sunny-garden-62", "")
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains(NO_ROLE), "{out:?}");
    let entry = sign_ins(&s, &admin)
        .await
        .into_iter()
        .find(|e| {
            e["userPrincipalName"] == "bart@contoso.test" && e["clientAppUsed"] == "machinePasswordRelay"
        })
        .unwrap();
    assert_eq!(entry["status"]["errorCode"], 53003, "{entry}");
    let p = entry["appliedConditionalAccessPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["displayName"] == "block bart")
        .unwrap();
    assert_eq!(p["result"], "failure");

    // Report-only: nothing changes, but the log says what it would have done.
    let c_rita = Client::signed_in(&s, "rita@contoso.test", "Sunny-garden-63", &["alpha"]).await;
    let out = c_rita.ssh(&alpha, &["id", "-un"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let entry = sign_ins(&s, &admin)
        .await
        .into_iter()
        .find(|e| {
            e["userPrincipalName"] == "rita@contoso.test"
                && e["authenticationMethodsUsed"]
                    .to_string()
                    .contains("sshCertificate")
        })
        .unwrap();
    assert!(
        entry["appliedConditionalAccessPolicies"]
            .to_string()
            .contains("reportOnlyFailure"),
        "{entry}"
    );

    // A named location by client address: nico comes from loopback, which the policy blocks.
    let c_nico = Client::signed_in(&s, "nico@contoso.test", "Sunny-garden-64", &["alpha"]).await;
    let out = c_nico.ssh(&alpha, &["true"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(NO_ROLE), "{out:?}");
    let out = ask
        .login(&alpha, "nico@contoso.test", "Sunny-garden-64", "")
        .await;
    assert_eq!(out.code, 255, "{out:?}");
    assert!(out.stderr.contains(NO_ROLE), "{out:?}");
    // The same policy for 10.0.0.0/8 no longer applies: nico logs in.
    let (_, list) = s
        .api("GET", "/v1.0/identity/conditionalAccess/policies", &admin, None)
        .await;
    let id = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["displayName"] == "no sign-ins from loopback for nico")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, b) = s
        .api(
            "PATCH",
            &format!("/v1.0/identity/conditionalAccess/policies/{id}"),
            &admin,
            Some(json!({"conditions": {"locations": {"includeLocations": ["10.0.0.0/8"]}}})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let out = c_nico.ssh(&alpha, &["id", "-un"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.trim(), "nico@contoso.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_locked_and_reconnecting_is_a_new_sign_in() {
    let (s, admin, sub, rg) = setup().await;
    let alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let ivy = s.create_user("ivy@contoso.test", "Sunny-garden-71", false).await;
    assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ivy).await;
    wait_for_login(&alpha, "ivy@contoso.test", true).await;
    // Off by default: the snapshot says so.
    let snap: Value =
        serde_json::from_slice(&std::fs::read(alpha.m.state().join("logins.json")).unwrap()).unwrap();
    assert_eq!(snap["sessionIdleTimeoutSeconds"], 0);
    // The tenant turns the lock on (3 s); the machine hears of it with the next snapshot.
    let (st, b) = s
        .api(
            "PATCH",
            "/usher/tenant",
            &admin,
            Some(json!({"sessionIdleTimeoutSeconds": 3})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = s
        .api(
            "PATCH",
            "/usher/tenant",
            &admin,
            Some(json!({"sessionIdleTimeoutSeconds": 9_000_000})),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    // A role change wakes the long poll at once, carrying the setting.
    let other = s.create_user("oli@contoso.test", "Sunny-garden-72", false).await;
    assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &other).await;
    wait_for_login(&alpha, "oli@contoso.test", true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snap: Value =
            serde_json::from_slice(&std::fs::read(alpha.m.state().join("logins.json")).unwrap()).unwrap();
        if snap["sessionIdleTimeoutSeconds"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the setting never arrived: {snap}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let c = Client::signed_in(&s, "ivy@contoso.test", "Sunny-garden-71", &["alpha"]).await;
    // Busy for 6 s (output every half second): never idle, runs to the end.
    let started = Instant::now();
    let out = c
        .ssh(
            &alpha,
            &[
                "sh",
                "-c",
                "'for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo tick; sleep 0.5; done'",
            ],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout.matches("tick").count(), 12, "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(6));
    // Idle: disconnected after about 3 s, and told why.
    let started = Instant::now();
    let out = c.ssh(&alpha, &["sleep", "60"]).await;
    let took = started.elapsed();
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("Your session was disconnected because it was locked. Sign in again to reconnect."),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(20),
        "{took:?}"
    );
    // The agent reports the lock just after ending the session: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let found = sign_ins(&s, &admin)
            .await
            .into_iter()
            .find(|e| e["clientAppUsed"] == "sessionLock");
        if let Some(e) = found {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no sessionLock entry in the sign-in log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["userPrincipalName"], "ivy@contoso.test");
    // Reconnecting is a new sign-in: Conditional Access decides again (now it blocks).
    let (st, b) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/policies",
            &admin,
            Some(json!({"displayName": "block ivy", "state": "enabled",
                "conditions": {"users": {"includeUsers": [ivy]}, "applications": {"includeApplications": ["372140e0-b3b7-4226-8ef9-d57986796201"]}},
                "grantControls": {"operator": "OR", "builtInControls": ["block"]}})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let out = c.ssh(&alpha, &["true"]).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(NO_ROLE), "{out:?}");
}
