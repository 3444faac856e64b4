//! Login-decision latency (DESIGN.md: p50 ≤ 10 µs, p99 ≤ 50 µs with 5,000 assignments per scope
//! and 200 groups per user). Run: `cargo bench -p usher-authz --bench decision`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark")]

use std::time::Instant;

use usher_authz::{Assignment, LoginRight, Scope, Snapshot, role_ids};

const SUB: &str = "/subscriptions/11111111-1111-1111-1111-111111111111";

fn guid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 16, n)
}

fn main() {
    let mut s = Snapshot::with_builtin_roles();
    // 5,000 assignments at the subscription scope, for other principals.
    for i in 0..5_000u64 {
        let role = if i % 2 == 0 {
            role_ids::VM_USER_LOGIN
        } else {
            role_ids::READER
        };
        s.upsert_assignment(Assignment {
            id: guid(1_000_000 + i),
            scope: Scope::parse(SUB).unwrap(),
            role_id: role.into(),
            principal_id: guid(2_000_000 + i),
        });
    }
    // The user is in 200 groups; a few of them hold roles at resource-group and machine scope.
    let user = guid(1);
    let groups: Vec<String> = (0..200u64).map(|i| guid(3_000_000 + i)).collect();
    for (i, g) in groups.iter().enumerate().step_by(40) {
        let at = if i % 80 == 0 {
            format!("{SUB}/resourceGroups/rg{i}")
        } else {
            format!("{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm{i}")
        };
        s.upsert_assignment(Assignment {
            id: guid(4_000_000 + i as u64),
            scope: Scope::parse(&at).unwrap(),
            role_id: role_ids::VM_ADMINISTRATOR_LOGIN.into(),
            principal_id: g.clone(),
        });
    }
    s.upsert_assignment(Assignment {
        id: guid(5_000_000),
        scope: Scope::parse(&format!("{SUB}/resourceGroups/rg1")).unwrap(),
        role_id: role_ids::VM_USER_LOGIN.into(),
        principal_id: user.clone(),
    });
    let mut principals: Vec<&str> = vec![user.as_str()];
    principals.extend(groups.iter().map(String::as_str));
    let vm = Scope::parse(&format!(
        "{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1"
    ))
    .unwrap();
    assert_eq!(s.login_decision(&principals, &vm).right, LoginRight::User);

    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..1_000 {
        std::hint::black_box(s.login_decision(std::hint::black_box(&principals), &vm));
    }
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(s.login_decision(std::hint::black_box(&principals), &vm));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    println!(
        "login_decision: {} assignments, {} principals (user + 200 groups): p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs ({n} samples)",
        s.assignment_count(),
        principals.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}
