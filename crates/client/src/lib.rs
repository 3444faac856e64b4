//! Typed async HTTP client for usher's API.
//!
//! [`Client`] talks to one usher server (its public URL), optionally trusting a private CA
//! (the `tls/ca.pem` that usherd writes on first start). It covers the token endpoints of the
//! Entra v2 shape (`/{tenant}/oauth2/v2.0/token` and `/devicecode`) and generic authenticated
//! JSON requests for the Graph-shaped directory API. Failures keep the server's error codes:
//! Entra token errors (`error`, `error_description`, `error_codes`) and Graph/ARM errors
//! (`{"error":{"code","message"}}`), see [`Error`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// The first-party CLI's public client id (the Azure CLI's client id).
pub const CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// The scopes the CLI asks for when it signs a user in.
pub const CLI_LOGIN_SCOPE: &str = "openid profile offline_access";

/// The device-code grant type (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// An error answered by the token service in the Entra shape (SPEC T4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraError {
    /// HTTP status of the answer.
    #[serde(skip)]
    pub status: u16,
    /// OAuth error, e.g. `invalid_grant`, `authorization_pending`.
    pub error: String,
    /// Human-readable text, starting `AADSTSnnnnn:`.
    #[serde(default)]
    pub error_description: String,
    /// Numeric AADSTS codes.
    #[serde(default)]
    pub error_codes: Vec<u64>,
    /// Correlation id of the request, when the server sent one.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// Trace id of the request, when the server sent one.
    #[serde(default)]
    pub trace_id: Option<String>,
}

impl EntraError {
    /// The first AADSTS code, from `error_codes` or else the description's `AADSTSnnnnn:` prefix.
    pub fn aadsts(&self) -> Option<u64> {
        if let Some(code) = self.error_codes.first() {
            return Some(*code);
        }
        let rest = self.error_description.strip_prefix("AADSTS")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The code as the Azure CLI shows it: `AADSTS50126`, or the OAuth error when there is none.
    pub fn code(&self) -> String {
        match self.aadsts() {
            Some(n) => format!("AADSTS{n}"),
            None => self.error.clone(),
        }
    }

    /// The description, or the OAuth error when the description is empty.
    pub fn message(&self) -> &str {
        if self.error_description.is_empty() {
            &self.error
        } else {
            &self.error_description
        }
    }

    /// Whether this is the device flow's "authorization pending" answer (70016).
    pub fn is_authorization_pending(&self) -> bool {
        self.error == "authorization_pending" || self.aadsts() == Some(70016)
    }

    /// Whether the device flow asked the client to poll more slowly.
    pub fn is_slow_down(&self) -> bool {
        self.error == "slow_down"
    }
}

impl std::fmt::Display for EntraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}) {}", self.code(), self.message())
    }
}

/// Everything that can go wrong talking to usher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL does not parse.
    #[error("invalid server URL '{url}'")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        source: url::ParseError,
    },
    /// The CA file cannot be read.
    #[error("cannot read CA file {}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("no usable PEM certificate in CA file {}{}", path.display(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Parser detail, if any.
        detail: Option<String>,
    },
    /// The HTTP client cannot be built.
    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
    /// The request did not get an answer (connection, TLS, timeout).
    #[error("cannot reach {url}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The token service refused (Entra shape).
    #[error("{0}")]
    Entra(Box<EntraError>),
    /// The Graph / resource API refused (`{"error":{"code","message"}}`).
    #[error("({code}) {message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// Graph error code, e.g. `Request_ResourceNotFound`.
        code: String,
        /// Error message.
        message: String,
    },
    /// A non-success answer without a recognised error body.
    #[error("({}) {}", status_code_name(*status), if body.is_empty() { status_reason(*status) } else { body.clone() })]
    Status {
        /// HTTP status.
        status: u16,
        /// The body as text (possibly empty).
        body: String,
    },
    /// A success answer whose body is not what was expected.
    #[error("unexpected response from {url}: {detail}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

fn status_reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("HTTP error")
        .to_string()
}

fn status_code_name(status: u16) -> String {
    format!("HTTP{status}")
}

impl Error {
    /// HTTP status of a server answer, if the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Entra(e) => Some(e.status),
            Error::Api { status, .. } | Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error code as the Azure CLI shows it in `(Code) message`, when the server gave one.
    pub fn code(&self) -> Option<String> {
        match self {
            Error::Entra(e) => Some(e.code()),
            Error::Api { code, .. } => Some(code.clone()),
            _ => None,
        }
    }

    /// The Entra error, if this is one.
    pub fn entra(&self) -> Option<&EntraError> {
        match self {
            Error::Entra(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// Whether the server answered 404 (or Graph's `Request_ResourceNotFound`).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            || matches!(self, Error::Api { code, .. } if code == "Request_ResourceNotFound" || code == "ResourceNotFound")
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A successful token answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Always `Bearer`.
    #[serde(default)]
    pub token_type: String,
    /// Granted scopes, space separated.
    #[serde(default)]
    pub scope: String,
    /// Lifetime of the access token in seconds.
    #[serde(default)]
    pub expires_in: u64,
    /// Extended lifetime in seconds.
    #[serde(default)]
    pub ext_expires_in: Option<u64>,
    /// The access token (a JWT).
    pub access_token: String,
    /// A refresh token, when `offline_access` was granted.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// An id token, when `openid` was granted.
    #[serde(default)]
    pub id_token: Option<String>,
    /// Base64url `{"uid","utid"}`.
    #[serde(default)]
    pub client_info: Option<String>,
}

/// The device authorization answer (RFC 8628 with Entra's `message`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCodeResponse {
    /// The code the client polls with.
    pub device_code: String,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval: u64,
    /// Text to show the user.
    #[serde(default)]
    pub message: String,
}

fn default_interval() -> u64 {
    5
}

/// Percent-encodes one path segment (keeps `@`, `:` and the other characters RFC 3986 allows).
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'@'
                    | b':'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quotes a string for an OData `$filter` literal: `'it''s'`.
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// An HTTP client bound to one usher server, optionally carrying a bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for `server` (e.g. `https://127.0.0.1:8443`). With `ca_file`, only the
    /// certificates in that PEM file are trusted; without it, the platform's roots are.
    pub fn new(server: &str, ca_file: Option<&Path>) -> Result<Self> {
        let trimmed = server.trim_end_matches('/');
        let base = Url::parse(trimmed).map_err(|source| Error::InvalidUrl {
            url: server.to_string(),
            source,
        })?;
        let mut builder = reqwest::Client::builder()
            .user_agent(format!(
                "usher-client/{} ({})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS
            ))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|source| Error::CaFile {
                path: path.to_path_buf(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Certificate {
                path: path.to_path_buf(),
                detail: Some(e.to_string()),
            })?;
            if certs.is_empty() {
                return Err(Error::Certificate {
                    path: path.to_path_buf(),
                    detail: None,
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder.build().map_err(Error::Setup)?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// The server's URL.
    pub fn server(&self) -> &Url {
        &self.base
    }

    /// The server's URL as text, without a trailing slash.
    pub fn server_str(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// A copy of this client that sends `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: impl Into<String>) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token.into()),
        }
    }

    /// The absolute URL of `path` (which starts with `/` and may carry a query) on this server.
    /// An absolute `http(s)://` URL (an `@odata.nextLink`) is taken as it is.
    pub fn url(&self, path: &str) -> Result<Url> {
        if path.starts_with("https://") || path.starts_with("http://") {
            return Url::parse(path).map_err(|source| Error::InvalidUrl {
                url: path.to_string(),
                source,
            });
        }
        let joined = format!(
            "{}/{}",
            self.base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Url::parse(&joined).map_err(|source| Error::InvalidUrl {
            url: joined.clone(),
            source,
        })
    }

    fn token_path(tenant: &str) -> String {
        format!("/{}/oauth2/v2.0/token", encode_path_segment(tenant))
    }

    /// POSTs a form to the tenant's token endpoint and decodes the answer.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let url = self.url(&Self::token_path(tenant))?;
        self.post_form(url, form).await
    }

    /// Resource-owner password grant (allowed for the first-party CLI).
    pub async fn password_grant(
        &self,
        tenant: &str,
        client_id: &str,
        username: &str,
        password: &str,
        scope: &str,
    ) -> Result<TokenResponse> {
        self.token_request(
            tenant,
            &[
                ("grant_type", "password"),
                ("client_id", client_id),
                ("username", username),
                ("password", password),
                ("scope", scope),
            ],
        )
        .await
    }

    /// Starts the device-code flow.
    pub async fn device_code_start(
        &self,
        tenant: &str,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceCodeResponse> {
        let url = self.url(&format!(
            "/{}/oauth2/v2.0/devicecode",
            encode_path_segment(tenant)
        ))?;
        self.post_form(url, &[("client_id", client_id), ("scope", scope)])
            .await
    }

    /// One poll of the device-code flow. While the user has not finished, this fails with an
    /// [`EntraError`] for which [`EntraError::is_authorization_pending`] is true.
    pub async fn device_code_poll(
        &self,
        tenant: &str,
        client_id: &str,
        device_code: &str,
    ) -> Result<TokenResponse> {
        self.token_request(
            tenant,
            &[
                ("grant_type", DEVICE_CODE_GRANT),
                ("client_id", client_id),
                ("device_code", device_code),
            ],
        )
        .await
    }

    /// Refresh-token grant. The server rotates the refresh token: persist the new one at once.
    pub async fn refresh_grant(
        &self,
        tenant: &str,
        client_id: &str,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_request(tenant, &form).await
    }

    async fn post_form<T: serde::de::DeserializeOwned>(&self, url: Url, form: &[(&str, &str)]) -> Result<T> {
        let shown = url.to_string();
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|source| Error::Transport {
                url: shown.clone(),
                source,
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|source| Error::Transport {
            url: shown.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(error_from_body(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode {
            url: shown,
            detail: e.to_string(),
        })
    }

    /// Sends a JSON request. `query` pairs are appended to the URL. A success with an empty
    /// body (204) gives `Value::Null`.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value> {
        let mut url = self.url(path)?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        let shown = url.to_string();
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|source| Error::Transport {
            url: shown.clone(),
            source,
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|source| Error::Transport {
            url: shown.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(error_from_body(status.as_u16(), &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url: shown,
            detail: e.to_string(),
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send_json(Method::GET, path, &[], None, &[]).await
    }

    /// `GET path?query`.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.send_json(Method::GET, path, query, None, &[]).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send_json(Method::POST, path, &[], Some(body), &[]).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.send_json(Method::PATCH, path, &[], Some(body), &[]).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send_json(Method::DELETE, path, &[], None, &[]).await
    }

    /// GETs a Graph collection and follows `@odata.nextLink` (at most `limit` items when given),
    /// returning the concatenated `value` arrays.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        limit: Option<usize>,
    ) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut page = self.send_json(Method::GET, path, query, None, headers).await?;
        loop {
            let next = page
                .get("@odata.nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
            match page {
                Value::Object(mut map) => match map.remove("value") {
                    Some(Value::Array(values)) => items.extend(values),
                    Some(other) => {
                        return Err(Error::Decode {
                            url: path.to_string(),
                            detail: format!("`value` is not an array: {other}"),
                        });
                    }
                    None => {
                        return Err(Error::Decode {
                            url: path.to_string(),
                            detail: "no `value` in the collection".to_string(),
                        });
                    }
                },
                Value::Array(values) => items.extend(values),
                other => {
                    return Err(Error::Decode {
                        url: path.to_string(),
                        detail: format!("not a collection: {other}"),
                    });
                }
            }
            if let Some(limit) = limit
                && items.len() >= limit
            {
                items.truncate(limit);
                break;
            }
            match next {
                Some(link) => {
                    page = self.send_json(Method::GET, &link, &[], None, headers).await?;
                }
                None => break,
            }
        }
        Ok(items)
    }
}

/// Turns an error answer into an [`Error`]: the Entra shape when `error` is a string, the
/// Graph/ARM shape when `error` is an object, else [`Error::Status`].
pub fn error_from_body(status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body).trim().to_string();
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Error::Status { status, body: text };
    };
    match value.get("error") {
        Some(Value::String(_)) => match serde_json::from_value::<EntraError>(value.clone()) {
            Ok(mut e) => {
                e.status = status;
                Error::Entra(Box::new(e))
            }
            Err(_) => Error::Status { status, body: text },
        },
        Some(Value::Object(obj)) => {
            let code = obj
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string();
            let message = obj
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Error::Api {
                status,
                code,
                message,
            }
        }
        _ => Error::Status { status, body: text },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_error_keeps_code_and_description() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.","error_codes":[50126],"timestamp":"t","trace_id":"a","correlation_id":"b"}"#;
        let err = error_from_body(400, body);
        assert_eq!(err.code().as_deref(), Some("AADSTS50126"));
        assert_eq!(err.status(), Some(400));
        assert_eq!(
            err.to_string(),
            "(AADSTS50126) AADSTS50126: Error validating credentials due to invalid username or password."
        );
        let e = err.entra().cloned();
        assert_eq!(e.map(|e| e.error_codes), Some(vec![50126]));
    }

    #[test]
    fn entra_code_from_description_when_no_codes() {
        let body = br#"{"error":"authorization_pending","error_description":"AADSTS70016: pending"}"#;
        let err = error_from_body(400, body);
        let e = err.entra().cloned();
        assert!(e.as_ref().is_some_and(EntraError::is_authorization_pending));
        assert_eq!(err.code().as_deref(), Some("AADSTS70016"));
    }

    #[test]
    fn graph_error_keeps_code_and_message() {
        let body =
            br#"{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist."}}"#;
        let err = error_from_body(404, body);
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "(Request_ResourceNotFound) Resource 'x' does not exist."
        );
    }

    #[test]
    fn plain_status_error() {
        let err = error_from_body(404, b"");
        assert!(err.is_not_found());
        assert_eq!(err.to_string(), "(HTTP404) Not Found");
        assert_eq!(err.code(), None);
    }

    #[test]
    fn path_segment_encoding() {
        assert_eq!(encode_path_segment("alice@contoso.test"), "alice@contoso.test");
        assert_eq!(encode_path_segment("a b/c?d#e"), "a%20b%2Fc%3Fd%23e");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn odata_quoting() {
        assert_eq!(odata_string("it's"), "'it''s'");
    }

    #[test]
    fn urls_join_under_the_server() -> Result<()> {
        let c = Client::new("https://127.0.0.1:8443/", None)?;
        assert_eq!(
            c.url("/v1.0/groups/g/members/$ref")?.as_str(),
            "https://127.0.0.1:8443/v1.0/groups/g/members/$ref"
        );
        assert_eq!(
            c.url("/subscriptions?api-version=2022-12-01")?.as_str(),
            "https://127.0.0.1:8443/subscriptions?api-version=2022-12-01"
        );
        let p = Client::new("https://host.example/prefix", None)?;
        assert_eq!(p.url("/v1.0/me")?.as_str(), "https://host.example/prefix/v1.0/me");
        assert_eq!(c.server_str(), "https://127.0.0.1:8443");
        Ok(())
    }

    #[test]
    fn bad_ca_file_is_reported() {
        let err = Client::new("https://127.0.0.1:8443", Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(err, Err(Error::CaFile { .. })));
    }

    #[test]
    fn token_response_decodes() -> std::result::Result<(), serde_json::Error> {
        let t: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","scope":"openid","expires_in":3600,"ext_expires_in":3600,"access_token":"a.b.c","refresh_token":"r"}"#,
        )?;
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        let d: DeviceCodeResponse = serde_json::from_str(
            r#"{"device_code":"d","user_code":"U","verification_uri":"https://x/devicelogin","expires_in":900,"message":"go"}"#,
        )?;
        assert_eq!(d.interval, 5);
        Ok(())
    }
}
