//! Role definitions, assignments and the evaluation snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pattern::Pattern;
use crate::scope::Scope;
/// [`crate::VM_LOGIN`] lower-cased, as matching expects.
const VM_LOGIN_LOWER: &str = "microsoft.compute/virtualmachines/login/action";
/// [`crate::VM_LOGIN_AS_ADMIN`] lower-cased.
const VM_LOGIN_AS_ADMIN_LOWER: &str = "microsoft.compute/virtualmachines/loginasadmin/action";

/// One permission block of a role definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permission {
    /// Control-plane actions.
    pub actions: Vec<String>,
    /// Subtracted from `actions`.
    pub not_actions: Vec<String>,
    /// Data-plane actions.
    pub data_actions: Vec<String>,
    /// Subtracted from `data_actions`.
    pub not_data_actions: Vec<String>,
}

/// A role definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDefinition {
    /// The role's GUID (the last segment of its ARM id).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Permission blocks.
    pub permissions: Vec<Permission>,
    /// Scopes where it may be assigned.
    pub assignable_scopes: Vec<String>,
}

/// A role assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The assignment's name (GUID).
    pub id: String,
    /// Where it applies (and everything below).
    pub scope: Scope,
    /// The role's GUID.
    pub role_id: String,
    /// The principal's object id.
    pub principal_id: String,
}

/// Control-plane or data-plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// An `Actions` entry.
    Action,
    /// A `DataActions` entry.
    DataAction,
}

#[derive(Debug)]
struct CompiledBlock {
    actions: Vec<Pattern>,
    not_actions: Vec<Pattern>,
    data_actions: Vec<Pattern>,
    not_data_actions: Vec<Pattern>,
}

impl CompiledBlock {
    fn grants(&self, kind: ActionKind, action_lower: &str) -> bool {
        let (allow, deny) = match kind {
            ActionKind::Action => (&self.actions, &self.not_actions),
            ActionKind::DataAction => (&self.data_actions, &self.not_data_actions),
        };
        allow.iter().any(|p| p.matches_lower(action_lower))
            && !deny.iter().any(|p| p.matches_lower(action_lower))
    }
}

#[derive(Debug)]
struct CompiledRole {
    def: RoleDefinition,
    blocks: Vec<CompiledBlock>,
}

impl CompiledRole {
    fn compile(def: RoleDefinition) -> Self {
        let pats = |v: &[String]| v.iter().map(|s| Pattern::new(s)).collect::<Vec<_>>();
        let blocks = def
            .permissions
            .iter()
            .map(|p| CompiledBlock {
                actions: pats(&p.actions),
                not_actions: pats(&p.not_actions),
                data_actions: pats(&p.data_actions),
                not_data_actions: pats(&p.not_data_actions),
            })
            .collect();
        Self { def, blocks }
    }

    fn grants(&self, kind: ActionKind, action_lower: &str) -> bool {
        self.blocks.iter().any(|b| b.grants(kind, action_lower))
    }
}

/// The answer to a permission check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether some assignment grants it.
    pub allowed: bool,
    /// The assignments that grant it (empty when denied).
    pub granted_by: Vec<String>,
}

/// What a principal may do on a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoginRight {
    /// No login.
    Deny,
    /// Log in as a regular user.
    User,
    /// Log in as an administrator.
    Admin,
}

/// The login decision with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginDecision {
    /// The right.
    pub right: LoginRight,
    /// The assignments that grant it.
    pub decided_by: Vec<String>,
}

/// A fast multiplicative hasher for the principal index. The keys are object ids the server
/// issues, not attacker-chosen strings, so hash flooding is not a concern; one login decision
/// looks up the user and every one of their groups (hundreds of lookups).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type IdMap<V> = HashMap<String, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Everything evaluation needs, updated incrementally.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    roles: HashMap<String, Arc<CompiledRole>>,
    by_principal: IdMap<Vec<Held>>,
    /// The same assignments by scope: who may log in to a machine is answered by looking at the
    /// machine's scope and those above it, not at every assignment.
    by_scope: HashMap<String, Vec<Arc<Assignment>>>,
    assignment_principal: HashMap<String, String>,
    hierarchy: Hierarchy,
}

/// An assignment as a principal holds it, with a key of its subscription beside it: most of a
/// principal's assignments are in other subscriptions than the resource asked about, and they are
/// skipped by comparing two integers in a contiguous list, without touching the assignment.
#[derive(Debug, Clone)]
struct Held {
    /// [`subscription_key`] of the assignment's scope (0: not under a subscription).
    sub: u64,
    a: Arc<Assignment>,
}

/// A non-zero key of the subscription a scope is in, or 0 for `/` and management groups.
fn subscription_key(scope: &Scope) -> u64 {
    match scope.subscription() {
        Some(s) => {
            let mut h = IdHasher::default();
            std::hash::Hasher::write(&mut h, s.as_bytes());
            std::hash::Hasher::finish(&h) | 1
        }
        None => 0,
    }
}

/// Management groups (SPEC A1): which management group each subscription and management group
/// sits in. What has no recorded parent sits in the root group (the tenant's id).
#[derive(Debug, Default, Clone)]
struct Hierarchy {
    root: Option<String>,
    parent_of: HashMap<String, String>,
}

/// Management groups nest at most six levels below the root (Azure's limit); the walk stops there
/// even if a corrupt hierarchy had a cycle.
const MAX_MANAGEMENT_GROUP_DEPTH: usize = 8;

impl Hierarchy {
    /// Whether management group `mg` is `scope`'s management group or one above it.
    fn mg_covers(&self, mg: &str, scope: &Scope) -> bool {
        let start = match (scope.subscription(), scope.management_group()) {
            (Some(sub), _) => self.parent(&format!("sub:{sub}")),
            (None, Some(m)) => Some(m),
            (None, None) => None,
        };
        let mut cur = start;
        for _ in 0..MAX_MANAGEMENT_GROUP_DEPTH {
            match cur {
                Some(c) if c == mg => return true,
                Some(c) => cur = self.parent(&format!("mg:{c}")),
                None => return false,
            }
        }
        false
    }

    fn parent(&self, key: &str) -> Option<&str> {
        let root = self.root.as_deref();
        match self.parent_of.get(key) {
            Some(p) => Some(p.as_str()),
            None if Some(key.strip_prefix("mg:").unwrap_or_default()) == root => None,
            None => root,
        }
    }
}

impl Snapshot {
    /// An empty snapshot with the built-in roles.
    pub fn with_builtin_roles() -> Self {
        let mut s = Self::default();
        for r in crate::builtin::builtin_roles() {
            s.upsert_role(r);
        }
        s
    }

    /// Adds or replaces a role definition.
    pub fn upsert_role(&mut self, def: RoleDefinition) {
        self.roles
            .insert(def.id.to_ascii_lowercase(), Arc::new(CompiledRole::compile(def)));
    }

    /// Names the root management group (the tenant's id): every subscription and management
    /// group without a recorded parent sits in it.
    pub fn set_root_management_group(&mut self, id: &str) {
        self.hierarchy.root = Some(id.to_ascii_lowercase());
    }

    /// Places subscription `sub` in management group `mg` (`None`: back in the root group).
    pub fn set_subscription_parent(&mut self, sub: &str, mg: Option<&str>) {
        let key = format!("sub:{}", sub.to_ascii_lowercase());
        match mg {
            Some(m) => self.hierarchy.parent_of.insert(key, m.to_ascii_lowercase()),
            None => self.hierarchy.parent_of.remove(&key),
        };
    }

    /// Places management group `mg` under `parent` (`None`: directly under the root group).
    pub fn set_management_group_parent(&mut self, mg: &str, parent: Option<&str>) {
        let key = format!("mg:{}", mg.to_ascii_lowercase());
        match parent {
            Some(p) => self.hierarchy.parent_of.insert(key, p.to_ascii_lowercase()),
            None => self.hierarchy.parent_of.remove(&key),
        };
    }

    /// Whether an assignment at `at` applies to `resource`: `at` is `resource` or above it, by
    /// path or through the management-group tree.
    pub fn covers(&self, at: &Scope, resource: &Scope) -> bool {
        at.contains(resource)
            || at
                .management_group()
                .is_some_and(|mg| self.hierarchy.mg_covers(mg, resource))
    }

    /// Removes a role definition.
    pub fn remove_role(&mut self, id: &str) {
        self.roles.remove(&id.to_ascii_lowercase());
    }

    /// Every role definition.
    pub fn roles(&self) -> impl Iterator<Item = &RoleDefinition> {
        self.roles.values().map(|r| &r.def)
    }

    /// A role definition by GUID.
    pub fn role(&self, id: &str) -> Option<&RoleDefinition> {
        self.roles.get(&id.to_ascii_lowercase()).map(|r| &r.def)
    }

    /// Adds or replaces an assignment.
    pub fn upsert_assignment(&mut self, a: Assignment) {
        self.remove_assignment(&a.id);
        let principal = a.principal_id.to_ascii_lowercase();
        self.assignment_principal
            .insert(a.id.to_ascii_lowercase(), principal.clone());
        let a = Arc::new(a);
        self.by_scope
            .entry(a.scope.as_str().to_owned())
            .or_default()
            .push(a.clone());
        let sub = subscription_key(&a.scope);
        self.by_principal
            .entry(principal)
            .or_default()
            .push(Held { sub, a });
    }

    /// Removes an assignment by name.
    pub fn remove_assignment(&mut self, id: &str) {
        let id = id.to_ascii_lowercase();
        if let Some(p) = self.assignment_principal.remove(&id)
            && let Some(list) = self.by_principal.get_mut(&p)
        {
            let mut scopes = Vec::new();
            list.retain(|h| {
                let keep = h.a.id.to_ascii_lowercase() != id;
                if !keep {
                    scopes.push(h.a.scope.as_str().to_owned());
                }
                keep
            });
            if list.is_empty() {
                self.by_principal.remove(&p);
            }
            for scope in scopes {
                if let Some(at) = self.by_scope.get_mut(&scope) {
                    at.retain(|a| a.id.to_ascii_lowercase() != id);
                    if at.is_empty() {
                        self.by_scope.remove(&scope);
                    }
                }
            }
        }
    }

    /// Whether any of `principals` holds any assignment at, above or below `scope` (what makes a
    /// subscription visible to them).
    pub fn has_any_role_around(&self, principals: &[&str], scope: &Scope) -> bool {
        principals.iter().any(|p| {
            self.assignments_of(p).is_some_and(|list| {
                list.iter()
                    .any(|h| self.covers(&h.a.scope, scope) || scope.contains(&h.a.scope))
            })
        })
    }

    /// Every principal granted a login right on the machine `vm`, with the best right each
    /// assignment gives: (principal id, right, assignment id). Principals may be groups.
    pub fn login_grants(&self, vm: &Scope) -> Vec<(String, LoginRight, String)> {
        let mut out = Vec::new();
        for scope in self.scopes_above(vm) {
            let Some(list) = self.by_scope.get(&scope) else {
                continue;
            };
            for a in list {
                let Some(role) = self.roles.get(&a.role_id.to_ascii_lowercase()) else {
                    continue;
                };
                let right = if role.grants(ActionKind::DataAction, VM_LOGIN_AS_ADMIN_LOWER) {
                    LoginRight::Admin
                } else if role.grants(ActionKind::DataAction, VM_LOGIN_LOWER) {
                    LoginRight::User
                } else {
                    continue;
                };
                out.push((a.principal_id.to_ascii_lowercase(), right, a.id.clone()));
            }
        }
        out.sort();
        out
    }

    /// `resource` and every scope above it: its path prefixes at segment boundaries, `/`, and
    /// the management groups its subscription sits in.
    fn scopes_above(&self, resource: &Scope) -> Vec<String> {
        let text = resource.as_str();
        let mut out = vec!["/".to_owned()];
        for (i, c) in text.char_indices().skip(1) {
            if c == '/' {
                out.push(text[..i].to_owned());
            }
        }
        if text != "/" {
            out.push(text.to_owned());
        }
        let start = match (resource.subscription(), resource.management_group()) {
            (Some(sub), _) => self.hierarchy.parent(&format!("sub:{sub}")),
            (None, Some(m)) => self.hierarchy.parent(&format!("mg:{m}")),
            (None, None) => None,
        };
        let mut cur = start;
        for _ in 0..MAX_MANAGEMENT_GROUP_DEPTH {
            let Some(mg) = cur else { break };
            out.push(format!("/providers/microsoft.management/managementgroups/{mg}"));
            cur = self.hierarchy.parent(&format!("mg:{mg}"));
        }
        out
    }

    /// Every assignment, for listing.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.by_principal.values().flatten().map(|h| h.a.as_ref())
    }

    /// How many assignments the snapshot holds.
    pub fn assignment_count(&self) -> usize {
        self.assignment_principal.len()
    }

    /// Whether any of `principals` (a principal and its transitive groups) may do `action` on `resource`.
    /// Principal ids are compared case-insensitively.
    pub fn check(&self, principals: &[&str], resource: &Scope, kind: ActionKind, action: &str) -> Decision {
        let action = action.to_ascii_lowercase();
        let mut granted_by = Vec::new();
        self.for_applicable(principals, resource, |a, role| {
            if role.grants(kind, &action) {
                granted_by.push(a.id.clone());
            }
        });
        Decision {
            allowed: !granted_by.is_empty(),
            granted_by,
        }
    }

    /// The login right of `principals` on the machine `vm`.
    pub fn login_decision(&self, principals: &[&str], vm: &Scope) -> LoginDecision {
        let (admin, user) = (VM_LOGIN_AS_ADMIN_LOWER, VM_LOGIN_LOWER);
        let mut admins = Vec::new();
        let mut users = Vec::new();
        self.for_applicable(principals, vm, |a, role| {
            if role.grants(ActionKind::DataAction, admin) {
                admins.push(a.id.clone());
            } else if role.grants(ActionKind::DataAction, user) {
                users.push(a.id.clone());
            }
        });
        if !admins.is_empty() {
            LoginDecision {
                right: LoginRight::Admin,
                decided_by: admins,
            }
        } else if !users.is_empty() {
            LoginDecision {
                right: LoginRight::User,
                decided_by: users,
            }
        } else {
            LoginDecision {
                right: LoginRight::Deny,
                decided_by: vec![],
            }
        }
    }

    /// A principal's assignments (ids compared case-insensitively).
    fn assignments_of(&self, principal: &str) -> Option<&Vec<Held>> {
        // Object ids are almost always lower case already: allocate only when they are not.
        if principal.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_principal.get(&principal.to_ascii_lowercase())
        } else {
            self.by_principal.get(principal)
        }
    }

    fn for_applicable(
        &self,
        principals: &[&str],
        resource: &Scope,
        mut f: impl FnMut(&Assignment, &CompiledRole),
    ) {
        let resource_sub = subscription_key(resource);
        for p in principals {
            let Some(list) = self.assignments_of(p) else {
                continue;
            };
            for h in list {
                // Another subscription's assignment cannot apply (equal keys are compared in full).
                if h.sub != 0 && h.sub != resource_sub {
                    continue;
                }
                let a = &h.a;
                if !self.covers(&a.scope, resource) {
                    continue;
                }
                // An assignment whose role is unknown grants nothing (fail closed).
                if let Some(role) = self.roles.get(&a.role_id.to_ascii_lowercase()) {
                    f(a, role);
                }
            }
        }
    }
}
