//! The built `libpam_usher.so` loaded by the real libpam, as an application would use it:
//! `pam_start_confdir` with a PAM configuration in a temp dir naming the module by path, a
//! conversation function, and a fake agent on a socket in the same temp dir.
#![allow(
    unsafe_code,
    reason = "the test is a PAM application: it calls libpam and is called back by it"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex};

use usher_proto::local::{LocalReply, LocalRequest, Outcome};

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

#[repr(C)]
struct PamConv {
    conv: Option<
        unsafe extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    >,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandle {
    _data: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_chauthtok(pamh: *mut PamHandle, flags: c_int) -> c_int;
}

const PAM_RHOST: c_int = 4;
const PAM_ESTABLISH_CRED: c_int = 0x2;

/// What the user saw: (style, text).
type Seen = Vec<(c_int, String)>;

/// The test's conversation: records every message, answers prompts (echo off: the password,
/// echo on: a code).
unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let n = usize::try_from(num_msg).unwrap();
    // SAFETY: appdata is the `Seen` the test passed in `pam_conv`, alive during the calls.
    let seen = unsafe { &mut *appdata.cast::<Seen>() };
    // SAFETY: calloc for `n` responses, handed to the module, which frees them.
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of `n` message pointers.
        let m = unsafe { &**msg.add(i) };
        // SAFETY: each message text is NUL-terminated.
        let text = unsafe { CStr::from_ptr(m.msg) }.to_string_lossy().into_owned();
        seen.push((m.msg_style, text));
        let answer = match m.msg_style {
            1 => Some(c"hunter2"),
            2 => Some(c"123456"),
            _ => None,
        };
        if let Some(a) = answer {
            // SAFETY: `out` has room for `n` responses; strdup mallocs the copy the module frees.
            unsafe { (*out.add(i)).resp = libc::strdup(a.as_ptr()) };
        }
    }
    // SAFETY: `resp` is libpam's out-pointer.
    unsafe { *resp = out };
    0
}

/// The built module, next to (or one above) the test binary's `deps` directory.
fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [
        deps.join("libpam_usher.so"),
        deps.parent().unwrap().join("libpam_usher.so"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("libpam_usher.so is built alongside the tests")
}

/// A fake agent: answers each connection's requests from `reply`, records the requests.
fn agent(path: &Path, reply: fn(&LocalRequest) -> LocalReply) -> Arc<Mutex<Vec<LocalRequest>>> {
    let listener = UnixListener::bind(path).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = BufReader::new(stream.unwrap());
            let mut line = String::new();
            while stream.read_line(&mut line).unwrap_or(0) > 0 {
                let request: LocalRequest = serde_json::from_str(&line).unwrap();
                line.clear();
                let answer = reply(&request);
                log.lock().unwrap().push(request);
                let mut out = serde_json::to_vec(&answer).unwrap();
                out.push(b'\n');
                if stream.get_mut().write_all(&out).is_err() {
                    break;
                }
            }
        }
    });
    seen
}

/// A PAM transaction on `service` in `confdir` for `user`.
struct Transaction {
    pamh: *mut PamHandle,
    _conv: Box<PamConv>,
    seen: Box<Seen>,
}

impl Transaction {
    fn start(confdir: &Path, service: &str, user: &str) -> Transaction {
        let mut seen: Box<Seen> = Box::default();
        let conv = Box::new(PamConv {
            conv: Some(conversation),
            appdata_ptr: (&raw mut *seen).cast::<c_void>(),
        });
        let service = CString::new(service).unwrap();
        let user = CString::new(user).unwrap();
        let dir = CString::new(confdir.to_str().unwrap()).unwrap();
        let mut pamh = ptr::null_mut();
        // SAFETY: valid strings and conversation (libpam copies the strings and the struct).
        let rc =
            unsafe { pam_start_confdir(service.as_ptr(), user.as_ptr(), &*conv, dir.as_ptr(), &mut pamh) };
        assert_eq!(rc, 0, "pam_start_confdir");
        let rhost = c"192.0.2.9";
        // SAFETY: libpam copies the string item.
        assert_eq!(unsafe { pam_set_item(pamh, PAM_RHOST, rhost.as_ptr().cast()) }, 0);
        Transaction {
            pamh,
            _conv: conv,
            seen,
        }
    }

    fn take_seen(&mut self) -> Seen {
        std::mem::take(&mut *self.seen)
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: the handle from pam_start, ended once.
        unsafe { pam_end(self.pamh, 0) };
    }
}

fn write_config(dir: &Path, service: &str, socket: &Path) {
    let module = module();
    let args = format!("socket={}", socket.display());
    let text = ["auth", "account", "password", "session"]
        .iter()
        .map(|t| format!("{t} required {} {args}\n", module.display()))
        .collect::<String>();
    std::fs::write(dir.join(service), text).unwrap();
}

fn scripted(request: &LocalRequest) -> LocalReply {
    let done = |outcome, message: Option<&str>| LocalReply::Done {
        outcome,
        message: message.map(str::to_owned),
    };
    match request {
        LocalRequest::Authenticate { .. } => LocalReply::Prompt {
            text: "Password: ".into(),
            echo: false,
        },
        LocalRequest::Answer { text } if text == "hunter2" => LocalReply::Prompt {
            text: "Code: ".into(),
            echo: true,
        },
        LocalRequest::Answer { text } if text == "123456" => done(Outcome::Success, Some("Welcome.")),
        LocalRequest::Answer { .. } => done(Outcome::AuthFailed, Some("Your credentials did not work.")),
        LocalRequest::Account { .. } => done(Outcome::Denied, Some("Not here.")),
        LocalRequest::ChangePassword { .. } => {
            done(Outcome::Denied, Some("Change it on the directory's page."))
        }
        LocalRequest::OpenSession { .. } => done(Outcome::Success, None),
        LocalRequest::CloseSession { .. } => done(Outcome::Unavailable, Some("ignored")),
        LocalRequest::Principals { .. } => done(Outcome::UnknownUser, None),
    }
}

#[test]
fn through_libpam() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    write_config(dir.path(), "usher-test", &socket);
    let requests = agent(&socket, scripted);
    let mut t = Transaction::start(dir.path(), "usher-test", "ann@contoso.test");

    // SAFETY: a started transaction.
    assert_eq!(unsafe { pam_authenticate(t.pamh, 0) }, 0);
    assert_eq!(
        t.take_seen(),
        vec![
            (1, "Password: ".into()),
            (2, "Code: ".into()),
            (4, "Welcome.".into())
        ]
    );
    // SAFETY: as above.
    assert_eq!(unsafe { pam_setcred(t.pamh, PAM_ESTABLISH_CRED) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { pam_acct_mgmt(t.pamh, 0) }, 6, "PAM_PERM_DENIED");
    assert_eq!(t.take_seen(), vec![(3, "Not here.".into())]);
    // Both chauthtok passes would ask; the preliminary one fails, so libpam stops there.
    // SAFETY: as above.
    assert_eq!(unsafe { pam_chauthtok(t.pamh, 0) }, 20, "PAM_AUTHTOK_ERR");
    assert_eq!(
        t.take_seen(),
        vec![(3, "Change it on the directory's page.".into())]
    );
    // SAFETY: as above.
    assert_eq!(unsafe { pam_open_session(t.pamh, 0) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { pam_close_session(t.pamh, 0) }, 0, "closing never fails");
    assert!(t.take_seen().is_empty());

    let pid = std::process::id();
    let rhost = Some("192.0.2.9".to_owned());
    let (service, user) = ("usher-test".to_owned(), "ann@contoso.test".to_owned());
    assert_eq!(
        *requests.lock().unwrap(),
        vec![
            LocalRequest::Authenticate {
                service: service.clone(),
                user: user.clone(),
                rhost: rhost.clone()
            },
            LocalRequest::Answer {
                text: "hunter2".into()
            },
            LocalRequest::Answer {
                text: "123456".into()
            },
            LocalRequest::Account {
                service: service.clone(),
                user: user.clone(),
                rhost: rhost.clone()
            },
            LocalRequest::ChangePassword { user: user.clone() },
            LocalRequest::OpenSession {
                service: service.clone(),
                user: user.clone(),
                pid,
                rhost
            },
            LocalRequest::CloseSession { service, user, pid },
        ]
    );
}

#[test]
fn chauthtok_asks_in_both_passes_and_shows_once() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    write_config(dir.path(), "usher-pw", &socket);
    let requests = agent(&socket, |_| LocalReply::Done {
        outcome: Outcome::Success,
        message: Some("Done.".into()),
    });
    let mut t = Transaction::start(dir.path(), "usher-pw", "ann@contoso.test");
    // SAFETY: a started transaction.
    assert_eq!(unsafe { pam_chauthtok(t.pamh, 0) }, 0);
    assert_eq!(t.take_seen(), vec![(4, "Done.".into())]);
    let change = LocalRequest::ChangePassword {
        user: "ann@contoso.test".into(),
    };
    assert_eq!(*requests.lock().unwrap(), vec![change.clone(), change]);
}

#[test]
fn agent_down() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "usher-down", &dir.path().join("nobody.sock"));

    // A local account: not ours, the rest of the stack decides.
    let mut local = Transaction::start(dir.path(), "usher-down", "root");
    // SAFETY: a started transaction.
    assert_eq!(unsafe { pam_authenticate(local.pamh, 0) }, 10, "PAM_USER_UNKNOWN");
    assert!(local.take_seen().is_empty());

    // A directory user: fails closed, with the message.
    let mut directory = Transaction::start(dir.path(), "usher-down", "USHER\\ann@contoso.test");
    // SAFETY: a started transaction.
    assert_eq!(
        unsafe { pam_authenticate(directory.pamh, 0) },
        9,
        "PAM_AUTHINFO_UNAVAIL"
    );
    let seen = directory.take_seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 3);
    assert!(seen[0].1.contains("not running (usher-agent)"), "{}", seen[0].1);
    // SAFETY: as above.
    assert_eq!(unsafe { pam_close_session(directory.pamh, 0) }, 0);
}
