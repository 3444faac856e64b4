//! The real glibc loading `libnss_usher.so.2`: `getent` and `id` in a mount namespace with its
//! own copy of `/etc` (nsswitch.conf naming `usher`, the agent's files), the module found through
//! `LD_LIBRARY_PATH` (glibc dlopens NSS modules by name). The host's `/etc` is untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::path::PathBuf;
use std::process::Command;

/// The cdylib cargo built beside this test (`target/<profile>/libnss_usher.so`).
fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let so = profile_dir.join("libnss_usher.so");
    assert!(
        so.exists(),
        "{} was not built: run `cargo build -p usher-nss` first (scripts/test.sh does)",
        so.display()
    );
    so
}

struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        assert!(
            Command::new("cp")
                .args(["-a", "/etc"])
                .arg(&etc)
                .status()
                .unwrap()
                .success()
        );
        let nss = std::fs::read_to_string(etc.join("nsswitch.conf")).unwrap_or_default();
        let rewritten: String = nss
            .lines()
            .map(|l| {
                if l.starts_with("passwd:") || l.starts_with("group:") {
                    format!("{} usher\n", l.trim_end())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(etc.join("nsswitch.conf"), rewritten).unwrap();
        std::fs::create_dir_all(etc.join("usher")).unwrap();
        std::fs::write(
            etc.join("usher/passwd"),
            "ann@contoso.test:x:1879048192:1879048192:Ann Lee:/home/ann@contoso.test:/bin/bash\n\
             bob@contoso.test:x:1879048193:1879048193:Bob:/home/bob@contoso.test:/bin/bash\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("usher/group"),
            "ann@contoso.test:x:1879048192:\nbob@contoso.test:x:1879048193:\nusher-admins:x:2147352576:ann@contoso.test\n",
        )
        .unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::os::unix::fs::symlink(module(), lib.join("libnss_usher.so.2")).unwrap();
        Machine { dir }
    }

    /// Runs a command in the machine's mount namespace; (exit code, stdout).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc && shift && exec \"$@\"")
            .arg("sh")
            .arg(self.dir.path().join("etc"))
            .args(args)
            .env("LD_LIBRARY_PATH", self.dir.path().join("lib"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[test]
fn glibc_resolves_directory_users_and_groups() {
    let m = Machine::new();
    let (code, out) = m.run(&["getent", "passwd", "ann@contoso.test"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "ann@contoso.test:x:1879048192:1879048192:Ann Lee:/home/ann@contoso.test:/bin/bash\n"
    );
    let (code, out) = m.run(&["getent", "passwd", "1879048193"]);
    assert_eq!((code, out.split(':').next().unwrap()), (0, "bob@contoso.test"));
    let (code, out) = m.run(&["getent", "group", "usher-admins"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "usher-admins:x:2147352576:ann@contoso.test\n")
    );
    let (code, out) = m.run(&["getent", "group", "1879048193"]);
    assert_eq!((code, out.as_str()), (0, "bob@contoso.test:x:1879048193:\n"));
    // Supplementary groups through initgroups: ann is an administrator, bob is not.
    let (code, out) = m.run(&["id", "ann@contoso.test"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("uid=1879048192(ann@contoso.test)") && out.contains("2147352576(usher-admins)"),
        "{out}"
    );
    let (_, out) = m.run(&["id", "bob@contoso.test"]);
    assert!(!out.contains("usher-admins"), "{out}");
    // Unknown names are not found; enumeration lists nothing of ours.
    assert_eq!(m.run(&["getent", "passwd", "carl@contoso.test"]).0, 2);
    let (_, all) = m.run(&["getent", "passwd"]);
    assert!(!all.contains("ann@contoso.test"), "no enumeration");
    // The host does not see them.
    let host = Command::new("getent")
        .args(["passwd", "ann@contoso.test"])
        .output()
        .unwrap();
    assert_eq!(host.status.code(), Some(2));
}

#[test]
fn missing_files_answer_not_found() {
    let m = Machine::new();
    std::fs::remove_dir_all(m.dir.path().join("etc/usher")).unwrap();
    assert_eq!(m.run(&["getent", "passwd", "ann@contoso.test"]).0, 2);
    assert_eq!(m.run(&["getent", "group", "usher-admins"]).0, 2);
}
