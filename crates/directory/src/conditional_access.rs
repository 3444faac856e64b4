//! Conditional Access policies and named locations (SPEC C1): stored in Graph's shapes,
//! validated strictly on every write (an unknown control or a typo in an id is refused, never
//! ignored), compiled into `usher_authz::conditional` policies for evaluation.
//!
//! The compiled set is cached: changes made through this process invalidate it at once; another
//! replica's changes are seen within [`CA_CACHE_SECS`].

use std::sync::{Arc, RwLock};

use usher_authz::conditional::{
    ClientApp, Control, IpRange, Operator, Platform, Policy, PolicySet, PolicyState, RiskLevel, Strength,
    Targets,
};
use usher_proto::ca::{
    CaPolicy, IpRangeWire, NamedLocation, STRENGTH_MFA, STRENGTH_PASSWORDLESS, STRENGTH_PHISHING_RESISTANT,
};
use usher_store::Record;

use crate::{DirResult, Directory, DirectoryError};

/// Record kind of policies.
pub const CA_POLICY: &str = "ca_policy";
/// Record kind of named locations.
pub const NAMED_LOCATION: &str = "named_location";
/// How long the compiled policy set serves evaluations, seconds.
pub const CA_CACHE_SECS: i64 = 2;
/// Policies per tenant at most.
pub const MAX_POLICIES: usize = 195;

/// The compiled policies and when they were read.
type CachedPolicies = (Arc<PolicySet>, i64);

/// The compiled policies, cached.
#[derive(Debug, Default, Clone)]
pub(crate) struct CaCache(Arc<RwLock<Option<CachedPolicies>>>);

impl CaCache {
    fn get(&self, now: i64) -> Option<Arc<PolicySet>> {
        let guard = self.0.read().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| now - at < CA_CACHE_SECS && *at <= now)
            .map(|(p, _)| p.clone())
    }
    fn put(&self, policies: Arc<PolicySet>, now: i64) {
        if let Ok(mut g) = self.0.write() {
            *g = Some((policies, now));
        }
    }
    fn invalidate(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

fn invalid(msg: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid(msg.into())
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

fn list(v: &Option<Vec<String>>) -> Vec<String> {
    v.clone()
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn has_all(v: &[String]) -> bool {
    v.iter().any(|s| s.eq_ignore_ascii_case("All"))
}

fn has_none(v: &[String]) -> bool {
    v.iter().any(|s| s.eq_ignore_ascii_case("None"))
}

/// Parses a policy state.
pub fn parse_state(s: &str) -> DirResult<PolicyState> {
    match s {
        "enabled" => Ok(PolicyState::Enabled),
        "enabledForReportingButNotEnforced" => Ok(PolicyState::ReportOnly),
        "disabled" => Ok(PolicyState::Disabled),
        other => Err(invalid(format!(
            "Property 'state' must be 'enabled', 'enabledForReportingButNotEnforced' or 'disabled', not '{other}'."
        ))),
    }
}

/// Parses a risk level (`none`, `low`, `medium`, `high`).
pub fn parse_risk(s: &str) -> Option<RiskLevel> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Some(RiskLevel::None),
        "low" => Some(RiskLevel::Low),
        "medium" => Some(RiskLevel::Medium),
        "high" => Some(RiskLevel::High),
        _ => None,
    }
}

/// A risk level's wire name.
pub fn risk_name(r: RiskLevel) -> &'static str {
    match r {
        RiskLevel::None => "none",
        RiskLevel::Low => "low",
        RiskLevel::Medium => "medium",
        RiskLevel::High => "high",
    }
}

/// Parses a platform name (Graph's `devicePlatform`).
pub fn parse_platform(s: &str) -> Option<Platform> {
    match s.to_ascii_lowercase().as_str() {
        "linux" => Some(Platform::Linux),
        "windows" => Some(Platform::Windows),
        "macos" => Some(Platform::MacOs),
        "ios" => Some(Platform::Ios),
        "android" => Some(Platform::Android),
        _ => None,
    }
}

/// Parses a client app type.
pub fn parse_client_app(s: &str) -> Option<ClientApp> {
    match s.to_ascii_lowercase().as_str() {
        "browser" => Some(ClientApp::Browser),
        "mobileappsanddesktopclients" => Some(ClientApp::MobileAppsAndDesktopClients),
        "other" | "exchangeactivesync" => Some(ClientApp::Other),
        _ => None,
    }
}

/// The built-in authentication strength with this id or display name.
pub fn parse_strength(s: &str) -> Option<Strength> {
    let l = s.trim().to_ascii_lowercase();
    if l == STRENGTH_MFA || l == "multifactor authentication" || l == "mfa" {
        Some(Strength::Mfa)
    } else if l == STRENGTH_PASSWORDLESS || l == "passwordless mfa" || l == "passwordlessmfa" {
        Some(Strength::PasswordlessMfa)
    } else if l == STRENGTH_PHISHING_RESISTANT || l == "phishing-resistant mfa" || l == "phishingresistantmfa"
    {
        Some(Strength::PhishingResistantMfa)
    } else {
        None
    }
}

/// A strength's id and display name.
pub fn strength_ref(s: Strength) -> (&'static str, &'static str) {
    match s {
        Strength::Mfa => (STRENGTH_MFA, "Multifactor authentication"),
        Strength::PasswordlessMfa => (STRENGTH_PASSWORDLESS, "Passwordless MFA"),
        Strength::PhishingResistantMfa => (STRENGTH_PHISHING_RESISTANT, "Phishing-resistant MFA"),
    }
}

/// Graph's built-in `authenticationStrengthPolicy` objects, with the combinations usher offers.
pub fn builtin_strengths() -> serde_json::Value {
    serde_json::json!([
        {"id": STRENGTH_MFA, "displayName": "Multifactor authentication", "policyType": "builtIn",
         "requirementsSatisfied": "mfa",
         "allowedCombinations": ["password,softwareOath", "fido2"]},
        {"id": STRENGTH_PASSWORDLESS, "displayName": "Passwordless MFA", "policyType": "builtIn",
         "requirementsSatisfied": "mfa", "allowedCombinations": ["fido2"]},
        {"id": STRENGTH_PHISHING_RESISTANT, "displayName": "Phishing-resistant MFA", "policyType": "builtIn",
         "requirementsSatisfied": "mfa", "allowedCombinations": ["fido2"]},
    ])
}

fn parse_cidr(s: &str) -> Option<IpRange> {
    s.contains('/').then(|| IpRange::parse(s)).flatten()
}

/// Where a policy's location list points.
struct Locations {
    all: bool,
    ranges: Vec<IpRange>,
}

impl Directory {
    fn resolve_locations(
        &self,
        names: &[String],
        field: &str,
        named: &[NamedLocation],
    ) -> DirResult<Locations> {
        let mut out = Locations {
            all: false,
            ranges: vec![],
        };
        for n in names {
            if n.eq_ignore_ascii_case("All") {
                out.all = true;
            } else if n.eq_ignore_ascii_case("AllTrusted") {
                for l in named.iter().filter(|l| l.is_trusted) {
                    out.ranges
                        .extend(l.ip_ranges.iter().filter_map(|r| IpRange::parse(&r.cidr_address)));
                }
            } else if let Some(r) = parse_cidr(n) {
                out.ranges.push(r);
            } else if let Some(l) = named
                .iter()
                .find(|l| l.id.as_deref().is_some_and(|i| i.eq_ignore_ascii_case(n)))
            {
                out.ranges
                    .extend(l.ip_ranges.iter().filter_map(|r| IpRange::parse(&r.cidr_address)));
            } else {
                return Err(invalid(format!(
                    "conditions.locations.{field}: '{n}' is neither a named location id, 'All', 'AllTrusted' nor a CIDR range (a.b.c.d/n)."
                )));
            }
        }
        Ok(out)
    }

    /// Checks that the users and groups a policy names exist, and writes them as object ids
    /// (UPNs are accepted), so the stored policy says exactly what is enforced.
    async fn resolve_ids(&self, mut p: CaPolicy) -> DirResult<CaPolicy> {
        let Some(u) = p.conditions.users.as_mut() else {
            return Ok(p);
        };
        let include = list(&u.include_users);
        if !has_all(&include) {
            let mut ids = self.user_ids(&include, "includeUsers").await?;
            if ids.is_empty() && has_none(&include) {
                ids.push("None".into());
            }
            u.include_users = Some(ids);
        } else {
            u.include_users = Some(vec!["All".into()]);
        }
        u.exclude_users = Some(self.user_ids(&list(&u.exclude_users), "excludeUsers").await?);
        u.include_groups = Some(self.group_ids(&list(&u.include_groups), "includeGroups").await?);
        u.exclude_groups = Some(self.group_ids(&list(&u.exclude_groups), "excludeGroups").await?);
        p.display_name = p.display_name.trim().to_owned();
        Ok(p)
    }

    /// Validates a policy (users and groups as object ids) and compiles it. `named` are the
    /// tenant's named locations.
    pub fn compile_ca_policy(&self, p: &CaPolicy, named: &[NamedLocation]) -> DirResult<Policy> {
        let name = p.display_name.trim();
        if name.is_empty() || name.chars().count() > 256 {
            return Err(invalid(
                "Property 'displayName' is required (1 to 256 characters).",
            ));
        }
        let state = parse_state(&p.state)?;
        let mut out = Policy::new(p.id.as_deref().unwrap_or_default(), name, state);
        let users = p.conditions.users.clone().ok_or_else(|| {
            invalid("conditions.users is required: name includeUsers ('All' or user ids)..")
        })?;
        let include_users = list(&users.include_users);
        let include_groups = list(&users.include_groups);
        let include_roles = list(&users.include_roles);
        if include_users.is_empty() && include_groups.is_empty() && include_roles.is_empty() {
            return Err(invalid(
                "conditions.users needs includeUsers, includeGroups or includeRoles ('All' includes everyone; 'None' no one).",
            ));
        }
        out.include_users = if has_all(&include_users) {
            Targets::all()
        } else {
            Targets::of(
                include_users
                    .iter()
                    .filter(|u| !has_none(std::slice::from_ref(*u))),
            )
        };
        let lower =
            |v: Vec<String>| -> Vec<String> { v.into_iter().map(|s| s.to_ascii_lowercase()).collect() };
        out.exclude_users = lower(list(&users.exclude_users));
        out.include_groups = lower(include_groups);
        out.exclude_groups = lower(list(&users.exclude_groups));
        out.include_roles = role_ids(&include_roles, "includeRoles")?;
        out.exclude_roles = role_ids(&list(&users.exclude_roles), "excludeRoles")?;

        let apps = p.conditions.applications.clone().ok_or_else(|| {
            invalid("conditions.applications is required: name includeApplications ('All' or app ids).")
        })?;
        let include_apps = list(&apps.include_applications);
        if include_apps.is_empty() {
            return Err(invalid(
                "conditions.applications.includeApplications is required ('All', 'None' or app ids).",
            ));
        }
        out.include_apps = if has_all(&include_apps) {
            Targets::all()
        } else {
            Targets::of(app_ids(&include_apps, "includeApplications")?)
        };
        out.exclude_apps = app_ids(&list(&apps.exclude_applications), "excludeApplications")?;

        out.sign_in_risk = risks(&p.conditions.sign_in_risk_levels, "signInRiskLevels")?;
        out.user_risk = risks(&p.conditions.user_risk_levels, "userRiskLevels")?;

        if let Some(loc) = &p.conditions.locations {
            let inc = self.resolve_locations(&list(&loc.include_locations), "includeLocations", named)?;
            let exc = self.resolve_locations(&list(&loc.exclude_locations), "excludeLocations", named)?;
            if exc.all {
                return Err(invalid("conditions.locations.excludeLocations cannot be 'All'."));
            }
            if !inc.all && !list(&loc.include_locations).is_empty() {
                out.include_locations = Some(inc.ranges);
            }
            out.exclude_locations = exc.ranges;
        }
        if let Some(pl) = &p.conditions.platforms {
            let inc = list(&pl.include_platforms);
            if !inc.is_empty() && !has_all(&inc) {
                out.include_platforms = Some(platforms(&inc, "includePlatforms")?);
            }
            out.exclude_platforms = platforms(&list(&pl.exclude_platforms), "excludePlatforms")?;
        }
        let types = list(&p.conditions.client_app_types);
        if !types.is_empty() && !has_all(&types) {
            out.client_apps = types
                .iter()
                .map(|t| {
                    parse_client_app(t).ok_or_else(|| {
                        invalid(format!(
                            "conditions.clientAppTypes: '{t}' is not one of all, browser, mobileAppsAndDesktopClients, other."
                        ))
                    })
                })
                .collect::<DirResult<_>>()?;
        }

        if let Some(g) = &p.grant_controls {
            out.grant = Some(grant(g)?);
        }
        if let Some(f) = p
            .session_controls
            .as_ref()
            .and_then(|s| s.sign_in_frequency.as_ref())
            && f.is_enabled
        {
            out.sign_in_frequency_secs = Some(frequency_secs(f)?);
        }
        if out.grant.is_none() && out.sign_in_frequency_secs.is_none() {
            return Err(invalid(
                "A policy needs grant controls (block, mfa, domainJoinedDevice or an authentication strength) or a session control (signInFrequency).",
            ));
        }
        Ok(out)
    }

    async fn user_ids(&self, names: &[String], field: &str) -> DirResult<Vec<String>> {
        let mut out = Vec::new();
        for n in names {
            if has_none(std::slice::from_ref(n)) {
                continue;
            }
            if n.eq_ignore_ascii_case("All") {
                return Err(invalid(format!("conditions.users.{field} cannot be 'All'.")));
            }
            if n.eq_ignore_ascii_case("GuestsOrExternalUsers") {
                return Err(invalid(format!(
                    "conditions.users.{field}: 'GuestsOrExternalUsers' is not supported (usher has no guests)."
                )));
            }
            match self.get_user(n).await {
                Ok(u) => out.push(u.id),
                Err(DirectoryError::NotFound { .. }) => {
                    return Err(invalid(format!(
                        "conditions.users.{field}: no user '{n}' (give object ids or UPNs)."
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn group_ids(&self, names: &[String], field: &str) -> DirResult<Vec<String>> {
        let mut out = Vec::new();
        for n in names {
            match self.get_group(n).await {
                Ok(g) => out.push(g.id),
                Err(DirectoryError::NotFound { .. }) => {
                    return Err(invalid(format!("conditions.users.{field}: no group '{n}'.")));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The named locations.
    pub async fn list_named_locations(&self) -> DirResult<Vec<NamedLocation>> {
        let mut all: Vec<NamedLocation> = self.list_all(NAMED_LOCATION).await?;
        all.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        Ok(all)
    }

    /// One record of `kind` by id (ids compare in lower case), or `what` not found.
    async fn get_by_id<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
        what: &'static str,
    ) -> DirResult<T> {
        let rec = self
            .store
            .get(kind, &id.to_ascii_lowercase(), self.now())
            .await?
            .ok_or_else(|| DirectoryError::NotFound {
                what,
                id: id.to_owned(),
            })?;
        Ok(rec.decode()?)
    }

    /// One named location.
    pub async fn get_named_location(&self, id: &str) -> DirResult<NamedLocation> {
        self.get_by_id(NAMED_LOCATION, id, "named location").await
    }

    /// Creates a named location of IP ranges.
    pub async fn create_named_location(&self, mut loc: NamedLocation) -> DirResult<NamedLocation> {
        let name = loc.display_name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 256 {
            return Err(invalid(
                "Property 'displayName' is required (1 to 256 characters).",
            ));
        }
        if loc.ip_ranges.is_empty() || loc.ip_ranges.len() > 2000 {
            return Err(invalid("Property 'ipRanges' needs 1 to 2000 CIDR ranges."));
        }
        let mut ranges = Vec::new();
        for r in &loc.ip_ranges {
            let text = r.cidr_address.trim();
            if parse_cidr(text).is_none() {
                return Err(invalid(format!(
                    "ipRanges: '{text}' is not a CIDR range (a.b.c.d/n or x::y/n)."
                )));
            }
            ranges.push(IpRangeWire {
                cidr_address: text.to_owned(),
            });
        }
        if self
            .list_named_locations()
            .await?
            .iter()
            .any(|l| l.display_name.eq_ignore_ascii_case(&name))
        {
            return Err(DirectoryError::AlreadyExists(format!(
                "A named location called '{name}' exists already."
            )));
        }
        let id = self.new_id();
        loc.id = Some(id.clone());
        loc.display_name = name;
        loc.ip_ranges = ranges;
        loc.created_date_time = Some(usher_core::rfc3339(self.now()));
        self.store
            .insert(Record::from_value(NAMED_LOCATION, &id, &loc)?)
            .await?;
        self.ca_cache.invalidate();
        Ok(loc)
    }

    /// Deletes a named location no policy uses.
    pub async fn delete_named_location(&self, id: &str) -> DirResult<NamedLocation> {
        let loc = self.get_named_location(id).await?;
        let lid = loc.id.clone().unwrap_or_default();
        let users: Vec<String> = self
            .list_ca_policies()
            .await?
            .into_iter()
            .filter(|p| {
                p.conditions.locations.as_ref().is_some_and(|l| {
                    list(&l.include_locations)
                        .iter()
                        .chain(list(&l.exclude_locations).iter())
                        .any(|x| x.eq_ignore_ascii_case(&lid))
                })
            })
            .map(|p| p.display_name)
            .collect();
        if !users.is_empty() {
            return Err(DirectoryError::AlreadyExists(format!(
                "The named location '{}' is used by the policies {}; change them first.",
                loc.display_name,
                users.join(", ")
            )));
        }
        self.store.delete(NAMED_LOCATION, &lid, None).await?;
        self.ca_cache.invalidate();
        Ok(loc)
    }

    /// All policies, in name order.
    pub async fn list_ca_policies(&self) -> DirResult<Vec<CaPolicy>> {
        let mut all: Vec<CaPolicy> = self.list_all(CA_POLICY).await?;
        all.sort_by(|a, b| {
            a.display_name
                .to_lowercase()
                .cmp(&b.display_name.to_lowercase())
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(all)
    }

    /// One policy.
    pub async fn get_ca_policy(&self, id: &str) -> DirResult<CaPolicy> {
        self.get_by_id(CA_POLICY, id, "conditional access policy").await
    }

    /// Creates a policy.
    pub async fn create_ca_policy(&self, mut p: CaPolicy) -> DirResult<CaPolicy> {
        if self.list_all::<serde_json::Value>(CA_POLICY).await?.len() >= MAX_POLICIES {
            return Err(invalid(format!("A tenant has at most {MAX_POLICIES} policies.")));
        }
        let named = self.list_named_locations().await?;
        let id = self.new_id();
        p.id = Some(id.clone());
        let mut p = self.resolve_ids(p).await?;
        self.compile_ca_policy(&p, &named)?;
        let now = usher_core::rfc3339(self.now());
        p.created_date_time = Some(now.clone());
        p.modified_date_time = Some(now);
        self.store.insert(Record::from_value(CA_POLICY, &id, &p)?).await?;
        self.ca_cache.invalidate();
        Ok(p)
    }

    /// Updates a policy with a partial document (Graph's PATCH: the properties given replace
    /// those stored; nested objects are merged).
    pub async fn update_ca_policy(&self, id: &str, patch: &serde_json::Value) -> DirResult<CaPolicy> {
        if !patch.is_object() {
            return Err(invalid("The body must be a JSON object."));
        }
        let named = self.list_named_locations().await?;
        for _ in 0..20 {
            let rec = self
                .store
                .get(CA_POLICY, &id.to_ascii_lowercase(), self.now())
                .await?
                .ok_or_else(|| DirectoryError::NotFound {
                    what: "conditional access policy",
                    id: id.to_owned(),
                })?;
            let mut value = rec.data.clone();
            merge(&mut value, patch);
            let mut p: CaPolicy = serde_json::from_value(value)
                .map_err(|e| invalid(format!("The policy is not valid: {e}")))?;
            let stored: CaPolicy = rec.decode()?;
            p.id = stored.id.clone();
            p.created_date_time = stored.created_date_time.clone();
            let mut p = self.resolve_ids(p).await?;
            self.compile_ca_policy(&p, &named)?;
            p.modified_date_time = Some(usher_core::rfc3339(self.now()));
            let mut next = rec.clone();
            next.data = serde_json::to_value(&p).map_err(|e| invalid(e.to_string()))?;
            match self.store.update(next).await {
                Ok(_) => {
                    self.ca_cache.invalidate();
                    return Ok(p);
                }
                Err(usher_store::StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Contended)
    }

    /// Deletes a policy.
    pub async fn delete_ca_policy(&self, id: &str) -> DirResult<CaPolicy> {
        let p = self.get_ca_policy(id).await?;
        self.store
            .delete(CA_POLICY, &id.to_ascii_lowercase(), None)
            .await?;
        self.ca_cache.invalidate();
        Ok(p)
    }

    /// The compiled policies, through the short-lived cache. A stored policy that no longer
    /// compiles fails the call: evaluation then fails closed.
    pub async fn ca_policies(&self) -> DirResult<Arc<PolicySet>> {
        let now = self.now();
        if let Some(p) = self.ca_cache.get(now) {
            return Ok(p);
        }
        let named = self.list_named_locations().await?;
        let mut out = Vec::new();
        for p in self.list_ca_policies().await? {
            out.push(self.compile_ca_policy(&p, &named)?);
        }
        let out = Arc::new(PolicySet::new(out));
        self.ca_cache.put(out.clone(), now);
        Ok(out)
    }
}

fn role_ids(names: &[String], field: &str) -> DirResult<Vec<String>> {
    names
        .iter()
        .map(|r| {
            if is_guid(r) {
                Ok(r.to_ascii_lowercase())
            } else {
                Err(invalid(format!(
                    "conditions.users.{field}: '{r}' is not a directory role template id."
                )))
            }
        })
        .collect()
}

fn app_ids(names: &[String], field: &str) -> DirResult<Vec<String>> {
    let mut out = Vec::new();
    for a in names {
        if has_none(std::slice::from_ref(a)) {
            continue;
        }
        if a.eq_ignore_ascii_case("All") {
            return Err(invalid(format!(
                "conditions.applications.{field} cannot be 'All' here."
            )));
        }
        if !is_guid(a) {
            return Err(invalid(format!(
                "conditions.applications.{field}: '{a}' is not an application id (a GUID, e.g. the VM Sign-In app {}).",
                usher_core::well_known::VM_SIGN_IN_APP_ID
            )));
        }
        out.push(a.to_ascii_lowercase());
    }
    Ok(out)
}

fn risks(v: &Option<Vec<String>>, field: &str) -> DirResult<Vec<RiskLevel>> {
    list(v)
        .iter()
        .map(|r| {
            parse_risk(r).ok_or_else(|| {
                invalid(format!(
                    "conditions.{field}: '{r}' is not one of none, low, medium, high."
                ))
            })
        })
        .collect()
}

fn platforms(names: &[String], field: &str) -> DirResult<Vec<Platform>> {
    if has_all(names) {
        return Ok(vec![
            Platform::Linux,
            Platform::Windows,
            Platform::MacOs,
            Platform::Ios,
            Platform::Android,
            Platform::Other,
        ]);
    }
    names
        .iter()
        .map(|n| {
            parse_platform(n).ok_or_else(|| {
                invalid(format!(
                    "conditions.platforms.{field}: '{n}' is not one of all, linux, windows, macOS, iOS, android."
                ))
            })
        })
        .collect()
}

fn grant(g: &usher_proto::ca::CaGrantControls) -> DirResult<(Operator, Vec<Control>)> {
    let op = match g.operator.to_ascii_uppercase().as_str() {
        "OR" | "" => Operator::Or,
        "AND" => Operator::And,
        other => {
            return Err(invalid(format!(
                "grantControls.operator must be 'AND' or 'OR', not '{other}'."
            )));
        }
    };
    let mut controls = Vec::new();
    for c in list(&g.built_in_controls) {
        controls.push(match c.as_str() {
            "block" => Control::Block,
            "mfa" => Control::Mfa,
            "domainJoinedDevice" => Control::JoinedDevice,
            other => {
                return Err(invalid(format!(
                    "grantControls.builtInControls: '{other}' is not supported; usher offers block, mfa and domainJoinedDevice."
                )));
            }
        });
    }
    if let Some(s) = &g.authentication_strength {
        let key = if s.id.trim().is_empty() {
            s.display_name.clone().unwrap_or_default()
        } else {
            s.id.clone()
        };
        let strength = parse_strength(&key).ok_or_else(|| {
            invalid(format!(
                "grantControls.authenticationStrength: '{key}' is not a built-in strength ({STRENGTH_MFA} MFA, {STRENGTH_PASSWORDLESS} passwordless MFA, {STRENGTH_PHISHING_RESISTANT} phishing-resistant MFA)."
            ))
        })?;
        controls.push(Control::Strength(strength));
    }
    if controls.is_empty() {
        return Err(invalid(
            "grantControls needs builtInControls (block, mfa, domainJoinedDevice) or an authenticationStrength.",
        ));
    }
    if controls.contains(&Control::Block) && controls.len() > 1 {
        return Err(invalid(
            "grantControls: 'block' cannot be combined with other controls.",
        ));
    }
    Ok((op, controls))
}

fn frequency_secs(f: &usher_proto::ca::CaSignInFrequency) -> DirResult<u64> {
    if f.frequency_interval.as_deref() == Some("everyTime") {
        return Ok(0);
    }
    let value = u64::from(f.value.unwrap_or(0));
    let unit = match f.unit.as_deref() {
        Some("hours") if (1..=23).contains(&value) => 3600,
        Some("days") if (1..=365).contains(&value) => 86_400,
        _ => {
            return Err(invalid(
                "sessionControls.signInFrequency needs value and type: 1 to 23 hours or 1 to 365 days (or frequencyInterval 'everyTime').",
            ));
        }
    };
    Ok(value * unit)
}

/// Graph PATCH merging: objects merge key by key, anything else replaces.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if k == "id" || k == "createdDateTime" || k == "modifiedDateTime" {
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_the_patch_does_not_name() {
        let mut t = serde_json::json!({"a": {"b": 1, "c": 2}, "d": 3, "id": "x"});
        merge(&mut t, &serde_json::json!({"a": {"b": 9}, "id": "y"}));
        assert_eq!(t, serde_json::json!({"a": {"b": 9, "c": 2}, "d": 3, "id": "x"}));
    }

    #[test]
    fn grants_and_frequencies_are_checked() {
        use usher_proto::ca::{CaGrantControls, CaSignInFrequency, CaStrengthRef};
        let g = CaGrantControls {
            operator: "OR".into(),
            built_in_controls: Some(vec!["block".into(), "mfa".into()]),
            authentication_strength: None,
        };
        assert!(grant(&g).is_err());
        let g = CaGrantControls {
            operator: "AND".into(),
            built_in_controls: Some(vec!["compliantDevice".into()]),
            authentication_strength: None,
        };
        assert!(grant(&g).unwrap_err().to_string().contains("compliantDevice"));
        let g = CaGrantControls {
            operator: "and".into(),
            built_in_controls: None,
            authentication_strength: Some(CaStrengthRef {
                id: STRENGTH_PHISHING_RESISTANT.into(),
                display_name: None,
            }),
        };
        assert_eq!(
            grant(&g).unwrap(),
            (
                Operator::And,
                vec![Control::Strength(Strength::PhishingResistantMfa)]
            )
        );
        let f = CaSignInFrequency {
            is_enabled: true,
            value: Some(2),
            unit: Some("hours".into()),
            frequency_interval: None,
        };
        assert_eq!(frequency_secs(&f).unwrap(), 7200);
        let f = CaSignInFrequency { value: Some(0), ..f };
        assert!(frequency_secs(&f).is_err());
    }
}
