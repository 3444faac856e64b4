//! The ARM-shaped API (SPEC A1, R1–R4): subscriptions, resource groups, role definitions and
//! assignments with Azure's codes; every write authorised by RBAC.

use serde_json::{Value, json};
use usher_testkit::{TestServer, spawn};

const VM_USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

async fn default_sub(s: &TestServer, admin: &str) -> String {
    let (st, subs) = s
        .api("GET", "/subscriptions?api-version=2022-12-01", admin, None)
        .await;
    assert_eq!(st, 200, "{subs}");
    subs["value"][0]["subscriptionId"].as_str().unwrap().to_owned()
}

fn assignment(sub: &str, role: &str, principal: &str) -> Value {
    json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal}})
}

async fn user_token(s: &TestServer, upn: &str, pw: &str) -> (String, String) {
    let id = s.create_user(upn, pw, false).await;
    let (_, t) = s.password_token(upn, pw).await;
    (id, t["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn subscriptions_and_resource_groups() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let (st, one) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}?api-version=2020-01-01"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(one["tenantId"], s.tenant_id);
    assert_eq!(one["state"], "Enabled");
    let (st, tenants) = s
        .api("GET", "/tenants?api-version=2020-01-01", &admin, None)
        .await;
    assert_eq!(
        (st, tenants["value"][0]["tenantId"].clone()),
        (200, json!(s.tenant_id))
    );
    // A user with no role sees no subscription.
    let (_, ann) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (st, none) = s.api("GET", "/subscriptions", &ann, None).await;
    assert_eq!((st, none["value"].as_array().unwrap().len()), (200, 0));
    let (st, b) = s.api("GET", &format!("/subscriptions/{sub}"), &ann, None).await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (404, json!("SubscriptionNotFound"))
    );

    // Resource groups: create (201), update (200), case-insensitive paths, any api-version.
    let rg = format!("/subscriptions/{sub}/resourceGroups/myResourceGroup?api-version=2021-04-01");
    let (st, created) = s
        .api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(
        created["id"],
        format!("/subscriptions/{sub}/resourceGroups/myResourceGroup")
    );
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    let (st, _) = s
        .api(
            "PUT",
            &rg,
            &admin,
            Some(json!({"location": "southcentralus", "tags": {"env": "test"}})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, got) = s
        .api(
            "GET",
            &format!("/SUBSCRIPTIONS/{sub}/resourcegroups/MYRESOURCEGROUP?api-version=1999-01-01"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["name"], "myResourceGroup", "the name keeps its case");
    assert_eq!(got["tags"]["env"], "test");
    let (_, listed) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/resourcegroups"),
            &admin,
            None,
        )
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    // Bad input: a clear ARM error, nothing created.
    for (body, path, code) in [
        (
            json!({}),
            format!("/subscriptions/{sub}/resourceGroups/rg2"),
            "LocationRequired",
        ),
        (
            json!({"location": "x"}),
            format!("/subscriptions/{sub}/resourceGroups/bad%20name"),
            "InvalidResourceGroup",
        ),
        (
            json!({"location": "westus"}),
            format!("/subscriptions/{sub}/resourceGroups/myResourceGroup"),
            "InvalidResourceGroupLocation",
        ),
    ] {
        let (st, b) = s.api("PUT", &path, &admin, Some(body)).await;
        assert!(st == 400 || st == 409, "{path}: {st} {b}");
        assert_eq!(b["error"]["code"], code, "{b}");
    }
    let (_, listed) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/resourcegroups"),
            &admin,
            None,
        )
        .await;
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    // A user with no role may not create resource groups.
    let (st, b) = s
        .api(
            "PUT",
            &format!("/subscriptions/{sub}/resourceGroups/annsgroup"),
            &ann,
            Some(json!({"location": "westus"})),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (403, json!("AuthorizationFailed"))
    );
    let (st, b) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/resourceGroups/nope"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (404, json!("ResourceGroupNotFound"))
    );
    assert_eq!(s.api("DELETE", &rg, &admin, None).await.0, 200);
    assert_eq!(s.api("DELETE", &rg, &admin, None).await.0, 204);
}

#[tokio::test]
async fn role_definitions_and_assignments() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let (_, defs) = s.api("GET", &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName%20eq%20'Virtual%20Machine%20User%20Login'"), &admin, None).await;
    assert_eq!(defs["value"].as_array().unwrap().len(), 1);
    assert_eq!(defs["value"][0]["name"], VM_USER_LOGIN);
    assert_eq!(
        defs["value"][0]["properties"]["permissions"][0]["dataActions"][0],
        "Microsoft.Compute/virtualMachines/login/action"
    );
    let (_, all) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions"),
            &admin,
            None,
        )
        .await;
    assert_eq!(all["value"].as_array().unwrap().len(), 6);

    s.api(
        "PUT",
        &format!("/subscriptions/{sub}/resourceGroups/rg1"),
        &admin,
        Some(json!({"location": "westus"})),
    )
    .await;
    let (ann_id, ann) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let rg_scope = format!("/subscriptions/{sub}/resourceGroups/rg1");
    let path = |scope: &str, name: &str| {
        format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01")
    };
    let name1 = "05c5a614-a7d6-4502-b150-c2fb455033ff";
    let (st, a) = s
        .api(
            "PUT",
            &path(&rg_scope, name1),
            &admin,
            Some(assignment(&sub, VM_USER_LOGIN, &ann_id)),
        )
        .await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["properties"]["principalType"], "User");
    assert_eq!(
        a["properties"]["scope"], rg_scope,
        "the scope keeps the caller's case, as in Azure"
    );
    assert_eq!(
        a["id"],
        format!("{rg_scope}/providers/Microsoft.Authorization/roleAssignments/{name1}")
    );
    let (_, defs_at_rg) = s
        .api(
            "GET",
            &format!("{rg_scope}/providers/Microsoft.Authorization/roleDefinitions"),
            &admin,
            None,
        )
        .await;
    assert!(
        defs_at_rg["value"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
            ))
    );
    // The same again under the same name is idempotent; under another name it already exists.
    assert_eq!(
        s.api(
            "PUT",
            &path(&rg_scope, name1),
            &admin,
            Some(assignment(&sub, VM_USER_LOGIN, &ann_id))
        )
        .await
        .0,
        200
    );
    let (st, b) = s
        .api(
            "PUT",
            &path(&rg_scope, "11111111-2222-4333-8444-555555555555"),
            &admin,
            Some(assignment(&sub, VM_USER_LOGIN, &ann_id)),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (409, json!("RoleAssignmentExists"))
    );
    // Rejections with Azure's codes.
    let cases = [
        (
            path(&rg_scope, "not-a-guid"),
            assignment(&sub, VM_USER_LOGIN, &ann_id),
            400,
            "InvalidRoleAssignmentId",
        ),
        (
            path(&rg_scope, "22222222-2222-4333-8444-555555555555"),
            assignment(&sub, VM_USER_LOGIN, "00000000-0000-0000-0000-00000000dead"),
            400,
            "PrincipalNotFound",
        ),
        (
            path(&rg_scope, "33333333-2222-4333-8444-555555555555"),
            assignment(&sub, "99999999-9999-9999-9999-999999999999", &ann_id),
            400,
            "RoleDefinitionDoesNotExist",
        ),
        (
            path(
                &format!("/subscriptions/{sub}/bogus/scope"),
                "44444444-2222-4333-8444-555555555555",
            ),
            assignment(&sub, VM_USER_LOGIN, &ann_id),
            400,
            "InvalidRoleAssignmentScope",
        ),
    ];
    for (p, body, status, code) in cases {
        let (st, b) = s.api("PUT", &p, &admin, Some(body)).await;
        assert_eq!(
            (st, b["error"]["code"].clone()),
            (status, json!(code)),
            "{p}: {b}"
        );
    }
    // Ann (a login role only) cannot create role assignments nor see the subscription's assignments list... but sees her subscription.
    let (st, b) = s
        .api(
            "PUT",
            &path(&rg_scope, "55555555-2222-4333-8444-555555555555"),
            &ann,
            Some(assignment(&sub, VM_USER_LOGIN, &ann_id)),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (403, json!("AuthorizationFailed"))
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.Authorization/roleAssignments/write")
    );
    let (_, subs) = s.api("GET", "/subscriptions", &ann, None).await;
    assert_eq!(
        subs["value"].as_array().unwrap().len(),
        1,
        "a role below the subscription makes it visible"
    );
    // A Contributor manages resource groups but cannot grant roles (Owner and Contributor never grant DataActions either).
    let (bob_id, bob) = user_token(&s, "bob@contoso.test", "Blue-river-72").await;
    let (st, _) = s
        .api(
            "PUT",
            &path(
                &format!("/subscriptions/{sub}"),
                "66666666-2222-4333-8444-555555555555",
            ),
            &admin,
            Some(assignment(&sub, CONTRIBUTOR, &bob_id)),
        )
        .await;
    assert_eq!(st, 201);
    assert_eq!(
        s.api(
            "PUT",
            &format!("/subscriptions/{sub}/resourceGroups/bobs"),
            &bob,
            Some(json!({"location": "westus"}))
        )
        .await
        .0,
        201
    );
    let (st, b) = s
        .api(
            "PUT",
            &path(&rg_scope, "77777777-2222-4333-8444-555555555555"),
            &bob,
            Some(assignment(&sub, VM_USER_LOGIN, &bob_id)),
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (403, json!("AuthorizationFailed"))
    );

    // Filters: atScope(), principalId eq, assignedTo() through a group.
    let list = |scope: String, filter: &str| {
        let s = &s;
        let admin = admin.clone();
        let f = filter.to_owned();
        async move {
            let q = if f.is_empty() {
                String::new()
            } else {
                format!("&$filter={}", f.replace(' ', "%20"))
            };
            let (st, b) = s
                .api(
                    "GET",
                    &format!(
                        "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01{q}"
                    ),
                    &admin,
                    None,
                )
                .await;
            assert_eq!(st, 200, "{b}");
            b["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let sub_scope = format!("/subscriptions/{sub}");
    let at_sub = list(sub_scope.clone(), "atScope()").await;
    assert!(
        !at_sub.contains(&name1.to_owned()),
        "atScope() leaves out sub-scopes: {at_sub:?}"
    );
    assert!(
        list(sub_scope.clone(), "").await.contains(&name1.to_owned()),
        "no filter includes sub-scopes"
    );
    assert_eq!(
        list(sub_scope.clone(), &format!("principalId eq '{ann_id}'")).await,
        vec![name1.to_owned()]
    );
    let (_, g) = s
        .api(
            "POST",
            "/v1.0/groups",
            &admin,
            Some(json!({"displayName": "linux-users"})),
        )
        .await;
    let gid = g["id"].as_str().unwrap().to_owned();
    s.api(
        "POST",
        &format!("/v1.0/groups/{gid}/members/$ref"),
        &admin,
        Some(json!({"@odata.id": format!("{}/v1.0/directoryObjects/{bob_id}", s.url)})),
    )
    .await;
    let (st, ga) = s
        .api(
            "PUT",
            &path(&rg_scope, "88888888-2222-4333-8444-555555555555"),
            &admin,
            Some(assignment(&sub, VM_USER_LOGIN, &gid)),
        )
        .await;
    assert_eq!(
        (st, ga["properties"]["principalType"].clone()),
        (201, json!("Group"))
    );
    let bobs = list(sub_scope.clone(), &format!("assignedTo('{bob_id}')")).await;
    assert!(
        bobs.contains(&"88888888-2222-4333-8444-555555555555".to_owned())
            && bobs.contains(&"66666666-2222-4333-8444-555555555555".to_owned()),
        "{bobs:?}"
    );
    let (st, b) = s
        .api(
            "GET",
            &format!(
                "{sub_scope}/providers/Microsoft.Authorization/roleAssignments?$filter=roleName%20eq%20'x'"
            ),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (400, json!("InvalidFilterInQueryString"))
    );
    // Delete: 200 with the assignment, then 204.
    let (st, del) = s.api("DELETE", &path(&rg_scope, name1), &admin, None).await;
    assert_eq!((st, del["name"].clone()), (200, json!(name1)));
    assert_eq!(
        s.api("DELETE", &path(&rg_scope, name1), &admin, None).await.0,
        204
    );
    assert!(!list(sub_scope, "").await.contains(&name1.to_owned()));
}

#[tokio::test]
async fn login_check_follows_roles_groups_and_scopes() {
    const VM_ADMIN_LOGIN: &str = "1c0163c0-47e6-4577-8991-ea5c82e286e4";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg1 = format!("/subscriptions/{sub}/resourceGroups/rg1");
    let vm1 = format!("{rg1}/providers/Microsoft.Compute/virtualMachines/vm1");
    let vm2 = format!("{rg1}/providers/Microsoft.Compute/virtualMachines/vm2");
    let other =
        format!("/subscriptions/{sub}/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/vm1");
    let put = |scope: String, name: &'static str, body: Value| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let (st, b) = s
                .api(
                    "PUT",
                    &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                    &admin,
                    Some(body),
                )
                .await;
            assert_eq!(st, 201, "{b}");
        }
    };
    let check = |principal: String, machine: String| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let (st, b) = s
                .api(
                    "GET",
                    &format!("/usher/loginCheck?principal={principal}&machine={machine}"),
                    &admin,
                    None,
                )
                .await;
            assert_eq!(st, 200, "{b}");
            b
        }
    };
    let (ann_id, ann) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (bob_id, _) = user_token(&s, "bob@contoso.test", "Blue-river-72").await;
    // Owner at subscription scope cannot log in (the seed's separation).
    put(
        format!("/subscriptions/{sub}"),
        "10000000-0000-4000-8000-000000000001",
        assignment(&sub, OWNER, &bob_id),
    )
    .await;
    assert_eq!(check(bob_id.clone(), vm1.clone()).await["decision"], "deny");
    // A resource-group assignment covers every machine in it, and no other.
    put(
        rg1.clone(),
        "10000000-0000-4000-8000-000000000002",
        assignment(&sub, VM_USER_LOGIN, &ann_id),
    )
    .await;
    for vm in [&vm1, &vm2] {
        let b = check("ann@contoso.test".into(), vm.clone()).await;
        assert_eq!(
            (b["decision"].clone(), b["assignments"][0].clone()),
            (json!("user"), json!("10000000-0000-4000-8000-000000000002"))
        );
    }
    assert_eq!(check(ann_id.clone(), other.clone()).await["decision"], "deny");
    // A group two levels deep grants admin.
    let (_, outer) = s
        .api(
            "POST",
            "/v1.0/groups",
            &admin,
            Some(json!({"displayName": "vm-admins"})),
        )
        .await;
    let (_, inner) = s
        .api(
            "POST",
            "/v1.0/groups",
            &admin,
            Some(json!({"displayName": "oncall"})),
        )
        .await;
    let (outer, inner) = (
        outer["id"].as_str().unwrap().to_owned(),
        inner["id"].as_str().unwrap().to_owned(),
    );
    let member = |id: &str| json!({"@odata.id": format!("{}/v1.0/directoryObjects/{id}", s.url)});
    s.api(
        "POST",
        &format!("/v1.0/groups/{outer}/members/$ref"),
        &admin,
        Some(member(&inner)),
    )
    .await;
    s.api(
        "POST",
        &format!("/v1.0/groups/{inner}/members/$ref"),
        &admin,
        Some(member(&bob_id)),
    )
    .await;
    put(
        format!("/subscriptions/{sub}"),
        "10000000-0000-4000-8000-000000000003",
        assignment(&sub, VM_ADMIN_LOGIN, &outer),
    )
    .await;
    assert_eq!(check(bob_id.clone(), other.clone()).await["decision"], "admin");
    // The machine's login list: ann (user, directly) and bob (admin, through the nested group).
    let (st, logins) = s
        .api(
            "GET",
            &format!("/usher/machineLogins?machine={other}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{logins}");
    let rights: Vec<(String, String)> = logins["logins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["principalId"].as_str().unwrap().to_owned(),
                l["right"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rights,
        {
            let mut v = vec![(bob_id.clone(), "admin".to_owned())];
            v.sort();
            v
        },
        "rg2's machine: only the subscription-wide admin group"
    );
    let (_, logins) = s
        .api(
            "GET",
            &format!("/usher/machineLogins?machine={vm1}"),
            &admin,
            None,
        )
        .await;
    let mut got: Vec<(String, String)> = logins["logins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["principalId"].as_str().unwrap().to_owned(),
                l["right"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (ann_id.clone(), "user".to_owned()),
        (bob_id.clone(), "admin".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    // Removing the membership removes the right at once.
    s.api(
        "DELETE",
        &format!("/v1.0/groups/{inner}/members/{bob_id}/$ref"),
        &admin,
        None,
    )
    .await;
    assert_eq!(check(bob_id.clone(), other.clone()).await["decision"], "deny");
    // A disabled account is denied whatever its roles.
    s.api(
        "PATCH",
        &format!("/v1.0/users/{ann_id}"),
        &admin,
        Some(json!({"accountEnabled": false})),
    )
    .await;
    assert_eq!(check(ann_id.clone(), vm1.clone()).await["decision"], "deny");
    // Only someone who may read role assignments at the machine may ask; bad input is refused.
    let (st, b) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal={bob_id}&machine={vm1}"),
            &ann,
            None,
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (403, json!("AuthorizationFailed"))
    );
    let (st, b) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal={bob_id}&machine={rg1}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((st, b["error"]["code"].clone()), (400, json!("InvalidMachine")));
    let (st, b) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=nobody@contoso.test&machine={vm1}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (st, b["error"]["code"].clone()),
        (404, json!("PrincipalNotFound"))
    );
}
