//! Sign-in and user risk from transparent signals (SPEC C4). The rules, as docs/conditional-access.md
//! states them:
//!
//! - **Failed-attempt burst**: failed sign-in attempts on the account (wrong password or code) in
//!   the last 15 minutes: 3–4 → low, 5–9 → medium, 10 or more → high.
//! - **Unfamiliar network**: the client's network (its /24 for IPv4, /64 for IPv6) is not among
//!   the networks of the user's successful sign-ins in the last 90 days, and the user has signed
//!   in before → low; together with a failed-attempt burst (3 or more) → high.
//! - **Admin-confirmed compromise**: user risk high until an administrator dismisses it.
//!
//! Sign-in risk is the highest of the sign-in's signals. Dismissing a user's risk clears the
//! compromise mark and forgets the failures before that moment.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use usher_authz::conditional::RiskLevel;
use usher_proto::ca::RiskyUser;
use usher_store::{Record, StoreError};

use crate::{DirResult, Directory, DirectoryError};

/// Record kind of a user's risk state (id: the user's object id).
pub const RISK_STATE: &str = "risk_state";
/// The window of a failed-attempt burst.
pub const BURST_WINDOW_SECS: i64 = 900;
/// How long a network stays familiar.
pub const FAMILIAR_SECS: i64 = 90 * 86_400;
/// Networks remembered per user at most (the least recently seen goes first).
pub const MAX_NETWORKS: usize = 20;
/// Failure times remembered at most.
const MAX_FAILURES: usize = 64;
/// How long a read risk state serves token issuance, seconds (this process's own changes update
/// it at once; another replica's are seen within this).
const RISK_CACHE_SECS: i64 = 2;
/// Users cached at most (the cache is emptied when full).
const RISK_CACHE_MAX: usize = 10_000;

/// Recently read risk states, so a token issuance usually reads none from the store.
#[derive(Debug, Default, Clone)]
pub(crate) struct RiskCache(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (RiskState, i64)>>>,
);

impl RiskCache {
    fn get(&self, user_id: &str, now: i64) -> Option<RiskState> {
        let map = self.0.lock().ok()?;
        map.get(user_id)
            .filter(|(_, at)| now - at < RISK_CACHE_SECS && *at <= now)
            .map(|(s, _)| s.clone())
    }
    fn put(&self, user_id: &str, state: &RiskState, now: i64) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= RISK_CACHE_MAX {
                map.clear();
            }
            map.insert(user_id.to_owned(), (state.clone(), now));
        }
    }
}

/// A network the user signed in from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct KnownNetwork {
    network: String,
    last_seen: i64,
}

/// An administrator's mark.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Mark {
    at: i64,
    by: String,
}

/// What the directory knows about a user's risk.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RiskState {
    failures: Vec<i64>,
    networks: Vec<KnownNetwork>,
    compromised: Option<Mark>,
    dismissed: Option<Mark>,
}

/// The risk of one sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskAssessment {
    /// Sign-in risk.
    pub sign_in: RiskLevel,
    /// User risk.
    pub user: RiskLevel,
    /// The signals that contributed (`failedAttemptsBurst`, `unfamiliarNetwork`,
    /// `adminConfirmedUserCompromised`).
    pub signals: Vec<&'static str>,
}

impl RiskAssessment {
    /// No risk.
    pub fn none() -> Self {
        Self {
            sign_in: RiskLevel::None,
            user: RiskLevel::None,
            signals: vec![],
        }
    }
}

/// The network of an address: /24 for IPv4, /64 for IPv6 (IPv4-mapped addresses count as IPv4).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The rules, over a state: pure, for tests and the what-if.
fn assess(state: &RiskState, ip: Option<IpAddr>, now: i64) -> RiskAssessment {
    let since = state
        .dismissed
        .as_ref()
        .map_or(now - BURST_WINDOW_SECS, |d| d.at.max(now - BURST_WINDOW_SECS));
    let failures = state
        .failures
        .iter()
        .filter(|t| **t > since && **t <= now)
        .count();
    let mut out = RiskAssessment::none();
    let burst = match failures {
        0..=2 => RiskLevel::None,
        3..=4 => RiskLevel::Low,
        5..=9 => RiskLevel::Medium,
        _ => RiskLevel::High,
    };
    if burst > RiskLevel::None {
        out.signals.push("failedAttemptsBurst");
        out.sign_in = burst;
    }
    let familiar: Vec<&KnownNetwork> = state
        .networks
        .iter()
        .filter(|n| now - n.last_seen <= FAMILIAR_SECS)
        .collect();
    if let Some(ip) = ip
        && !familiar.is_empty()
    {
        let net = network_of(ip);
        if !familiar.iter().any(|n| n.network == net) {
            out.signals.push("unfamiliarNetwork");
            let level = if failures >= 3 {
                RiskLevel::High
            } else {
                RiskLevel::Low
            };
            out.sign_in = out.sign_in.max(level);
        }
    }
    if state.compromised.is_some() {
        out.signals.push("adminConfirmedUserCompromised");
        out.user = RiskLevel::High;
    }
    out
}

impl Directory {
    async fn risk_state(&self, user_id: &str) -> DirResult<(Option<Record>, RiskState)> {
        let now = self.now();
        let rec = self.store.get(RISK_STATE, user_id, now).await?;
        let state = match &rec {
            Some(r) => r.decode()?,
            None => RiskState::default(),
        };
        self.risk_cache.put(user_id, &state, now);
        Ok((rec, state))
    }

    /// The risk state for reading: the cache's when fresh, else the store's.
    async fn cached_risk_state(&self, user_id: &str) -> DirResult<RiskState> {
        match self.risk_cache.get(user_id, self.now()) {
            Some(s) => Ok(s),
            None => Ok(self.risk_state(user_id).await?.1),
        }
    }

    /// Changes a user's risk state; `change` returns false to leave it as it is.
    async fn change_risk<F: FnMut(&mut RiskState) -> bool>(
        &self,
        user_id: &str,
        mut change: F,
    ) -> DirResult<()> {
        for _ in 0..20 {
            let (rec, mut state) = self.risk_state(user_id).await?;
            if !change(&mut state) {
                return Ok(());
            }
            let result = match rec {
                Some(mut r) => {
                    r.data =
                        serde_json::to_value(&state).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
                    self.store.update(r).await.map(|_| ())
                }
                None => self
                    .store
                    .insert(Record::from_value(RISK_STATE, user_id, &state)?)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => {
                    self.risk_cache.put(user_id, &state, self.now());
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Contended)
    }

    /// Records a failed sign-in attempt (called by password and code checks).
    pub(crate) async fn note_failure(&self, user_id: &str, now: i64) -> DirResult<()> {
        self.change_risk(user_id, |s| {
            s.failures.retain(|t| now - *t < BURST_WINDOW_SECS * 4);
            s.failures.push(now);
            if s.failures.len() > MAX_FAILURES {
                let extra = s.failures.len() - MAX_FAILURES;
                s.failures.drain(..extra);
            }
            true
        })
        .await
    }

    /// Records a successful sign-in's network (written only when new or a day old, so token
    /// issuance rarely writes).
    pub async fn note_network(&self, user_id: &str, ip: &str) -> DirResult<()> {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return Ok(());
        };
        let net = network_of(ip);
        let now = self.now();
        // Usually known and seen today: nothing to write, and nothing to read from the store.
        if self
            .cached_risk_state(user_id)
            .await?
            .networks
            .iter()
            .any(|n| n.network == net && now - n.last_seen < 86_400)
        {
            return Ok(());
        }
        self.change_risk(user_id, |s| {
            if let Some(n) = s.networks.iter_mut().find(|n| n.network == net) {
                if now - n.last_seen < 86_400 {
                    return false;
                }
                n.last_seen = now;
                return true;
            }
            s.networks.push(KnownNetwork {
                network: net.clone(),
                last_seen: now,
            });
            s.networks.sort_by_key(|n| std::cmp::Reverse(n.last_seen));
            s.networks.truncate(MAX_NETWORKS);
            true
        })
        .await
    }

    /// The risk of a sign-in by `user_id` from `ip`, now.
    pub async fn assess_risk(&self, user_id: &str, ip: &str) -> DirResult<RiskAssessment> {
        let state = self.cached_risk_state(user_id).await?;
        Ok(assess(&state, ip.parse().ok(), self.now()))
    }

    /// Marks a user compromised (user risk high).
    pub async fn confirm_compromised(&self, user_id: &str, by: &str) -> DirResult<()> {
        let user = self.get_user(user_id).await?;
        let now = self.now();
        self.change_risk(&user.id, |s| {
            s.compromised = Some(Mark {
                at: now,
                by: by.to_owned(),
            });
            true
        })
        .await
    }

    /// Dismisses a user's risk: the compromise mark and earlier failures no longer count.
    pub async fn dismiss_risk(&self, user_id: &str, by: &str) -> DirResult<()> {
        let user = self.get_user(user_id).await?;
        let now = self.now();
        self.change_risk(&user.id, |s| {
            s.compromised = None;
            s.dismissed = Some(Mark {
                at: now,
                by: by.to_owned(),
            });
            true
        })
        .await
    }

    /// Graph's `riskyUsers`: users with a risk signal now, or whose risk was dismissed.
    pub async fn risky_users(&self) -> DirResult<Vec<RiskyUser>> {
        let now = self.now();
        let mut out = Vec::new();
        for rec in self.list_all_records(RISK_STATE).await? {
            let state: RiskState = rec.decode()?;
            let a = assess(&state, None, now);
            let level = a.user.max(a.sign_in);
            let (risk_state, detail, at) = if let Some(m) = &state.compromised {
                (
                    "confirmedCompromised",
                    "adminConfirmedUserCompromised",
                    Some(m.at),
                )
            } else if level > RiskLevel::None {
                ("atRisk", "none", state.failures.last().copied())
            } else if let Some(d) = &state.dismissed {
                ("dismissed", "adminDismissedAllRiskForUser", Some(d.at))
            } else {
                continue;
            };
            let upn = match self.get_user(&rec.id).await {
                Ok(u) => u.user_principal_name,
                Err(DirectoryError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            out.push(RiskyUser {
                id: rec.id.clone(),
                user_principal_name: upn,
                risk_level: crate::conditional_access::risk_name(level).into(),
                risk_state: risk_state.into(),
                risk_detail: detail.into(),
                risk_last_updated_date_time: at.map(usher_core::rfc3339),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn failure_bursts_grade_by_count_within_the_window() {
        let now = 10_000;
        let mut s = RiskState::default();
        assert_eq!(assess(&s, None, now).sign_in, RiskLevel::None);
        s.failures = vec![now - 10; 3];
        assert_eq!(assess(&s, None, now).sign_in, RiskLevel::Low);
        s.failures = vec![now - 10; 5];
        assert_eq!(assess(&s, None, now).sign_in, RiskLevel::Medium);
        s.failures = vec![now - 10; 10];
        assert_eq!(assess(&s, None, now).sign_in, RiskLevel::High);
        // Outside the window they no longer count.
        s.failures = vec![now - BURST_WINDOW_SECS - 1; 10];
        assert_eq!(assess(&s, None, now).sign_in, RiskLevel::None);
    }

    #[test]
    fn unfamiliar_networks_count_only_for_users_with_history() {
        let now = 10_000_000;
        let mut s = RiskState::default();
        assert_eq!(assess(&s, ip("203.0.113.9"), now).sign_in, RiskLevel::None);
        s.networks.push(KnownNetwork {
            network: "10.1.2.0/24".into(),
            last_seen: now - 100,
        });
        assert_eq!(assess(&s, ip("10.1.2.77"), now).sign_in, RiskLevel::None);
        let a = assess(&s, ip("203.0.113.9"), now);
        assert_eq!(
            (a.sign_in, a.signals.clone()),
            (RiskLevel::Low, vec!["unfamiliarNetwork"])
        );
        s.failures = vec![now - 5; 3];
        assert_eq!(assess(&s, ip("203.0.113.9"), now).sign_in, RiskLevel::High);
        // A network last seen more than 90 days ago is forgotten (no history: no signal).
        s.failures.clear();
        s.networks[0].last_seen = now - FAMILIAR_SECS - 1;
        assert_eq!(assess(&s, ip("203.0.113.9"), now).sign_in, RiskLevel::None);
    }

    #[test]
    fn compromise_is_user_risk_and_dismissal_forgets_earlier_failures() {
        let now = 50_000;
        let mut s = RiskState {
            failures: vec![now - 20; 6],
            compromised: Some(Mark {
                at: now - 30,
                by: "admin".into(),
            }),
            ..Default::default()
        };
        let a = assess(&s, None, now);
        assert_eq!((a.user, a.sign_in), (RiskLevel::High, RiskLevel::Medium));
        s.compromised = None;
        s.dismissed = Some(Mark {
            at: now - 10,
            by: "admin".into(),
        });
        let a = assess(&s, None, now);
        assert_eq!((a.user, a.sign_in), (RiskLevel::None, RiskLevel::None));
    }

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(network_of("10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(network_of("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
        assert_eq!(
            network_of("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
