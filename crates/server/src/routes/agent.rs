//! The machine agent's API (SPEC X1–X5): join with a one-time token, then every call carries
//! `Authorization: UsherMachine <assertion>`, a short JWT signed by the machine's key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use usher_arm::{ArmError, ExtensionOutcome, JoinRequest, Machine};

use super::arm::arm_error;
use crate::AppState;

/// The scheme of machine credentials in `Authorization`.
pub const MACHINE_SCHEME: &str = "UsherMachine";
/// Longest long poll the server holds.
const MAX_WAIT_SECS: u64 = 55;

/// The audience of machine assertions.
pub fn agent_audience(state: &AppState) -> String {
    format!("{}/usher/agent", state.idp.public_url())
}

/// A request authenticated by a joined machine's key.
pub struct MachineCaller(pub Machine);

impl FromRequestParts<AppState> for MachineCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let assertion = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(MACHINE_SCHEME))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                arm_error(ArmError::new(
                    401,
                    "InvalidMachineCredential",
                    format!("This endpoint needs `Authorization: {MACHINE_SCHEME} <assertion>` from a joined machine's agent."),
                ))
            })?;
        state
            .arm
            .authenticate_machine(assertion, &agent_audience(state))
            .await
            .map(MachineCaller)
            .map_err(arm_error)
    }
}

/// `POST /usher/agent/join`: no bearer; the one-time token and a proof of the machine key.
pub async fn join(State(state): State<AppState>, Json(req): Json<JoinRequest>) -> Response {
    let audience = format!("{}/usher/agent/join", state.idp.public_url());
    match state.arm.join_machine(&req, &audience).await {
        Ok(mut v) => {
            // The agent signs its calls for this audience, whatever name it reached us by.
            v["agentAudience"] = Value::String(agent_audience(&state));
            Json(v).into_response()
        }
        Err(e) => arm_error(e),
    }
}

/// `GET /usher/agent/config`: tenant, VM, identity and device of the calling machine.
pub async fn config(State(state): State<AppState>, MachineCaller(m): MachineCaller) -> Response {
    match state.arm.machine_config(&m).await {
        Ok(mut v) => {
            v["sshUserCertificateAuthority"] = Value::String(state.idp.ssh().user_ca().to_openssh());
            Json(v).into_response()
        }
        Err(e) => arm_error(e),
    }
}

fn fingerprint(extensions: &[Value]) -> String {
    let mut parts: Vec<String> = extensions
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["name"].as_str().unwrap_or_default().to_ascii_lowercase(),
                e["generation"]
            )
        })
        .collect();
    parts.sort();
    usher_crypto::secret::hex(&usher_crypto::secret::sha256(parts.join(";").as_bytes()))
}

/// A long poll (`?known=FINGERPRINT&wait=SECS`): `current` gives the answer and its
/// fingerprint; while the fingerprint is still `known`, waits up to `wait` seconds (at most
/// [`MAX_WAIT_SECS`]) for one of `changes` (this server's changes; another replica's are seen
/// when the wait ends). The answer goes out with its `fingerprint`.
async fn long_poll<F, Fut>(
    q: &HashMap<String, String>,
    mut changes: Vec<tokio::sync::watch::Receiver<u64>>,
    mut current: F,
) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Value, String), ArmError>>,
{
    let wait = q
        .get("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or(0)
        .min(MAX_WAIT_SECS);
    let known = q.get("known").map(String::as_str).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        for c in &mut changes {
            c.borrow_and_update();
        }
        let (mut answer, fp) = match current().await {
            Ok(v) => v,
            Err(e) => return arm_error(e),
        };
        if fp != known || tokio::time::Instant::now() >= deadline {
            answer["fingerprint"] = Value::String(fp);
            return Json(answer).into_response();
        }
        let woken = futures::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
        let _ = tokio::time::timeout_at(deadline, woken).await;
    }
}

/// `GET /usher/agent/extensions?known=FINGERPRINT&wait=SECS`: the desired extensions; when they
/// still match `known`, waits (long poll) up to `wait` seconds for a change.
pub async fn extensions(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    long_poll(&q, vec![state.arm.watch_extensions()], || async {
        let list = state.arm.machine_extensions(&m).await?;
        let fp = fingerprint(&list);
        Ok((json!({"extensions": list}), fp))
    })
    .await
}

/// What an agent reports for one extension.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    generation: u64,
    /// `Succeeded`, `Failed` or `Removed`.
    status: String,
    #[serde(default)]
    exit_code: i64,
    #[serde(default)]
    message: String,
}

/// `POST /usher/agent/extensions/{name}/status`.
pub async fn extension_status(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Path(name): Path<String>,
    Json(r): Json<StatusReport>,
) -> Response {
    let outcome = match r.status.as_str() {
        "Succeeded" => ExtensionOutcome::Succeeded { message: r.message },
        "Failed" => ExtensionOutcome::Failed {
            exit_code: r.exit_code,
            message: r.message,
        },
        "Removed" => ExtensionOutcome::Removed,
        other => {
            return arm_error(ArmError::new(
                400,
                "InvalidParameter",
                format!("status '{other}' is not Succeeded, Failed or Removed."),
            ));
        }
    };
    match state.arm.machine_report(&m, &name, r.generation, outcome).await {
        Ok(applied) => Json(json!({"applied": applied})).into_response(),
        Err(e) => arm_error(e),
    }
}

/// `GET /usher/agent/logins?known=FINGERPRINT&wait=SECS`: who may log in to this machine, with
/// their UIDs (SPEC L2, R5): the machine's login cache. While the answer still matches `known`,
/// waits (long poll) up to `wait` seconds for a change of users, groups or roles.
pub async fn logins(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let changes = vec![state.dir().watch_changes(), state.arm.watch_rbac()];
    long_poll(&q, changes, || async {
        let mut snapshot = state.arm.own_logins(&m).await?;
        // The tenant's session lock (SPEC L7) rides along; a machine's own setting wins.
        let idle = state
            .dir()
            .tenant()
            .await
            .map_err(|_| ArmError::internal())?
            .session_idle_timeout_secs
            .unwrap_or(0);
        snapshot["sessionIdleTimeoutSeconds"] = Value::from(idle);
        let fp = usher_crypto::secret::hex(&usher_crypto::secret::sha256(
            format!("{}|{idle}", snapshot["logins"]).as_bytes(),
        ));
        Ok((snapshot, fp))
    })
    .await
}

/// A token request from IMDS.
#[derive(Debug, Deserialize)]
pub struct TokenAsk {
    resource: String,
}

/// `POST /usher/agent/token {"resource"}`: a token of the VM's managed identity.
pub async fn token(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(ask): Json<TokenAsk>,
) -> Response {
    let Some(identity) = m.identity().map(str::to_owned) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": "Identity not found"})),
        )
            .into_response();
    };
    let meta = usher_idp::RequestMeta {
        ip: peer.ip().to_string(),
        correlation_id: headers
            .get("x-ms-client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64)
            .map_or_else(|| state.dir().new_id(), str::to_owned),
        user_agent: String::new(),
    };
    match state
        .idp
        .managed_identity_token(&identity, &ask.resource, &meta)
        .await
    {
        Ok(t) => Json(t).into_response(),
        Err(e) => {
            let status = if e.error == "server_error" {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            let description = if e.code == 0 {
                e.description.clone()
            } else {
                format!("AADSTS{}: {}", e.code, e.description)
            };
            (
                status,
                Json(json!({"error": e.error, "error_description": description})),
            )
                .into_response()
        }
    }
}

/// A device registration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAsk {
    hostname: String,
    #[serde(default)]
    operating_system: String,
    #[serde(default)]
    operating_system_version: String,
}

/// `POST /usher/agent/device`: the machine joins the directory as a device (SPEC D5).
pub async fn register_device(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Json(d): Json<DeviceAsk>,
) -> Response {
    state
        .arm
        .register_device(&m, &d.hostname, &d.operating_system, &d.operating_system_version)
        .await
        .map_or_else(arm_error, |v| Json(v).into_response())
}

/// `DELETE /usher/agent/device`: the machine leaves the directory.
pub async fn unregister_device(State(state): State<AppState>, MachineCaller(m): MachineCaller) -> Response {
    match state.arm.unregister_device(&m).await {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => arm_error(e),
    }
}

/// The endpoints a machine must reach (SPEC X5), by the seed's kinds.
pub fn endpoint_list(state: &AppState) -> Vec<Value> {
    let base = state.idp.public_url();
    let tenant = &state.idp.tenant().id;
    vec![
        json!({"kind": "device registration", "url": format!("{base}/usher/agent/device")}),
        json!({"kind": "device authentication", "url": format!("{base}/usher/agent")}),
        json!({"kind": "authentication", "url": format!("{base}/{tenant}/oauth2/v2.0/token")}),
        json!({"kind": "login check", "url": format!("{base}/usher/loginCheck")}),
    ]
}

/// `GET /usher/endpoints`: no token.
pub async fn endpoints(State(state): State<AppState>) -> Response {
    Json(json!({"endpoints": endpoint_list(&state)})).into_response()
}

/// `GET /usher/agent`, `GET /usher/agent/device` without credentials: the bare paths answer (so
/// `curl URL -D -` shows the endpoint is reachable), with what they are.
pub async fn bare(State(_state): State<AppState>) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "NotFound", "message": "This is a machine agent endpoint; it answers joined machines' agents."}})),
    )
        .into_response()
}
