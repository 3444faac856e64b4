//! The login configuration the extension puts on the machine (SPEC L2–L5): the sshd drop-in,
//! the user CA, sudoers for `usher-admins`, `usher` in nsswitch.conf, `pam_usher.so` in the PAM
//! stacks, and the modules themselves. Edits of the operator's files (nsswitch.conf, PAM stacks)
//! add our lines only; the rest of each file stays as it was, and removal restores the file.
//! The text transformations here are pure.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::files::MARKER;

/// The NSS module's installed path.
pub const NSS_MODULE: &str = "/usr/lib/x86_64-linux-gnu/libnss_usher.so.2";
/// The PAM module's installed path.
pub const PAM_MODULE: &str = "/usr/lib/x86_64-linux-gnu/security/pam_usher.so";
/// The principals helper: in a root-owned directory no one else may write (sshd refuses others).
pub const PRINCIPALS_HELPER: &str = "/usr/libexec/usher/usher-principals";
/// The user CA sshd trusts.
pub const USER_CA_FILE: &str = "/etc/ssh/usher_user_ca.pub";
/// The machine's Ed25519 host key (Debian's).
pub const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key";
/// Its certificate from the tenant's host CA.
pub const HOST_CERT: &str = "/etc/ssh/ssh_host_ed25519_key-cert.pub";
/// The sshd drop-in.
pub const SSHD_DROP_IN: &str = "/etc/ssh/sshd_config.d/10-usher.conf";
/// sudo rights of the administrators.
pub const SUDOERS: &str = "/etc/sudoers.d/usher-admins";
/// The name service switch.
pub const NSSWITCH: &str = "/etc/nsswitch.conf";
/// PAM services that get `pam_usher.so` (when their stack exists). sudo is among them because
/// its account phase must accept directory users (pam_unix knows no shadow entry for them).
pub const PAM_SERVICES: [&str; 4] = [
    "/etc/pam.d/sshd",
    "/etc/pam.d/login",
    "/etc/pam.d/xrdp-sesman",
    "/etc/pam.d/sudo",
];

/// The sshd drop-in: certificates from the tenant CA with the agent's check of each one, the
/// password path over keyboard-interactive, no stray `authorized_keys` for directory users.
pub fn sshd_drop_in() -> String {
    format!(
        "# Directory logins (usher). Certificates: signed by the tenant's user CA, bound to this
# machine and to a login role, checked by the agent through the helper below.
TrustedUserCAKeys {USER_CA_FILE}
AuthorizedPrincipalsCommand {PRINCIPALS_HELPER} %u %k
AuthorizedPrincipalsCommandUser root
HostCertificate {HOST_CERT}
# The password (and one-time code) path goes through PAM (pam_usher.so).
UsePAM yes
KbdInteractiveAuthentication yes
# Directory users (user@domain) log in with certificates or the password path only.
Match User *@*
\tAuthorizedKeysFile none
\tAuthorizedKeysCommand none
"
    )
}

/// sudo for the machine's administrators (SPEC L5).
pub fn sudoers() -> String {
    format!("%{} ALL=(ALL) NOPASSWD: ALL\n", crate::nssfiles::ADMINS_GROUP)
}

/// A file's text without our marker line (what was there before us, plus our own edits).
fn without_marker(text: &str) -> &str {
    text.strip_prefix(MARKER)
        .map_or(text, |rest| rest.strip_prefix('\n').unwrap_or(rest))
}

/// nsswitch.conf with `usher` after `files` for passwd and group (added once).
pub fn nsswitch_with_usher(current: &str) -> String {
    let mut out = String::new();
    for line in without_marker(current).lines() {
        let db = line.split(':').next().unwrap_or_default().trim();
        if (db == "passwd" || db == "group") && line.contains(':') {
            let (head, sources) = line.split_once(':').unwrap_or((line, ""));
            let mut words: Vec<&str> = sources.split_whitespace().collect();
            if !words.contains(&"usher") {
                let at = words.iter().position(|w| *w == "files").map_or(0, |i| i + 1);
                words.insert(at, "usher");
            }
            let spacing = &sources[..sources.len() - sources.trim_start().len()];
            let spacing = if spacing.is_empty() { " " } else { spacing };
            out.push_str(&format!("{head}:{spacing}{}\n", words.join(" ")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Our lines in a PAM stack, one per type, placed before the stack's `@include common-TYPE`
/// (or before its first line of that type): after `pam_nologin`, ahead of `pam_unix`.
pub fn pam_with_usher(current: &str) -> String {
    const OURS: [(&str, &str); 4] = [
        (
            "auth",
            "auth\t[success=done new_authtok_reqd=done user_unknown=ignore default=die]\tpam_usher.so",
        ),
        (
            "account",
            "account\t[success=done new_authtok_reqd=done user_unknown=ignore default=die]\tpam_usher.so",
        ),
        (
            "session",
            "session\t[success=ok user_unknown=ignore ignore=ignore default=bad]\tpam_usher.so",
        ),
        (
            "password",
            "password\t[success=done user_unknown=ignore default=die]\tpam_usher.so",
        ),
    ];
    let body = without_marker(current);
    if body.contains("pam_usher.so") {
        return body.to_owned();
    }
    let lines: Vec<&str> = body.lines().collect();
    let kind_of = |l: &str| -> Option<String> {
        let t = l.trim();
        if let Some(inc) = t.strip_prefix("@include") {
            return inc.trim().strip_prefix("common-").map(|k| {
                if k.starts_with("session") {
                    "session".into()
                } else {
                    k.to_owned()
                }
            });
        }
        let first = t.split_whitespace().next()?.trim_start_matches('-');
        matches!(first, "auth" | "account" | "session" | "password").then(|| first.to_owned())
    };
    let mut placed = std::collections::BTreeSet::new();
    let mut out = String::new();
    // Before the include of the common stack, else before the first line of the type.
    for l in &lines {
        if let Some(kind) = kind_of(l) {
            let include = l.trim().starts_with("@include");
            let has_include = lines
                .iter()
                .any(|x| x.trim().starts_with("@include") && kind_of(x).as_deref() == Some(&kind));
            if !placed.contains(&kind)
                && (include || !has_include)
                && let Some((_, ours)) = OURS.iter().find(|(k, _)| *k == kind)
            {
                out.push_str(ours);
                out.push('\n');
                placed.insert(kind.clone());
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    for (kind, ours) in OURS {
        if !placed.contains(kind) {
            out.push_str(ours);
            out.push('\n');
        }
    }
    out
}

/// A module or helper shipped with the agent, and where it goes.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// Names it may have where it is shipped (cargo's name first).
    pub names: &'static [&'static str],
    /// Where it is installed.
    pub target: &'static str,
    /// Its mode.
    pub mode: u32,
}

/// The three binaries the login path needs.
pub const SHIPPED: [Shipped; 3] = [
    Shipped {
        names: &["libnss_usher.so.2", "libnss_usher.so"],
        target: NSS_MODULE,
        mode: 0o644,
    },
    Shipped {
        names: &["pam_usher.so", "libpam_usher.so"],
        target: PAM_MODULE,
        mode: 0o644,
    },
    Shipped {
        names: &["usher-principals"],
        target: PRINCIPALS_HELPER,
        mode: 0o755,
    },
];

/// Where the shipped files are looked for: the setting, the agent's own directory, then
/// `/usr/lib/usher`.
pub fn module_dirs(setting: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = setting {
        dirs.push(d.to_path_buf());
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    dirs.push(PathBuf::from("/usr/lib/usher"));
    dirs
}

/// Finds a shipped file.
pub fn find_shipped(dirs: &[PathBuf], s: &Shipped) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|d| s.names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// Installs the shipped files under `root`; directories on the way are root's, 0755.
pub fn install_shipped(root: &Path, dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for s in &SHIPPED {
        let from = find_shipped(dirs, s).with_context(|| {
            format!(
                "{} is not shipped with the agent (looked for {} in {})",
                s.target,
                s.names.join(" or "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let to = root.join(s.target.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
            use std::os::unix::fs::PermissionsExt as _;
            if s.target == PRINCIPALS_HELPER {
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        let bytes = std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        if std::fs::read(&to).ok().as_deref() != Some(&bytes[..]) {
            crate::state::write_atomic(&to, &bytes, s.mode)?;
        }
        done.push(s.target.to_owned());
    }
    Ok(done)
}

/// Removes what [`install_shipped`] installed.
pub fn remove_shipped(root: &Path) {
    for s in &SHIPPED {
        let _ = std::fs::remove_file(root.join(s.target.trim_start_matches('/')));
    }
    let _ = std::fs::remove_dir(root.join("usr/libexec/usher"));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    const DEBIAN_NSSWITCH: &str = "passwd:         files systemd\ngroup:          files systemd\nshadow:         files systemd\nhosts:          files dns\n";

    #[test]
    fn nsswitch_gets_usher_once_after_files() {
        let once = nsswitch_with_usher(DEBIAN_NSSWITCH);
        assert!(once.contains("passwd:         files usher systemd\n"), "{once}");
        assert!(once.contains("group:          files usher systemd\n"), "{once}");
        assert!(
            once.contains("shadow:         files systemd\n"),
            "shadow untouched: {once}"
        );
        assert!(once.contains("hosts:          files dns\n"));
        let marked = format!("{MARKER}\n{once}");
        assert_eq!(
            nsswitch_with_usher(&marked),
            once,
            "applying again changes nothing"
        );
    }

    #[test]
    fn pam_lines_go_before_the_common_stacks_and_keep_the_rest() {
        let sshd = "# PAM for sshd\n@include common-auth\naccount    required     pam_nologin.so\n@include common-account\nsession    required     pam_loginuid.so\n@include common-session\n@include common-password\n";
        let out = pam_with_usher(sshd);
        let lines: Vec<&str> = out.lines().collect();
        let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
        assert!(pos("auth\t[") < pos("@include common-auth"));
        assert!(
            pos("pam_nologin") < pos("account\t["),
            "nologin still applies first"
        );
        assert!(pos("account\t[") < pos("@include common-account"));
        assert!(pos("session\t[") < pos("@include common-session"));
        assert!(pos("pam_loginuid") < pos("session\t["));
        assert!(pos("password\t[") < pos("@include common-password"));
        for original in sshd.lines() {
            assert!(lines.contains(&original), "kept: {original}");
        }
        assert_eq!(out.matches("pam_usher.so").count(), 4);
        assert_eq!(pam_with_usher(&format!("{MARKER}\n{out}")), out, "idempotent");
        // A stack without includes gets our lines before its first line of each type.
        let plain = pam_with_usher("auth required pam_unix.so\naccount required pam_unix.so\n");
        assert!(plain.starts_with("auth\t["), "{plain}");
        assert!(plain.contains("session\t[") && plain.contains("password\t["));
    }

    #[test]
    fn drop_in_names_the_helper_and_ends_with_the_match_block() {
        let d = sshd_drop_in();
        assert!(d.contains("AuthorizedPrincipalsCommand /usr/libexec/usher/usher-principals %u %k"));
        assert!(d.contains("TrustedUserCAKeys /etc/ssh/usher_user_ca.pub"));
        let match_at = d.find("Match User").unwrap();
        assert!(
            !d[match_at..].contains("TrustedUserCAKeys"),
            "global settings come before Match"
        );
        assert_eq!(sudoers(), "%usher-admins ALL=(ALL) NOPASSWD: ALL\n");
    }
}
