//! SPEC: "Writes that the API acknowledges are durable". Starts the real `usherd` binary, sends
//! acknowledged writes (users, a group and its members, an application, its service principal
//! and a client secret), kills the process with SIGKILL right after the last acknowledgement,
//! restarts it on the same data directory / database and finds every write again; the restart
//! must not bootstrap a second tenant or reset the administrator's password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::task::JoinSet;
use usher_testkit::{Backend, CLI_CLIENT_ID};

/// The administrator's password, set by `USHER_BOOTSTRAP_PASSWORD` on the first start.
const ADMIN_PASSWORD: &str = "Durable-root-pass-9";
/// The bootstrap password given on the restart: it must be ignored (no second bootstrap).
const OTHER_PASSWORD: &str = "Second-boot-pass-8";
const USERS: usize = 40;
const MEMBERS: usize = 30;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `usherd` child; killed (SIGKILL) and reaped when dropped, on every path.
struct Usherd {
    child: Child,
    url: String,
    port: u16,
    log: PathBuf,
}

impl Drop for Usherd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Usherd {
    /// Kills the server with SIGKILL (what `Child::kill` sends on Unix) and reaps it.
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL usherd");
        let status = self.child.wait().expect("reap usherd");
        assert!(
            !status.success(),
            "usherd exited normally instead of being killed: {status}"
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read ca.pem");
    let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("parse ca.pem");
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("https client")
}

/// Starts `usherd` on `data_dir` (and `database_url` when given) and waits until `/healthz`
/// answers 200. Tries `preferred_port` first, then fresh ports when the port is taken.
async fn start_usherd(
    data_dir: &Path,
    database_url: Option<&str>,
    bootstrap_password: &str,
    preferred_port: Option<u16>,
    log: &Path,
) -> Usherd {
    let mut last_log = String::new();
    for attempt in 0..5 {
        let port = match (attempt, preferred_port) {
            (0, Some(p)) => p,
            _ => free_port(),
        };
        let log_file = std::fs::File::create(log).expect("create log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_usherd"));
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        for var in [
            "USHER_CONFIG",
            "USHER_DATA_DIR",
            "USHER_LISTEN",
            "USHER_PUBLIC_URL",
            "USHER_DATABASE_URL",
            "USHER_DOMAIN",
            "USHER_TLS_CERT",
            "USHER_TLS_KEY",
            "USHER_LOG_FORMAT",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("USHER_BOOTSTRAP_PASSWORD", bootstrap_password)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file);
        let child = cmd.spawn().expect("spawn usherd");
        let mut server = Usherd {
            child,
            url: format!("https://127.0.0.1:{port}"),
            port,
            log: log.to_owned(),
        };
        let ca = data_dir.join("tls").join("ca.pem");
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut client: Option<reqwest::Client> = None;
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait usherd") {
                last_log = server.log_text();
                if last_log.contains("in use") {
                    break; // the port was taken meanwhile: try another one
                }
                panic!("usherd exited during start-up ({status}):\n{last_log}");
            }
            if client.is_none() && ca.exists() {
                // ca.pem is written before the server listens; a half-written file just retries
                client = std::fs::read(&ca)
                    .ok()
                    .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok())
                    .filter(|c| !c.is_empty())
                    .map(|_| https_client(&ca));
            }
            if let Some(c) = &client
                && let Ok(r) = c.get(format!("{}/healthz", server.url)).send().await
                && r.status().as_u16() == 200
            {
                return server;
            }
            if Instant::now() > deadline {
                panic!(
                    "usherd did not answer /healthz within {HEALTH_TIMEOUT:?}:\n{}",
                    server.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("usherd could not bind a port in 5 attempts:\n{last_log}");
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

async fn password_token(client: &reqwest::Client, url: &str, upn: &str, password: &str) -> (u16, Value) {
    let r = client
        .post(format!("{url}/contoso.test/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", upn),
            ("password", password),
            ("scope", "openid profile offline_access"),
        ])
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("token answer is JSON"))
}

async fn admin_token(client: &reqwest::Client, url: &str) -> String {
    let (status, body) = password_token(client, url, "admin@contoso.test", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "admin password grant: {body}");
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// The tenant id in the discovery document's `issuer` (`{public}/{tid}/v2.0`).
async fn tenant_id(client: &reqwest::Client, url: &str) -> String {
    let r = client
        .get(format!(
            "{url}/contoso.test/v2.0/.well-known/openid-configuration"
        ))
        .send()
        .await
        .expect("discovery");
    assert_eq!(r.status().as_u16(), 200);
    let doc: Value = r.json().await.expect("discovery JSON");
    let issuer = doc["issuer"].as_str().expect("issuer").to_owned();
    let tid = issuer
        .strip_prefix(&format!("{url}/"))
        .and_then(|rest| rest.strip_suffix("/v2.0"))
        .unwrap_or_else(|| panic!("issuer {issuer} is not {url}/TENANT/v2.0"));
    tid.to_owned()
}

/// All items of a Graph collection, following `@odata.nextLink`.
async fn list_all(client: &reqwest::Client, url: String, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(url);
    while let Some(u) = next.take() {
        let (status, page) = send(client, reqwest::Method::GET, u, token, None).await;
        assert_eq!(status, 200, "{page}");
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    items
}

/// Creates a user; returns (id, upn) once the server acknowledged it with 201.
async fn create_user(client: reqwest::Client, url: String, token: String, i: usize) -> (String, String) {
    let upn = format!("durable{i:02}@contoso.test");
    let (status, body) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1.0/users"),
        &token,
        Some(json!({
            "accountEnabled": true,
            "displayName": format!("Durable {i}"),
            "userPrincipalName": upn,
            "mailNickname": format!("durable{i:02}"),
            "passwordProfile": {"password": "Correct-horse-77!", "forceChangePasswordNextSignIn": false},
        })),
    )
    .await;
    assert_eq!(status, 201, "create {upn}: {body}");
    assert_eq!(body["userPrincipalName"], upn.as_str());
    (body["id"].as_str().expect("user id").to_owned(), upn)
}

#[derive(Debug)]
enum Ack {
    User(String, String),
    Member,
    Secret(String),
}

async fn durability(backend: Backend) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let database_url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(
            usher_store_postgres::testing::fresh_database()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    };
    let first_log = tmp.path().join("usherd-1.log");
    let mut server = start_usherd(
        &data_dir,
        database_url.as_deref(),
        ADMIN_PASSWORD,
        None,
        &first_log,
    )
    .await;
    assert!(
        server.log_text().contains("created tenant"),
        "first start did not bootstrap:\n{}",
        server.log_text()
    );
    let ca = data_dir.join("tls").join("ca.pem");
    let client = https_client(&ca);
    let url = server.url.clone();
    let tid = tenant_id(&client, &url).await;
    let token = admin_token(&client, &url).await;

    // a group, an application and its service principal
    let (status, group) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1.0/groups"),
        &token,
        Some(
            json!({"displayName": "Durable group", "mailNickname": "durablegroup", "securityEnabled": true}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().expect("group id").to_owned();
    let (status, app) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1.0/applications"),
        &token,
        Some(json!({"displayName": "Durable app"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["appId"].as_str().expect("appId").to_owned();
    let app_object_id = app["id"].as_str().expect("app id").to_owned();
    let (status, sp) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1.0/servicePrincipals"),
        &token,
        Some(json!({"appId": app_id})),
    )
    .await;
    assert_eq!(status, 201, "{sp}");

    // the first users, concurrently
    let mut users: Vec<(String, String)> = Vec::new();
    let mut tasks = JoinSet::new();
    for i in 0..MEMBERS {
        tasks.spawn(create_user(client.clone(), url.clone(), token.clone(), i));
    }
    while let Some(r) = tasks.join_next().await {
        users.push(r.expect("user task"));
    }

    // the last batch, concurrently: more users, member adds and a client secret; SIGKILL as
    // soon as every one of them is acknowledged
    let mut tasks: JoinSet<Ack> = JoinSet::new();
    for i in MEMBERS..USERS {
        let (c, u, t) = (client.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let (id, upn) = create_user(c, u, t, i).await;
            Ack::User(id, upn)
        });
    }
    for (user_id, _) in &users {
        let (c, u, t, g) = (client.clone(), url.clone(), token.clone(), group_id.clone());
        let member = json!({"@odata.id": format!("{url}/v1.0/directoryObjects/{user_id}")});
        tasks.spawn(async move {
            let (status, body) = send(
                &c,
                reqwest::Method::POST,
                format!("{u}/v1.0/groups/{g}/members/$ref"),
                &t,
                Some(member),
            )
            .await;
            assert_eq!(status, 204, "member add: {body}");
            Ack::Member
        });
    }
    {
        let (c, u, t, a) = (client.clone(), url.clone(), token.clone(), app_object_id.clone());
        tasks.spawn(async move {
            let (status, body) = send(
                &c,
                reqwest::Method::POST,
                format!("{u}/v1.0/applications/{a}/addPassword"),
                &t,
                Some(json!({"passwordCredential": {"displayName": "durable"}})),
            )
            .await;
            assert_eq!(status, 200, "addPassword: {body}");
            Ack::Secret(body["secretText"].as_str().expect("secretText").to_owned())
        });
    }
    let mut secret = None;
    let mut member_acks = 0;
    let mut late_users = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("write task") {
            Ack::User(id, upn) => late_users.push((id, upn)),
            Ack::Member => member_acks += 1,
            Ack::Secret(s) => secret = Some(s),
        }
    }
    server.sigkill();
    let secret = secret.expect("secret acknowledged");
    assert_eq!(member_acks, MEMBERS);
    users.extend(late_users);
    assert_eq!(users.len(), USERS);

    // restart on the same data directory / database; the bootstrap password given now must be
    // ignored: the tenant exists already
    let second_log = tmp.path().join("usherd-2.log");
    let server = start_usherd(
        &data_dir,
        database_url.as_deref(),
        OTHER_PASSWORD,
        Some(server.port),
        &second_log,
    )
    .await;
    let restart_log = server.log_text();
    assert!(
        !restart_log.contains("created tenant"),
        "the restart bootstrapped again:\n{restart_log}"
    );
    let url = server.url.clone();
    let client = https_client(&ca);
    assert_eq!(
        tenant_id(&client, &url).await,
        tid,
        "the restart created another tenant"
    );

    // the administrator's password is unchanged
    let (status, body) = password_token(&client, &url, "admin@contoso.test", OTHER_PASSWORD).await;
    assert_eq!(
        status, 400,
        "the restart's bootstrap password was accepted: {body}"
    );
    assert_eq!(body["error_codes"], json!([50126]), "{body}");
    let token = admin_token(&client, &url).await;

    // every acknowledged user, by id and by UPN
    for (id, upn) in &users {
        let (status, body) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1.0/users/{id}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200, "user {upn} ({id}) lost after SIGKILL: {body}");
        assert_eq!(body["userPrincipalName"], upn.as_str());
        let (status, body) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1.0/users/{upn}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, 200, "user {upn} lost after SIGKILL: {body}");
        assert_eq!(body["id"], id.as_str());
    }
    let all = list_all(&client, format!("{url}/v1.0/users"), &token).await;
    let admins = all
        .iter()
        .filter(|u| u["userPrincipalName"] == "admin@contoso.test")
        .count();
    assert_eq!(admins, 1, "administrators after restart: {admins}");
    for (id, upn) in &users {
        assert!(
            all.iter().any(|u| u["id"] == id.as_str()),
            "{upn} missing from the user list"
        );
    }

    // every acknowledged membership
    let members = list_all(&client, format!("{url}/v1.0/groups/{group_id}/members"), &token).await;
    for (id, upn) in &users[..MEMBERS] {
        assert!(
            members.iter().any(|m| m["id"] == id.as_str()),
            "membership of {upn} lost after SIGKILL"
        );
    }
    assert_eq!(members.len(), MEMBERS, "{members:?}");

    // the application's secret works
    let r = client
        .post(format!("{url}/{tid}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", format!("{url}/.default").as_str()),
        ])
        .send()
        .await
        .expect("client_credentials");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("token answer");
    assert_eq!(status, 200, "client secret lost after SIGKILL: {body}");
    assert!(
        body["access_token"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    drop(server);
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_sqlite() {
    durability(Backend::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_postgres() {
    durability(Backend::Postgres).await;
}
