//! Runs the built `usher` binary against a small in-process mock of the server's token and
//! Graph endpoints (plain HTTP): password login, the 50126 error, `account show` with the
//! seed's query, refresh-token rotation before an API call, Graph paging and errors, logout.
//! The real end-to-end tests against usherd live with the testkit.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct Mock {
    /// The refresh token generation currently valid.
    generation: Mutex<u32>,
    /// Authorization headers seen on Graph calls.
    bearer: Mutex<Vec<String>>,
    base: Mutex<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2ln")
}

fn tokens(generation: u32, lifetime: u64) -> Value {
    let access = jwt(&json!({
        "tid": "11111111-1111-1111-1111-111111111111",
        "upn": "admin@contoso.test",
        "exp": now() + lifetime,
        "gen": generation,
    }));
    json!({
        "token_type": "Bearer",
        "scope": "openid profile offline_access",
        "expires_in": lifetime,
        "access_token": access,
        "refresh_token": format!("rt-{generation}"),
    })
}

fn entra(code: u64, error: &str, text: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "t",
            "correlation_id": "c",
        })),
    )
}

async fn token(
    State(mock): State<Arc<Mock>>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if field("client_id") != "04b07795-8ddb-461a-bbee-02f9e1bf7b46" {
        return entra(700016, "unauthorized_client", "Application not found.");
    }
    match field("grant_type") {
        "password" => {
            if tenant != "contoso.test" || field("scope") != "openid profile offline_access" {
                return entra(9002313, "invalid_request", "Malformed request.");
            }
            if field("username") == "admin@contoso.test" && field("password") == "right" {
                let mut g = mock.generation.lock().unwrap_or_else(|e| e.into_inner());
                *g = 1;
                // expires in two minutes: the next API call must refresh first
                (StatusCode::OK, Json(tokens(1, 120)))
            } else {
                entra(
                    50126,
                    "invalid_grant",
                    "Error validating credentials due to invalid username or password.",
                )
            }
        }
        "refresh_token" => {
            let mut g = mock.generation.lock().unwrap_or_else(|e| e.into_inner());
            if tenant != "11111111-1111-1111-1111-111111111111" {
                return entra(90002, "invalid_request", "Tenant not found.");
            }
            if field("refresh_token") == format!("rt-{}", *g) {
                *g += 1;
                (StatusCode::OK, Json(tokens(*g, 3600)))
            } else {
                entra(50173, "invalid_grant", "The refresh token was revoked.")
            }
        }
        _ => entra(9002313, "invalid_request", "Unsupported grant."),
    }
}

async fn users(
    State(mock): State<Arc<Mock>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    mock.bearer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(auth.clone());
    if !auth.starts_with("Bearer ey") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken", "message": "no token"}})),
        );
    }
    let base = mock.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if query.get("page").map(String::as_str) == Some("2") {
        return (
            StatusCode::OK,
            Json(
                json!({"value": [{"id": "u2", "userPrincipalName": "bob@contoso.test", "displayName": "Bob", "accountEnabled": false}]}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "@odata.context": format!("{base}/v1.0/$metadata#users"),
            "value": [{"id": "u1", "userPrincipalName": "admin@contoso.test", "displayName": "Admin", "accountEnabled": true}],
            "@odata.nextLink": format!("{base}/v1.0/users?page=2"),
        })),
    )
}

async fn user(Path(id): Path<String>) -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"error": {"code": "Request_ResourceNotFound", "message": format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present.")}}),
        ),
    )
}

fn start() -> Result<(String, Arc<Mock>), Box<dyn std::error::Error>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);
    let mock = Arc::new(Mock::default());
    *mock.base.lock().unwrap_or_else(|e| e.into_inner()) = base.clone();
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/subscriptions", get(|| async { StatusCode::NOT_FOUND }))
        .route("/v1.0/users", get(users))
        .route("/v1.0/users/{id}", get(user))
        .with_state(mock.clone());
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        rt.block_on(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
    });
    Ok((base, mock))
}

fn usher(base: &str, config: &std::path::Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_usher"))
        .args(args)
        .env("USHER_SERVER", base)
        .env("USHER_CONFIG_DIR", config)
        .env_remove("USHER_CA_FILE")
        .output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn cached_refresh_token(config: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let session: Value = serde_json::from_slice(&std::fs::read(config.join("session.json"))?)?;
    Ok(session["refreshToken"].as_str().unwrap_or_default().to_string())
}

#[test]
fn login_show_refresh_list_logout() -> TestResult {
    let (base, mock) = start()?;
    let tmp = tempfile::tempdir()?;
    let config = tmp.path().join("cfg");

    // wrong password: the Entra error as az prints it, exit 1, nothing cached
    let out = usher(
        &base,
        &config,
        &["login", "-u", "admin@contoso.test", "-p", "wrong"],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("(AADSTS50126) AADSTS50126: Error validating credentials"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert!(!config.join("session.json").exists());

    // right password: no subscriptions (404) still succeeds and prints []
    let out = usher(
        &base,
        &config,
        &["login", "-u", "admin@contoso.test", "-p", "right"],
    )?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[]\n");
    let mode = std::fs::metadata(config.join("session.json"))?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(&config)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(cached_refresh_token(&config)?, "rt-1");

    // the seed's query
    let out = usher(
        &base,
        &config,
        &["account", "show", "--query", "user.name", "--output", "tsv"],
    )?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "admin@contoso.test\n");
    let out = usher(&base, &config, &["account", "show"])?;
    let account: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(account["tenantId"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(account["id"], "11111111-1111-1111-1111-111111111111");
    assert_eq!(account["user"]["type"], "user");

    // the token expires within 5 minutes: refreshed (and the rotated token saved) first;
    // the list follows @odata.nextLink and prints a bare array
    let out = usher(&base, &config, &["ad", "user", "list"])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let users: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(users.as_array().map(Vec::len), Some(2));
    assert_eq!(users[1]["userPrincipalName"], "bob@contoso.test");
    assert_eq!(cached_refresh_token(&config)?, "rt-2");

    // fresh now: no second refresh
    let out = usher(
        &base,
        &config,
        &[
            "ad",
            "user",
            "list",
            "--query",
            "[].userPrincipalName",
            "-o",
            "tsv",
        ],
    )?;
    assert_eq!(text(&out.stdout), "admin@contoso.test\nbob@contoso.test\n");
    assert_eq!(cached_refresh_token(&config)?, "rt-2");
    let seen = mock.bearer.lock().map(|v| v.len()).unwrap_or_default();
    assert_eq!(seen, 4);

    // table output
    let out = usher(&base, &config, &["ad", "user", "list", "-o", "table"])?;
    let table = text(&out.stdout);
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("AccountEnabled")),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");

    // Graph errors
    let out = usher(
        &base,
        &config,
        &["ad", "user", "show", "--id", "nobody@contoso.test"],
    )?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .starts_with("(Request_ResourceNotFound) Resource 'nobody@contoso.test' does not exist"),
        "{}",
        text(&out.stderr)
    );

    // another server than the cached one
    let out = usher("http://127.0.0.1:1", &config, &["ad", "user", "list"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Please run 'usher login'"));

    // logout
    let out = usher(&base, &config, &["logout"])?;
    assert_eq!(out.status.code(), Some(0));
    let out = usher(&base, &config, &["account", "show"])?;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Please run 'usher login' to setup account.\n");
    Ok(())
}

#[test]
fn usage_errors_exit_2() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let out = usher(
        "http://127.0.0.1:1",
        tmp.path(),
        &["ad", "user", "create", "--display-name", "x"],
    )?;
    assert_eq!(out.status.code(), Some(2));
    let out = usher(
        "http://127.0.0.1:1",
        tmp.path(),
        &["account", "show", "--query", "a.["],
    )?;
    assert_eq!(out.status.code(), Some(2));
    let out = usher("http://127.0.0.1:1", tmp.path(), &["--version"])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("usher "));
    Ok(())
}
