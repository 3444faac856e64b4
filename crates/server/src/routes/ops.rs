//! Health, metrics, key rotation and the fallback.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use usher_core::well_known::GLOBAL_ADMIN_ROLE;

use super::Caller;
use crate::AppState;
use crate::error::ApiError;

/// `GET /healthz`: 200 once the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.dir().store().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /usher/keys/rotate`: a new signing key; the old one stays published for a day.
pub async fn rotate_keys(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller
        .require_role(&state, &[GLOBAL_ADMIN_ROLE], "rotating signing keys")
        .await?;
    let kid = state
        .idp
        .keys()
        .rotate(state.dir())
        .await
        .map_err(|_| ApiError::Internal)?;
    state
        .dir()
        .audit(usher_directory::AuditEvent {
            activity: "Rotate signing key".into(),
            category: "KeyManagement".into(),
            actor_id: caller.oid.clone(),
            actor_name: caller.name(),
            target_id: kid.clone(),
            target_name: kid.clone(),
            target_type: "SigningKey".into(),
            details: json!({}),
        })
        .await?;
    Ok(axum::Json(json!({"kid": kid})).into_response())
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("No such path. See docs/api.md for the API.".into())
}
