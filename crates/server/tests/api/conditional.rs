//! Conditional Access end to end over HTTP (SPEC C1–C4): the policy API, enforcement at token
//! issuance (password, refresh, device code with step-up), the sign-in log's per-policy results,
//! named locations by the client's real source address, what-if, and risk.

use std::net::IpAddr;

use serde_json::{Value, json};
use usher_testkit::{CLI_CLIENT_ID, TestServer, spawn};

use crate::helpers::{assert_entra, jwt_parts, post_login, txn_of};

const VM_APP: &str = "372140e0-b3b7-4226-8ef9-d57986796201";
const PW: &str = "Correct-Horse-9";
const POLICIES: &str = "/v1.0/identity/conditionalAccess/policies";

/// A password-grant token for the VM Sign-In app (what a machine login asks for).
async fn vm_token(s: &TestServer, upn: &str) -> (u16, Value) {
    s.token(&[
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", upn),
        ("password", PW),
        ("scope", &format!("{VM_APP}/.default offline_access")),
    ])
    .await
}

/// The same, from another loopback source address (a different client network).
async fn vm_token_from(s: &TestServer, upn: &str, from: &str) -> (u16, Value) {
    let pem = std::fs::read(&s.ca).unwrap();
    let c = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = c
        .post(s.token_url())
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", upn),
            ("password", PW),
            ("scope", &format!("{VM_APP}/.default offline_access")),
        ])
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap())
}

async fn policy(s: &TestServer, admin: &str, body: Value) -> String {
    let (st, b) = s.api("POST", POLICIES, admin, Some(body)).await;
    assert_eq!(st, 201, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The newest sign-in log entry of a user.
async fn last_sign_in(s: &TestServer, admin: &str, upn: &str) -> Value {
    let (st, b) = s
        .api(
            "GET",
            &format!("/v1.0/auditLogs/signIns?$filter=userPrincipalName%20eq%20'{upn}'&$top=1"),
            admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    b["value"][0].clone()
}

fn policy_result<'a>(entry: &'a Value, name: &str) -> &'a Value {
    entry["appliedConditionalAccessPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["displayName"] == name)
        .unwrap_or_else(|| panic!("{name} not in {entry}"))
}

#[tokio::test]
async fn policies_are_validated_stored_audited_and_for_admins_only() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let ann = s.create_user("ann@contoso.test", PW, false).await;
    s.create_user("bob@contoso.test", PW, false).await;
    // The minimal policy, accepted as is.
    let minimal = json!({"displayName": "block ann", "state": "enabled",
        "conditions": {"users": {"includeUsers": [ann]},
                       "applications": {"includeApplications": [VM_APP]}},
        "grantControls": {"operator": "OR", "builtInControls": ["block"]}});
    let id = policy(&s, &admin, minimal).await;
    let (st, got) = s.api("GET", &format!("{POLICIES}/{id}"), &admin, None).await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["displayName"], "block ann");
    assert_eq!(got["conditions"]["users"]["includeUsers"], json!([ann]));
    assert_eq!(got["grantControls"]["builtInControls"], json!(["block"]));
    assert!(got["createdDateTime"].as_str().is_some());

    // Bad input: a clear 400 naming the problem, and nothing stored.
    let bad = [
        (
            json!({"displayName": "x", "state": "on", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}}, "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
            "state",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}}, "grantControls": {"operator": "OR", "builtInControls": ["compliantDevice"]}}),
            "compliantDevice",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["nobody@contoso.test"]}, "applications": {"includeApplications": ["All"]}}, "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
            "nobody@contoso.test",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}, "locations": {"includeLocations": ["10.0.0.0/33"]}}, "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
            "10.0.0.0/33",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}}}),
            "grant controls",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["Office365"]}}, "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
            "Office365",
        ),
        (
            json!({"displayName": "x", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}}, "grantControls": {"operator": "OR", "authenticationStrength": {"id": "00000000-0000-0000-0000-000000000009"}}}),
            "authenticationStrength",
        ),
    ];
    for (body, needle) in bad {
        let (st, b) = s.api("POST", POLICIES, &admin, Some(body)).await;
        assert_eq!(st, 400, "{b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    let r = s
        .client()
        .post(format!("{}{POLICIES}", s.url))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, list) = s.api("GET", POLICIES, &admin, None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1, "{list}");

    // PATCH changes what it names and keeps the rest; a bad PATCH changes nothing.
    let (st, b) = s
        .api(
            "PATCH",
            &format!("{POLICIES}/{id}"),
            &admin,
            Some(json!({"state": "enabledForReportingButNotEnforced"})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let (st, b) = s
        .api(
            "PATCH",
            &format!("{POLICIES}/{id}"),
            &admin,
            Some(json!({"grantControls": {"builtInControls": ["teleport"]}})),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    let (_, got) = s.api("GET", &format!("{POLICIES}/{id}"), &admin, None).await;
    assert_eq!(got["state"], "enabledForReportingButNotEnforced");
    assert_eq!(got["grantControls"]["builtInControls"], json!(["block"]));
    assert_eq!(got["conditions"]["users"]["includeUsers"], json!([ann]));

    // Only administrators.
    let (st, bob) = s.password_token("bob@contoso.test", PW).await;
    assert_eq!(st, 200, "{bob}");
    let bob = bob["access_token"].as_str().unwrap();
    for (m, p) in [
        ("GET", POLICIES.to_owned()),
        ("DELETE", format!("{POLICIES}/{id}")),
    ] {
        let (st, b) = s.api(m, &p, bob, None).await;
        assert_eq!(st, 403, "{m} {p}: {b}");
    }

    // Named locations: used ones cannot go.
    let (st, loc) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/namedLocations",
            &admin,
            Some(
                json!({"@odata.type": "#microsoft.graph.ipNamedLocation", "displayName": "office",
                        "isTrusted": true, "ipRanges": [{"cidrAddress": "10.20.0.0/16"}]}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{loc}");
    let loc_id = loc["id"].as_str().unwrap();
    let uses = policy(
        &s,
        &admin,
        json!({"displayName": "office only", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["bob@contoso.test"]},
                "applications": {"includeApplications": [VM_APP]},
                "locations": {"includeLocations": ["All"], "excludeLocations": [loc_id]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}),
    )
    .await;
    let (st, b) = s
        .api(
            "DELETE",
            &format!("/v1.0/identity/conditionalAccess/namedLocations/{loc_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 409, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("office only"));
    // The UPN was stored as the object id.
    let (_, got) = s.api("GET", &format!("{POLICIES}/{uses}"), &admin, None).await;
    assert!(
        super::helpers::is_guid(got["conditions"]["users"]["includeUsers"][0].as_str().unwrap()),
        "{got}"
    );
    for p in [&uses, &id] {
        let (st, _) = s.api("DELETE", &format!("{POLICIES}/{p}"), &admin, None).await;
        assert_eq!(st, 204);
    }
    let (st, _) = s
        .api(
            "DELETE",
            &format!("/v1.0/identity/conditionalAccess/namedLocations/{loc_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = s.api("GET", &format!("{POLICIES}/{id}"), &admin, None).await;
    assert_eq!(st, 404);

    // Every change is audited.
    let (_, audits) = s
        .api("GET", "/v1.0/auditLogs/directoryAudits", &admin, None)
        .await;
    let names: Vec<&str> = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["activityDisplayName"].as_str().unwrap())
        .collect();
    for a in [
        "Add conditional access policy",
        "Update conditional access policy",
        "Delete conditional access policy",
        "Add named location",
        "Delete named location",
    ] {
        assert!(names.contains(&a), "{a} not audited: {names:?}");
    }
    // The built-in strengths are published.
    let (st, b) = s
        .api(
            "GET",
            "/v1.0/identity/conditionalAccess/authenticationStrength/policies",
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(b["value"][2]["displayName"], "Phishing-resistant MFA");
}

#[tokio::test]
async fn token_issuance_enforces_block_report_only_exclusions_and_client_address() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let ann = s.create_user("ann@contoso.test", PW, false).await;
    s.create_user("bob@contoso.test", PW, false).await;
    let id = policy(
        &s,
        &admin,
        json!({"displayName": "block ann", "state": "enabled",
            "conditions": {"users": {"includeUsers": [ann]}, "applications": {"includeApplications": [VM_APP]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}),
    )
    .await;
    let (st, b) = vm_token(&s, "ann@contoso.test").await;
    assert_entra(st, &b, 400, "invalid_grant", 53003);
    let entry = last_sign_in(&s, &admin, "ann@contoso.test").await;
    assert_eq!(entry["status"]["errorCode"], 53003);
    assert_eq!(entry["conditionalAccessStatus"], "failure");
    assert_eq!(policy_result(&entry, "block ann")["result"], "failure");
    // Another app is not targeted; another user is not included.
    let (st, b) = s.password_token("ann@contoso.test", PW).await;
    assert_eq!(st, 200, "{b}");
    let entry = last_sign_in(&s, &admin, "ann@contoso.test").await;
    assert_eq!(
        policy_result(&entry, "block ann")["notAppliedReason"],
        "appNotIncluded"
    );
    assert_eq!(vm_token(&s, "bob@contoso.test").await.0, 200);
    let entry = last_sign_in(&s, &admin, "bob@contoso.test").await;
    assert_eq!(
        policy_result(&entry, "block ann")["notAppliedReason"],
        "userNotIncluded"
    );

    // Report-only changes nothing but is logged with what it would have done.
    let (st, _) = s
        .api(
            "PATCH",
            &format!("{POLICIES}/{id}"),
            &admin,
            Some(json!({"state": "enabledForReportingButNotEnforced"})),
        )
        .await;
    assert_eq!(st, 204);
    let (st, b) = vm_token(&s, "ann@contoso.test").await;
    assert_eq!(st, 200, "{b}");
    let entry = last_sign_in(&s, &admin, "ann@contoso.test").await;
    let r = policy_result(&entry, "block ann");
    assert_eq!(
        (r["result"].as_str(), r["wouldHave"].as_str()),
        (Some("reportOnlyFailure"), Some("block"))
    );
    assert_eq!(entry["status"]["errorCode"], 0);

    // Everyone but a break-glass account (and the administrator).
    let (st, _) = s.api("DELETE", &format!("{POLICIES}/{id}"), &admin, None).await;
    assert_eq!(st, 204);
    let all = policy(
        &s,
        &admin,
        json!({"displayName": "block all but break-glass", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["ann@contoso.test", "admin@contoso.test"]},
                           "applications": {"includeApplications": [VM_APP]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}),
    )
    .await;
    assert_eq!(vm_token(&s, "ann@contoso.test").await.0, 200);
    let (st, b) = vm_token(&s, "bob@contoso.test").await;
    assert_entra(st, &b, 400, "invalid_grant", 53003);
    let (st, _) = s.api("DELETE", &format!("{POLICIES}/{all}"), &admin, None).await;
    assert_eq!(st, 204);

    // Named locations match the client's real source address: 127.0.1.0/24 is blocked, the
    // usual 127.0.0.1 is not.
    let loc = policy(
        &s,
        &admin,
        json!({"displayName": "no sign-ins from 127.0.1.0/24", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["admin@contoso.test"]},
                           "applications": {"includeApplications": ["All"]},
                           "locations": {"includeLocations": ["127.0.1.0/24"]}},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}),
    )
    .await;
    let (st, b) = vm_token_from(&s, "bob@contoso.test", "127.0.1.7").await;
    assert_entra(st, &b, 400, "invalid_grant", 53003);
    let entry = last_sign_in(&s, &admin, "bob@contoso.test").await;
    assert_eq!(entry["ipAddress"], "127.0.1.7");
    let (st, b) = vm_token(&s, "bob@contoso.test").await;
    assert_eq!(st, 200, "{b}");
    let entry = last_sign_in(&s, &admin, "bob@contoso.test").await;
    assert_eq!(
        policy_result(&entry, "no sign-ins from 127.0.1.0/24")["notAppliedReason"],
        "location"
    );
    // What-if agrees, with and without the address.
    let (st, w) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/evaluate",
            &admin,
            Some(json!({"user": "bob@contoso.test", "appId": VM_APP, "ipAddress": "127.0.1.9"})),
        )
        .await;
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["decision"], "block");
    assert_eq!(w["policies"][0]["applies"], true);
    let (_, w) = s
        .api(
            "POST",
            "/v1.0/identity/conditionalAccess/evaluate",
            &admin,
            Some(json!({"user": "bob@contoso.test", "appId": VM_APP, "ipAddress": "10.9.9.9"})),
        )
        .await;
    assert_eq!(w["decision"], "allow");
    assert_eq!(w["policies"][0]["notAppliedReason"], "location");
    let (st, _) = s.api("DELETE", &format!("{POLICIES}/{loc}"), &admin, None).await;
    assert_eq!(st, 204);

    // A joined device is required: the CLI's password grant is not relayed by a machine.
    policy(
        &s,
        &admin,
        json!({"displayName": "joined only", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["bob@contoso.test"]}, "applications": {"includeApplications": [VM_APP]}},
            "grantControls": {"operator": "OR", "builtInControls": ["domainJoinedDevice"]}}),
    )
    .await;
    let (st, b) = vm_token(&s, "bob@contoso.test").await;
    assert_entra(st, &b, 400, "invalid_grant", 53001);
}

#[tokio::test]
async fn refresh_and_device_code_step_up_and_sign_in_frequency() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let carl = s.create_user("carl@contoso.test", PW, false).await;
    let dir = s.running().state.dir();
    let secret = b"usher-test-totp-secret-20bytes!!".to_vec();
    let b32 = usher_crypto::totp::base32(&secret);
    let now = dir.clock().now_unix();
    let code = usher_crypto::totp::current_code(&b32, now).unwrap();
    assert!(dir.register_totp(&carl, &secret, &code).await.unwrap());

    let (st, b) = vm_token(&s, "carl@contoso.test").await;
    assert_eq!(st, 200, "{b}");
    let rt = b["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        jwt_parts(b["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd"])
    );
    let mfa = policy(
        &s,
        &admin,
        json!({"displayName": "mfa for machines", "state": "enabled",
            "conditions": {"users": {"includeUsers": [carl]}, "applications": {"includeApplications": [VM_APP]}},
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
    )
    .await;
    // The password grant cannot do MFA; the refresh of a password-only sign-in is refused too,
    // and the refusal does not spend the refresh token.
    let (st, b) = vm_token(&s, "carl@contoso.test").await;
    assert_entra(st, &b, 400, "invalid_grant", 50076);
    let refresh = |rt: String, scope: String| {
        let s = &s;
        async move {
            s.token(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLI_CLIENT_ID),
                ("refresh_token", rt.as_str()),
                ("scope", scope.as_str()),
            ])
            .await
        }
    };
    let vm_scope = format!("{VM_APP}/.default offline_access");
    let (st, b) = refresh(rt.clone(), vm_scope.clone()).await;
    assert_entra(st, &b, 400, "invalid_grant", 50076);
    let (st, b) = refresh(rt.clone(), "openid offline_access".into()).await;
    assert_eq!(st, 200, "the refused refresh must not spend the token: {b}");

    // Device code for the VM Sign-In app: the page steps up to the one-time code.
    let r = s
        .client()
        .post(format!("{}/contoso.test/oauth2/v2.0/devicecode", s.url))
        .form(&[("client_id", CLI_CLIENT_ID), ("scope", vm_scope.as_str())])
        .send()
        .await
        .unwrap();
    let d: Value = r.json().await.unwrap();
    let browser = s.client();
    let r = browser
        .post(format!("{}/devicelogin", s.url))
        .form(&[("user_code", d["user_code"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    let txn = txn_of(&r.text().await.unwrap());
    let page = post_login(
        &s,
        &browser,
        &[
            ("txn", &txn),
            ("step", "password"),
            ("username", "carl@contoso.test"),
            ("password", PW),
        ],
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        page.contains("authenticator app"),
        "step-up to the code expected: {page}"
    );
    let next = usher_crypto::totp::current_code(&b32, now + 30).unwrap();
    let page = post_login(&s, &browser, &[("txn", &txn), ("step", "totp"), ("code", &next)])
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"done\""), "{page}");
    let (st, b) = s
        .token(&[
            ("grant_type", usher_proto::oauth::DEVICE_CODE_GRANT),
            ("client_id", CLI_CLIENT_ID),
            ("device_code", d["device_code"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    let claims = jwt_parts(b["access_token"].as_str().unwrap()).1;
    let mut amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    amr.sort_unstable();
    assert_eq!(amr, ["mfa", "otp", "pwd"]);
    assert_eq!(claims["acr"], "2");
    let entry = last_sign_in(&s, &admin, "carl@contoso.test").await;
    assert_eq!(policy_result(&entry, "mfa for machines")["result"], "success");
    assert_eq!(entry["conditionalAccessStatus"], "success");
    let rt_mfa = b["refresh_token"].as_str().unwrap().to_owned();
    let (st, b) = refresh(rt_mfa, vm_scope.clone()).await;
    assert_eq!(st, 200, "{b}");
    let rt_mfa = b["refresh_token"].as_str().unwrap().to_owned();

    // Sign-in frequency "every time": a refresh is not a fresh sign-in.
    let (st, _) = s
        .api(
            "PATCH",
            &format!("{POLICIES}/{mfa}"),
            &admin,
            Some(json!({"sessionControls": {"signInFrequency": {"isEnabled": true, "frequencyInterval": "everyTime"}}})),
        )
        .await;
    assert_eq!(st, 204);
    // Within five minutes of the sign-in a refresh still counts (Entra's grace, so an SSH
    // certificate can follow a sign-in); later ones need a new sign-in (70044, unit-tested in
    // the engine and in the refusal mapping).
    let (st, b) = refresh(rt_mfa, vm_scope).await;
    assert_eq!(st, 200, "{b}");
    let entry = last_sign_in(&s, &admin, "carl@contoso.test").await;
    assert_eq!(policy_result(&entry, "mfa for machines")["result"], "success");
}

#[tokio::test]
async fn risk_from_failures_networks_and_admins_drives_policies() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    s.create_user("dan@contoso.test", PW, false).await;
    policy(
        &s,
        &admin,
        json!({"displayName": "block risky users", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["admin@contoso.test"]},
                           "applications": {"includeApplications": ["All"]}, "userRiskLevels": ["high"]},
            "grantControls": {"operator": "OR", "builtInControls": ["block"]}}),
    )
    .await;
    policy(
        &s,
        &admin,
        json!({"displayName": "mfa on risky sign-ins", "state": "enabledForReportingButNotEnforced",
            "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]},
                           "signInRiskLevels": ["medium", "high"]},
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}),
    )
    .await;
    assert_eq!(vm_token(&s, "dan@contoso.test").await.0, 200);
    let entry = last_sign_in(&s, &admin, "dan@contoso.test").await;
    assert_eq!(entry["riskLevelDuringSignIn"], "none");
    // Five wrong passwords, then the right one: a medium-risk sign-in.
    for i in 0..5 {
        let (st, _) = s
            .password_token("dan@contoso.test", &format!("Wrong-{i}-pass"))
            .await;
        assert_eq!(st, 400);
    }
    assert_eq!(vm_token(&s, "dan@contoso.test").await.0, 200);
    let entry = last_sign_in(&s, &admin, "dan@contoso.test").await;
    assert_eq!(entry["riskLevelDuringSignIn"], "medium", "{entry}");
    assert_eq!(entry["riskEventTypes"], json!(["failedAttemptsBurst"]));
    assert_eq!(
        policy_result(&entry, "mfa on risky sign-ins")["result"],
        "reportOnlyFailure"
    );
    // From an unfamiliar network right after the burst: high.
    assert_eq!(vm_token_from(&s, "dan@contoso.test", "127.0.2.5").await.0, 200);
    let entry = last_sign_in(&s, &admin, "dan@contoso.test").await;
    assert_eq!(entry["riskLevelDuringSignIn"], "high", "{entry}");

    // An administrator confirms the account compromised: user risk high blocks.
    let (_, dan) = s.api("GET", "/v1.0/users/dan@contoso.test", &admin, None).await;
    let dan_id = dan["id"].as_str().unwrap();
    let (st, b) = s
        .api(
            "POST",
            "/v1.0/identityProtection/riskyUsers/confirmCompromised",
            &admin,
            Some(json!({"userIds": [dan_id]})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let (st, b) = vm_token(&s, "dan@contoso.test").await;
    assert_entra(st, &b, 400, "invalid_grant", 53003);
    let (_, risky) = s
        .api("GET", "/v1.0/identityProtection/riskyUsers", &admin, None)
        .await;
    assert_eq!(risky["value"][0]["riskState"], "confirmedCompromised", "{risky}");
    assert_eq!(risky["value"][0]["riskLevel"], "high");
    // An unknown id changes nothing.
    let (st, _) = s
        .api(
            "POST",
            "/v1.0/identityProtection/riskyUsers/dismiss",
            &admin,
            Some(json!({"userIds": [dan_id, "nobody@contoso.test"]})),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(vm_token(&s, "dan@contoso.test").await.0, 400);
    // Dismissed: signs in again, and earlier failures no longer count.
    let (st, _) = s
        .api(
            "POST",
            "/v1.0/identityProtection/riskyUsers/dismiss",
            &admin,
            Some(json!({"userIds": [dan_id]})),
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(vm_token(&s, "dan@contoso.test").await.0, 200);
    let entry = last_sign_in(&s, &admin, "dan@contoso.test").await;
    assert_eq!(entry["riskLevelDuringSignIn"], "none", "{entry}");
    let (_, risky) = s
        .api("GET", "/v1.0/identityProtection/riskyUsers", &admin, None)
        .await;
    assert_eq!(risky["value"][0]["riskState"], "dismissed", "{risky}");
}
