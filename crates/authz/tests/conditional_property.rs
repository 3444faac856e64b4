//! Property tests of Conditional Access evaluation: random policies and sign-ins from a
//! fixed-seed xorshift generator, checked against invariants that must always hold.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]

use usher_authz::conditional::{
    ClientApp, Control, IpRange, Methods, NotApplied, Operator, Platform, Policy, PolicyResult, PolicyState,
    RiskLevel, SignIn, Strength, Targets, Verdict, evaluate, evaluate_policy,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const USERS: [&str; 3] = ["u1", "u2", "u3"];
const GROUPS: [&str; 3] = ["g1", "g2", "g3"];
const APPS: [&str; 2] = ["vm", "rdp"];
const RISKS: [RiskLevel; 4] = [
    RiskLevel::None,
    RiskLevel::Low,
    RiskLevel::Medium,
    RiskLevel::High,
];
const CONTROLS: [Control; 6] = [
    Control::Block,
    Control::Mfa,
    Control::JoinedDevice,
    Control::Strength(Strength::Mfa),
    Control::Strength(Strength::PasswordlessMfa),
    Control::Strength(Strength::PhishingResistantMfa),
];

fn ids(rng: &mut Rng, from: &[&str]) -> Vec<String> {
    from.iter()
        .filter(|_| rng.chance(30))
        .map(|s| (*s).to_owned())
        .collect()
}

fn policy(rng: &mut Rng, n: usize) -> Policy {
    let state = rng.pick(&[
        PolicyState::Enabled,
        PolicyState::ReportOnly,
        PolicyState::Disabled,
    ]);
    let mut p = Policy::new(&format!("p{n}"), &format!("policy {n}"), state);
    p.include_users = if rng.chance(50) {
        Targets::all()
    } else {
        Targets::of(ids(rng, &USERS))
    };
    p.exclude_users = ids(rng, &USERS);
    p.include_groups = ids(rng, &GROUPS);
    p.exclude_groups = ids(rng, &GROUPS);
    p.include_apps = if rng.chance(50) {
        Targets::all()
    } else {
        Targets::of(ids(rng, &APPS))
    };
    p.exclude_apps = ids(rng, &APPS);
    if rng.chance(30) {
        p.sign_in_risk = RISKS.iter().copied().filter(|_| rng.chance(50)).collect();
    }
    if rng.chance(30) {
        p.include_locations = Some(vec![
            IpRange::parse(rng.pick(&["10.0.0.0/8", "192.168.0.0/16"])).unwrap(),
        ]);
    }
    if rng.chance(20) {
        p.exclude_platforms = vec![rng.pick(&[Platform::Linux, Platform::Windows])];
    }
    if rng.chance(80) {
        let op = rng.pick(&[Operator::And, Operator::Or]);
        let k = 1 + rng.below(3) as usize;
        p.grant = Some((op, (0..k).map(|_| rng.pick(&CONTROLS)).collect()));
    }
    if rng.chance(20) {
        p.sign_in_frequency_secs = Some(rng.pick(&[60, 3600]));
    }
    p
}

struct World {
    groups: Vec<String>,
    user: &'static str,
    app: &'static str,
    ip: &'static str,
    risk: RiskLevel,
    platform: Platform,
    methods: Methods,
    joined: bool,
    age: u64,
}

fn world(rng: &mut Rng) -> World {
    let mfa = rng.chance(50);
    let passkey = mfa && rng.chance(50);
    // Ids compare without regard to case; some arrive in upper case.
    let groups = ids(rng, &GROUPS)
        .into_iter()
        .map(|g| if rng.chance(30) { g.to_ascii_uppercase() } else { g })
        .collect();
    World {
        groups,
        user: rng.pick(&USERS),
        app: rng.pick(&APPS),
        ip: rng.pick(&["10.1.1.1", "192.168.1.1", "8.8.8.8"]),
        risk: rng.pick(&RISKS),
        platform: rng.pick(&[Platform::Linux, Platform::Windows]),
        methods: Methods {
            mfa,
            passwordless: passkey,
            phishing_resistant: passkey,
        },
        joined: rng.chance(50),
        age: rng.pick(&[10, 600, 7200]),
    }
}

fn sign_in(w: &World) -> SignIn<'_> {
    SignIn {
        user_id: w.user,
        groups: &w.groups,
        roles: &[],
        app_id: w.app,
        ip: w.ip.parse().ok(),
        sign_in_risk: w.risk,
        user_risk: RiskLevel::None,
        platform: w.platform,
        client_app: ClientApp::MobileAppsAndDesktopClients,
        methods: w.methods,
        joined_device: w.joined,
        auth_age_secs: w.age,
        fresh: false,
    }
}

#[test]
fn invariants_hold_for_random_policies_and_sign_ins() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..4000 {
        let n = 1 + rng.below(6) as usize;
        let policies: Vec<Policy> = (0..n).map(|i| policy(&mut rng, i)).collect();
        let w = world(&mut rng);
        let s = sign_in(&w);
        let e = evaluate(&policies, &s);

        // The compiled set's group and role index agrees with scanning each policy.
        for (p, o) in policies.iter().zip(&e.policies) {
            assert_eq!(
                evaluate_policy(p, &s),
                o.result,
                "case {case}: the index disagrees with a scan"
            );
        }

        // Report-only policies never change the verdict.
        let enforced: Vec<Policy> = policies
            .iter()
            .filter(|p| p.state != PolicyState::ReportOnly)
            .cloned()
            .collect();
        assert_eq!(
            evaluate(&enforced, &s).verdict,
            e.verdict,
            "case {case}: report-only decided"
        );

        // Block beats everything; the verdict follows the enforced results.
        let enforced_results: Vec<&PolicyResult> = e
            .policies
            .iter()
            .filter(|o| !o.report_only)
            .map(|o| &o.result)
            .collect();
        let any_block = enforced_results.iter().any(|r| **r == PolicyResult::Block);
        let any_require = enforced_results
            .iter()
            .any(|r| matches!(r, PolicyResult::Requires(..)));
        match &e.verdict {
            Verdict::Block => assert!(any_block, "case {case}"),
            Verdict::Require(_) => assert!(!any_block && any_require, "case {case}"),
            Verdict::Allow => assert!(!any_block && !any_require, "case {case}"),
        }

        for (p, o) in policies.iter().zip(&e.policies) {
            // Exclusion wins over any inclusion; disabled policies never apply.
            if p.exclude_users.iter().any(|u| u == w.user)
                || p.exclude_groups
                    .iter()
                    .any(|g| w.groups.iter().any(|x| x.eq_ignore_ascii_case(g)))
            {
                assert!(
                    matches!(o.result, PolicyResult::NotApplied(_)),
                    "case {case}: excluded user caught"
                );
            }
            if p.state == PolicyState::Disabled {
                assert_eq!(o.result, PolicyResult::NotApplied(NotApplied::Disabled));
            }
            assert_eq!(
                o.result,
                evaluate_policy(p, &s),
                "case {case}: per-policy result is the same alone"
            );
        }

        // Stronger methods never make things worse: a passkey sign-in that is fresh and from a
        // joined device is allowed wherever the weaker one was.
        let strong = World {
            methods: Methods {
                mfa: true,
                passwordless: true,
                phishing_resistant: true,
            },
            joined: true,
            age: 0,
            groups: w.groups.clone(),
            ..w
        };
        let e2 = evaluate(&policies, &sign_in(&strong));
        if e.verdict == Verdict::Allow {
            assert_eq!(e2.verdict, Verdict::Allow, "case {case}");
        }
        assert!(
            e2.verdict == Verdict::Allow || e2.verdict == Verdict::Block,
            "case {case}: {:?}",
            e2.verdict
        );
    }
}
