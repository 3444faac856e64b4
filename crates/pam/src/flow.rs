//! One PAM step: the request, the agent's prompts relayed to the user, the outcome mapped to a
//! PAM code, and the fallback when the agent cannot be reached.
#![deny(unsafe_code)]

use std::ffi::c_int;

use usher_proto::local::{LocalReply, LocalRequest, Outcome};
use zeroize::{Zeroize, Zeroizing};

use crate::code::{Phase, may_be_directory_user};
use crate::transport::{Transport, TransportError};

/// Most prompts one step answers; the agent asking for more is broken.
pub const MAX_PROMPTS: usize = 8;

/// Shown (as an error) to a directory user when the agent cannot be reached.
pub const AGENT_DOWN_TEXT: &str = "The sign-in service on this machine is not running (usher-agent). Try again later or contact your system administrator.";
/// Shown (as an error) to a directory user when the agent answers nonsense.
pub const AGENT_BROKEN_TEXT: &str = "The sign-in service on this machine (usher-agent) gave an invalid answer. Try again later or contact your system administrator.";

/// The application's conversation, as the module sees it.
pub trait Conversation {
    /// Asks the user; `None` when the conversation failed.
    fn ask(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>>;
    /// Shows a message, as an error or as information. Best effort.
    fn show(&mut self, text: &str, error: bool);
    /// Writes to the system log (never shown). The text holds no secrets and no user input.
    fn log(&mut self, _text: &str) {}
}

/// What the step is about.
#[derive(Debug, Clone)]
pub struct Step {
    /// Which PAM step.
    pub phase: Phase,
    /// The PAM service (`PAM_SERVICE`).
    pub service: String,
    /// The user name (`pam_get_user`).
    pub user: String,
    /// The remote host (`PAM_RHOST`), if set.
    pub rhost: Option<String>,
    /// The process opening or closing a session.
    pub pid: u32,
    /// Show no messages (prompts are still asked); see [`Phase::quiet`].
    pub quiet: bool,
}

impl Step {
    /// Whether messages stay unshown: asked for, or the phase never shows any.
    fn quiet(&self) -> bool {
        self.quiet || self.phase.quiet(0)
    }

    /// The request that starts this step.
    pub fn request(&self) -> LocalRequest {
        let service = self.service.clone();
        let user = self.user.clone();
        let rhost = self.rhost.clone();
        match self.phase {
            Phase::Authenticate => LocalRequest::Authenticate { service, user, rhost },
            Phase::Account => LocalRequest::Account { service, user, rhost },
            Phase::OpenSession => LocalRequest::OpenSession {
                service,
                user,
                pid: self.pid,
                rhost,
            },
            Phase::CloseSession => LocalRequest::CloseSession {
                service,
                user,
                pid: self.pid,
            },
            Phase::ChangePassword => LocalRequest::ChangePassword { user },
        }
    }
}

/// Why the step could not be finished with the agent.
enum Failure {
    Transport(TransportError),
    UnexpectedReply,
    TooManyPrompts,
}

/// Runs `step` against the agent `connect` reaches, talking to the user through `conv`.
pub fn run<T: Transport>(
    step: &Step,
    connect: impl FnOnce() -> Result<T, TransportError>,
    conv: &mut dyn Conversation,
) -> c_int {
    match converse(step, connect, conv) {
        Ok(code) => code,
        Err(failure) => fall_back(step, &failure, conv),
    }
}

fn converse<T: Transport>(
    step: &Step,
    connect: impl FnOnce() -> Result<T, TransportError>,
    conv: &mut dyn Conversation,
) -> Result<c_int, Failure> {
    let mut agent = connect().map_err(Failure::Transport)?;
    agent.send(&step.request()).map_err(Failure::Transport)?;
    let mut prompts = 0;
    loop {
        match agent.recv().map_err(Failure::Transport)? {
            LocalReply::Done { outcome, message } => {
                if let Some(message) = message.filter(|m| !m.trim().is_empty())
                    && !step.quiet()
                {
                    conv.show(&message, outcome != Outcome::Success);
                }
                return Ok(step.phase.code(outcome));
            }
            LocalReply::Prompt { text, echo } => {
                if prompts == MAX_PROMPTS {
                    return Err(Failure::TooManyPrompts);
                }
                prompts += 1;
                let Some(mut answer) = conv.ask(&text, echo) else {
                    conv.log(&format!("{}: the conversation failed", step.phase.name()));
                    // Dropping the connection tells the agent the step was abandoned.
                    return Ok(step.phase.conversation_failed());
                };
                let mut request = LocalRequest::Answer {
                    text: std::mem::take(&mut *answer),
                };
                let sent = agent.send(&request);
                if let LocalRequest::Answer { text } = &mut request {
                    text.zeroize();
                }
                sent.map_err(Failure::Transport)?;
            }
            LocalReply::Principals { .. } => return Err(Failure::UnexpectedReply),
        }
    }
}

/// The agent is unreachable or broken: a name that cannot be a directory user is not ours (the
/// rest of the stack decides), any other fails closed.
fn fall_back(step: &Step, failure: &Failure, conv: &mut dyn Conversation) -> c_int {
    let (why, text) = match failure {
        Failure::Transport(e) if e.is_unreachable() => (e.to_string(), AGENT_DOWN_TEXT),
        Failure::Transport(e) => (e.to_string(), AGENT_BROKEN_TEXT),
        Failure::UnexpectedReply => ("the agent sent an unexpected reply".to_owned(), AGENT_BROKEN_TEXT),
        Failure::TooManyPrompts => (
            format!("the agent sent more than {MAX_PROMPTS} prompts"),
            AGENT_BROKEN_TEXT,
        ),
    };
    conv.log(&format!("{}: {why}", step.phase.name()));
    if may_be_directory_user(&step.user) {
        if !step.quiet() {
            conv.show(text, true);
        }
        step.phase.code(Outcome::Unavailable)
    } else {
        step.phase.code(Outcome::UnknownUser)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use std::collections::VecDeque;
    use std::io::{BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};
    use std::thread::JoinHandle;
    use std::time::Duration;

    use super::*;
    use crate::code::*;
    use crate::transport::{UnixTransport, read_line};

    /// A scripted user.
    #[derive(Default)]
    struct FakeUser {
        answers: VecDeque<Option<&'static str>>,
        asked: Vec<(String, bool)>,
        shown: Vec<(String, bool)>,
        logged: Vec<String>,
    }

    impl FakeUser {
        fn answering(answers: &[Option<&'static str>]) -> Self {
            Self {
                answers: answers.iter().copied().collect(),
                ..Self::default()
            }
        }
    }

    impl Conversation for FakeUser {
        fn ask(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>> {
            self.asked.push((text.to_owned(), echo));
            self.answers
                .pop_front()
                .flatten()
                .map(|a| Zeroizing::new(a.to_owned()))
        }
        fn show(&mut self, text: &str, error: bool) {
            self.shown.push((text.to_owned(), error));
        }
        fn log(&mut self, text: &str) {
            self.logged.push(text.to_owned());
        }
    }

    /// What the fake agent does with each request after the first: `Some(reply)` sends a
    /// line, `None` hangs up.
    type Script = Vec<Option<&'static str>>;

    /// A fake agent on a real socket in a temp dir: reads a request, sends the next scripted
    /// line, until the script ends. Returns the requests it read.
    fn agent(dir: &Path, script: Script) -> (PathBuf, JoinHandle<Vec<LocalRequest>>) {
        let path = dir.join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut stream = BufReader::new(stream);
            let mut seen = Vec::new();
            for reply in script {
                let Ok(line) = read_line(&mut stream) else {
                    break;
                };
                seen.push(serde_json::from_slice(&line).unwrap());
                match reply {
                    Some(r) => stream.get_mut().write_all(format!("{r}\n").as_bytes()).unwrap(),
                    None => break,
                }
            }
            seen
        });
        (path, handle)
    }

    fn step(phase: Phase, user: &str) -> Step {
        Step {
            phase,
            service: "sshd".into(),
            user: user.into(),
            rhost: Some("192.0.2.7".into()),
            pid: 4242,
            quiet: false,
        }
    }

    fn run_against(path: &Path, step: &Step, user: &mut FakeUser) -> c_int {
        let path = path.to_owned();
        run(step, move || UnixTransport::connect(&path), user)
    }

    const PASSWORD_PROMPT: &str = r#"{"kind":"prompt","text":"Password: ","echo":false}"#;
    const CODE_PROMPT: &str = r#"{"kind":"prompt","text":"Code: ","echo":true}"#;

    #[test]
    fn prompt_answer_done() {
        let dir = tempfile::tempdir().unwrap();
        let (path, agent) = agent(
            dir.path(),
            vec![
                Some(PASSWORD_PROMPT),
                Some(CODE_PROMPT),
                Some(r#"{"kind":"done","outcome":"success","message":"Welcome."}"#),
            ],
        );
        let mut user = FakeUser::answering(&[Some("hunter2"), Some("123456")]);
        let code = run_against(&path, &step(Phase::Authenticate, "ann@contoso.test"), &mut user);
        assert_eq!(code, PAM_SUCCESS);
        assert_eq!(
            user.asked,
            vec![("Password: ".to_owned(), false), ("Code: ".to_owned(), true)]
        );
        assert_eq!(user.shown, vec![("Welcome.".to_owned(), false)]);
        assert!(user.logged.is_empty());
        assert_eq!(
            agent.join().unwrap(),
            vec![
                LocalRequest::Authenticate {
                    service: "sshd".into(),
                    user: "ann@contoso.test".into(),
                    rhost: Some("192.0.2.7".into())
                },
                LocalRequest::Answer {
                    text: "hunter2".into()
                },
                LocalRequest::Answer {
                    text: "123456".into()
                },
            ]
        );
    }

    #[test]
    fn failure_message_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, agent) = agent(
            dir.path(),
            vec![
                Some(PASSWORD_PROMPT),
                Some(r#"{"kind":"done","outcome":"auth_failed","message":"Your credentials did not work."}"#),
            ],
        );
        let mut user = FakeUser::answering(&[Some("wrong")]);
        let code = run_against(&path, &step(Phase::Authenticate, "ann@contoso.test"), &mut user);
        assert_eq!(code, PAM_AUTH_ERR);
        assert_eq!(
            user.shown,
            vec![("Your credentials did not work.".to_owned(), true)]
        );
        agent.join().unwrap();
    }

    #[test]
    fn each_phase_sends_its_request_and_maps_its_outcome() {
        let cases: [(Phase, &str, c_int, LocalRequest); 5] = [
            (
                Phase::Account,
                "denied",
                PAM_PERM_DENIED,
                LocalRequest::Account {
                    service: "sshd".into(),
                    user: "ann@x".into(),
                    rhost: Some("192.0.2.7".into()),
                },
            ),
            (
                Phase::OpenSession,
                "unknown_user",
                PAM_IGNORE,
                LocalRequest::OpenSession {
                    service: "sshd".into(),
                    user: "ann@x".into(),
                    pid: 4242,
                    rhost: Some("192.0.2.7".into()),
                },
            ),
            (
                Phase::CloseSession,
                "unavailable",
                PAM_SUCCESS,
                LocalRequest::CloseSession {
                    service: "sshd".into(),
                    user: "ann@x".into(),
                    pid: 4242,
                },
            ),
            (
                Phase::ChangePassword,
                "denied",
                PAM_AUTHTOK_ERR,
                LocalRequest::ChangePassword { user: "ann@x".into() },
            ),
            (
                Phase::Authenticate,
                "max_tries",
                PAM_MAXTRIES,
                LocalRequest::Authenticate {
                    service: "sshd".into(),
                    user: "ann@x".into(),
                    rhost: Some("192.0.2.7".into()),
                },
            ),
        ];
        for (phase, outcome, want, request) in cases {
            let dir = tempfile::tempdir().unwrap();
            let done: &'static str =
                format!(r#"{{"kind":"done","outcome":"{outcome}","message":"m"}}"#).leak();
            let (path, agent) = agent(dir.path(), vec![Some(done)]);
            let mut user = FakeUser::default();
            assert_eq!(
                run_against(&path, &step(phase, "ann@x"), &mut user),
                want,
                "{phase:?}"
            );
            assert_eq!(agent.join().unwrap(), vec![request], "{phase:?}");
            // A session close shows nothing: nobody is there to read it.
            let shown = if phase == Phase::CloseSession { 0 } else { 1 };
            assert_eq!(user.shown.len(), shown, "{phase:?}");
        }
    }

    #[test]
    fn quiet_shows_no_messages_but_still_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, agent) = agent(
            dir.path(),
            vec![
                Some(PASSWORD_PROMPT),
                Some(r#"{"kind":"done","outcome":"denied","message":"no"}"#),
            ],
        );
        let mut user = FakeUser::answering(&[Some("pw")]);
        let mut s = step(Phase::Authenticate, "ann@x");
        s.quiet = true;
        assert_eq!(run_against(&path, &s, &mut user), PAM_PERM_DENIED);
        assert_eq!(user.asked.len(), 1);
        assert!(user.shown.is_empty());
        agent.join().unwrap();
    }

    #[test]
    fn agent_disappears_mid_conversation() {
        for (name, want) in [
            ("ann@contoso.test", PAM_AUTHINFO_UNAVAIL),
            ("ann", PAM_USER_UNKNOWN),
        ] {
            let dir = tempfile::tempdir().unwrap();
            // Prompts, reads the answer, hangs up.
            let (path, agent) = agent(dir.path(), vec![Some(PASSWORD_PROMPT), None]);
            let mut user = FakeUser::answering(&[Some("hunter2")]);
            let code = run_against(&path, &step(Phase::Authenticate, name), &mut user);
            assert_eq!(code, want, "{name}");
            let seen = agent.join().unwrap();
            assert_eq!(seen.len(), 2);
            if want == PAM_AUTHINFO_UNAVAIL {
                assert_eq!(user.shown, vec![(AGENT_DOWN_TEXT.to_owned(), true)]);
            } else {
                assert!(user.shown.is_empty());
            }
            assert_eq!(user.logged.len(), 1);
            assert!(!user.logged[0].contains("hunter2"));
        }
    }

    #[test]
    fn agent_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let cases = [
            (Phase::Authenticate, "root", PAM_USER_UNKNOWN),
            (Phase::Authenticate, "ann@contoso.test", PAM_AUTHINFO_UNAVAIL),
            (Phase::Authenticate, "USHER\\ann", PAM_AUTHINFO_UNAVAIL),
            (
                Phase::Authenticate,
                "azuread\\ann@contoso.test",
                PAM_AUTHINFO_UNAVAIL,
            ),
            (Phase::Account, "root", PAM_USER_UNKNOWN),
            (Phase::Account, "ann@contoso.test", PAM_AUTHINFO_UNAVAIL),
            (Phase::OpenSession, "root", PAM_IGNORE),
            (Phase::OpenSession, "ann@contoso.test", PAM_SESSION_ERR),
            (Phase::CloseSession, "root", PAM_IGNORE),
            (Phase::CloseSession, "ann@contoso.test", PAM_SUCCESS),
            (Phase::ChangePassword, "root", PAM_USER_UNKNOWN),
            (Phase::ChangePassword, "ann@contoso.test", PAM_AUTHTOK_ERR),
        ];
        for (phase, name, want) in cases {
            let mut user = FakeUser::default();
            assert_eq!(
                run_against(&path, &step(phase, name), &mut user),
                want,
                "{phase:?} {name}"
            );
            let error_shown = want != PAM_USER_UNKNOWN && want != PAM_IGNORE && phase != Phase::CloseSession;
            if error_shown {
                assert_eq!(
                    user.shown,
                    vec![(AGENT_DOWN_TEXT.to_owned(), true)],
                    "{phase:?} {name}"
                );
            } else {
                assert!(user.shown.is_empty(), "{phase:?} {name}");
            }
            assert_eq!(user.logged.len(), 1);
        }
        // A socket path that is not a socket.
        std::fs::write(&path, "").unwrap();
        let mut user = FakeUser::default();
        assert_eq!(
            run_against(&path, &step(Phase::Authenticate, "ann@x"), &mut user),
            PAM_AUTHINFO_UNAVAIL
        );
    }

    #[test]
    fn agent_accepts_but_never_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let mut user = FakeUser::default();
        let s = step(Phase::Account, "ann@x");
        let code = run(
            &s,
            || UnixTransport::connect_with(&path, Duration::from_secs(2), Duration::from_millis(100)),
            &mut user,
        );
        assert_eq!(code, PAM_AUTHINFO_UNAVAIL);
        assert_eq!(user.shown, vec![(AGENT_DOWN_TEXT.to_owned(), true)]);
    }

    #[test]
    fn conversation_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (path, agent) = agent(dir.path(), vec![Some(PASSWORD_PROMPT), Some("unused")]);
        let mut user = FakeUser::answering(&[None]);
        let code = run_against(&path, &step(Phase::Authenticate, "ann@x"), &mut user);
        assert_eq!(code, PAM_CONV_ERR);
        // The agent saw only the request, then the connection closed.
        assert_eq!(agent.join().unwrap().len(), 1);
    }

    #[test]
    fn broken_agents() {
        let too_long: &'static str = format!(
            r#"{{"kind":"prompt","text":"{}","echo":true}}"#,
            "x".repeat(usher_proto::local::MAX_LINE)
        )
        .leak();
        let scripts: [Script; 4] = [
            vec![Some("hello")],
            vec![Some(r#"{"kind":"principals","principals":[]}"#)],
            vec![Some(too_long)],
            vec![Some(CODE_PROMPT); MAX_PROMPTS + 1],
        ];
        for script in scripts {
            for (name, want) in [("ann@x", PAM_AUTHINFO_UNAVAIL), ("root", PAM_USER_UNKNOWN)] {
                let dir = tempfile::tempdir().unwrap();
                let (path, agent) = agent(dir.path(), script.clone());
                let mut user = FakeUser::answering(&[Some("1"); MAX_PROMPTS + 1]);
                let code = run_against(&path, &step(Phase::Authenticate, name), &mut user);
                assert_eq!(code, want, "{name}");
                assert!(user.asked.len() <= MAX_PROMPTS);
                if want == PAM_AUTHINFO_UNAVAIL {
                    assert_eq!(user.shown, vec![(AGENT_BROKEN_TEXT.to_owned(), true)]);
                }
                drop(agent.join());
            }
        }
    }

    #[test]
    fn fake_transport_drives_the_loop_exactly_eight_times() {
        /// In-memory agent: prompts `n` times, then succeeds.
        struct Prompter {
            left: usize,
        }
        impl Transport for Prompter {
            fn send(&mut self, _request: &LocalRequest) -> Result<(), TransportError> {
                Ok(())
            }
            fn recv(&mut self) -> Result<LocalReply, TransportError> {
                if self.left == 0 {
                    return Ok(LocalReply::Done {
                        outcome: Outcome::Success,
                        message: None,
                    });
                }
                self.left -= 1;
                Ok(LocalReply::Prompt {
                    text: "?".into(),
                    echo: true,
                })
            }
        }
        let mut user = FakeUser::answering(&[Some("a"); MAX_PROMPTS]);
        let code = run(
            &step(Phase::Authenticate, "ann@x"),
            || Ok(Prompter { left: MAX_PROMPTS }),
            &mut user,
        );
        assert_eq!(code, PAM_SUCCESS);
        assert_eq!(user.asked.len(), MAX_PROMPTS);
        assert!(user.shown.is_empty());
    }
}
