//! The files `libnss_usher.so.2` answers from (`/etc/usher/passwd`, `/etc/usher/group`, mode
//! 0644, the formats of `/etc/passwd` and `/etc/group`), written from the login cache while the
//! login extension is installed. No secret is in them: names and numbers only.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::state::write_atomic;

/// The users file.
pub const PASSWD: &str = "etc/usher/passwd";
/// The groups file.
pub const GROUP: &str = "etc/usher/group";
/// The group whose members are the machine's administrators (after SPEC L2's UID range).
pub const ADMINS_GROUP: &str = "usher-admins";
/// Its GID.
pub const ADMINS_GID: u64 = 0x7FFE_0000;

/// A name safe in a colon-separated line.
fn clean(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains([':', '\n', ',', '\0'])).then_some(s)
}

/// The two files' contents for a login cache.
pub fn render(cache: &Value, shell: &str) -> (String, String) {
    let mut passwd = String::new();
    let mut group = String::new();
    let mut admins = Vec::new();
    for l in cache["logins"].as_array().into_iter().flatten() {
        let (Some(name), Some(uid)) = (l["userPrincipalName"].as_str().and_then(clean), l["uid"].as_u64())
        else {
            continue;
        };
        // "*": no local password (the directory checks it), and not a locked account.
        let name = name.to_ascii_lowercase();
        passwd.push_str(&format!("{name}:*:{uid}:{uid}:{name}:/home/{name}:{shell}\n"));
        group.push_str(&format!("{name}:x:{uid}:\n"));
        if l["right"] == "admin" {
            admins.push(name.to_owned());
        }
    }
    group.push_str(&format!("{ADMINS_GROUP}:x:{ADMINS_GID}:{}\n", admins.join(",")));
    (passwd, group)
}

/// Writes the files under `root` (the machine's `/`).
pub fn write(root: &Path, cache: &Value, shell: &str) -> Result<()> {
    let (passwd, group) = render(cache, shell);
    write_atomic(&root.join(PASSWD), passwd.as_bytes(), 0o644)?;
    write_atomic(&root.join(GROUP), group.as_bytes(), 0o644)?;
    Ok(())
}

/// Removes them.
pub fn remove(root: &Path) {
    let _ = std::fs::remove_file(root.join(PASSWD));
    let _ = std::fs::remove_file(root.join(GROUP));
}

/// Whether the login extension's configuration is in place (the NSS files go with it).
pub fn login_installed(root: &Path) -> bool {
    std::fs::read_to_string(root.join("etc/usher/login.conf"))
        .is_ok_and(|t| t.starts_with(crate::files::MARKER))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use serde_json::json;

    #[test]
    fn renders_users_private_groups_and_admins() {
        let cache = json!({"logins": [
            {"userPrincipalName": "ann@contoso.test", "uid": 1879048192u64, "right": "admin"},
            {"userPrincipalName": "bob@contoso.test", "uid": 1879048193u64, "right": "user"},
            {"userPrincipalName": "bad:name@contoso.test", "uid": 1879048194u64, "right": "admin"},
            {"userPrincipalName": null, "uid": 1879048195u64, "right": "user"},
        ]});
        let (passwd, group) = super::render(&cache, "/bin/bash");
        assert_eq!(
            passwd,
            "ann@contoso.test:*:1879048192:1879048192:ann@contoso.test:/home/ann@contoso.test:/bin/bash\nbob@contoso.test:*:1879048193:1879048193:bob@contoso.test:/home/bob@contoso.test:/bin/bash\n"
        );
        assert!(
            group.ends_with("usher-admins:x:2147352576:ann@contoso.test\n"),
            "{group}"
        );
        assert!(group.contains("bob@contoso.test:x:1879048193:\n"));
    }
}
