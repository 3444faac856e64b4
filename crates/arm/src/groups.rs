//! Subscriptions and resource groups.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::Scope;
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, kinds, shapes};

/// A stored resource group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredGroup {
    subscription_id: String,
    pub name: String,
    location: String,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
}

fn group_json(g: &StoredGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}", g.subscription_id, g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "tags": g.tags,
        "managedBy": Value::Null,
        "properties": {"provisioningState": "Succeeded"},
    })
}

/// Resource-group names: 1-90 of letters, digits, `_ - . ( )`, not ending in a period.
fn valid_group_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 90
        && !n.ends_with('.')
        && n.chars().all(|c| c.is_alphanumeric() || "_-.()".contains(c))
}

impl Arm {
    pub(crate) async fn subscription_record(&self, id: &str) -> ArmResult<Value> {
        let now = self.dir.clock().now_unix();
        let rec = self
            .dir
            .store()
            .get(kinds::SUBSCRIPTION, &id.to_ascii_lowercase(), now)
            .await?;
        rec.map(|r| r.data)
            .ok_or_else(|| ArmError::subscription_not_found(id))
    }

    /// Subscriptions the caller holds any role in (at, above or below the subscription).
    pub async fn list_subscriptions(&self, caller: &str) -> ArmResult<Vec<Value>> {
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for rec in crate::list_all(&self.dir, kinds::SUBSCRIPTION, "").await? {
            let scope =
                Scope::parse(&format!("/subscriptions/{}", rec.id)).map_err(|_| ArmError::internal())?;
            if self.snapshot()?.has_any_role_around(&refs, &scope) {
                out.push(self.subscription_json(&rec.data));
            }
        }
        Ok(out)
    }

    fn subscription_json(&self, data: &Value) -> Value {
        let id = data["subscriptionId"].as_str().unwrap_or_default();
        shapes::subscription(
            id,
            data["displayName"].as_str().unwrap_or_default(),
            data["tenantId"].as_str().unwrap_or_default(),
        )
    }

    /// One subscription (the caller must hold a role around it; else it does not exist for them).
    pub async fn get_subscription(&self, caller: &str, id: &str) -> ArmResult<Value> {
        let data = self.subscription_record(id).await?;
        let scope = Scope::parse(&format!("/subscriptions/{id}"))
            .map_err(|_| ArmError::subscription_not_found(id))?;
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        if !self.snapshot()?.has_any_role_around(&refs, &scope) {
            return Err(ArmError::subscription_not_found(id));
        }
        Ok(self.subscription_json(&data))
    }

    pub(crate) fn group_scope(sub: &str, name: &str) -> ArmResult<Scope> {
        if !valid_group_name(name) {
            return Err(ArmError::new(
                400,
                "InvalidResourceGroup",
                format!(
                    "The provided resource group name '{name}' has these invalid characters or length: use 1-90 letters, digits, underscores, hyphens, periods (not at the end) and parentheses."
                ),
            ));
        }
        Scope::parse(&format!("/subscriptions/{sub}/resourceGroups/{name}"))
            .map_err(|e| ArmError::new(400, "InvalidResourceGroup", e.to_string()))
    }

    /// Creates or updates a resource group (`resourceGroups/write`).
    pub async fn put_group(
        &self,
        caller: &str,
        sub: &str,
        name: &str,
        body: &Value,
    ) -> ArmResult<(bool, Value)> {
        self.subscription_record(sub).await?;
        let scope = Self::group_scope(sub, name)?;
        self.authorize(
            caller,
            &scope,
            "Microsoft.Resources/subscriptions/resourceGroups/write",
        )
        .await?;
        let location = crate::shapes::required_location(body)?;
        let tags = body
            .get("tags")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let now = self.dir.clock().now_unix();
        let store = self.dir.store();
        let id = scope.as_str().to_owned();
        let existing = store.get(kinds::RESOURCE_GROUP, &id, now).await?;
        let (created, group) = match existing {
            Some(mut rec) => {
                let mut g: StoredGroup = rec.decode()?;
                if g.location != location {
                    return Err(ArmError::new(
                        409,
                        "InvalidResourceGroupLocation",
                        format!(
                            "Invalid resource group location '{location}'. The Resource group already exists in location '{}' in resource group '{}'. A resource group cannot be moved to another location.",
                            g.location, g.name
                        ),
                    ));
                }
                g.tags = tags;
                rec.data = serde_json::to_value(&g).map_err(|_| ArmError::internal())?;
                store.update(rec).await?;
                (false, g)
            }
            None => {
                let g = StoredGroup {
                    subscription_id: sub.to_ascii_lowercase(),
                    name: name.to_owned(),
                    location,
                    tags,
                };
                match store
                    .insert(Record::from_value(kinds::RESOURCE_GROUP, &id, &g)?)
                    .await
                {
                    Ok(_) => {}
                    Err(StoreError::Conflict { .. }) => {
                        return Err(ArmError::new(
                            409,
                            "Conflict",
                            "The resource group was created concurrently; retry.",
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
                (true, g)
            }
        };
        self.audit(
            caller,
            if created {
                "Create resource group"
            } else {
                "Update resource group"
            },
            "ResourceManagement",
            (scope.as_str(), &group.name, "ResourceGroup"),
            json!({"location": group.location}),
        )
        .await?;
        Ok((created, group_json(&group)))
    }

    /// A resource group's record (no authorisation: callers check first); 404 when missing.
    pub(crate) async fn group_record(&self, sub: &str, name: &str) -> ArmResult<StoredGroup> {
        self.subscription_record(sub).await?;
        let scope = Self::group_scope(sub, name)?;
        let now = self.dir.clock().now_unix();
        self.dir
            .store()
            .get(kinds::RESOURCE_GROUP, scope.as_str(), now)
            .await?
            .ok_or_else(|| ArmError::resource_group_not_found(name))?
            .decode()
            .map_err(Into::into)
    }

    /// Reads a resource group (`resourceGroups/read`).
    pub async fn get_group(&self, caller: &str, sub: &str, name: &str) -> ArmResult<Value> {
        let scope = Self::group_scope(sub, name)?;
        self.authorize(
            caller,
            &scope,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        )
        .await?;
        let now = self.dir.clock().now_unix();
        let rec = self
            .dir
            .store()
            .get(kinds::RESOURCE_GROUP, scope.as_str(), now)
            .await?;
        let g: StoredGroup = rec
            .ok_or_else(|| ArmError::resource_group_not_found(name))?
            .decode()?;
        Ok(group_json(&g))
    }

    /// Lists the resource groups of a subscription the caller may read.
    pub async fn list_groups(&self, caller: &str, sub: &str) -> ArmResult<Vec<Value>> {
        self.subscription_record(sub).await?;
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        let prefix = format!("/subscriptions/{}/resourcegroups/", sub.to_ascii_lowercase());
        let mut out = Vec::new();
        for rec in crate::list_all(&self.dir, kinds::RESOURCE_GROUP, &prefix).await? {
            let scope = Scope::parse(&rec.id).map_err(|_| ArmError::internal())?;
            let readable = self
                .snapshot()?
                .check(
                    &refs,
                    &scope,
                    usher_authz::ActionKind::Action,
                    "Microsoft.Resources/subscriptions/resourceGroups/read",
                )
                .allowed;
            if readable {
                out.push(group_json(&rec.decode()?));
            }
        }
        Ok(out)
    }

    /// Deletes a resource group (`resourceGroups/delete`) and every VM in it, as Azure does;
    /// returns whether it existed.
    pub async fn delete_group(&self, caller: &str, sub: &str, name: &str) -> ArmResult<bool> {
        let scope = Self::group_scope(sub, name)?;
        self.authorize(
            caller,
            &scope,
            "Microsoft.Resources/subscriptions/resourceGroups/delete",
        )
        .await?;
        let prefix = format!("{}/providers/", scope.as_str());
        let mut removed = Vec::new();
        for rec in crate::list_all(&self.dir, kinds::VIRTUAL_MACHINE, &prefix).await? {
            let vm_scope = Scope::parse(&rec.id).map_err(|_| ArmError::internal())?;
            if let Some(vm) = self.remove_vm(&vm_scope).await? {
                removed.push(vm.name);
            }
        }
        let existed = self
            .dir
            .store()
            .delete(kinds::RESOURCE_GROUP, scope.as_str(), None)
            .await?;
        if existed {
            let assignments = self.remove_assignments_under(&scope).await?;
            self.audit(
                caller,
                "Delete resource group",
                "ResourceManagement",
                (scope.as_str(), name, "ResourceGroup"),
                json!({"virtualMachines": removed, "roleAssignmentsRemoved": assignments}),
            )
            .await?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn group_names() {
        assert!(super::valid_group_name("myResourceGroup"));
        assert!(super::valid_group_name("rg_1-(a).b"));
        assert!(!super::valid_group_name(""));
        assert!(!super::valid_group_name("ends."));
        assert!(!super::valid_group_name("has space"));
        assert!(!super::valid_group_name(&"a".repeat(91)));
    }
}
