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

fn arm_error(e: ArmError) -> Response {
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
        if eq(kind, "roleAssignments") {
            return match (method, name) {
                (Method::GET, None) => match AssignmentFilter::parse(q.get("$filter").map(String::as_str)) {
                    Ok(f) => arm
                        .list_assignments(who, &scope, &f)
                        .await
                        .map_or_else(arm_error, list),
                    Err(e) => arm_error(e),
                },
                (Method::PUT, Some(n)) => match parse_body(&bytes) {
                    Ok(body) => match arm.put_assignment(who, &scope, n, &body).await {
                        Ok((created, v)) => (
                            if created {
                                StatusCode::CREATED
                            } else {
                                StatusCode::OK
                            },
                            Json(v),
                        )
                            .into_response(),
                        Err(e) => arm_error(e),
                    },
                    Err(e) => arm_error(e),
                },
                (Method::GET, Some(n)) => match arm
                    .list_assignments(who, &scope, &AssignmentFilter::AtScope)
                    .await
                {
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
                },
                (Method::DELETE, Some(n)) => match arm.delete_assignment(who, &scope, n).await {
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
                    .list_role_definitions(&scope, role_name.as_deref())
                    .map_or_else(arm_error, list),
                (Method::GET, Some(id)) => arm
                    .get_role_definition(&scope, id)
                    .map_or_else(arm_error, |v| Json(v).into_response()),
                _ => arm_error(ArmError::new(
                    405,
                    "MethodNotAllowed",
                    "Custom roles come later; role definitions are read-only.",
                )),
            };
        }
        return not_found(&path);
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
                    Ok((created, v)) => (
                        if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        },
                        Json(v),
                    )
                        .into_response(),
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

/// ARM paths are case-insensitive: the `subscriptions` and `tenants` keywords are normalised
/// before routing (names keep their case; the dispatcher compares keywords case-insensitively).
pub fn normalize_path(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let first = path.split('/').nth(1)?;
    let lower = first.to_ascii_lowercase();
    if (lower == "subscriptions" || lower == "tenants") && first != lower {
        let new_path = format!("/{lower}{}", &path[1 + first.len()..]);
        let pq = match uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        pq.parse().ok()
    } else {
        None
    }
}
