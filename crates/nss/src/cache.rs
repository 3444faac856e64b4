//! The agent's NSS files, parsed. Pure: no FFI here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

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

/// What identifies one version of a file: the agent replaces the files atomically (a new inode),
/// so a change is seen by one `stat` per lookup.
type Stamp = (u64, u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// The users file, indexed by name (lower case) and UID.
struct UserIndex {
    path: std::path::PathBuf,
    stamp: Stamp,
    users: Vec<Passwd>,
    by_name: HashMap<String, usize>,
    by_uid: HashMap<u32, usize>,
}

impl UserIndex {
    fn load(path: &Path, stamp: Stamp) -> Self {
        let users: Vec<Passwd> = lines(path).iter().filter_map(|l| parse_passwd(l)).collect();
        let mut by_name = HashMap::with_capacity(users.len());
        let mut by_uid = HashMap::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            by_name.entry(u.name.to_ascii_lowercase()).or_insert(i);
            by_uid.entry(u.uid).or_insert(i);
        }
        Self {
            path: path.to_path_buf(),
            stamp,
            users,
            by_name,
            by_uid,
        }
    }
}

/// The groups file, indexed by name, GID and member.
struct GroupIndex {
    path: std::path::PathBuf,
    stamp: Stamp,
    groups: Vec<Group>,
    by_name: HashMap<String, usize>,
    by_gid: HashMap<u32, usize>,
    by_member: HashMap<String, Vec<usize>>,
}

impl GroupIndex {
    fn load(path: &Path, stamp: Stamp) -> Self {
        let groups: Vec<Group> = lines(path).iter().filter_map(|l| parse_group(l)).collect();
        let mut by_name = HashMap::with_capacity(groups.len());
        let mut by_gid = HashMap::with_capacity(groups.len());
        let mut by_member: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            by_name.entry(g.name.to_ascii_lowercase()).or_insert(i);
            by_gid.entry(g.gid).or_insert(i);
            for m in &g.members {
                by_member.entry(m.to_ascii_lowercase()).or_default().push(i);
            }
        }
        Self {
            path: path.to_path_buf(),
            stamp,
            groups,
            by_name,
            by_gid,
            by_member,
        }
    }
}

static USERS: Mutex<Option<UserIndex>> = Mutex::new(None);
static GROUPS: Mutex<Option<GroupIndex>> = Mutex::new(None);

/// Runs `f` on the current index of the users file (built again when the file changed); `None`
/// when the file is missing. Negative answers are as cheap as positive ones.
fn with_users<R>(path: &Path, f: impl FnOnce(&UserIndex) -> R) -> Option<R> {
    let st = stamp(path)?;
    let mut guard = USERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.as_ref().is_none_or(|i| i.stamp != st || i.path != path) {
        *guard = Some(UserIndex::load(path, st));
    }
    guard.as_ref().map(f)
}

fn with_groups<R>(path: &Path, f: impl FnOnce(&GroupIndex) -> R) -> Option<R> {
    let st = stamp(path)?;
    let mut guard = GROUPS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.as_ref().is_none_or(|i| i.stamp != st || i.path != path) {
        *guard = Some(GroupIndex::load(path, st));
    }
    guard.as_ref().map(f)
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

/// The user named `name` (case-insensitively); `USHER\\user@domain` names `user@domain` (the
/// entry keeps its own name, so the login proceeds as `user@domain`).
pub fn user_by_name(path: &Path, name: &str) -> Option<Passwd> {
    let name = strip_domain_prefix(name).to_ascii_lowercase();
    with_users(path, |i| i.by_name.get(&name).map(|&n| i.users[n].clone())).flatten()
}

/// The user with `uid`.
pub fn user_by_uid(path: &Path, uid: u32) -> Option<Passwd> {
    with_users(path, |i| i.by_uid.get(&uid).map(|&n| i.users[n].clone())).flatten()
}

/// The group named `name`.
pub fn group_by_name(path: &Path, name: &str) -> Option<Group> {
    let name = name.to_ascii_lowercase();
    with_groups(path, |i| i.by_name.get(&name).map(|&n| i.groups[n].clone())).flatten()
}

/// The group with `gid`.
pub fn group_by_gid(path: &Path, gid: u32) -> Option<Group> {
    with_groups(path, |i| i.by_gid.get(&gid).map(|&n| i.groups[n].clone())).flatten()
}

/// The GIDs of the groups `user` is a member of (what `initgroups` needs: no member lists are
/// copied, however large `usher-admins` is).
pub fn gids_of(path: &Path, user: &str) -> Vec<u32> {
    let user = user.to_ascii_lowercase();
    with_groups(path, |i| {
        i.by_member
            .get(&user)
            .map(|v| v.iter().map(|&n| i.groups[n].gid).collect())
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// The groups `user` is a member of (supplementary groups).
pub fn groups_of(path: &Path, user: &str) -> Vec<Group> {
    let user = user.to_ascii_lowercase();
    with_groups(path, |i| {
        i.by_member
            .get(&user)
            .map(|v| v.iter().map(|&n| i.groups[n].clone()).collect())
            .unwrap_or_default()
    })
    .unwrap_or_default()
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
        assert_eq!(gids_of(&gr, "ANN@contoso.test"), vec![2_147_352_576]);
        assert!(user_by_name(&tmp.join("missing"), "ann@contoso.test").is_none());
        // The password path's USHER\ prefix names the same user.
        assert_eq!(
            user_by_name(&pw, "USHER\\ann@contoso.test").unwrap().name,
            "ann@contoso.test"
        );
        assert!(user_by_name(&pw, "OTHER\\ann@contoso.test").is_none());
        // The agent replaces the file (rename): the next lookup sees the new content.
        let next = tmp.join("passwd.new");
        std::fs::write(
            &next,
            "bob@contoso.test:x:1879048193:1879048193:Bob:/home/bob@contoso.test:/bin/bash\n",
        )
        .unwrap();
        std::fs::rename(&next, &pw).unwrap();
        assert!(user_by_name(&pw, "ann@contoso.test").is_none(), "ann is gone");
        assert_eq!(user_by_uid(&pw, 0x7000_0001).unwrap().name, "bob@contoso.test");
        std::fs::remove_file(&pw).unwrap();
        assert!(user_by_uid(&pw, 0x7000_0001).is_none(), "no file, no users");
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
