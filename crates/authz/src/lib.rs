//! Pure RBAC evaluation (SPEC R1–R3, R5): no I/O, no clock. Role definitions are compiled once
//! into matchers; assignments are indexed by principal; a [`Snapshot`] is updated incrementally
//! and answers "may these principals do this action on this resource?" and the login decision
//! for a machine, with the assignments that decided it. [`conditional`] evaluates Conditional
//! Access policies (SPEC C1–C2) for a sign-in, equally pure.
//!
//! Azure's semantics: a role grants an action if one of its permission blocks has a matching
//! `Actions` pattern and no matching `NotActions` pattern in the same block (likewise
//! `DataActions` / `NotDataActions`); `*` matches any characters, `/` included; matching is
//! case-insensitive; Actions never match DataActions. An assignment applies to its scope and
//! everything below it. There are no deny assignments: what no assignment grants is denied.
#![warn(missing_docs)]

mod builtin;
pub mod conditional;
mod pattern;
mod scope;
mod snapshot;

pub use builtin::{BUILTIN_ROLES, role_ids};
pub use pattern::Pattern;
pub use scope::{Scope, ScopeError};
pub use snapshot::{
    ActionKind, Assignment, Decision, LoginDecision, LoginRight, Permission, RoleDefinition, Snapshot,
};

/// The data action that lets a principal log in to a virtual machine as a regular user.
pub const VM_LOGIN: &str = "Microsoft.Compute/virtualMachines/login/action";
/// The data action that lets a principal log in to a virtual machine as an administrator.
pub const VM_LOGIN_AS_ADMIN: &str = "Microsoft.Compute/virtualMachines/loginAsAdmin/action";
