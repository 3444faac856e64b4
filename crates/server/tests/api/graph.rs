//! The Graph-shaped directory API (SPEC D2–D4, D7): shapes, filters, admin-only writes, audit and
//! sign-in logs, bad input.

use serde_json::json;
use usher_testkit::{ADMIN_PASSWORD, spawn};

#[tokio::test]
async fn users_groups_and_objects() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let (st, list) = s
        .api(
            "GET",
            "/v1.0/users?$filter=userPrincipalName%20eq%20'ANN@contoso.test'",
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["id"], ann);
    for key in [
        "id",
        "userPrincipalName",
        "displayName",
        "accountEnabled",
        "userType",
        "mailNickname",
    ] {
        assert!(!list["value"][0][key].is_null(), "{key}");
    }
    let (st, u) = s.api("GET", "/v1.0/users/ann@contoso.test", &admin, None).await;
    assert_eq!((st, u["id"].clone()), (200, json!(ann)));
    let (st, b) = s
        .api("GET", "/v1.0/users?$filter=foo%20eq%20'x'", &admin, None)
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (400, json!("Request_BadRequest"))
    );

    // Groups with nesting.
    let (st, inner) = s
        .api(
            "POST",
            "/v1.0/groups",
            &admin,
            Some(json!({"displayName": "inner", "mailNickname": "inner", "securityEnabled": true})),
        )
        .await;
    assert_eq!(st, 201);
    let (_, outer) = s
        .api(
            "POST",
            "/v1.0/groups",
            &admin,
            Some(json!({"displayName": "outer"})),
        )
        .await;
    let (inner, outer) = (
        inner["id"].as_str().unwrap().to_owned(),
        outer["id"].as_str().unwrap().to_owned(),
    );
    let reference = |id: &str| json!({"@odata.id": format!("{}/v1.0/directoryObjects/{id}", s.url)});
    assert_eq!(
        s.api(
            "POST",
            &format!("/v1.0/groups/{inner}/members/$ref"),
            &admin,
            Some(reference(&ann))
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.api(
            "POST",
            &format!("/v1.0/groups/{outer}/members/$ref"),
            &admin,
            Some(reference(&inner))
        )
        .await
        .0,
        204
    );
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/groups/{outer}/members/$ref"),
            &admin,
            Some(reference(&inner)),
        )
        .await;
    assert_eq!(st, 409, "{b}");
    let (_, tm) = s
        .api(
            "GET",
            &format!("/v1.0/groups/{outer}/transitiveMembers"),
            &admin,
            None,
        )
        .await;
    let ids: Vec<&str> = tm["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&ann.as_str()) && ids.contains(&inner.as_str()));
    let (_, direct) = s
        .api("GET", &format!("/v1.0/groups/{outer}/members"), &admin, None)
        .await;
    assert_eq!(direct["value"].as_array().unwrap().len(), 1);
    let (_, of) = s
        .api(
            "GET",
            &format!("/v1.0/users/{ann}/transitiveMemberOf"),
            &admin,
            None,
        )
        .await;
    assert_eq!(of["value"].as_array().unwrap().len(), 2);
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/groups/{inner}/members/$ref"),
            &admin,
            Some(reference(&outer)),
        )
        .await;
    assert_eq!(st, 400, "loop refused: {b}");

    // getByIds across kinds, with a type filter and an unknown id.
    let (st, got) = s
        .api(
            "POST",
            "/v1.0/directoryObjects/getByIds",
            &admin,
            Some(json!({"ids": [ann, inner, "00000000-0000-0000-0000-000000000000"]})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(got["value"].as_array().unwrap().len(), 2);
    let (_, only_groups) = s
        .api(
            "POST",
            "/v1.0/directoryObjects/getByIds",
            &admin,
            Some(json!({"ids": [ann, inner], "types": ["group"]})),
        )
        .await;
    assert_eq!(only_groups["value"][0]["@odata.type"], "#microsoft.graph.group");

    assert_eq!(
        s.api(
            "DELETE",
            &format!("/v1.0/groups/{inner}/members/{ann}/$ref"),
            &admin,
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(
        s.api("DELETE", &format!("/v1.0/users/{ann}"), &admin, None)
            .await
            .0,
        204
    );
    let (st, b) = s.api("GET", &format!("/v1.0/users/{ann}"), &admin, None).await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (404, json!("Request_ResourceNotFound"))
    );
}

#[tokio::test]
async fn writes_need_a_directory_admin_and_bad_input_loses_nothing() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    s.create_user("bob@contoso.test", "Blue-river-72", false).await;
    let (_, t) = s.password_token("bob@contoso.test", "Blue-river-72").await;
    let bob = t["access_token"].as_str().unwrap().to_owned();
    let (st, _) = s.api("GET", "/v1.0/users", &bob, None).await;
    assert_eq!(st, 200, "members may read");
    let (st, b) = s
        .api("POST", "/v1.0/users", &bob, Some(json!({"displayName": "x", "userPrincipalName": "x@contoso.test", "passwordProfile": {"password": "Whatever-pw-1"}})))
        .await;
    assert_eq!(st, 403);
    assert_eq!(b["error"]["code"], "Authorization_RequestDenied");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Global Administrator")
    );
    assert_eq!(
        s.api(
            "POST",
            "/v1.0/applications",
            &bob,
            Some(json!({"displayName": "x"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(s.api("POST", "/usher/keys/rotate", &bob, None).await.0, 403);

    // Bad input: a clear 400, nothing created, nothing changed.
    let before = s.api("GET", "/v1.0/users", &admin, None).await.1["value"]
        .as_array()
        .unwrap()
        .len();
    let r = s
        .client()
        .post(format!("{}/v1.0/users", s.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let bad = [
        json!({"displayName": "x", "userPrincipalName": "x@fabrikam.test", "passwordProfile": {"password": "Good-password-1"}}),
        json!({"displayName": "x", "userPrincipalName": "x@contoso.test", "passwordProfile": {"password": "password"}}),
        json!({"displayName": "x", "userPrincipalName": "no-at-sign", "passwordProfile": {"password": "Good-password-1"}}),
        json!({"userPrincipalName": "y@contoso.test", "passwordProfile": {"password": "Good-password-1"}}),
        json!({"displayName": "dup", "userPrincipalName": "bob@contoso.test", "passwordProfile": {"password": "Good-password-1"}}),
    ];
    for body in bad {
        let (st, b) = s.api("POST", "/v1.0/users", &admin, Some(body.clone())).await;
        assert!(st == 400 || st == 409, "{body} -> {st} {b}");
        assert!(b["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let after = s.api("GET", "/v1.0/users", &admin, None).await.1["value"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    let (_, bob_now) = s.api("GET", "/v1.0/users/bob@contoso.test", &admin, None).await;
    assert_eq!(
        bob_now["displayName"], "bob@contoso.test",
        "the duplicate did not overwrite bob"
    );
    assert_eq!(s.password_token("bob@contoso.test", "Blue-river-72").await.0, 200);
    let (st, _) = s
        .api(
            "PATCH",
            "/v1.0/users/bob@contoso.test",
            &admin,
            Some(json!({"passwordProfile": {"password": "short"}})),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        s.password_token("bob@contoso.test", "Blue-river-72").await.0,
        200,
        "a refused change leaves the password"
    );
}

#[tokio::test]
async fn service_principals_builtins_and_logs() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let vm = "372140e0-b3b7-4226-8ef9-d57986796201";
    let (_, sps) = s
        .api(
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId%20eq%20'{vm}'"),
            &admin,
            None,
        )
        .await;
    assert_eq!(sps["value"][0]["displayName"], "Azure Windows VM Sign-In");
    let (_, found) = s
        .api(
            "GET",
            "/v1.0/servicePrincipals?$search=%22displayName:remote%20desktop%22",
            &admin,
            None,
        )
        .await;
    assert_eq!(found["value"][0]["appId"], "a4a365df-50f1-4397-bc59-1a1564b8bb9c");
    for app in [
        "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        "01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9",
    ] {
        assert_eq!(
            s.api("GET", &format!("/v1.0/servicePrincipals/{app}"), &admin, None)
                .await
                .0,
            200
        );
    }
    // Delete the VM Sign-In principal, then recreate it by appId (the seed's missing-application fix).
    assert_eq!(
        s.api("DELETE", &format!("/v1.0/servicePrincipals/{vm}"), &admin, None)
            .await
            .0,
        204
    );
    let (st, sp) = s
        .api(
            "POST",
            "/v1.0/servicePrincipals",
            &admin,
            Some(json!({"appId": vm})),
        )
        .await;
    assert_eq!(st, 201, "{sp}");
    assert_eq!(sp["appId"], vm);
    let (st, _) = s
        .api(
            "POST",
            "/v1.0/servicePrincipals",
            &admin,
            Some(json!({"appId": vm})),
        )
        .await;
    assert_eq!(st, 409);

    // Sign-in log: successes and failures with their codes; audit log: every write.
    s.password_token("admin@contoso.test", "bad password").await;
    let (st, log) = s
        .api(
            "GET",
            "/v1.0/auditLogs/signIns?$filter=userPrincipalName%20eq%20'admin@contoso.test'",
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let entries = log["value"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["status"]["errorCode"] == 50126));
    assert!(
        entries
            .iter()
            .any(|e| e["status"]["errorCode"] == 0 && e["appId"] == usher_testkit::CLI_CLIENT_ID)
    );
    assert!(
        entries
            .iter()
            .all(|e| e["ipAddress"] == "127.0.0.1" && !e["createdDateTime"].is_null())
    );
    let (_, audit) = s
        .api("GET", "/v1.0/auditLogs/directoryAudits", &admin, None)
        .await;
    let activities: Vec<&str> = audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["activityDisplayName"].as_str().unwrap())
        .collect();
    assert!(
        activities.contains(&"Remove service principal") && activities.contains(&"Add service principal"),
        "{activities:?}"
    );
    assert_eq!(
        audit["value"][0]["initiatedBy"]["user"]["userPrincipalName"],
        "admin@contoso.test"
    );
    // Health and metrics.
    assert_eq!(
        s.client()
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = s
        .client()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("usher_http_requests_total"), "{metrics}");
    let _ = ADMIN_PASSWORD;
}

#[tokio::test]
async fn the_whole_flow_runs_on_postgres() {
    let mut s = usher_testkit::spawn_with(usher_testkit::Backend::Postgres).await;
    let admin = s.admin_token().await;
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let (_, g) = s
        .api("POST", "/v1.0/groups", &admin, Some(json!({"displayName": "g"})))
        .await;
    let g = g["id"].as_str().unwrap().to_owned();
    let reference = json!({"@odata.id": format!("{}/v1.0/directoryObjects/{ann}", s.url)});
    assert_eq!(
        s.api(
            "POST",
            &format!("/v1.0/groups/{g}/members/$ref"),
            &admin,
            Some(reference)
        )
        .await
        .0,
        204
    );
    let (_, t) = s.password_token("ann@contoso.test", "Sunny-garden-41").await;
    let (st, t2) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", usher_testkit::CLI_CLIENT_ID),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(st, 200, "{t2}");
    let (st, b) = s
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", usher_testkit::CLI_CLIENT_ID),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .await;
    crate::helpers::assert_entra(st, &b, 400, "invalid_grant", 50173);
    for i in 0..10 {
        s.password_token("ann@contoso.test", &format!("wrong-{i}")).await;
    }
    let (st, b) = s.password_token("ann@contoso.test", "Sunny-garden-41").await;
    crate::helpers::assert_entra(st, &b, 400, "invalid_grant", 50053);
    s.stop().await;
}

#[tokio::test]
async fn tenant_settings_password_policy_and_public_client_flows() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let (st, t) = s.api("GET", "/usher/tenant", &admin, None).await;
    assert_eq!(st, 200);
    assert_eq!(t["passwordPolicy"]["minLength"], 8);
    assert_eq!(
        t["passwordPolicy"]["requireComplexity"], false,
        "complexity is off by default"
    );
    assert_eq!(t["allowPublicClientFlows"], true);
    // Complexity on: a long lower-case password is now refused.
    let policy = json!({"passwordPolicy": {"minLength": 12, "requireComplexity": true}});
    let (st, b) = s.api("PATCH", "/usher/tenant", &admin, Some(policy)).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = s
        .api("POST", "/v1.0/users", &admin, Some(json!({"displayName": "c", "userPrincipalName": "c@contoso.test", "passwordProfile": {"password": "all lower case words"}})))
        .await;
    assert_eq!(st, 400);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("three of"),
        "{b}"
    );
    // Bad settings are refused and change nothing.
    for bad in [
        json!({"passwordPolicy": {"minLength": 4}}),
        json!({"passwordPolicy": {"minLength": 8, "maxAgeDays": 0}}),
        json!({"colour": "blue"}),
    ] {
        let (st, _) = s.api("PATCH", "/usher/tenant", &admin, Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad}");
    }
    assert_eq!(
        s.api("GET", "/usher/tenant", &admin, None).await.1["passwordPolicy"]["minLength"],
        12
    );
    // Public-client flows off: the CLI's password grant is refused at once.
    let (st, _) = s
        .api(
            "PATCH",
            "/usher/tenant",
            &admin,
            Some(json!({"allowPublicClientFlows": false})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, b) = s.password_token("admin@contoso.test", ADMIN_PASSWORD).await;
    crate::helpers::assert_entra(st, &b, 401, "invalid_client", 7000218);
    // Turned back on with the token issued before; then only a Global Administrator may change settings.
    let (st, _) = s
        .api(
            "PATCH",
            "/usher/tenant",
            &admin,
            Some(json!({"allowPublicClientFlows": true})),
        )
        .await;
    assert_eq!(st, 200);
    s.create_user("eve@contoso.test", "Blue-river-72-Xy", false).await;
    let (_, t) = s.password_token("eve@contoso.test", "Blue-river-72-Xy").await;
    let eve = t["access_token"].as_str().unwrap().to_owned();
    let (st, b) = s
        .api(
            "PATCH",
            "/usher/tenant",
            &eve,
            Some(json!({"allowPublicClientFlows": false})),
        )
        .await;
    assert_eq!(st, 403, "{b}");
    assert_eq!(
        s.api("GET", "/usher/tenant", &eve, None).await.1["allowPublicClientFlows"],
        true
    );
    let (_, audit) = s
        .api("GET", "/v1.0/auditLogs/directoryAudits", &admin, None)
        .await;
    let n = audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["activityDisplayName"] == "Update tenant settings")
        .count();
    assert_eq!(n, 3, "every accepted change is audited, refused ones are not");
}

#[tokio::test]
async fn app_only_tokens_cannot_read_the_directory() {
    let s = spawn().await;
    let (app_id, obj) = s.create_app(json!({"displayName": "daemon"})).await;
    let secret = s.add_secret(&obj).await;
    let scope = format!("{}/.default", s.url);
    let (_, t) = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", &scope),
        ])
        .await;
    let app_token = t["access_token"].as_str().unwrap().to_owned();
    for path in [
        "/v1.0/users",
        "/v1.0/groups",
        "/v1.0/servicePrincipals",
        "/v1.0/applications",
        "/usher/tenant",
    ] {
        let (st, b) = s.api("GET", path, &app_token, None).await;
        assert_eq!(st, 403, "{path}: {b}");
        assert_eq!(b["error"]["code"], "Authorization_RequestDenied");
    }
}

#[tokio::test]
async fn a_user_administrator_cannot_take_over_a_global_administrator() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let ua = s.create_user("ua@contoso.test", "Green-valley-81", false).await;
    s.running()
        .state
        .dir()
        .assign_directory_role(&ua, usher_core::well_known::USER_ADMIN_ROLE)
        .await
        .unwrap();
    let (_, t) = s.password_token("ua@contoso.test", "Green-valley-81").await;
    let ua_token = t["access_token"].as_str().unwrap().to_owned();
    // A User Administrator manages ordinary users...
    let bob = s.create_user("bob@contoso.test", "Blue-river-72", false).await;
    let (st, _) = s
        .api(
            "PATCH",
            &format!("/v1.0/users/{bob}"),
            &ua_token,
            Some(json!({"displayName": "Bob"})),
        )
        .await;
    assert_eq!(st, 204);
    // ...but not a Global Administrator: no password reset, no disabling, no MFA change, no deletion.
    let (_, me) = s.api("GET", "/v1.0/me", &admin, None).await;
    let ga = me["id"].as_str().unwrap().to_owned();
    let attempts = [
        (
            "PATCH",
            format!("/v1.0/users/{ga}"),
            Some(json!({"passwordProfile": {"password": "Taken-over-pw-1"}})),
        ),
        (
            "PATCH",
            format!("/v1.0/users/{ga}"),
            Some(json!({"accountEnabled": false})),
        ),
        (
            "PATCH",
            format!("/beta/users/{ga}/authentication/requirements"),
            Some(json!({"perUserMfaState": "disabled"})),
        ),
        ("DELETE", format!("/v1.0/users/{ga}"), None),
    ];
    for (method, path, body) in attempts {
        let (st, b) = s.api(method, &path, &ua_token, body).await;
        assert_eq!(st, 403, "{method} {path}: {b}");
    }
    assert_eq!(
        s.password_token("admin@contoso.test", ADMIN_PASSWORD).await.0,
        200,
        "the administrator is untouched"
    );
}
