//! Conditional Access evaluation (SPEC C1–C2): which policies apply to a sign-in, what each asks
//! for, and the final verdict. Pure: the caller supplies everything about the sign-in (its
//! methods as the sign-in really used them, its risk, address, how long ago the user
//! authenticated); nothing here reads a clock or the network.
//!
//! Semantics (Entra's):
//! - A policy applies when the user is included and not excluded (exclusion wins), the app is
//!   included and not excluded, and every configured condition matches (an unconfigured
//!   condition matches everything).
//! - Report-only policies are evaluated and reported but never change the verdict.
//! - Block in any enforced, applying policy blocks, whatever else applies.
//! - Otherwise each enforced, applying policy must have its grant satisfied: all controls (AND)
//!   or any one (OR); what is missing is required (step-up), not refused.
//! - Sign-in frequency: a sign-in older than the policy's limit must authenticate again.

use std::collections::HashMap;
use std::net::IpAddr;

/// A policy's state (Graph's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyState {
    /// `enabled`: enforced.
    Enabled,
    /// `enabledForReportingButNotEnforced`: evaluated and logged only.
    ReportOnly,
    /// `disabled`: not evaluated.
    Disabled,
}

/// Sign-in or user risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskLevel {
    /// No risk detected.
    None,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// The client app type of a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApp {
    /// A browser (the sign-in pages).
    Browser,
    /// Modern-auth clients: the CLI, SSH certificates, the PAM relay.
    MobileAppsAndDesktopClients,
    /// Anything else.
    Other,
}

/// A device platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux.
    Linux,
    /// Windows.
    Windows,
    /// macOS.
    MacOs,
    /// iOS.
    Ios,
    /// Android.
    Android,
    /// Unknown.
    Other,
}

/// Built-in authentication strengths, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Any two factors.
    Mfa,
    /// Passwordless MFA (a passkey; usher offers no other).
    PasswordlessMfa,
    /// Phishing-resistant MFA (passkeys only, among what usher offers).
    PhishingResistantMfa,
}

/// A grant control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Block access.
    Block,
    /// Require multi-factor authentication.
    Mfa,
    /// Require an authentication strength.
    Strength(Strength),
    /// Require a joined device (the sign-in is relayed by a joined machine's agent).
    JoinedDevice,
}

/// How a grant's controls combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// All controls.
    And,
    /// Any one control.
    Or,
}

/// A set of targets: everything, or the listed ones.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Targets {
    /// `All`.
    pub all: bool,
    /// Object ids (lower case) or app ids.
    pub ids: Vec<String>,
}

impl Targets {
    /// Everything.
    pub fn all() -> Self {
        Self {
            all: true,
            ids: vec![],
        }
    }

    /// Just these.
    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Self {
        Self {
            all: false,
            ids: ids.into_iter().map(|s| s.into().to_ascii_lowercase()).collect(),
        }
    }

    fn has(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i.eq_ignore_ascii_case(id))
    }
}

/// An IP range (a named location's CIDR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl IpRange {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let a = text.trim().parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u32) {
            match ip {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, width), (host, host_width)) = (bits(self.addr), bits(ip));
        if width != host_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (host >> shift)
    }
}

/// A Conditional Access policy, as evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its id.
    pub id: std::sync::Arc<str>,
    /// Its display name.
    pub name: std::sync::Arc<str>,
    /// Its state.
    pub state: PolicyState,
    /// Users included (`All` or object ids).
    pub include_users: Targets,
    /// Users excluded (break-glass accounts).
    pub exclude_users: Vec<String>,
    /// Groups whose (transitive) members are included.
    pub include_groups: Vec<String>,
    /// Groups whose members are excluded.
    pub exclude_groups: Vec<String>,
    /// Directory roles (template ids) whose holders are included.
    pub include_roles: Vec<String>,
    /// Directory roles whose holders are excluded.
    pub exclude_roles: Vec<String>,
    /// Applications included (`All` or app ids).
    pub include_apps: Targets,
    /// Applications excluded.
    pub exclude_apps: Vec<String>,
    /// Sign-in risk levels that make it apply (empty: any).
    pub sign_in_risk: Vec<RiskLevel>,
    /// User risk levels that make it apply (empty: any).
    pub user_risk: Vec<RiskLevel>,
    /// Client address ranges it applies to (`None`: any address).
    pub include_locations: Option<Vec<IpRange>>,
    /// Client address ranges it does not apply to.
    pub exclude_locations: Vec<IpRange>,
    /// Platforms it applies to (`None`: any).
    pub include_platforms: Option<Vec<Platform>>,
    /// Platforms it does not apply to.
    pub exclude_platforms: Vec<Platform>,
    /// Client app types it applies to (empty: all).
    pub client_apps: Vec<ClientApp>,
    /// Grant controls (`None`: session controls only).
    pub grant: Option<(Operator, Vec<Control>)>,
    /// Sign-in frequency, seconds.
    pub sign_in_frequency_secs: Option<u64>,
}

impl Policy {
    /// A policy for everyone and every app that does nothing until conditions and controls are
    /// set (a starting point for builders and tests).
    pub fn new(id: &str, name: &str, state: PolicyState) -> Self {
        Self {
            id: std::sync::Arc::from(id),
            name: std::sync::Arc::from(name),
            state,
            include_users: Targets::all(),
            exclude_users: vec![],
            include_groups: vec![],
            exclude_groups: vec![],
            include_roles: vec![],
            exclude_roles: vec![],
            include_apps: Targets::all(),
            exclude_apps: vec![],
            sign_in_risk: vec![],
            user_risk: vec![],
            include_locations: None,
            exclude_locations: vec![],
            include_platforms: None,
            exclude_platforms: vec![],
            client_apps: vec![],
            grant: None,
            sign_in_frequency_secs: None,
        }
    }
}

/// What the sign-in really used (from its `amr`, never asserted by the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods {
    /// Two factors (password and a one-time code, or a passkey with user verification).
    pub mfa: bool,
    /// No password (a passkey).
    pub passwordless: bool,
    /// Phishing-resistant (a passkey).
    pub phishing_resistant: bool,
}

impl Methods {
    fn satisfies(self, s: Strength) -> bool {
        match s {
            Strength::Mfa => self.mfa,
            Strength::PasswordlessMfa => self.mfa && self.passwordless,
            Strength::PhishingResistantMfa => self.mfa && self.phishing_resistant,
        }
    }
}

/// A sign-in, as Conditional Access sees it.
#[derive(Debug, Clone)]
pub struct SignIn<'a> {
    /// The user's object id.
    pub user_id: &'a str,
    /// The groups the user is in, transitively.
    pub groups: &'a [String],
    /// The directory roles the user holds (template ids).
    pub roles: &'a [String],
    /// The application the token is for.
    pub app_id: &'a str,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Sign-in risk.
    pub sign_in_risk: RiskLevel,
    /// User risk.
    pub user_risk: RiskLevel,
    /// The device platform.
    pub platform: Platform,
    /// The client app type.
    pub client_app: ClientApp,
    /// The methods used.
    pub methods: Methods,
    /// Whether a joined machine's agent relays the sign-in.
    pub joined_device: bool,
    /// Seconds since the user last authenticated interactively.
    pub auth_age_secs: u64,
    /// The user authenticated in this very request (a password, code or passkey just checked),
    /// not a refresh of an earlier sign-in.
    pub fresh: bool,
}

/// Why a policy did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApplied {
    /// The policy is off.
    Disabled,
    /// The user is not among those included.
    UserNotIncluded,
    /// The user is excluded (directly, through a group or a role).
    UserExcluded,
    /// The app is not among those included.
    AppNotIncluded,
    /// The app is excluded.
    AppExcluded,
    /// The sign-in risk is not one the policy names.
    SignInRisk,
    /// The user risk is not one the policy names.
    UserRisk,
    /// The client address is outside the included locations or inside an excluded one.
    Location,
    /// The platform is not targeted.
    Platform,
    /// The client app type is not targeted.
    ClientApp,
}

/// What a policy would require of the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Multi-factor authentication.
    Mfa,
    /// An authentication strength.
    Strength(Strength),
    /// A joined device.
    JoinedDevice,
    /// Authenticating again (sign-in frequency).
    Reauthenticate,
}

/// One policy's result for a sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyResult {
    /// It did not apply, and why.
    NotApplied(NotApplied),
    /// It applied and the sign-in satisfies it.
    Satisfied,
    /// It applied and blocks.
    Block,
    /// It applied and needs more: one of these (OR), or all of them (AND).
    Requires(Operator, Vec<Requirement>),
}

/// A policy's outcome, for the sign-in log and what-if.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The policy's id.
    pub id: std::sync::Arc<str>,
    /// Its name.
    pub name: std::sync::Arc<str>,
    /// Report-only: the result is what it would have done.
    pub report_only: bool,
    /// The result.
    pub result: PolicyResult,
}

/// The final verdict (report-only policies never contribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Issue the token.
    Allow,
    /// Refuse (AADSTS53003).
    Block,
    /// Ask for more first (step-up); each entry is one policy's unmet grant.
    Require(Vec<(Operator, Vec<Requirement>)>),
}

/// The evaluation of all policies for one sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The verdict.
    pub verdict: Verdict,
    /// Every policy's outcome, in the order given.
    pub policies: Vec<PolicyOutcome>,
}

fn any_in(list: &[String], set: &[String]) -> bool {
    list.iter().any(|l| set.iter().any(|s| s.eq_ignore_ascii_case(l)))
}

/// Whether the user's groups or roles meet a policy's group and role lists.
#[derive(Debug, Clone, Copy, Default)]
struct Membership {
    included: bool,
    excluded: bool,
}

impl Membership {
    /// By comparing every pair: for one policy on its own.
    fn scan(p: &Policy, s: &SignIn<'_>) -> Self {
        Self {
            included: any_in(&p.include_groups, s.groups) || any_in(&p.include_roles, s.roles),
            excluded: any_in(&p.exclude_groups, s.groups) || any_in(&p.exclude_roles, s.roles),
        }
    }
}

/// Whether `p` applies to `s`, or why not. Exclusions win over inclusions.
pub fn applies(p: &Policy, s: &SignIn<'_>) -> Result<(), NotApplied> {
    applies_with(p, s, Membership::scan(p, s))
}

fn applies_with(p: &Policy, s: &SignIn<'_>, m: Membership) -> Result<(), NotApplied> {
    if p.state == PolicyState::Disabled {
        return Err(NotApplied::Disabled);
    }
    let excluded = m.excluded || p.exclude_users.iter().any(|u| u.eq_ignore_ascii_case(s.user_id));
    if excluded {
        return Err(NotApplied::UserExcluded);
    }
    let included = p.include_users.all || m.included || p.include_users.has(s.user_id);
    if !included {
        return Err(NotApplied::UserNotIncluded);
    }
    if p.exclude_apps.iter().any(|a| a.eq_ignore_ascii_case(s.app_id)) {
        return Err(NotApplied::AppExcluded);
    }
    if !(p.include_apps.all || p.include_apps.has(s.app_id)) {
        return Err(NotApplied::AppNotIncluded);
    }
    if !p.sign_in_risk.is_empty() && !p.sign_in_risk.contains(&s.sign_in_risk) {
        return Err(NotApplied::SignInRisk);
    }
    if !p.user_risk.is_empty() && !p.user_risk.contains(&s.user_risk) {
        return Err(NotApplied::UserRisk);
    }
    let in_any = |ranges: &[IpRange]| s.ip.is_some_and(|ip| ranges.iter().any(|r| r.contains(ip)));
    if in_any(&p.exclude_locations) {
        return Err(NotApplied::Location);
    }
    if let Some(include) = &p.include_locations
        && !in_any(include)
    {
        return Err(NotApplied::Location);
    }
    if p.exclude_platforms.contains(&s.platform)
        || p.include_platforms
            .as_ref()
            .is_some_and(|i| !i.contains(&s.platform))
    {
        return Err(NotApplied::Platform);
    }
    if !p.client_apps.is_empty() && !p.client_apps.contains(&s.client_app) {
        return Err(NotApplied::ClientApp);
    }
    Ok(())
}

fn control_met(c: Control, s: &SignIn<'_>) -> Option<Requirement> {
    match c {
        Control::Block => None,
        Control::Mfa => (!s.methods.mfa).then_some(Requirement::Mfa),
        Control::Strength(st) => (!s.methods.satisfies(st)).then_some(Requirement::Strength(st)),
        Control::JoinedDevice => (!s.joined_device).then_some(Requirement::JoinedDevice),
    }
}

/// How recent a sign-in "every time" still accepts, seconds.
pub const EVERY_TIME_GRACE_SECS: u64 = 300;

/// One policy's result for the sign-in.
pub fn evaluate_policy(p: &Policy, s: &SignIn<'_>) -> PolicyResult {
    evaluate_policy_with(p, s, Membership::scan(p, s))
}

fn evaluate_policy_with(p: &Policy, s: &SignIn<'_>, m: Membership) -> PolicyResult {
    if let Err(why) = applies_with(p, s, m) {
        return PolicyResult::NotApplied(why);
    }
    let mut missing: Vec<Requirement> = Vec::new();
    let mut operator = Operator::And;
    if let Some((op, controls)) = &p.grant {
        if controls.contains(&Control::Block) {
            return PolicyResult::Block;
        }
        operator = *op;
        let unmet: Vec<Requirement> = controls.iter().filter_map(|c| control_met(*c, s)).collect();
        let met_any = unmet.len() < controls.len();
        match op {
            Operator::And => missing.extend(unmet),
            Operator::Or if !met_any && !controls.is_empty() => missing.extend(unmet),
            Operator::Or => {}
        }
    }
    // A fresh sign-in satisfies any frequency. `Some(0)` is "every time": like Entra, a
    // sign-in from the last five minutes still counts (so a token asked for right after signing
    // in, such as an SSH certificate on the refresh grant, is not refused).
    if let Some(limit) = p.sign_in_frequency_secs
        && !s.fresh
        && s.auth_age_secs > if limit == 0 { EVERY_TIME_GRACE_SECS } else { limit }
    {
        // Authenticating again is needed whatever the operator.
        operator = Operator::And;
        missing.push(Requirement::Reauthenticate);
    }
    if missing.is_empty() {
        PolicyResult::Satisfied
    } else {
        PolicyResult::Requires(operator, missing)
    }
}

/// Evaluates every policy for the sign-in and decides (building a [`PolicySet`] each time:
/// callers that evaluate often keep one).
pub fn evaluate(policies: &[Policy], s: &SignIn<'_>) -> Evaluation {
    PolicySet::new(policies.to_vec()).evaluate(s)
}

/// Which side of a policy names a group or role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Include,
    Exclude,
}

/// An id's hash with ASCII case folded, eight bytes at a time: ids compare without regard to
/// case, and folding while hashing spares a lower-cased copy of every id looked up. The keys are
/// server-made object ids, not attacker-chosen, so a fast multiply-rotate mix (the scheme rustc
/// uses for its own maps) is enough; a hit is confirmed by comparing the ids.
fn folded_hash(id: &str) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Branch-free ASCII lower-casing of eight bytes: set bit 5 of bytes in 'A'..='Z'.
    let fold = |x: u64| {
        let low = x & LOW;
        let ge_a = low.wrapping_add(0x3f3f_3f3f_3f3f_3f3f);
        let gt_z = low.wrapping_add(0x2525_2525_2525_2525);
        let upper = ge_a & !gt_z & !x & HIGH;
        x | (upper >> 2)
    };
    let bytes = id.as_bytes();
    let mut h = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ fold(u64::from_le_bytes(w))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ fold(u64::from_le_bytes(w))).wrapping_mul(K);
    }
    h
}

/// A hasher for keys that are hashes already.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One policy naming an id.
#[derive(Debug, Clone)]
struct Naming {
    id: String,
    policy: usize,
    side: Side,
}

type IdMap = HashMap<u64, Vec<Naming>, std::hash::BuildHasherDefault<PassThrough>>;

/// Policies compiled for evaluation: which policies name each group and role, so a sign-in costs
/// one lookup per group the user is in rather than a comparison per (policy group, user group)
/// pair.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    groups: IdMap,
    roles: IdMap,
}

fn index_into(map: &mut IdMap, ids: &[String], at: usize, side: Side) {
    for id in ids {
        map.entry(folded_hash(id)).or_default().push(Naming {
            id: id.clone(),
            policy: at,
            side,
        });
    }
}

impl PolicySet {
    /// Compiles the policies (their order is kept).
    pub fn new(policies: Vec<Policy>) -> Self {
        let mut groups = IdMap::default();
        let mut roles = IdMap::default();
        for (i, p) in policies.iter().enumerate() {
            index_into(&mut groups, &p.include_groups, i, Side::Include);
            index_into(&mut groups, &p.exclude_groups, i, Side::Exclude);
            index_into(&mut roles, &p.include_roles, i, Side::Include);
            index_into(&mut roles, &p.exclude_roles, i, Side::Exclude);
        }
        Self {
            policies,
            groups,
            roles,
        }
    }

    /// The policies.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether any policy names groups or roles (else a sign-in needs no membership lookup).
    pub fn uses_memberships(&self) -> bool {
        !self.groups.is_empty() || !self.roles.is_empty()
    }

    fn memberships(&self, s: &SignIn<'_>) -> Vec<Membership> {
        let mut m = vec![Membership::default(); self.policies.len()];
        let mut mark = |map: &IdMap, ids: &[String]| {
            if map.is_empty() {
                return;
            }
            for id in ids {
                let Some(namings) = map.get(&folded_hash(id)) else {
                    continue;
                };
                for n in namings.iter().filter(|n| n.id.eq_ignore_ascii_case(id)) {
                    match n.side {
                        Side::Include => m[n.policy].included = true,
                        Side::Exclude => m[n.policy].excluded = true,
                    }
                }
            }
        };
        mark(&self.groups, s.groups);
        mark(&self.roles, s.roles);
        m
    }

    /// Evaluates every policy for the sign-in and decides.
    pub fn evaluate(&self, s: &SignIn<'_>) -> Evaluation {
        let memberships = self.memberships(s);
        let mut blocked = false;
        let mut required = Vec::new();
        let mut outcomes = Vec::with_capacity(self.policies.len());
        for (p, m) in self.policies.iter().zip(memberships) {
            let result = evaluate_policy_with(p, s, m);
            let report_only = p.state == PolicyState::ReportOnly;
            if !report_only {
                match &result {
                    PolicyResult::Block => blocked = true,
                    PolicyResult::Requires(op, r) => required.push((*op, r.clone())),
                    _ => {}
                }
            }
            outcomes.push(PolicyOutcome {
                id: p.id.clone(),
                name: p.name.clone(),
                report_only,
                result,
            });
        }
        let verdict = if blocked {
            Verdict::Block
        } else if required.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Require(required)
        };
        Evaluation {
            verdict,
            policies: outcomes,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    const VM_APP: &str = "372140e0-b3b7-4226-8ef9-d57986796201";

    fn sign_in<'a>(groups: &'a [String], roles: &'a [String]) -> SignIn<'a> {
        SignIn {
            user_id: "u1",
            groups,
            roles,
            app_id: VM_APP,
            ip: "10.1.2.3".parse().ok(),
            sign_in_risk: RiskLevel::None,
            user_risk: RiskLevel::None,
            platform: Platform::Linux,
            client_app: ClientApp::MobileAppsAndDesktopClients,
            methods: Methods::default(),
            joined_device: false,
            auth_age_secs: 10,
            fresh: false,
        }
    }

    fn block(id: &str) -> Policy {
        let mut p = Policy::new(id, id, PolicyState::Enabled);
        p.grant = Some((Operator::Or, vec![Control::Block]));
        p
    }

    #[test]
    fn folded_hashes_ignore_ascii_case_only() {
        let a = "0A1B2C3D-ABCD-4EF0-89AB-CDEF01234567";
        assert_eq!(folded_hash(a), folded_hash(&a.to_ascii_lowercase()));
        assert_eq!(folded_hash("Group-Z"), folded_hash("group-z"));
        assert_ne!(folded_hash("group-z"), folded_hash("group-y"));
        // '@' and '[' sit next to 'A' and 'Z' and must not fold.
        assert_ne!(folded_hash("@["), folded_hash("`{"));
        assert_ne!(folded_hash("abc"), folded_hash("abc\0"));
    }

    #[test]
    fn exclusion_beats_inclusion_through_groups_and_roles() {
        let groups = vec!["g1".to_owned()];
        let roles = vec!["r1".to_owned()];
        let s = sign_in(&groups, &roles);
        let mut p = block("p");
        p.include_users = Targets::of(["u1"]);
        assert_eq!(evaluate(std::slice::from_ref(&p), &s).verdict, Verdict::Block);
        for exclude in [
            |p: &mut Policy| p.exclude_users = vec!["U1".into()],
            |p: &mut Policy| p.exclude_groups = vec!["g1".into()],
            |p: &mut Policy| p.exclude_roles = vec!["r1".into()],
        ] {
            let mut q = p.clone();
            exclude(&mut q);
            let e = evaluate(std::slice::from_ref(&q), &s);
            assert_eq!(e.verdict, Verdict::Allow);
            assert_eq!(
                e.policies[0].result,
                PolicyResult::NotApplied(NotApplied::UserExcluded)
            );
        }
        p.include_users = Targets::of(["someone-else"]);
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::UserNotIncluded)
        );
        p.include_groups = vec!["G1".into()];
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::Block,
            "included through a group"
        );
    }

    #[test]
    fn apps_conditions_and_locations() {
        let s = sign_in(&[], &[]);
        let mut p = block("p");
        p.exclude_apps = vec![VM_APP.into()];
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::AppExcluded)
        );
        p.exclude_apps.clear();
        p.include_apps = Targets::of(["other-app"]);
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::AppNotIncluded)
        );
        p.include_apps = Targets::all();
        p.sign_in_risk = vec![RiskLevel::High];
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::SignInRisk)
        );
        p.sign_in_risk.clear();
        p.include_locations = Some(vec![IpRange::parse("192.168.0.0/16").unwrap()]);
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::Location)
        );
        p.include_locations = Some(vec![IpRange::parse("10.0.0.0/8").unwrap()]);
        assert_eq!(evaluate_policy(&p, &s), PolicyResult::Block);
        p.exclude_locations = vec![IpRange::parse("10.1.2.3").unwrap()];
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::Location)
        );
        p.exclude_locations.clear();
        p.include_platforms = Some(vec![Platform::Windows]);
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::Platform)
        );
        p.include_platforms = None;
        p.client_apps = vec![ClientApp::Browser];
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::NotApplied(NotApplied::ClientApp)
        );
    }

    #[test]
    fn grants_or_and_strengths_and_frequency() {
        let mut s = sign_in(&[], &[]);
        let mut p = Policy::new("p", "p", PolicyState::Enabled);
        p.grant = Some((Operator::Or, vec![Control::Mfa, Control::JoinedDevice]));
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::Requires(Operator::Or, vec![Requirement::Mfa, Requirement::JoinedDevice])
        );
        s.joined_device = true;
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::Satisfied,
            "OR: one is enough"
        );
        p.grant = Some((Operator::And, vec![Control::Mfa, Control::JoinedDevice]));
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::Requires(Operator::And, vec![Requirement::Mfa])
        );
        s.methods.mfa = true;
        assert_eq!(evaluate_policy(&p, &s), PolicyResult::Satisfied);
        // Password + TOTP is MFA but not phishing-resistant; a passkey is both.
        p.grant = Some((
            Operator::Or,
            vec![Control::Strength(Strength::PhishingResistantMfa)],
        ));
        assert!(matches!(evaluate_policy(&p, &s), PolicyResult::Requires(..)));
        s.methods.passwordless = true;
        s.methods.phishing_resistant = true;
        assert_eq!(evaluate_policy(&p, &s), PolicyResult::Satisfied);
        p.sign_in_frequency_secs = Some(5);
        assert_eq!(
            evaluate_policy(&p, &s),
            PolicyResult::Requires(Operator::And, vec![Requirement::Reauthenticate])
        );
        // "Every time": a refresh more than five minutes after the sign-in needs a new sign-in;
        // one within them, or a fresh sign-in, does not.
        p.sign_in_frequency_secs = Some(0);
        s.auth_age_secs = EVERY_TIME_GRACE_SECS + 1;
        assert!(matches!(evaluate_policy(&p, &s), PolicyResult::Requires(..)));
        s.auth_age_secs = 60;
        assert_eq!(evaluate_policy(&p, &s), PolicyResult::Satisfied);
        s.fresh = true;
        s.auth_age_secs = 10_000;
        assert_eq!(evaluate_policy(&p, &s), PolicyResult::Satisfied);
    }

    #[test]
    fn report_only_never_decides_and_block_beats_everything() {
        let s = sign_in(&[], &[]);
        let mut report = block("report");
        report.state = PolicyState::ReportOnly;
        let e = evaluate(std::slice::from_ref(&report), &s);
        assert_eq!(e.verdict, Verdict::Allow);
        assert!(e.policies[0].report_only);
        assert_eq!(
            e.policies[0].result,
            PolicyResult::Block,
            "what it would have done"
        );
        let mut mfa = Policy::new("mfa", "mfa", PolicyState::Enabled);
        mfa.grant = Some((Operator::Or, vec![Control::Mfa]));
        let e = evaluate(&[mfa.clone(), block("b"), report], &s);
        assert_eq!(e.verdict, Verdict::Block);
        let e = evaluate(&[mfa], &s);
        assert_eq!(
            e.verdict,
            Verdict::Require(vec![(Operator::Or, vec![Requirement::Mfa])])
        );
        let mut off = block("off");
        off.state = PolicyState::Disabled;
        assert_eq!(evaluate(&[off], &s).verdict, Verdict::Allow);
    }

    #[test]
    fn ranges() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.255.0.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.0.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(
            IpRange::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            IpRange::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::5".parse().unwrap())
        );
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        assert!(IpRange::parse("nonsense").is_none());
    }
}
