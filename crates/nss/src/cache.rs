//! The agent's NSS files, parsed. Pure: no FFI here.

use std::path::Path;

/// Where the agent writes users.
pub const PASSWD_FILE: &str = "/etc/usher/passwd";
/// Where the agent writes groups.
pub const GROUP_FILE: &str = "/etc/usher/group";

/// One user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// `user@domain`.
    pub name: String,
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// Full name.
    pub gecos: String,
    /// Home directory.
    pub dir: String,
    /// Login shell.
    pub shell: String,
}

/// One group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Name.
    pub name: String,
    /// GID.
    pub gid: u32,
    /// Member names.
    pub members: Vec<String>,
}

/// A `/etc/passwd` line.
pub fn parse_passwd(line: &str) -> Option<Passwd> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    Some(Passwd {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        gecos: f[4].to_owned(),
        dir: f[5].to_owned(),
        shell: f[6].to_owned(),
    })
}

/// A `/etc/group` line.
pub fn parse_group(line: &str) -> Option<Group> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 4 || f[0].is_empty() {
        return None;
    }
    Some(Group {
        name: f[0].to_owned(),
        gid: f[2].parse().ok()?,
        members: f[3]
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// `name` without the password path's `USHER\\` (or the seed's `AzureAD\\`) prefix (SPEC L2).
pub fn strip_domain_prefix(name: &str) -> &str {
    for prefix in ["usher\\", "azuread\\"] {
        if name.len() > prefix.len()
            && name.is_char_boundary(prefix.len())
            && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return &name[prefix.len()..];
        }
    }
    name
}

/// The user named `name`; `USHER\\user@domain` names `user@domain` (the entry keeps its own
/// name, so the login proceeds as `user@domain`).
pub fn user_by_name(path: &Path, name: &str) -> Option<Passwd> {
    let name = strip_domain_prefix(name);
    lines(path)
        .iter()
        .filter_map(|l| parse_passwd(l))
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The user with `uid`.
pub fn user_by_uid(path: &Path, uid: u32) -> Option<Passwd> {
    lines(path)
        .iter()
        .filter_map(|l| parse_passwd(l))
        .find(|p| p.uid == uid)
}

/// The group named `name`.
pub fn group_by_name(path: &Path, name: &str) -> Option<Group> {
    lines(path)
        .iter()
        .filter_map(|l| parse_group(l))
        .find(|g| g.name.eq_ignore_ascii_case(name))
}

/// The group with `gid`.
pub fn group_by_gid(path: &Path, gid: u32) -> Option<Group> {
    lines(path)
        .iter()
        .filter_map(|l| parse_group(l))
        .find(|g| g.gid == gid)
}

/// The groups `user` is a member of (supplementary groups).
pub fn groups_of(path: &Path, user: &str) -> Vec<Group> {
    lines(path)
        .iter()
        .filter_map(|l| parse_group(l))
        .filter(|g| g.members.iter().any(|m| m.eq_ignore_ascii_case(user)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn lines_and_lookups() {
        let tmp = std::env::temp_dir().join(format!("usher-nss-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let pw = tmp.join("passwd");
        let gr = tmp.join("group");
        std::fs::write(
            &pw,
            "ann@contoso.test:x:1879048192:1879048192:Ann:/home/ann@contoso.test:/bin/bash\nbroken line\n",
        )
        .unwrap();
        std::fs::write(
            &gr,
            "ann@contoso.test:x:1879048192:\nusher-admins:x:2147352576:ann@contoso.test\n",
        )
        .unwrap();
        let ann = user_by_name(&pw, "ANN@contoso.test").unwrap();
        assert_eq!((ann.uid, ann.gid), (0x7000_0000, 0x7000_0000));
        assert_eq!(user_by_uid(&pw, 0x7000_0000).unwrap().name, "ann@contoso.test");
        assert!(user_by_name(&pw, "bob@contoso.test").is_none());
        assert_eq!(
            group_by_gid(&gr, 2_147_352_576).unwrap().members,
            vec!["ann@contoso.test"]
        );
        assert_eq!(groups_of(&gr, "ann@contoso.test").len(), 1);
        assert!(user_by_name(&tmp.join("missing"), "ann@contoso.test").is_none());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
