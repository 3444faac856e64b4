//! Small enums of the directory model.

use serde::{Deserialize, Serialize};

/// Per-user MFA state (the seed's legacy StrongAuthenticationRequirements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MfaState {
    /// No per-user MFA.
    #[default]
    Disabled,
    /// MFA required at the next interactive sign-in; registration offered.
    Enabled,
    /// MFA required at every sign-in.
    Enforced,
}

impl MfaState {
    /// Whether a sign-in of this user needs a second factor.
    pub fn requires_mfa(self) -> bool {
        !matches!(self, MfaState::Disabled)
    }
}

impl std::str::FromStr for MfaState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "disabled" => Ok(Self::Disabled),
            "enabled" => Ok(Self::Enabled),
            "enforced" => Ok(Self::Enforced),
            other => Err(format!(
                "`{other}` is not a per-user MFA state (disabled, enabled, enforced)"
            )),
        }
    }
}

/// Member or guest (SPEC D2, D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UserType {
    /// A member of the tenant.
    #[default]
    Member,
    /// A guest.
    Guest,
}
