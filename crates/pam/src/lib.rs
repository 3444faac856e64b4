//! `pam_usher.so`: directory logins for PAM. The module is a thin shim: the machine's agent
//! decides every step, and the module only shows the agent's prompts and messages through the
//! application's conversation and relays the answers, over the agent's local socket
//! ([`usher_proto::local`], one JSON object per line each way).
//!
//! - `auth`: `Authenticate`, then `Prompt` → `Answer` until `Done` (at most
//!   [`flow::MAX_PROMPTS`] prompts).
//! - `account`: `Account`. `session`: `OpenSession` / `CloseSession`. `password`:
//!   `ChangePassword`, asked in both of Linux-PAM's passes (the message is shown in the
//!   preliminary pass only), so both passes return the same code.
//! - `setcred` succeeds: directory logins have no credentials to set, and sshd fails a login
//!   whose `setcred` fails.
//!
//! When the agent cannot be reached (or answers nonsense), a name that cannot be a directory
//! user (no `@`, no `USHER\` or `AzureAD\` prefix) gets the phase's "not ours" code so local
//! accounts keep working; any other name fails closed.
//!
//! Module arguments: `socket=/path` (the agent's socket) and `conf=/path` (instead of
//! [`usher_proto::local::LOGIN_CONF`], whose `agent_socket` names the socket; the default is
//! [`usher_proto::local::DEFAULT_SOCKET`]).
//!
//! Everything but the C entry points is safe code in [`conf`], [`code`], [`transport`] and
//! [`flow`]; `ffi` only adapts the PAM handle to [`flow::Conversation`], and every entry point
//! catches panics (`PAM_SYSTEM_ERR`).
#![allow(
    unsafe_code,
    reason = "the PAM entry points are C functions that call back into libpam and the application"
)]

pub mod code;
pub mod conf;
mod ffi;
pub mod flow;
pub mod transport;
