//! Azure's built-in roles that usher knows, with their exact ids and permissions.

use crate::snapshot::{Permission, RoleDefinition};

/// Built-in role ids.
pub mod role_ids {
    /// Owner.
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    /// Contributor.
    pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    /// Reader.
    pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    /// User Access Administrator.
    pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
    /// Virtual Machine Administrator Login.
    pub const VM_ADMINISTRATOR_LOGIN: &str = "1c0163c0-47e6-4577-8991-ea5c82e286e4";
    /// Virtual Machine User Login.
    pub const VM_USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";
}

/// (id, name) of every built-in role.
pub const BUILTIN_ROLES: &[(&str, &str)] = &[
    (role_ids::OWNER, "Owner"),
    (role_ids::CONTRIBUTOR, "Contributor"),
    (role_ids::READER, "Reader"),
    (role_ids::USER_ACCESS_ADMINISTRATOR, "User Access Administrator"),
    (
        role_ids::VM_ADMINISTRATOR_LOGIN,
        "Virtual Machine Administrator Login",
    ),
    (role_ids::VM_USER_LOGIN, "Virtual Machine User Login"),
];

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const VM_LOGIN_READS: &[&str] = &[
    "Microsoft.Network/publicIPAddresses/read",
    "Microsoft.Network/virtualNetworks/read",
    "Microsoft.Network/loadBalancers/read",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Compute/virtualMachines/*/read",
    "Microsoft.HybridCompute/machines/*/read",
    "Microsoft.HybridConnectivity/endpoints/listCredentials/action",
];

/// The built-in role definitions.
pub(crate) fn builtin_roles() -> Vec<RoleDefinition> {
    let role = |id: &str, name: &str, p: Permission| RoleDefinition {
        id: id.to_owned(),
        name: name.to_owned(),
        permissions: vec![p],
        assignable_scopes: vec!["/".to_owned()],
    };
    vec![
        role(
            role_ids::OWNER,
            "Owner",
            Permission {
                actions: v(&["*"]),
                ..Default::default()
            },
        ),
        role(
            role_ids::CONTRIBUTOR,
            "Contributor",
            Permission {
                actions: v(&["*"]),
                not_actions: v(&[
                    "Microsoft.Authorization/*/Delete",
                    "Microsoft.Authorization/*/Write",
                    "Microsoft.Authorization/elevateAccess/Action",
                    "Microsoft.Blueprint/blueprintAssignments/write",
                    "Microsoft.Blueprint/blueprintAssignments/delete",
                    "Microsoft.Compute/galleries/share/action",
                    "Microsoft.Purview/consents/write",
                    "Microsoft.Purview/consents/delete",
                    "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                    "Microsoft.Subscription/cancel/action",
                    "Microsoft.Subscription/enable/action",
                ]),
                ..Default::default()
            },
        ),
        role(
            role_ids::READER,
            "Reader",
            Permission {
                actions: v(&["*/read"]),
                ..Default::default()
            },
        ),
        role(
            role_ids::USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            Permission {
                actions: v(&["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"]),
                ..Default::default()
            },
        ),
        role(
            role_ids::VM_ADMINISTRATOR_LOGIN,
            "Virtual Machine Administrator Login",
            Permission {
                actions: v(VM_LOGIN_READS),
                data_actions: v(&[
                    "Microsoft.Compute/virtualMachines/login/action",
                    "Microsoft.Compute/virtualMachines/loginAsAdmin/action",
                    "Microsoft.HybridCompute/machines/login/action",
                    "Microsoft.HybridCompute/machines/loginAsAdmin/action",
                ]),
                ..Default::default()
            },
        ),
        role(
            role_ids::VM_USER_LOGIN,
            "Virtual Machine User Login",
            Permission {
                actions: v(VM_LOGIN_READS),
                data_actions: v(&[
                    "Microsoft.Compute/virtualMachines/login/action",
                    "Microsoft.HybridCompute/machines/login/action",
                ]),
                ..Default::default()
            },
        ),
    ]
}
