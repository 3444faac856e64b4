//! The Graph-shaped directory API (SPEC D2–D4, D7). Reads need a signed-in caller of the tenant;
//! writes need a directory administrator, and each write is audited.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use usher_core::MfaState;
use usher_core::well_known::{CLOUD_APP_ADMIN_ROLE, GLOBAL_ADMIN_ROLE, USER_ADMIN_ROLE};
use usher_directory::model::DirectoryObject;
use usher_directory::{AuditEvent, NewApplication, NewUser, UserPatch};

use super::{Caller, UserCaller};
use crate::AppState;
use crate::error::{ApiError, odata_list};
use crate::graph_shapes as shape;

const USER_ADMINS: &[&str] = &[GLOBAL_ADMIN_ROLE, USER_ADMIN_ROLE];
const APP_ADMINS: &[&str] = &[GLOBAL_ADMIN_ROLE, CLOUD_APP_ADMIN_ROLE];

type Q = Query<HashMap<String, String>>;

pub(super) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("The request body is not valid: {e}.")))
}

pub(super) fn ctx(state: &AppState, what: &str) -> String {
    format!("{}/v1.0/$metadata#{what}", state.idp.public_url())
}

/// A parsed `$filter`: `prop eq 'value'` or `startswith(prop,'value')`.
#[derive(Debug, PartialEq)]
enum Filter {
    Eq(String, Value),
    StartsWith(String, String),
}

fn parse_filter(q: &HashMap<String, String>) -> Result<Option<Filter>, ApiError> {
    let Some(raw) = q.get("$filter") else {
        return Ok(None);
    };
    let f = raw.trim();
    let unquote = |v: &str| -> Result<String, ApiError> {
        let v = v.trim();
        v.strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .map(|v| v.replace("''", "'"))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Invalid filter clause: `{raw}`; values must be in single quotes, or true/false."
                ))
            })
    };
    let literal = |v: &str| -> Result<Value, ApiError> {
        match v.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            other => unquote(other).map(Value::String),
        }
    };
    if let Some(inner) = f.strip_prefix("startswith(").and_then(|r| r.strip_suffix(')')) {
        let (prop, value) = inner
            .split_once(',')
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid filter clause: `{raw}`.")))?;
        return Ok(Some(Filter::StartsWith(prop.trim().to_owned(), unquote(value)?)));
    }
    if let Some((prop, value)) = f.split_once(" eq ") {
        return Ok(Some(Filter::Eq(prop.trim().to_owned(), literal(value)?)));
    }
    Err(ApiError::BadRequest(format!(
        "Unsupported filter `{raw}`: use `property eq 'value'` or `startswith(property,'value')`."
    )))
}

fn filter_matches(f: &Option<Filter>, obj: &Value, allowed: &[&str]) -> Result<bool, ApiError> {
    let Some(f) = f else { return Ok(true) };
    let (prop, wanted, starts) = match f {
        Filter::Eq(p, v) => (p, v.clone(), false),
        Filter::StartsWith(p, v) => (p, Value::String(v.clone()), true),
    };
    if !allowed.contains(&prop.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "Filtering on `{prop}` is not supported; use one of {}.",
            allowed.join(", ")
        )));
    }
    let actual = obj.get(prop.as_str()).cloned().unwrap_or(Value::Null);
    Ok(match (&actual, &wanted) {
        (Value::String(a), Value::String(w)) if starts => a.to_lowercase().starts_with(&w.to_lowercase()),
        (Value::String(a), Value::String(w)) => a.eq_ignore_ascii_case(w),
        (a, w) => a == w,
    })
}

fn top(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("$top") {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=999).contains(n))
            .ok_or_else(|| ApiError::BadRequest("$top must be 1-999.".into())),
        None => Ok(999),
    }
}

fn filtered(
    items: Vec<Value>,
    q: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let f = parse_filter(q)?;
    let search = q.get("$search").map(|s| s.trim_matches('"').to_owned());
    let limit = top(q)?;
    let mut out = Vec::new();
    for item in items {
        if !filter_matches(&f, &item, allowed)? {
            continue;
        }
        if let Some(s) = &search {
            let (prop, term) = s
                .split_once(':')
                .ok_or_else(|| ApiError::BadRequest("$search must be \"property:term\".".into()))?;
            let v = item
                .get(prop)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_lowercase();
            if !v.contains(&term.to_lowercase()) {
                continue;
            }
        }
        out.push(item);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

pub(super) async fn audit(
    state: &AppState,
    caller: &Caller,
    activity: &str,
    category: &str,
    target: (&str, &str, &str),
    details: Value,
) -> Result<(), ApiError> {
    state
        .dir()
        .audit(AuditEvent {
            activity: activity.into(),
            category: category.into(),
            actor_id: caller.oid.clone(),
            actor_name: caller.name(),
            target_id: target.0.into(),
            target_name: target.1.into(),
            target_type: target.2.into(),
            details,
        })
        .await?;
    Ok(())
}

fn tenant_json(t: &usher_directory::model::Tenant) -> Value {
    json!({
        "id": t.id,
        "displayName": t.display_name,
        "domains": t.domains,
        "defaultSubscriptionId": t.default_subscription_id,
        "allowPublicClientFlows": t.allow_public_client_flows,
        "passwordPolicy": t.password_policy,
        "sessionIdleTimeoutSeconds": t.session_idle_timeout_secs.unwrap_or(0),
    })
}

/// `GET /usher/tenant`: the tenant's settings.
pub async fn get_tenant(State(state): State<AppState>, _c: UserCaller) -> Result<Json<Value>, ApiError> {
    Ok(Json(tenant_json(&state.dir().tenant().await?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TenantPatch {
    password_policy: Option<usher_core::PasswordPolicy>,
    allow_public_client_flows: Option<bool>,
    session_idle_timeout_seconds: Option<u64>,
}

/// `PATCH /usher/tenant`: `{"passwordPolicy": {...}, "allowPublicClientFlows": bool,
/// "sessionIdleTimeoutSeconds": N}` (0: off).
pub async fn update_tenant(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, &[GLOBAL_ADMIN_ROLE], "changing tenant settings")
        .await?;
    let patch: TenantPatch = body(&bytes)?;
    let t = state
        .dir()
        .update_tenant_settings(
            patch.password_policy,
            patch.allow_public_client_flows,
            patch.session_idle_timeout_seconds,
        )
        .await?;
    let details = tenant_json(&t);
    audit(
        &state,
        &caller,
        "Update tenant settings",
        "Core Directory",
        (&t.id, &t.display_name, "Tenant"),
        details.clone(),
    )
    .await?;
    Ok(Json(details))
}

/// A Global Administrator may only be changed by a Global Administrator: a User Administrator
/// must not be able to take over a more privileged account.
pub(super) async fn protect_privileged_user(
    state: &AppState,
    caller: &Caller,
    user_id: &str,
) -> Result<(), ApiError> {
    if state
        .dir()
        .has_directory_role(user_id, &[GLOBAL_ADMIN_ROLE])
        .await?
        && !state
            .dir()
            .has_directory_role(&caller.oid, &[GLOBAL_ADMIN_ROLE])
            .await?
    {
        return Err(ApiError::Forbidden(
            "Insufficient privileges to complete the operation: only a Global Administrator may change a Global Administrator.".into(),
        ));
    }
    Ok(())
}

/// Membership of a group that holds directory roles grants those roles: only a Global
/// Administrator changes it.
async fn protect_role_group(state: &AppState, caller: &Caller, group_id: &str) -> Result<(), ApiError> {
    let g = state.dir().get_group(group_id).await?;
    if !g.directory_roles.is_empty()
        && !state
            .dir()
            .has_directory_role(&caller.oid, &[GLOBAL_ADMIN_ROLE])
            .await?
    {
        return Err(ApiError::Forbidden(
            "Insufficient privileges to complete the operation: this group holds directory roles; only a Global Administrator may change its members.".into(),
        ));
    }
    Ok(())
}

/// `GET /v1.0/me`.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    if caller.is_app {
        return Err(ApiError::BadRequest(
            "/me is only valid with delegated authentication flows.".into(),
        ));
    }
    Ok(Json(shape::user(&state.dir().get_user(&caller.oid).await?)))
}

/// `GET /v1.0/users`.
pub async fn list_users(
    State(state): State<AppState>,
    _c: UserCaller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    // An exact UPN filter is answered from the index, without listing everyone.
    if let Some(Filter::Eq(prop, Value::String(upn))) = parse_filter(&q)?
        && prop == "userPrincipalName"
    {
        let found = state.dir().find_user_by_upn(&upn).await?;
        return Ok(odata_list(
            &ctx(&state, "users"),
            found.iter().map(shape::user).collect(),
        ));
    }
    let users: Vec<Value> = state.dir().list_users().await?.iter().map(shape::user).collect();
    Ok(odata_list(
        &ctx(&state, "users"),
        filtered(
            users,
            &q,
            &["userPrincipalName", "displayName", "mailNickname", "id"],
        )?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordProfile {
    password: Option<String>,
    #[serde(default)]
    force_change_password_next_sign_in: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateUserBody {
    account_enabled: Option<bool>,
    display_name: Option<String>,
    user_principal_name: Option<String>,
    mail_nickname: Option<String>,
    password_profile: Option<PasswordProfile>,
}

/// `POST /v1.0/users`.
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller.require_role(&state, USER_ADMINS, "creating users").await?;
    let b: CreateUserBody = body(&bytes)?;
    let missing = |f: &str| ApiError::BadRequest(format!("Property '{f}' is required."));
    let profile = b.password_profile.ok_or_else(|| missing("passwordProfile"))?;
    let user = state
        .dir()
        .create_user(NewUser {
            user_principal_name: b
                .user_principal_name
                .ok_or_else(|| missing("userPrincipalName"))?,
            display_name: b.display_name.ok_or_else(|| missing("displayName"))?,
            mail_nickname: b.mail_nickname,
            password: profile
                .password
                .ok_or_else(|| missing("passwordProfile.password"))?,
            force_change_password_next_sign_in: profile.force_change_password_next_sign_in.unwrap_or(true),
            account_enabled: b.account_enabled.unwrap_or(true),
        })
        .await?;
    audit(
        &state,
        &caller,
        "Add user",
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        json!({}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(shape::user(&user))).into_response())
}

/// `GET /v1.0/users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shape::user(&state.dir().get_user(&id).await?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateUserBody {
    account_enabled: Option<bool>,
    display_name: Option<String>,
    password_profile: Option<PasswordProfile>,
}

/// `PATCH /v1.0/users/{id}`.
pub async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    caller.require_role(&state, USER_ADMINS, "updating users").await?;
    let target = state.dir().get_user(&id).await?;
    protect_privileged_user(&state, &caller, &target.id).await?;
    let b: UpdateUserBody = body(&bytes)?;
    let (password, force) = match b.password_profile {
        Some(p) => (p.password, p.force_change_password_next_sign_in),
        None => (None, None),
    };
    let patch = UserPatch {
        display_name: b.display_name,
        account_enabled: b.account_enabled,
        password: password.clone(),
        force_change_password_next_sign_in: force,
        mfa_state: None,
    };
    let user = state.dir().update_user(&id, patch).await?;
    let details = json!({
        "accountEnabled": b.account_enabled,
        "passwordReset": password.is_some(),
        "forceChangePasswordNextSignIn": force,
    });
    audit(
        &state,
        &caller,
        "Update user",
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        details,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1.0/users/{id}`.
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_role(&state, USER_ADMINS, "deleting users").await?;
    let user = state.dir().get_user(&id).await?;
    if user.id == caller.oid {
        return Err(ApiError::BadRequest("You cannot delete your own account.".into()));
    }
    protect_privileged_user(&state, &caller, &user.id).await?;
    state.dir().delete_user(&user.id).await?;
    audit(
        &state,
        &caller,
        "Delete user",
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /usher/users/{id}/unlock`.
pub async fn unlock_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "unlocking users")
        .await?;
    let user = state.dir().unlock_user(&id).await?;
    audit(
        &state,
        &caller,
        "Unlock user",
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /beta/users/{id}/authentication/requirements`.
pub async fn get_mfa(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "reading per-user MFA")
        .await?;
    let user = state.dir().get_user(&id).await?;
    Ok(Json(json!({"perUserMfaState": user.mfa_state})))
}

/// `PATCH /beta/users/{id}/authentication/requirements`.
pub async fn set_mfa(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "changing per-user MFA")
        .await?;
    let target = state.dir().get_user(&id).await?;
    protect_privileged_user(&state, &caller, &target.id).await?;
    let b: Value = body(&bytes)?;
    let mfa: MfaState = b
        .get("perUserMfaState")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("Property 'perUserMfaState' is required.".into()))?
        .parse()
        .map_err(ApiError::BadRequest)?;
    let user = state
        .dir()
        .update_user(
            &id,
            UserPatch {
                mfa_state: Some(mfa),
                ..Default::default()
            },
        )
        .await?;
    audit(
        &state,
        &caller,
        "Update per-user multifactor authentication state",
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        json!({"perUserMfaState": mfa}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/users/{id}/memberOf`.
pub async fn user_member_of(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.dir().get_user(&id).await?;
    let groups = state.dir().member_of(&user.id).await?;
    Ok(odata_list(
        &ctx(&state, "directoryObjects"),
        groups.iter().map(shape::group).collect(),
    ))
}

/// `GET /v1.0/users/{id}/transitiveMemberOf`.
pub async fn user_transitive_member_of(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let user = state.dir().get_user(&id).await?;
    let groups = state.dir().transitive_member_of(&user.id).await?;
    Ok(odata_list(
        &ctx(&state, "directoryObjects"),
        groups.iter().map(shape::group).collect(),
    ))
}

/// `GET /v1.0/groups`.
pub async fn list_groups(
    State(state): State<AppState>,
    _c: UserCaller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    let groups: Vec<Value> = state
        .dir()
        .list_groups()
        .await?
        .iter()
        .map(shape::group)
        .collect();
    Ok(odata_list(
        &ctx(&state, "groups"),
        filtered(groups, &q, &["displayName", "mailNickname", "id"])?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateGroupBody {
    display_name: Option<String>,
    mail_nickname: Option<String>,
    description: Option<String>,
    security_enabled: Option<bool>,
}

/// `POST /v1.0/groups`.
pub async fn create_group(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "creating groups")
        .await?;
    let b: CreateGroupBody = body(&bytes)?;
    let name = b
        .display_name
        .ok_or_else(|| ApiError::BadRequest("Property 'displayName' is required.".into()))?;
    let g = state
        .dir()
        .create_group(
            &name,
            b.mail_nickname.as_deref(),
            b.description.as_deref(),
            b.security_enabled.unwrap_or(true),
        )
        .await?;
    audit(
        &state,
        &caller,
        "Add group",
        "GroupManagement",
        (&g.id, &g.display_name, "Group"),
        json!({}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(shape::group(&g))).into_response())
}

/// `GET /v1.0/groups/{id}`.
pub async fn get_group(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shape::group(&state.dir().get_group(&id).await?)))
}

/// `DELETE /v1.0/groups/{id}`.
pub async fn delete_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "deleting groups")
        .await?;
    protect_role_group(&state, &caller, &id).await?;
    let g = state.dir().delete_group(&id).await?;
    audit(
        &state,
        &caller,
        "Delete group",
        "GroupManagement",
        (&g.id, &g.display_name, "Group"),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/groups/{id}/members`.
pub async fn group_members(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = state.dir().members(&id).await?;
    Ok(odata_list(
        &ctx(&state, "directoryObjects"),
        m.iter().map(shape::object).collect(),
    ))
}

/// `GET /v1.0/groups/{id}/transitiveMembers`.
pub async fn group_transitive_members(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = state.dir().transitive_members(&id).await?;
    Ok(odata_list(
        &ctx(&state, "directoryObjects"),
        m.iter().map(shape::object).collect(),
    ))
}

/// `POST /v1.0/groups/{id}/members/$ref`.
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "changing group membership")
        .await?;
    protect_role_group(&state, &caller, &id).await?;
    let b: Value = body(&bytes)?;
    let reference = b
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("Property '@odata.id' is required.".into()))?;
    let member = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let g = state.dir().add_member(&id, &member).await?;
    audit(
        &state,
        &caller,
        "Add member to group",
        "GroupManagement",
        (&g.id, &g.display_name, "Group"),
        json!({"memberId": member}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1.0/groups/{id}/members/{member}/$ref`.
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, USER_ADMINS, "changing group membership")
        .await?;
    protect_role_group(&state, &caller, &id).await?;
    let g = state.dir().remove_member(&id, &member).await?;
    audit(
        &state,
        &caller,
        "Remove member from group",
        "GroupManagement",
        (&g.id, &g.display_name, "Group"),
        json!({"memberId": member}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/applications`.
pub async fn list_apps(
    State(state): State<AppState>,
    _c: UserCaller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    let apps: Vec<Value> = state
        .dir()
        .list_applications()
        .await?
        .iter()
        .map(shape::application)
        .collect();
    Ok(odata_list(
        &ctx(&state, "applications"),
        filtered(apps, &q, &["displayName", "appId", "id"])?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RedirectUris {
    #[serde(default)]
    redirect_uris: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAppBody {
    display_name: Option<String>,
    #[serde(default)]
    identifier_uris: Vec<String>,
    #[serde(default)]
    web: Option<RedirectUris>,
    #[serde(default)]
    public_client: Option<RedirectUris>,
    #[serde(default)]
    is_fallback_public_client: Option<bool>,
}

/// `POST /v1.0/applications`.
pub async fn create_app(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "registering applications")
        .await?;
    let b: CreateAppBody = body(&bytes)?;
    let app = state
        .dir()
        .create_application(NewApplication {
            display_name: b
                .display_name
                .ok_or_else(|| ApiError::BadRequest("Property 'displayName' is required.".into()))?,
            identifier_uris: b.identifier_uris,
            web_redirect_uris: b.web.unwrap_or_default().redirect_uris,
            public_client_redirect_uris: b.public_client.unwrap_or_default().redirect_uris,
            is_fallback_public_client: b.is_fallback_public_client.unwrap_or(false),
        })
        .await?;
    audit(
        &state,
        &caller,
        "Add application",
        "ApplicationManagement",
        (&app.id, &app.display_name, "Application"),
        json!({"appId": app.app_id}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(shape::application(&app))).into_response())
}

/// `GET /v1.0/applications/{id}`.
pub async fn get_app(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shape::application(&state.dir().get_application(&id).await?)))
}

/// `DELETE /v1.0/applications/{id}`.
pub async fn delete_app(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "deleting applications")
        .await?;
    let app = state.dir().delete_application(&id).await?;
    audit(
        &state,
        &caller,
        "Delete application",
        "ApplicationManagement",
        (&app.id, &app.display_name, "Application"),
        json!({"appId": app.app_id}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1.0/applications/{id}/addPassword`.
pub async fn add_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "adding application secrets")
        .await?;
    let b: Value = if bytes.is_empty() {
        json!({})
    } else {
        body(&bytes)?
    };
    let name = b
        .pointer("/passwordCredential/displayName")
        .and_then(Value::as_str)
        .unwrap_or("secret")
        .to_owned();
    let (cred, secret) = state.dir().add_password(&id, &name, 365).await?;
    let app = state.dir().get_application(&id).await?;
    audit(
        &state,
        &caller,
        "Update application – Certificates and secrets management",
        "ApplicationManagement",
        (&app.id, &app.display_name, "Application"),
        json!({"keyId": cred.key_id}),
    )
    .await?;
    Ok(Json(json!({
        "keyId": cred.key_id, "displayName": cred.display_name, "hint": cred.hint,
        "secretText": secret, "startDateTime": usher_core::rfc3339(cred.start), "endDateTime": usher_core::rfc3339(cred.end),
    })))
}

/// `POST /v1.0/applications/{id}/addKey`: a public JWK for `private_key_jwt`.
pub async fn add_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "adding application keys")
        .await?;
    let b: Value = body(&bytes)?;
    let key = b
        .pointer("/keyCredential/key")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::BadRequest("Property 'keyCredential.key' (a public JWK as JSON) is required.".into())
        })?;
    let jwk: usher_crypto::jwt::Jwk = serde_json::from_str(key)
        .map_err(|e| ApiError::BadRequest(format!("keyCredential.key is not a JWK: {e}.")))?;
    let name = b
        .pointer("/keyCredential/displayName")
        .and_then(Value::as_str)
        .unwrap_or("key")
        .to_owned();
    let cred = state.dir().add_key(&id, &name, jwk).await?;
    let app = state.dir().get_application(&id).await?;
    audit(
        &state,
        &caller,
        "Update application – Certificates and secrets management",
        "ApplicationManagement",
        (&app.id, &app.display_name, "Application"),
        json!({"keyId": cred.key_id}),
    )
    .await?;
    Ok(Json(
        json!({"keyId": cred.key_id, "displayName": cred.display_name, "type": "Jwk", "customKeyIdentifier": cred.jwk.kid}),
    ))
}

/// `GET /v1.0/servicePrincipals`.
pub async fn list_sps(
    State(state): State<AppState>,
    _c: UserCaller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    let sps: Vec<Value> = state
        .dir()
        .list_service_principals()
        .await?
        .iter()
        .map(shape::service_principal)
        .collect();
    Ok(odata_list(
        &ctx(&state, "servicePrincipals"),
        filtered(sps, &q, &["displayName", "appId", "id", "servicePrincipalType"])?,
    ))
}

/// `POST /v1.0/servicePrincipals`: `{"appId"}`; recreates a missing built-in.
pub async fn create_sp(
    State(state): State<AppState>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "creating service principals")
        .await?;
    let b: Value = body(&bytes)?;
    let app_id = b
        .get("appId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("Property 'appId' is required.".into()))?;
    let sp = state.dir().create_service_principal(app_id).await?;
    audit(
        &state,
        &caller,
        "Add service principal",
        "ApplicationManagement",
        (&sp.id, &sp.display_name, "ServicePrincipal"),
        json!({"appId": sp.app_id}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(shape::service_principal(&sp))).into_response())
}

/// `GET /v1.0/servicePrincipals/{id}`.
pub async fn get_sp(
    State(state): State<AppState>,
    _c: UserCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(shape::service_principal(
        &state.dir().get_service_principal(&id).await?,
    )))
}

/// `DELETE /v1.0/servicePrincipals/{id}`.
pub async fn delete_sp(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller
        .require_role(&state, APP_ADMINS, "deleting service principals")
        .await?;
    let existing = state.dir().get_service_principal(&id).await?;
    if existing.service_principal_type == "ManagedIdentity" {
        return Err(ApiError::BadRequest(format!(
            "'{}' is a managed identity; it goes with its resource: turn the identity off on the VM (PATCH identity.type None) or delete the VM.",
            existing.display_name
        )));
    }
    let sp = state.dir().delete_service_principal(&existing.id).await?;
    audit(
        &state,
        &caller,
        "Remove service principal",
        "ApplicationManagement",
        (&sp.id, &sp.display_name, "ServicePrincipal"),
        json!({"appId": sp.app_id}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1.0/directoryObjects/getByIds`.
pub async fn get_by_ids(
    State(state): State<AppState>,
    _c: UserCaller,
    bytes: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: Value = body(&bytes)?;
    let ids: Vec<String> = b
        .get("ids")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadRequest("Property 'ids' is required.".into()))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if ids.len() > 1000 {
        return Err(ApiError::BadRequest("At most 1000 ids per request.".into()));
    }
    let types: Vec<String> = b
        .get("types")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for id in ids {
        match state.dir().get_object(&id).await {
            Ok(o) => {
                let t = match &o {
                    DirectoryObject::User(_) => "user",
                    DirectoryObject::Group(_) => "group",
                    DirectoryObject::ServicePrincipal(_) => "serviceprincipal",
                };
                if types.is_empty() || types.iter().any(|x| x == t) {
                    out.push(shape::object(&o));
                }
            }
            Err(usher_directory::DirectoryError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(odata_list(&ctx(&state, "directoryObjects"), out))
}

async fn read_log(
    state: &AppState,
    caller: &Caller,
    stream: &str,
    q: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<Vec<Value>, ApiError> {
    caller
        .require_role(state, &[GLOBAL_ADMIN_ROLE, USER_ADMIN_ROLE], "reading logs")
        .await?;
    let entries = state.dir().read_log(stream, 5000).await?;
    filtered(entries, q, allowed)
}

/// `GET /v1.0/auditLogs/signIns`.
pub async fn sign_ins(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    let items = read_log(
        &state,
        &caller,
        "signin",
        &q,
        &["userPrincipalName", "appId", "userId", "ipAddress"],
    )
    .await?;
    Ok(odata_list(&ctx(&state, "auditLogs/signIns"), items))
}

/// `GET /v1.0/auditLogs/directoryAudits`.
pub async fn directory_audits(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Q,
) -> Result<Json<Value>, ApiError> {
    let items = read_log(&state, &caller, "audit", &q, &["activityDisplayName", "category"]).await?;
    Ok(odata_list(&ctx(&state, "auditLogs/directoryAudits"), items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(f: &str) -> HashMap<String, String> {
        HashMap::from([("$filter".to_owned(), f.to_owned())])
    }

    #[test]
    fn filters_parse() {
        assert_eq!(
            parse_filter(&q("userPrincipalName eq 'a@b.c'")).ok().flatten(),
            Some(Filter::Eq("userPrincipalName".into(), json!("a@b.c")))
        );
        assert_eq!(
            parse_filter(&q("startswith(displayName,'An')")).ok().flatten(),
            Some(Filter::StartsWith("displayName".into(), "An".into()))
        );
        assert_eq!(
            parse_filter(&q("displayName eq 'O''Neil'")).ok().flatten(),
            Some(Filter::Eq("displayName".into(), json!("O'Neil")))
        );
        assert!(parse_filter(&q("displayName eq unquoted")).is_err());
        assert_eq!(
            parse_filter(&q("accountEnabled eq false")).ok().flatten(),
            Some(Filter::Eq("accountEnabled".into(), json!(false)))
        );
        let f = parse_filter(&q("accountEnabled eq false")).ok().flatten();
        let allowed = ["accountEnabled"];
        assert!(filter_matches(&f, &json!({"accountEnabled": false}), &allowed).unwrap_or(false));
        assert!(!filter_matches(&f, &json!({"accountEnabled": true}), &allowed).unwrap_or(true));
        assert!(parse_filter(&q("displayName ne 'x'")).is_err());
    }
}
