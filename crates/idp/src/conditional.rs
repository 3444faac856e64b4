//! Conditional Access at every token issuance (SPEC C2): the sign-in as the pure engine sees it
//! (transitive groups, directory roles, risk, methods from the sign-in's own `amr`), the verdict
//! turned into Entra's errors, and each policy's result in the shape the sign-in log records.

use std::net::IpAddr;

use usher_authz::conditional::{
    self as ca, ClientApp, Evaluation, Methods, NotApplied, Operator, Platform, PolicyResult, Requirement,
    RiskLevel, SignIn, Strength, Verdict,
};
use usher_core::well_known;
use usher_directory::SignInEvent;
use usher_directory::conditional_access::{parse_client_app, parse_platform, parse_risk, risk_name};
use usher_directory::model::User;
use usher_directory::risk::RiskAssessment;
use usher_proto::ca::{PolicyResultWire, WhatIfRequest, WhatIfResponse};

use crate::scopes::{Resource, ScopeRequest};
use crate::{Idp, IdpError, IdpResult};

/// AADSTS53003's text.
pub const BLOCKED_TEXT: &str = "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance. If this is unexpected, see the Conditional Access policy that applied to this request or contact your administrator.";

/// Where and how a sign-in happens.
#[derive(Debug, Clone)]
pub struct SignInContext {
    /// The client's address.
    pub ip: String,
    /// The client's platform.
    pub platform: Platform,
    /// The client app type.
    pub client_app: ClientApp,
    /// Whether a joined machine's agent relays the sign-in.
    pub joined_device: bool,
    /// The user authenticated in this request (not a refresh).
    pub fresh: bool,
}

impl SignInContext {
    /// A context for a request from `ip` with `user_agent`.
    pub fn new(ip: &str, user_agent: &str, client_app: ClientApp) -> Self {
        Self {
            ip: ip.to_owned(),
            platform: platform_of(user_agent),
            client_app,
            joined_device: false,
            fresh: true,
        }
    }
}

/// The platform a User-Agent names.
pub fn platform_of(user_agent: &str) -> Platform {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("android") {
        Platform::Android
    } else if ua.contains("iphone") || ua.contains("ipad") || ua.contains("(ios") {
        Platform::Ios
    } else if ua.contains("windows") {
        Platform::Windows
    } else if ua.contains("mac os x") || ua.contains("macintosh") || ua.contains("(macos") {
        Platform::MacOs
    } else if ua.contains("linux") || ua.contains("x11") {
        Platform::Linux
    } else {
        Platform::Other
    }
}

/// What the sign-in's `amr` says it used. Only the server writes `amr`, from the methods it
/// verified itself; nothing a client sends can add to it.
pub fn methods_of(amr: &[String]) -> Methods {
    let has = |m: &str| amr.iter().any(|a| a == m);
    let passkey = has("fido");
    Methods {
        mfa: has("mfa"),
        passwordless: passkey && !has("pwd"),
        phishing_resistant: passkey,
    }
}

/// The app Conditional Access sees for a resource.
pub fn app_of(resource: &Resource) -> &str {
    match resource {
        Resource::Api => well_known::MANAGEMENT_APP_ID,
        Resource::App { app_id, .. } => app_id,
    }
}

/// One policy's evaluation and the sign-in's risk.
#[derive(Debug, Clone)]
pub struct CaReport {
    /// The engine's answer.
    pub evaluation: Evaluation,
    /// The risk used.
    pub risk: RiskAssessment,
    /// The policies evaluated (the outcomes are in their order).
    pub policies: std::sync::Arc<usher_authz::conditional::PolicySet>,
}

/// A policy's grant controls as Graph names them.
fn control_names(p: &usher_authz::conditional::Policy) -> Vec<String> {
    p.grant
        .as_ref()
        .map(|(_, c)| {
            c.iter()
                .map(|c| match c {
                    ca::Control::Block => "block".to_owned(),
                    ca::Control::Mfa => "mfa".to_owned(),
                    ca::Control::JoinedDevice => "domainJoinedDevice".to_owned(),
                    ca::Control::Strength(s) => format!("authenticationStrength:{}", strength_name(*s)),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strength_name(s: Strength) -> &'static str {
    match s {
        Strength::Mfa => "mfa",
        Strength::PasswordlessMfa => "passwordlessMfa",
        Strength::PhishingResistantMfa => "phishingResistantMfa",
    }
}

fn requirement_name(r: Requirement) -> &'static str {
    match r {
        Requirement::Mfa => "mfa",
        Requirement::Strength(s) => strength_name(s),
        Requirement::JoinedDevice => "joinedDevice",
        Requirement::Reauthenticate => "reauthenticate",
    }
}

fn not_applied_name(n: NotApplied) -> &'static str {
    match n {
        NotApplied::Disabled => "disabled",
        NotApplied::UserNotIncluded => "userNotIncluded",
        NotApplied::UserExcluded => "userExcluded",
        NotApplied::AppNotIncluded => "appNotIncluded",
        NotApplied::AppExcluded => "appExcluded",
        NotApplied::SignInRisk => "signInRisk",
        NotApplied::UserRisk => "userRisk",
        NotApplied::Location => "location",
        NotApplied::Platform => "platform",
        NotApplied::ClientApp => "clientApp",
    }
}

/// The strongest single thing a set of unmet grants asks for, for what-if's `decision`.
fn headline(required: &[(Operator, Vec<Requirement>)]) -> String {
    let all: Vec<Requirement> = required.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    let rank = |r: &Requirement| match r {
        Requirement::Strength(Strength::PhishingResistantMfa) => 5,
        Requirement::Strength(Strength::PasswordlessMfa) => 4,
        Requirement::Strength(Strength::Mfa) | Requirement::Mfa => 3,
        Requirement::JoinedDevice => 2,
        Requirement::Reauthenticate => 1,
    };
    all.iter()
        .max_by_key(|r| rank(r))
        .map_or_else(|| "allow".to_owned(), |r| requirement_name(*r).to_owned())
}

/// The final decision's name and what is missing.
pub fn decision(v: &Verdict) -> (String, Vec<String>) {
    match v {
        Verdict::Allow => ("allow".into(), vec![]),
        Verdict::Block => ("block".into(), vec![]),
        Verdict::Require(r) => {
            let mut names: Vec<String> = r
                .iter()
                .flat_map(|(_, reqs)| reqs.iter().map(|x| requirement_name(*x).to_owned()))
                .collect();
            names.sort();
            names.dedup();
            (headline(r), names)
        }
    }
}

impl CaReport {
    /// Whether the verdict asks for something `wanted` accepts (never for a block or an allow).
    pub fn requires(&self, wanted: impl Fn(Requirement) -> bool) -> bool {
        match &self.evaluation.verdict {
            Verdict::Require(r) => r.iter().any(|(_, reqs)| reqs.iter().any(|q| wanted(*q))),
            _ => false,
        }
    }

    /// Graph's `conditionalAccessStatus`: `success`, `failure` or `notApplied`.
    pub fn status(&self) -> &'static str {
        let enforced_applied = self
            .evaluation
            .policies
            .iter()
            .any(|p| !p.report_only && !matches!(p.result, PolicyResult::NotApplied(_)));
        match self.evaluation.verdict {
            Verdict::Allow if enforced_applied => "success",
            Verdict::Allow => "notApplied",
            _ => "failure",
        }
    }

    /// Each policy's result for the log and what-if.
    pub fn wire(&self) -> Vec<PolicyResultWire> {
        self.evaluation
            .policies
            .iter()
            .zip(self.policies.policies())
            .map(|(p, policy)| {
                let prefix = |s: &str| {
                    if p.report_only {
                        format!("reportOnly{}{}", s[..1].to_ascii_uppercase(), &s[1..])
                    } else {
                        s.to_owned()
                    }
                };
                let controls = control_names(policy);
                let mut w = PolicyResultWire {
                    id: p.id.to_string(),
                    display_name: p.name.to_string(),
                    report_only: p.report_only,
                    enforced_grant_controls: controls,
                    ..Default::default()
                };
                match &p.result {
                    PolicyResult::NotApplied(NotApplied::Disabled) => {
                        w.result = "notEnabled".into();
                        w.not_applied_reason = Some("disabled".into());
                    }
                    PolicyResult::NotApplied(n) => {
                        w.result = prefix("notApplied");
                        w.not_applied_reason = Some(not_applied_name(*n).into());
                    }
                    PolicyResult::Satisfied => {
                        w.applies = true;
                        w.result = prefix("success");
                        w.would_have = p.report_only.then(|| "allow".into());
                    }
                    PolicyResult::Block => {
                        w.applies = true;
                        w.result = prefix("failure");
                        w.missing = vec!["block".into()];
                        w.would_have = p.report_only.then(|| "block".into());
                    }
                    PolicyResult::Requires(op, reqs) => {
                        w.applies = true;
                        w.result = prefix("failure");
                        w.missing = reqs.iter().map(|r| requirement_name(*r).to_owned()).collect();
                        w.would_have = p.report_only.then(|| headline(&[(*op, reqs.clone())]));
                    }
                }
                w
            })
            .collect()
    }

    /// Writes the evaluation into a sign-in log entry.
    pub fn log_into(&self, e: &mut SignInEvent) {
        e.conditional_access_status = self.status().into();
        e.applied_policies = self.wire();
        e.risk_level = risk_name(self.risk.sign_in.max(self.risk.user)).into();
        e.risk_signals = self.risk.signals.iter().map(|s| (*s).to_owned()).collect();
    }

    /// The refusal, if the verdict is not to issue: 53003 for a block, 70044 for sign-in
    /// frequency, 53001 for a joined device, 50076 for MFA or a strength (step-up).
    pub fn refusal(&self, resource: &str) -> Option<IdpError> {
        match &self.evaluation.verdict {
            Verdict::Allow => None,
            Verdict::Block => Some(IdpError::new("invalid_grant", 53003, BLOCKED_TEXT)),
            Verdict::Require(r) => {
                let all: Vec<Requirement> = r.iter().flat_map(|(_, x)| x.iter().copied()).collect();
                if all.contains(&Requirement::Reauthenticate) {
                    return Some(IdpError {
                        suberror: Some("basic_action"),
                        ..IdpError::new(
                            "interaction_required",
                            70044,
                            format!(
                                "The session has expired or is invalid due to sign-in frequency checks by Conditional Access. Sign in again to access '{resource}'."
                            ),
                        )
                    });
                }
                let strength = all.iter().find_map(|x| match x {
                    Requirement::Strength(s) if *s != Strength::Mfa => Some(*s),
                    _ => None,
                });
                if let Some(s) = strength {
                    return Some(IdpError {
                        suberror: Some("basic_action"),
                        ..IdpError::new(
                            "invalid_grant",
                            50076,
                            format!(
                                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use {} to access '{resource}'. Sign in with a passkey.",
                                if s == Strength::PhishingResistantMfa {
                                    "phishing-resistant multi-factor authentication"
                                } else {
                                    "passwordless multi-factor authentication"
                                }
                            ),
                        )
                    });
                }
                if all
                    .iter()
                    .any(|x| matches!(x, Requirement::Mfa | Requirement::Strength(_)))
                {
                    return Some(IdpError {
                        suberror: Some("basic_action"),
                        ..IdpError::new(
                            "invalid_grant",
                            50076,
                            format!(
                                "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '{resource}'."
                            ),
                        )
                    });
                }
                Some(IdpError::new(
                    "invalid_grant",
                    53001,
                    format!(
                        "Device is not domain-joined. Conditional Access requires a joined device for '{resource}': sign in at a machine joined to the directory."
                    ),
                ))
            }
        }
    }
}

/// Proof that Conditional Access admitted a sign-in to a resource: tokens are minted only with
/// one (see `Idp::user_tokens`).
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The resource.
    pub resource: Resource,
    /// The scopes asked for.
    pub scopes: ScopeRequest,
}

impl Idp {
    /// The groups and directory roles of a user, as Conditional Access matches them.
    async fn memberships(&self, user: &User) -> IdpResult<(Vec<String>, Vec<String>)> {
        let (groups, group_roles) = self.directory().transitive_memberships(&user.id).await?;
        let mut roles: Vec<String> = user
            .directory_roles
            .iter()
            .chain(&group_roles)
            .map(|r| r.to_ascii_lowercase())
            .collect();
        roles.sort();
        roles.dedup();
        Ok((groups, roles))
    }

    /// Evaluates every policy for a sign-in of `user` to `app_id`. `risk` overrides the assessed
    /// risk (what-if). A stored policy that cannot be read fails the call (fail closed).
    pub async fn evaluate_ca(
        &self,
        user: &User,
        app_id: &str,
        amr: &[String],
        auth_time: i64,
        ctx: &SignInContext,
        risk: Option<RiskAssessment>,
    ) -> IdpResult<CaReport> {
        let policies = self.directory().ca_policies().await?;
        let risk = match risk {
            Some(r) => r,
            None => self.directory().assess_risk(&user.id, &ctx.ip).await?,
        };
        let (groups, roles) = if policies.uses_memberships() {
            self.memberships(user).await?
        } else {
            (vec![], vec![])
        };
        let ip: Option<IpAddr> = ctx.ip.parse().ok();
        let sign_in = SignIn {
            user_id: &user.id,
            groups: &groups,
            roles: &roles,
            app_id,
            ip,
            sign_in_risk: risk.sign_in,
            user_risk: risk.user,
            platform: ctx.platform,
            client_app: ctx.client_app,
            methods: methods_of(amr),
            joined_device: ctx.joined_device,
            auth_age_secs: u64::try_from(self.now() - auth_time).unwrap_or(0),
            fresh: ctx.fresh,
        };
        Ok(CaReport {
            evaluation: policies.evaluate(&sign_in),
            risk,
            policies: policies.clone(),
        })
    }

    /// Conditional Access for a token about to be minted: resolves the resource, evaluates, and
    /// keeps the report for the sign-in log. Refused sign-ins get the matching AADSTS error.
    pub(crate) async fn admit(
        &self,
        s: &crate::tokens::UserSignIn,
        scopes: &ScopeRequest,
        ctx: &SignInContext,
        attempt: &mut crate::grants::Attempt,
    ) -> IdpResult<Admitted> {
        let resource = self.resolve_resource(scopes).await?;
        let report = self
            .evaluate_ca(&s.user, app_of(&resource), &s.amr, s.auth_time, ctx, None)
            .await?;
        let name = match &resource {
            Resource::Api => self.public_url().to_owned(),
            Resource::App { display_name, .. } => display_name.clone(),
        };
        let refusal = report.refusal(&name);
        attempt.ca = Some(report);
        match refusal {
            Some(e) => Err(e),
            None => Ok(Admitted {
                resource,
                scopes: scopes.clone(),
            }),
        }
    }

    /// What-if (SPEC C3): a hypothetical sign-in evaluated against the current policies.
    pub async fn what_if(&self, q: &WhatIfRequest) -> IdpResult<WhatIfResponse> {
        let bad = |m: String| IdpError::new("invalid_request", 900144, m);
        let user = match self.directory().get_user(q.user.trim()).await {
            Ok(u) => u,
            Err(usher_directory::DirectoryError::NotFound { .. }) => {
                return Err(bad(format!("No user '{}'.", q.user)));
            }
            Err(e) => return Err(e.into()),
        };
        let app_id = q.app_id.trim().to_ascii_lowercase();
        if uuid::Uuid::try_parse(&app_id).is_err() {
            return Err(bad(format!(
                "'{}' is not an application id (a GUID, e.g. the VM Sign-In app {}).",
                q.app_id,
                well_known::VM_SIGN_IN_APP_ID
            )));
        }
        let ip = q.ip_address.clone().unwrap_or_default();
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            return Err(bad(format!("'{ip}' is not an IP address.")));
        }
        let level = |v: &Option<String>, field: &str| -> IdpResult<Option<RiskLevel>> {
            v.as_deref()
                .map(|s| {
                    parse_risk(s)
                        .ok_or_else(|| bad(format!("{field} '{s}' is not one of none, low, medium, high.")))
                })
                .transpose()
        };
        let sign_in_risk = level(&q.sign_in_risk_level, "signInRiskLevel")?;
        let user_risk = level(&q.user_risk_level, "userRiskLevel")?;
        let mut risk = self.directory().assess_risk(&user.id, &ip).await?;
        if let Some(r) = sign_in_risk {
            risk.sign_in = r;
        }
        if let Some(r) = user_risk {
            risk.user = r;
        }
        let platform = match q.device_platform.as_deref() {
            None => Platform::Linux,
            Some(p) => parse_platform(p).ok_or_else(|| {
                bad(format!(
                    "devicePlatform '{p}' is not one of linux, windows, macOS, iOS, android."
                ))
            })?,
        };
        let client_app = match q.client_app_type.as_deref() {
            None => ClientApp::MobileAppsAndDesktopClients,
            Some(c) => parse_client_app(c).ok_or_else(|| {
                bad(format!(
                    "clientAppType '{c}' is not one of browser, mobileAppsAndDesktopClients, other."
                ))
            })?,
        };
        let amr = q
            .authentication_methods
            .clone()
            .unwrap_or_else(|| vec!["pwd".into()]);
        let ctx = SignInContext {
            ip,
            platform,
            client_app,
            joined_device: q.joined_device,
            fresh: true,
        };
        let report = self
            .evaluate_ca(&user, &app_id, &amr, self.now(), &ctx, Some(risk))
            .await?;
        let (decision, requirements) = decision(&report.evaluation.verdict);
        Ok(WhatIfResponse {
            decision,
            requirements,
            sign_in_risk_level: risk_name(report.risk.sign_in).into(),
            user_risk_level: risk_name(report.risk.user).into(),
            policies: report.wire(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_amr_only() {
        let m = methods_of(&["pwd".into()]);
        assert!(!m.mfa && !m.phishing_resistant);
        let m = methods_of(&["pwd".into(), "otp".into(), "mfa".into()]);
        assert!(m.mfa && !m.phishing_resistant && !m.passwordless);
        let m = methods_of(&["fido".into(), "mfa".into()]);
        assert!(m.mfa && m.phishing_resistant && m.passwordless);
    }

    #[test]
    fn platforms_from_user_agents() {
        assert_eq!(platform_of("usher-client/0.1 (linux)"), Platform::Linux);
        assert_eq!(
            platform_of("Mozilla/5.0 (Linux; Android 14) Chrome/1"),
            Platform::Android
        );
        assert_eq!(
            platform_of("Mozilla/5.0 (Windows NT 10.0; Win64)"),
            Platform::Windows
        );
        assert_eq!(
            platform_of("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0)"),
            Platform::MacOs
        );
        assert_eq!(platform_of("curl/8"), Platform::Other);
    }

    fn report(verdict: Verdict) -> CaReport {
        CaReport {
            evaluation: Evaluation {
                verdict,
                policies: vec![],
            },
            risk: RiskAssessment::none(),
            policies: std::sync::Arc::new(usher_authz::conditional::PolicySet::default()),
        }
    }

    #[test]
    fn verdicts_become_entra_errors() {
        assert!(report(Verdict::Allow).refusal("app").is_none());
        let code = |v: Verdict| report(v).refusal("app").map(|e| (e.error, e.code));
        assert_eq!(code(Verdict::Block), Some(("invalid_grant", 53003)));
        assert_eq!(
            code(Verdict::Require(vec![(
                Operator::And,
                vec![Requirement::Mfa, Requirement::Reauthenticate]
            )])),
            Some(("interaction_required", 70044))
        );
        assert_eq!(
            code(Verdict::Require(vec![(Operator::Or, vec![Requirement::Mfa])])),
            Some(("invalid_grant", 50076))
        );
        let e = report(Verdict::Require(vec![(
            Operator::Or,
            vec![Requirement::Strength(Strength::PhishingResistantMfa)],
        )]))
        .refusal("app")
        .unwrap();
        assert!(
            e.code == 50076 && e.description.contains("phishing-resistant"),
            "{e:?}"
        );
        assert_eq!(
            code(Verdict::Require(vec![(
                Operator::Or,
                vec![Requirement::JoinedDevice]
            )])),
            Some(("invalid_grant", 53001))
        );
    }

    #[test]
    fn decisions_name_the_strongest_requirement() {
        let v = Verdict::Require(vec![
            (Operator::Or, vec![Requirement::Mfa]),
            (
                Operator::And,
                vec![Requirement::Strength(Strength::PhishingResistantMfa)],
            ),
        ]);
        assert_eq!(
            decision(&v),
            (
                "phishingResistantMfa".to_owned(),
                vec!["mfa".to_owned(), "phishingResistantMfa".to_owned()]
            )
        );
        assert_eq!(decision(&Verdict::Block).0, "block");
        assert_eq!(decision(&Verdict::Allow).0, "allow");
    }
}
