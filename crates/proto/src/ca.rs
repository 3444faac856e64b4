//! Conditional Access wire types (SPEC C1–C4): Graph's `conditionalAccessPolicy`,
//! `ipNamedLocation` and `riskyUser` shapes, and usher's what-if request and answer.
//!
//! Every list is optional on the wire (Graph sends `null` or leaves keys out); readers treat a
//! missing list as empty.

use serde::{Deserialize, Serialize};

/// Built-in authentication strength: multifactor authentication.
pub const STRENGTH_MFA: &str = "00000000-0000-0000-0000-000000000002";
/// Built-in authentication strength: passwordless MFA.
pub const STRENGTH_PASSWORDLESS: &str = "00000000-0000-0000-0000-000000000003";
/// Built-in authentication strength: phishing-resistant MFA.
pub const STRENGTH_PHISHING_RESISTANT: &str = "00000000-0000-0000-0000-000000000004";

/// Graph's `conditionalAccessPolicy`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaPolicy {
    /// Object id (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// `enabled`, `enabledForReportingButNotEnforced` or `disabled`.
    #[serde(default)]
    pub state: String,
    /// When it was created (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
    /// When it was last changed (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_date_time: Option<String>,
    /// Who and what it applies to.
    #[serde(default)]
    pub conditions: CaConditions,
    /// What it grants on.
    #[serde(default)]
    pub grant_controls: Option<CaGrantControls>,
    /// Session controls.
    #[serde(default)]
    pub session_controls: Option<CaSessionControls>,
}

/// `conditionalAccessConditionSet`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaConditions {
    /// Users, groups and directory roles.
    #[serde(default)]
    pub users: Option<CaUsers>,
    /// Applications (resources).
    #[serde(default)]
    pub applications: Option<CaApplications>,
    /// Sign-in risk levels (`low`, `medium`, `high`, `none`).
    #[serde(default)]
    pub sign_in_risk_levels: Option<Vec<String>>,
    /// User risk levels.
    #[serde(default)]
    pub user_risk_levels: Option<Vec<String>>,
    /// Named locations (ids, `All`, `AllTrusted`) or CIDR ranges.
    #[serde(default)]
    pub locations: Option<CaLocations>,
    /// Device platforms.
    #[serde(default)]
    pub platforms: Option<CaPlatforms>,
    /// Client app types (`all`, `browser`, `mobileAppsAndDesktopClients`, `other`).
    #[serde(default)]
    pub client_app_types: Option<Vec<String>>,
}

/// `conditionalAccessUsers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaUsers {
    /// User object ids, `All`, or `None`.
    #[serde(default)]
    pub include_users: Option<Vec<String>>,
    /// User object ids excluded.
    #[serde(default)]
    pub exclude_users: Option<Vec<String>>,
    /// Group ids included.
    #[serde(default)]
    pub include_groups: Option<Vec<String>>,
    /// Group ids excluded.
    #[serde(default)]
    pub exclude_groups: Option<Vec<String>>,
    /// Directory role template ids included.
    #[serde(default)]
    pub include_roles: Option<Vec<String>>,
    /// Directory role template ids excluded.
    #[serde(default)]
    pub exclude_roles: Option<Vec<String>>,
}

/// `conditionalAccessApplications`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaApplications {
    /// App ids, `All` or `None`.
    #[serde(default)]
    pub include_applications: Option<Vec<String>>,
    /// App ids excluded.
    #[serde(default)]
    pub exclude_applications: Option<Vec<String>>,
}

/// `conditionalAccessLocations`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaLocations {
    /// Named location ids, `All`, `AllTrusted`, or CIDR ranges.
    #[serde(default)]
    pub include_locations: Option<Vec<String>>,
    /// Named location ids, `AllTrusted`, or CIDR ranges.
    #[serde(default)]
    pub exclude_locations: Option<Vec<String>>,
}

/// `conditionalAccessPlatforms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaPlatforms {
    /// `all`, `linux`, `windows`, `macOS`, `iOS`, `android`.
    #[serde(default)]
    pub include_platforms: Option<Vec<String>>,
    /// Platforms excluded.
    #[serde(default)]
    pub exclude_platforms: Option<Vec<String>>,
}

/// `conditionalAccessGrantControls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaGrantControls {
    /// `AND` or `OR`.
    #[serde(default)]
    pub operator: String,
    /// `block`, `mfa`, `domainJoinedDevice`.
    #[serde(default)]
    pub built_in_controls: Option<Vec<String>>,
    /// An authentication strength (a built-in's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_strength: Option<CaStrengthRef>,
}

/// A reference to an authentication strength policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaStrengthRef {
    /// Its id.
    #[serde(default)]
    pub id: String,
    /// Its display name (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `conditionalAccessSessionControls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSessionControls {
    /// Sign-in frequency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_frequency: Option<CaSignInFrequency>,
}

/// `signInFrequencySessionControl`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CaSignInFrequency {
    /// Whether it is on.
    #[serde(default)]
    pub is_enabled: bool,
    /// The amount (with `type`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
    /// `hours` or `days`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `timeBased` (default) or `everyTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_interval: Option<String>,
}

/// Graph's `ipNamedLocation`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamedLocation {
    /// Object id (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Whether `AllTrusted` includes it.
    #[serde(default)]
    pub is_trusted: bool,
    /// The ranges.
    #[serde(default)]
    pub ip_ranges: Vec<IpRangeWire>,
    /// When it was created (set by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<String>,
}

/// `iPv4CidrRange` / `iPv6CidrRange`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpRangeWire {
    /// `a.b.c.d/n` or `x::y/n`.
    pub cidr_address: String,
}

/// A what-if question (SPEC C3): a hypothetical sign-in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhatIfRequest {
    /// The user: object id or UPN.
    pub user: String,
    /// The application (resource) app id.
    pub app_id: String,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// Sign-in risk: `none`, `low`, `medium`, `high` (default: the user's current signals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_risk_level: Option<String>,
    /// User risk (default: the user's current state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_risk_level: Option<String>,
    /// Platform (default `linux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_platform: Option<String>,
    /// Client app type (default `mobileAppsAndDesktopClients`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_app_type: Option<String>,
    /// Methods the sign-in used, as `amr` values (default `["pwd"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_methods: Option<Vec<String>>,
    /// Whether a joined machine relays the sign-in (default false).
    #[serde(default)]
    pub joined_device: bool,
}

/// One policy's result in a what-if answer or a sign-in log entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResultWire {
    /// The policy's id.
    pub id: String,
    /// Its name.
    pub display_name: String,
    /// Graph's `appliedConditionalAccessPolicy.result`: `success`, `failure`, `notApplied`,
    /// `notEnabled`, `reportOnlySuccess`, `reportOnlyFailure`, `reportOnlyNotApplied`.
    pub result: String,
    /// Whether the policy applies to the sign-in.
    pub applies: bool,
    /// Report-only: what it would have done is in `result` and `wouldHave`.
    pub report_only: bool,
    /// Why it did not apply (`userExcluded`, `appNotIncluded`, `location`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_applied_reason: Option<String>,
    /// The grant controls it enforces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enforced_grant_controls: Vec<String>,
    /// What it asked of the sign-in that was missing (`mfa`, `phishingResistantMfa`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// For a report-only policy: `allow`, `block`, or what it would have required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would_have: Option<String>,
}

/// The what-if answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhatIfResponse {
    /// `allow`, `block`, `mfa`, `passwordlessMfa`, `phishingResistantMfa`, `joinedDevice` or
    /// `reauthenticate` (report-only policies never decide).
    pub decision: String,
    /// Everything the sign-in lacks, when the decision asks for more.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// The sign-in risk used.
    pub sign_in_risk_level: String,
    /// The user risk used.
    pub user_risk_level: String,
    /// Every policy, in name order.
    pub policies: Vec<PolicyResultWire>,
}

/// Graph's `riskyUser`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RiskyUser {
    /// The user's object id.
    pub id: String,
    /// The user's UPN.
    pub user_principal_name: String,
    /// `none`, `low`, `medium`, `high`.
    pub risk_level: String,
    /// `atRisk`, `confirmedCompromised`, `dismissed`, `none`.
    pub risk_state: String,
    /// Why (`adminConfirmedUserCompromised`, `adminDismissedAllRiskForUser`, `none`, ...).
    pub risk_detail: String,
    /// When the state last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_last_updated_date_time: Option<String>,
}

/// The body of `riskyUsers/confirmCompromised` and `riskyUsers/dismiss`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RiskyUserIds {
    /// Object ids.
    pub user_ids: Vec<String>,
}
