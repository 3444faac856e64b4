//! Login-decision latency at tenant scale (DESIGN.md: p50 ≤ 10 µs, p99 ≤ 50 µs in process, with
//! 5,000 assignments per subscription, 1,000,000 in the tenant and 200 groups per user nested 5
//! deep). Run: `cargo bench -p usher-authz --bench tenant`. `TENANT_SUBS=N` (default 200) sets the
//! number of subscriptions, so the tenant holds N × 5,000 assignments; `TENANT_GROUP_SHARE=K`
//! (default 1000; 0: none) makes 1 in K of them held by one of the user's groups.
//!
//! The data is generated deterministically (an LCG, no `rand`); `bench/cedar-peer` generates the
//! same tenant with the same code shape and prints the same digest, so both engines answer the same
//! questions over the same assignments.
//!
//! - 200 subscriptions, each with 50 resource groups of 20 machines; 5,000 assignments in each
//!   subscription: 20 % at subscription scope, 40 % at resource-group scope, 40 % at machine scope.
//! - 999 in 1,000 of those are held by other principals (a pool of 100,000 users and groups), with
//!   any of the six built-in roles; 1 in 1,000 (about 1,000 in the tenant) by one of the user's
//!   groups, with a control-plane role (Owner, Contributor, Reader, User Access Administrator),
//!   which grants no login but still has to be looked at.
//! - The user is a direct member of 40 groups (level 1); each group of level k is a member of one
//!   or two groups of level k + 1, up to level 5: 200 groups. The engine receives the user's
//!   transitive group closure as its principal list, as the server does
//!   (`Directory::transitive_member_of`): here the closure is computed from the parent edges below,
//!   outside the timed region.
//! - Five of the user's groups hold login roles at resource-group or machine scope, one of them a
//!   level-5 group: Virtual Machine Administrator Login on machine `rg0/vm0` of the first
//!   subscription. Question (a) is that machine (Admin, only through the level-5 group; a level-2
//!   group also gives User there); question (b) a machine in the last subscription where nothing
//!   the user holds applies (Deny).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "benchmark")]

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use usher_authz::{Assignment, LoginRight, Scope, Snapshot, role_ids};

const PER_SUB: u64 = 5_000;
const RGS_PER_SUB: u64 = 50;
const VMS_PER_RG: u64 = 20;
const OTHER_PRINCIPALS: u64 = 100_000;
const LEVELS: u64 = 5;
const PER_LEVEL: u64 = 40;

fn guid(n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n >> 16, n)
}

fn sub_scope(s: u64) -> String {
    format!("/subscriptions/{}", guid(10_000_000 + s))
}

fn rg_scope(s: u64, r: u64) -> String {
    format!("{}/resourceGroups/rg{r}", sub_scope(s))
}

fn vm_scope(s: u64, r: u64, v: u64) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/vm{v}",
        rg_scope(s, r)
    )
}

/// Group `i` (0..40) of level `level` (1..=5).
fn group(level: u64, i: u64) -> String {
    guid(3_000_000 + level * 1_000 + i)
}

/// The groups a group of `level` (< 5) is directly a member of.
fn parents(level: u64, i: u64) -> Vec<String> {
    let mut p = vec![group(level + 1, i)];
    if i.is_multiple_of(2) {
        let j = (i * 7 + 3) % PER_LEVEL;
        if j != i {
            p.push(group(level + 1, j));
        }
    }
    p
}

/// Knuth's MMIX LCG; the high bits are used.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, m: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % m
    }
}

/// FNV-1a over `id|scope (lower case)|role|principal\n`, to show both benches hold the same data.
struct Digest(u64);

impl Digest {
    fn add(&mut self, parts: [&str; 4]) {
        for (k, p) in parts.iter().enumerate() {
            for b in p
                .bytes()
                .chain(std::iter::once(if k == 3 { b'\n' } else { b'|' }))
            {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
}

/// Every assignment of the tenant, in a fixed order: (id, scope, role id, principal id).
fn tenant(subs: u64, group_share: u64, mut f: impl FnMut(String, String, &str, String)) {
    let last = subs - 1;
    // The user's login grants (five of them; four in the first subscription, one in the last).
    let special = [
        (
            group(5, 17),
            vm_scope(0, 0, 0),
            role_ids::VM_ADMINISTRATOR_LOGIN,
            0,
        ),
        (group(2, 3), rg_scope(0, 0), role_ids::VM_USER_LOGIN, 0),
        (group(3, 11), rg_scope(0, 2), role_ids::VM_ADMINISTRATOR_LOGIN, 0),
        (group(1, 20), vm_scope(0, 3, 7), role_ids::VM_USER_LOGIN, 0),
        (
            group(4, 30),
            rg_scope(last, 5),
            role_ids::VM_ADMINISTRATOR_LOGIN,
            last,
        ),
    ];
    let all_roles = [
        role_ids::OWNER,
        role_ids::CONTRIBUTOR,
        role_ids::READER,
        role_ids::USER_ACCESS_ADMINISTRATOR,
        role_ids::VM_ADMINISTRATOR_LOGIN,
        role_ids::VM_USER_LOGIN,
    ];
    let mut rng = Lcg(0x5eed_0000_0000_0001);
    let mut n = 0u64;
    for s in 0..subs {
        let mut count = PER_SUB;
        for (k, (p, scope, role, in_sub)) in special.iter().enumerate() {
            if *in_sub == s {
                f(guid(4_000_000 + k as u64), scope.clone(), role, p.clone());
                count -= 1;
            }
        }
        for _ in 0..count {
            let level = rng.next(10);
            let r = rng.next(RGS_PER_SUB);
            let v = rng.next(VMS_PER_RG);
            let scope = match level {
                0..=1 => sub_scope(s),
                2..=5 => rg_scope(s, r),
                _ => vm_scope(s, r, v),
            };
            let (principal, role) = if group_share > 0 && rng.next(group_share) == 0 {
                let g = group(1 + rng.next(LEVELS), rng.next(PER_LEVEL));
                (g, all_roles[rng.next(4) as usize])
            } else {
                let p = guid(20_000_000 + rng.next(OTHER_PRINCIPALS));
                (p, all_roles[rng.next(6) as usize])
            };
            f(guid(100_000_000 + n), scope, role, principal);
            n += 1;
        }
    }
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn measure(s: &Snapshot, principals: &[&str], vm: &Scope, label: &str) {
    let n = 200_000;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..1_000 {
        std::hint::black_box(s.login_decision(std::hint::black_box(principals), vm));
    }
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(s.login_decision(std::hint::black_box(principals), vm));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    println!(
        "login_decision {label}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs ({n} samples)",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}

fn main() {
    let subs: u64 = std::env::var("TENANT_SUBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(200);
    let group_share: u64 = std::env::var("TENANT_GROUP_SHARE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);

    // The user's transitive groups, from the explicit parent edges (depth first; order does not
    // matter). The server hands the engine the same closure.
    let user = guid(1);
    let edges: HashMap<String, Vec<String>> = (1..LEVELS)
        .flat_map(|l| (0..PER_LEVEL).map(move |i| (group(l, i), parents(l, i))))
        .collect();
    let mut closure: BTreeSet<String> = BTreeSet::new();
    let mut frontier: Vec<String> = (0..PER_LEVEL).map(|i| group(1, i)).collect();
    while let Some(g) = frontier.pop() {
        if closure.insert(g.clone()) {
            frontier.extend(edges.get(&g).into_iter().flatten().cloned());
        }
    }
    assert_eq!(closure.len(), 200, "200 groups, nested 5 deep");
    let mut principals: Vec<&str> = vec![user.as_str()];
    principals.extend(closure.iter().map(String::as_str));

    let t = Instant::now();
    let mut s = Snapshot::with_builtin_roles();
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    let mut held_by_user = 0usize;
    tenant(subs, group_share, |id, scope, role, principal| {
        let scope = Scope::parse(&scope).unwrap();
        digest.add([&id, scope.as_str(), role, &principal]);
        if principal == user || closure.contains(&principal) {
            held_by_user += 1;
        }
        s.upsert_assignment(Assignment {
            id,
            scope,
            role_id: role.into(),
            principal_id: principal,
        });
    });
    let build = t.elapsed();
    let rss = rss_mb();

    println!(
        "tenant: {subs} subscriptions, {} assignments (digest {:016x}), built in {:.2} s, VmRSS {rss:.1} MB; \
         user + {} transitive groups ({LEVELS} levels) holding {held_by_user} of the assignments",
        s.assignment_count(),
        digest.0,
        build.as_secs_f64(),
        closure.len()
    );

    let admin_vm = Scope::parse(&vm_scope(0, 0, 0)).unwrap();
    let deny_vm = Scope::parse(&vm_scope(subs - 1, 7, 3)).unwrap();
    let a = s.login_decision(&principals, &admin_vm);
    assert_eq!(a.right, LoginRight::Admin);
    assert_eq!(
        a.decided_by,
        vec![guid(4_000_000)],
        "only the level-5 group's assignment"
    );
    // The level-5 group is not a direct group of the user: with only the direct groups, no login.
    let direct_groups: Vec<String> = (0..PER_LEVEL).map(|i| group(1, i)).collect();
    let mut direct: Vec<&str> = vec![user.as_str()];
    direct.extend(direct_groups.iter().map(String::as_str));
    assert_eq!(s.login_decision(&direct, &admin_vm).right, LoginRight::Deny);
    let b = s.login_decision(&principals, &deny_vm);
    assert_eq!(b.right, LoginRight::Deny);

    measure(&s, &principals, &admin_vm, "(a) admin via a level-5 group");
    measure(&s, &principals, &deny_vm, "(b) denied");
}
