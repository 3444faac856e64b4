//! The token endpoint: grants, claims and the exact AADSTS codes of refusals (SPEC T2–T5).

use serde_json::json;
use usher_testkit::{ADMIN_PASSWORD, CLI_CLIENT_ID, spawn};

use crate::helpers::{assert_entra, jwt_parts};

#[tokio::test]
async fn password_grant_tokens_carry_t3_claims() {
    let s = spawn().await;
    let (status, body) = s.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let life = body["expires_in"].as_i64().unwrap();
    assert!((3600..=5400).contains(&life), "lifetime {life} within 60-90 min");
    let (h, p) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["typ"], "at+jwt");
    assert!(h["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(
        p["aud"], s.url,
        "only OIDC scopes: the audience is the public URL"
    );
    assert_eq!(p["iss"], format!("{}/{}/v2.0", s.url, s.tenant_id));
    assert_eq!(p["tid"], s.tenant_id);
    assert_eq!(p["upn"], "admin@contoso.test");
    assert_eq!(p["preferred_username"], "admin@contoso.test");
    assert_eq!(p["appid"], CLI_CLIENT_ID);
    assert_eq!(p["azp"], CLI_CLIENT_ID);
    assert_eq!(p["amr"], json!(["pwd"]));
    assert_eq!(p["idtyp"], "user");
    assert_eq!(p["scp"], "user_impersonation");
    assert_eq!(p["oid"], p["sub"]);
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), life);
    for k in ["nbf", "uti", "name", "acr"] {
        assert!(!p[k].is_null(), "claim {k}");
    }
    let (ih, ip) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(ih["typ"], "JWT");
    assert_eq!(ip["aud"], CLI_CLIENT_ID);
    assert!(body["refresh_token"].as_str().is_some());
    let info: serde_json::Value =
        serde_json::from_slice(&usher_crypto::b64url_decode(body["client_info"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(info["utid"], s.tenant_id);
    // The tenant may be named by domain, by id, or as `organizations`.
    for t in ["contoso.test", s.tenant_id.as_str(), "organizations"] {
        let r = s
            .client()
            .post(format!("{}/{t}/oauth2/v2.0/token", s.url))
            .form(&[
                ("grant_type", "password"),
                ("client_id", CLI_CLIENT_ID),
                ("username", "admin@contoso.test"),
                ("password", ADMIN_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tenant {t}");
    }
}

#[tokio::test]
async fn refusals_have_exact_codes() {
    let s = spawn().await;
    // 50126: wrong password, unknown user (answered alike).
    let (st, b) = s.password_token("admin@contoso.test", "wrong password").await;
    assert_entra(st, &b, 400, "invalid_grant", 50126);
    let (st, b) = s.password_token("nobody@contoso.test", "whatever pw").await;
    assert_entra(st, &b, 400, "invalid_grant", 50126);
    // 50055: temporary password.
    s.create_user("temp@contoso.test", "Spring-rain-14", true).await;
    let (st, b) = s.password_token("temp@contoso.test", "Spring-rain-14").await;
    assert_entra(st, &b, 400, "invalid_grant", 50055);
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("changepassword"),
        "names where to change it"
    );
    // 50057: disabled.
    let id = s.create_user("off@contoso.test", "Disabled-pw-1", false).await;
    let admin = s.admin_token().await;
    let (st, _) = s
        .api(
            "PATCH",
            &format!("/v1.0/users/{id}"),
            &admin,
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(st, 204);
    let (st, b) = s.password_token("off@contoso.test", "Disabled-pw-1").await;
    assert_entra(st, &b, 400, "invalid_grant", 50057);
    // 50076: per-user MFA enforced (nothing registered) on ROPC.
    let id = s.create_user("mfa@contoso.test", "Quiet-forest-31", false).await;
    let (st, _) = s
        .api(
            "PATCH",
            &format!("/beta/users/{id}/authentication/requirements"),
            &admin,
            Some(json!({"perUserMfaState": "enforced"})),
        )
        .await;
    assert_eq!(st, 204);
    let (st, b) = s.password_token("mfa@contoso.test", "Quiet-forest-31").await;
    assert_entra(st, &b, 400, "invalid_grant", 50076);
    // 700016: unknown client.
    let (st, b) = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", "00000000-1111-2222-3333-444444444444"),
            ("username", "admin@contoso.test"),
            ("password", ADMIN_PASSWORD),
        ])
        .await;
    assert_entra(st, &b, 400, "unauthorized_client", 700016);
    // 90002: unknown tenant.
    let r = s
        .client()
        .post(format!("{}/fabrikam.test/oauth2/v2.0/token", s.url))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_entra(st, &r.json().await.unwrap(), 400, "invalid_request", 90002);
    // Unsupported grant, missing grant_type.
    let (st, b) = s.token(&[("grant_type", "implicit")]).await;
    assert_entra(st, &b, 400, "unsupported_grant_type", 70003);
    let (st, b) = s.token(&[("client_id", CLI_CLIENT_ID)]).await;
    assert_entra(st, &b, 400, "invalid_request", 900144);
    // A confidential client may not use the password grant.
    let (app_id, obj) = s.create_app(json!({"displayName": "svc"})).await;
    let secret = s.add_secret(&obj).await;
    let (st, b) = s
        .token(&[
            ("grant_type", "password"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("username", "admin@contoso.test"),
            ("password", ADMIN_PASSWORD),
        ])
        .await;
    assert_entra(st, &b, 401, "invalid_client", 7000218);
}

#[tokio::test]
async fn lockout_after_ten_failures_refuses_even_the_right_password() {
    let s = spawn().await;
    s.create_user("lock@contoso.test", "Right-password-1", false)
        .await;
    for i in 0..10 {
        let (st, b) = s.password_token("lock@contoso.test", &format!("wrong-{i}")).await;
        assert_entra(st, &b, 400, "invalid_grant", 50126);
    }
    let (st, b) = s.password_token("lock@contoso.test", "Right-password-1").await;
    assert_entra(st, &b, 400, "invalid_grant", 50053);
    // An administrator unlocks.
    let admin = s.admin_token().await;
    let (st, _) = s
        .api("POST", "/usher/users/lock@contoso.test/unlock", &admin, None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = s.password_token("lock@contoso.test", "Right-password-1").await;
    assert_eq!(st, 200);
    // The expiry of the lock is shown with a controlled clock in crates/directory/tests.
}

#[tokio::test]
async fn client_credentials_with_secret_basic_and_errors() {
    let s = spawn().await;
    let (app_id, obj) = s.create_app(json!({"displayName": "daemon"})).await;
    let secret = s.add_secret(&obj).await;
    let scope = format!("{}/.default", s.url);
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    let (h, p) = jwt_parts(b["access_token"].as_str().unwrap());
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(p["aud"], s.url);
    assert_eq!(p["idtyp"], "app");
    assert_eq!(p["appid"], app_id);
    assert_eq!(p["appidacr"], "1");
    assert!(b.get("refresh_token").is_none() && b.get("id_token").is_none());
    // HTTP Basic works too.
    let r = s
        .client()
        .post(s.token_url())
        .basic_auth(&app_id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A built-in resource by appId: the audience is what was asked for.
    let vm = "372140e0-b3b7-4226-8ef9-d57986796201";
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", &format!("{vm}/.default")),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(jwt_parts(b["access_token"].as_str().unwrap()).1["aud"], vm);
    // Errors.
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", "wrong"),
            ("scope", &scope),
        ])
        .await;
    assert_entra(st, &b, 401, "invalid_client", 7000215);
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("scope", &scope),
        ])
        .await;
    assert_entra(st, &b, 401, "invalid_client", 7000218);
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", "openid"),
        ])
        .await;
    assert_entra(st, &b, 400, "invalid_scope", 1002012);
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", "https://nowhere.test/.default"),
        ])
        .await;
    assert_entra(st, &b, 400, "invalid_resource", 500011);
    let (st, b) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLI_CLIENT_ID),
            ("client_secret", "x"),
            ("scope", &scope),
        ])
        .await;
    assert_entra(st, &b, 401, "invalid_client", 700025);
}

#[tokio::test]
async fn private_key_jwt_and_assertion_replay() {
    let s = spawn().await;
    let (app_id, obj) = s.create_app(json!({"displayName": "keyed"})).await;
    let key = usher_crypto::jwt::SigningKey::generate("client-key-1").unwrap();
    let admin = s.admin_token().await;
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/applications/{obj}/addKey"),
            &admin,
            Some(json!({"keyCredential": {"key": serde_json::to_string(key.jwk()).unwrap()}})),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let assertion = |jti: &str, aud: &str, exp: i64| {
        key.sign_with_typ("JWT", &json!({"iss": app_id, "sub": app_id, "aud": aud, "jti": jti, "iat": now, "nbf": now, "exp": exp})).unwrap()
    };
    let scope = format!("{}/.default", s.url);
    let ty = usher_proto::oauth::JWT_BEARER_ASSERTION;
    let good = assertion("jti-1", &s.token_url(), now + 300);
    let form = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", app_id.clone()),
            ("client_assertion_type", ty.to_owned()),
            ("client_assertion", a.to_owned()),
            ("scope", scope.clone()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        let c = s.client();
        let url = s.token_url();
        async move {
            let r = c.post(url).form(&f).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (st, b) = post(form(&good)).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(jwt_parts(b["access_token"].as_str().unwrap()).1["appidacr"], "2");
    let (st, b) = post(form(&good)).await;
    assert_entra(st, &b, 401, "invalid_client", 700023);
    let (st, b) = post(form(&assertion(
        "jti-2",
        "https://elsewhere.test/token",
        now + 300,
    )))
    .await;
    assert_entra(st, &b, 401, "invalid_client", 700027);
    let (st, b) = post(form(&assertion("jti-3", &s.token_url(), now - 3600))).await;
    assert_entra(st, &b, 401, "invalid_client", 700024);
    let other = usher_crypto::jwt::SigningKey::generate("client-key-1").unwrap();
    let forged = other
        .sign_with_typ(
            "JWT",
            &json!({"iss": app_id, "sub": app_id, "aud": s.token_url(), "jti": "jti-4", "exp": now + 300}),
        )
        .unwrap();
    let (st, b) = post(form(&forged)).await;
    assert_entra(st, &b, 401, "invalid_client", 700027);
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revokes_the_family() {
    let s = spawn().await;
    let (_, first) = s.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        let s = &s;
        async move {
            s.token(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLI_CLIENT_ID),
                ("refresh_token", &rt),
            ])
            .await
        }
    };
    let (st, second) = refresh(rt1.clone()).await;
    assert_eq!(st, 200, "{second}");
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2, "rotated");
    let (st, third) = refresh(rt2.clone()).await;
    assert_eq!(st, 200, "{third}");
    let rt3 = third["refresh_token"].as_str().unwrap().to_owned();
    // Reusing a rotated token revokes the family: the newest token dies too.
    let (st, b) = refresh(rt1).await;
    assert_entra(st, &b, 400, "invalid_grant", 50173);
    let (st, b) = refresh(rt3).await;
    assert_entra(st, &b, 400, "invalid_grant", 50173);
    // Another sign-in's family is unaffected.
    let (_, other) = s.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
    let (st, _) = refresh(other["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(st, 200);
    let (st, b) = refresh("rt.garbage".into()).await;
    assert_entra(st, &b, 400, "invalid_grant", 70008);
    // A token issued to the CLI cannot be redeemed by another client.
    let (_, fresh) = s.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
    let (pub_app, _) = s
        .create_app(json!({"displayName": "other public", "isFallbackPublicClient": true}))
        .await;
    let (st, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &pub_app),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_entra(st, &b, 400, "invalid_grant", 70000);
}

#[tokio::test]
async fn device_code_flow_over_http() {
    let s = spawn().await;
    let r = s
        .client()
        .post(format!("{}/contoso.test/oauth2/v2.0/devicecode", s.url))
        .form(&[
            ("client_id", CLI_CLIENT_ID),
            ("scope", "openid profile offline_access"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: serde_json::Value = r.json().await.unwrap();
    assert_eq!(d["verification_uri"], format!("{}/devicelogin", s.url));
    assert_eq!(d["expires_in"], 900);
    let user_code = d["user_code"].as_str().unwrap().to_owned();
    assert!(d["message"].as_str().unwrap().contains(&user_code));
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", usher_proto::oauth::DEVICE_CODE_GRANT),
        ("client_id", CLI_CLIENT_ID),
        ("device_code", device_code.as_str()),
    ];
    let poll = || s.token(&form);
    let (st, b) = poll().await;
    assert_entra(st, &b, 400, "authorization_pending", 70016);
    // A wrong user code is refused on the page.
    let r = s
        .client()
        .post(format!("{}/devicelogin", s.url))
        .form(&[("user_code", "BBBB-BBBB")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let page = crate::helpers::approve_device(
        &s,
        &user_code.to_lowercase(),
        "admin@contoso.test",
        ADMIN_PASSWORD,
    )
    .await;
    assert!(page.contains("id=\"done\""), "{page}");
    let (st, b) = poll().await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        jwt_parts(b["access_token"].as_str().unwrap()).1["upn"],
        "admin@contoso.test"
    );
    let (st, b) = poll().await;
    assert_entra(st, &b, 400, "expired_token", 70019);
    // Confidential clients may not start the device flow.
    let (app_id, _) = s.create_app(json!({"displayName": "conf"})).await;
    let r = s
        .client()
        .post(format!("{}/contoso.test/oauth2/v2.0/devicecode", s.url))
        .form(&[("client_id", app_id.as_str())])
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_entra(st, &r.json().await.unwrap(), 401, "invalid_client", 7000218);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let old_kid = jwt_parts(&admin).0["kid"].as_str().unwrap().to_owned();
    let (st, b) = s.api("POST", "/usher/keys/rotate", &admin, None).await;
    assert_eq!(st, 200, "{b}");
    let new_kid = b["kid"].as_str().unwrap().to_owned();
    assert_ne!(old_kid, new_kid);
    let jwks: serde_json::Value = s
        .client()
        .get(format!("{}/contoso.test/discovery/v2.0/keys", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "overlap: {kids:?}"
    );
    let (st, _) = s.api("GET", "/v1.0/me", &admin, None).await;
    assert_eq!(st, 200, "a token signed by the previous key is still accepted");
    let fresh = s.admin_token().await;
    assert_eq!(jwt_parts(&fresh).0["kid"], new_kid);
    // Keys are sealed at rest: the stored form is not a usable key, and opens only with the at-rest key.
    let dir = s.running().state.dir();
    let recs = dir.store().list("signing_key", None, 10, 0).await.unwrap();
    assert_eq!(recs.len(), 2);
    for r in recs {
        let kid = r.data["kid"].as_str().unwrap();
        let sealed = r.data["sealedPkcs8"].as_str().unwrap();
        assert!(r.data.get("pkcs8").is_none());
        let raw = usher_crypto::b64url_decode(sealed).unwrap();
        assert!(
            usher_crypto::jwt::SigningKey::from_pkcs8(kid, &raw).is_err(),
            "sealed bytes are not a key"
        );
        let opened = dir.sealing().open(sealed, &format!("signing-key:{kid}")).unwrap();
        assert!(usher_crypto::jwt::SigningKey::from_pkcs8(kid, &opened).is_ok());
    }
}

#[tokio::test]
async fn a_password_reset_revokes_refresh_tokens() {
    let s = spawn().await;
    let id = s.create_user("rt@contoso.test", "Amber-field-19", false).await;
    let (_, t) = s.password_token("rt@contoso.test", "Amber-field-19").await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    // Sign-in times are in seconds: make the reset strictly later than the sign-in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let admin = s.admin_token().await;
    let (st, _) = s
        .api("PATCH", &format!("/v1.0/users/{id}"), &admin, Some(json!({"passwordProfile": {"password": "Cobalt-lake-22", "forceChangePasswordNextSignIn": false}})))
        .await;
    assert_eq!(st, 204);
    let (st, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", &rt),
        ])
        .await;
    assert_entra(st, &b, 400, "invalid_grant", 50173);
    // A sign-in with the new password gets working refresh tokens.
    let (_, t) = s.password_token("rt@contoso.test", "Cobalt-lake-22").await;
    let (st, _) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(st, 200);
}
