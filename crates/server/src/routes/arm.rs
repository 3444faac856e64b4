//! The ARM-shaped API (SPEC A1, R1–R4): `/subscriptions/...` and `/tenants`, paths matched
//! case-insensitively, any `api-version` accepted, errors in ARM's `{"error": {"code", "message"}}`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use usher_arm::{ArmError, AssignmentFilter};

use super::Caller;
use crate::AppState;

pub(crate) fn arm_error(e: ArmError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({"error": {"code": e.code, "message": e.message}})),
    )
        .into_response()
}

fn not_found(path: &str) -> Response {
    arm_error(ArmError::new(
        404,
        "ResourceNotFound",
        format!("The resource '{path}' was not found or is not supported."),
    ))
}

fn list(items: Vec<Value>) -> Response {
    Json(json!({"value": items})).into_response()
}

fn parse_body(bytes: &Bytes) -> Result<Value, ArmError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ArmError::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: {e}."),
        )
    })
}

/// `GET /tenants`.
pub async fn tenants(State(state): State<AppState>, _caller: Caller) -> Response {
    match state.dir().tenant().await {
        Ok(t) => list(vec![json!({
            "id": format!("/tenants/{}", t.id),
            "tenantId": t.id,
            "displayName": t.display_name,
            "defaultDomain": t.domains.first(),
            "domains": t.domains,
            "tenantCategory": "Home",
        })]),
        Err(_) => arm_error(ArmError::internal()),
    }
}

/// `GET /usher/loginCheck?principal=OID_OR_UPN&machine=ARM_ID`: admin, user or deny, with the
/// assignments that decided it (SPEC R5).
pub async fn login_check(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(principal), Some(machine)) = (q.get("principal"), q.get("machine")) else {
        return arm_error(ArmError::new(
            400,
            "MissingParameter",
            "Both 'principal' and 'machine' are required.",
        ));
    };
    match state.arm.login_check(&caller.oid, principal, machine).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => arm_error(e),
    }
}

/// `GET /usher/machineLogins?machine=ARM_ID`: everyone who may log in to the machine (SPEC R5).
pub async fn machine_logins(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(machine) = q.get("machine") else {
        return arm_error(ArmError::new(400, "MissingParameter", "'machine' is required."));
    };
    match state.arm.machine_logins(&caller.oid, machine).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => arm_error(e),
    }
}

/// Every `/subscriptions...` request.
pub async fn dispatch(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let arm = &state.arm;
    let who = caller.oid.as_str();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if segs.len() == 1 {
        return match method {
            Method::GET => arm.list_subscriptions(who).await.map_or_else(arm_error, list),
            _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
        };
    }
    let sub = segs[1];
    let rest = &segs[2..];
    // .../providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/name]
    if let Some(i) = (0..rest.len().saturating_sub(2))
        .find(|&i| eq(rest[i], "providers") && eq(rest[i + 1], "Microsoft.Authorization"))
    {
        let scope = format!(
            "/subscriptions/{sub}{}",
            rest[..i].iter().map(|s| format!("/{s}")).collect::<String>()
        );
        let kind = rest[i + 2];
        let name = rest.get(i + 3).copied();
        if rest.len() > i + 4 {
            return not_found(&path);
        }
        return authorization(&state, who, method, &scope, kind, name, &q, &bytes, &path).await;
    }
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let expand_iv = q
        .get("$expand")
        .is_some_and(|e| e.eq_ignore_ascii_case("instanceView"));
    let base = state.idp.public_url().to_owned();
    match lower.as_slice() {
        [
            "resourcegroups",
            _,
            "providers",
            "microsoft.compute",
            "virtualmachines",
            tail @ ..,
        ] => {
            let rg = rest[1];
            return compute(ComputeRequest {
                state: &state,
                who,
                method,
                sub,
                rg,
                tail: &rest[5..],
                tail_lower: tail,
                expand_iv,
                body: &bytes,
                base: &base,
            })
            .await;
        }
        ["providers", "microsoft.compute", "virtualmachines"] => {
            return match method {
                Method::GET => arm.list_vms(who, sub, None).await.map_or_else(arm_error, list),
                _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
            };
        }
        ["providers", "microsoft.compute", "locations", _, "operations", _] if method == Method::GET => {
            return match arm.get_operation(who, sub, rest[5]).await {
                Ok(v) => {
                    let running = v["status"] == "InProgress";
                    let mut resp = Json(v).into_response();
                    if running {
                        resp.headers_mut()
                            .insert("Retry-After", axum::http::HeaderValue::from_static("1"));
                    }
                    resp
                }
                Err(e) => arm_error(e),
            };
        }
        [
            "providers",
            "microsoft.compute",
            "locations",
            _,
            "publishers",
            _,
            "artifacttypes",
            "vmextension",
            "types",
        ] if method == Method::GET => {
            return Json(Value::Array(arm.extension_image_types(rest[3], rest[5]))).into_response();
        }
        [
            "providers",
            "microsoft.compute",
            "locations",
            _,
            "publishers",
            _,
            "artifacttypes",
            "vmextension",
            "types",
            _,
            "versions",
        ] if method == Method::GET => {
            return Json(Value::Array(
                arm.extension_image_versions(rest[3], rest[5], rest[9]),
            ))
            .into_response();
        }
        _ => {}
    }
    match rest {
        [] => match method {
            Method::GET => arm
                .get_subscription(who, sub)
                .await
                .map_or_else(arm_error, |v| Json(v).into_response()),
            _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
        },
        [rg] if eq(rg, "resourceGroups") => match method {
            Method::GET => arm.list_groups(who, sub).await.map_or_else(arm_error, list),
            _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
        },
        [rg, name] if eq(rg, "resourceGroups") => match method {
            Method::PUT | Method::PATCH => match parse_body(&bytes) {
                Ok(body) => match arm.put_group(who, sub, name, &body).await {
                    Ok((created, v)) => created_or_ok(created, v),
                    Err(e) => arm_error(e),
                },
                Err(e) => arm_error(e),
            },
            Method::GET => arm
                .get_group(who, sub, name)
                .await
                .map_or_else(arm_error, |v| Json(v).into_response()),
            Method::HEAD => match arm.get_group(who, sub, name).await {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => StatusCode::from_u16(e.status)
                    .unwrap_or(StatusCode::NOT_FOUND)
                    .into_response(),
            },
            Method::DELETE => match arm.delete_group(who, sub, name).await {
                Ok(true) => StatusCode::OK.into_response(),
                Ok(false) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => arm_error(e),
            },
            _ => arm_error(ArmError::new(
                405,
                "MethodNotAllowed",
                "Method not allowed on resource groups.",
            )),
        },
        _ => not_found(&path),
    }
}

/// `GET /metadata/endpoints`: the cloud description `az cloud register
/// --endpoint-resource-manager` reads (one object; every endpoint is this server).
pub async fn metadata_endpoints(State(state): State<AppState>) -> Response {
    let base = state.idp.public_url().trim_end_matches('/').to_owned();
    let host = url::Url::parse(&base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    Json(json!({
        "name": "usher",
        "portal": base,
        "authentication": {
            "loginEndpoint": base,
            "audiences": [format!("{base}/")],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "resourceManager": format!("{base}/"),
        "microsoftGraphResourceId": format!("{base}/"),
        "graphAudience": format!("{base}/"),
        "graph": format!("{base}/"),
        "gallery": "",
        "sqlManagement": "",
        "batch": "",
        "media": "",
        "vmImageAliasDoc": "",
        "activeDirectoryDataLake": "",
        "suffixes": {"storage": host, "keyVaultDns": host, "acrLoginServer": host, "sqlServerHostname": host},
    }))
    .into_response()
}

/// ARM paths are case-insensitive: the `subscriptions`, `tenants`, `providers` and `metadata`
/// keywords are normalised before routing (names keep their case; the dispatcher compares
/// keywords case-insensitively). A doubled leading slash (`az cloud register` with an endpoint
/// ending in `/`) is collapsed.
pub fn normalize_path(uri: &Uri) -> Option<Uri> {
    let raw = uri.path();
    let path = raw.trim_start_matches('/');
    let collapsed = raw.len() - path.len() > 1;
    let path = format!("/{path}");
    let first = path.split('/').nth(1)?;
    let lower = first.to_ascii_lowercase();
    let keyword = matches!(
        lower.as_str(),
        "subscriptions" | "tenants" | "providers" | "metadata"
    );
    if keyword && (first != lower || collapsed || (lower == "metadata" && path != path.to_ascii_lowercase()))
    {
        // Metadata paths hold no names: all of it is matched in lower case.
        let new_path = if lower == "metadata" {
            path.to_ascii_lowercase()
        } else {
            format!("/{lower}{}", &path[1 + first.len()..])
        };
        let pq = match uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        pq.parse().ok()
    } else {
        None
    }
}

struct ComputeRequest<'a> {
    state: &'a AppState,
    who: &'a str,
    method: Method,
    sub: &'a str,
    rg: &'a str,
    /// Path segments after `virtualMachines`, as sent and lower-cased.
    tail: &'a [&'a str],
    tail_lower: &'a [&'a str],
    expand_iv: bool,
    body: &'a Bytes,
    base: &'a str,
}

fn created_or_ok(created: bool, v: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(v)).into_response()
}

/// An extension change: its body, with `Azure-AsyncOperation` while the agent applies it.
fn extension_change(c: usher_arm::ExtensionChange, base: &str) -> Response {
    let status = StatusCode::from_u16(c.status).unwrap_or(StatusCode::OK);
    let mut resp = match c.body {
        Some(b) => (status, Json(b)).into_response(),
        None => status.into_response(),
    };
    if let Some(op) = c.operation {
        let url = format!("{base}{op}?api-version=2024-11-01");
        if let Ok(v) = axum::http::HeaderValue::from_str(&url) {
            resp.headers_mut().insert("Azure-AsyncOperation", v.clone());
            if status == StatusCode::ACCEPTED {
                resp.headers_mut().insert(axum::http::header::LOCATION, v);
            }
        }
        resp.headers_mut()
            .insert("Retry-After", axum::http::HeaderValue::from_static("1"));
    }
    resp
}

/// `.../resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines[/{vm}[/...]]`.
async fn compute(r: ComputeRequest<'_>) -> Response {
    let arm = &r.state.arm;
    let (who, sub, rg) = (r.who, r.sub, r.rg);
    let method = r.method;
    match r.tail_lower {
        [] => match method {
            Method::GET => arm
                .list_vms(who, sub, Some(rg))
                .await
                .map_or_else(arm_error, list),
            _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
        },
        [_] => {
            let vm = r.tail[0];
            match method {
                Method::PUT | Method::PATCH => match parse_body(r.body) {
                    Ok(body) => match arm.put_vm(who, sub, rg, vm, &body, method == Method::PATCH).await {
                        Ok(put) => created_or_ok(put.created, put.body),
                        Err(e) => arm_error(e),
                    },
                    Err(e) => arm_error(e),
                },
                Method::GET => arm
                    .get_vm(who, sub, rg, vm, r.expand_iv)
                    .await
                    .map_or_else(arm_error, |v| Json(v).into_response()),
                Method::DELETE => match arm.delete_vm(who, sub, rg, vm).await {
                    Ok(true) => StatusCode::OK.into_response(),
                    Ok(false) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => arm_error(e),
                },
                _ => arm_error(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "Method not allowed on virtual machines.",
                )),
            }
        }
        [_, "onboardingtoken"] if method == Method::POST => arm
            .onboarding_token(who, sub, rg, r.tail[0])
            .await
            .map_or_else(arm_error, |v| Json(v).into_response()),
        [_, "instanceview"] if method == Method::GET => arm
            .get_vm_instance_view(who, sub, rg, r.tail[0])
            .await
            .map_or_else(arm_error, |v| Json(v).into_response()),
        [_, "extensions"] if method == Method::GET => arm
            .list_extensions(who, sub, rg, r.tail[0], r.expand_iv)
            .await
            .map_or_else(arm_error, list),
        [_, "extensions", _] => {
            let (vm, name) = (r.tail[0], r.tail[2]);
            match method {
                Method::PUT | Method::PATCH => match parse_body(r.body) {
                    Ok(body) => match arm.put_extension(who, sub, rg, vm, name, &body).await {
                        Ok(c) => extension_change(c, r.base),
                        Err(e) => arm_error(e),
                    },
                    Err(e) => arm_error(e),
                },
                Method::GET => arm
                    .get_extension(who, sub, rg, vm, name, r.expand_iv)
                    .await
                    .map_or_else(arm_error, |v| Json(v).into_response()),
                Method::DELETE => match arm.delete_extension(who, sub, rg, vm, name).await {
                    Ok(c) => extension_change(c, r.base),
                    Err(e) => arm_error(e),
                },
                _ => arm_error(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "Method not allowed on extensions.",
                )),
            }
        }
        _ => arm_error(ArmError::new(
            404,
            "ResourceNotFound",
            "The resource was not found or is not supported.",
        )),
    }
}

/// `{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]`.
#[allow(clippy::too_many_arguments, reason = "one request's parts")]
async fn authorization(
    state: &AppState,
    who: &str,
    method: Method,
    scope: &str,
    kind: &str,
    name: Option<&str>,
    q: &HashMap<String, String>,
    bytes: &Bytes,
    path: &str,
) -> Response {
    let arm = &state.arm;
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if eq(kind, "roleAssignments") {
        return match (method, name) {
            (Method::GET, None) => match AssignmentFilter::parse(q.get("$filter").map(String::as_str)) {
                Ok(f) => arm
                    .list_assignments(who, scope, &f)
                    .await
                    .map_or_else(arm_error, list),
                Err(e) => arm_error(e),
            },
            (Method::PUT, Some(n)) => match parse_body(bytes) {
                Ok(body) => match arm.put_assignment(who, scope, n, &body).await {
                    Ok((created, v)) => created_or_ok(created, v),
                    Err(e) => arm_error(e),
                },
                Err(e) => arm_error(e),
            },
            (Method::GET, Some(n)) => {
                match arm.list_assignments(who, scope, &AssignmentFilter::AtScope).await {
                    Ok(items) => items
                        .into_iter()
                        .find(|a| a["name"].as_str().is_some_and(|x| eq(x, n)))
                        .map_or_else(
                            || {
                                arm_error(ArmError::new(
                                    404,
                                    "RoleAssignmentNotFound",
                                    format!("The role assignment '{n}' is not found."),
                                ))
                            },
                            |a| Json(a).into_response(),
                        ),
                    Err(e) => arm_error(e),
                }
            }
            (Method::DELETE, Some(n)) => match arm.delete_assignment(who, scope, n).await {
                Ok(Some(v)) => Json(v).into_response(),
                Ok(None) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => arm_error(e),
            },
            _ => arm_error(ArmError::new(
                405,
                "MethodNotAllowed",
                "Method not allowed on role assignments.",
            )),
        };
    }
    if eq(kind, "roleDefinitions") {
        let role_name = q.get("$filter").and_then(|f| {
            f.trim()
                .strip_prefix("roleName eq ")
                .map(|v| v.trim().trim_matches('\'').to_owned())
        });
        return match (method, name) {
            (Method::GET, None) => arm
                .list_role_definitions(who, scope, role_name.as_deref())
                .await
                .map_or_else(arm_error, list),
            (Method::GET, Some(id)) => arm
                .get_role_definition(who, scope, id)
                .await
                .map_or_else(arm_error, |v| Json(v).into_response()),
            (Method::PUT, Some(id)) => match parse_body(bytes) {
                Ok(body) => match arm.put_role_definition(who, scope, id, &body).await {
                    Ok((created, v)) => created_or_ok(created, v),
                    Err(e) => arm_error(e),
                },
                Err(e) => arm_error(e),
            },
            (Method::DELETE, Some(id)) => match arm.delete_role_definition(who, scope, id).await {
                Ok(Some(v)) => Json(v).into_response(),
                Ok(None) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => arm_error(e),
            },
            _ => arm_error(ArmError::new(
                405,
                "MethodNotAllowed",
                "Method not allowed on role definitions.",
            )),
        };
    }
    not_found(path)
}

/// `/providers/Microsoft.Management/managementGroups[/{id}[/subscriptions/{sub}]]`, and role
/// assignments and definitions at a management group.
pub async fn dispatch_providers(
    State(state): State<AppState>,
    caller: Caller,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    bytes: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let arm = &state.arm;
    let who = caller.oid.as_str();
    let expand_children = q
        .get("$expand")
        .is_some_and(|e| e.to_ascii_lowercase().contains("children"));
    match lower.as_slice() {
        ["providers", "microsoft.management", "managementgroups"] => match method {
            Method::GET => arm.list_management_groups(who).await.map_or_else(arm_error, list),
            _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use GET.")),
        },
        ["providers", "microsoft.management", "managementgroups", _] => {
            let name = segs[3];
            match method {
                Method::PUT | Method::PATCH => match parse_body(&bytes) {
                    Ok(body) => match arm.put_management_group(who, name, &body).await {
                        Ok((created, v)) => created_or_ok(created, v),
                        Err(e) => arm_error(e),
                    },
                    Err(e) => arm_error(e),
                },
                Method::GET => arm
                    .get_management_group(who, name, expand_children)
                    .await
                    .map_or_else(arm_error, |v| Json(v).into_response()),
                Method::DELETE => match arm.delete_management_group(who, name).await {
                    Ok(true) => StatusCode::OK.into_response(),
                    Ok(false) => StatusCode::NO_CONTENT.into_response(),
                    Err(e) => arm_error(e),
                },
                _ => arm_error(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "Method not allowed on management groups.",
                )),
            }
        }
        [
            "providers",
            "microsoft.management",
            "managementgroups",
            _,
            "subscriptions",
            _,
        ] => {
            let (name, sub) = (segs[3], segs[5]);
            match method {
                Method::PUT => arm
                    .move_subscription(who, Some(name), sub)
                    .await
                    .map_or_else(arm_error, |v| Json(v).into_response()),
                Method::DELETE => arm
                    .move_subscription(who, None, sub)
                    .await
                    .map_or_else(arm_error, |_| StatusCode::OK.into_response()),
                _ => arm_error(ArmError::new(405, "MethodNotAllowed", "Use PUT or DELETE.")),
            }
        }
        [
            "providers",
            "microsoft.management",
            "managementgroups",
            _,
            "providers",
            "microsoft.authorization",
            kind,
            rest @ ..,
        ] if rest.len() <= 1 => {
            let scope = format!("/providers/Microsoft.Management/managementGroups/{}", segs[3]);
            let kind = match *kind {
                "roleassignments" => "roleAssignments",
                "roledefinitions" => "roleDefinitions",
                _ => return not_found(&path),
            };
            authorization(
                &state,
                who,
                method,
                &scope,
                kind,
                segs.get(7).copied(),
                &q,
                &bytes,
                &path,
            )
            .await
        }
        _ => not_found(&path),
    }
}

/// `GET /v1.0/devices`: the devices of joined machines (Global Administrators).
pub async fn list_devices(State(state): State<AppState>, caller: Caller) -> Response {
    if let Err(e) = caller
        .require_role(
            &state,
            &[usher_core::well_known::GLOBAL_ADMIN_ROLE],
            "listing devices",
        )
        .await
    {
        return e.into_response();
    }
    state.arm.list_devices().await.map_or_else(arm_error, list)
}

/// `DELETE /v1.0/devices/{id}`: deletes a stale device, freeing its name.
pub async fn delete_device(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Err(e) = caller
        .require_role(
            &state,
            &[usher_core::well_known::GLOBAL_ADMIN_ROLE],
            "deleting devices",
        )
        .await
    {
        return e.into_response();
    }
    match state.arm.delete_device(&caller.oid, &id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => arm_error(ArmError::new(
            404,
            "Request_ResourceNotFound",
            format!("Device '{id}' does not exist."),
        )),
        Err(e) => arm_error(e),
    }
}
