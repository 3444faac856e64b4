//! Management groups (SPEC A1): the tree above subscriptions. The root group's id is the
//! tenant's id; every subscription and management group without another parent sits in it.
//! Roles assigned at a management group apply to everything below it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::Scope;
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, kinds};

/// Azure's limit: six levels below the root.
const MAX_DEPTH: usize = 6;

/// A stored management group (id: lower-cased group id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredMg {
    pub name: String,
    pub display_name: String,
    /// Lower-cased parent id; `None` is the root group.
    #[serde(default)]
    pub parent: Option<String>,
}

/// A management group's ARM id.
fn mg_id(name: &str) -> String {
    format!("/providers/Microsoft.Management/managementGroups/{name}")
}

fn valid_mg_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 90
        && !n.ends_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_().".contains(c))
}

fn not_found(name: &str) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!("The management group '{name}' was not found."),
    )
}

/// A management group's id from `details.parent.id` (a full id or a bare name).
fn parent_name(body: &Value) -> Option<String> {
    let raw = body
        .pointer("/properties/details/parent/id")
        .and_then(Value::as_str)?;
    Some(
        raw.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(raw)
            .to_ascii_lowercase(),
    )
}

impl Arm {
    pub(crate) async fn root_group_id(&self) -> ArmResult<String> {
        Ok(self.dir.tenant().await?.id.to_ascii_lowercase())
    }

    async fn load_mg(&self, name: &str) -> ArmResult<Option<StoredMg>> {
        let now = self.dir.clock().now_unix();
        Ok(self
            .dir
            .store()
            .get(kinds::MANAGEMENT_GROUP, &name.to_ascii_lowercase(), now)
            .await?
            .map(|r| r.decode())
            .transpose()?)
    }

    async fn all_mgs(&self) -> ArmResult<Vec<StoredMg>> {
        crate::list_all(&self.dir, kinds::MANAGEMENT_GROUP, "")
            .await?
            .iter()
            .map(|r| r.decode().map_err(Into::into))
            .collect()
    }

    fn mg_scope(name: &str) -> ArmResult<Scope> {
        if !valid_mg_name(name) {
            return Err(ArmError::new(
                400,
                "InvalidManagementGroupId",
                format!(
                    "The management group id '{name}' is not valid: 1-90 letters, digits, '-', '_', '(', ')' or '.', not ending in '.'."
                ),
            ));
        }
        Scope::parse(&mg_id(name)).map_err(|_| ArmError::internal())
    }

    async fn mg_json(&self, mg: &StoredMg, root: &str, expand_children: bool) -> ArmResult<Value> {
        let parent = mg
            .parent
            .clone()
            .or_else(|| (mg.name.to_ascii_lowercase() != root).then(|| root.to_owned()));
        let mut props = json!({
            "tenantId": root,
            "displayName": mg.display_name,
            "details": {"parent": parent.as_ref().map(|p| json!({"id": mg_id(p), "name": p}))},
        });
        if expand_children {
            let key = mg.name.to_ascii_lowercase();
            let is_root = key == root;
            let mut children: Vec<Value> = self
                .all_mgs()
                .await?
                .into_iter()
                .filter(|c| c.parent.as_deref() == Some(key.as_str()) || (is_root && c.parent.is_none()))
                .map(|c| json!({"type": "Microsoft.Management/managementGroups", "id": mg_id(&c.name), "name": c.name, "displayName": c.display_name}))
                .collect();
            for (sub, parent) in self.subscription_parents().await? {
                if parent.as_deref() == Some(key.as_str()) || (is_root && parent.is_none()) {
                    children.push(
                        json!({"type": "/subscriptions", "id": format!("/subscriptions/{sub}"), "name": sub}),
                    );
                }
            }
            if let Some(m) = props.as_object_mut() {
                m.insert("children".into(), Value::Array(children));
            }
        }
        Ok(json!({
            "id": mg_id(&mg.name),
            "type": "Microsoft.Management/managementGroups",
            "name": mg.name,
            "properties": props,
        }))
    }

    fn root_mg(root: &str) -> StoredMg {
        StoredMg {
            name: root.to_owned(),
            display_name: "Tenant Root Group".into(),
            parent: None,
        }
    }

    /// Every subscription with its management group (`None`: the root).
    pub(crate) async fn subscription_parents(&self) -> ArmResult<Vec<(String, Option<String>)>> {
        Ok(crate::list_all(&self.dir, kinds::SUBSCRIPTION, "")
            .await?
            .into_iter()
            .map(|r| {
                let parent = r.data["managementGroup"].as_str().map(str::to_owned);
                (r.id, parent)
            })
            .collect())
    }

    /// Loads the tree into the engine.
    pub(crate) async fn load_hierarchy(&self) -> ArmResult<()> {
        let root = self.root_group_id().await?;
        let mgs = self.all_mgs().await?;
        let subs = self.subscription_parents().await?;
        let mut snap = self.snapshot.write().map_err(|_| ArmError::internal())?;
        snap.set_root_management_group(&root);
        for mg in &mgs {
            snap.set_management_group_parent(&mg.name, mg.parent.as_deref());
        }
        for (sub, parent) in &subs {
            snap.set_subscription_parent(sub, parent.as_deref());
        }
        Ok(())
    }

    /// The depth of `name` below the root (root: 0), and whether `ancestor` is on its path up.
    async fn depth_and_path(&self, name: &str, root: &str) -> ArmResult<(usize, Vec<String>)> {
        let mut path = vec![];
        let mut cur = name.to_ascii_lowercase();
        for depth in 0..=MAX_DEPTH + 1 {
            if cur == root {
                return Ok((depth, path));
            }
            path.push(cur.clone());
            cur = match self.load_mg(&cur).await? {
                Some(mg) => mg.parent.unwrap_or_else(|| root.to_owned()),
                None => return Err(not_found(&cur)),
            };
        }
        Err(ArmError::internal())
    }

    /// How many levels of groups sit below `name` (0 for a leaf).
    async fn subtree_height(&self, name: &str) -> ArmResult<usize> {
        let all = self.all_mgs().await?;
        let mut level: Vec<String> = vec![name.to_ascii_lowercase()];
        for height in 0..=MAX_DEPTH + 1 {
            let next: Vec<String> = all
                .iter()
                .filter(|g| g.parent.as_ref().is_some_and(|p| level.contains(p)))
                .map(|g| g.name.to_ascii_lowercase())
                .collect();
            if next.is_empty() {
                return Ok(height);
            }
            level = next;
        }
        Ok(MAX_DEPTH + 1)
    }

    /// Creates or updates a management group (`managementGroups/write` at its parent).
    pub async fn put_management_group(
        &self,
        caller: &str,
        name: &str,
        body: &Value,
    ) -> ArmResult<(bool, Value)> {
        let scope = Self::mg_scope(name)?;
        let root = self.root_group_id().await?;
        let key = name.to_ascii_lowercase();
        if key == root {
            return Err(ArmError::new(
                400,
                "BadRequest",
                "The root management group is the tenant's own; it cannot be changed.",
            ));
        }
        let existing = self.load_mg(&key).await?;
        // Without a parent in the body an existing group stays where it is.
        let current_parent = existing
            .as_ref()
            .map(|e| e.parent.clone().unwrap_or_else(|| root.clone()));
        let parent = parent_name(body)
            .or_else(|| current_parent.clone())
            .unwrap_or_else(|| root.clone());
        let parent_scope = Self::mg_scope(&parent)?;
        self.authorize(
            caller,
            &parent_scope,
            "Microsoft.Management/managementGroups/write",
        )
        .await?;
        if existing.is_some() {
            self.authorize(caller, &scope, "Microsoft.Management/managementGroups/write")
                .await?;
        }
        // A move changes who inherits access to the whole subtree: as Azure, it needs the right
        // to assign roles on the group and write at the old parent too.
        if let Some(old) = current_parent.as_ref().filter(|p| **p != parent) {
            self.authorize(caller, &scope, "Microsoft.Authorization/roleAssignments/write")
                .await?;
            self.authorize(
                caller,
                &Self::mg_scope(old)?,
                "Microsoft.Management/managementGroups/write",
            )
            .await?;
        }
        let (parent_depth, parent_path) = self.depth_and_path(&parent, &root).await?;
        if parent_path.contains(&key) || parent == key {
            return Err(ArmError::new(
                400,
                "InvalidHierarchy",
                format!(
                    "'{parent}' is '{name}' or below it; a management group cannot be moved under itself."
                ),
            ));
        }
        if parent_depth + 1 + self.subtree_height(&key).await? > MAX_DEPTH {
            return Err(ArmError::new(
                400,
                "MaxDepthExceeded",
                format!("Management groups nest at most {MAX_DEPTH} levels below the root."),
            ));
        }
        let display_name = body
            .pointer("/properties/displayName")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| existing.as_ref().map(|e| e.display_name.clone()))
            .unwrap_or_else(|| name.to_owned());
        let mg = StoredMg {
            name: existing
                .as_ref()
                .map_or_else(|| name.to_owned(), |e| e.name.clone()),
            display_name,
            parent: (parent != root).then_some(parent),
        };
        let now = self.dir.clock().now_unix();
        let store = self.dir.store();
        let created = match store.get(kinds::MANAGEMENT_GROUP, &key, now).await? {
            Some(mut rec) => {
                rec.data = serde_json::to_value(&mg).map_err(|_| ArmError::internal())?;
                store.update(rec).await.map_err(|e| match e {
                    StoreError::Conflict { .. } => ArmError::new(
                        409,
                        "Conflict",
                        "The management group was changed concurrently; retry.",
                    ),
                    other => other.into(),
                })?;
                false
            }
            None => {
                store
                    .insert(Record::from_value(kinds::MANAGEMENT_GROUP, &key, &mg)?)
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict { .. } => ArmError::new(
                            409,
                            "Conflict",
                            "The management group was created concurrently; retry.",
                        ),
                        other => other.into(),
                    })?;
                true
            }
        };
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .set_management_group_parent(&key, mg.parent.as_deref());
        self.audit(
            caller,
            if created {
                "Create management group"
            } else {
                "Update management group"
            },
            "ResourceManagement",
            (&mg_id(&mg.name), &mg.display_name, "ManagementGroup"),
            json!({"parent": mg.parent}),
        )
        .await?;
        Ok((created, self.mg_json(&mg, &root, false).await?))
    }

    /// Reads a management group (`managementGroups/read`), with its children when asked.
    pub async fn get_management_group(
        &self,
        caller: &str,
        name: &str,
        expand_children: bool,
    ) -> ArmResult<Value> {
        let scope = Self::mg_scope(name)?;
        self.authorize(caller, &scope, "Microsoft.Management/managementGroups/read")
            .await?;
        let root = self.root_group_id().await?;
        let mg = if name.eq_ignore_ascii_case(&root) {
            Self::root_mg(&root)
        } else {
            self.load_mg(name).await?.ok_or_else(|| not_found(name))?
        };
        self.mg_json(&mg, &root, expand_children).await
    }

    /// Lists the management groups the caller may read (the root first).
    pub async fn list_management_groups(&self, caller: &str) -> ArmResult<Vec<Value>> {
        let root = self.root_group_id().await?;
        let mut all = vec![Self::root_mg(&root)];
        all.extend(self.all_mgs().await?);
        let mut out = Vec::new();
        for mg in &all {
            let scope = Self::mg_scope(&mg.name)?;
            if self
                .authorize(caller, &scope, "Microsoft.Management/managementGroups/read")
                .await
                .is_ok()
            {
                out.push(self.mg_json(mg, &root, false).await?);
            }
        }
        Ok(out)
    }

    /// Deletes an empty management group (`managementGroups/delete`); returns whether it existed.
    pub async fn delete_management_group(&self, caller: &str, name: &str) -> ArmResult<bool> {
        let scope = Self::mg_scope(name)?;
        self.authorize(caller, &scope, "Microsoft.Management/managementGroups/delete")
            .await?;
        let root = self.root_group_id().await?;
        let key = name.to_ascii_lowercase();
        if key == root {
            return Err(ArmError::new(
                400,
                "BadRequest",
                "The root management group cannot be deleted.",
            ));
        }
        let Some(mg) = self.load_mg(&key).await? else {
            return Ok(false);
        };
        let child_groups = self
            .all_mgs()
            .await?
            .iter()
            .filter(|c| c.parent.as_deref() == Some(key.as_str()))
            .count();
        let child_subs = self
            .subscription_parents()
            .await?
            .iter()
            .filter(|(_, p)| p.as_deref() == Some(key.as_str()))
            .count();
        if child_groups + child_subs > 0 {
            return Err(ArmError::new(
                409,
                "ManagementGroupNotEmpty",
                format!(
                    "The management group '{name}' still holds {child_groups} management group(s) and {child_subs} subscription(s); move them first."
                ),
            ));
        }
        self.dir
            .store()
            .delete(kinds::MANAGEMENT_GROUP, &key, None)
            .await?;
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .set_management_group_parent(&key, None);
        let assignments = self.remove_assignments_under(&scope).await?;
        self.audit(
            caller,
            "Delete management group",
            "ResourceManagement",
            (&mg_id(&mg.name), &mg.display_name, "ManagementGroup"),
            json!({"roleAssignmentsRemoved": assignments}),
        )
        .await?;
        Ok(true)
    }

    /// Moves a subscription into management group `name` (`None`: back to the root). The caller
    /// needs `managementGroups/subscriptions/write` at the group and the right to assign roles
    /// on the subscription (moving it changes who inherits access to it).
    pub async fn move_subscription(&self, caller: &str, name: Option<&str>, sub: &str) -> ArmResult<Value> {
        let root = self.root_group_id().await?;
        let target = name.map(str::to_ascii_lowercase).filter(|n| *n != root);
        let target_scope = Self::mg_scope(target.as_deref().unwrap_or(&root))?;
        self.authorize(
            caller,
            &target_scope,
            "Microsoft.Management/managementGroups/subscriptions/write",
        )
        .await?;
        let sub_scope = Scope::parse(&format!("/subscriptions/{sub}"))
            .map_err(|_| ArmError::subscription_not_found(sub))?;
        self.authorize(
            caller,
            &sub_scope,
            "Microsoft.Authorization/roleAssignments/write",
        )
        .await?;
        if let Some(t) = &target
            && self.load_mg(t).await?.is_none()
        {
            return Err(not_found(t));
        }
        let now = self.dir.clock().now_unix();
        let mut rec = self
            .dir
            .store()
            .get(kinds::SUBSCRIPTION, &sub.to_ascii_lowercase(), now)
            .await?
            .ok_or_else(|| ArmError::subscription_not_found(sub))?;
        // Taking a subscription away from its group needs the right at that group too.
        let current = rec.data["managementGroup"].as_str().unwrap_or(&root).to_owned();
        if Some(current.as_str()) != target.as_deref().or(Some(root.as_str())) {
            self.authorize(
                caller,
                &Self::mg_scope(&current)?,
                "Microsoft.Management/managementGroups/subscriptions/write",
            )
            .await?;
        }
        if let Some(m) = rec.data.as_object_mut() {
            match &target {
                Some(t) => m.insert("managementGroup".into(), Value::String(t.clone())),
                None => m.remove("managementGroup"),
            };
        }
        self.dir.store().update(rec).await.map_err(|e| match e {
            StoreError::Conflict { .. } => ArmError::new(
                409,
                "Conflict",
                "The subscription was changed concurrently; retry.",
            ),
            other => other.into(),
        })?;
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .set_subscription_parent(sub, target.as_deref());
        let group = target.clone().unwrap_or_else(|| root.clone());
        self.audit(
            caller,
            "Move subscription",
            "ResourceManagement",
            (&format!("/subscriptions/{sub}"), sub, "Subscription"),
            json!({"managementGroup": group}),
        )
        .await?;
        Ok(json!({
            "id": format!("{}/subscriptions/{sub}", mg_id(&group)),
            "type": "Microsoft.Management/managementGroups/subscriptions",
            "name": sub,
            "properties": {"tenant": root, "parent": {"id": mg_id(&group)}, "state": "Active"},
        }))
    }
}
