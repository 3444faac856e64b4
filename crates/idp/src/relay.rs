//! The machine relay (SPEC T2, L4): a joined machine's agent relays the password a user typed at
//! the machine (PAM), then a one-time code when the user needs MFA. The agent authenticates as the
//! device; the user's password never leaves the request. The caller writes the sign-in log.

use serde::{Deserialize, Serialize};
use usher_directory::model::User;
use usher_directory::{PasswordCheck, TotpCheck};
use usher_store::Record;

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
    /// Checks a relayed password for the device `device_id`.
    pub async fn relay_password(
        &self,
        device_id: &str,
        upn: &str,
        password: &str,
    ) -> IdpResult<RelayOutcome> {
        let user = match self.directory().check_password(upn, password).await? {
            PasswordCheck::Valid(u) => u,
            PasswordCheck::Invalid => return Ok(RelayOutcome::Refused(None, RelayRefusal::BadCredentials)),
            PasswordCheck::Locked { .. } => return Ok(RelayOutcome::Refused(None, RelayRefusal::Locked)),
            PasswordCheck::Disabled(u) => return Ok(RelayOutcome::Refused(Some(u), RelayRefusal::Disabled)),
            PasswordCheck::MustChange(u) => {
                return Ok(RelayOutcome::Refused(Some(u), RelayRefusal::MustChange));
            }
        };
        if !user.mfa_state.requires_mfa() {
            return Ok(RelayOutcome::Authenticated(user, vec!["pwd".into()]));
        }
        if user.totp.is_none() {
            return Ok(RelayOutcome::Refused(Some(user), RelayRefusal::MfaRegistration));
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
        Ok(RelayOutcome::NeedsCode(user, handle))
    }

    /// Checks the one-time code of a relay flow (each flow takes one code).
    pub async fn relay_code(&self, device_id: &str, handle: &str, code: &str) -> IdpResult<RelayOutcome> {
        let id = usher_crypto::secret::digest(handle);
        let store = self.directory().store();
        let Some(rec) = store.get(RELAY_FLOW, &id, self.now()).await? else {
            return Ok(RelayOutcome::Refused(None, RelayRefusal::BadCredentials));
        };
        let flow: StoredFlow = rec.decode()?;
        // Spent whatever the outcome, and only by the device that started it.
        store.delete(RELAY_FLOW, &id, None).await?;
        if flow.device_id != device_id.to_ascii_lowercase() {
            return Ok(RelayOutcome::Refused(None, RelayRefusal::BadCredentials));
        }
        let user = self.directory().get_user(&flow.user_id).await?;
        match self.directory().verify_totp(&user.id, code.trim()).await? {
            TotpCheck::Valid => Ok(RelayOutcome::Authenticated(
                Box::new(user),
                vec!["pwd".into(), "otp".into(), "mfa".into()],
            )),
            TotpCheck::Invalid => Ok(RelayOutcome::Refused(
                Some(Box::new(user)),
                RelayRefusal::BadCredentials,
            )),
            TotpCheck::Locked => Ok(RelayOutcome::Refused(Some(Box::new(user)), RelayRefusal::Locked)),
        }
    }
}
