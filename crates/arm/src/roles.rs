//! Role definitions (SPEC R1): the built-ins, and custom roles with their assignable scopes.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::{BUILTIN_ROLES, Permission, RoleDefinition, Scope, role_ids};
use usher_directory::Directory;
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, kinds, shapes};

/// Built-in roles' descriptions, as Azure words them.
fn builtin_description(id: &str) -> &'static str {
    match id {
        role_ids::OWNER => {
            "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC."
        }
        role_ids::CONTRIBUTOR => {
            "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries."
        }
        role_ids::READER => "View all resources, but does not allow you to make any changes.",
        role_ids::USER_ACCESS_ADMINISTRATOR => "Lets you manage user access to Azure resources.",
        role_ids::VM_ADMINISTRATOR_LOGIN => "View Virtual Machines in the portal and login as administrator",
        role_ids::VM_USER_LOGIN => "View Virtual Machines in the portal and login as a regular user.",
        _ => "",
    }
}

/// A stored custom role (id: its GUID, lower case).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRole {
    id: String,
    role_name: String,
    #[serde(default)]
    description: String,
    permissions: Vec<StoredPermission>,
    assignable_scopes: Vec<String>,
    #[serde(default)]
    created_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct StoredPermission {
    actions: Vec<String>,
    not_actions: Vec<String>,
    data_actions: Vec<String>,
    not_data_actions: Vec<String>,
}

impl StoredRole {
    fn definition(&self) -> RoleDefinition {
        RoleDefinition {
            id: self.id.clone(),
            name: self.role_name.clone(),
            permissions: self
                .permissions
                .iter()
                .map(|p| Permission {
                    actions: p.actions.clone(),
                    not_actions: p.not_actions.clone(),
                    data_actions: p.data_actions.clone(),
                    not_data_actions: p.not_data_actions.clone(),
                })
                .collect(),
            assignable_scopes: self.assignable_scopes.clone(),
        }
    }
}

/// Every custom role, for the engine.
pub(crate) async fn load_custom_roles(dir: &Directory) -> ArmResult<Vec<(RoleDefinition, String)>> {
    let mut out = Vec::new();
    for rec in crate::list_all(dir, kinds::ROLE_DEFINITION, "").await? {
        let r: StoredRole = rec.decode()?;
        out.push((r.definition(), r.description));
    }
    Ok(out)
}

fn invalid(message: impl Into<String>) -> ArmError {
    ArmError::new(400, "InvalidRoleDefinition", message)
}

fn not_found(id: &str) -> ArmError {
    ArmError::new(
        404,
        "RoleDefinitionDoesNotExist",
        format!("The role definition '{id}' could not be found."),
    )
}

fn strings(v: &Value, key: &str) -> ArmResult<Vec<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty() && !s.chars().any(char::is_whitespace))
                    .ok_or_else(|| {
                        invalid(format!(
                            "'{key}' must hold non-empty action names without spaces."
                        ))
                    })
            })
            .collect(),
        Some(_) => Err(invalid(format!("'{key}' must be an array of strings."))),
    }
}

/// Parses and checks a custom role's ARM body.
fn parse_role(id: &str, body: &Value) -> ArmResult<StoredRole> {
    let props = body.get("properties").unwrap_or(body);
    let role_name = props
        .get("roleName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 512)
        .ok_or_else(|| invalid("properties.roleName is required (1-512 characters)."))?
        .to_owned();
    if let Some(t) = props.get("type").and_then(Value::as_str)
        && !t.eq_ignore_ascii_case("CustomRole")
    {
        return Err(invalid(format!("Only custom roles can be created (type '{t}').")));
    }
    let permissions = match props.get("permissions") {
        Some(Value::Array(blocks)) if !blocks.is_empty() => blocks
            .iter()
            .map(|b| {
                Ok(StoredPermission {
                    actions: strings(b, "actions")?,
                    not_actions: strings(b, "notActions")?,
                    data_actions: strings(b, "dataActions")?,
                    not_data_actions: strings(b, "notDataActions")?,
                })
            })
            .collect::<ArmResult<Vec<_>>>()?,
        _ => return Err(invalid("properties.permissions must be a non-empty array.")),
    };
    if permissions
        .iter()
        .all(|p| p.actions.is_empty() && p.data_actions.is_empty())
    {
        return Err(invalid("A role must grant at least one action or data action."));
    }
    if permissions
        .iter()
        .any(|p| p.data_actions.iter().any(|d| d == "*"))
    {
        return Err(invalid(
            "A custom role cannot grant every data action ('*'); name them.",
        ));
    }
    let assignable_scopes = strings(props, "assignableScopes")?;
    if assignable_scopes.is_empty() {
        return Err(invalid(
            "properties.assignableScopes must name at least one scope.",
        ));
    }
    for s in &assignable_scopes {
        let scope = Scope::parse(s).map_err(|_| {
            ArmError::new(
                400,
                "InvalidAssignableScope",
                format!("The assignable scope '{s}' is not a valid scope."),
            )
        })?;
        if scope.as_str() == "/" {
            return Err(ArmError::new(
                400,
                "InvalidAssignableScope",
                "The root scope '/' is reserved for built-in roles; name management groups, subscriptions or resource groups.",
            ));
        }
    }
    Ok(StoredRole {
        id: id.to_ascii_lowercase(),
        role_name,
        description: props
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        permissions,
        assignable_scopes,
        created_by: None,
    })
}

impl Arm {
    /// Reading role definitions at a scope needs a role there (at, above or below it), as it
    /// names scopes: anyone who can see the scope can see its roles.
    async fn authorize_role_read(&self, caller: &str, at: &Scope) -> ArmResult<()> {
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        if self.snapshot()?.has_any_role_around(&refs, at) {
            return Ok(());
        }
        self.authorize(caller, at, "Microsoft.Authorization/roleDefinitions/read")
            .await
    }

    fn role_json(&self, r: &RoleDefinition, scope: &str) -> Value {
        let builtin = BUILTIN_ROLES.iter().any(|(id, _)| id.eq_ignore_ascii_case(&r.id));
        let description = self
            .descriptions
            .read()
            .ok()
            .and_then(|d| d.get(&r.id.to_ascii_lowercase()).cloned())
            .unwrap_or_else(|| builtin_description(&r.id).to_owned());
        shapes::role_definition(r, scope, builtin, &description)
    }

    /// Role definitions visible at `scope` (built-ins, and custom roles assignable at, above or
    /// below it), optionally `roleName eq '…'`.
    pub async fn list_role_definitions(
        &self,
        caller: &str,
        scope: &str,
        role_name: Option<&str>,
    ) -> ArmResult<Vec<Value>> {
        let at = Scope::parse(scope)
            .map_err(|_| ArmError::new(400, "InvalidScope", format!("The scope '{scope}' is not valid.")))?;
        self.authorize_role_read(caller, &at).await?;
        let snap = self.snapshot()?;
        let mut out: Vec<Value> = snap
            .roles()
            .filter(|r| role_name.is_none_or(|n| n.eq_ignore_ascii_case(&r.name)))
            .filter(|r| {
                r.assignable_scopes
                    .iter()
                    .filter_map(|s| Scope::parse(s).ok())
                    .any(|s| snap.covers(&s, &at) || snap.covers(&at, &s))
            })
            .map(|r| self.role_json(r, scope))
            .collect();
        out.sort_by(|a, b| {
            a["properties"]["roleName"]
                .as_str()
                .cmp(&b["properties"]["roleName"].as_str())
        });
        Ok(out)
    }

    /// One role definition by GUID.
    pub async fn get_role_definition(&self, caller: &str, scope: &str, id: &str) -> ArmResult<Value> {
        let at = Scope::parse(scope)
            .map_err(|_| ArmError::new(400, "InvalidScope", format!("The scope '{scope}' is not valid.")))?;
        self.authorize_role_read(caller, &at).await?;
        let snap = self.snapshot()?;
        snap.role(id)
            .map(|r| self.role_json(r, scope))
            .ok_or_else(|| not_found(id))
    }

    /// Creates or updates a custom role (`roleDefinitions/write` at every assignable scope).
    pub async fn put_role_definition(
        &self,
        caller: &str,
        scope: &str,
        id: &str,
        body: &Value,
    ) -> ArmResult<(bool, Value)> {
        if uuid::Uuid::parse_str(id).is_err() || id.len() != 36 {
            return Err(ArmError::new(
                400,
                "InvalidRoleDefinitionId",
                format!("The role definition ID '{id}' is not valid; it must be a GUID."),
            ));
        }
        if BUILTIN_ROLES.iter().any(|(b, _)| b.eq_ignore_ascii_case(id)) {
            return Err(ArmError::new(
                400,
                "InvalidRoleDefinitionId",
                format!("'{id}' is a built-in role; built-in roles cannot be changed."),
            ));
        }
        let mut role = parse_role(id, body)?;
        role.created_by = Some(caller.to_owned());
        // An update changes what every existing assignment of the role grants: the caller must be
        // allowed at the old assignable scopes as well as the new ones, and no scope may be
        // dropped while assignments of the role sit under it.
        let previous = self.snapshot()?.role(id).cloned();
        let mut scopes: Vec<String> = role.assignable_scopes.clone();
        if let Some(old) = &previous {
            scopes.extend(old.assignable_scopes.iter().cloned());
        }
        for s in &scopes {
            let at = Scope::parse(s).map_err(|_| ArmError::internal())?;
            self.authorize(caller, &at, "Microsoft.Authorization/roleDefinitions/write")
                .await?;
        }
        if previous.is_some() {
            let snap = self.snapshot()?;
            let new_scopes: Vec<Scope> = role
                .assignable_scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect();
            let stranded = snap
                .assignments()
                .filter(|a| a.role_id.eq_ignore_ascii_case(id))
                .find(|a| !new_scopes.iter().any(|s| snap.covers(s, &a.scope)))
                .map(|a| a.scope.as_str().to_owned());
            if let Some(at) = stranded {
                return Err(ArmError::new(
                    409,
                    "RoleDefinitionHasAssignments",
                    format!(
                        "The role is assigned at '{at}', outside the new assignable scopes; remove that assignment first."
                    ),
                ));
            }
        }
        let duplicate = {
            let snap = self.snapshot()?;
            snap.roles()
                .any(|r| r.name.eq_ignore_ascii_case(&role.role_name) && !r.id.eq_ignore_ascii_case(id))
        };
        if duplicate {
            return Err(ArmError::new(
                409,
                "RoleDefinitionWithSameNameExists",
                format!(
                    "A role definition cannot be updated with a name that already exists: '{}'.",
                    role.role_name
                ),
            ));
        }
        let now = self.dir.clock().now_unix();
        let store = self.dir.store();
        let created = match store.get(kinds::ROLE_DEFINITION, &role.id, now).await? {
            Some(mut rec) => {
                rec.data = serde_json::to_value(&role).map_err(|_| ArmError::internal())?;
                store.update(rec).await.map_err(|e| match e {
                    StoreError::Conflict { .. } => ArmError::new(
                        409,
                        "Conflict",
                        "The role definition was changed concurrently; retry.",
                    ),
                    other => other.into(),
                })?;
                false
            }
            None => {
                store
                    .insert(Record::from_value(kinds::ROLE_DEFINITION, &role.id, &role)?)
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict { .. } => ArmError::new(
                            409,
                            "Conflict",
                            "The role definition was created concurrently; retry.",
                        ),
                        other => other.into(),
                    })?;
                true
            }
        };
        let def = role.definition();
        if let Ok(mut d) = self.descriptions.write() {
            d.insert(role.id.clone(), role.description.clone());
        }
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .upsert_role(def.clone());
        self.rbac_changed();
        self.audit(
            caller,
            if created {
                "Add custom role definition"
            } else {
                "Update custom role definition"
            },
            "RoleManagement",
            (&role.id, &role.role_name, "RoleDefinition"),
            json!({"assignableScopes": role.assignable_scopes}),
        )
        .await?;
        Ok((created, self.role_json(&def, scope)))
    }

    /// Deletes a custom role (`roleDefinitions/delete` at its assignable scopes); refused while
    /// assignments use it. Returns it, if it existed.
    pub async fn delete_role_definition(
        &self,
        caller: &str,
        scope: &str,
        id: &str,
    ) -> ArmResult<Option<Value>> {
        if BUILTIN_ROLES.iter().any(|(b, _)| b.eq_ignore_ascii_case(id)) {
            return Err(ArmError::new(
                400,
                "InvalidRoleDefinitionId",
                format!("'{id}' is a built-in role; built-in roles cannot be deleted."),
            ));
        }
        let key = id.to_ascii_lowercase();
        let now = self.dir.clock().now_unix();
        let Some(rec) = self.dir.store().get(kinds::ROLE_DEFINITION, &key, now).await? else {
            return Ok(None);
        };
        let role: StoredRole = rec.decode()?;
        for s in &role.assignable_scopes {
            let at = Scope::parse(s).map_err(|_| ArmError::internal())?;
            self.authorize(caller, &at, "Microsoft.Authorization/roleDefinitions/delete")
                .await?;
        }
        let in_use = {
            let snap = self.snapshot()?;
            snap.assignments()
                .filter(|a| a.role_id.eq_ignore_ascii_case(&key))
                .count()
        };
        if in_use > 0 {
            return Err(ArmError::new(
                409,
                "RoleDefinitionHasAssignments",
                format!(
                    "There are {in_use} role assignment(s) using role definition '{}'; delete them first.",
                    role.role_name
                ),
            ));
        }
        self.dir
            .store()
            .delete(kinds::ROLE_DEFINITION, &key, Some(rec.version))
            .await?;
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .remove_role(&key);
        let def = role.definition();
        self.audit(
            caller,
            "Delete custom role definition",
            "RoleManagement",
            (&role.id, &role.role_name, "RoleDefinition"),
            json!({}),
        )
        .await?;
        Ok(Some(self.role_json(&def, scope)))
    }
}

#[cfg(test)]
#[allow(clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn custom_role_validation() {
        let id = "3f0e6a8e-1111-4222-8333-444455556666";
        let ok = json!({"properties": {"roleName": "Login operators", "permissions": [{"dataActions": ["Microsoft.Compute/virtualMachines/login/action"]}], "assignableScopes": ["/subscriptions/abc"]}});
        let r = parse_role(id, &ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.definition().permissions[0].data_actions.len(), 1);
        let bad = |body: Value, code: &str| {
            let e = parse_role(id, &body)
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(e.code, code, "{body}: {}", e.message);
        };
        bad(
            json!({"properties": {"permissions": [{"actions": ["*/read"]}], "assignableScopes": ["/subscriptions/abc"]}}),
            "InvalidRoleDefinition",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"notActions": ["*"]}], "assignableScopes": ["/subscriptions/abc"]}}),
            "InvalidRoleDefinition",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"dataActions": ["*"]}], "assignableScopes": ["/subscriptions/abc"]}}),
            "InvalidRoleDefinition",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"actions": ["*/read"]}], "assignableScopes": []}}),
            "InvalidRoleDefinition",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"actions": ["*/read"]}], "assignableScopes": ["/"]}}),
            "InvalidAssignableScope",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"actions": ["*/read"]}], "assignableScopes": ["subscriptions/abc"]}}),
            "InvalidAssignableScope",
        );
        bad(
            json!({"properties": {"roleName": "x", "type": "BuiltInRole", "permissions": [{"actions": ["*/read"]}], "assignableScopes": ["/subscriptions/abc"]}}),
            "InvalidRoleDefinition",
        );
        bad(
            json!({"properties": {"roleName": "x", "permissions": [{"actions": ["a b"]}], "assignableScopes": ["/subscriptions/abc"]}}),
            "InvalidRoleDefinition",
        );
    }
}
