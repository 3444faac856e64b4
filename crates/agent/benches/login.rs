//! Login benchmark (issue 5): SSH certificate login against plain key login on the same sshd,
//! `usher ssh vm` end to end, and revocation latency, on a machine in namespaces (as the tests
//! build it) over loopback. Run: `cargo bench -p usher-agent --bench login` (root; build the
//! modules and CLI first: `cargo build --release -p usher-nss -p usher-pam -p usher-agent
//! -p usher-cli` with the same target directory). Prints medians for bench/RESULTS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark code"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::login::{Client, Host, assign, setup, wait_for_login};
use serde_json::json;

const USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::var("LOGIN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (s, admin, sub, rg) = setup().await;
    let mut alpha = Host::up(&s, &admin, &rg, "alpha", "").await;
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let mut role = assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ann).await;
    wait_for_login(&alpha, "ann@contoso.test", true).await;
    let c = Client::signed_in(&s, "ann@contoso.test", "Sunny-garden-41", &["alpha"]).await;

    // Certificate login: the block `usher ssh config` writes, used by plain ssh.
    let keys = c.config.path().join("keys");
    let cfg = c.ssh_config(&alpha, &keys).await;
    let cfg = cfg.to_str().unwrap().to_owned();

    // Plain key login on the same sshd: a local account with an authorized key.
    let (code, o, e) = alpha
        .m
        .run_on("useradd", &["-m", "-s", "/bin/sh", "keyuser"])
        .await;
    assert_eq!(code, 0, "{o}{e}");
    let key = c.config.path().join("plain_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let ssh_dir = alpha.m.home().join("keyuser/.ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::copy(key.with_extension("pub"), ssh_dir.join("authorized_keys")).unwrap();
    let (code, o, e) = alpha
        .m
        .run_on("chown", &["-R", "keyuser:keyuser", "/home/keyuser/.ssh"])
        .await;
    assert_eq!(code, 0, "{o}{e}");
    let known = c.config.path().join("known_hosts");
    let port = alpha.port.to_string();
    let key_args: Vec<String> = [
        "-i",
        key.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        &format!("UserKnownHostsFile={}", known.display()),
        "-o",
        "StrictHostKeyChecking=yes",
        "-p",
        &port,
        "-l",
        "keyuser",
        "alpha",
        "true",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let key_refs: Vec<&str> = key_args.iter().map(String::as_str).collect();

    let mut cert_ms = Vec::new();
    let mut key_ms = Vec::new();
    for _ in 0..runs {
        // Interleaved, so both see the same machine state.
        let t = Instant::now();
        let out = c
            .plain_ssh(&["-F", &cfg, "-o", "BatchMode=yes", "alpha", "true"])
            .await;
        cert_ms.push(ms(t.elapsed()));
        assert_eq!(out.code, 0, "{out:?}");
        let t = Instant::now();
        let out = c.plain_ssh(&key_refs).await;
        key_ms.push(ms(t.elapsed()));
        assert_eq!(out.code, 0, "{out:?}");
    }
    let (cert, key) = (median(cert_ms), median(key_ms));
    println!(
        "ssh login, certificate (usher CA, agent's principals check, PAM account+session): median {cert:.1} ms over {runs}"
    );
    println!(
        "ssh login, plain key (authorized_keys, same sshd, same PAM stack):             median {key:.1} ms over {runs}"
    );
    println!("ratio certificate / key: {:.2}", cert / key);

    // `usher ssh vm` end to end: lookup, a new key, a certificate from the cached sign-in, ssh.
    let mut e2e = Vec::new();
    for _ in 0..runs.min(10) {
        let t = Instant::now();
        let out = c.ssh(&alpha, &["true"]).await;
        e2e.push(ms(t.elapsed()));
        assert_eq!(out.code, 0, "{out:?}");
    }
    println!(
        "usher ssh vm -- true (end to end): median {:.1} ms over {}",
        median(e2e),
        runs.min(10)
    );

    // Revocation: a live session, the role removed, the time until the session ends.
    let mut revoke = Vec::new();
    for _ in 0..runs.min(10) {
        let mut live = c.command(
            std::path::Path::new("ssh"),
            &["-F", &cfg, "-o", "BatchMode=yes", "alpha", "sleep", "120"],
        );
        live.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut live = live.spawn().unwrap();
        let sessions = alpha.m.state().join("sessions.json");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&sessions)
            .unwrap_or_default()
            .contains("ann@contoso.test")
        {
            assert!(Instant::now() < deadline, "no session");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (st, b) = s.api("DELETE", &role, &admin, None).await;
        assert_eq!(st, 200, "{b}");
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), live.wait())
            .await
            .unwrap()
            .unwrap();
        revoke.push(ms(t.elapsed()));
        role = assign(&s, &admin, &alpha.vm, &sub, USER_LOGIN, &ann).await;
        wait_for_login(&alpha, "ann@contoso.test", true).await;
        let _ = json!(null);
    }
    let max = revoke.iter().copied().fold(0.0, f64::max);
    println!(
        "revocation (role removed -> live session ended): median {:.1} ms, max {max:.1} ms over {}",
        median(revoke),
        runs.min(10)
    );
    alpha.stop().await;
}
