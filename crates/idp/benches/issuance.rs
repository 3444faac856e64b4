//! What Conditional Access adds to a token issuance (issue 6): a refresh-token grant for the VM
//! Sign-In app with no policies, then with 50 (the user in 20 of 200 groups, policies naming
//! groups, apps, locations, risk and exclusions), in process on SQLite; and the CA step alone
//! (policy cache, memberships, the risk read, evaluation).
//! Run: `cargo bench -p usher-idp --bench issuance`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark")]

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use usher_core::{SystemClock, SystemRng};
use usher_crypto::at_rest::SealingKey;
use usher_directory::{BootstrapOptions, Directory, NewUser};
use usher_idp::conditional::SignInContext;
use usher_idp::{Idp, RequestMeta};
use usher_proto::oauth::TokenRequest;
use usher_store_sqlite::SqliteStore;

const VM_APP: &str = "372140e0-b3b7-4226-8ef9-d57986796201";
const CLI: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (p(0.5), p(0.99))
}

fn meta() -> RequestMeta {
    RequestMeta {
        ip: "192.0.2.10".into(),
        correlation_id: "bench".into(),
        user_agent: "usher-client/bench (linux)".into(),
    }
}

async fn refresh_run(idp: &Idp, mut rt: String, n: usize) -> (Vec<u64>, String) {
    let meta = meta();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let req = TokenRequest {
            grant_type: "refresh_token".into(),
            client_id: Some(CLI.into()),
            refresh_token: Some(rt.clone()),
            scope: Some(format!("{VM_APP}/.default offline_access")),
            ..Default::default()
        };
        let t = Instant::now();
        let resp = idp.token("contoso.test", req, None, &meta).await.unwrap();
        samples.push(t.elapsed().as_nanos() as u64);
        rt = resp.refresh_token.unwrap();
    }
    (samples, rt)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&tmp.path().join("db")).await.unwrap());
    let (sealing, _) = SealingKey::generate(&SystemRng).unwrap();
    let dir = Directory::new(
        store,
        Arc::new(SystemClock),
        Arc::new(SystemRng),
        Arc::new(sealing),
        Arc::from(&b"fp-key"[..]),
    );
    dir.bootstrap(BootstrapOptions {
        domain: "contoso.test".into(),
        display_name: "Contoso".into(),
        admin_password: Some("Boot-strap-pass-42".to_owned().into()),
    })
    .await
    .unwrap();
    let user = dir
        .create_user(NewUser {
            user_principal_name: "ann@contoso.test".into(),
            display_name: "Ann".into(),
            mail_nickname: None,
            password: "Correct-Horse-9".into(),
            force_change_password_next_sign_in: false,
            account_enabled: true,
        })
        .await
        .unwrap();
    let mut groups = Vec::new();
    for i in 0..200 {
        let g = dir
            .create_group(&format!("g{i}"), None, None, true)
            .await
            .unwrap();
        if i % 10 == 0 {
            dir.add_member(&g.id, &user.id).await.unwrap();
        }
        groups.push(g.id);
    }
    let idp = Idp::new(dir.clone(), "https://usher.contoso.test").await.unwrap();
    let first = idp
        .token(
            "contoso.test",
            TokenRequest {
                grant_type: "password".into(),
                client_id: Some(CLI.into()),
                username: Some("ann@contoso.test".into()),
                password: Some("Correct-Horse-9".into()),
                scope: Some(format!("{VM_APP}/.default offline_access")),
                ..Default::default()
            },
            None,
            &meta(),
        )
        .await
        .unwrap();
    let rt = first.refresh_token.unwrap();
    let n = 600;
    let (_, rt) = refresh_run(&idp, rt, 50).await;
    let (without, rt) = refresh_run(&idp, rt, n).await;

    // Fifty policies; none stops this sign-in.
    for i in 0..50usize {
        let other_app = format!("00000000-0000-4000-8000-{:012x}", 7000 + i);
        let (conditions, grant) = match i % 5 {
            0 => (
                json!({"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": [other_app]}}),
                json!(["block"]),
            ),
            1 => (
                json!({"users": {"includeGroups": [groups[i * 4 + 1], groups[i * 4 + 3]]}, "applications": {"includeApplications": ["All"]}}),
                json!(["block"]),
            ),
            2 => (
                json!({"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": [VM_APP]},
                       "locations": {"includeLocations": [format!("10.{i}.0.0/16"), format!("10.{}.0.0/16", i + 100)]}}),
                json!(["block"]),
            ),
            3 => (
                json!({"users": {"includeUsers": ["All"], "excludeGroups": [groups[0]]}, "applications": {"includeApplications": [VM_APP]}}),
                json!(["mfa"]),
            ),
            _ => (
                json!({"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]},
                       "userRiskLevels": ["high"], "signInRiskLevels": ["high"]}),
                json!(["block"]),
            ),
        };
        let state = if i % 7 == 0 {
            "enabledForReportingButNotEnforced"
        } else {
            "enabled"
        };
        let p = serde_json::from_value(json!({"displayName": format!("policy {i:02}"), "state": state,
            "conditions": conditions, "grantControls": {"operator": "OR", "builtInControls": grant}}))
        .unwrap();
        dir.create_ca_policy(p).await.unwrap();
    }
    let (_, rt) = refresh_run(&idp, rt, 50).await;
    let (with, _) = refresh_run(&idp, rt, n).await;

    // The CA step alone, as issuance runs it.
    let ctx = SignInContext::new(
        "192.0.2.10",
        "usher-client/bench (linux)",
        usher_authz::conditional::ClientApp::MobileAppsAndDesktopClients,
    );
    let amr = vec!["pwd".to_owned()];
    let mut ca = Vec::with_capacity(20_000);
    for i in 0..21_000 {
        let t = Instant::now();
        let r = idp.evaluate_ca(&user, VM_APP, &amr, 0, &ctx, None).await.unwrap();
        if i >= 1_000 {
            ca.push(t.elapsed().as_nanos() as u64);
        }
        assert_eq!(r.evaluation.policies.len(), 50);
    }
    let (w50, w99) = percentiles(without);
    let (p50, p99) = percentiles(with);
    let (c50, c99) = percentiles(ca);
    println!("refresh grant, VM Sign-In app, no policies: p50 {w50:.1} µs, p99 {w99:.1} µs ({n} grants)");
    println!("refresh grant, VM Sign-In app, 50 policies: p50 {p50:.1} µs, p99 {p99:.1} µs ({n} grants)");
    println!(
        "added by Conditional Access (p50 difference): {:.1} µs",
        p50 - w50
    );
    println!(
        "CA step alone (cached policies, the user's 20 of 200 groups, cached risk, 50 policies): p50 {c50:.1} µs, p99 {c99:.1} µs (20,000 calls)"
    );
}
