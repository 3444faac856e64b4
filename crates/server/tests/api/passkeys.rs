//! Passkeys in a real browser (SPEC T6, C1): Debian's headless Chromium, driven over WebDriver
//! (chromedriver) with a virtual authenticator, registers a passkey on `/passkeys` and signs in
//! with it; the token's `amr` says so, and a policy requiring phishing-resistant MFA admits the
//! passkey sign-in and refuses password + one-time code.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use usher_testkit::{CLI_CLIENT_ID, TestServer};

use crate::helpers::{assert_entra, jwt_parts, post_login, txn_of};

const VM_APP: &str = "372140e0-b3b7-4226-8ef9-d57986796201";
const PW: &str = "Correct-Horse-9";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium behind chromedriver, trusting the test server's CA through its own NSS
/// database (in a private HOME), with a virtual platform authenticator (user verification on).
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    authenticator: String,
    _driver: tokio::process::Child,
    _home: tempfile::TempDir,
}

impl Browser {
    async fn start(ca: &Path) -> Browser {
        let home = tempfile::tempdir().unwrap();
        let db = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db).unwrap();
        let db_arg = format!("sql:{}", db.display());
        for args in [
            vec!["-N", "-d", &db_arg, "--empty-password"],
            vec![
                "-A",
                "-d",
                &db_arg,
                "-n",
                "usher-test",
                "-t",
                "C,,",
                "-i",
                ca.to_str().unwrap(),
            ],
        ] {
            let st = std::process::Command::new("certutil")
                .args(&args)
                .status()
                .unwrap();
            assert!(st.success(), "certutil {args:?}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) must be installed");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = home.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", format!("--user-data-dir={}", profile.display())]}}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        let mut b = Browser {
            http,
            base,
            session,
            authenticator: String::new(),
            _driver: driver,
            _home: home,
        };
        let a = b
            .cmd(
                "POST",
                "webauthn/authenticator",
                json!({"protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
                       "hasUserVerification": true, "isUserVerified": true}),
            )
            .await;
        b.authenticator = a
            .as_str()
            .unwrap_or_else(|| panic!("no authenticator: {a}"))
            .to_owned();
        b
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {method} {path}: {v}");
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "url", json!({"url": url})).await;
    }

    async fn source(&self) -> String {
        self.cmd("GET", "source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (bounded) until the page has `css`; returns its element id.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            if Instant::now() > deadline {
                panic!("no '{css}' on the page: {}", self.source().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("element/{id}/clear"), json!({})).await;
        self.cmd("POST", &format!("element/{id}/value"), json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("element/{id}/click"), json!({})).await;
    }

    /// The credentials the virtual authenticator holds.
    async fn credentials(&self) -> Vec<Value> {
        self.cmd(
            "GET",
            &format!("webauthn/authenticator/{}/credentials", self.authenticator),
            Value::Null,
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

/// Starts a device-code sign-in for the VM Sign-In app; returns (user code, device code).
async fn device_start(s: &TestServer) -> (String, String) {
    let r = s
        .client()
        .post(format!("{}/contoso.test/oauth2/v2.0/devicecode", s.url))
        .form(&[
            ("client_id", CLI_CLIENT_ID),
            ("scope", &format!("{VM_APP}/.default offline_access")),
        ])
        .send()
        .await
        .unwrap();
    let d: Value = r.json().await.unwrap();
    (
        d["user_code"].as_str().unwrap().to_owned(),
        d["device_code"].as_str().unwrap().to_owned(),
    )
}

async fn device_poll(s: &TestServer, device_code: &str) -> (u16, Value) {
    s.token(&[
        ("grant_type", usher_proto::oauth::DEVICE_CODE_GRANT),
        ("client_id", CLI_CLIENT_ID),
        ("device_code", device_code),
    ])
    .await
}

/// The browser signs in to a device code with a passkey.
async fn browser_device_sign_in(s: &TestServer, b: &Browser, upn: &str) -> Value {
    let (user_code, device_code) = device_start(s).await;
    b.goto(&format!("{}/devicelogin", s.url)).await;
    b.type_into("#user_code", &user_code).await;
    b.click("form button[type=submit]").await;
    b.type_into("#username", upn).await;
    b.click("#use-passkey").await;
    b.click("#passkey-go").await;
    b.find("#done").await;
    let (st, t) = device_poll(s, &device_code).await;
    assert_eq!(st, 200, "{t}");
    t
}

/// Password and one-time code through the device-code pages (plain HTTP, no browser).
async fn http_device_sign_in(s: &TestServer, upn: &str, code: &str) -> (String, String) {
    let (user_code, device_code) = device_start(s).await;
    let c = s.client();
    let r = c
        .post(format!("{}/devicelogin", s.url))
        .form(&[("user_code", user_code.as_str())])
        .send()
        .await
        .unwrap();
    let txn = txn_of(&r.text().await.unwrap());
    let page = post_login(
        s,
        &c,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", upn),
            ("password", PW),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    if !page.contains("authenticator app") {
        return (page, device_code);
    }
    let page = post_login(s, &c, &[("txn", &txn), ("step", "totp"), ("code", code)])
        .await
        .text()
        .await
        .unwrap();
    (page, device_code)
}

fn amr_of(tokens: &Value) -> Vec<String> {
    let mut amr: Vec<String> = jwt_parts(tokens["access_token"].as_str().unwrap()).1["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    amr.sort();
    amr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_in_a_real_browser_satisfy_phishing_resistant_policies() {
    let s = usher_testkit::spawn_localhost().await;
    assert!(s.url.starts_with("https://localhost:"), "{}", s.url);
    let admin = s.admin_token().await;
    let pat = s.create_user("pat@contoso.test", PW, false).await;
    let bob = s.create_user("bob@contoso.test", PW, false).await;
    let dir = s.running().state.dir().clone();
    let secret = b"usher-test-totp-secret-20bytes!!".to_vec();
    let b32 = usher_crypto::totp::base32(&secret);
    let now = dir.clock().now_unix();
    let mut step = (now / 30) as u64 - 1;
    let code = |step: &mut u64| {
        *step += 1;
        usher_crypto::totp::current_code(&b32, (*step * 30) as i64).unwrap()
    };
    // Both have an authenticator app and per-user MFA: password + code is their usual sign-in.
    for u in [&pat, &bob] {
        let c = usher_crypto::totp::current_code(&b32, ((now / 30) - 1) * 30).unwrap();
        assert!(dir.register_totp(u, &secret, &c).await.unwrap());
        let (st, b) = s
            .api(
                "PATCH",
                &format!("/beta/users/{u}/authentication/requirements"),
                &admin,
                Some(json!({"perUserMfaState": "enforced"})),
            )
            .await;
        assert!(st == 204 || st == 200, "{b}");
    }

    // Register on /passkeys: password, the one-time code, then "Add a passkey".
    let b = Browser::start(&s.ca).await;
    b.goto(&format!("{}/passkeys", s.url)).await;
    b.type_into("#username", "pat@contoso.test").await;
    b.type_into("#password", PW).await;
    b.click("form button[type=submit]:not([name])").await;
    let c1 = code(&mut step);
    b.type_into("#code", &c1).await;
    b.click("form button[type=submit]").await;
    b.find("#no-passkeys").await;
    b.type_into("#name", "laptop").await;
    b.click("#passkey-go").await;
    b.find("#notice").await;
    let page = b.source().await;
    assert!(page.contains("Passkey 'laptop' added."), "{page}");
    assert_eq!(b.credentials().await.len(), 1);
    let (st, methods) = s
        .api(
            "GET",
            &format!("/v1.0/users/{pat}/authentication/fido2Methods"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{methods}");
    let m = &methods["value"][0];
    assert_eq!(m["displayName"], "laptop");
    assert_eq!(m["backupEligible"], false);
    assert!(m["lastUsedDateTime"].is_null());

    // Sign in with the passkey: the token's amr says what was used.
    let t = browser_device_sign_in(&s, &b, "pat@contoso.test").await;
    assert_eq!(amr_of(&t), ["fido", "mfa"]);
    assert_eq!(jwt_parts(t["access_token"].as_str().unwrap()).1["acr"], "2");
    // The counter and the time of use are recorded, as the authenticator counts.
    let (_, methods) = s
        .api(
            "GET",
            &format!("/v1.0/users/{pat}/authentication/fido2Methods"),
            &admin,
            None,
        )
        .await;
    let m = &methods["value"][0];
    assert!(m["lastUsedDateTime"].is_string(), "{m}");
    let held = b.credentials().await;
    assert_eq!(m["signCount"], held[0]["signCount"], "{m} vs {held:?}");

    // Before the policy: password + code gives a refresh token (amr pwd, otp, mfa).
    let c2 = code(&mut step);
    let (page, device_code) = http_device_sign_in(&s, "pat@contoso.test", &c2).await;
    assert!(page.contains("id=\"done\""), "{page}");
    let (st, otp_tokens) = device_poll(&s, &device_code).await;
    assert_eq!(st, 200, "{otp_tokens}");
    assert_eq!(amr_of(&otp_tokens), ["mfa", "otp", "pwd"]);

    // Phishing-resistant MFA for machines.
    let (st, p) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/policies",
            &admin,
            Some(json!({"displayName": "passkeys for machines", "state": "enabled",
                "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["admin@contoso.test"]},
                               "applications": {"includeApplications": [VM_APP]}},
                "grantControls": {"operator": "OR",
                    "authenticationStrength": {"id": "00000000-0000-0000-0000-000000000004"}}})),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    // Password + code is refused (the cached sign-in, and the password grant)...
    let (st, e) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", otp_tokens["refresh_token"].as_str().unwrap()),
            ("scope", &format!("{VM_APP}/.default offline_access")),
        ])
        .await;
    assert_entra(st, &e, 400, "invalid_grant", 50076);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("phishing-resistant"),
        "{e}"
    );
    let (st, e) = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", "pat@contoso.test"),
            ("password", PW),
            ("scope", &format!("{VM_APP}/.default")),
        ])
        .await;
    assert_entra(st, &e, 400, "invalid_grant", 50076);
    // ...on the pages, a user with a passkey is asked for it (step-up), not refused...
    let (page, _) = http_device_sign_in(&s, "pat@contoso.test", "").await;
    assert!(
        page.contains("id=\"passkey-form\""),
        "step-up to the passkey: {page}"
    );
    // ...and a user without one is refused with L6's wording and the code.
    let c3 = usher_crypto::totp::current_code(&b32, now).unwrap();
    let (page, _) = http_device_sign_in(&s, "bob@contoso.test", &c3).await;
    assert!(
        page.contains("sign-in method you&#x27;re trying to use isn&#x27;t allowed")
            || page.contains("sign-in method you're trying to use isn't allowed"),
        "{page}"
    );
    assert!(page.contains("50076"), "{page}");
    // The passkey sign-in is admitted.
    let t = browser_device_sign_in(&s, &b, "pat@contoso.test").await;
    assert_eq!(amr_of(&t), ["fido", "mfa"]);
    let (st, t) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", &format!("{VM_APP}/.default offline_access")),
        ])
        .await;
    assert_eq!(st, 200, "{t}");
    let (_, log) = s
        .api(
            "GET",
            "/v1.0/auditLogs/signIns?$filter=userPrincipalName%20eq%20'pat@contoso.test'",
            &admin,
            None,
        )
        .await;
    let passkey_entry = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["clientAppUsed"] == "Device code" && e["authenticationMethodsUsed"].to_string().contains("fido")
        })
        .unwrap();
    assert_eq!(
        passkey_entry["conditionalAccessStatus"], "success",
        "{passkey_entry}"
    );

    // With a passkey registered, the passkeys page wants that passkey, not just the password.
    let c = s.client();
    let page = c
        .get(format!("{}/passkeys", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let txn = txn_of(&page);
    let page = post_login(
        &s,
        &c,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "pat@contoso.test"),
            ("password", PW),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        page.contains("id=\"passkey-form\""),
        "the page must ask for the passkey: {page}"
    );
    assert!(!page.contains("Add a passkey"), "{page}");

    // The user removes the passkey with their own token; it is gone, and audited.
    // Her API token comes from the passkey sign-in (per-user MFA refuses the password grant).
    let (st, pt) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", "openid offline_access"),
        ])
        .await;
    assert_eq!(st, 200, "{pt}");
    let pt = pt["access_token"].as_str().unwrap().to_owned();
    let (_, mine) = s
        .api("GET", "/v1.0/me/authentication/fido2Methods", &pt, None)
        .await;
    let mid = mine["value"][0]["id"].as_str().unwrap().to_owned();
    // Another user may not touch it.
    s.create_user("eve@contoso.test", PW, false).await;
    let (st, bt) = s.password_token("eve@contoso.test", PW).await;
    assert_eq!(st, 200, "{bt}");
    let (st, _) = s
        .api(
            "DELETE",
            &format!("/v1.0/users/{pat}/authentication/fido2Methods/{mid}"),
            bt["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = s
        .api(
            "DELETE",
            &format!("/v1.0/me/authentication/fido2Methods/{mid}"),
            &pt,
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (_, mine) = s
        .api("GET", "/v1.0/me/authentication/fido2Methods", &pt, None)
        .await;
    assert_eq!(mine["value"], json!([]));
    let (_, audits) = s
        .api("GET", "/v1.0/auditLogs/directoryAudits", &admin, None)
        .await;
    let acts: Vec<&str> = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activityDisplayName"].as_str().unwrap())
        .collect();
    assert!(
        acts.contains(&"User registered security info") && acts.contains(&"User deleted security info"),
        "{acts:?}"
    );
    b.quit().await;
}

#[tokio::test]
async fn only_a_global_administrator_removes_a_global_administrators_passkeys() {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let ua = s.create_user("ua@contoso.test", PW, false).await;
    let plain = s.create_user("plain@contoso.test", PW, false).await;
    let dir = s.running().state.dir().clone();
    dir.assign_directory_role(&ua, usher_core::well_known::USER_ADMIN_ROLE)
        .await
        .unwrap();
    let (st, t) = s.password_token("ua@contoso.test", PW).await;
    assert_eq!(st, 200, "{t}");
    let ua_token = t["access_token"].as_str().unwrap().to_owned();
    let (_, me) = s.api("GET", "/v1.0/me", &admin, None).await;
    let admin_id = me["id"].as_str().unwrap();
    let missing = "00000000-0000-4000-8000-000000000001";
    // A User Administrator: refused for a Global Administrator before anything is looked up...
    let (st, b) = s
        .api(
            "DELETE",
            &format!("/v1.0/users/{admin_id}/authentication/fido2Methods/{missing}"),
            &ua_token,
            None,
        )
        .await;
    assert_eq!(st, 403, "{b}");
    // ...and allowed to try for an ordinary user (here there is no such passkey).
    let (st, b) = s
        .api(
            "DELETE",
            &format!("/v1.0/users/{plain}/authentication/fido2Methods/{missing}"),
            &ua_token,
            None,
        )
        .await;
    assert_eq!(st, 404, "{b}");
    let (st, b) = s
        .api(
            "GET",
            &format!("/v1.0/users/{plain}/authentication/fido2Methods"),
            &ua_token,
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["value"], json!([]));
}
