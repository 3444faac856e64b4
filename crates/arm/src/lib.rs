//! usher's resource manager (SPEC A1, R1–R4): subscriptions, resource groups, role definitions and
//! role assignments with Azure's semantics. Every write is authorised by the RBAC engine itself
//! (R4). The engine's snapshot is loaded at start and updated with every change.
#![warn(missing_docs)]

mod error;
mod extensions;
mod groups;
mod login;
mod machines;
mod mgs;
mod rbac;
mod roles;
mod shapes;
mod ssh;
mod vms;

use std::sync::{Arc, RwLock};

pub use error::ArmError;
pub use extensions::{ExtensionChange, ExtensionOutcome, ExtensionStatus};
pub use machines::{JOIN_TOKEN_TTL_SECS, JoinRequest, Machine};
pub use rbac::AssignmentFilter;
pub use ssh::{CONSENT_DAYS, CONSENT_MACHINES, SshTarget};
use usher_authz::{ActionKind, Scope, Snapshot};
use usher_directory::Directory;
pub use vms::VmPut;

/// Result of resource-manager operations.
pub type ArmResult<T> = Result<T, ArmError>;

/// Every record of `kind` whose id starts with `prefix`, page by page (nothing is cut off).
pub(crate) async fn list_all(
    dir: &Directory,
    kind: &str,
    prefix: &str,
) -> ArmResult<Vec<usher_store::Record>> {
    const PAGE: usize = 1000;
    let now = dir.clock().now_unix();
    let mut out = Vec::new();
    let mut after: Option<String> = (!prefix.is_empty()).then(|| prefix.to_owned());
    loop {
        let page = dir.store().list(kind, after.as_deref(), PAGE, now).await?;
        let full = page.len() == PAGE;
        for rec in page {
            if !rec.id.starts_with(prefix) {
                return Ok(out);
            }
            after = Some(rec.id.clone());
            out.push(rec);
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Record kinds of the resource manager.
pub mod kinds {
    /// Subscriptions.
    pub const SUBSCRIPTION: &str = "subscription";
    /// Resource groups (id: lower-cased ARM id).
    pub const RESOURCE_GROUP: &str = "resource_group";
    /// Role assignments (id: the assignment's name).
    pub const ROLE_ASSIGNMENT: &str = "role_assignment";
    /// Virtual machines (id: lower-cased ARM id).
    pub const VIRTUAL_MACHINE: &str = "virtual_machine";
    /// VM extensions (id: `<vm id>/extensions/<name>`, lower case).
    pub const VM_EXTENSION: &str = "vm_extension";
    /// Asynchronous operations (id: GUID; expire after a day).
    pub const OPERATION: &str = "arm_operation";
    /// Custom role definitions (id: GUID).
    pub const ROLE_DEFINITION: &str = "role_definition";
    /// Management groups (id: lower-cased group id).
    pub const MANAGEMENT_GROUP: &str = "management_group";
    /// One-time machine join tokens (id: digest; key: VM scope; expire after an hour).
    pub const JOIN_TOKEN: &str = "join_token";
    /// Joined machines (id: VM scope).
    pub const MACHINE: &str = "machine";
    /// Machine assertion ids seen (replay protection; expire with the assertion).
    pub const MACHINE_JTI: &str = "machine_jti";
    /// First-connection consents (SPEC L3; id: the user's object id).
    pub const LOGIN_CONSENT: &str = "login_consent";
    /// Devices (id: GUID; key: lower-cased display name).
    pub const DEVICE: &str = "device";
}

/// The resource manager.
#[derive(Debug, Clone)]
pub struct Arm {
    dir: Directory,
    snapshot: Arc<RwLock<Snapshot>>,
    /// Custom roles' descriptions (the engine keeps only what evaluation needs).
    descriptions: Arc<RwLock<std::collections::HashMap<String, String>>>,
    /// Bumped at every extension change: agents' long polls wait on it.
    extension_changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Bumped at every role assignment or definition change: machines' login caches wait on it.
    rbac_changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Arm {
    /// Loads custom roles, role assignments and the management-group tree into the engine.
    pub async fn load(dir: Directory) -> ArmResult<Self> {
        let mut snapshot = Snapshot::with_builtin_roles();
        let mut descriptions = std::collections::HashMap::new();
        for (role, description) in roles::load_custom_roles(&dir).await? {
            descriptions.insert(role.id.to_ascii_lowercase(), description);
            snapshot.upsert_role(role);
        }
        for a in rbac::load_assignments(&dir).await? {
            snapshot.upsert_assignment(a);
        }
        let arm = Self {
            dir,
            snapshot: Arc::new(RwLock::new(snapshot)),
            descriptions: Arc::new(RwLock::new(descriptions)),
            extension_changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            rbac_changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        arm.load_hierarchy().await?;
        Ok(arm)
    }

    /// Wakes machines waiting for login changes.
    pub(crate) fn rbac_changed(&self) {
        self.rbac_changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later change of role assignments or definitions.
    pub fn watch_rbac(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rbac_changes.subscribe()
    }

    /// Wakes agents waiting for extension changes.
    pub(crate) fn extensions_changed(&self) {
        self.extension_changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later extension change (agents' long polls). Changes made by
    /// another server replica are seen when the poll times out.
    pub fn watch_extensions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.extension_changes.subscribe()
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The principal and every group it belongs to, transitively.
    pub async fn principals_of(&self, oid: &str) -> ArmResult<Vec<String>> {
        let mut ids = vec![oid.to_ascii_lowercase()];
        ids.extend(
            self.dir
                .transitive_member_of(oid)
                .await?
                .into_iter()
                .map(|g| g.id),
        );
        Ok(ids)
    }

    fn snapshot(&self) -> ArmResult<std::sync::RwLockReadGuard<'_, Snapshot>> {
        self.snapshot.read().map_err(|_| ArmError::internal())
    }

    /// Writes a resource-manager change to the audit log (SPEC T8).
    pub(crate) async fn audit(
        &self,
        caller: &str,
        activity: &str,
        category: &str,
        target: (&str, &str, &str),
        details: serde_json::Value,
    ) -> ArmResult<()> {
        use usher_directory::model::DirectoryObject;
        let actor_name = match self.dir.get_object(caller).await {
            Ok(DirectoryObject::User(u)) => u.user_principal_name,
            Ok(DirectoryObject::ServicePrincipal(s)) => s.display_name,
            _ => caller.to_owned(),
        };
        self.dir
            .audit(usher_directory::AuditEvent {
                activity: activity.into(),
                category: category.into(),
                actor_id: caller.to_owned(),
                actor_name,
                target_id: target.0.into(),
                target_name: target.1.into(),
                target_type: target.2.into(),
                details,
            })
            .await?;
        Ok(())
    }

    /// Refuses unless `caller` may do `action` at `scope` (AuthorizationFailed, 403).
    /// At management-group scopes Global Administrators are authorised too: Azure lets them
    /// elevate to the root scope; usher makes that standing, so a fresh tenant's administrator
    /// can build the tree above its subscriptions.
    pub async fn authorize(&self, caller: &str, scope: &Scope, action: &str) -> ArmResult<()> {
        if scope.is_management_group()
            && self
                .dir
                .has_directory_role(caller, &[usher_core::well_known::GLOBAL_ADMIN_ROLE])
                .await?
        {
            return Ok(());
        }
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        if self
            .snapshot()?
            .check(&refs, scope, ActionKind::Action, action)
            .allowed
        {
            Ok(())
        } else {
            Err(ArmError::authorization_failed(caller, action, scope.as_str()))
        }
    }
}
