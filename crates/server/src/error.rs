//! The one place where errors become HTTP responses: Graph's envelope for the directory API,
//! Entra's token-error shape for the token service. Internal details are logged, never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use usher_directory::DirectoryError;
use usher_idp::IdpError;
use usher_proto::graph::{GraphError, GraphErrorBody};
use usher_proto::oauth::EntraError;

/// An error of the Graph-shaped and usher APIs.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `Request_BadRequest`.
    BadRequest(String),
    /// 401 `InvalidAuthenticationToken`.
    Unauthenticated(String),
    /// 403 `Authorization_RequestDenied`.
    Forbidden(String),
    /// 404 `Request_ResourceNotFound`.
    NotFound(String),
    /// 409 `Request_MultipleObjectsWithSameKeyValue`... or a conflicting reference.
    Conflict(String),
    /// 500 with no details.
    Internal,
    /// 503 retry.
    Busy,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Request_BadRequest", m.clone()),
            ApiError::Unauthenticated(m) => {
                (StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", m.clone())
            }
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "Authorization_RequestDenied", m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "Request_ResourceNotFound", m.clone()),
            ApiError::Conflict(m) => (
                StatusCode::CONFLICT,
                "Request_MultipleObjectsWithSameKeyValue",
                m.clone(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "The server failed; the error was logged.".into(),
            ),
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The object changed concurrently; retry.".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let mut resp = (
            status,
            Json(GraphErrorBody {
                error: GraphError {
                    code: code.into(),
                    message,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound { what, id } => ApiError::NotFound(format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present ({what})."
            )),
            DirectoryError::AlreadyExists(m) => ApiError::Conflict(m),
            DirectoryError::Invalid(m) => ApiError::BadRequest(m),
            DirectoryError::PasswordPolicy(v) => ApiError::BadRequest(format!(
                "The specified password does not comply with password complexity requirements: {v}."
            )),
            DirectoryError::Contended => ApiError::Busy,
            other => {
                tracing::error!(error = %other, "directory failure");
                ApiError::Internal
            }
        }
    }
}

impl From<IdpError> for ApiError {
    fn from(e: IdpError) -> Self {
        match e.error {
            "invalid_request" => ApiError::BadRequest(e.description),
            "temporarily_unavailable" => ApiError::Busy,
            _ => {
                tracing::error!(error = %e, "token-service failure in the API");
                ApiError::Internal
            }
        }
    }
}

/// A token-service error with the request's correlation id.
#[derive(Debug)]
pub struct EntraErrorResponse {
    /// The error.
    pub error: IdpError,
    /// Correlation id (the client's `client-request-id` when given).
    pub correlation_id: String,
    /// Trace id.
    pub trace_id: String,
}

/// Entra's timestamp format.
pub fn entra_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

impl EntraErrorResponse {
    /// The body.
    pub fn body(&self) -> EntraError {
        let ts = entra_timestamp();
        EntraError {
            error: self.error.error.to_owned(),
            error_description: format!(
                "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {ts}",
                self.error.code, self.error.description, self.trace_id, self.correlation_id
            ),
            error_codes: vec![self.error.code],
            timestamp: ts,
            trace_id: self.trace_id.clone(),
            correlation_id: self.correlation_id.clone(),
            error_uri: Some(format!(
                "https://login.microsoftonline.com/error?code={}",
                self.error.code
            )),
            suberror: self.error.suberror.map(str::to_owned),
        }
    }
}

impl IntoResponse for EntraErrorResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (status, Json(self.body())).into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        resp
    }
}

/// JSON with `Cache-Control: no-store` (token responses).
pub fn no_store_json<T: serde::Serialize>(value: T) -> Response {
    let mut resp = Json(value).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `{"value": [...]}` with an OData context.
pub fn odata_list(context: &str, items: Vec<serde_json::Value>) -> Json<serde_json::Value> {
    Json(json!({"@odata.context": context, "value": items}))
}
