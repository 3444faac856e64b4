//! glibc's NSS entry points. Each copies an answer from [`crate::cache`] into the caller's
//! buffer and returns glibc's status; a buffer too small is `NSS_STATUS_TRYAGAIN` with `ERANGE`
//! (glibc retries with a larger one). A panic never crosses into C: it becomes `UNAVAIL`.

use std::ffi::{CStr, c_char, c_int, c_long};
use std::path::Path;

use libc::{gid_t, group, passwd, size_t, uid_t};

use crate::cache::{self, Group, Passwd};

const NSS_STATUS_TRYAGAIN: c_int = -2;
const NSS_STATUS_UNAVAIL: c_int = -1;
const NSS_STATUS_NOTFOUND: c_int = 0;
const NSS_STATUS_SUCCESS: c_int = 1;

/// Copies strings (and pointer arrays) into a caller's buffer.
struct Arena {
    start: *mut c_char,
    len: usize,
    used: usize,
}

impl Arena {
    fn align(&mut self, to: usize) -> Option<()> {
        let addr = self.start as usize + self.used;
        let pad = (to - addr % to) % to;
        (self.used + pad <= self.len).then(|| self.used += pad)
    }

    /// A NUL-terminated copy of `s`, or None when the buffer is full.
    fn string(&mut self, s: &str) -> Option<*mut c_char> {
        let bytes = s.as_bytes();
        if bytes.contains(&0) || self.used + bytes.len() + 1 > self.len {
            return None;
        }
        // SAFETY: `start..start+len` is the caller's writable buffer (glibc's contract), and
        // `used + bytes.len() + 1 <= len` was checked above, so the copy and the NUL stay inside it.
        unsafe {
            let dst = self.start.add(self.used);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), dst, bytes.len());
            *dst.add(bytes.len()) = 0;
            self.used += bytes.len() + 1;
            Some(dst)
        }
    }

    /// Room for `n` pointers, aligned.
    fn pointers(&mut self, n: usize) -> Option<*mut *mut c_char> {
        self.align(std::mem::align_of::<*mut c_char>())?;
        let size = n * std::mem::size_of::<*mut c_char>();
        if self.used + size > self.len {
            return None;
        }
        // SAFETY: the range was checked to lie inside the caller's buffer and is aligned.
        let p = unsafe { self.start.add(self.used).cast::<*mut c_char>() };
        self.used += size;
        Some(p)
    }
}

fn fill_passwd(p: &Passwd, out: *mut passwd, buf: *mut c_char, buflen: size_t) -> Option<()> {
    let mut a = Arena {
        start: buf,
        len: buflen,
        used: 0,
    };
    let name = a.string(&p.name)?;
    let pw = a.string("x")?;
    let gecos = a.string(&p.gecos)?;
    let dir = a.string(&p.dir)?;
    let shell = a.string(&p.shell)?;
    // SAFETY: `out` is the caller's `struct passwd` (glibc's contract); the strings point into
    // the caller's buffer, which outlives the answer.
    unsafe {
        (*out).pw_name = name;
        (*out).pw_passwd = pw;
        (*out).pw_uid = p.uid;
        (*out).pw_gid = p.gid;
        (*out).pw_gecos = gecos;
        (*out).pw_dir = dir;
        (*out).pw_shell = shell;
    }
    Some(())
}

fn fill_group(g: &Group, out: *mut group, buf: *mut c_char, buflen: size_t) -> Option<()> {
    let mut a = Arena {
        start: buf,
        len: buflen,
        used: 0,
    };
    let members = a.pointers(g.members.len() + 1)?;
    for (i, m) in g.members.iter().enumerate() {
        let s = a.string(m)?;
        // SAFETY: `members` has room for `members.len() + 1` pointers inside the buffer.
        unsafe { *members.add(i) = s };
    }
    // SAFETY: as above; the list ends with a null pointer.
    unsafe { *members.add(g.members.len()) = std::ptr::null_mut() };
    let name = a.string(&g.name)?;
    let pw = a.string("x")?;
    // SAFETY: `out` is the caller's `struct group`.
    unsafe {
        (*out).gr_name = name;
        (*out).gr_passwd = pw;
        (*out).gr_gid = g.gid;
        (*out).gr_mem = members;
    }
    Some(())
}

fn set_errno(errnop: *mut c_int, value: c_int) {
    if !errnop.is_null() {
        // SAFETY: glibc passes a valid `int *` for errno.
        unsafe { *errnop = value };
    }
}

/// Runs `f`, turning a panic into `UNAVAIL`.
fn guarded(errnop: *mut c_int, f: impl FnOnce() -> c_int + std::panic::UnwindSafe) -> c_int {
    std::panic::catch_unwind(f).unwrap_or_else(|_| {
        set_errno(errnop, libc::EAGAIN);
        NSS_STATUS_UNAVAIL
    })
}

fn answer<T>(found: Option<T>, fill: impl FnOnce(&T) -> Option<()>, errnop: *mut c_int) -> c_int {
    match found {
        None => {
            set_errno(errnop, libc::ENOENT);
            NSS_STATUS_NOTFOUND
        }
        Some(v) => match fill(&v) {
            Some(()) => NSS_STATUS_SUCCESS,
            None => {
                set_errno(errnop, libc::ERANGE);
                NSS_STATUS_TRYAGAIN
            }
        },
    }
}

/// The name a C caller passed, if it is UTF-8.
fn name_of(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: glibc passes a NUL-terminated string.
    unsafe { CStr::from_ptr(name) }.to_str().ok().map(str::to_owned)
}

/// `getpwnam_r` for the `usher` source.
///
/// # Safety
/// Called by glibc with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_usher_getpwnam_r(
    name: *const c_char,
    pwd: *mut passwd,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    guarded(errnop, move || {
        let found = name_of(name).and_then(|n| cache::user_by_name(Path::new(cache::PASSWD_FILE), &n));
        answer(found, |p| fill_passwd(p, pwd, buf, buflen), errnop)
    })
}

/// `getpwuid_r` for the `usher` source.
///
/// # Safety
/// Called by glibc with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_usher_getpwuid_r(
    uid: uid_t,
    pwd: *mut passwd,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    guarded(errnop, move || {
        let found = cache::user_by_uid(Path::new(cache::PASSWD_FILE), uid);
        answer(found, |p| fill_passwd(p, pwd, buf, buflen), errnop)
    })
}

/// `getgrnam_r` for the `usher` source.
///
/// # Safety
/// Called by glibc with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_usher_getgrnam_r(
    name: *const c_char,
    grp: *mut group,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    guarded(errnop, move || {
        let found = name_of(name).and_then(|n| cache::group_by_name(Path::new(cache::GROUP_FILE), &n));
        answer(found, |g| fill_group(g, grp, buf, buflen), errnop)
    })
}

/// `getgrgid_r` for the `usher` source.
///
/// # Safety
/// Called by glibc with its documented arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_usher_getgrgid_r(
    gid: gid_t,
    grp: *mut group,
    buf: *mut c_char,
    buflen: size_t,
    errnop: *mut c_int,
) -> c_int {
    guarded(errnop, move || {
        let found = cache::group_by_gid(Path::new(cache::GROUP_FILE), gid);
        answer(found, |g| fill_group(g, grp, buf, buflen), errnop)
    })
}

/// `initgroups_dyn` for the `usher` source: appends the groups `user` is a member of to glibc's
/// growing array.
///
/// # Safety
/// Called by glibc with its documented arguments (`*groupsp` is `malloc`ed, `*size` long).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn _nss_usher_initgroups_dyn(
    user: *const c_char,
    skip: gid_t,
    start: *mut c_long,
    size: *mut c_long,
    groupsp: *mut *mut gid_t,
    limit: c_long,
    errnop: *mut c_int,
) -> c_int {
    guarded(errnop, move || {
        let Some(name) = name_of(user) else {
            return NSS_STATUS_NOTFOUND;
        };
        let gids = cache::gids_of(Path::new(cache::GROUP_FILE), &name);
        if gids.is_empty() {
            return NSS_STATUS_NOTFOUND;
        }
        for gid in gids.into_iter().filter(|g| *g != skip) {
            // SAFETY: glibc's contract: `start`, `size`, `groupsp` are valid; the array holds
            // `*size` entries and was allocated with malloc, so realloc may grow it.
            unsafe {
                if *start >= *size {
                    if limit > 0 && *size >= limit {
                        break;
                    }
                    let mut new_size = (*size).max(1) * 2;
                    if limit > 0 {
                        new_size = new_size.min(limit);
                    }
                    let bytes = usize::try_from(new_size).unwrap_or(0) * std::mem::size_of::<gid_t>();
                    let grown = libc::realloc((*groupsp).cast(), bytes).cast::<gid_t>();
                    if grown.is_null() {
                        set_errno(errnop, libc::ENOMEM);
                        return NSS_STATUS_TRYAGAIN;
                    }
                    *groupsp = grown;
                    *size = new_size;
                }
                *(*groupsp).add(usize::try_from(*start).unwrap_or(0)) = gid;
                *start += 1;
            }
        }
        NSS_STATUS_SUCCESS
    })
}
