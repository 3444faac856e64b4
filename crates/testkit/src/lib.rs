//! Test harness: starts a real usher server (TLS, real store) on an ephemeral loopback port with a
//! fresh database, and gives HTTPS clients that trust only its CA.
#![warn(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness: failures should stop the test"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use usher_server::{RunningServer, ServerConfig};
use usher_store::Store;

/// The administrator's password in every test server.
pub const ADMIN_PASSWORD: &str = "Boot-strap-pass-9";
/// The first-party CLI client id.
pub const CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Which store a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on the PostgreSQL server of `USHER_TEST_POSTGRES_URL`.
    Postgres,
}

/// A running test server.
#[derive(Debug)]
pub struct TestServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// The tenant id.
    pub tenant_id: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database URL, for PostgreSQL servers.
    pub database_url: Option<String>,
    server: Option<RunningServer>,
    _tmp: tempfile::TempDir,
}

/// Opens the store for a backend.
pub async fn open_store(backend: Backend, data_dir: &std::path::Path) -> (Arc<dyn Store>, Option<String>) {
    match backend {
        Backend::Sqlite => (
            Arc::new(
                usher_store_sqlite::SqliteStore::open(&data_dir.join("usher.db"))
                    .await
                    .unwrap(),
            ),
            None,
        ),
        Backend::Postgres => {
            let url = usher_store_postgres::testing::fresh_database()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (
                Arc::new(usher_store_postgres::PostgresStore::connect(&url).await.unwrap()),
                Some(url),
            )
        }
    }
}

/// Starts a server on SQLite.
pub async fn spawn() -> TestServer {
    spawn_with(Backend::Sqlite).await
}

/// Starts a server on SQLite published as `https://localhost:PORT` (a domain: WebAuthn refuses
/// IP addresses as relying parties).
pub async fn spawn_localhost() -> TestServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    spawn_configured(Backend::Sqlite, |c| {
        c.listen = SocketAddr::from(([127, 0, 0, 1], port));
        c.public_url = format!("https://localhost:{port}");
    })
    .await
}

/// Starts a server on the given backend.
pub async fn spawn_with(backend: Backend) -> TestServer {
    spawn_configured(backend, |_| {}).await
}

/// Starts a server on the given backend, with `adjust` applied to its configuration.
pub async fn spawn_configured(backend: Backend, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let (store, database_url) = open_store(backend, &data_dir).await;
    let mut config = ServerConfig::new(data_dir.clone(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.bootstrap_password = Some(ADMIN_PASSWORD.to_owned().into());
    adjust(&mut config);
    let server = usher_server::start(config, store).await.unwrap();
    TestServer {
        url: server.public_url.clone(),
        ca: server.ca_path.clone().unwrap(),
        tenant_id: server.tenant_id.clone(),
        data_dir,
        database_url,
        server: Some(server),
        _tmp: tmp,
    }
}

impl TestServer {
    /// An HTTPS client trusting only this server's CA, not following redirects, keeping cookies.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).unwrap();
        let certs = reqwest::Certificate::from_pem_bundle(&pem).unwrap();
        reqwest::Client::builder()
            .tls_certs_only(certs)
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .build()
            .unwrap()
    }

    /// The running server (application state for white-box checks).
    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url, self.tenant_id)
    }

    /// Posts a form to the token endpoint; returns (status, body).
    pub async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .client()
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// A password-grant token for a user through the CLI client.
    pub async fn password_token(&self, upn: &str, password: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", upn),
            ("password", password),
            ("scope", "openid profile offline_access"),
        ])
        .await
    }

    /// The administrator's access token for the API.
    pub async fn admin_token(&self) -> String {
        let (status, body) = self.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A Graph call with a bearer token; returns (status, body or null).
    pub async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let c = self.client();
        let url = format!("{}{path}", self.url);
        let req = match method {
            "GET" => c.get(url),
            "POST" => c.post(url),
            "PATCH" => c.patch(url),
            "PUT" => c.put(url),
            "DELETE" => c.delete(url),
            other => panic!("method {other}"),
        };
        let req = req.bearer_auth(token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            },
        )
    }

    /// Creates a user as the administrator; returns its object id.
    pub async fn create_user(&self, upn: &str, password: &str, temporary: bool) -> String {
        let admin = self.admin_token().await;
        let (status, body) = self
            .api(
                "POST",
                "/v1.0/users",
                &admin,
                Some(json!({
                    "accountEnabled": true, "displayName": upn, "userPrincipalName": upn,
                    "passwordProfile": {"password": password, "forceChangePasswordNextSignIn": temporary},
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Registers an application with a service principal; returns (appId, object id).
    pub async fn create_app(&self, body: Value) -> (String, String) {
        let admin = self.admin_token().await;
        let (status, app) = self.api("POST", "/v1.0/applications", &admin, Some(body)).await;
        assert_eq!(status, 201, "{app}");
        let app_id = app["appId"].as_str().unwrap().to_owned();
        let (status, sp) = self
            .api(
                "POST",
                "/v1.0/servicePrincipals",
                &admin,
                Some(json!({"appId": app_id})),
            )
            .await;
        assert_eq!(status, 201, "{sp}");
        (app_id, app["id"].as_str().unwrap().to_owned())
    }

    /// Adds a client secret to an application; returns the secret.
    pub async fn add_secret(&self, app_object_id: &str) -> String {
        let admin = self.admin_token().await;
        let (status, body) = self
            .api(
                "POST",
                &format!("/v1.0/applications/{app_object_id}/addPassword"),
                &admin,
                Some(json!({"passwordCredential": {"displayName": "test"}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["secretText"].as_str().unwrap().to_owned()
    }

    /// Stops the server gracefully.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}
