//! Linux-PAM return codes and flags, and what each phase returns for each [`Outcome`].
#![deny(unsafe_code)]

use std::ffi::c_int;

use usher_proto::local::{Outcome, canonical_user};

/// `PAM_SUCCESS`.
pub const PAM_SUCCESS: c_int = 0;
/// `PAM_SYSTEM_ERR`.
pub const PAM_SYSTEM_ERR: c_int = 4;
/// `PAM_PERM_DENIED`.
pub const PAM_PERM_DENIED: c_int = 6;
/// `PAM_AUTH_ERR`.
pub const PAM_AUTH_ERR: c_int = 7;
/// `PAM_AUTHINFO_UNAVAIL`.
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
/// `PAM_USER_UNKNOWN`.
pub const PAM_USER_UNKNOWN: c_int = 10;
/// `PAM_MAXTRIES`.
pub const PAM_MAXTRIES: c_int = 11;
/// `PAM_SESSION_ERR`.
pub const PAM_SESSION_ERR: c_int = 14;
/// `PAM_CONV_ERR`.
pub const PAM_CONV_ERR: c_int = 19;
/// `PAM_AUTHTOK_ERR`.
pub const PAM_AUTHTOK_ERR: c_int = 20;
/// `PAM_IGNORE`.
pub const PAM_IGNORE: c_int = 25;
/// `PAM_CONV_AGAIN`.
pub const PAM_CONV_AGAIN: c_int = 30;
/// `PAM_INCOMPLETE`.
pub const PAM_INCOMPLETE: c_int = 31;

/// `PAM_SILENT`: the application asks for no messages.
pub const PAM_SILENT: c_int = 0x8000;
/// `PAM_PRELIM_CHECK`: Linux-PAM's first `chauthtok` pass.
pub const PAM_PRELIM_CHECK: c_int = 0x4000;
/// `PAM_UPDATE_AUTHTOK`: Linux-PAM's second `chauthtok` pass.
pub const PAM_UPDATE_AUTHTOK: c_int = 0x2000;

/// The PAM step being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `pam_sm_authenticate`.
    Authenticate,
    /// `pam_sm_acct_mgmt`.
    Account,
    /// `pam_sm_open_session`.
    OpenSession,
    /// `pam_sm_close_session`.
    CloseSession,
    /// `pam_sm_chauthtok`.
    ChangePassword,
}

impl Phase {
    /// The PAM code for what the agent decided.
    pub fn code(self, outcome: Outcome) -> c_int {
        match self {
            Phase::Authenticate | Phase::Account => match outcome {
                Outcome::Success => PAM_SUCCESS,
                Outcome::UnknownUser => PAM_USER_UNKNOWN,
                Outcome::AuthFailed => PAM_AUTH_ERR,
                Outcome::Denied => PAM_PERM_DENIED,
                Outcome::MaxTries => PAM_MAXTRIES,
                Outcome::Unavailable => PAM_AUTHINFO_UNAVAIL,
            },
            Phase::OpenSession => match outcome {
                Outcome::Success => PAM_SUCCESS,
                Outcome::UnknownUser => PAM_IGNORE,
                _ => PAM_SESSION_ERR,
            },
            // Closing a session must never trap a user.
            Phase::CloseSession => match outcome {
                Outcome::UnknownUser => PAM_IGNORE,
                _ => PAM_SUCCESS,
            },
            // PAM_USER_UNKNOWN (not PAM_IGNORE) so the stack's pam_unix handles local users.
            Phase::ChangePassword => match outcome {
                Outcome::Success => PAM_SUCCESS,
                Outcome::UnknownUser => PAM_USER_UNKNOWN,
                _ => PAM_AUTHTOK_ERR,
            },
        }
    }

    /// The code when the application's conversation fails.
    pub fn conversation_failed(self) -> c_int {
        match self {
            Phase::CloseSession => PAM_SUCCESS,
            _ => PAM_CONV_ERR,
        }
    }

    /// Whether messages (not prompts) stay unshown for these flags: `PAM_SILENT`, the second
    /// `chauthtok` pass (the first one showed it), and every session close (nobody to read it).
    pub fn quiet(self, flags: c_int) -> bool {
        flags & PAM_SILENT != 0
            || self == Phase::CloseSession
            || (self == Phase::ChangePassword && flags & PAM_UPDATE_AUTHTOK != 0)
    }

    /// A name for the system log.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Authenticate => "auth",
            Phase::Account => "account",
            Phase::OpenSession => "session open",
            Phase::CloseSession => "session close",
            Phase::ChangePassword => "password",
        }
    }
}

/// Whether `name` can be a directory user: it has an `@` or a `USHER\` / `AzureAD\` prefix
/// (any case). Anything else is a local account, which keeps working when the agent is down.
pub fn may_be_directory_user(name: &str) -> bool {
    let trimmed = name.trim();
    // `canonical_user` strips a prefix and lower-cases; without a prefix it only lower-cases.
    trimmed.contains('@') || canonical_user(trimmed) != trimmed.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::UnknownUser,
        Outcome::AuthFailed,
        Outcome::Denied,
        Outcome::MaxTries,
        Outcome::Unavailable,
    ];

    #[test]
    fn mapping_table() {
        let table: [(Phase, [c_int; 6]); 5] = [
            (
                Phase::Authenticate,
                [0, 10, 7, 6, 11, 9], // success unknown auth_failed denied max_tries unavailable
            ),
            (Phase::Account, [0, 10, 7, 6, 11, 9]),
            (Phase::OpenSession, [0, 25, 14, 14, 14, 14]),
            (Phase::CloseSession, [0, 25, 0, 0, 0, 0]),
            (Phase::ChangePassword, [0, 10, 20, 20, 20, 20]),
        ];
        for (phase, codes) in table {
            for (outcome, want) in ALL.iter().zip(codes) {
                assert_eq!(phase.code(*outcome), want, "{phase:?} {outcome:?}");
            }
        }
    }

    #[test]
    fn conversation_failure_never_traps_a_closing_session() {
        assert_eq!(Phase::Authenticate.conversation_failed(), PAM_CONV_ERR);
        assert_eq!(Phase::OpenSession.conversation_failed(), PAM_CONV_ERR);
        assert_eq!(Phase::CloseSession.conversation_failed(), PAM_SUCCESS);
    }

    #[test]
    fn quiet_flags() {
        assert!(!Phase::Authenticate.quiet(0));
        assert!(Phase::Authenticate.quiet(PAM_SILENT));
        assert!(Phase::CloseSession.quiet(0));
        assert!(!Phase::ChangePassword.quiet(PAM_PRELIM_CHECK));
        assert!(Phase::ChangePassword.quiet(PAM_UPDATE_AUTHTOK));
        assert!(!Phase::Account.quiet(PAM_UPDATE_AUTHTOK));
    }

    #[test]
    fn directory_names() {
        for name in [
            "ann@contoso.test",
            "USHER\\ann@contoso.test",
            "usher\\ann",
            "AzureAD\\ann",
            "AZUREAD\\ann",
            " ann@x ",
        ] {
            assert!(may_be_directory_user(name), "{name}");
        }
        for name in ["root", "ann", "Ann", "us\\ann", "usherann", "azuread", ""] {
            assert!(!may_be_directory_user(name), "{name}");
        }
    }
}
