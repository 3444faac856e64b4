//! The token service's endpoints (SPEC T1–T6): thin handlers over `usher-idp`.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use serde_json::json;
use usher_idp::login::{AuthorizeError, LoginInput, LoginPurpose, LoginStep};
use usher_idp::{IdpError, RequestMeta};
use usher_proto::oauth::TokenRequest;

use crate::AppState;
use crate::error::{EntraErrorResponse, no_store_json};
use crate::pages;

const LOGIN_COOKIE: &str = "usher_login";

fn meta(headers: &HeaderMap, peer: Option<SocketAddr>, state: &AppState) -> RequestMeta {
    let correlation_id = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map_or_else(|| state.dir().new_id(), str::to_owned);
    RequestMeta {
        ip: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        correlation_id,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect())
            .unwrap_or_default(),
    }
}

fn entra(state: &AppState, m: &RequestMeta, error: IdpError) -> Response {
    EntraErrorResponse {
        error,
        correlation_id: m.correlation_id.clone(),
        trace_id: state.dir().new_id(),
    }
    .into_response()
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn discovery(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = meta(&headers, None, &state);
    if let Err(e) = state.idp.resolve_tenant(&tenant) {
        return entra(&state, &m, e);
    }
    let base = state.idp.public_url();
    let tid = &state.idp.tenant().id;
    let issuer = if tenant.eq_ignore_ascii_case("common") || tenant.eq_ignore_ascii_case("organizations") {
        format!("{base}/{{tenantid}}/v2.0")
    } else {
        state.idp.issuer()
    };
    let host = url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    Json200(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
        "userinfo_endpoint": format!("{base}/v1.0/me"),
        "end_session_endpoint": format!("{base}/{tid}/oauth2/v2.0/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password", usher_proto::oauth::DEVICE_CODE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "auth_time", "nonce", "preferred_username", "name", "tid", "oid", "amr", "ver"],
        "request_uri_parameter_supported": false,
        "tenant_region_scope": "usher",
        "cloud_instance_name": host,
        "msgraph_host": host,
    }))
    .into_response()
}

struct Json200(serde_json::Value);

impl IntoResponse for Json200 {
    fn into_response(self) -> Response {
        let mut r = axum::Json(self.0).into_response();
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
        r
    }
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub async fn jwks(State(state): State<AppState>, Path(tenant): Path<String>, headers: HeaderMap) -> Response {
    let m = meta(&headers, None, &state);
    if let Err(e) = state.idp.resolve_tenant(&tenant) {
        return entra(&state, &m, e);
    }
    match state.idp.keys().jwks() {
        Ok(v) => Json200(v).into_response(),
        Err(e) => entra(&state, &m, e),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = meta(&headers, Some(peer), &state);
    let req: TokenRequest = match serde_urlencoded::from_bytes(&body) {
        Ok(r) => r,
        Err(e) => {
            return entra(
                &state,
                &m,
                IdpError::new(
                    "invalid_request",
                    900144,
                    format!("The request body is not a valid form: {e}."),
                ),
            );
        }
    };
    let basic = if headers.get(header::AUTHORIZATION).is_some() {
        match basic_credentials(&headers) {
            Some(b) => Some(b),
            None => {
                return entra(
                    &state,
                    &m,
                    IdpError::new(
                        "invalid_client",
                        7000215,
                        "The Authorization header is not valid HTTP Basic client authentication.",
                    ),
                );
            }
        }
    } else {
        None
    };
    match state.idp.token(&tenant, req, basic, &m).await {
        Ok(resp) => no_store_json(resp),
        Err(e) => entra(&state, &m, e),
    }
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub async fn devicecode(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = meta(&headers, None, &state);
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let scope = form.get("scope").cloned().unwrap_or_default();
    match state.idp.device_authorization(&tenant, &client_id, &scope).await {
        Ok(r) => no_store_json(r),
        Err(e) => entra(&state, &m, e),
    }
}

fn with_cookie(mut resp: Response, txn: &str) -> Response {
    let cookie = format!("{LOGIN_COOKIE}={txn}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=900");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

fn cookie_txn(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == LOGIN_COOKIE).then(|| v.to_owned())
        })
}

fn login_action(state: &AppState) -> String {
    format!("/{}/login", state.idp.tenant().id)
}

fn render_step(state: &AppState, txn: &str, step: LoginStep) -> Response {
    let action = login_action(state);
    match step {
        LoginStep::Password {
            error,
            username,
            client_name,
        } => pages::page(
            if error.is_some() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            },
            pages::password(&action, txn, &client_name, username.as_deref(), error.as_deref()),
        ),
        LoginStep::ChangePassword { error } => pages::page(
            StatusCode::OK,
            pages::change_password(&action, txn, error.as_deref()),
        ),
        LoginStep::Totp { error } => pages::page(StatusCode::OK, pages::totp(&action, txn, error.as_deref())),
        LoginStep::RegisterTotp { secret, uri, error } => pages::page(
            StatusCode::OK,
            pages::register_totp(&action, txn, &secret, &uri, error.as_deref()),
        ),
        LoginStep::Redirect(url) => {
            let mut r = Redirect::to(&url).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        LoginStep::PasswordChanged => pages::page(
            StatusCode::OK,
            pages::message(
                "Password changed",
                "Your password has been changed. Sign in again from your application.",
            ),
        ),
        LoginStep::DeviceApproved { client_name } => {
            pages::page(StatusCode::OK, pages::device_done(&client_name))
        }
        LoginStep::Failed { message } => pages::page(
            StatusCode::BAD_REQUEST,
            pages::message("Sign-in failed", &message),
        ),
        LoginStep::Passkey { options, error } => pages::page(
            StatusCode::OK,
            pages::passkey(&action, txn, &options, error.as_deref()),
        ),
        LoginStep::ManagePasskeys(view) => {
            pages::page(StatusCode::OK, pages::manage_passkeys(&action, txn, &view))
        }
    }
}

/// `GET /static/passkey.js`: the passkey pages' script.
pub async fn passkey_js() -> Response {
    let mut r = pages::PASSKEY_JS.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /passkeys`: sign in, then list, add and remove your passkeys.
pub async fn passkeys_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let m = meta(&headers, None, &state);
    let txn = match state.idp.start_login(LoginPurpose::Passkeys).await {
        Ok(t) => t,
        Err(e) => return error_page(&m, &e),
    };
    match state.idp.login_step(&txn, LoginInput::Show, &m).await {
        Ok(s) => with_cookie(render_step(&state, &txn, s), &txn),
        Err(e) => error_page(&m, &e),
    }
}

fn error_page(m: &RequestMeta, e: &IdpError) -> Response {
    pages::page(
        StatusCode::BAD_REQUEST,
        pages::message(
            "Sorry, but we're having trouble signing you in.",
            &format!(
                "AADSTS{}: {} Correlation ID: {}",
                e.code, e.description, m.correlation_id
            ),
        ),
    )
}

/// `GET /{tenant}/oauth2/v2.0/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let m = meta(&headers, None, &state);
    let req = match state.idp.validate_authorize(&tenant, &q).await {
        Ok(r) => r,
        Err(AuthorizeError::Page(e)) => return error_page(&m, &e),
        Err(AuthorizeError::Redirect(url)) => return Redirect::to(&url).into_response(),
    };
    let txn = match state.idp.start_login(LoginPurpose::Authorize(req)).await {
        Ok(t) => t,
        Err(e) => return error_page(&m, &e),
    };
    let step = state.idp.login_step(&txn, LoginInput::Show, &m).await;
    match step {
        Ok(s) => with_cookie(render_step(&state, &txn, s), &txn),
        Err(e) => error_page(&m, &e),
    }
}

/// `POST /{tenant}/login`: every sign-in page posts here.
pub async fn login_post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = meta(&headers, Some(peer), &state);
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let txn = field("txn");
    // The transaction must belong to this browser: the cookie set when it started.
    if txn.is_empty() || cookie_txn(&headers).as_deref() != Some(txn.as_str()) {
        return pages::page(
            StatusCode::BAD_REQUEST,
            pages::message(
                "Sign-in failed",
                "This sign-in was started in another browser or has expired. Start again from the application.",
            ),
        );
    }
    let input = match field("step").as_str() {
        "password" if field("use") == "passkey" => LoginInput::PasskeyStart {
            username: field("username"),
        },
        "password" => LoginInput::Password {
            username: field("username"),
            password: field("password"),
        },
        "passkey" => LoginInput::PasskeyAssertion {
            response: field("response"),
        },
        "passkey-register" => LoginInput::PasskeyRegister {
            response: field("response"),
            name: field("name"),
        },
        "passkey-remove" => LoginInput::PasskeyRemove { id: field("id") },
        "totp" => LoginInput::Totp { code: field("code") },
        "register" => LoginInput::RegisterTotp { code: field("code") },
        "change" => LoginInput::ChangePassword {
            current: field("current"),
            new: field("new"),
        },
        _ => LoginInput::Show,
    };
    match state.idp.login_step(&txn, input, &m).await {
        Ok(step) => render_step(&state, &txn, step),
        Err(e) => error_page(&m, &e),
    }
}

/// `GET /changepassword`: sign in, then set a new password (where AADSTS50055 sends users).
pub async fn changepassword_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let m = meta(&headers, None, &state);
    let txn = match state.idp.start_login(LoginPurpose::ChangePassword).await {
        Ok(t) => t,
        Err(e) => return error_page(&m, &e),
    };
    match state.idp.login_step(&txn, LoginInput::Show, &m).await {
        Ok(s) => with_cookie(render_step(&state, &txn, s), &txn),
        Err(e) => error_page(&m, &e),
    }
}

/// `GET /devicelogin`.
pub async fn devicelogin_get() -> Response {
    pages::page(StatusCode::OK, pages::device_code(None))
}

/// `POST /devicelogin`: the user typed a code.
pub async fn devicelogin_post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let m = meta(&headers, None, &state);
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let code = form.get("user_code").cloned().unwrap_or_default();
    let found = match state.idp.find_device_request(&code).await {
        Ok(f) => f,
        Err(e) => return error_page(&m, &e),
    };
    let Some((device_id, client_name)) = found else {
        return pages::page(
            StatusCode::BAD_REQUEST,
            pages::device_code(Some(
                "That code didn't work. Check the code and try again; codes expire after 15 minutes.",
            )),
        );
    };
    let txn = match state
        .idp
        .start_login(LoginPurpose::Device {
            device_id,
            client_name,
        })
        .await
    {
        Ok(t) => t,
        Err(e) => return error_page(&m, &e),
    };
    match state.idp.login_step(&txn, LoginInput::Show, &m).await {
        Ok(s) => with_cookie(render_step(&state, &txn, s), &txn),
        Err(e) => error_page(&m, &e),
    }
}

/// `GET /common/userrealm/{upn}`: MSAL asks whether a user is managed or federated.
pub async fn userrealm(State(state): State<AppState>, Path(upn): Path<String>) -> Response {
    let domain = upn
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default();
    let known = state.idp.tenant().answers_to(&domain);
    axum::Json(json!({
        "ver": "1.0",
        "account_type": if known { "Managed" } else { "Unknown" },
        "domain_name": domain,
        "cloud_instance_name": url::Url::parse(state.idp.public_url()).ok().and_then(|u| u.host_str().map(str::to_owned)),
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }))
    .into_response()
}
