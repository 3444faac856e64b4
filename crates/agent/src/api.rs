//! The agent's calls to usherd. Every call after the join carries a fresh assertion signed by
//! the machine key (`Authorization: UsherMachine <jwt>`, two minutes, single use).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Value, json};
use usher_crypto::jwt::{SigningKey, TokenKind};

/// A server error, with ARM's code when it gave one.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status (0: no answer).
    pub status: u16,
    /// ARM error code, or the OAuth error.
    pub code: String,
    /// What the server said.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            write!(f, "the server could not be reached: {}", self.message)
        } else {
            write!(f, "({}) {}", self.code, self.message)
        }
    }
}

impl std::error::Error for ApiError {}

/// An HTTPS client that trusts only the server's CA.
pub fn http_client(ca_file: &Path, timeout: Duration) -> Result<reqwest::Client> {
    let pem =
        std::fs::read(ca_file).with_context(|| format!("cannot read the CA file {}", ca_file.display()))?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).context("the CA file holds no usable certificate")?;
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot set up HTTPS")
}

async fn answer(
    resp: std::result::Result<reqwest::Response, reqwest::Error>,
) -> std::result::Result<Value, ApiError> {
    let resp = resp.map_err(|e| ApiError {
        status: 0,
        code: "Unreachable".into(),
        message: format!("{e}"),
    })?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
    };
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let (code, message) = match (&body["error"], &body["error_description"]) {
        (Value::Object(e), _) => (
            e["code"].as_str().unwrap_or_default().to_owned(),
            e["message"].as_str().unwrap_or_default().to_owned(),
        ),
        (Value::String(e), Value::String(d)) => (e.clone(), d.clone()),
        _ => (format!("Http{status}"), text),
    };
    Err(ApiError {
        status,
        code,
        message,
    })
}

/// The machine's connection to usherd.
#[derive(Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
    long: reqwest::Client,
    key: SigningKey,
    vm: String,
    audience: String,
}

impl Api {
    /// A connection for the machine `vm` (its ARM id) with its key.
    /// `audience`: what the server said at join (empty: `<base>/usher/agent`).
    pub fn new(base: &str, ca_file: &Path, key: SigningKey, vm: &str, audience: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        let audience = if audience.is_empty() {
            format!("{base}/usher/agent")
        } else {
            audience.to_owned()
        };
        Ok(Self {
            audience,
            base,
            http: http_client(ca_file, Duration::from_secs(15))?,
            long: http_client(ca_file, Duration::from_secs(75))?,
            key,
            vm: vm.to_owned(),
        })
    }

    /// The server's public URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn assertion(&self) -> std::result::Result<String, ApiError> {
        let now = crate::now();
        let claims = json!({
            "iss": self.vm, "sub": self.vm, "aud": self.audience,
            "iat": now, "nbf": now - 5, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
        });
        self.key
            .sign(TokenKind::ClientAssertion, &claims)
            .map_err(|e| ApiError {
                status: 0,
                code: "Key".into(),
                message: e.to_string(),
            })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> std::result::Result<reqwest::RequestBuilder, ApiError> {
        Ok(req.header(
            reqwest::header::AUTHORIZATION,
            format!("UsherMachine {}", self.assertion()?),
        ))
    }

    /// `GET /usher/agent/config`.
    pub async fn config(&self) -> std::result::Result<Value, ApiError> {
        answer(
            self.auth(self.http.get(format!("{}/usher/agent/config", self.base)))?
                .send()
                .await,
        )
        .await
    }

    /// The desired extensions; waits up to `wait` seconds while they match `known`.
    pub async fn extensions(&self, known: &str, wait: u64) -> std::result::Result<Value, ApiError> {
        let req = self.long.get(format!(
            "{}/usher/agent/extensions?known={known}&wait={wait}",
            self.base
        ));
        answer(self.auth(req)?.send().await).await
    }

    /// Who may log in to this machine; waits up to `wait` seconds while it matches `known`.
    pub async fn logins(&self, known: &str, wait: u64) -> std::result::Result<Value, ApiError> {
        let req = self.long.get(format!(
            "{}/usher/agent/logins?known={known}&wait={wait}",
            self.base
        ));
        answer(self.auth(req)?.send().await).await
    }

    /// Reports an extension's outcome.
    pub async fn report(
        &self,
        name: &str,
        generation: u64,
        status: &str,
        exit_code: i64,
        message: &str,
    ) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/extensions/{name}/status", self.base))
            .json(&json!({"generation": generation, "status": status, "exitCode": exit_code, "message": message}));
        answer(self.auth(req)?.send().await).await
    }

    /// A token of the VM's identity for `resource`.
    pub async fn token(&self, resource: &str) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/token", self.base))
            .json(&json!({"resource": resource}));
        answer(self.auth(req)?.send().await).await
    }

    /// Registers the machine as a device.
    pub async fn register_device(
        &self,
        hostname: &str,
        os: &str,
        version: &str,
    ) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/device", self.base))
            .json(&json!({"hostname": hostname, "operatingSystem": os, "operatingSystemVersion": version}));
        answer(self.auth(req)?.send().await).await
    }

    /// Removes the machine's device.
    pub async fn unregister_device(&self) -> std::result::Result<Value, ApiError> {
        answer(
            self.auth(self.http.delete(format!("{}/usher/agent/device", self.base)))?
                .send()
                .await,
        )
        .await
    }

    /// A host certificate for this machine's public host key.
    pub async fn host_certificate(&self, public_key: &str) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/hostcert", self.base))
            .json(&json!({"publicKey": public_key}));
        answer(self.auth(req)?.send().await).await
    }

    /// Relays a PAM sign-in step (password, or flow and code).
    pub async fn relay(&self, body: &Value) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/signin", self.base))
            .json(body);
        answer(self.auth(req)?.send().await).await
    }

    /// The server's decision for one user on this machine now.
    pub async fn login_check(&self, user: &str) -> std::result::Result<Value, ApiError> {
        let req = self.http.get(format!(
            "{}/usher/agent/logincheck?user={}",
            self.base,
            url::form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>()
        ));
        answer(self.auth(req)?.send().await).await
    }

    /// Reports the live sessions of a user that the agent ended.
    pub async fn sessions_ended(
        &self,
        upn: &str,
        principal_id: &str,
        sessions: u32,
        reason: &str,
    ) -> std::result::Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}/usher/agent/sessions/ended", self.base))
            .json(&json!({"userPrincipalName": upn, "principalId": principal_id, "sessions": sessions, "reason": reason}));
        answer(self.auth(req)?.send().await).await
    }

    /// Whether `url` answers HTTP at all (any status counts).
    pub async fn reachable(&self, url: &str) -> std::result::Result<u16, String> {
        self.http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e}"))
    }
}

/// Joins: proves the key and spends the token. Returns the server's machine configuration.
pub async fn join(
    base: &str,
    ca_file: &Path,
    token: &str,
    key: &SigningKey,
    hostname: &str,
) -> Result<Value> {
    let base = base.trim_end_matches('/');
    let now = crate::now();
    let proof = key
        .sign(
            TokenKind::ClientAssertion,
            &json!({
                "iss": "usher-agent", "sub": hostname, "aud": format!("{base}/usher/agent/join"),
                "nonce": usher_crypto::secret::digest(token),
                "iat": now, "nbf": now - 5, "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string(),
            }),
        )
        .map_err(|e| anyhow!("cannot sign the proof of possession: {e}"))?;
    let http = http_client(ca_file, Duration::from_secs(30))?;
    let body = json!({"token": token, "jwk": key.jwk(), "proof": proof, "hostname": hostname});
    answer(
        http.post(format!("{base}/usher/agent/join"))
            .json(&body)
            .send()
            .await,
    )
    .await
    .map_err(|e| anyhow!("the join was refused: {e}"))
}
