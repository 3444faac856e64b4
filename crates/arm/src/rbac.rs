//! Role definitions and role assignments (SPEC R1, R2, R4).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::{Assignment, Scope};
use usher_directory::Directory;
use usher_directory::model::DirectoryObject;
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, kinds};

/// A stored role assignment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAssignment {
    name: String,
    scope: String,
    role_definition_id: String,
    principal_id: String,
    principal_type: String,
    #[serde(default)]
    created_on: i64,
    #[serde(default)]
    created_by: Option<String>,
}

/// A role-assignment scope, or InvalidRoleAssignmentScope.
fn assignment_scope(scope_text: &str) -> ArmResult<Scope> {
    Scope::parse(scope_text).map_err(|_| {
        ArmError::new(
            400,
            "InvalidRoleAssignmentScope",
            format!("The scope '{scope_text}' is not valid for a role assignment."),
        )
    })
}

fn role_guid(role_definition_id: &str) -> String {
    role_definition_id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn subscription_of(scope: &str) -> Option<&str> {
    let mut it = scope.split('/').skip(1);
    match (it.next(), it.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => Some(id),
        _ => None,
    }
}

fn assignment_json(a: &StoredAssignment) -> Value {
    let sub = subscription_of(&a.scope);
    let role_id = match sub {
        Some(s) => format!(
            "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{}",
            role_guid(&a.role_definition_id)
        ),
        None => format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{}",
            role_guid(&a.role_definition_id)
        ),
    };
    let scope_prefix = if a.scope == "/" { "" } else { a.scope.as_str() };
    json!({
        "id": format!("{scope_prefix}/providers/Microsoft.Authorization/roleAssignments/{}", a.name),
        "name": a.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": role_id,
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": a.scope,
            "createdOn": usher_core::rfc3339(a.created_on),
            "updatedOn": usher_core::rfc3339(a.created_on),
            "createdBy": a.created_by,
        },
    })
}

fn to_engine(a: &StoredAssignment) -> Option<Assignment> {
    Some(Assignment {
        id: a.name.clone(),
        scope: Scope::parse(&a.scope).ok()?,
        role_id: role_guid(&a.role_definition_id),
        principal_id: a.principal_id.clone(),
    })
}

/// Every stored assignment, for the engine.
pub(crate) async fn load_assignments(dir: &Directory) -> ArmResult<Vec<Assignment>> {
    let mut out = Vec::new();
    for r in crate::list_all(dir, kinds::ROLE_ASSIGNMENT, "").await? {
        let a: StoredAssignment = r.decode()?;
        match to_engine(&a) {
            Some(e) => out.push(e),
            None => tracing::warn!(
                name = a.name,
                scope = a.scope,
                "skipping a role assignment with an invalid scope"
            ),
        }
    }
    Ok(out)
}

/// A role-assignment list filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentFilter {
    /// No filter: at, above and below the scope.
    None,
    /// `atScope()`: exactly at the scope or above it.
    AtScope,
    /// `principalId eq '…'`.
    PrincipalId(String),
    /// `assignedTo('…')`: the principal and its groups.
    AssignedTo(String),
    /// `atScope() and assignedTo('…')`.
    AtScopeAssignedTo(String),
}

impl AssignmentFilter {
    /// Parses Azure's `$filter` forms.
    pub fn parse(f: Option<&str>) -> ArmResult<Self> {
        let Some(f) = f.map(str::trim).filter(|f| !f.is_empty()) else {
            return Ok(Self::None);
        };
        let quoted = |s: &str| -> Option<String> {
            s.trim().strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned)
        };
        let assigned =
            |s: &str| -> Option<String> { quoted(s.trim().strip_prefix("assignedTo(")?.strip_suffix(')')?) };
        if f.eq_ignore_ascii_case("atScope()") {
            return Ok(Self::AtScope);
        }
        if let Some(rest) = f.strip_prefix("atScope() and ")
            && let Some(p) = assigned(rest)
        {
            return Ok(Self::AtScopeAssignedTo(p));
        }
        if let Some(p) = assigned(f) {
            return Ok(Self::AssignedTo(p));
        }
        if let Some((k, v)) = f.split_once(" eq ")
            && k.trim() == "principalId"
            && let Some(p) = quoted(v)
        {
            return Ok(Self::PrincipalId(p));
        }
        Err(ArmError::new(
            400,
            "InvalidFilterInQueryString",
            format!(
                "The filter '{f}' is not supported: use atScope(), principalId eq '…' or assignedTo('…')."
            ),
        ))
    }
}

impl Arm {
    fn principal_type(o: &DirectoryObject) -> &'static str {
        match o {
            DirectoryObject::User(_) => "User",
            DirectoryObject::Group(_) => "Group",
            DirectoryObject::ServicePrincipal(_) => "ServicePrincipal",
        }
    }

    /// Creates a role assignment (`roleAssignments/write` at the scope). Returns (created, json).
    pub async fn put_assignment(
        &self,
        caller: &str,
        scope_text: &str,
        name: &str,
        body: &Value,
    ) -> ArmResult<(bool, Value)> {
        let scope = assignment_scope(scope_text)?;
        if !is_guid(name) {
            return Err(ArmError::new(
                400,
                "InvalidRoleAssignmentId",
                format!(
                    "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
                ),
            ));
        }
        let props = body.get("properties").unwrap_or(body);
        let role_definition_id = props
            .get("roleDefinitionId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArmError::new(
                    400,
                    "InvalidRequestContent",
                    "properties.roleDefinitionId is required.",
                )
            })?;
        let principal_id = props
            .get("principalId")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ArmError::new(
                    400,
                    "InvalidRequestContent",
                    "properties.principalId is required.",
                )
            })?
            .to_ascii_lowercase();
        let role_id = role_guid(role_definition_id);
        let role = {
            let snap = self.snapshot()?;
            snap.role(&role_id).cloned()
        }
        .ok_or_else(|| {
            ArmError::new(
                400,
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{role_id}' does not exist."),
            )
        })?;
        self.authorize(caller, &scope, "Microsoft.Authorization/roleAssignments/write")
            .await?;
        let assignable = {
            let snap = self.snapshot()?;
            role.assignable_scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .any(|s| snap.covers(&s, &scope))
        };
        if !assignable {
            return Err(ArmError::new(
                400,
                "RoleDefinitionNotAssignableAtScope",
                format!(
                    "The role '{}' can be assigned only within its assignable scopes ({}), not at '{scope_text}'.",
                    role.name,
                    role.assignable_scopes.join(", ")
                ),
            ));
        }
        if scope.is_management_group()
            && role
                .permissions
                .iter()
                .any(|p| !p.data_actions.is_empty() || !p.not_data_actions.is_empty())
        {
            return Err(ArmError::new(
                400,
                "InvalidCreateRoleAssignmentRequest",
                "Role assignments to Management Groups can not be made to role definitions with DataActions.",
            ));
        }
        let tenant = self.dir.tenant().await?;
        let principal = match self.dir.get_object(&principal_id).await {
            Ok(p) => p,
            Err(usher_directory::DirectoryError::NotFound { .. }) => {
                return Err(ArmError::new(
                    400,
                    "PrincipalNotFound",
                    format!(
                        "Principal {principal_id} does not exist in the directory {}. Check that you have the correct principal ID.",
                        tenant.id
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let now = self.dir.clock().now_unix();
        let stored = StoredAssignment {
            name: name.to_ascii_lowercase(),
            // Azure answers with the scope as the caller wrote it; comparisons use the normal form.
            scope: scope_text.trim().trim_end_matches('/').to_owned(),
            role_definition_id: role_id.clone(),
            principal_id: principal_id.clone(),
            principal_type: Self::principal_type(&principal).to_owned(),
            created_on: now,
            created_by: Some(caller.to_owned()),
        };
        // Same principal, role and scope under another name: RoleAssignmentExists.
        let duplicate = {
            let snap = self.snapshot()?;
            snap.assignments()
                .find(|a| {
                    a.principal_id.eq_ignore_ascii_case(&principal_id)
                        && a.role_id.eq_ignore_ascii_case(&role_id)
                        && a.scope == scope
                })
                .map(|a| a.id.clone())
        };
        if let Some(existing) = duplicate {
            if existing.eq_ignore_ascii_case(name) {
                let rec = self
                    .dir
                    .store()
                    .get(kinds::ROLE_ASSIGNMENT, &existing.to_ascii_lowercase(), now)
                    .await?;
                if let Some(r) = rec {
                    return Ok((false, assignment_json(&r.decode()?)));
                }
            }
            return Err(ArmError::new(
                409,
                "RoleAssignmentExists",
                format!(
                    "The role assignment already exists. The ID of the existing role assignment is {}.",
                    existing.replace('-', "")
                ),
            ));
        }
        match self
            .dir
            .store()
            .insert(Record::from_value(kinds::ROLE_ASSIGNMENT, &stored.name, &stored)?)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(ArmError::new(
                    400,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(a) = to_engine(&stored) {
            self.snapshot
                .write()
                .map_err(|_| ArmError::internal())?
                .upsert_assignment(a);
            self.rbac_changed();
        }
        self.audit(
            caller,
            "Add role assignment",
            "RoleManagement",
            (&stored.name, &stored.name, "RoleAssignment"),
            json!({"scope": stored.scope, "roleDefinitionId": stored.role_definition_id, "principalId": stored.principal_id, "principalType": stored.principal_type}),
        )
        .await?;
        Ok((true, assignment_json(&stored)))
    }

    /// Lists role assignments relevant to `scope` (the caller needs `roleAssignments/read` there).
    pub async fn list_assignments(
        &self,
        caller: &str,
        scope_text: &str,
        filter: &AssignmentFilter,
    ) -> ArmResult<Vec<Value>> {
        let scope = assignment_scope(scope_text)?;
        self.authorize(caller, &scope, "Microsoft.Authorization/roleAssignments/read")
            .await?;
        let wanted_principals: Option<Vec<String>> = match filter {
            AssignmentFilter::PrincipalId(p) => Some(vec![p.to_ascii_lowercase()]),
            AssignmentFilter::AssignedTo(p) | AssignmentFilter::AtScopeAssignedTo(p) => {
                Some(self.principals_of(p).await?)
            }
            _ => None,
        };
        let at_scope_only = matches!(
            filter,
            AssignmentFilter::AtScope | AssignmentFilter::AtScopeAssignedTo(_)
        );
        let names: Vec<String> = {
            let snap = self.snapshot()?;
            snap.assignments()
                .filter(|a| {
                    if at_scope_only {
                        snap.covers(&a.scope, &scope)
                    } else {
                        snap.covers(&a.scope, &scope) || snap.covers(&scope, &a.scope)
                    }
                })
                .filter(|a| {
                    wanted_principals
                        .as_ref()
                        .is_none_or(|w| w.iter().any(|p| p.eq_ignore_ascii_case(&a.principal_id)))
                })
                .map(|a| a.id.to_ascii_lowercase())
                .collect()
        };
        let now = self.dir.clock().now_unix();
        let mut out = Vec::new();
        for n in names {
            if let Some(r) = self.dir.store().get(kinds::ROLE_ASSIGNMENT, &n, now).await? {
                out.push(assignment_json(&r.decode()?));
            }
        }
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(out)
    }

    /// Removes every role assignment at or below `scope` (the resource there was deleted).
    /// Returns their names.
    pub(crate) async fn remove_assignments_under(&self, scope: &Scope) -> ArmResult<Vec<String>> {
        let names: Vec<String> = {
            let snap = self.snapshot()?;
            snap.assignments()
                .filter(|a| scope.contains(&a.scope))
                .map(|a| a.id.to_ascii_lowercase())
                .collect()
        };
        for n in &names {
            self.dir.store().delete(kinds::ROLE_ASSIGNMENT, n, None).await?;
            self.snapshot
                .write()
                .map_err(|_| ArmError::internal())?
                .remove_assignment(n);
            self.rbac_changed();
        }
        Ok(names)
    }

    /// Deletes a role assignment (`roleAssignments/delete` at its scope). Returns it, if it existed.
    pub async fn delete_assignment(
        &self,
        caller: &str,
        scope_text: &str,
        name: &str,
    ) -> ArmResult<Option<Value>> {
        let scope = assignment_scope(scope_text)?;
        self.authorize(caller, &scope, "Microsoft.Authorization/roleAssignments/delete")
            .await?;
        let now = self.dir.clock().now_unix();
        let key = name.to_ascii_lowercase();
        let Some(rec) = self.dir.store().get(kinds::ROLE_ASSIGNMENT, &key, now).await? else {
            return Ok(None);
        };
        let a: StoredAssignment = rec.decode()?;
        if Scope::parse(&a.scope).ok().as_ref() != Some(&scope) {
            return Ok(None);
        }
        self.dir
            .store()
            .delete(kinds::ROLE_ASSIGNMENT, &key, None)
            .await?;
        self.snapshot
            .write()
            .map_err(|_| ArmError::internal())?
            .remove_assignment(&key);
        self.rbac_changed();
        self.audit(
            caller,
            "Remove role assignment",
            "RoleManagement",
            (&a.name, &a.name, "RoleAssignment"),
            json!({"scope": a.scope, "roleDefinitionId": a.role_definition_id, "principalId": a.principal_id}),
        )
        .await?;
        Ok(Some(assignment_json(&a)))
    }
}

#[cfg(test)]
mod tests {
    use super::AssignmentFilter as F;

    #[test]
    fn filters() {
        assert_eq!(F::parse(None).ok(), Some(F::None));
        assert_eq!(F::parse(Some("atScope()")).ok(), Some(F::AtScope));
        assert_eq!(
            F::parse(Some("principalId eq 'abc'")).ok(),
            Some(F::PrincipalId("abc".into()))
        );
        assert_eq!(
            F::parse(Some("assignedTo('abc')")).ok(),
            Some(F::AssignedTo("abc".into()))
        );
        assert_eq!(
            F::parse(Some("atScope() and assignedTo('abc')")).ok(),
            Some(F::AtScopeAssignedTo("abc".into()))
        );
        assert!(F::parse(Some("roleName eq 'x'")).is_err());
    }
}
