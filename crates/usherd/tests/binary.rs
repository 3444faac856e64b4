//! The `usherd` binary itself: first start, TLS names, configuration, logs and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn usherd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_usherd"));
    c.env_remove("USHER_BOOTSTRAP_PASSWORD")
        .env_remove("USHER_DATABASE_URL")
        .env_remove("USHER_CONFIG");
    c
}

fn client(ca: &std::path::Path, resolve: Option<(&str, u16)>) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut b =
        reqwest::Client::builder().tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap());
    if let Some((host, port)) = resolve {
        b = b.resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    b.build().unwrap()
}

async fn wait_healthy(c: &reqwest::Client, url: &str, ca: &std::path::Path, within: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < within {
        if ca.exists()
            && let Ok(r) = c.get(format!("{url}/healthz")).send().await
            && r.status() == 200
        {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url}/healthz did not answer 200 within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_password_file_tls_and_answers_health_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fresh-data");
    let port = free_port();
    let start = Instant::now();
    let child = usherd()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-url",
            &format!("https://usher.test:{port}"),
        ])
        .arg("--log-format")
        .arg("json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    let ca = data.join("tls/ca.pem");
    // Wait for the CA file (written before listening), then health over the public name.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ca.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client(&ca, Some(("usher.test", port)));
    wait_healthy(
        &c,
        &format!("https://usher.test:{port}"),
        &ca,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "healthz within 10 s of a first start"
    );
    // The certificate also names localhost and the listen IP.
    for host in ["localhost", "127.0.0.1"] {
        let c = client(
            &ca,
            if host == "localhost" {
                Some(("localhost", port))
            } else {
                None
            },
        );
        let r = c
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // The data dir is private; the generated password is in a 0600 file and never printed.
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let pw_file = data.join("bootstrap-admin-password");
    assert_eq!(
        std::fs::metadata(&pw_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(data.join("keys/at-rest.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(data.join("tls/ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&pw_file).unwrap().trim().to_owned();
    let r = c
        .post(format!(
            "https://usher.test:{port}/contoso.test/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
            ("username", "admin@contoso.test"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the generated password works");
    // The issuer follows the public URL.
    let disc: serde_json::Value = c
        .get(format!(
            "https://usher.test:{port}/contoso.test/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        disc["issuer"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://usher.test:{port}/"))
    );

    // SIGTERM: graceful exit with status 0; every log line is JSON; the password never appears.
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stderr = daemon.0.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "usherd did not stop within 15 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let mut saw_path = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        assert!(!line.contains(&password), "the password was printed");
        if line.starts_with("usherd: ") {
            saw_path |= line.contains("bootstrap-admin-password");
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(saw_path, "the password file's path is printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_file_env_and_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    // An unknown key is refused with the file's name.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap();
    let out = usherd()
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("listen_adress"), "{err}");
    // A bad database URL is refused clearly.
    let out = usherd()
        .args([
            "--data-dir",
            tmp.path().join("d1").to_str().unwrap(),
            "--database-url",
            "mysql://x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres://"));
    // A weak bootstrap password is refused and nothing half-made is left to block a retry.
    let data = tmp.path().join("d2");
    let port = free_port();
    let out = usherd()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("USHER_BOOTSTRAP_PASSWORD", "password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USHER_BOOTSTRAP_PASSWORD is not acceptable"));

    // Settings from a file and from the environment.
    let good = tmp.path().join("usher.toml");
    let port = free_port();
    let data = tmp.path().join("d3");
    std::fs::write(
        &good,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\ndomain = \"fabrikam.test\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let _d = Daemon(
        usherd()
            .args(["--config", good.to_str().unwrap()])
            .env("USHER_BOOTSTRAP_PASSWORD", "Long-enough-pass-3")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca = data.join("tls/ca.pem");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ca.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client(&ca, None);
    wait_healthy(
        &c,
        &format!("https://127.0.0.1:{port}"),
        &ca,
        Duration::from_secs(10),
    )
    .await;
    let r = c
        .post(format!(
            "https://127.0.0.1:{port}/fabrikam.test/oauth2/v2.0/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
            ("username", "admin@fabrikam.test"),
            ("password", "Long-enough-pass-3"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_supplied_certificates_are_used() {
    let tmp = tempfile::tempdir().unwrap();
    // Make an operator CA and certificate with a first server, then reuse its files.
    let first = tmp.path().join("first");
    let port = free_port();
    {
        let _d = Daemon(
            usherd()
                .args([
                    "--data-dir",
                    first.to_str().unwrap(),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let ca = first.join("tls/ca.pem");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !first.join("tls/server.names").exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_healthy(
            &client(&ca, None),
            &format!("https://127.0.0.1:{port}"),
            &ca,
            Duration::from_secs(10),
        )
        .await;
    }
    let second = tmp.path().join("second");
    let port = free_port();
    let _d = Daemon(
        usherd()
            .args([
                "--data-dir",
                second.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args([
                "--tls-cert",
                first.join("tls/server.pem").to_str().unwrap(),
                "--tls-key",
                first.join("tls/server.key").to_str().unwrap(),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ca = first.join("tls/ca.pem");
    wait_healthy(
        &client(&ca, None),
        &format!("https://127.0.0.1:{port}"),
        &ca,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        !second.join("tls/ca.pem").exists(),
        "no CA is generated when the operator gives a certificate"
    );
}
