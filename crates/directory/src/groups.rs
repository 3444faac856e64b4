//! Groups with transitive membership (SPEC D3).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use usher_store::Record;

use crate::model::{DirectoryObject, Group};
use crate::{DirResult, Directory, DirectoryError, kinds};

/// How long the cached group list serves reads, in seconds. Changes made through this process
/// invalidate it at once; this bounds how stale another replica's changes can be.
const GROUP_CACHE_SECS: i64 = 2;

/// The group list, cached for membership computations (each login decision needs the caller's
/// transitive groups).
#[derive(Debug, Default, Clone)]
pub(crate) struct GroupCache(Arc<RwLock<Option<CachedGroups>>>);

/// The group list with, for each member id, the groups that contain it directly.
#[derive(Debug)]
pub(crate) struct GroupIndex {
    groups: Arc<Vec<Group>>,
    parents: HashMap<String, Vec<usize>>,
}

impl GroupIndex {
    fn new(groups: Arc<Vec<Group>>) -> Self {
        let mut parents: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            for m in &g.members {
                parents.entry(m.clone()).or_default().push(i);
            }
        }
        Self { groups, parents }
    }

    /// The groups containing `object_id` directly or transitively, as indexes into `groups`, in
    /// breadth-first order (each once, so cycles end).
    fn closure(&self, object_id: &str) -> Vec<usize> {
        let mut seen = vec![false; self.groups.len()];
        let mut out = Vec::new();
        let mut queue = VecDeque::from([object_id.to_lowercase()]);
        while let Some(id) = queue.pop_front() {
            for &i in self.parents.get(&id).into_iter().flatten() {
                if !seen[i] {
                    seen[i] = true;
                    out.push(i);
                    queue.push_back(self.groups[i].id.clone());
                }
            }
        }
        out
    }
}

/// The cached index and when it was read.
type CachedGroups = (Arc<GroupIndex>, i64);

impl GroupCache {
    fn get(&self, now: i64) -> Option<Arc<GroupIndex>> {
        let guard = self.0.read().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| now - at < GROUP_CACHE_SECS)
            .map(|(g, _)| g.clone())
    }
    fn put(&self, index: Arc<GroupIndex>, now: i64) {
        if let Ok(mut g) = self.0.write() {
            *g = Some((index, now));
        }
    }
    pub(crate) fn invalidate(&self) {
        if let Ok(mut g) = self.0.write() {
            *g = None;
        }
    }
}

impl Directory {
    /// All groups and their membership index, through the short-lived cache.
    async fn group_index(&self) -> DirResult<Arc<GroupIndex>> {
        let now = self.now();
        if let Some(g) = self.group_cache.get(now) {
            return Ok(g);
        }
        let index = Arc::new(GroupIndex::new(Arc::new(
            self.list_all::<Group>(kinds::GROUP).await?,
        )));
        self.group_cache.put(index.clone(), now);
        Ok(index)
    }

    /// The ids of the groups containing `object_id` directly or transitively, and the directory
    /// roles those groups grant (bounded by the group count, cycles included).
    pub async fn transitive_memberships(&self, object_id: &str) -> DirResult<(Vec<String>, Vec<String>)> {
        let index = self.group_index().await?;
        let mut ids = Vec::new();
        let mut roles = Vec::new();
        for i in index.closure(object_id) {
            let g = &index.groups[i];
            ids.push(g.id.clone());
            roles.extend(g.directory_roles.iter().cloned());
        }
        Ok((ids, roles))
    }

    /// Creates a group.
    pub async fn create_group(
        &self,
        display_name: &str,
        mail_nickname: Option<&str>,
        description: Option<&str>,
        security_enabled: bool,
    ) -> DirResult<Group> {
        if display_name.trim().is_empty() {
            return Err(DirectoryError::Invalid("displayName must not be empty".into()));
        }
        let group = Group {
            id: self.new_id(),
            display_name: display_name.trim().to_owned(),
            mail_nickname: mail_nickname.map_or_else(|| display_name.replace(' ', ""), str::to_owned),
            description: description.map(str::to_owned),
            security_enabled,
            members: vec![],
            directory_roles: vec![],
            created_at: self.now(),
        };
        self.store
            .insert(Record::from_value(kinds::GROUP, &group.id, &group)?)
            .await?;
        Ok(group)
    }

    /// A group by object id.
    pub async fn get_group(&self, id: &str) -> DirResult<Group> {
        let rec = self
            .store
            .get(kinds::GROUP, &id.to_lowercase(), self.now())
            .await?;
        rec.map(|r| r.decode())
            .transpose()?
            .ok_or_else(|| DirectoryError::NotFound {
                what: "group",
                id: id.to_owned(),
            })
    }

    /// All groups.
    pub async fn list_groups(&self) -> DirResult<Vec<Group>> {
        self.list_all(kinds::GROUP).await
    }

    /// Deletes a group and removes it from its parents.
    pub async fn delete_group(&self, id: &str) -> DirResult<Group> {
        let group = self.get_group(id).await?;
        self.remove_from_all_groups(&group.id).await?;
        self.store.delete(kinds::GROUP, &group.id, None).await?;
        self.group_cache.invalidate();
        self.changed();
        Ok(group)
    }

    /// Any directory object by id.
    pub async fn get_object(&self, id: &str) -> DirResult<DirectoryObject> {
        let id = id.to_lowercase();
        let now = self.now();
        if let Some(r) = self.store.get(kinds::USER, &id, now).await? {
            return Ok(DirectoryObject::User(r.decode()?));
        }
        if let Some(r) = self.store.get(kinds::GROUP, &id, now).await? {
            return Ok(DirectoryObject::Group(r.decode()?));
        }
        if let Some(r) = self.store.get(kinds::SERVICE_PRINCIPAL, &id, now).await? {
            return Ok(DirectoryObject::ServicePrincipal(r.decode()?));
        }
        Err(DirectoryError::NotFound {
            what: "directory object",
            id,
        })
    }

    /// Adds a member (user, group or service principal). Refuses loops and duplicates.
    pub async fn add_member(&self, group_id: &str, member_id: &str) -> DirResult<Group> {
        let group = self.get_group(group_id).await?;
        let member = self.get_object(member_id).await?;
        let member_id = member.id().to_owned();
        if member_id == group.id {
            return Err(DirectoryError::Invalid(
                "a group cannot be a member of itself".into(),
            ));
        }
        if let DirectoryObject::Group(_) = member {
            // Adding G under group would loop if group is already (transitively) under G.
            let under_member = self.transitive_members(&member_id).await?;
            if under_member.iter().any(|o| o.id() == group.id) {
                return Err(DirectoryError::Invalid(format!(
                    "adding group `{member_id}` would create a membership loop"
                )));
            }
        }
        self.modify::<Group, _>(kinds::GROUP, &group.id, |g| {
            if g.members.contains(&member_id) {
                return Err(DirectoryError::AlreadyExists(
                    "one or more added object references already exist for the following modified properties: 'members'".into(),
                ));
            }
            g.members.push(member_id.clone());
            Ok(None)
        })
        .await
        .inspect(|_| self.group_cache.invalidate())
    }

    /// Removes a direct member.
    pub async fn remove_member(&self, group_id: &str, member_id: &str) -> DirResult<Group> {
        let group = self.get_group(group_id).await?;
        let member_id = member_id.to_lowercase();
        self.modify::<Group, _>(kinds::GROUP, &group.id, |g| {
            let before = g.members.len();
            g.members.retain(|m| *m != member_id);
            if g.members.len() == before {
                return Err(DirectoryError::NotFound {
                    what: "member",
                    id: member_id.clone(),
                });
            }
            Ok(None)
        })
        .await
        .inspect(|_| self.group_cache.invalidate())
    }

    /// Direct members.
    pub async fn members(&self, group_id: &str) -> DirResult<Vec<DirectoryObject>> {
        let group = self.get_group(group_id).await?;
        let mut out = Vec::new();
        for m in &group.members {
            match self.get_object(m).await {
                Ok(o) => out.push(o),
                Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Members of a group and of all groups under it (each object once).
    pub async fn transitive_members(&self, group_id: &str) -> DirResult<Vec<DirectoryObject>> {
        let root = self.get_group(group_id).await?;
        let groups: HashMap<String, Group> = self
            .list_groups()
            .await?
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<String> = root.members.into_iter().collect();
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(g) = groups.get(&id) {
                queue.extend(g.members.iter().cloned());
                out.push(DirectoryObject::Group(g.clone()));
            } else {
                match self.get_object(&id).await {
                    Ok(o) => out.push(o),
                    Err(DirectoryError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Groups that `object_id` is a direct member of.
    pub async fn member_of(&self, object_id: &str) -> DirResult<Vec<Group>> {
        let id = object_id.to_lowercase();
        Ok(self
            .list_groups()
            .await?
            .into_iter()
            .filter(|g| g.members.contains(&id))
            .collect())
    }

    /// Groups that `object_id` is a member of, directly or through other groups.
    pub async fn transitive_member_of(&self, object_id: &str) -> DirResult<Vec<Group>> {
        let index = self.group_index().await?;
        Ok(index
            .closure(object_id)
            .into_iter()
            .map(|i| index.groups[i].clone())
            .collect())
    }

    pub(crate) async fn remove_from_all_groups(&self, object_id: &str) -> DirResult<()> {
        for g in self.member_of(object_id).await? {
            match self.remove_member(&g.id, object_id).await {
                Ok(_) | Err(DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
