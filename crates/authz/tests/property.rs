//! Property test: the engine agrees with a deliberately naive reference evaluator on random role
//! definitions (wildcards, Not* rules, several blocks), random scope hierarchies, and random nested
//! groups. Deterministic: a fixed-seed xorshift generator, many cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeSet;

use usher_authz::{
    ActionKind, Assignment, LoginRight, Permission, RoleDefinition, Scope, Snapshot, VM_LOGIN,
    VM_LOGIN_AS_ADMIN,
};

struct Gen(u64);

impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.next(xs.len())]
    }
}

const SUB: &str = "/subscriptions/s1";
const SCOPES: &[&str] = &[
    "/subscriptions/s1",
    "/subscriptions/s1/resourceGroups/rg1",
    "/subscriptions/s1/resourceGroups/rg10",
    "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1",
    "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm2",
    "/subscriptions/s1/resourceGroups/rg10/providers/Microsoft.Compute/virtualMachines/vm1",
    "/subscriptions/s2",
];
const PATTERNS: &[&str] = &[
    "*",
    "*/read",
    "*/action",
    "Microsoft.Compute/*",
    "Microsoft.Compute/virtualMachines/*",
    "Microsoft.Compute/virtualMachines/login/action",
    "Microsoft.Compute/virtualMachines/loginAsAdmin/action",
    "microsoft.compute/VIRTUALMACHINES/*/action",
    "*/loginAsAdmin/*",
    "Microsoft.Authorization/*",
    "Microsoft.Authorization/*/write",
    "*/Write",
    "Microsoft.Compute/virtualMachines/*/read",
];
const ACTIONS: &[&str] = &[
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/extensions/read",
    "Microsoft.Compute/virtualMachines/login/action",
    "Microsoft.Compute/virtualMachines/loginAsAdmin/action",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Resources/subscriptions/resourceGroups/write",
];

/// The oracle's wildcard matcher: recursive, obviously right.
fn naive_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| naive_match(rest, &s[i..])),
        Some((c, rest)) => s.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && naive_match(rest, &s[1..]),
    }
}

/// The oracle's scope containment: segment lists, case-insensitive prefix.
fn naive_contains(outer: &str, inner: &str) -> bool {
    let segs = |s: &str| {
        s.to_ascii_lowercase()
            .split('/')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (o, i) = (segs(outer), segs(inner));
    o.len() <= i.len() && o.iter().zip(&i).all(|(a, b)| a == b)
}

fn naive_allows(
    roles: &[RoleDefinition],
    assignments: &[(String, String, String)],
    principals: &BTreeSet<String>,
    resource: &str,
    kind: ActionKind,
    action: &str,
) -> bool {
    assignments.iter().any(|(scope, role_id, principal)| {
        principals.contains(principal)
            && naive_contains(scope, resource)
            && roles.iter().filter(|r| &r.id == role_id).any(|r| {
                r.permissions.iter().any(|p| {
                    let (allow, deny) = match kind {
                        ActionKind::Action => (&p.actions, &p.not_actions),
                        ActionKind::DataAction => (&p.data_actions, &p.not_data_actions),
                    };
                    allow.iter().any(|x| naive_match(x.as_bytes(), action.as_bytes()))
                        && !deny.iter().any(|x| naive_match(x.as_bytes(), action.as_bytes()))
                })
            })
    })
}

/// Transitive groups by fixpoint iteration (the oracle's way).
fn naive_groups(user: &str, edges: &[(String, String)]) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = BTreeSet::from([user.to_owned()]);
    loop {
        let before = set.len();
        for (member, group) in edges {
            if set.contains(member) {
                set.insert(group.clone());
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

fn patterns(g: &mut Gen, max: usize) -> Vec<String> {
    (0..g.next(max + 1))
        .map(|_| g.pick(PATTERNS).to_owned())
        .collect()
}

#[test]
fn engine_agrees_with_the_naive_evaluator() {
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    let mut checks = 0;
    for case in 0..400 {
        // Roles: 1-4, each with 1-3 blocks of random allow/deny patterns.
        let roles: Vec<RoleDefinition> = (0..1 + g.next(4))
            .map(|i| RoleDefinition {
                id: format!("r{i}"),
                name: format!("role {i}"),
                permissions: (0..1 + g.next(3))
                    .map(|_| Permission {
                        actions: patterns(&mut g, 3),
                        not_actions: patterns(&mut g, 2),
                        data_actions: patterns(&mut g, 3),
                        not_data_actions: patterns(&mut g, 2),
                    })
                    .collect(),
                assignable_scopes: vec!["/".into()],
            })
            .collect();
        // Groups nested up to 5 deep (random edges between g0..g6, possibly cyclic), the user in some.
        let mut edges: Vec<(String, String)> = Vec::new();
        for _ in 0..g.next(10) {
            edges.push((format!("g{}", g.next(7)), format!("g{}", g.next(7))));
        }
        for _ in 0..g.next(3) {
            edges.push(("user".into(), format!("g{}", g.next(7))));
        }
        // Assignments to the user, groups and strangers.
        let principals_pool = ["user", "g0", "g1", "g2", "g3", "g4", "g5", "g6", "stranger"];
        let assignments: Vec<(String, String, String)> = (0..g.next(8))
            .map(|_| {
                (
                    g.pick(SCOPES).to_owned(),
                    format!("r{}", g.next(5)),
                    g.pick(&principals_pool).to_owned(),
                )
            })
            .collect();
        let mut snap = Snapshot::default();
        for r in &roles {
            snap.upsert_role(r.clone());
        }
        for (i, (scope, role, principal)) in assignments.iter().enumerate() {
            snap.upsert_assignment(Assignment {
                id: format!("a{i}"),
                scope: Scope::parse(scope).unwrap(),
                role_id: role.clone(),
                principal_id: principal.clone(),
            });
        }
        // Some assignments are removed again, so the indexes' removal paths are exercised.
        let mut assignments = assignments;
        for _ in 0..g.next(3) {
            if !assignments.is_empty() {
                let i = g.next(assignments.len());
                snap.remove_assignment(&format!("a{i}"));
                assignments[i].2 = "removed".into();
            }
        }
        let principals = naive_groups("user", &edges);
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        for resource in SCOPES {
            let res = Scope::parse(resource).unwrap();
            for action in ACTIONS {
                for kind in [ActionKind::Action, ActionKind::DataAction] {
                    let want = naive_allows(&roles, &assignments, &principals, resource, kind, action);
                    let got = snap.check(&refs, &res, kind, action);
                    assert_eq!(
                        got.allowed, want,
                        "case {case}: {kind:?} {action} on {resource}\nroles {roles:#?}\nassignments {assignments:?}\nprincipals {principals:?}"
                    );
                    checks += 1;
                }
            }
            let admin = naive_allows(
                &roles,
                &assignments,
                &principals,
                resource,
                ActionKind::DataAction,
                VM_LOGIN_AS_ADMIN,
            );
            let user = naive_allows(
                &roles,
                &assignments,
                &principals,
                resource,
                ActionKind::DataAction,
                VM_LOGIN,
            );
            let want = if admin {
                LoginRight::Admin
            } else if user {
                LoginRight::User
            } else {
                LoginRight::Deny
            };
            assert_eq!(
                snap.login_decision(&refs, &res).right,
                want,
                "case {case}: login on {resource}"
            );
            // Everyone with a login right here, per assignment, as the naive evaluator sees it.
            let mut naive_grants: Vec<(String, LoginRight, String)> = Vec::new();
            for (i, one) in assignments.iter().enumerate() {
                if one.2 == "removed" {
                    continue;
                }
                let who = BTreeSet::from([one.2.clone()]);
                let single = std::slice::from_ref(one);
                let right = if naive_allows(
                    &roles,
                    single,
                    &who,
                    resource,
                    ActionKind::DataAction,
                    VM_LOGIN_AS_ADMIN,
                ) {
                    LoginRight::Admin
                } else if naive_allows(&roles, single, &who, resource, ActionKind::DataAction, VM_LOGIN) {
                    LoginRight::User
                } else {
                    continue;
                };
                naive_grants.push((one.2.clone(), right, format!("a{i}")));
            }
            naive_grants.sort();
            assert_eq!(
                snap.login_grants(&res),
                naive_grants,
                "case {case}: grants on {resource}"
            );
        }
    }
    assert!(checks > 40_000, "{checks}");
    let _ = SUB;
}
