//! Small helpers shared by the test modules.

use serde_json::Value;
use usher_testkit::TestServer;

/// Decodes a JWT's header and payload without verifying.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let dec =
        |s: &str| -> Value { serde_json::from_slice(&usher_crypto::b64url_decode(s).unwrap()).unwrap() };
    let h = dec(it.next().unwrap());
    let p = dec(it.next().unwrap());
    (h, p)
}

/// Asserts an Entra error body with the given HTTP status, OAuth error and AADSTS code.
pub fn assert_entra(status: u16, body: &Value, want_status: u16, error: &str, code: u32) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains("Trace ID: ") && desc.contains("Correlation ID: ") && desc.contains("Timestamp: "),
        "{desc}"
    );
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[k].as_str().is_some_and(|s| !s.is_empty()), "{k} in {body}");
    }
}

/// The hidden `txn` input of a sign-in page.
pub fn txn_of(html: &str) -> String {
    let marker = "name=\"txn\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no txn in page: {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The text of an element with an id.
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\">");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..].split('<').next()?.to_owned())
}

/// Posts a sign-in page form.
pub async fn post_login(s: &TestServer, c: &reqwest::Client, fields: &[(&str, &str)]) -> reqwest::Response {
    c.post(format!("{}/{}/login", s.url, s.tenant_id))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Drives the device-code verification pages for a user (password only).
pub async fn approve_device(s: &TestServer, user_code: &str, upn: &str, password: &str) -> String {
    let c = s.client();
    let r = c
        .post(format!("{}/devicelogin", s.url))
        .form(&[("user_code", user_code)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let txn = txn_of(&page);
    let r = post_login(
        s,
        &c,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", upn),
            ("password", password),
        ],
    )
    .await;
    r.text().await.unwrap()
}

/// A 43-character PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", "v".repeat(20), usher_crypto::b64url(&[7u8; 18]));
    let challenge = usher_crypto::b64url(&usher_crypto::secret::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// Whether `s` is a GUID.
pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}
