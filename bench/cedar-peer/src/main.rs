//! The Cedar peer of usher's RBAC benchmarks: the same role assignments and the same login
//! questions as `crates/authz/benches/decision.rs` (`flat`) and `crates/authz/benches/tenant.rs`
//! (`tenant`), expressed as Cedar policies and entities, answered by `cedar_policy::Authorizer`.
//!
//! Mapping:
//! - every role assignment is one static `permit` policy whose id is the assignment's id:
//!   `permit(principal in Group::"…", action in [Action::"read", Action::"login", …],
//!   resource in Scope::"/subscriptions/…/resourcegroups/…");` (`principal == User::"…"` when the
//!   assignment is held by a user). The actions are the role's: the two VM login roles give `login`
//!   (and the administrator role `loginAsAdmin`), the control-plane roles give `read`, `write` and
//!   `manageAccess` as their Actions allow, which grants no login, as in usher.
//! - scopes are `Scope` entities named by their lower-case ARM path, each machine a child of its
//!   resource group and each resource group a child of its subscription, so `resource in` is
//!   usher's "at or above";
//! - the user is a `User` entity whose parents are its direct groups; groups have their parent
//!   groups as parents, and Cedar computes the transitive closure when the entities are built;
//! - usher's login decision is "Admin if some assignment grants loginAsAdmin, else User if some
//!   grants login, else Deny": here one `is_authorized` for `loginAsAdmin` and, if that is denied,
//!   one for `login`; a decision is timed as a whole.
//!
//! Each question is timed twice: against all the policies (what `Authorizer::is_authorized` is
//! given decides what it evaluates: it has no index and evaluates every policy in the set), and
//! against a set sliced beforehand to the policies held by the user or one of its groups, which is
//! what an index by principal (usher's) would hand it. The slicing itself is not timed.
//!
//! The data comes from the same deterministic generator as the usher benches (written twice, in
//! the same order); both print an FNV-1a digest of the assignments, which must agree.
//!
//! Usage: `usher-cedar-peer flat` or `usher-cedar-peer tenant`; environment `TENANT_SUBS` (default
//! 200: 1,000,000 assignments), `TENANT_GROUP_SHARE` (default 1000), `BUDGET_S` (seconds of
//! timed decisions per question, default 20), `MAX_SAMPLES` (default 200,000), `MAX_BUILD_S`
//! (default 600) and `MAX_RSS_MB` (default 16,000): the policy build stops past either limit.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, Request,
};

/// Built-in role ids (as in `usher_authz::role_ids`).
mod role_ids {
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
    pub const VM_ADMINISTRATOR_LOGIN: &str = "1c0163c0-47e6-4577-8991-ea5c82e286e4";
    pub const VM_USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";
}

/// The Cedar actions a role allows.
fn role_actions(role: &str) -> &'static str {
    match role {
        role_ids::OWNER => r#"[Action::"read", Action::"write", Action::"manageAccess"]"#,
        role_ids::CONTRIBUTOR => r#"[Action::"read", Action::"write"]"#,
        role_ids::READER => r#"[Action::"read"]"#,
        role_ids::USER_ACCESS_ADMINISTRATOR => r#"[Action::"read", Action::"manageAccess"]"#,
        role_ids::VM_ADMINISTRATOR_LOGIN => r#"[Action::"read", Action::"login", Action::"loginAsAdmin"]"#,
        role_ids::VM_USER_LOGIN => r#"[Action::"read", Action::"login"]"#,
        other => unreachable!("unknown role {other}"),
    }
}

type Fail = Box<dyn std::error::Error>;

// ---- The data: the same generator as crates/authz/benches/{decision,tenant}.rs ----

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

fn group(level: u64, i: u64) -> String {
    guid(3_000_000 + level * 1_000 + i)
}

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

/// Who holds an assignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

/// `tenant.rs`'s tenant, in the same order: (id, scope, role id, principal id, principal kind).
fn tenant(subs: u64, group_share: u64, mut f: impl FnMut(String, String, &str, String, Kind)) {
    let last = subs - 1;
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
                f(
                    guid(4_000_000 + k as u64),
                    scope.clone(),
                    role,
                    p.clone(),
                    Kind::Group,
                );
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
            let (principal, role, kind) = if group_share > 0 && rng.next(group_share) == 0 {
                let g = group(1 + rng.next(LEVELS), rng.next(PER_LEVEL));
                (g, all_roles[rng.next(4) as usize], Kind::Group)
            } else {
                let k = rng.next(OTHER_PRINCIPALS);
                let kind = if k.is_multiple_of(2) {
                    Kind::User
                } else {
                    Kind::Group
                };
                (guid(20_000_000 + k), all_roles[rng.next(6) as usize], kind)
            };
            f(guid(100_000_000 + n), scope, role, principal, kind);
            n += 1;
        }
    }
}

/// `decision.rs`'s data: one subscription, 5,000 assignments for others at its scope, five for
/// the user's (flat) groups and one for the user.
const FLAT_SUB: &str = "/subscriptions/11111111-1111-1111-1111-111111111111";

fn flat(mut f: impl FnMut(String, String, &str, String, Kind)) {
    for i in 0..5_000u64 {
        let role = if i % 2 == 0 {
            role_ids::VM_USER_LOGIN
        } else {
            role_ids::READER
        };
        // decision.rs does not say what these principals are; call them users.
        f(
            guid(1_000_000 + i),
            FLAT_SUB.to_owned(),
            role,
            guid(2_000_000 + i),
            Kind::User,
        );
    }
    for i in (0..200u64).step_by(40) {
        let at = if i % 80 == 0 {
            format!("{FLAT_SUB}/resourceGroups/rg{i}")
        } else {
            format!("{FLAT_SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm{i}")
        };
        f(
            guid(4_000_000 + i),
            at,
            role_ids::VM_ADMINISTRATOR_LOGIN,
            guid(3_000_000 + i),
            Kind::Group,
        );
    }
    f(
        guid(5_000_000),
        format!("{FLAT_SUB}/resourceGroups/rg1"),
        role_ids::VM_USER_LOGIN,
        guid(1),
        Kind::User,
    );
}

// ---- Cedar ----

fn uid(ty: &str, id: &str) -> Result<EntityUid, Fail> {
    Ok(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty)?,
        EntityId::new(id),
    ))
}

/// The `Scope` entities of a path and everything above it, below the subscription.
fn add_scope_chain(path: &str, out: &mut HashMap<String, Option<String>>) {
    let lower = path.to_ascii_lowercase();
    let segs: Vec<&str> = lower.split('/').collect();
    // "/subscriptions/S" is 3 segments, ".../resourcegroups/R" 5, ".../providers/NS/TYPE/NAME" 9.
    let cuts: Vec<usize> = [3, 5, 9].into_iter().filter(|&c| c <= segs.len()).collect();
    let mut parent: Option<String> = None;
    for c in cuts {
        let p = segs[..c].join("/");
        out.entry(p.clone()).or_insert(parent.clone());
        parent = Some(p);
    }
}

fn rss_mb() -> f64 {
    proc_status_mb("VmRSS:")
}

fn proc_status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    Deny,
    User,
    Admin,
}

struct Question {
    as_admin: Request,
    as_user: Request,
}

fn decide(authz: &Authorizer, q: &Question, policies: &PolicySet, entities: &Entities) -> Right {
    if authz.is_authorized(&q.as_admin, policies, entities).decision() == Decision::Allow {
        Right::Admin
    } else if authz.is_authorized(&q.as_user, policies, entities).decision() == Decision::Allow {
        Right::User
    } else {
        Right::Deny
    }
}

/// Checks the answer (and what decided it), then times as many decisions as fit in `budget` (at
/// least 20, at most `max_samples`) after a short warm-up, each on its own.
#[allow(clippy::too_many_arguments)]
fn measure(
    authz: &Authorizer,
    q: &Question,
    policies: &PolicySet,
    entities: &Entities,
    expected: Right,
    decided_by: Option<&str>,
    label: &str,
    budget: Duration,
    max_samples: usize,
) -> Result<(), Fail> {
    let t0 = Instant::now();
    let right = decide(authz, q, policies, entities);
    let first = t0.elapsed();
    if right != expected {
        return Err(format!("{label}: expected {expected:?}, Cedar says {right:?}").into());
    }
    let r = authz.is_authorized(&q.as_admin, policies, entities);
    if r.diagnostics().errors().next().is_some() {
        return Err(format!("{label}: evaluation errors").into());
    }
    if let Some(id) = decided_by {
        let reasons: Vec<String> = r.diagnostics().reason().map(ToString::to_string).collect();
        if reasons != [id] {
            return Err(format!("{label}: decided by {reasons:?}, expected [{id}]").into());
        }
    }
    let n = ((budget.as_secs_f64() / first.as_secs_f64().max(1e-9)) as usize).clamp(20, max_samples);
    for _ in 0..(n / 100).clamp(1, 1_000) {
        std::hint::black_box(decide(authz, std::hint::black_box(q), policies, entities));
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(decide(authz, std::hint::black_box(q), policies, entities));
        samples.push(t.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
    let calls = if expected == Right::Admin { 1 } else { 2 };
    println!(
        "cedar login decision {label} = {expected:?} ({calls} is_authorized): p50 {:.2} µs, p99 {:.2} µs, \
         p99.9 {:.2} µs, max {:.2} µs ({n} samples)",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    Ok(())
}

fn main() -> Result<(), Fail> {
    let shape = std::env::args().nth(1).unwrap_or_else(|| "tenant".to_owned());
    let subs = env_u64("TENANT_SUBS", 200).max(1);
    let group_share = env_u64("TENANT_GROUP_SHARE", 1_000);
    let budget = Duration::from_secs(env_u64("BUDGET_S", 20));
    let max_samples = env_u64("MAX_SAMPLES", 200_000) as usize;
    let max_build = Duration::from_secs(env_u64("MAX_BUILD_S", 600));
    let max_rss = env_u64("MAX_RSS_MB", 16_000) as f64;

    let user = guid(1);
    // The user's direct groups and every group's parents.
    let mut group_parents: HashMap<String, Vec<String>> = HashMap::new();
    let direct_groups: Vec<String>;
    let mut scopes: HashMap<String, Option<String>> = HashMap::new();
    let questions: Vec<(&'static str, String, Right, Option<String>)>;
    match shape.as_str() {
        "tenant" => {
            direct_groups = (0..PER_LEVEL).map(|i| group(1, i)).collect();
            for l in 1..=LEVELS {
                for i in 0..PER_LEVEL {
                    let p = if l < LEVELS { parents(l, i) } else { vec![] };
                    group_parents.insert(group(l, i), p);
                }
            }
            for s in 0..subs {
                for r in 0..RGS_PER_SUB {
                    for v in 0..VMS_PER_RG {
                        add_scope_chain(&vm_scope(s, r, v), &mut scopes);
                    }
                }
            }
            questions = vec![
                (
                    "(a) admin via a level-5 group",
                    vm_scope(0, 0, 0),
                    Right::Admin,
                    Some(guid(4_000_000)),
                ),
                ("(b) denied", vm_scope(subs - 1, 7, 3), Right::Deny, None),
            ];
        }
        "flat" => {
            direct_groups = (0..200u64).map(|i| guid(3_000_000 + i)).collect();
            for g in &direct_groups {
                group_parents.insert(g.clone(), vec![]);
            }
            let vm1 =
                format!("{FLAT_SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1");
            add_scope_chain(&vm1, &mut scopes);
            questions = vec![(
                "decision.rs: user via the user's own assignment",
                vm1,
                Right::User,
                None,
            )];
        }
        other => return Err(format!("unknown shape {other:?} (flat or tenant)").into()),
    }

    // Policies, one per assignment.
    let t = Instant::now();
    let mut digest = Digest(0xcbf2_9ce4_8422_2325);
    let mut policies = PolicySet::new();
    // The same policies, only those held by the user or one of its groups: what an index by
    // principal (usher's) would hand the authorizer. Cedar itself evaluates every policy it is given.
    let mine: HashSet<String> = group_parents.keys().cloned().chain([user.clone()]).collect();
    let mut sliced = PolicySet::new();
    let mut count = 0usize;
    let mut stopped: Option<String> = None;
    let mut add = |id: String, scope: String, role: &str, principal: String, kind: Kind| {
        if stopped.is_some() {
            return;
        }
        let scope = scope.to_ascii_lowercase();
        digest.add([&id, &scope, role, &principal]);
        add_scope_chain(&scope, &mut scopes);
        let who = match kind {
            Kind::User => format!(r#"principal == User::"{principal}""#),
            Kind::Group => format!(r#"principal in Group::"{principal}""#),
        };
        let text = format!(
            r#"permit({who}, action in {}, resource in Scope::"{scope}");"#,
            role_actions(role)
        );
        let added = Policy::parse(Some(PolicyId::new(&id)), &text)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                if mine.contains(&principal) {
                    sliced.add(p.clone()).map_err(|e| e.to_string())?;
                }
                policies.add(p).map_err(|e| e.to_string())
            });
        if let Err(e) = added {
            stopped = Some(format!("policy {id}: {e}"));
            return;
        }
        count += 1;
        if count.is_multiple_of(100_000) {
            let (el, rss) = (t.elapsed(), rss_mb());
            eprintln!("  {count} policies, {:.1} s, VmRSS {rss:.0} MB", el.as_secs_f64());
            if el > max_build || rss > max_rss {
                stopped = Some(format!(
                    "stopped at {count} policies: {:.1} s, VmRSS {rss:.0} MB (limits {} s, {max_rss} MB)",
                    el.as_secs_f64(),
                    max_build.as_secs()
                ));
            }
        }
    };
    match shape.as_str() {
        "tenant" => tenant(subs, group_share, &mut add),
        _ => flat(&mut add),
    }
    if let Some(why) = stopped {
        println!(
            "cedar {shape}: {why}; VmRSS {:.1} MB, VmHWM {:.1} MB",
            rss_mb(),
            proc_status_mb("VmHWM:")
        );
        return Ok(());
    }
    let policies_built = t.elapsed();

    // Entities: the user, the groups (Cedar computes the closure), the scope tree.
    let t = Instant::now();
    let mut entities = Vec::new();
    let user_parents: HashSet<EntityUid> = direct_groups
        .iter()
        .map(|g| uid("Group", g))
        .collect::<Result<_, _>>()?;
    entities.push(Entity::new_no_attrs(uid("User", &user)?, user_parents));
    for (g, ps) in &group_parents {
        let ps: HashSet<EntityUid> = ps.iter().map(|p| uid("Group", p)).collect::<Result<_, _>>()?;
        entities.push(Entity::new_no_attrs(uid("Group", g)?, ps));
    }
    let scope_count = scopes.len();
    for (s, parent) in scopes {
        let ps: HashSet<EntityUid> = parent.iter().map(|p| uid("Scope", p)).collect::<Result<_, _>>()?;
        entities.push(Entity::new_no_attrs(uid("Scope", &s)?, ps));
    }
    let entities = Entities::from_entities(entities, None)?;
    let entities_built = t.elapsed();
    let rss = rss_mb();

    // The user's groups as Cedar sees them (the transitive closure it computed).
    let user_uid = uid("User", &user)?;
    let closure: BTreeSet<String> = entities
        .ancestors(&user_uid)
        .map(|it| it.map(|g| g.id().unescaped().to_owned()).collect())
        .unwrap_or_default();

    println!(
        "cedar {shape}: {count} policies (digest {:016x}), parsed and added in {:.2} s; {} entities \
         ({scope_count} scopes, user + {} groups, closure {} groups) in {:.2} s; VmRSS {rss:.1} MB",
        digest.0,
        policies_built.as_secs_f64(),
        entities.iter().count(),
        group_parents.len(),
        closure.len(),
        entities_built.as_secs_f64()
    );

    let authz = Authorizer::new();
    for (label, vm, expected, decided_by) in questions {
        let resource = uid("Scope", &vm.to_ascii_lowercase())?;
        let request = |action: &str| -> Result<Request, Fail> {
            Ok(Request::new(
                user_uid.clone(),
                uid("Action", action)?,
                resource.clone(),
                Context::empty(),
                None,
            )?)
        };
        let q = Question {
            as_admin: request("loginAsAdmin")?,
            as_user: request("login")?,
        };
        let sets = [
            (format!("all {count} policies"), &policies),
            (
                format!(
                    "sliced: the {} policies of the user and its groups",
                    sliced.policies().count()
                ),
                &sliced,
            ),
        ];
        for (set_label, set) in sets {
            let label = format!("{label} [{set_label}]");
            measure(
                &authz,
                &q,
                set,
                &entities,
                expected,
                decided_by.as_deref(),
                &label,
                budget,
                max_samples,
            )?;
        }
    }
    println!(
        "VmRSS {:.1} MB, VmHWM {:.1} MB at the end",
        rss_mb(),
        proc_status_mb("VmHWM:")
    );
    Ok(())
}
