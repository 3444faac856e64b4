//! Virtual machines, their managed identities and extensions (SPEC A2, A3), custom roles (R1)
//! and management groups (A1), over HTTPS.
//!
//! The machine's agent comes with the next layer; where a test needs the agent's report it calls
//! the resource manager's report function in process with the VM's identity as the caller (the
//! same function the agent's endpoint will call).

use serde_json::{Value, json};
use usher_arm::ExtensionOutcome;
use usher_testkit::{TestServer, spawn};

const VM_USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

async fn default_sub(s: &TestServer, admin: &str) -> String {
    let (st, subs) = s.api("GET", "/subscriptions", admin, None).await;
    assert_eq!(st, 200, "{subs}");
    subs["value"][0]["subscriptionId"].as_str().unwrap().to_owned()
}

async fn group(s: &TestServer, admin: &str, sub: &str, rg: &str) -> String {
    let path = format!("/subscriptions/{sub}/resourceGroups/{rg}");
    let (st, b) = s
        .api("PUT", &path, admin, Some(json!({"location": "southcentralus"})))
        .await;
    assert!(st == 201 || st == 200, "{b}");
    path
}

fn vm_body(image: (&str, &str, &str), identity: bool, password: Option<&str>) -> Value {
    let mut body = json!({
        "location": "southcentralus",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_DS1_v2"},
            "storageProfile": {"imageReference": {"publisher": image.0, "offer": image.1, "sku": image.2, "version": "latest"}},
            "osProfile": {"adminUsername": "azureuser"},
        },
    });
    if let Some(p) = password {
        body["properties"]["osProfile"]["adminPassword"] = json!(p);
    }
    if identity {
        body["identity"] = json!({"type": "SystemAssigned"});
    }
    body
}

const WIN2019: (&str, &str, &str) = ("MicrosoftWindowsServer", "WindowsServer", "2019-Datacenter");
const DEBIAN12: (&str, &str, &str) = ("Debian", "debian-12", "12-gen2");

async fn put_vm(s: &TestServer, token: &str, rg: &str, body: Value, name: &str) -> (u16, Value) {
    let path = format!("{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
    s.api("PUT", &path, token, Some(body)).await
}

async fn user_token(s: &TestServer, upn: &str, pw: &str) -> (String, String) {
    let id = s.create_user(upn, pw, false).await;
    let (_, t) = s.password_token(upn, pw).await;
    (id, t["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn virtual_machines_with_system_assigned_identity() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = group(&s, &admin, &sub, "myResourceGroup").await;
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/myVM");

    // The seed's VM: Win2019Datacenter, --assign-identity, azureuser with a password.
    let (st, created) = s
        .api(
            "PUT",
            &format!("{vm}?api-version=2024-11-01"),
            &admin,
            Some(vm_body(WIN2019, true, Some("yourpassword"))),
        )
        .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["id"], vm);
    assert_eq!(created["type"], "Microsoft.Compute/virtualMachines");
    assert_eq!(created["identity"]["type"], "SystemAssigned");
    assert_eq!(created["identity"]["tenantId"], s.tenant_id);
    let principal = created["identity"]["principalId"].as_str().unwrap().to_owned();
    assert_eq!(created["properties"]["osProfile"]["computerName"], "myVM");
    assert_eq!(
        created["properties"]["storageProfile"]["osDisk"]["osType"],
        "Windows"
    );
    assert!(
        created.to_string().find("yourpassword").is_none(),
        "the admin password is never returned: {created}"
    );

    // The identity is a ManagedIdentity service principal that names its VM.
    let (st, sp) = s
        .api(
            "GET",
            &format!("/v1.0/servicePrincipals/{principal}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{sp}");
    assert_eq!(sp["servicePrincipalType"], "ManagedIdentity");
    assert_eq!(sp["displayName"], "myVM");
    assert!(
        sp["alternativeNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == &json!(vm)),
        "{sp}"
    );
    // ...and goes only with its VM.
    let (st, refused) = s
        .api(
            "DELETE",
            &format!("/v1.0/servicePrincipals/{principal}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("managed identity"),
        "{refused}"
    );

    // Paths are case-insensitive; the instance view is there when asked for.
    let lower = vm
        .to_ascii_lowercase()
        .replace("/subscriptions/", "/SUBSCRIPTIONS/");
    let (st, got) = s
        .api("GET", &format!("{lower}?$expand=instanceView"), &admin, None)
        .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["name"], "myVM");
    assert_eq!(got["properties"]["instanceView"]["computerName"], "myVM");
    assert_eq!(
        got["properties"]["instanceView"]["vmAgent"]["statuses"][0]["displayStatus"],
        "Not Ready"
    );
    let (st, list) = s
        .api(
            "GET",
            &format!("{rg}/providers/Microsoft.Compute/virtualMachines"),
            &admin,
            None,
        )
        .await;
    assert_eq!((st, list["value"].as_array().unwrap().len()), (200, 1), "{list}");
    let (st, list) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (st, list["value"][0]["name"].clone()),
        (200, json!("myVM")),
        "{list}"
    );

    // Properties fixed at creation cannot change; tags can.
    let mut moved = vm_body(WIN2019, true, None);
    moved["location"] = json!("westeurope");
    let (st, e) = s.api("PUT", &vm, &admin, Some(moved)).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("PropertyChangeNotAllowed")),
        "{e}"
    );
    let (st, e) = s
        .api("PATCH", &vm, &admin, Some(json!({"tags": {"env": "prod"}})))
        .await;
    assert_eq!((st, e["tags"]["env"].clone()), (200, json!("prod")), "{e}");
    assert_eq!(
        e["identity"]["principalId"], principal,
        "an update keeps the identity"
    );

    // Turning the identity off removes its principal; assigning it again makes a new one.
    let (st, off) = s
        .api("PATCH", &vm, &admin, Some(json!({"identity": {"type": "None"}})))
        .await;
    assert_eq!(st, 200, "{off}");
    assert!(off.get("identity").is_none(), "{off}");
    let (st, _) = s
        .api(
            "GET",
            &format!("/v1.0/servicePrincipals/{principal}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, on) = s
        .api(
            "PATCH",
            &vm,
            &admin,
            Some(json!({"identity": {"type": "SystemAssigned"}})),
        )
        .await;
    assert_eq!(st, 200, "{on}");
    let second = on["identity"]["principalId"].as_str().unwrap().to_owned();
    assert_ne!(second, principal);

    // Refusals, each with its reason.

    let (st, e) = put_vm(
        &s,
        &admin,
        &rg,
        vm_body(("Rocky", "rocky-9", "9"), false, Some("Long-enough-pass-1")),
        "vm2",
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("InvalidParameter")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("Debian12"),
        "{e}"
    );
    let (st, e) = put_vm(&s, &admin, &rg, vm_body(WIN2019, false, None), "vm3").await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("adminPassword"),
        "{e}"
    );
    let mut root = vm_body(DEBIAN12, false, Some("Long-enough-pass-1"));
    root["properties"]["osProfile"]["adminUsername"] = json!("root");
    let (st, e) = put_vm(&s, &admin, &rg, root, "vm4").await;
    assert!(
        st == 400 && e["error"]["message"].as_str().unwrap().contains("reserved"),
        "{e}"
    );
    let (st, e) = put_vm(&s, &admin, &rg, vm_body(DEBIAN12, false, None), "vm5").await;
    assert!(
        st == 400 && e["error"]["message"].as_str().unwrap().contains("SSH public key"),
        "{e}"
    );
    let (st, e) = put_vm(&s, &admin, &rg, vm_body(DEBIAN12, false, Some("x")), "bad name!").await;
    assert_eq!(st, 400, "{e}");
    let (st, e) = s
        .api(
            "PUT",
            &format!(
                "/subscriptions/{sub}/resourceGroups/nope/providers/Microsoft.Compute/virtualMachines/vm6"
            ),
            &admin,
            Some(vm_body(DEBIAN12, false, Some("Long-enough-pass-1"))),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (404, json!("ResourceGroupNotFound")),
        "{e}"
    );
    let (st, list) = s
        .api(
            "GET",
            &format!("{rg}/providers/Microsoft.Compute/virtualMachines"),
            &admin,
            None,
        )
        .await;
    assert_eq!(
        (st, list["value"].as_array().unwrap().len()),
        (200, 1),
        "refusals created nothing: {list}"
    );

    // A user without a role can neither see nor create VMs.
    let (_, ann) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (st, e) = s.api("GET", &vm, &ann, None).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );
    let (st, e) = put_vm(
        &s,
        &admin,
        &rg,
        vm_body(DEBIAN12, false, Some("Long-enough-pass-1")),
        "vm7",
    )
    .await;
    assert_eq!(st, 201, "the admin may: {e}");
    let (st, e) = s
        .api(
            "PUT",
            &format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm8"),
            &ann,
            Some(vm_body(DEBIAN12, false, Some("Long-enough-pass-1"))),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );

    // Deleting the VM deletes its identity; deleting the group deletes the VMs left in it.
    let (st, _) = s.api("DELETE", &vm, &admin, None).await;
    assert_eq!(st, 200);
    let (st, _) = s.api("GET", &vm, &admin, None).await;
    assert_eq!(st, 404);
    let (st, _) = s
        .api("GET", &format!("/v1.0/servicePrincipals/{second}"), &admin, None)
        .await;
    assert_eq!(st, 404, "the identity went with the VM");
    let (st, _) = s.api("DELETE", &rg, &admin, None).await;
    assert_eq!(st, 200);
    let (st, list) = s
        .api(
            "GET",
            &format!("/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines"),
            &admin,
            None,
        )
        .await;
    assert_eq!((st, list["value"].as_array().unwrap().len()), (200, 0), "{list}");

    // Every change is in the audit log.
    s.running().state.dir().logs().flush().await;
    let (st, audits) = s
        .api("GET", "/v1.0/auditLogs/directoryAudits", &admin, None)
        .await;
    assert_eq!(st, 200);
    let activities: Vec<&str> = audits["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["activityDisplayName"].as_str())
        .collect();
    for want in [
        "Create resource group",
        "Create virtual machine",
        "Update virtual machine",
        "Delete virtual machine",
        "Delete resource group",
    ] {
        assert!(activities.contains(&want), "{want} missing from {activities:?}");
    }
}

/// The generation the VM's agent is asked to apply for its (only) extension.
async fn generation(arm: &usher_arm::Arm, vm: &str) -> u64 {
    arm.desired_extensions(vm).await.unwrap()[0]["generation"]
        .as_u64()
        .unwrap()
}

async fn send_raw(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = s
        .client()
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// The path of an `Azure-AsyncOperation` URL on this server.
fn op_path(s: &TestServer, headers: &reqwest::header::HeaderMap) -> String {
    let url = headers
        .get("azure-asyncoperation")
        .expect("Azure-AsyncOperation header")
        .to_str()
        .unwrap();
    assert!(url.starts_with(&s.url), "{url}");
    url[s.url.len()..].to_owned()
}

#[tokio::test]
async fn extensions_are_creating_until_the_agent_reports() {
    extension_flow(spawn().await).await;
}

#[tokio::test]
async fn extensions_on_postgres() {
    extension_flow(usher_testkit::spawn_with(usher_testkit::Backend::Postgres).await).await;
}

async fn extension_flow(s: TestServer) {
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = group(&s, &admin, &sub, "rg1").await;
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/web1");
    let (st, b) = s
        .api(
            "PUT",
            &vm,
            &admin,
            Some(vm_body(DEBIAN12, false, Some("Long-enough-pass-1"))),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let arm = &s.running().state.arm;

    // What az asks before it sets an extension: the types and versions.
    let catalogue = format!(
        "/subscriptions/{sub}/providers/Microsoft.Compute/locations/southcentralus/publishers/Microsoft.Azure.ActiveDirectory/artifacttypes/vmextension/types"
    );
    let (st, types) = s.api("GET", &catalogue, &admin, None).await;
    assert_eq!(st, 200);
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "AADSSHLoginForLinux"),
        "{types}"
    );
    let (_, versions) = s
        .api(
            "GET",
            &format!("{catalogue}/AADSSHLoginForLinux/versions"),
            &admin,
            None,
        )
        .await;
    assert_eq!(versions[0]["name"], "1.0.0.0", "{versions}");

    // Set before any agent: 201, Creating, an operation in progress.
    let ext = format!("{vm}/extensions/AADSSHLoginForLinux");
    let body = json!({"location": "southcentralus", "properties": {"publisher": "Microsoft.Azure.ActiveDirectory", "type": "AADSSHLoginForLinux", "typeHandlerVersion": "1.0", "autoUpgradeMinorVersion": true, "settings": {}, "protectedSettings": {"secret": "hunter2-sealed"}}});
    let (st, headers, created) = send_raw(
        &s,
        reqwest::Method::PUT,
        &format!("{ext}?api-version=2024-11-01"),
        &admin,
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "Creating");
    assert!(
        !created.to_string().contains("hunter2"),
        "protected settings never come back"
    );
    let op1 = op_path(&s, &headers);
    assert!(
        op1.to_ascii_lowercase()
            .contains("/providers/microsoft.compute/locations/southcentralus/operations/"),
        "{op1}"
    );
    let (st, status) = s.api("GET", &op1, &admin, None).await;
    assert_eq!(
        (st, status["status"].clone()),
        (200, json!("InProgress")),
        "{status}"
    );
    let (_, shown) = s
        .api("GET", &format!("{ext}?$expand=instanceView"), &admin, None)
        .await;
    assert_eq!(
        shown["properties"]["instanceView"]["statuses"][0]["displayStatus"], "Transitioning",
        "{shown}"
    );
    let (_, v) = s
        .api("GET", &format!("{vm}?$expand=instanceView"), &admin, None)
        .await;
    assert_eq!(
        v["properties"]["instanceView"]["extensions"][0]["type"],
        "Microsoft.Azure.ActiveDirectory.AADSSHLoginForLinux",
        "{v}"
    );
    assert_eq!(v["resources"][0]["name"], "AADSSHLoginForLinux", "{v}");

    // One instance per handler: the canonical name of the same handler is refused next to it.
    let canonical = json!({"location": "southcentralus", "properties": {"publisher": "Usher.Identity", "type": "LoginForLinux"}});
    let (st, e) = s
        .api(
            "PUT",
            &format!("{vm}/extensions/LoginForLinux"),
            &admin,
            Some(canonical),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("OperationNotAllowed")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Multiple VMExtensions per handler"),
        "{e}"
    );
    // Unknown extensions and versions are refused with what usher runs.
    let mut other = body.clone();
    other["properties"]["publisher"] = json!("Microsoft.Azure.Extensions");
    other["properties"]["type"] = json!("CustomScript");
    let (st, e) = s
        .api(
            "PUT",
            &format!("{vm}/extensions/CustomScript"),
            &admin,
            Some(other),
        )
        .await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSSHLoginForLinux"),
        "{e}"
    );
    let mut old = body.clone();
    old["properties"]["typeHandlerVersion"] = json!("9.9");
    let (st, e) = s.api("PUT", &ext, &admin, Some(old)).await;
    assert_eq!(st, 400, "{e}");

    // Only the VM's own identity reports: the VM has none yet, the admin is not it.
    let admin_oid = s
        .running()
        .state
        .dir()
        .find_user_by_upn("admin@contoso.test")
        .await
        .unwrap()
        .unwrap()
        .id;
    let g1 = generation(arm, &vm).await;
    let refused = arm
        .report_extension(
            &admin_oid,
            &vm,
            "AADSSHLoginForLinux",
            g1,
            ExtensionOutcome::Succeeded { message: "x".into() },
        )
        .await;
    assert_eq!(refused.map_err(|e| e.code), Err("AuthorizationFailed"));
    let (_, on) = s
        .api(
            "PATCH",
            &vm,
            &admin,
            Some(json!({"identity": {"type": "SystemAssigned"}})),
        )
        .await;
    let machine = on["identity"]["principalId"].as_str().unwrap().to_owned();
    // A report for a generation that is not the current one is ignored.
    assert_eq!(
        arm.report_extension(
            &machine,
            &vm,
            "AADSSHLoginForLinux",
            g1 - 1,
            ExtensionOutcome::Succeeded { message: "x".into() }
        )
        .await
        .map_err(|e| e.code),
        Ok(false)
    );
    assert_eq!(s.api("GET", &op1, &admin, None).await.1["status"], "InProgress");
    // "Removed" answers only a delete: reported for a creation it changes nothing.
    assert_eq!(
        arm.report_extension(
            &machine,
            &vm,
            "AADSSHLoginForLinux",
            g1,
            ExtensionOutcome::Removed
        )
        .await
        .map_err(|e| e.code),
        Ok(false)
    );
    assert_eq!(s.api("GET", &ext, &admin, None).await.0, 200);
    // The agent succeeds: the extension and its operation are done.
    assert_eq!(
        arm.report_extension(
            &machine,
            &vm,
            "AADSSHLoginForLinux",
            g1,
            ExtensionOutcome::Succeeded {
                message: "Joined the directory.".into()
            }
        )
        .await
        .map_err(|e| e.code),
        Ok(true)
    );
    let (_, status) = s.api("GET", &op1, &admin, None).await;
    assert_eq!(status["status"], "Succeeded", "{status}");
    assert!(status["endTime"].is_string(), "{status}");
    let (_, shown) = s
        .api("GET", &format!("{ext}?$expand=instanceView"), &admin, None)
        .await;
    assert_eq!(shown["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        shown["properties"]["instanceView"]["statuses"][0]["code"],
        "ProvisioningState/succeeded"
    );
    assert_eq!(
        shown["properties"]["instanceView"]["statuses"][0]["message"],
        "Joined the directory."
    );

    // Setting it again unchanged finishes at once; a change runs again.
    let mut same = body.clone();
    same["properties"]
        .as_object_mut()
        .unwrap()
        .remove("protectedSettings");
    let (st, headers, again) = send_raw(&s, reqwest::Method::PUT, &ext, &admin, Some(same.clone())).await;
    assert_eq!(
        (st, again["properties"]["provisioningState"].clone()),
        (200, json!("Succeeded")),
        "{again}"
    );
    assert!(headers.get("azure-asyncoperation").is_none());
    let mut changed = same.clone();
    changed["properties"]["settings"] = json!({"sshd": true});
    let (st, headers, updating) = send_raw(&s, reqwest::Method::PUT, &ext, &admin, Some(changed)).await;
    assert_eq!(
        (st, updating["properties"]["provisioningState"].clone()),
        (200, json!("Updating")),
        "{updating}"
    );
    let op2 = op_path(&s, &headers);
    // The handler fails with the seed's exit code 51.
    let unsupported = "This extension is not supported on the VM's operating system";
    let g2 = generation(arm, &vm).await;
    assert!(g2 > g1);
    arm.report_extension(
        &machine,
        &vm,
        "AADSSHLoginForLinux",
        g2,
        ExtensionOutcome::Failed {
            exit_code: 51,
            message: unsupported.into(),
        },
    )
    .await
    .unwrap();
    let (_, status) = s.api("GET", &op2, &admin, None).await;
    assert_eq!(status["status"], "Failed", "{status}");
    assert_eq!(status["error"]["code"], "VMExtensionProvisioningError");
    assert!(
        status["error"]["message"].as_str().unwrap().contains(unsupported),
        "{status}"
    );
    let (_, shown) = s
        .api("GET", &format!("{ext}?$expand=instanceView"), &admin, None)
        .await;
    assert_eq!(
        shown["properties"]["instanceView"]["statuses"][0]["code"],
        "ProvisioningState/failed/51"
    );
    assert_eq!(
        s.api("GET", &op1, &admin, None).await.1["status"],
        "Succeeded",
        "a finished operation keeps its result"
    );

    // Delete: Deleting (202 + operation) until the agent reports it removed.
    let (st, headers, _) = send_raw(&s, reqwest::Method::DELETE, &ext, &admin, None).await;
    assert_eq!(st, 202);
    let op3 = op_path(&s, &headers);
    assert_eq!(
        s.api("GET", &ext, &admin, None).await.1["properties"]["provisioningState"],
        "Deleting"
    );
    assert_eq!(s.api("GET", &op3, &admin, None).await.1["status"], "InProgress");
    let g3 = generation(arm, &vm).await;
    // A success does not answer a delete.
    assert_eq!(
        arm.report_extension(
            &machine,
            &vm,
            "AADSSHLoginForLinux",
            g3,
            ExtensionOutcome::Succeeded { message: "x".into() }
        )
        .await
        .map_err(|e| e.code),
        Ok(false)
    );
    // Setting it again while it is being deleted is refused.
    let (st, e) = s.api("PUT", &ext, &admin, Some(same.clone())).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("OperationNotAllowed")),
        "{e}"
    );
    arm.report_extension(
        &machine,
        &vm,
        "AADSSHLoginForLinux",
        g3,
        ExtensionOutcome::Removed,
    )
    .await
    .unwrap();
    assert_eq!(s.api("GET", &ext, &admin, None).await.0, 404);
    assert_eq!(s.api("GET", &op3, &admin, None).await.1["status"], "Succeeded");
    // One no agent has seen goes at once.
    let (st, _, _) = send_raw(&s, reqwest::Method::PUT, &ext, &admin, Some(body)).await;
    assert_eq!(st, 201);
    let (st, headers, _) = send_raw(&s, reqwest::Method::DELETE, &ext, &admin, None).await;
    assert_eq!(st, 200);
    assert!(headers.get("azure-asyncoperation").is_none());
    let (_, list) = s.api("GET", &format!("{vm}/extensions"), &admin, None).await;
    assert_eq!(list["value"], json!([]));
    // Someone without rights on the VM cannot read its operations.
    let (_, ann) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    assert_eq!(s.api("GET", &op3, &ann, None).await.0, 403);
}

#[tokio::test]
async fn a_machine_identity_may_ask_only_about_itself() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = group(&s, &admin, &sub, "rg1").await;
    let mut ids = vec![];
    for name in ["a", "b"] {
        let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
        let (st, b) = s
            .api(
                "PUT",
                &vm,
                &admin,
                Some(vm_body(DEBIAN12, true, Some("Long-enough-pass-1"))),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        ids.push((vm, b["identity"]["principalId"].as_str().unwrap().to_owned()));
    }
    let (ann, _) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (st, b) = s
        .api("PUT", &format!("{rg}/providers/Microsoft.Authorization/roleAssignments/0b0f4c9e-2d40-4a52-9d6b-3c7e8f9a1b2c"), &admin,
            Some(json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{VM_USER_LOGIN}"), "principalId": ann}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let arm = &s.running().state.arm;
    let (a_vm, a_identity) = &ids[0];
    let (b_vm, _) = &ids[1];
    let own = arm
        .login_check(a_identity, "ann@contoso.test", a_vm)
        .await
        .unwrap();
    assert_eq!(own["decision"], "user");
    let logins = arm.machine_logins(a_identity, a_vm).await.unwrap();
    assert_eq!(logins["logins"][0]["principalId"], ann.as_str());
    // Each login comes with the user's UID (SPEC L2), the same on every machine.
    let uid = logins["logins"][0]["uid"].as_u64().unwrap();
    assert!((0x7000_0000..=0x7FFD_FFFF).contains(&uid), "{logins}");
    assert_eq!(logins["logins"][0]["gid"], uid);
    assert_eq!(
        u64::from(s.running().state.dir().posix_id(&ann).await.unwrap()),
        uid
    );
    assert_eq!(
        arm.login_check(a_identity, "ann@contoso.test", b_vm)
            .await
            .map_err(|e| e.code)
            .err(),
        Some("AuthorizationFailed")
    );
    assert_eq!(
        arm.machine_logins(a_identity, b_vm)
            .await
            .map_err(|e| e.code)
            .err(),
        Some("AuthorizationFailed")
    );
}

#[tokio::test]
async fn custom_roles_with_assignable_scopes() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg1 = group(&s, &admin, &sub, "rg1").await;
    let rg2 = group(&s, &admin, &sub, "rg2").await;
    let mg = "/providers/Microsoft.Management/managementGroups/platform";
    let (st, b) = s
        .api(
            "PUT",
            mg,
            &admin,
            Some(json!({"properties": {"displayName": "Platform"}})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let role_id = "5a0c2b4e-6d8f-4a1b-9c3d-7e5f8a9b0c1d";
    let role_path = format!("{rg1}/providers/Microsoft.Authorization/roleDefinitions/{role_id}");
    let role = json!({"properties": {
        "roleName": "Login operators", "description": "Log in to the machines of rg1 as users", "type": "CustomRole",
        "permissions": [{"actions": ["Microsoft.Compute/virtualMachines/read"], "dataActions": ["Microsoft.Compute/virtualMachines/login/action"]}],
        "assignableScopes": [rg1, mg],
    }});
    // Someone who is not Owner there cannot create it.
    let (ann, ann_token) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (st, e) = s.api("PUT", &role_path, &ann_token, Some(role.clone())).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );
    let (st, created) = s.api("PUT", &role_path, &admin, Some(role.clone())).await;
    assert_eq!(st, 201, "{created}");
    assert_eq!(created["properties"]["type"], "CustomRole");
    assert_eq!(
        created["properties"]["description"],
        "Log in to the machines of rg1 as users"
    );
    let (_, listed) = s.api("GET", &format!("{rg1}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq 'Login operators'"), &admin, None).await;
    assert_eq!(listed["value"][0]["name"], role_id, "{listed}");
    let (_, elsewhere) = s.api("GET", &format!("{rg2}/providers/Microsoft.Authorization/roleDefinitions?$filter=roleName eq 'Login operators'"), &admin, None).await;
    assert_eq!(
        elsewhere["value"],
        json!([]),
        "not visible where it cannot be assigned"
    );
    // Same name under another id: refused.
    let (st, e) = s
        .api(
            "PUT",
            &format!(
                "{rg1}/providers/Microsoft.Authorization/roleDefinitions/6b1d3c5f-7e9a-4b2c-8d4e-8f6a9b0c1d2e"
            ),
            &admin,
            Some(role.clone()),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("RoleDefinitionWithSameNameExists")),
        "{e}"
    );
    // Built-ins cannot be overwritten.
    let (st, _) = s
        .api(
            "PUT",
            &format!("{rg1}/providers/Microsoft.Authorization/roleDefinitions/{READER}"),
            &admin,
            Some(role.clone()),
        )
        .await;
    assert_eq!(st, 400);

    let assign = |scope: String, name: &'static str| {
        let body = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"), "principalId": ann}});
        let admin = admin.clone();
        let s = &s;
        async move {
            s.api(
                "PUT",
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                &admin,
                Some(body),
            )
            .await
        }
    };
    let vm = format!("{rg1}/providers/Microsoft.Compute/virtualMachines/web1");
    let (st, b) = s
        .api(
            "PUT",
            &vm,
            &admin,
            Some(vm_body(DEBIAN12, false, Some("Long-enough-pass-1"))),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = assign(vm.clone(), "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f").await;
    assert_eq!(st, 201, "{b}");
    let (st, check) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=ann@contoso.test&machine={vm}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((st, check["decision"].clone()), (200, json!("user")), "{check}");
    let (st, e) = assign(rg2.clone(), "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("RoleDefinitionNotAssignableAtScope")),
        "{e}"
    );
    let (st, e) = assign(mg.to_owned(), "3e4f5a6b-7c8d-4e9f-0a1b-2c3d4e5f6a7b").await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("InvalidCreateRoleAssignmentRequest")),
        "{e}"
    );

    // Changing the role changes what its assignments grant, at once.
    let mut narrowed = role.clone();
    narrowed["properties"]["permissions"][0]["dataActions"] = json!([]);
    let (st, b) = s.api("PUT", &role_path, &admin, Some(narrowed)).await;
    assert_eq!(st, 200, "{b}");
    let (_, check) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=ann@contoso.test&machine={vm}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(check["decision"], "deny", "{check}");

    // In use: cannot be deleted; once unused, it can.
    let (st, e) = s.api("DELETE", &role_path, &admin, None).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("RoleDefinitionHasAssignments")),
        "{e}"
    );
    let (st, _) = s
        .api(
            "DELETE",
            &format!(
                "{vm}/providers/Microsoft.Authorization/roleAssignments/1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
            ),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s.api("DELETE", &role_path, &admin, None).await;
    assert_eq!(st, 200);
    let (st, _) = s.api("GET", &role_path, &admin, None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn management_groups_pass_access_down() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = group(&s, &admin, &sub, "rg1").await;
    let mg = |id: &str| format!("/providers/Microsoft.Management/managementGroups/{id}");
    let (st, list) = s
        .api(
            "GET",
            "/providers/Microsoft.Management/managementGroups",
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{list}");
    assert_eq!(list["value"][0]["name"], s.tenant_id.as_str());
    assert_eq!(list["value"][0]["properties"]["displayName"], "Tenant Root Group");

    let (st, b) = s
        .api(
            "PUT",
            &mg("platform"),
            &admin,
            Some(json!({"properties": {"displayName": "Platform"}})),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["properties"]["details"]["parent"]["name"], s.tenant_id.as_str());
    let (st, b) = s.api("PUT", &mg("prod"), &admin, Some(json!({"properties": {"displayName": "Production", "details": {"parent": {"id": mg("platform")}}}}))).await;
    assert_eq!(st, 201, "{b}");
    // No cycles.
    let (st, e) = s
        .api(
            "PUT",
            &mg("platform"),
            &admin,
            Some(json!({"properties": {"details": {"parent": {"id": mg("prod")}}}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("InvalidHierarchy")),
        "{e}"
    );

    // A Reader at platform reads the resource group once the subscription is in prod.
    let (bob, bob_token) = user_token(&s, "bob@contoso.test", "Quiet-river-72").await;
    let (st, b) = s
        .api("PUT", &format!("{}/providers/Microsoft.Authorization/roleAssignments/4f5a6b7c-8d9e-4f0a-1b2c-3d4e5f6a7b8c", mg("platform")), &admin,
            Some(json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{READER}"), "principalId": bob}})))
        .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(s.api("GET", &rg, &bob_token, None).await.0, 403);
    let (st, b) = s
        .api(
            "PUT",
            &format!("{}/subscriptions/{sub}", mg("prod")),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(s.api("GET", &rg, &bob_token, None).await.0, 200);
    let (_, children) = s
        .api("GET", &format!("{}?$expand=children", mg("prod")), &admin, None)
        .await;
    assert_eq!(
        children["properties"]["children"][0]["name"],
        sub.as_str(),
        "{children}"
    );
    // The move survives a restart (the engine reloads the tree).
    let reloaded = usher_arm::Arm::load(s.running().state.dir().clone())
        .await
        .unwrap();
    let scope = usher_authz::Scope::parse(&rg).unwrap();
    assert!(
        reloaded
            .authorize(
                &bob,
                &scope,
                "Microsoft.Resources/subscriptions/resourceGroups/read"
            )
            .await
            .is_ok()
    );
    // Not empty: cannot be deleted; the subscription back at the root: access gone.
    let (st, e) = s.api("DELETE", &mg("prod"), &admin, None).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("ManagementGroupNotEmpty")),
        "{e}"
    );
    let (st, _) = s
        .api(
            "DELETE",
            &format!("{}/subscriptions/{sub}", mg("prod")),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(s.api("GET", &rg, &bob_token, None).await.0, 403);
    assert_eq!(s.api("DELETE", &mg("prod"), &admin, None).await.0, 200);
    // Only Global Administrators (or holders of the right) shape the tree.
    let (st, e) = s.api("PUT", &mg("rogue"), &bob_token, Some(json!({}))).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );
}

#[tokio::test]
async fn cloud_metadata_for_az_cloud_register() {
    let s = spawn().await;
    // az concatenates strings: an endpoint ending in '/' gives '//metadata/endpoints'.
    for path in [
        "/metadata/endpoints?api-version=2022-09-01",
        "//metadata/endpoints?api-version=2022-09-01",
        "/Metadata/Endpoints",
    ] {
        let r = s.client().get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["authentication"]["loginEndpoint"], s.url.as_str(), "{body}");
        assert_eq!(
            body["authentication"]["audiences"][0],
            format!("{}/", s.url),
            "{body}"
        );
        assert_eq!(body["resourceManager"], format!("{}/", s.url));
        assert!(body["suffixes"].is_object(), "az reads suffixes: {body}");
    }
}

#[tokio::test]
async fn deletes_take_their_role_assignments_and_role_and_tree_changes_need_rights_everywhere() {
    let s = spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg1 = group(&s, &admin, &sub, "rg1").await;
    let rg2 = group(&s, &admin, &sub, "rg2").await;
    let (ann, _) = user_token(&s, "ann@contoso.test", "Sunny-garden-41").await;
    let (bob, bob_token) = user_token(&s, "bob@contoso.test", "Quiet-river-72").await;
    let assign = |scope: String, role: &'static str, principal: String, name: &'static str| {
        let admin = admin.clone();
        let sub = sub.clone();
        let s = &s;
        async move {
            s.api(
                "PUT",
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                &admin,
                Some(json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal}})),
            )
            .await
        }
    };

    // A VM deleted and created again under its name inherits nobody's access.
    let vm = format!("{rg1}/providers/Microsoft.Compute/virtualMachines/web1");
    let body = vm_body(DEBIAN12, false, Some("Long-enough-pass-1"));
    assert_eq!(s.api("PUT", &vm, &admin, Some(body.clone())).await.0, 201);
    let (st, b) = assign(
        vm.clone(),
        VM_USER_LOGIN,
        ann.clone(),
        "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let check = format!("/usher/loginCheck?principal=ann@contoso.test&machine={vm}");
    assert_eq!(s.api("GET", &check, &admin, None).await.1["decision"], "user");
    assert_eq!(s.api("DELETE", &vm, &admin, None).await.0, 200);
    assert_eq!(s.api("PUT", &vm, &admin, Some(body)).await.0, 201);
    assert_eq!(s.api("GET", &check, &admin, None).await.1["decision"], "deny");
    let (_, left) = s
        .api(
            "GET",
            &format!("{vm}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()"),
            &admin,
            None,
        )
        .await;
    assert!(
        left["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| !a["properties"]["scope"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&vm)),
        "the old VM's assignments went with it: {left}"
    );

    // Bob owns rg2 only: he may not redefine a role that is assignable at rg1.
    let (st, b) = assign(
        rg2.clone(),
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        bob.clone(),
        "8b7c6d5e-4f3a-4b2c-8d1e-0f9a8b7c6d5e",
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let role_id = "7c6d5e4f-3a2b-4c1d-8e0f-9a8b7c6d5e4f";
    let role = |scopes: Vec<String>, data: Vec<&str>| json!({"properties": {"roleName": "Operators", "permissions": [{"actions": ["Microsoft.Compute/virtualMachines/read"], "dataActions": data}], "assignableScopes": scopes}});
    let path = format!("{rg1}/providers/Microsoft.Authorization/roleDefinitions/{role_id}");
    let (st, b) = s
        .api("PUT", &path, &admin, Some(role(vec![rg1.clone()], vec![])))
        .await;
    assert_eq!(st, 201, "{b}");
    let hijack = format!("{rg2}/providers/Microsoft.Authorization/roleDefinitions/{role_id}");
    let (st, e) = s
        .api(
            "PUT",
            &hijack,
            &bob_token,
            Some(role(
                vec![rg2.clone()],
                vec!["Microsoft.Compute/virtualMachines/loginAsAdmin/action"],
            )),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );
    // A scope cannot be dropped while the role is assigned under it.
    let (st, b) = assign(
        rg1.clone(),
        role_id,
        ann.clone(),
        "6d5e4f3a-2b1c-4d0e-9f8a-7b6c5d4e3f2a",
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, e) = s
        .api("PUT", &path, &admin, Some(role(vec![rg2.clone()], vec![])))
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("RoleDefinitionHasAssignments")),
        "{e}"
    );
    // Reading roles needs a role around the scope.
    let (_, carl) = user_token(&s, "carl@contoso.test", "Amber-meadow-93").await;
    let (st, _) = s
        .api(
            "GET",
            &format!("{rg1}/providers/Microsoft.Authorization/roleDefinitions"),
            &carl,
            None,
        )
        .await;
    assert_eq!(st, 403);

    // Management groups: bob may create under the root only as a Global Administrator; made
    // Owner of group y (not of x), he may not move x under y.
    let mg = |id: &str| format!("/providers/Microsoft.Management/managementGroups/{id}");
    assert_eq!(
        s.api(
            "PUT",
            &mg("x"),
            &admin,
            Some(json!({"properties": {"displayName": "X"}}))
        )
        .await
        .0,
        201
    );
    assert_eq!(
        s.api(
            "PUT",
            &mg("y"),
            &admin,
            Some(json!({"properties": {"displayName": "Y"}}))
        )
        .await
        .0,
        201
    );
    let (st, b) = s
        .api("PUT", &format!("{}/providers/Microsoft.Authorization/roleAssignments/5e4f3a2b-1c0d-4e9f-8a7b-6c5d4e3f2a1b", mg("y")), &admin,
            Some(json!({"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "principalId": bob}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = s
        .api("PUT", &format!("{}/providers/Microsoft.Authorization/roleAssignments/4f3a2b1c-0d9e-4f8a-9b6c-5d4e3f2a1b0c", mg("x")), &admin,
            Some(json!({"properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c", "principalId": bob}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, e) = s
        .api(
            "PUT",
            &mg("x"),
            &bob_token,
            Some(json!({"properties": {"details": {"parent": {"id": mg("y")}}}})),
        )
        .await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{e}"
    );
    // Renaming keeps the parent.
    assert_eq!(
        s.api(
            "PUT",
            &mg("z"),
            &admin,
            Some(json!({"properties": {"details": {"parent": {"id": mg("y")}}}}))
        )
        .await
        .0,
        201
    );
    let (st, z) = s
        .api(
            "PUT",
            &mg("z"),
            &admin,
            Some(json!({"properties": {"displayName": "Zed"}})),
        )
        .await;
    assert_eq!(st, 200, "{z}");
    assert_eq!(z["properties"]["details"]["parent"]["name"], "y", "{z}");
}
