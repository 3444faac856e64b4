//! The agent's local socket: how `pam_usher.so` and the sshd principals helper ask the machine's
//! agent. One JSON object per line each way, over a Unix socket only root may open. The agent
//! drives every step; the PAM module only shows what it is told and sends back the answers.
//!
//! A PAM authentication is a conversation on one connection: `Authenticate`, then the agent
//! answers `Prompt` (the module asks the user and sends `Answer`) until it answers `Done`.

use serde::{Deserialize, Serialize};

/// The socket's default path.
pub const DEFAULT_SOCKET: &str = "/run/usher/agent.sock";
/// The machine's login configuration, which names the socket (`agent_socket = "..."`).
pub const LOGIN_CONF: &str = "/etc/usher/login.conf";
/// Longest line either side sends.
pub const MAX_LINE: usize = 64 * 1024;

/// A request to the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LocalRequest {
    /// sshd's `AuthorizedPrincipalsCommand`: which principals may log in as `user` with this
    /// certificate (`%k`, base64)?
    Principals {
        /// The account sshd is logging in (`%u`).
        user: String,
        /// The certificate, base64 as sshd gives it.
        certificate: String,
    },
    /// PAM `auth`: starts a conversation.
    Authenticate {
        /// The PAM service (`sshd`, `login`, `xrdp-sesman`).
        service: String,
        /// The user name as typed.
        user: String,
        /// The remote host, when the service sets one.
        #[serde(default)]
        rhost: Option<String>,
    },
    /// The user's answer to the last `Prompt`.
    Answer {
        /// What the user typed.
        text: String,
    },
    /// PAM `account`: may `user` log in here now?
    Account {
        /// The PAM service.
        service: String,
        /// The user name.
        user: String,
        /// The remote host.
        #[serde(default)]
        rhost: Option<String>,
    },
    /// PAM `session` open: creates the home directory and records the session so revocation can
    /// end it.
    OpenSession {
        /// The PAM service.
        service: String,
        /// The user name.
        user: String,
        /// The process that opened the session (sshd's per-connection process).
        pid: u32,
        /// The remote host.
        #[serde(default)]
        rhost: Option<String>,
    },
    /// PAM `session` close.
    CloseSession {
        /// The PAM service.
        service: String,
        /// The user name.
        user: String,
        /// The process that opened the session.
        pid: u32,
    },
    /// PAM `password`: directory passwords are changed on the directory's page, never here.
    ChangePassword {
        /// The user name.
        user: String,
    },
}

/// What a PAM step or check came to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed (`PAM_SUCCESS`).
    Success,
    /// Not a directory user of this machine: the rest of the stack decides (`PAM_USER_UNKNOWN`).
    UnknownUser,
    /// Wrong password or code (`PAM_AUTH_ERR`).
    AuthFailed,
    /// Authenticated but not allowed here (`PAM_PERM_DENIED`).
    Denied,
    /// Locked by smart lockout (`PAM_MAXTRIES`).
    MaxTries,
    /// The agent cannot decide (server unreachable past the staleness bound):
    /// `PAM_AUTHINFO_UNAVAIL`, which fails closed.
    Unavailable,
}

/// The agent's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalReply {
    /// For `Principals`: what the helper prints (empty: refused).
    Principals {
        /// Principals, one per line.
        principals: Vec<String>,
    },
    /// Ask the user something and send back `Answer`.
    Prompt {
        /// The prompt text.
        text: String,
        /// Whether the answer may be shown as typed (a one-time code) or not (a password).
        echo: bool,
    },
    /// The end of a step.
    Done {
        /// The outcome.
        outcome: Outcome,
        /// Shown to the user (as a PAM error message when the outcome is not success, else as
        /// information).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// The certificate extension binding an SSH user certificate to one machine's device id.
pub const DEVICE_EXTENSION: &str = "device-id@usher";

/// SPEC L1: an IP address instead of the machine's name.
pub const IP_ADDRESS_TEXT: &str = "IP address cannot be used: give the machine's name as it is in the directory; it must resolve to the machine's address.";
/// SPEC L6: no role on the machine.
pub const NO_ROLE_TEXT: &str = "Your account is configured to prevent you from using this device. For more info, contact your system administrator.";
/// SPEC L6: bad credentials.
pub const BAD_CREDENTIALS_TEXT: &str = "Your credentials did not work.";
/// SPEC L6: a method that policy forbids.
pub const METHOD_NOT_ALLOWED_TEXT: &str = "The sign-in method you're trying to use isn't allowed. Try a different sign-in method or contact your system administrator.";
/// L7: what a locked (idle) session is told as it is disconnected.
pub const SESSION_LOCKED_TEXT: &str =
    "Your session was disconnected because it was locked. Sign in again to reconnect.";

/// The canonical directory user name: `USHER\user@domain` (and the seed's `AzureAD\` form)
/// is `user@domain`, lower-cased.
pub fn canonical_user(name: &str) -> String {
    let trimmed = name.trim();
    let bare = ["usher\\", "azuread\\"]
        .iter()
        .find_map(|p| {
            trimmed
                .get(..p.len())
                .filter(|head| head.eq_ignore_ascii_case(p))
                .map(|_| &trimmed[p.len()..])
        })
        .unwrap_or(trimmed);
    bare.to_ascii_lowercase()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let r: LocalRequest =
            serde_json::from_str(r#"{"op":"authenticate","service":"sshd","user":"a@b.c"}"#).unwrap();
        assert_eq!(
            r,
            LocalRequest::Authenticate {
                service: "sshd".into(),
                user: "a@b.c".into(),
                rhost: None
            }
        );
        let done = LocalReply::Done {
            outcome: Outcome::UnknownUser,
            message: None,
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"kind":"done","outcome":"unknown_user"}"#
        );
    }

    #[test]
    fn user_names() {
        assert_eq!(canonical_user("USHER\\Ann@Contoso.test"), "ann@contoso.test");
        assert_eq!(canonical_user("AzureAD\\ann@contoso.test"), "ann@contoso.test");
        assert_eq!(canonical_user("ann@contoso.test"), "ann@contoso.test");
        assert_eq!(canonical_user("root"), "root");
        assert_eq!(canonical_user("us\\x"), "us\\x");
    }
}
