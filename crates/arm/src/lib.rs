//! usher's resource manager (SPEC A1, R1–R4): subscriptions, resource groups, role definitions and
//! role assignments with Azure's semantics. Every write is authorised by the RBAC engine itself
//! (R4). The engine's snapshot is loaded at start and updated with every change.
#![warn(missing_docs)]

mod error;
mod groups;
mod login;
mod rbac;
mod shapes;

use std::sync::{Arc, RwLock};

pub use error::ArmError;
pub use rbac::AssignmentFilter;
use usher_authz::{ActionKind, Scope, Snapshot};
use usher_directory::Directory;

/// Result of resource-manager operations.
pub type ArmResult<T> = Result<T, ArmError>;

/// Record kinds of the resource manager.
pub mod kinds {
    /// Subscriptions.
    pub const SUBSCRIPTION: &str = "subscription";
    /// Resource groups (id: lower-cased ARM id).
    pub const RESOURCE_GROUP: &str = "resource_group";
    /// Role assignments (id: the assignment's name).
    pub const ROLE_ASSIGNMENT: &str = "role_assignment";
}

/// The resource manager.
#[derive(Debug, Clone)]
pub struct Arm {
    dir: Directory,
    snapshot: Arc<RwLock<Snapshot>>,
}

impl Arm {
    /// Loads the role assignments into the engine.
    pub async fn load(dir: Directory) -> ArmResult<Self> {
        let mut snapshot = Snapshot::with_builtin_roles();
        for a in rbac::load_assignments(&dir).await? {
            snapshot.upsert_assignment(a);
        }
        Ok(Self {
            dir,
            snapshot: Arc::new(RwLock::new(snapshot)),
        })
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

    /// Refuses unless `caller` may do `action` at `scope` (AuthorizationFailed, 403).
    pub async fn authorize(&self, caller: &str, scope: &Scope, action: &str) -> ArmResult<()> {
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
