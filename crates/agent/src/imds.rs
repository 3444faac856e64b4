//! The Instance Metadata Service on the machine (SPEC X2), in Azure's shapes: `/metadata/instance`,
//! `/metadata/identity/info`, `/metadata/identity/oauth2/token` (all values strings), with
//! `Metadata: true` required and `X-Forwarded-For` refused. Tokens come from usherd and are
//! cached until five minutes before they expire; the calls that reach the server are rate
//! limited per machine (Azure's identity limit: 20 per second, 5 at once).
//!
//! The Arc-style variant serves the same token endpoint behind a challenge: the first request
//! gets 401 with `WWW-Authenticate: Basic realm=<file>`, a root-only file whose content the
//! caller must send back, so only root (or whom root lets read it) can take the identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{RwLock, Semaphore};

use crate::api::Api;

/// api-versions IMDS accepts (Azure's list; the seed uses 2017-08-01 and 2018-02-01).
pub const API_VERSIONS: &[&str] = &[
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
    "2024-07-17",
    "2025-04-07",
];

/// Tokens are refreshed when less than this is left.
const REFRESH_BEFORE_SECS: i64 = 300;
/// How long the machine's configuration is reused.
const CONFIG_TTL: Duration = Duration::from_secs(30);

/// A cached token.
#[derive(Debug, Clone)]
struct CachedToken {
    body: Value,
    expires_on: i64,
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_sec: f64) -> Self {
        Self {
            capacity: per_sec,
            tokens: per_sec,
            per_sec,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Shared state of both endpoints.
#[derive(Debug)]
pub struct Imds {
    api: Arc<Api>,
    config: RwLock<Option<(Value, Instant)>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    identity_bucket: Mutex<Bucket>,
    instance_bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    /// Arc-style: the challenge file and its content.
    arc_secret: Option<(String, String)>,
}

impl Imds {
    /// IMDS for the machine behind `api`; `arc_secret` enables the challenge.
    pub fn new(api: Arc<Api>, arc_secret: Option<(String, String)>) -> Self {
        Self {
            api,
            config: RwLock::new(None),
            tokens: Mutex::new(HashMap::new()),
            identity_bucket: Mutex::new(Bucket::new(20.0)),
            instance_bucket: Mutex::new(Bucket::new(50.0)),
            in_flight: Semaphore::new(5),
            arc_secret,
        }
    }

    /// The machine's configuration from usherd (cached briefly).
    pub async fn config(&self) -> Result<Value, crate::api::ApiError> {
        if let Some((v, at)) = self.config.read().await.as_ref()
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(v.clone());
        }
        match self.api.config().await {
            Ok(v) => {
                *self.config.write().await = Some((v.clone(), Instant::now()));
                Ok(v)
            }
            // The server is away: what it said last still names the identity, so cached tokens
            // keep being served until they expire.
            Err(e) if e.status == 0 || e.status >= 500 => match self.config.read().await.as_ref() {
                Some((v, _)) => Ok(v.clone()),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn too_many() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"error": "too_many_requests", "error_description": "Too many requests: the identity endpoint allows 20 per second and 5 at once per machine; retry with backoff."}),
    )
}

/// Azure's checks, in order: method, `X-Forwarded-For`, `Metadata: true`, `api-version`.
fn precheck(
    method: &Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    identity: bool,
) -> Option<Response> {
    if method != Method::GET {
        return Some(error(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "Method not allowed: IMDS answers GET only."}),
        ));
    }
    if headers.contains_key("x-forwarded-for") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "error_description": "Requests with X-Forwarded-For are refused: IMDS answers processes on this machine only, never through a proxy."}),
        ));
    }
    let metadata = headers.get("metadata").and_then(|v| v.to_str().ok());
    if !metadata.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Some(if identity {
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "bad_request_102", "error_description": "Required metadata header not specified"}),
            )
        } else {
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": "Bad request. Required metadata header not specified"}),
            )
        });
    }
    if !q
        .get("api-version")
        .is_some_and(|v| API_VERSIONS.contains(&v.as_str()))
    {
        let mut newest: Vec<&str> = API_VERSIONS.iter().rev().take(3).copied().collect();
        newest.sort_unstable_by(|a, b| b.cmp(a));
        return Some(error(
            StatusCode::BAD_REQUEST,
            json!({"error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds", "newest-versions": newest}),
        ));
    }
    None
}

fn unreachable_server(e: &crate::api::ApiError) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "unknown", "error_description": format!("Failed to retrieve token from the directory: {e}")}),
    )
}

async fn instance(
    State(imds): State<Arc<Imds>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = precheck(&method, &headers, &q, false) {
        return r;
    }
    if !imds.instance_bucket.lock().map(|mut b| b.take()).unwrap_or(false) {
        return too_many();
    }
    let c = match imds.config().await {
        Ok(c) => c,
        Err(e) => return unreachable_server(&e),
    };
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    let tags: Vec<Value> = c["tags"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| json!({"name": k, "value": v.as_str().unwrap_or_default()}))
                .collect()
        })
        .unwrap_or_default();
    let tags_text = c["tags"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default();
    axum::Json(json!({
        "compute": {
            "azEnvironment": "usher",
            "location": s("location"),
            "name": s("name"),
            "osType": s("osType"),
            "osProfile": {"adminUsername": s("adminUsername"), "computerName": s("computerName"), "disablePasswordAuthentication": ""},
            "provider": "Microsoft.Compute",
            "resourceGroupName": s("resourceGroupName"),
            "resourceId": s("vmResourceId"),
            "subscriptionId": s("subscriptionId"),
            "tags": tags_text,
            "tagsList": tags,
            "vmId": s("vmId"),
            "vmSize": s("vmSize"),
            "publisher": c["image"]["publisher"].as_str().unwrap_or_default(),
            "offer": c["image"]["offer"].as_str().unwrap_or_default(),
            "sku": c["image"]["sku"].as_str().unwrap_or_default(),
            "version": c["image"]["version"].as_str().unwrap_or_default(),
            "zone": "", "userData": "", "storageProfile": {}, "securityProfile": {},
        },
        "network": {"interface": []},
    }))
    .into_response()
}

async fn identity_info(
    State(imds): State<Arc<Imds>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = precheck(&method, &headers, &q, true) {
        return r;
    }
    match imds.config().await {
        Ok(c) if c["identity"].is_object() => axum::Json(json!({"tenantId": c["tenantId"]})).into_response(),
        Ok(_) => error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        ),
        Err(e) => unreachable_server(&e),
    }
}

/// The IMDS token shape: every value a string.
fn imds_token(body: &Value, resource: &str, identity: &Value) -> (Value, i64) {
    let now = crate::now();
    let expires_in = body["expires_in"].as_i64().unwrap_or(3599);
    let expires_on = now + expires_in;
    (
        json!({
            "access_token": body["access_token"],
            "refresh_token": "",
            "expires_in": expires_in.to_string(),
            "expires_on": expires_on.to_string(),
            "ext_expires_in": body["ext_expires_in"].as_i64().unwrap_or(expires_in).to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity["clientId"],
            "object_id": identity["principalId"],
            "msi_res_id": "",
        }),
        expires_on,
    )
}

async fn token(
    State(imds): State<Arc<Imds>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    token_common(&imds, method, headers, q, false).await
}

async fn arc_token(
    State(imds): State<Arc<Imds>>,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    token_common(&imds, method, headers, q, true).await
}

async fn token_common(
    imds: &Imds,
    method: Method,
    headers: HeaderMap,
    q: HashMap<String, String>,
    arc: bool,
) -> Response {
    if let Some(r) = precheck(&method, &headers, &q, true) {
        return r;
    }
    if arc {
        let Some((file, secret)) = &imds.arc_secret else {
            return error(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
        };
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .map(str::trim);
        let ok = presented.is_some_and(|p| usher_crypto::secret::ct_eq(p, secret));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, format!("Basic realm={file}"))],
                axum::Json(json!({"error": "unauthorized", "error_description": "Read the file named in WWW-Authenticate (root only) and send its content as 'Authorization: Basic <content>'."})),
            )
                .into_response();
        }
    }
    let Some(resource) = q.get("resource").map(|r| r.trim()).filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"}),
        );
    };
    let config = match imds.config().await {
        Ok(c) => c,
        Err(e) => return unreachable_server(&e),
    };
    let identity = &config["identity"];
    if !identity.is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
    }
    // Only the system-assigned identity exists: asking for another by id finds nothing.
    for (param, field) in [("client_id", "clientId"), ("object_id", "principalId")] {
        if let Some(v) = q.get(param)
            && !identity[field]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(v))
        {
            return error(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": "Identity not found"}),
            );
        }
    }
    if q.contains_key("msi_res_id") || q.contains_key("mi_res_id") {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        );
    }
    let bypass = q.get("bypass_cache").is_some_and(|v| v == "true");
    // Keyed by the identity too: turning it off and on again must not serve the old one's tokens.
    let key = format!(
        "{}|{}",
        identity["principalId"].as_str().unwrap_or_default(),
        resource.trim_end_matches('/').to_ascii_lowercase()
    );
    if !bypass
        && let Ok(cache) = imds.tokens.lock()
        && let Some(t) = cache.get(&key)
        && t.expires_on - crate::now() > REFRESH_BEFORE_SECS
    {
        let mut body = t.body.clone();
        body["expires_in"] = Value::String((t.expires_on - crate::now()).to_string());
        body["resource"] = Value::String(resource.to_owned());
        return axum::Json(body).into_response();
    }
    if !imds.identity_bucket.lock().map(|mut b| b.take()).unwrap_or(false) {
        return too_many();
    }
    let Ok(_permit) = imds.in_flight.try_acquire() else {
        return too_many();
    };
    match imds.api.token(resource).await {
        Ok(body) => {
            let (shaped, expires_on) = imds_token(&body, resource, identity);
            if let Ok(mut cache) = imds.tokens.lock() {
                cache.insert(
                    key,
                    CachedToken {
                        body: shaped.clone(),
                        expires_on,
                    },
                );
            }
            axum::Json(shaped).into_response()
        }
        Err(e) if e.status == 0 || e.status >= 500 => unreachable_server(&e),
        Err(e) => {
            let code = if e.code.starts_with("invalid_") || e.code == "unauthorized_client" {
                e.code.clone()
            } else {
                "invalid_request".into()
            };
            let code = if e.message.contains("AADSTS500011") || e.message.contains("AADSTS50001") {
                "invalid_resource".into()
            } else {
                code
            };
            error(
                StatusCode::BAD_REQUEST,
                json!({"error": code, "error_description": e.message}),
            )
        }
    }
}

async fn versions(headers: HeaderMap) -> Response {
    if headers.contains_key("x-forwarded-for") {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "error_description": "Requests with X-Forwarded-For are refused."}),
        );
    }
    axum::Json(json!({"apiVersions": API_VERSIONS})).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, json!({"error": "Not found"}))
}

/// The IMDS router (`arc`: the challenge variant of the token endpoint).
pub fn router(imds: Arc<Imds>, arc: bool) -> Router {
    let token_route = if arc {
        axum::routing::any(arc_token)
    } else {
        axum::routing::any(token)
    };
    Router::new()
        .route("/metadata/instance", axum::routing::any(instance))
        .route("/metadata/identity/info", axum::routing::any(identity_info))
        .route("/metadata/identity/oauth2/token", token_route)
        .route("/metadata/versions", axum::routing::get(versions))
        .fallback(not_found)
        .with_state(imds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn prechecks_in_azure_order() {
        let q: HashMap<String, String> = [("api-version".to_owned(), "2018-02-01".to_owned())].into();
        let mut h = HeaderMap::new();
        assert_eq!(
            precheck(&Method::GET, &h, &q, true).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        h.insert("Metadata", "true".parse().unwrap());
        assert!(precheck(&Method::GET, &h, &q, true).is_none());
        assert_eq!(
            precheck(&Method::POST, &h, &q, true).map(|r| r.status()),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        let old: HashMap<String, String> = [("api-version".to_owned(), "2016-01-01".to_owned())].into();
        assert_eq!(
            precheck(&Method::GET, &h, &old, true).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        h.insert("X-Forwarded-For", "10.0.0.1".parse().unwrap());
        assert_eq!(
            precheck(&Method::GET, &h, &q, true).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn bucket_limits_bursts() {
        let mut b = Bucket::new(20.0);
        let granted = (0..100).filter(|_| b.take()).count();
        assert!((20..=22).contains(&granted), "{granted}");
    }

    #[test]
    fn token_values_are_strings() {
        let (t, exp) = imds_token(
            &json!({"access_token": "x", "expires_in": 3600}),
            "https://management.azure.com",
            &json!({"clientId": "c", "principalId": "p"}),
        );
        for k in [
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type",
        ] {
            assert!(t[k].is_string(), "{k}");
        }
        assert_eq!(t["expires_on"], exp.to_string());
        assert_eq!(t["client_id"], "c");
    }
}
