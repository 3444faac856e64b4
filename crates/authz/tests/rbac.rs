//! Azure RBAC semantics (SPEC R1, R3, R5) on the pure engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use usher_authz::{
    ActionKind, Assignment, LoginRight, Permission, RoleDefinition, Scope, Snapshot, role_ids,
};

const SUB: &str = "/subscriptions/11111111-1111-1111-1111-111111111111";

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn vm(rg: &str, name: &str) -> Scope {
    scope(&format!(
        "{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
    ))
}

fn assign(s: &mut Snapshot, id: &str, at: &str, role: &str, principal: &str) {
    s.upsert_assignment(Assignment {
        id: id.into(),
        scope: scope(at),
        role_id: role.into(),
        principal_id: principal.into(),
    });
}

#[test]
fn owner_and_contributor_do_not_grant_login() {
    let mut s = Snapshot::with_builtin_roles();
    assign(&mut s, "a1", SUB, role_ids::OWNER, "ann");
    assign(&mut s, "a2", SUB, role_ids::CONTRIBUTOR, "bob");
    for p in ["ann", "bob"] {
        assert_eq!(
            s.login_decision(&[p], &vm("rg1", "vm1")).right,
            LoginRight::Deny,
            "{p}"
        );
    }
    // ...though they control the machine.
    let d = s.check(
        &["ann"],
        &vm("rg1", "vm1"),
        ActionKind::Action,
        "Microsoft.Compute/virtualMachines/delete",
    );
    assert!(d.allowed);
    assert_eq!(d.granted_by, vec!["a1"]);
    // Contributor's NotActions keep it from assigning roles; Owner and User Access Administrator may.
    let write = "Microsoft.Authorization/roleAssignments/write";
    assert!(!s.check(&["bob"], &scope(SUB), ActionKind::Action, write).allowed);
    assert!(s.check(&["ann"], &scope(SUB), ActionKind::Action, write).allowed);
    assign(&mut s, "a3", SUB, role_ids::USER_ACCESS_ADMINISTRATOR, "uaa");
    assert!(s.check(&["uaa"], &scope(SUB), ActionKind::Action, write).allowed);
    assert!(
        !s.check(
            &["uaa"],
            &scope(SUB),
            ActionKind::Action,
            "Microsoft.Compute/virtualMachines/delete"
        )
        .allowed
    );
}

#[test]
fn login_roles_inherit_down_the_scope_tree_and_admin_wins() {
    let mut s = Snapshot::with_builtin_roles();
    assign(
        &mut s,
        "u1",
        &format!("{SUB}/resourceGroups/rg1"),
        role_ids::VM_USER_LOGIN,
        "ann",
    );
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg1", "vm1")).right,
        LoginRight::User
    );
    assert_eq!(
        s.login_decision(&["ann"], &vm("RG1", "VM1")).right,
        LoginRight::User,
        "case-insensitive"
    );
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg2", "vm1")).right,
        LoginRight::Deny,
        "another resource group"
    );
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg10", "vm1")).right,
        LoginRight::Deny,
        "segment boundary"
    );
    // An admin assignment through a group at subscription scope outranks the user role.
    assign(
        &mut s,
        "g1",
        SUB,
        role_ids::VM_ADMINISTRATOR_LOGIN,
        "linux-admins",
    );
    let d = s.login_decision(&["ann", "linux-admins"], &vm("rg1", "vm1"));
    assert_eq!(d.right, LoginRight::Admin);
    assert_eq!(d.decided_by, vec!["g1"]);
    // Removing assignments takes effect at once.
    s.remove_assignment("g1");
    assert_eq!(
        s.login_decision(&["ann", "linux-admins"], &vm("rg1", "vm1"))
            .right,
        LoginRight::User
    );
    s.remove_assignment("U1");
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg1", "vm1")).right,
        LoginRight::Deny
    );
    assert_eq!(s.assignment_count(), 0);
}

#[test]
fn actions_never_match_data_actions_and_not_data_actions_subtract() {
    let mut s = Snapshot::with_builtin_roles();
    // A custom role with every action but no data action: no login.
    s.upsert_role(RoleDefinition {
        id: "c0000000-0000-0000-0000-000000000001".into(),
        name: "Everything but data".into(),
        permissions: vec![Permission {
            actions: vec!["*".into()],
            ..Default::default()
        }],
        assignable_scopes: vec![SUB.into()],
    });
    assign(&mut s, "c1", SUB, "c0000000-0000-0000-0000-000000000001", "ann");
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg1", "vm1")).right,
        LoginRight::Deny
    );
    // All data actions except loginAsAdmin: a regular user.
    s.upsert_role(RoleDefinition {
        id: "c0000000-0000-0000-0000-000000000002".into(),
        name: "Login, never admin".into(),
        permissions: vec![Permission {
            data_actions: vec!["Microsoft.Compute/virtualMachines/*".into()],
            not_data_actions: vec!["Microsoft.Compute/virtualMachines/loginAsAdmin/action".into()],
            ..Default::default()
        }],
        assignable_scopes: vec!["/".into()],
    });
    assign(&mut s, "c2", SUB, "c0000000-0000-0000-0000-000000000002", "bob");
    assert_eq!(
        s.login_decision(&["bob"], &vm("rg1", "vm1")).right,
        LoginRight::User
    );
    // Not* subtracts only within its own block: another block may still grant.
    s.upsert_role(RoleDefinition {
        id: "c0000000-0000-0000-0000-000000000003".into(),
        name: "Two blocks".into(),
        permissions: vec![
            Permission {
                data_actions: vec!["*".into()],
                not_data_actions: vec!["*/loginAsAdmin/action".into()],
                ..Default::default()
            },
            Permission {
                data_actions: vec!["Microsoft.Compute/virtualMachines/loginAsAdmin/action".into()],
                ..Default::default()
            },
        ],
        assignable_scopes: vec!["/".into()],
    });
    assign(&mut s, "c3", SUB, "c0000000-0000-0000-0000-000000000003", "cy");
    assert_eq!(
        s.login_decision(&["cy"], &vm("rg1", "vm1")).right,
        LoginRight::Admin
    );
}

#[test]
fn unknown_roles_and_principals_grant_nothing() {
    let mut s = Snapshot::with_builtin_roles();
    assign(&mut s, "x1", SUB, "99999999-0000-0000-0000-000000000000", "ann");
    assert_eq!(
        s.login_decision(&["ann"], &vm("rg1", "vm1")).right,
        LoginRight::Deny
    );
    assert!(
        !s.check(&["ann"], &scope(SUB), ActionKind::Action, "*/read")
            .allowed
    );
    assert_eq!(s.login_decision(&[], &vm("rg1", "vm1")).right, LoginRight::Deny);
    // Deleting a role definition revokes what it granted.
    assign(&mut s, "x2", SUB, role_ids::VM_USER_LOGIN, "bob");
    assert_eq!(
        s.login_decision(&["bob"], &vm("rg1", "vm1")).right,
        LoginRight::User
    );
    s.remove_role(role_ids::VM_USER_LOGIN);
    assert_eq!(
        s.login_decision(&["bob"], &vm("rg1", "vm1")).right,
        LoginRight::Deny
    );
}

#[test]
fn builtins_have_azures_ids_and_names() {
    let s = Snapshot::with_builtin_roles();
    for (id, name) in [
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
        (
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
            "User Access Administrator",
        ),
        (
            "1c0163c0-47e6-4577-8991-ea5c82e286e4",
            "Virtual Machine Administrator Login",
        ),
        (
            "fb879df8-f326-4884-b1cf-06f3ad86be52",
            "Virtual Machine User Login",
        ),
    ] {
        assert_eq!(s.role(id).map(|r| r.name.as_str()), Some(name));
    }
    assert!(
        s.role(role_ids::VM_USER_LOGIN).unwrap().permissions[0]
            .data_actions
            .iter()
            .all(|a| !a.contains("loginAsAdmin"))
    );
}

#[test]
fn the_lower_cased_login_actions_match_the_public_constants() {
    // The engine matches against pre-lower-cased copies; the decision must equal a generic check.
    let mut s = Snapshot::with_builtin_roles();
    assign(&mut s, "a", SUB, role_ids::VM_ADMINISTRATOR_LOGIN, "ANN-UPPER");
    let d = s.check(
        &["ann-upper"],
        &vm("rg1", "vm1"),
        ActionKind::DataAction,
        usher_authz::VM_LOGIN_AS_ADMIN,
    );
    assert!(d.allowed);
    assert_eq!(
        s.login_decision(&["Ann-Upper"], &vm("rg1", "vm1")).right,
        LoginRight::Admin
    );
}

#[test]
fn login_grants_list_everyone_with_a_right_on_a_machine() {
    let mut s = Snapshot::with_builtin_roles();
    assign(
        &mut s,
        "u",
        &format!("{SUB}/resourceGroups/rg1"),
        role_ids::VM_USER_LOGIN,
        "ann",
    );
    assign(&mut s, "a", SUB, role_ids::VM_ADMINISTRATOR_LOGIN, "admins");
    assign(&mut s, "o", SUB, role_ids::OWNER, "bob");
    assign(
        &mut s,
        "x",
        &format!("{SUB}/resourceGroups/rg2"),
        role_ids::VM_USER_LOGIN,
        "cy",
    );
    let g = s.login_grants(&vm("rg1", "vm1"));
    assert_eq!(
        g,
        vec![
            ("admins".to_owned(), LoginRight::Admin, "a".to_owned()),
            ("ann".to_owned(), LoginRight::User, "u".to_owned())
        ]
    );
}

#[test]
fn management_groups_pass_roles_down_their_tree() {
    let mg = |id: &str| format!("/providers/Microsoft.Management/managementGroups/{id}");
    let mut s = Snapshot::with_builtin_roles();
    s.set_root_management_group("tenant-1");
    assign(
        &mut s,
        "root-owner",
        &mg("Tenant-1"),
        role_ids::OWNER,
        "root-admin",
    );
    assign(&mut s, "prod-reader", &mg("prod"), role_ids::READER, "auditor");
    let read = "Microsoft.Compute/virtualMachines/read";
    let machine = vm("rg1", "vm1");
    // The subscription sits in the root group until it is moved: the root owner reaches it, the
    // prod reader does not.
    assert!(
        s.check(&["root-admin"], &machine, ActionKind::Action, read)
            .allowed
    );
    assert!(!s.check(&["auditor"], &machine, ActionKind::Action, read).allowed);
    // prod under platform under the root; the subscription in prod.
    s.set_management_group_parent("prod", Some("platform"));
    s.set_subscription_parent("11111111-1111-1111-1111-111111111111", Some("PROD"));
    let d = s.check(&["auditor"], &machine, ActionKind::Action, read);
    assert!(d.allowed);
    assert_eq!(d.granted_by, vec!["prod-reader"]);
    assert!(
        s.check(&["root-admin"], &machine, ActionKind::Action, read)
            .allowed,
        "root covers all"
    );
    assert!(s.covers(&scope(&mg("platform")), &scope(&mg("prod"))));
    assert!(!s.covers(&scope(&mg("prod")), &scope(&mg("platform"))));
    // Moved back to the root: the prod reader loses it at once.
    s.set_subscription_parent("11111111-1111-1111-1111-111111111111", None);
    assert!(!s.check(&["auditor"], &machine, ActionKind::Action, read).allowed);
    // A cycle in a corrupt hierarchy ends the walk instead of looping.
    s.set_management_group_parent("a", Some("b"));
    s.set_management_group_parent("b", Some("a"));
    assert!(!s.covers(&scope(&mg("x")), &scope(&mg("a"))));
}
