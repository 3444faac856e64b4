//! The machine relay (SPEC T2, L4): a joined machine's agent relays the password a user typed at
//! the machine (PAM), then a one-time code when the user needs MFA. The agent authenticates as the
//! device; the user's password never leaves the request. The caller writes the sign-in log.

use serde::{Deserialize, Serialize};
use usher_directory::model::User;
use usher_directory::{PasswordCheck, TotpCheck};
use usher_store::Record;

use usher_authz::conditional::{ClientApp, Platform, Verdict};
use usher_core::well_known::VM_SIGN_IN_APP_ID;

use crate::conditional::{CaReport, SignInContext};
use crate::{Idp, IdpResult};

/// Record kind of a relay waiting for its one-time code (id: digest of the flow handle).
pub const RELAY_FLOW: &str = "relay_flow";
/// How long the one-time code may take.
pub const RELAY_FLOW_SECS: i64 = 300;

/// Why a relayed sign-in was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRefusal {
    /// Wrong password or code, or no such user (50126).
    BadCredentials,
    /// Smart lockout (50053).
    Locked,
    /// Temporary or expired password (50055).
    MustChange,
    /// Account disabled (50057).
    Disabled,
    /// MFA needed but no method registered (50079).
    MfaRegistration,
    /// A Conditional Access policy blocks the sign-in (53003).
    Blocked,
    /// Conditional Access asks for a method the password path cannot give, such as a passkey
    /// (50076; L6's "sign-in method isn't allowed").
    MethodNotAllowed,
}

impl RelayRefusal {
    /// The AADSTS code.
    pub fn code(self) -> u32 {
        match self {
            Self::BadCredentials => 50126,
            Self::Locked => 50053,
            Self::MustChange => 50055,
            Self::Disabled => 50057,
            Self::MfaRegistration => 50079,
            Self::Blocked => 53003,
            Self::MethodNotAllowed => 50076,
        }
    }
}

/// What a relay step came to.
#[derive(Debug, Clone)]
pub enum RelayOutcome {
    /// The user is authenticated, with these methods.
    Authenticated(Box<User>, Vec<String>),
    /// The password was right; a one-time code is needed, for the flow handle given.
    NeedsCode(Box<User>, String),
    /// Refused.
    Refused(Option<Box<User>>, RelayRefusal),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredFlow {
    user_id: String,
    device_id: String,
}

impl Idp {
    /// Conditional Access for a relayed sign-in: the VM Sign-In app, from a joined machine
    /// (Linux), at the address the machine saw.
    async fn relay_ca(&self, user: &User, amr: &[String], rhost: &str) -> IdpResult<CaReport> {
        let ctx = SignInContext {
            ip: rhost.to_owned(),
            platform: Platform::Linux,
            client_app: ClientApp::MobileAppsAndDesktopClients,
            joined_device: true,
            fresh: true,
        };
        self.evaluate_ca(user, VM_SIGN_IN_APP_ID, amr, self.now(), &ctx, None)
            .await
    }

    /// Checks a relayed password for the device `device_id`; `rhost` is the login's remote
    /// address as the machine saw it. The Conditional Access report comes with the outcome.
    pub async fn relay_password(
        &self,
        device_id: &str,
        upn: &str,
        password: &str,
        rhost: &str,
    ) -> IdpResult<(RelayOutcome, Option<CaReport>)> {
        let user = match self.directory().check_password(upn, password).await? {
            PasswordCheck::Valid(u) => u,
            PasswordCheck::Invalid => {
                return Ok((RelayOutcome::Refused(None, RelayRefusal::BadCredentials), None));
            }
            PasswordCheck::Locked { .. } => {
                return Ok((RelayOutcome::Refused(None, RelayRefusal::Locked), None));
            }
            PasswordCheck::Disabled(u) => {
                return Ok((RelayOutcome::Refused(Some(u), RelayRefusal::Disabled), None));
            }
            PasswordCheck::MustChange(u) => {
                return Ok((RelayOutcome::Refused(Some(u), RelayRefusal::MustChange), None));
            }
        };
        let amr = vec!["pwd".to_owned()];
        let report = self.relay_ca(&user, &amr, rhost).await?;
        let ca_wants_mfa = match &report.evaluation.verdict {
            Verdict::Allow => false,
            Verdict::Block => {
                return Ok((
                    RelayOutcome::Refused(Some(user), RelayRefusal::Blocked),
                    Some(report),
                ));
            }
            Verdict::Require(_) => {
                // Would a one-time code be enough? Ask the engine, never guess.
                let with_code = self
                    .relay_ca(&user, &["pwd".into(), "otp".into(), "mfa".into()], rhost)
                    .await?;
                if with_code.evaluation.verdict != Verdict::Allow {
                    let why = if with_code.evaluation.verdict == Verdict::Block {
                        RelayRefusal::Blocked
                    } else {
                        RelayRefusal::MethodNotAllowed
                    };
                    return Ok((RelayOutcome::Refused(Some(user), why), Some(report)));
                }
                true
            }
        };
        if !user.mfa_state.requires_mfa() && !ca_wants_mfa {
            return Ok((RelayOutcome::Authenticated(user, amr), Some(report)));
        }
        if user.totp.is_none() {
            return Ok((
                RelayOutcome::Refused(Some(user), RelayRefusal::MfaRegistration),
                Some(report),
            ));
        }
        let handle = usher_crypto::secret::generate(self.directory().rng().as_ref());
        let flow = StoredFlow {
            user_id: user.id.clone(),
            device_id: device_id.to_ascii_lowercase(),
        };
        self.directory()
            .store()
            .insert(
                Record::from_value(RELAY_FLOW, usher_crypto::secret::digest(&handle), &flow)?
                    .with_expiry(self.now() + RELAY_FLOW_SECS),
            )
            .await?;
        Ok((RelayOutcome::NeedsCode(user, handle), Some(report)))
    }

    /// Checks the one-time code of a relay flow (each flow takes one code).
    pub async fn relay_code(
        &self,
        device_id: &str,
        handle: &str,
        code: &str,
        rhost: &str,
    ) -> IdpResult<(RelayOutcome, Option<CaReport>)> {
        let id = usher_crypto::secret::digest(handle);
        let store = self.directory().store();
        let Some(rec) = store.get(RELAY_FLOW, &id, self.now()).await? else {
            return Ok((RelayOutcome::Refused(None, RelayRefusal::BadCredentials), None));
        };
        let flow: StoredFlow = rec.decode()?;
        // Spent whatever the outcome, and only by the device that started it.
        store.delete(RELAY_FLOW, &id, None).await?;
        if flow.device_id != device_id.to_ascii_lowercase() {
            return Ok((RelayOutcome::Refused(None, RelayRefusal::BadCredentials), None));
        }
        let user = self.directory().get_user(&flow.user_id).await?;
        match self.directory().verify_totp(&user.id, code.trim()).await? {
            TotpCheck::Valid => {
                let amr: Vec<String> = vec!["pwd".into(), "otp".into(), "mfa".into()];
                let report = self.relay_ca(&user, &amr, rhost).await?;
                let outcome = match report.evaluation.verdict {
                    Verdict::Allow => RelayOutcome::Authenticated(Box::new(user), amr),
                    Verdict::Block => RelayOutcome::Refused(Some(Box::new(user)), RelayRefusal::Blocked),
                    Verdict::Require(_) => {
                        RelayOutcome::Refused(Some(Box::new(user)), RelayRefusal::MethodNotAllowed)
                    }
                };
                Ok((outcome, Some(report)))
            }
            TotpCheck::Invalid => Ok((
                RelayOutcome::Refused(Some(Box::new(user)), RelayRefusal::BadCredentials),
                None,
            )),
            TotpCheck::Locked => Ok((
                RelayOutcome::Refused(Some(Box::new(user)), RelayRefusal::Locked),
                None,
            )),
        }
    }
}
