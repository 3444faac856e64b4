//! The authorize endpoint and its HTML pages (SPEC T2, T6): PKCE, exact redirect match, forced
//! password change, TOTP registration and challenge, transaction binding.

use serde_json::json;
use usher_testkit::{ADMIN_PASSWORD, TestServer, spawn};

use crate::helpers::{assert_entra, element_text, jwt_parts, pkce, post_login, txn_of};

const REDIRECT: &str = "http://localhost:8400/cb";

async fn app(s: &TestServer) -> String {
    s.create_app(json!({"displayName": "web", "isFallbackPublicClient": true, "publicClient": {"redirectUris": [REDIRECT]}})).await.0
}

fn authorize_url(
    s: &TestServer,
    client_id: &str,
    redirect: &str,
    challenge: Option<&str>,
    method: &str,
) -> String {
    let mut u = url::Url::parse(&format!("{}/contoso.test/oauth2/v2.0/authorize", s.url)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect);
        q.append_pair("scope", "openid offline_access")
            .append_pair("state", "st-1")
            .append_pair("nonce", "n-1");
        if let Some(c) = challenge {
            q.append_pair("code_challenge", c)
                .append_pair("code_challenge_method", method);
        }
    }
    u.to_string()
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Signs in through the pages; returns the final response.
async fn sign_in(
    s: &TestServer,
    browser: &reqwest::Client,
    url: &str,
    upn: &str,
    pw: &str,
) -> reqwest::Response {
    let page = browser.get(url).send().await.unwrap().text().await.unwrap();
    let txn = txn_of(&page);
    post_login(
        s,
        browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", upn),
            ("password", pw),
        ],
    )
    .await
}

async fn redeem(
    s: &TestServer,
    client_id: &str,
    code: &str,
    verifier: Option<&str>,
    redirect: &str,
) -> (u16, serde_json::Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", redirect),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    s.token(&form).await
}

#[tokio::test]
async fn pkce_and_redirect_rules() {
    let s = spawn().await;
    let client_id = app(&s).await;
    let c = s.client();
    // Missing PKCE: redirected back with an error.
    let r = c
        .get(authorize_url(&s, &client_id, REDIRECT, None, "S256"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let q = query(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].starts_with("AADSTS9002325:"), "{q:?}");
    assert_eq!(q["state"], "st-1");
    // plain is refused.
    let r = c
        .get(authorize_url(&s, &client_id, REDIRECT, Some("abc"), "plain"))
        .send()
        .await
        .unwrap();
    assert!(
        query(r.headers()["location"].to_str().unwrap())["error_description"].starts_with("AADSTS5000751:")
    );
    // A redirect URI that differs in any way is never redirected to.
    for bad in [
        "http://localhost:8400/cb/",
        "http://localhost:8400/cb?x=1",
        "http://localhost:8401/cb",
        "https://evil.test/cb",
    ] {
        let r = c
            .get(authorize_url(&s, &client_id, bad, Some(&pkce().1), "S256"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none());
        let page = r.text().await.unwrap();
        assert!(page.contains("AADSTS50011"), "{page}");
    }
    // Unknown client: an error page.
    let r = c
        .get(authorize_url(
            &s,
            "00000000-1111-2222-3333-444444444444",
            REDIRECT,
            Some(&pkce().1),
            "S256",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));

    // Wrong or missing verifier: 501481. Each attempt needs its own code.
    let (verifier, challenge) = pkce();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = sign_in(
            &s,
            &s.client(),
            &authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256"),
            "admin@contoso.test",
            ADMIN_PASSWORD,
        )
        .await;
        assert_eq!(r.status(), 303);
        codes.push(query(r.headers()["location"].to_str().unwrap())["code"].clone());
    }
    let (st, b) = redeem(&s, &client_id, &codes[0], None, REDIRECT).await;
    assert_entra(st, &b, 400, "invalid_grant", 501481);
    let wrong = format!("{}x", &verifier[..verifier.len() - 1]);
    let (st, b) = redeem(&s, &client_id, &codes[1], Some(&wrong), REDIRECT).await;
    assert_entra(st, &b, 400, "invalid_grant", 501481);
    let (st, b) = redeem(
        &s,
        &client_id,
        &codes[2],
        Some(&verifier),
        "http://localhost:8400/other",
    )
    .await;
    assert_entra(st, &b, 400, "invalid_grant", 50011);
    // The right verifier works once; replaying the code is refused and revokes its tokens.
    let (st, tokens) = redeem(&s, &client_id, &codes[3], Some(&verifier), REDIRECT).await;
    assert_eq!(st, 200, "{tokens}");
    assert_eq!(jwt_parts(tokens["id_token"].as_str().unwrap()).1["nonce"], "n-1");
    let (st, b) = redeem(&s, &client_id, &codes[3], Some(&verifier), REDIRECT).await;
    assert_entra(st, &b, 400, "invalid_grant", 54005);
    let (st, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &client_id),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_entra(st, &b, 400, "invalid_grant", 50173);
}

#[tokio::test]
async fn wrong_password_page_and_transaction_binding() {
    let s = spawn().await;
    let client_id = app(&s).await;
    let browser = s.client();
    let url = authorize_url(&s, &client_id, REDIRECT, Some(&pkce().1), "S256");
    let page = browser.get(&url).send().await.unwrap().text().await.unwrap();
    let txn = txn_of(&page);
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "admin@contoso.test"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    let html = r.text().await.unwrap();
    assert_eq!(
        element_text(&html, "error").as_deref(),
        Some("Your credentials did not work. Your account or password is incorrect.")
    );
    // Another browser (no cookie) cannot continue this transaction.
    let stranger = s.client();
    let r = post_login(
        &s,
        &stranger,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "admin@contoso.test"),
            ("password", ADMIN_PASSWORD),
        ],
    )
    .await;
    assert_eq!(r.status(), 400);
    // User input is escaped in pages.
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "<script>x</script>@contoso.test"),
            ("password", "p"),
        ],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>x"), "escaped");
}

#[tokio::test]
async fn temporary_password_is_changed_on_the_page() {
    let s = spawn().await;
    let client_id = app(&s).await;
    s.create_user("new@contoso.test", "Temporary-pw-7", true).await;
    let browser = s.client();
    let (verifier, challenge) = pkce();
    let r = sign_in(
        &s,
        &browser,
        &authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256"),
        "new@contoso.test",
        "Temporary-pw-7",
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Update your password"), "{html}");
    let txn = txn_of(&html);
    // A weak new password is refused with the policy's reason.
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "change"),
            ("current", "Temporary-pw-7"),
            ("new", "Password1"),
        ],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(
        element_text(&html, "error").unwrap().contains("too common"),
        "{html}"
    );
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "change"),
            ("current", "Temporary-pw-7"),
            ("new", "Brand-fresh-secret-1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let code = query(r.headers()["location"].to_str().unwrap())["code"].clone();
    let (st, _) = redeem(&s, &client_id, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(st, 200);
    // The new password now works on the password grant; the temporary one does not.
    assert_eq!(
        s.password_token("new@contoso.test", "Brand-fresh-secret-1")
            .await
            .0,
        200
    );
    assert_eq!(
        s.password_token("new@contoso.test", "Temporary-pw-7").await.1["error_codes"][0],
        50126
    );
}

#[tokio::test]
async fn mfa_registration_then_challenge() {
    let s = spawn().await;
    let client_id = app(&s).await;
    let id = s.create_user("mfa@contoso.test", "Quiet-forest-32", false).await;
    let admin = s.admin_token().await;
    s.api(
        "PATCH",
        &format!("/beta/users/{id}/authentication/requirements"),
        &admin,
        Some(json!({"perUserMfaState": "enabled"})),
    )
    .await;
    let (_, state) = s
        .api(
            "GET",
            &format!("/beta/users/{id}/authentication/requirements"),
            &admin,
            None,
        )
        .await;
    assert_eq!(state["perUserMfaState"], "enabled");

    // First sign-in: registration.
    let browser = s.client();
    let (verifier, challenge) = pkce();
    let r = sign_in(
        &s,
        &browser,
        &authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256"),
        "mfa@contoso.test",
        "Quiet-forest-32",
    )
    .await;
    let html = r.text().await.unwrap();
    let secret = element_text(&html, "totp-secret").unwrap_or_else(|| panic!("{html}"));
    let txn = txn_of(&html);
    let r = post_login(
        &s,
        &browser,
        &[("txn", &txn), ("step", "register"), ("code", "000000")],
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(
        element_text(&html, "error").is_some() || html.contains("Set up"),
        "a wrong code keeps the registration page"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let code = usher_crypto::totp::current_code(&secret, now).unwrap();
    let r = post_login(
        &s,
        &browser,
        &[("txn", &txn), ("step", "register"), ("code", &code)],
    )
    .await;
    assert_eq!(r.status(), 303);
    let auth_code = query(r.headers()["location"].to_str().unwrap())["code"].clone();
    let (st, t) = redeem(&s, &client_id, &auth_code, Some(&verifier), REDIRECT).await;
    assert_eq!(st, 200);
    assert_eq!(
        jwt_parts(t["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd", "mfa", "otp"])
    );

    // Next sign-in: the code page; the code just used cannot be replayed.
    let browser = s.client();
    let r = sign_in(
        &s,
        &browser,
        &authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256"),
        "mfa@contoso.test",
        "Quiet-forest-32",
    )
    .await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Enter code"), "{html}");
    let txn = txn_of(&html);
    let r = post_login(&s, &browser, &[("txn", &txn), ("step", "totp"), ("code", &code)]).await;
    assert!(
        element_text(&r.text().await.unwrap(), "error").is_some(),
        "replayed code refused"
    );
    // The password grant still answers 50076 for an MFA user.
    let (st, b) = s.password_token("mfa@contoso.test", "Quiet-forest-32").await;
    assert_entra(st, &b, 400, "invalid_grant", 50076);
}

#[tokio::test]
async fn change_password_page_csp_and_a_wrong_verifier_does_not_burn_the_code() {
    let s = spawn().await;
    let client_id = app(&s).await;
    // The CSP must not carry form-action: browsers apply it to the redirect after the form post.
    let r = s
        .client()
        .get(authorize_url(&s, &client_id, REDIRECT, Some(&pkce().1), "S256"))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !csp.contains("form-action") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    // A wrong verifier is refused without spending the code; the right one then works.
    let (verifier, challenge) = pkce();
    let r = sign_in(
        &s,
        &s.client(),
        &authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256"),
        "admin@contoso.test",
        ADMIN_PASSWORD,
    )
    .await;
    let code = query(r.headers()["location"].to_str().unwrap())["code"].clone();
    let (st, b) = redeem(
        &s,
        &client_id,
        &code,
        Some(&format!("{}X", &verifier[1..])),
        REDIRECT,
    )
    .await;
    assert_entra(st, &b, 400, "invalid_grant", 501481);
    let (st, b) = redeem(&s, &client_id, &code, Some(&verifier), REDIRECT).await;
    assert_eq!(st, 200, "{b}");

    // 50055 names /changepassword; that page changes a temporary password.
    s.create_user("tmp@contoso.test", "Temporary-pw-7", true).await;
    let (st, b) = s.password_token("tmp@contoso.test", "Temporary-pw-7").await;
    assert_entra(st, &b, 400, "invalid_grant", 50055);
    let url = format!("{}/changepassword", s.url);
    assert!(b["error_description"].as_str().unwrap().contains(&url));
    let browser = s.client();
    let page = browser.get(&url).send().await.unwrap().text().await.unwrap();
    let txn = txn_of(&page);
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "tmp@contoso.test"),
            ("password", "Temporary-pw-7"),
        ],
    )
    .await;
    assert!(r.text().await.unwrap().contains("Update your password"));
    let r = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "change"),
            ("current", "Temporary-pw-7"),
            ("new", "Fresh-river-stone-5"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Your password has been changed"));
    assert_eq!(
        s.password_token("tmp@contoso.test", "Fresh-river-stone-5")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn conditional_access_on_the_authorize_pages_blocks_or_steps_up() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let client_id = app(&s).await;
    let ada = s.create_user("ada@contoso.test", "Correct-Horse-9", false).await;
    // The pages' token is for usher's own API: the "Windows Azure Service Management API" app.
    let (st, p) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/policies",
            &admin,
            Some(json!({"displayName": "ada's web sign-ins", "state": "enabled",
                "conditions": {"users": {"includeUsers": [ada]},
                               "applications": {"includeApplications": ["797f4846-ba00-4fd7-ba43-dac1f8f63013"]}},
                "grantControls": {"operator": "OR", "builtInControls": ["block"]}})),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let (_, challenge) = pkce();
    let url = authorize_url(&s, &client_id, REDIRECT, Some(&challenge), "S256");
    let browser = s.client();
    let r = sign_in(&s, &browser, &url, "ada@contoso.test", "Correct-Horse-9").await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(page.contains("AADSTS53003"), "{page}");
    assert!(
        !page.contains("prevent you from using this device"),
        "not a machine login: {page}"
    );
    // MFA instead of a block: the pages step up (here to registering an authenticator app).
    let id = p["id"].as_str().unwrap();
    let (st, _) = s
        .api(
            "PATCH",
            &format!("/v1.0/identity/conditionalAccess/policies/{id}"),
            &admin,
            Some(json!({"grantControls": {"operator": "OR", "builtInControls": ["mfa"]}})),
        )
        .await;
    assert_eq!(st, 204);
    let browser = s.client();
    let r = sign_in(&s, &browser, &url, "ada@contoso.test", "Correct-Horse-9").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        element_text(&page, "totp-secret").is_some(),
        "step-up to MFA: {page}"
    );
}
