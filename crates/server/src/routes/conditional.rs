//! Conditional Access over Graph's paths (SPEC C1, C3, C4): policies, named locations, the
//! built-in authentication strengths, what-if, and risky users. Thin: the directory validates
//! and stores, the token service evaluates.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use usher_core::well_known::{CONDITIONAL_ACCESS_ADMIN_ROLE, GLOBAL_ADMIN_ROLE, SECURITY_ADMIN_ROLE};
use usher_proto::ca::{CaPolicy, NamedLocation, RiskyUserIds, WhatIfRequest};

use super::Caller;
use super::graph::{audit, body, ctx};
use crate::AppState;
use crate::error::{ApiError, odata_list};

/// Who may read and change Conditional Access.
const CA_ADMINS: &[&str] = &[
    GLOBAL_ADMIN_ROLE,
    CONDITIONAL_ACCESS_ADMIN_ROLE,
    SECURITY_ADMIN_ROLE,
];
/// Who may read and change user risk.
const RISK_ADMINS: &[&str] = &[GLOBAL_ADMIN_ROLE, SECURITY_ADMIN_ROLE];

fn policy_json(p: &CaPolicy) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(p).map_err(|_| ApiError::Internal)?;
    v["@odata.type"] = json!("#microsoft.graph.conditionalAccessPolicy");
    Ok(v)
}

fn location_json(l: &NamedLocation) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(l).map_err(|_| ApiError::Internal)?;
    v["@odata.type"] = json!("#microsoft.graph.ipNamedLocation");
    if let Some(ranges) = v["ipRanges"].as_array_mut() {
        for r in ranges {
            let six = r["cidrAddress"].as_str().is_some_and(|c| c.contains(':'));
            r["@odata.type"] = json!(if six {
                "#microsoft.graph.iPv6CidrRange"
            } else {
                "#microsoft.graph.iPv4CidrRange"
            });
        }
    }
    Ok(v)
}

/// `GET /v1.0/identity/conditionalAccess/policies`.
pub async fn list_policies(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "reading Conditional Access policies")
        .await?;
    let items = state
        .dir()
        .list_ca_policies()
        .await?
        .iter()
        .map(policy_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(odata_list(
        &ctx(&state, "identity/conditionalAccess/policies"),
        items,
    ))
}

/// `POST /v1.0/identity/conditionalAccess/policies`.
pub async fn create_policy(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "creating Conditional Access policies")
        .await?;
    let p: CaPolicy = body(&bytes)?;
    let p = state.dir().create_ca_policy(p).await?;
    let id = p.id.clone().unwrap_or_default();
    let v = policy_json(&p)?;
    audit(
        &state,
        &caller,
        "Add conditional access policy",
        "Policy",
        (&id, &p.display_name, "Policy"),
        json!({"newValue": v}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `GET /v1.0/identity/conditionalAccess/policies/{id}`.
pub async fn get_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "reading Conditional Access policies")
        .await?;
    Ok(Json(policy_json(&state.dir().get_ca_policy(&id).await?)?))
}

/// `PATCH /v1.0/identity/conditionalAccess/policies/{id}`: 204 like Graph.
pub async fn update_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "changing Conditional Access policies")
        .await?;
    let patch: Value = body(&bytes)?;
    let before = state.dir().get_ca_policy(&id).await?;
    let p = state.dir().update_ca_policy(&id, &patch).await?;
    audit(
        &state,
        &caller,
        "Update conditional access policy",
        "Policy",
        (&id, &p.display_name, "Policy"),
        json!({"oldValue": policy_json(&before)?, "newValue": policy_json(&p)?}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1.0/identity/conditionalAccess/policies/{id}`.
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "deleting Conditional Access policies")
        .await?;
    let p = state.dir().delete_ca_policy(&id).await?;
    audit(
        &state,
        &caller,
        "Delete conditional access policy",
        "Policy",
        (&id, &p.display_name, "Policy"),
        json!({"oldValue": policy_json(&p)?}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/identity/conditionalAccess/namedLocations`.
pub async fn list_locations(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "reading named locations")
        .await?;
    let items = state
        .dir()
        .list_named_locations()
        .await?
        .iter()
        .map(location_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(odata_list(
        &ctx(&state, "identity/conditionalAccess/namedLocations"),
        items,
    ))
}

/// `POST /v1.0/identity/conditionalAccess/namedLocations` (`ipNamedLocation` only).
pub async fn create_location(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "creating named locations")
        .await?;
    let raw: Value = body(&bytes)?;
    if let Some(t) = raw["@odata.type"].as_str()
        && t != "#microsoft.graph.ipNamedLocation"
    {
        return Err(ApiError::BadRequest(format!(
            "'{t}' is not supported: usher's named locations are IP ranges (#microsoft.graph.ipNamedLocation)."
        )));
    }
    let loc: NamedLocation = body(&bytes)?;
    let loc = state.dir().create_named_location(loc).await?;
    let id = loc.id.clone().unwrap_or_default();
    audit(
        &state,
        &caller,
        "Add named location",
        "Policy",
        (&id, &loc.display_name, "NamedLocation"),
        json!({}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(location_json(&loc)?)).into_response())
}

/// `GET /v1.0/identity/conditionalAccess/namedLocations/{id}`.
pub async fn get_location(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "reading named locations")
        .await?;
    Ok(Json(location_json(&state.dir().get_named_location(&id).await?)?))
}

/// `DELETE /v1.0/identity/conditionalAccess/namedLocations/{id}` (refused while a policy uses it).
pub async fn delete_location(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "deleting named locations")
        .await?;
    let loc = state.dir().delete_named_location(&id).await?;
    audit(
        &state,
        &caller,
        "Delete named location",
        "Policy",
        (&id, &loc.display_name, "NamedLocation"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/identity/conditionalAccess/authenticationStrength/policies`: the built-ins.
pub async fn strengths(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "reading authentication strengths")
        .await?;
    let items = usher_directory::conditional_access::builtin_strengths()
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(odata_list(
        &ctx(
            &state,
            "identity/conditionalAccess/authenticationStrength/policies",
        ),
        items,
    ))
}

/// `POST /v1.0/identity/conditionalAccess/evaluate`: what-if (SPEC C3).
pub async fn what_if(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, CA_ADMINS, "evaluating Conditional Access (what-if)")
        .await?;
    let q: WhatIfRequest = body(&bytes)?;
    let answer = state.idp.what_if(&q).await?;
    Ok(Json(
        serde_json::to_value(answer).map_err(|_| ApiError::Internal)?,
    ))
}

/// `GET /v1.0/identityProtection/riskyUsers`.
pub async fn risky_users(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, RISK_ADMINS, "reading risky users")
        .await?;
    let items = state
        .dir()
        .risky_users()
        .await?
        .into_iter()
        .map(|u| serde_json::to_value(u).map_err(|_| ApiError::Internal))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(odata_list(&ctx(&state, "riskyUsers"), items))
}

async fn mark_users(
    state: &AppState,
    caller: &Caller,
    bytes: &Bytes,
    compromised: bool,
) -> Result<StatusCode, ApiError> {
    let what = if compromised {
        "confirming users compromised"
    } else {
        "dismissing user risk"
    };
    caller.require_role(state, RISK_ADMINS, what).await?;
    let ids: RiskyUserIds = body(bytes)?;
    if ids.user_ids.is_empty() || ids.user_ids.len() > 60 {
        return Err(ApiError::BadRequest(
            "Property 'userIds' needs 1 to 60 user ids.".into(),
        ));
    }
    // Check every id first, so a typo changes nothing.
    let mut users = Vec::new();
    for id in &ids.user_ids {
        users.push(state.dir().get_user(id).await?);
    }
    for u in users {
        if compromised {
            state.dir().confirm_compromised(&u.id, &caller.name()).await?;
        } else {
            state.dir().dismiss_risk(&u.id, &caller.name()).await?;
        }
        audit(
            state,
            caller,
            if compromised {
                "Confirm user compromised"
            } else {
                "Dismiss user risk"
            },
            "IdentityProtection",
            (&u.id, &u.user_principal_name, "User"),
            json!({}),
        )
        .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1.0/identityProtection/riskyUsers/confirmCompromised`.
pub async fn confirm_compromised(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    mark_users(&state, &caller, &bytes, true).await
}

/// `POST /v1.0/identityProtection/riskyUsers/dismiss`.
pub async fn dismiss(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    mark_users(&state, &caller, &bytes, false).await
}
