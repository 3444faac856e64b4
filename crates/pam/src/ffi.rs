//! The C side: the six `pam_sm_*` entry points, libpam's items and the application's
//! conversation adapted to [`Conversation`], and the two socket calls std does not offer (a
//! connect with a timeout, a send that never raises `SIGPIPE`). Everything else is in the safe
//! modules. A panic never crosses into C: it becomes `PAM_SYSTEM_ERR`.
//!
//! Memory: the application's conversation `malloc`s the response array and each answer; this
//! module copies an answer out, overwrites the application's bytes with zeros and `free`s both.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io;
use std::marker::{PhantomData, PhantomPinned};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use usher_proto::local::Outcome;
use zeroize::{Zeroize, Zeroizing};

use crate::code::{PAM_CONV_AGAIN, PAM_IGNORE, PAM_INCOMPLETE, PAM_SUCCESS, PAM_SYSTEM_ERR, Phase};
use crate::conf::Args;
use crate::flow::{self, Conversation, Step};
use crate::transport::UnixTransport;

const PAM_SERVICE: c_int = 1;
const PAM_RHOST: c_int = 4;
const PAM_CONV: c_int = 5;

const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

/// libpam's `pam_handle_t` (opaque).
#[repr(C)]
#[derive(Debug)]
pub struct PamHandle {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// The conversation function's type.
type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char) -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
}

/// The handle libpam passed to an entry point.
struct Pam {
    handle: NonNull<PamHandle>,
}

impl Pam {
    /// # Safety
    /// `pamh` is null or the handle libpam passed to the running entry point; the `Pam` does
    /// not outlive that call.
    unsafe fn new(pamh: *mut PamHandle) -> Option<Pam> {
        NonNull::new(pamh).map(|handle| Pam { handle })
    }

    fn ptr(&self) -> *mut PamHandle {
        self.handle.as_ptr()
    }

    /// `pam_get_user`: `Ok(None)` for a name that is not UTF-8 (never a directory user).
    fn user(&self) -> Result<Option<String>, c_int> {
        let mut user: *const c_char = ptr::null();
        // SAFETY: the handle is libpam's (see `new`) and `user` is a valid out-pointer; a null
        // prompt asks for libpam's default one.
        let rc = unsafe { pam_get_user(self.ptr(), &mut user, ptr::null()) };
        if rc != PAM_SUCCESS {
            return Err(if rc == PAM_CONV_AGAIN { PAM_INCOMPLETE } else { rc });
        }
        if user.is_null() {
            return Ok(None);
        }
        // SAFETY: on success libpam points `user` at its NUL-terminated copy of the name, valid
        // while the handle lives; it is copied at once.
        let name = unsafe { CStr::from_ptr(user) };
        Ok(name.to_str().ok().map(str::to_owned))
    }

    /// A string item (`PAM_SERVICE`, `PAM_RHOST`), if set.
    fn item(&self, item_type: c_int) -> Option<String> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is libpam's and `item` is a valid out-pointer.
        let rc = unsafe { pam_get_item(self.ptr(), item_type, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: the string items are NUL-terminated strings owned by libpam, valid while the
        // handle lives; copied at once.
        let text = unsafe { CStr::from_ptr(item.cast::<c_char>()) };
        Some(text.to_string_lossy().into_owned())
    }

    /// Sends one message through the application's conversation. `None`: the conversation
    /// failed; `Some(None)`: no (UTF-8) answer came back.
    fn converse(&self, style: c_int, text: &str) -> Option<Option<Zeroizing<String>>> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: the handle is libpam's and `item` is a valid out-pointer.
        let rc = unsafe { pam_get_item(self.ptr(), PAM_CONV, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return None;
        }
        // SAFETY: PAM_CONV is the application's `struct pam_conv`, which libpam keeps (a copy)
        // for the handle's lifetime; only read here.
        let conv = unsafe { &*item.cast::<PamConv>() };
        let function = conv.conv?;
        let text = CString::new(text.replace('\0', "")).ok()?;
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        // With one message Linux-PAM's layout (an array of pointers) and Solaris's (a pointer
        // to an array) are the same.
        let mut messages = [&raw const message];
        let mut responses: *mut PamResponse = ptr::null_mut();
        // SAFETY: the function is the application's conversation, called as PAM specifies: one
        // message that outlives the call, a valid out-pointer for the responses, and the
        // application's own data pointer.
        let rc = unsafe { function(1, messages.as_mut_ptr(), &mut responses, conv.appdata_ptr) };
        // Like libpam's own `pam_prompt`, free whatever came back whatever the code says.
        // SAFETY: `responses` is null or the array of one response the application `malloc`ed
        // and handed over to the module.
        let answer = unsafe { take_responses(responses) };
        (rc == PAM_SUCCESS).then_some(answer)
    }
}

/// Copies the answer out of the application's response array, zeroes it and frees it all.
///
/// # Safety
/// `responses` is null or a `malloc`ed array of (at least) one `pam_response` owned by the
/// caller, whose `resp` is null or a `malloc`ed NUL-terminated string. Neither is used after.
unsafe fn take_responses(responses: *mut PamResponse) -> Option<Zeroizing<String>> {
    if responses.is_null() {
        return None;
    }
    // SAFETY: `responses` points at a valid `pam_response` (contract).
    let resp = unsafe { (*responses).resp };
    let mut answer = None;
    if !resp.is_null() {
        // SAFETY: `resp` is a NUL-terminated string (contract).
        let len = unsafe { CStr::from_ptr(resp) }.to_bytes().len();
        // SAFETY: the `len` bytes before the NUL belong to the string, which is ours to write.
        let bytes = unsafe { std::slice::from_raw_parts_mut(resp.cast::<u8>(), len) };
        // An exact-size copy: turning it into a String below does not reallocate.
        let copy = bytes.to_vec();
        bytes.zeroize();
        // SAFETY: `resp` was `malloc`ed (contract) and is freed once, here.
        unsafe { libc::free(resp.cast::<c_void>()) };
        answer = match String::from_utf8(copy) {
            Ok(text) => Some(Zeroizing::new(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                None
            }
        };
    }
    // SAFETY: the array was `malloc`ed (contract) and is freed once, here.
    unsafe { libc::free(responses.cast::<c_void>()) };
    answer
}

impl Conversation for Pam {
    fn ask(&mut self, text: &str, echo: bool) -> Option<Zeroizing<String>> {
        let style = if echo {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        self.converse(style, text).flatten()
    }

    fn show(&mut self, text: &str, error: bool) {
        let style = if error { PAM_ERROR_MSG } else { PAM_TEXT_INFO };
        drop(self.converse(style, text));
    }

    fn log(&mut self, text: &str) {
        let Ok(text) = CString::new(text.replace('\0', "")) else {
            return;
        };
        // SAFETY: the handle is libpam's; the format is a literal "%s" taking the one
        // NUL-terminated string passed, which outlives the call.
        unsafe { pam_syslog(self.ptr(), libc::LOG_WARNING, c"%s".as_ptr(), text.as_ptr()) };
    }
}

/// The module's arguments.
///
/// # Safety
/// `argv` is null or points at `argc` pointers, each null or a NUL-terminated string.
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        .filter_map(|i| {
            // SAFETY: `i < argc` (contract).
            let arg = unsafe { *argv.add(i) };
            // SAFETY: a non-null argument is a NUL-terminated string (contract).
            (!arg.is_null()).then(|| unsafe { CStr::from_ptr(arg) }.to_string_lossy().into_owned())
        })
        .collect()
}

/// Runs `f`, turning a panic into `PAM_SYSTEM_ERR`.
fn guarded(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(PAM_SYSTEM_ERR)
}

/// One entry point: gathers the step from libpam and runs it against the agent.
///
/// # Safety
/// The arguments are the ones libpam passed to the running entry point.
unsafe fn entry(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
    phase: Phase,
) -> c_int {
    guarded(|| {
        // SAFETY: libpam's handle, used only during this call (contract).
        let Some(mut pam) = (unsafe { Pam::new(pamh) }) else {
            return PAM_SYSTEM_ERR;
        };
        // SAFETY: libpam's `argc` and `argv` (contract).
        let args = Args::parse(&unsafe { arguments(argc, argv) });
        for arg in &args.ignored {
            pam.log(&format!("ignoring the unknown or invalid argument {arg:?}"));
        }
        let user = match pam.user() {
            Ok(Some(user)) if !user.trim().is_empty() => user,
            Ok(_) => return phase.code(Outcome::UnknownUser),
            Err(_) if phase == Phase::CloseSession => return PAM_IGNORE,
            Err(rc) => return rc,
        };
        let step = Step {
            phase,
            service: pam.item(PAM_SERVICE).unwrap_or_default(),
            user,
            rhost: pam.item(PAM_RHOST).filter(|h| !h.is_empty()),
            pid: std::process::id(),
            quiet: phase.quiet(flags),
        };
        let socket = args.socket_path();
        flow::run(&step, || UnixTransport::connect(&socket), &mut pam)
    })
}

/// `auth`: the agent's conversation.
///
/// # Safety
/// Called by libpam with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's own arguments, passed on.
    unsafe { entry(pamh, flags, argc, argv, Phase::Authenticate) }
}

/// `auth` credentials: there are none to set, and sshd fails a login whose `setcred` fails.
///
/// # Safety
/// Called by libpam with its documented arguments (none is used).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    guarded(|| PAM_SUCCESS)
}

/// `account`: may the user log in here now?
///
/// # Safety
/// Called by libpam with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's own arguments, passed on.
    unsafe { entry(pamh, flags, argc, argv, Phase::Account) }
}

/// `session` open.
///
/// # Safety
/// Called by libpam with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's own arguments, passed on.
    unsafe { entry(pamh, flags, argc, argv, Phase::OpenSession) }
}

/// `session` close: never fails for a directory user.
///
/// # Safety
/// Called by libpam with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's own arguments, passed on.
    unsafe { entry(pamh, flags, argc, argv, Phase::CloseSession) }
}

/// `password`: the agent is asked in both of Linux-PAM's passes (`PAM_PRELIM_CHECK`, then
/// `PAM_UPDATE_AUTHTOK`) so both return the same code; its message is shown in the first only.
///
/// # Safety
/// Called by libpam with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: libpam's own arguments, passed on.
    unsafe { entry(pamh, flags, argc, argv, Phase::ChangePassword) }
}

/// Connects to a Unix stream socket, waiting at most `timeout` (on Linux a connect waits for
/// room in the listener's backlog for at most `SO_SNDTIMEO`). The socket is close-on-exec.
pub(crate) fn connect_unix(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    // SAFETY: `sockaddr_un` is plain integers and a byte array, for which zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket path is empty or too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (to, from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = *from as c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    let len = libc::socklen_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connecting timed out");
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream.set_write_timeout(Some(left))?;
        // SAFETY: `addr` is an initialized `sockaddr_un` and `len` covers its family and the
        // path with its NUL; the descriptor is open (the stream owns it).
        let rc = unsafe {
            libc::connect(
                stream.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                len,
            )
        };
        if rc == 0 {
            return Ok(stream);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EISCONN) => return Ok(stream),
            Some(libc::EAGAIN | libc::EINPROGRESS) => return Err(timed_out()),
            _ => return Err(e),
        }
    }
}

/// `send(2)` with `MSG_NOSIGNAL`: a peer that has gone is `EPIPE`, never a `SIGPIPE`.
pub(crate) fn send_no_sigpipe(stream: &UnixStream, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes and the descriptor is open (the stream
    // owns it).
    let n = unsafe {
        libc::send(
            stream.as_raw_fd(),
            buf.as_ptr().cast::<c_void>(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn connects_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        assert!(connect_unix(&path, Duration::from_secs(1)).is_err());
        let listener = UnixListener::bind(&path).unwrap();
        let mut client = connect_unix(&path, Duration::from_secs(1)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(send_no_sigpipe(&client, b"hi").unwrap(), 2);
        let mut got = [0u8; 2];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        // The peer has gone: an error, not a signal.
        let err = send_no_sigpipe(&client, b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);

        let long = dir.path().join("x".repeat(200));
        assert_eq!(
            connect_unix(&long, Duration::from_secs(1)).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn connect_times_out_on_a_full_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // SAFETY: listen(2) on a socket the listener owns; Linux takes a new backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let mut held = Vec::new();
        let timeout = Duration::from_millis(200);
        for _ in 0..4 {
            let start = Instant::now();
            match connect_unix(&path, timeout) {
                Ok(s) => held.push(s),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    assert!(start.elapsed() >= timeout / 2);
                    assert!(start.elapsed() < Duration::from_secs(2));
                    return;
                }
            }
        }
        panic!("the backlog never filled");
    }

    /// `malloc`s a copy of `s`.
    fn c_strdup(s: &str) -> *mut c_char {
        let c = CString::new(s).unwrap();
        // SAFETY: strdup copies a NUL-terminated string into `malloc`ed memory.
        let p = unsafe { libc::strdup(c.as_ptr()) };
        assert!(!p.is_null());
        p
    }

    /// A `malloc`ed response array of one, as an application returns it.
    fn response(resp: *mut c_char) -> *mut PamResponse {
        // SAFETY: calloc returns zeroed memory for one response or null.
        let r = unsafe { libc::calloc(1, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
        assert!(!r.is_null());
        // SAFETY: `r` is a valid, exclusive allocation of one response.
        unsafe { (*r).resp = resp };
        r
    }

    #[test]
    fn responses_are_copied_and_freed() {
        // SAFETY: each array and string is `malloc`ed here and handed over.
        unsafe {
            assert_eq!(
                take_responses(response(c_strdup("hunter2")))
                    .as_deref()
                    .map(String::as_str),
                Some("hunter2")
            );
            assert_eq!(
                take_responses(response(c_strdup("")))
                    .as_deref()
                    .map(String::as_str),
                Some("")
            );
            assert_eq!(take_responses(response(ptr::null_mut())), None);
            assert_eq!(take_responses(ptr::null_mut()), None);
            let latin1 = libc::strdup(c"caf\xe9".as_ptr());
            assert_eq!(take_responses(response(latin1)), None);
        }
    }

    #[test]
    fn arguments_from_argv() {
        let a = c"socket=/run/a.sock";
        let b = c"debug";
        let argv = [a.as_ptr(), ptr::null(), b.as_ptr()];
        // SAFETY: three entries, each null or a NUL-terminated string.
        let args = unsafe { arguments(3, argv.as_ptr()) };
        assert_eq!(args, vec!["socket=/run/a.sock".to_owned(), "debug".to_owned()]);
        // SAFETY: a null argv is allowed.
        assert!(unsafe { arguments(2, ptr::null()) }.is_empty());
        // SAFETY: a negative count reads nothing.
        assert!(unsafe { arguments(-1, argv.as_ptr()) }.is_empty());
    }

    #[test]
    fn panics_become_system_errors() {
        assert_eq!(guarded(|| panic!("boom")), PAM_SYSTEM_ERR);
        assert_eq!(guarded(|| PAM_SUCCESS), PAM_SUCCESS);
    }

    #[test]
    fn null_handle() {
        // SAFETY: a null handle is checked before use.
        let rc = unsafe { pam_sm_authenticate(ptr::null_mut(), 0, 0, ptr::null()) };
        assert_eq!(rc, PAM_SYSTEM_ERR);
        // SAFETY: setcred uses none of its arguments.
        assert_eq!(
            unsafe { pam_sm_setcred(ptr::null_mut(), 0, 0, ptr::null()) },
            PAM_SUCCESS
        );
    }
}
