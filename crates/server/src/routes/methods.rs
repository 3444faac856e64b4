//! Authentication methods over Graph's paths: a user's passkeys
//! (`/users/{id}/authentication/fido2Methods`, and `/me/...` for one's own), listed and removed
//! by the user or an administrator. Registering one happens on the `/passkeys` page (WebAuthn
//! needs the browser).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use usher_core::well_known::{GLOBAL_ADMIN_ROLE, USER_ADMIN_ROLE};
use usher_directory::model::{PasskeyMethod, User};

use super::Caller;
use super::graph::{audit, ctx, protect_privileged_user};
use crate::AppState;
use crate::error::{ApiError, odata_list};

fn method_json(p: &PasskeyMethod) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.fido2AuthenticationMethod",
        "id": p.id,
        "displayName": p.display_name,
        "createdDateTime": usher_core::rfc3339(p.created_at),
        "lastUsedDateTime": p.last_used_at.map(usher_core::rfc3339),
        "aaGuid": Value::Null,
        "model": Value::Null,
        "attestationLevel": "notAttested",
        "signCount": p.sign_count,
        "backupEligible": p.backup_eligible,
        "backedUp": p.backup_state,
    })
}

/// The user, when the caller is that user or an administrator.
async fn target(state: &AppState, caller: &Caller, id: &str) -> Result<User, ApiError> {
    if caller.is_app {
        return Err(ApiError::Forbidden(
            "Authentication methods are managed with delegated (user) tokens only.".into(),
        ));
    }
    let user = state.dir().get_user(id).await?;
    if user.id != caller.oid {
        caller
            .require_role(
                state,
                &[GLOBAL_ADMIN_ROLE, USER_ADMIN_ROLE],
                "managing another user's authentication methods",
            )
            .await?;
    }
    Ok(user)
}

async fn list(state: &AppState, caller: &Caller, id: &str) -> Result<Json<Value>, ApiError> {
    let user = target(state, caller, id).await?;
    let items = user.passkeys.iter().map(method_json).collect();
    Ok(odata_list(
        &ctx(state, "users/authentication/fido2Methods"),
        items,
    ))
}

async fn remove(state: &AppState, caller: &Caller, id: &str, method: &str) -> Result<StatusCode, ApiError> {
    let user = target(state, caller, id).await?;
    if user.id != caller.oid {
        // Only a Global Administrator changes a Global Administrator's sign-in methods.
        protect_privileged_user(state, caller, &user.id).await?;
    }
    let removed = state.dir().remove_passkey(&user.id, method).await?;
    audit(
        state,
        caller,
        if user.id == caller.oid {
            "User deleted security info"
        } else {
            "Admin deleted security info"
        },
        "UserManagement",
        (&user.id, &user.user_principal_name, "User"),
        json!({"method": "passkey", "displayName": removed.display_name}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1.0/users/{id}/authentication/fido2Methods`.
pub async fn user_passkeys(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    list(&state, &caller, &id).await
}

/// `DELETE /v1.0/users/{id}/authentication/fido2Methods/{method}`.
pub async fn delete_user_passkey(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, method)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &caller, &id, &method).await
}

/// `GET /v1.0/me/authentication/fido2Methods`.
pub async fn my_passkeys(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let me = caller.oid.clone();
    list(&state, &caller, &me).await
}

/// `DELETE /v1.0/me/authentication/fido2Methods/{method}`.
pub async fn delete_my_passkey(
    State(state): State<AppState>,
    caller: Caller,
    Path(method): Path<String>,
) -> Result<StatusCode, ApiError> {
    let me = caller.oid.clone();
    remove(&state, &caller, &me, &method).await
}
