//! The login check (SPEC R5): may this principal log in to this machine, and as what?

use serde_json::{Value, json};
use usher_authz::{LoginRight, Scope};
use usher_directory::model::DirectoryObject;

use crate::{Arm, ArmError, ArmResult};

/// A machine's resource id as a scope; subscriptions and resource groups are refused.
fn machine_scope(machine: &str) -> ArmResult<Scope> {
    let scope = Scope::parse(machine).map_err(|_| {
        ArmError::new(
            400,
            "InvalidMachine",
            format!(
                "'{machine}' is not a machine's resource id (/subscriptions/…/resourceGroups/…/providers/…)."
            ),
        )
    })?;
    if !scope.as_str().contains("/providers/") {
        return Err(ArmError::new(
            400,
            "InvalidMachine",
            format!("'{machine}' names a subscription or resource group, not a machine."),
        ));
    }
    Ok(scope)
}

/// The action a caller needs at the machine's scope to ask about others.
pub const LOGIN_CHECK_READ: &str = "Microsoft.Authorization/roleAssignments/read";

impl Arm {
    /// A machine named by its ARM id or by its device id.
    async fn resolve_machine(&self, machine: &str) -> ArmResult<Scope> {
        if uuid::Uuid::parse_str(machine.trim()).is_ok() {
            return self.vm_of_device(machine.trim()).await?.ok_or_else(|| {
                ArmError::new(
                    404,
                    "DeviceNotFound",
                    format!("No joined machine has the device id '{machine}'."),
                )
            });
        }
        machine_scope(machine)
    }

    /// A machine's own identity may ask about itself; anyone else needs `roleAssignments/read`
    /// at the machine. A machine asking about another machine is refused like anyone without
    /// the right.
    async fn authorize_login_read(&self, caller: &str, machine: &Scope) -> ArmResult<()> {
        if self.vm_of_identity(caller, machine).await? {
            return Ok(());
        }
        self.authorize(caller, machine, LOGIN_CHECK_READ).await
    }

    /// The login decision for `principal` (object id or UPN) on the machine `machine` (ARM id).
    /// The caller needs `roleAssignments/read` at the machine (machines asking about themselves
    /// come with their identities).
    pub async fn login_check(&self, caller: &str, principal: &str, machine: &str) -> ArmResult<Value> {
        let scope = self.resolve_machine(machine).await?;
        self.authorize_login_read(caller, &scope).await?;
        let object = if principal.contains('@') {
            self.dir
                .find_user_by_upn(principal)
                .await?
                .map(DirectoryObject::User)
        } else {
            match self.dir.get_object(principal).await {
                Ok(o) => Some(o),
                Err(usher_directory::DirectoryError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        };
        let Some(object) = object else {
            return Err(ArmError::new(
                404,
                "PrincipalNotFound",
                format!("Principal '{principal}' does not exist in the directory."),
            ));
        };
        let (oid, upn, enabled) = match &object {
            DirectoryObject::User(u) => (
                u.id.clone(),
                Some(u.user_principal_name.clone()),
                u.account_enabled,
            ),
            DirectoryObject::ServicePrincipal(s) => (s.id.clone(), None, s.account_enabled),
            DirectoryObject::Group(g) => {
                return Err(ArmError::new(
                    400,
                    "InvalidPrincipal",
                    format!(
                        "'{}' is a group; a login check is for a user or service principal.",
                        g.display_name
                    ),
                ));
            }
        };
        let principals = self.principals_of(&oid).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        let decision = self.snapshot()?.login_decision(&refs, &scope);
        // A disabled account never logs in, whatever its roles.
        let right = if enabled { decision.right } else { LoginRight::Deny };
        Ok(json!({
            "principalId": oid,
            "userPrincipalName": upn,
            "machine": machine,
            "decision": match right { LoginRight::Admin => "admin", LoginRight::User => "user", LoginRight::Deny => "deny" },
            "accountEnabled": enabled,
            "assignments": if enabled { decision.decided_by } else { vec![] },
        }))
    }
}

impl Arm {
    /// Everyone who may log in to the machine, with the best right each has (groups expanded to
    /// their enabled users and service principals, transitively). The agent caches this.
    pub async fn machine_logins(&self, caller: &str, machine: &str) -> ArmResult<Value> {
        let scope = self.resolve_machine(machine).await?;
        self.authorize_login_read(caller, &scope).await?;
        self.logins_on(&scope, machine).await
    }

    /// The login snapshot of a joined machine, for its own agent (authenticated by its key).
    pub async fn own_logins(&self, m: &crate::Machine) -> ArmResult<Value> {
        self.logins_on(&m.scope, &m.vm_id()).await
    }

    async fn logins_on(&self, scope: &Scope, machine: &str) -> ArmResult<Value> {
        let grants = self.snapshot()?.login_grants(scope);
        let mut best: std::collections::BTreeMap<String, (LoginRight, Option<String>, Vec<String>)> =
            Default::default();
        let mut add = |id: String, upn: Option<String>, right: LoginRight, assignment: &str| {
            let e = best.entry(id).or_insert((LoginRight::Deny, upn, vec![]));
            e.0 = e.0.max(right);
            e.2.push(assignment.to_owned());
        };
        for (principal, right, assignment) in grants {
            match self.dir.get_object(&principal).await {
                Ok(DirectoryObject::User(u)) if u.account_enabled => {
                    add(u.id, Some(u.user_principal_name), right, &assignment)
                }
                Ok(DirectoryObject::ServicePrincipal(sp)) if sp.account_enabled => {
                    add(sp.id, None, right, &assignment)
                }
                Ok(DirectoryObject::Group(g)) => {
                    for m in self.dir.transitive_members(&g.id).await? {
                        match m {
                            DirectoryObject::User(u) if u.account_enabled => {
                                add(u.id, Some(u.user_principal_name), right, &assignment)
                            }
                            DirectoryObject::ServicePrincipal(sp) if sp.account_enabled => {
                                add(sp.id, None, right, &assignment)
                            }
                            _ => {}
                        }
                    }
                }
                Ok(_) | Err(usher_directory::DirectoryError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut logins: Vec<Value> = Vec::with_capacity(best.len());
        for (id, (right, upn, assignments)) in best {
            // Every directory principal that may log in has its UID (SPEC L2), its primary group
            // the same number.
            let uid = self.dir.posix_id(&id).await?;
            logins.push(json!({
                "principalId": id,
                "userPrincipalName": upn,
                "right": if right == LoginRight::Admin { "admin" } else { "user" },
                "uid": uid,
                "gid": uid,
                "assignments": assignments,
            }));
        }
        Ok(json!({"machine": machine, "logins": logins}))
    }
}
