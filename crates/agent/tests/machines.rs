//! Machines end to end (SPEC X1–X5, D5): each machine is the real `usher-agent` in its own UTS
//! and mount namespace (its own host name, its own copy of `/etc`), talking to a real usherd over
//! loopback. The machines share `/run`, `/tmp` and loopback, as the agent must allow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use usher_testkit::TestServer;

const CENTOS7: &str = "NAME=\"CentOS Linux\"\nVERSION_ID=\"7\"\nID=\"centos\"\n";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

mod common;
use common::{DEBIAN12, Machine, free_port, imds_get};

async fn default_sub(s: &TestServer, admin: &str) -> String {
    let (_, subs) = s.api("GET", "/subscriptions", admin, None).await;
    subs["value"][0]["subscriptionId"].as_str().unwrap().to_owned()
}

/// A VM (with or without identity) in `rg`; returns (its id, a join token).
async fn vm(s: &TestServer, admin: &str, rg: &str, name: &str, identity: bool) -> (String, String) {
    let id = format!("{rg}/providers/Microsoft.Compute/virtualMachines/{name}");
    let mut body = json!({"location": "southcentralus", "properties": {
        "storageProfile": {"imageReference": {"publisher": "Debian", "offer": "debian-12", "sku": "12-gen2"}},
        "osProfile": {"adminUsername": "azureuser", "adminPassword": "Long-enough-pass-1"}}});
    if identity {
        body["identity"] = json!({"type": "SystemAssigned"});
    }
    let (st, b) = s.api("PUT", &id, admin, Some(body)).await;
    assert_eq!(st, 201, "{b}");
    let (st, t) = s.api("POST", &format!("{id}/onboardingToken"), admin, None).await;
    assert_eq!(st, 200, "{t}");
    (id, t["onboardingToken"].as_str().unwrap().to_owned())
}

async fn set_extension(
    s: &TestServer,
    admin: &str,
    vm: &str,
    publisher: &str,
    kind: &str,
    force: Option<&str>,
) {
    let mut props = json!({"publisher": publisher, "type": kind, "settings": {}});
    if let Some(tag) = force {
        props["forceUpdateTag"] = json!(tag);
    }
    let (st, b) = s
        .api(
            "PUT",
            &format!("{vm}/extensions/{kind}"),
            admin,
            Some(json!({"location": "southcentralus", "properties": props})),
        )
        .await;
    assert!(st == 201 || st == 200, "{b}");
}

/// Waits (≤ 30 s, SPEC X3) for the extension to reach a terminal state; returns it with its
/// instance view.
async fn terminal(s: &TestServer, admin: &str, vm: &str, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, e) = s
            .api(
                "GET",
                &format!("{vm}/extensions/{kind}?$expand=instanceView"),
                admin,
                None,
            )
            .await;
        assert_eq!(st, 200, "{e}");
        let state = e["properties"]["provisioningState"].as_str().unwrap().to_owned();
        if state == "Succeeded" || state == "Failed" {
            return e;
        }
        assert!(Instant::now() < deadline, "still {state} after 30 s: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn status_json_device(m: &Machine) -> String {
    m.status().await["DeviceId"].as_str().unwrap().to_owned()
}

fn status_of(e: &Value) -> (String, String) {
    let st = &e["properties"]["instanceView"]["statuses"][0];
    (
        st["code"].as_str().unwrap_or_default().to_owned(),
        st["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn log_names(m: &Machine) -> Vec<String> {
    let dir = m.state().join("extensions/Usher.Identity.LoginForLinux");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_extension_duplicate_hostname_and_removal() {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    s.api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;

    // The operator's own sshd drop-in on machine A: replaced while the extension is on, restored after.
    let mut a = Machine::new("web1", DEBIAN12);
    std::fs::create_dir_all(a.etc("ssh/sshd_config.d")).unwrap();
    std::fs::write(a.etc("ssh/sshd_config.d/10-usher.conf"), "# operator's file\n").unwrap();
    // What the extension edits, as the machine had it before.
    let before: Vec<(&str, String)> = ["nsswitch.conf", "pam.d/sshd", "pam.d/login", "pam.d/sudo"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(a.etc(f)).unwrap()))
        .collect();
    let (web1, token) = vm(&s, &admin, &rg, "web1", true).await;
    let (code, out, err) = a.join(&s, &token).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&web1), "{out}");
    let key = a.state().join("machine.key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions()) & 0o777,
        0o600
    );
    // The token worked once.
    let b = Machine::new("other", DEBIAN12);
    let (code, _, err) = b.join(&s, &token).await;
    assert_eq!(code, 1);
    assert!(err.contains("already used or it expired"), "{err}");

    // Set before the agent runs: applied when it starts, within 30 s.
    set_extension(
        &s,
        &admin,
        &web1,
        "Microsoft.Azure.ActiveDirectory",
        "AADSSHLoginForLinux",
        None,
    )
    .await;
    let status = a.status().await;
    assert_eq!(status["DeviceJoined"], "NO");
    a.start(&[]);
    let e = terminal(&s, &admin, &web1, "AADSSHLoginForLinux").await;
    assert_eq!(e["properties"]["provisioningState"], "Succeeded", "{e}");
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/succeeded");
    assert!(message.contains("as device 'web1'"), "{message}");
    let status = a.status().await;
    assert_eq!(status["DeviceJoined"], "YES", "{status}");
    assert_eq!(status["DeviceName"], "web1");
    assert_eq!(status["TenantId"], s.tenant_id.as_str());
    assert_eq!(status["Extensions"][0]["State"], "Succeeded", "{status}");
    assert!(
        std::fs::read_to_string(a.etc("usher/login.conf"))
            .unwrap()
            .contains(&web1)
    );
    assert!(
        std::fs::read_to_string(a.etc("ssh/sshd_config.d/10-usher.conf"))
            .unwrap()
            .starts_with("# Managed by usher-agent")
    );
    assert!(
        !std::fs::read_to_string("/etc/usher/login.conf")
            .unwrap_or_default()
            .contains(&web1),
        "the host's own /etc is untouched"
    );
    // The doctor's checks all pass on a healthy machine, and list the endpoints.
    let (code, out, err) = a.exec(&["doctor", "-o", "json"]).await;
    let checks: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(code, 0, "{checks:#}");
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for want in [
        "IMDS instance",
        "identity info",
        "device registration token",
        "endpoint: device registration",
        "login configuration",
        "name resolution",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let (_, cmds, _) = a.exec(&["doctor", "--commands", "--dns", "208.67.222.222"]).await;
    assert!(
        cmds.contains("curl -H Metadata:true")
            && cmds.contains("identity/info?api-version=2018-02-01")
            && cmds.contains("nslookup 127.0.0.1 208.67.222.222"),
        "{cmds}"
    );
    let (_, list, _) = a.exec(&["doctor", "--list-endpoints"]).await;
    assert!(
        list.contains("device registration") && list.contains("/usher/agent/device"),
        "{list}"
    );
    let (_, text, _) = a.exec(&["status"]).await;
    assert!(text.contains("DeviceJoined : YES"), "{text}");
    assert_eq!(log_names(&a), vec!["CommandExecution.log"]);
    let (_, devices) = s.api("GET", "/v1.0/devices", &admin, None).await;
    let device_names: Vec<&str> = devices["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["displayName"].as_str())
        .collect();
    assert_eq!(device_names, vec!["web1"]);
    // The VM's instance view shows the agent and the extension.
    let (_, iv) = s.api("GET", &format!("{web1}/instanceView"), &admin, None).await;
    assert_eq!(iv["vmAgent"]["statuses"][0]["displayStatus"], "Ready", "{iv}");
    assert_eq!(
        iv["extensions"][0]["statuses"][0]["code"],
        "ProvisioningState/succeeded"
    );

    // Another machine named WEB1 (names compare case-insensitively): the duplicate is refused.
    let mut b = Machine::new("WEB1", DEBIAN12);
    let (web2, token2) = vm(&s, &admin, &rg, "web2", true).await;
    assert_eq!(b.join(&s, &token2).await.0, 0);
    b.start(&[]);
    set_extension(&s, &admin, &web2, "Usher.Identity", "LoginForLinux", None).await;
    let e = terminal(&s, &admin, &web2, "LoginForLinux").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/53", "{e}");
    assert!(
        message.contains("already registered") && message.contains("rename"),
        "{message}"
    );
    // Run again while the agent is stopped, then start it: the failed run's log is kept.
    b.stop().await;
    set_extension(
        &s,
        &admin,
        &web2,
        "Usher.Identity",
        "LoginForLinux",
        Some("again"),
    )
    .await;
    b.start(&[]);
    let e = terminal(&s, &admin, &web2, "LoginForLinux").await;
    assert_eq!(status_of(&e).0, "ProvisioningState/failed/53");
    let names = log_names(&b);
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "CommandExecution.log");
    let kept = names[1]
        .strip_prefix("CommandExecution_")
        .and_then(|n| n.strip_suffix(".log"))
        .unwrap();
    assert!(
        kept.len() == 17 && kept.chars().all(|c| c.is_ascii_digit()),
        "{names:?}"
    );

    // A machine's identity may ask the login check about itself only.
    let (st, tok, _) = a
        .imds(
            &format!(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                s.url
            ),
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(st, 200, "{tok}");
    let mi = tok["access_token"].as_str().unwrap().to_owned();
    let (st, own) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=admin@contoso.test&machine={web1}"),
            &mi,
            None,
        )
        .await;
    assert_eq!((st, own["decision"].clone()), (200, json!("deny")), "{own}");
    let device = status_json_device(&a).await;
    let (st, by_device) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=admin@contoso.test&machine={device}"),
            &mi,
            None,
        )
        .await;
    assert_eq!(
        (st, by_device["decision"].clone()),
        (200, json!("deny")),
        "the machine named by its device id: {by_device}"
    );
    let (st, other) = s
        .api(
            "GET",
            &format!("/usher/loginCheck?principal=admin@contoso.test&machine={web2}"),
            &mi,
            None,
        )
        .await;
    assert_eq!(
        (st, other["error"]["code"].clone()),
        (403, json!("AuthorizationFailed")),
        "{other}"
    );

    // Joined with the login extension: a second join is refused.
    let (_, token3) = {
        let (st, t) = s
            .api("POST", &format!("{web1}/onboardingToken"), &admin, None)
            .await;
        assert_eq!(st, 200);
        (st, t["onboardingToken"].as_str().unwrap().to_owned())
    };
    let (code, _, err) = a.join(&s, &token3).await;
    assert_eq!(code, 1);
    assert!(err.contains("remove the extension"), "{err}");

    // Removing the extension: the device leaves, the operator's file comes back.
    let (st, _) = s
        .api(
            "DELETE",
            &format!("{web1}/extensions/AADSSHLoginForLinux"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s
        .api(
            "GET",
            &format!("{web1}/extensions/AADSSHLoginForLinux"),
            &admin,
            None,
        )
        .await
        .0
        != 404
    {
        assert!(Instant::now() < deadline, "the extension was never removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        std::fs::read_to_string(a.etc("ssh/sshd_config.d/10-usher.conf")).unwrap(),
        "# operator's file\n"
    );
    assert!(!a.etc("usher/login.conf").exists());
    // Everything else goes back too: the edited files byte for byte, the modules, the helper,
    // the CA, sudoers and the host certificate.
    for (f, text) in &before {
        assert_eq!(&std::fs::read_to_string(a.etc(f)).unwrap(), text, "{f} restored");
    }
    for gone in [
        "ssh/usher_user_ca.pub",
        "sudoers.d/usher-admins",
        "ssh/ssh_host_ed25519_key-cert.pub",
    ] {
        assert!(!a.etc(gone).exists(), "{gone} removed");
    }
    for gone in [
        "lib/x86_64-linux-gnu/libnss_usher.so.2",
        "lib/x86_64-linux-gnu/security/pam_usher.so",
        "libexec/usher/usher-principals",
    ] {
        assert!(!a.usr_upper(gone).exists(), "{gone} removed");
    }
    let status = a.status().await;
    assert_eq!(status["DeviceJoined"], "NO", "{status}");
    let (_, devices) = s.api("GET", "/v1.0/devices", &admin, None).await;
    assert_eq!(devices["value"], json!([]));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_failure_codes() {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    s.api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;

    // No identity: terminal error 1007, exit code -2145648574.
    let mut c = Machine::new("noid", DEBIAN12);
    let (noid, token) = vm(&s, &admin, &rg, "noid", false).await;
    assert_eq!(c.join(&s, &token).await.0, 0);
    c.start(&[]);
    set_extension(
        &s,
        &admin,
        &noid,
        "Microsoft.Azure.ActiveDirectory",
        "AADSSHLoginForLinux",
        None,
    )
    .await;
    let e = terminal(&s, &admin, &noid, "AADSSHLoginForLinux").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/-2145648574", "{e}");
    assert!(
        message.contains("1007") && message.contains("DSREG_E_MSI_TENANTID_UNAVAILABLE"),
        "{message}"
    );
    // IMDS says the same, and the doctor names the fix.
    let (st, info, _) = c
        .imds(
            "/metadata/identity/info?api-version=2018-02-01",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(
        (st, info["error_description"].clone()),
        (400, json!("Identity not found"))
    );
    let (code, out, _) = c.exec(&["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  identity info") && out.contains("usher vm identity assign"),
        "{out}"
    );
    // The Windows extension on Linux: exit code 51. (One extension per handler: the failed
    // Linux one is deleted first; the agent takes back what it left.)
    let (st, _) = s
        .api(
            "DELETE",
            &format!("{noid}/extensions/AADSSHLoginForLinux"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s
        .api(
            "GET",
            &format!("{noid}/extensions/AADSSHLoginForLinux"),
            &admin,
            None,
        )
        .await
        .0
        != 404
    {
        assert!(
            Instant::now() < deadline,
            "the failed extension was never removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    set_extension(
        &s,
        &admin,
        &noid,
        "Microsoft.Azure.ActiveDirectory",
        "AADLoginForWindows",
        None,
    )
    .await;
    let e = terminal(&s, &admin, &noid, "AADLoginForWindows").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/51", "{e}");
    assert!(
        message.contains("This extension is not supported on the VM's operating system"),
        "{message}"
    );
    c.stop().await;

    // An unsupported OS: 51.
    let mut d = Machine::new("old", CENTOS7);
    let (old, token) = vm(&s, &admin, &rg, "old", true).await;
    assert_eq!(d.join(&s, &token).await.0, 0);
    d.start(&[]);
    set_extension(&s, &admin, &old, "Usher.Identity", "LoginForLinux", None).await;
    let e = terminal(&s, &admin, &old, "LoginForLinux").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/51", "{e}");
    assert!(message.contains("centos 7"), "{message}");
    d.stop().await;

    // The registration endpoint cannot be reached: -2145648607.
    let mut f = Machine::new("walled", DEBIAN12);
    f.set_config(&format!(
        "device_registration_url = \"https://127.0.0.1:{}/usher/agent/device\"\n",
        free_port()
    ));
    let (walled, token) = vm(&s, &admin, &rg, "walled", true).await;
    assert_eq!(f.join(&s, &token).await.0, 0);
    f.start(&[]);
    set_extension(&s, &admin, &walled, "Usher.Identity", "LoginForLinux", None).await;
    let e = terminal(&s, &admin, &walled, "LoginForLinux").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/-2145648607", "{e}");
    assert!(message.contains("DSREG_AUTOJOIN_DISC_FAILED"), "{message}");
    // Each failure is visible in the machine's log, under the canonical name whatever alias was used.
    let log = std::fs::read_to_string(
        f.state()
            .join("extensions/Usher.Identity.LoginForLinux/CommandExecution.log"),
    )
    .unwrap();
    assert!(log.contains("DSREG_AUTOJOIN_DISC_FAILED"), "{log}");
    f.stop().await;
    let log = std::fs::read_to_string(
        c.state()
            .join("extensions/Usher.Identity.LoginForLinux/CommandExecution.log"),
    )
    .unwrap();
    assert!(log.contains("not supported"), "{log}");

    // Another directory already provides users: 52, naming it.
    let mut h = Machine::new("sssd1", DEBIAN12);
    std::fs::write(h.etc("nsswitch.conf"), "passwd: files sss\ngroup: files sss\n").unwrap();
    let (sssd1, _) = vm(&s, &admin, &rg, "sssd1", true).await;
    // A token issued again replaces the last one.
    let (st, t1) = s
        .api("POST", &format!("{sssd1}/onboardingToken"), &admin, None)
        .await;
    assert_eq!(st, 200);
    let (_, t2) = s
        .api("POST", &format!("{sssd1}/onboardingToken"), &admin, None)
        .await;
    let (code, _, err) = h.join(&s, t1["onboardingToken"].as_str().unwrap()).await;
    assert_eq!(code, 1, "a replaced token is refused");
    assert!(err.contains("already used or it expired"), "{err}");
    assert_eq!(h.join(&s, t2["onboardingToken"].as_str().unwrap()).await.0, 0);
    h.start(&[]);
    set_extension(&s, &admin, &sssd1, "Usher.Identity", "LoginForLinux", None).await;
    let e = terminal(&s, &admin, &sssd1, "LoginForLinux").await;
    let (code, message) = status_of(&e);
    assert_eq!(code, "ProvisioningState/failed/52", "{e}");
    assert!(message.contains("'sss'"), "{message}");
    h.stop().await;

    // A used or expired token is refused clearly; garbage too.
    let g = Machine::new("late", DEBIAN12);
    let (code, _, err) = g.join(&s, "usher-join-not-a-real-token").await;
    assert_eq!(code, 1);
    assert!(err.contains("already used or it expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_shapes_rules_and_tokens_the_server_accepts() {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    s.api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;
    let mut m = Machine::new("app1", DEBIAN12);
    let (app1, token) = vm(&s, &admin, &rg, "app1", true).await;
    assert_eq!(m.join(&s, &token).await.0, 0);
    let arc_port = free_port();
    m.start(&["--arc-address", &format!("127.0.0.1:{arc_port}")]);

    // Azure's rules: Metadata: true, no X-Forwarded-For, a known api-version.
    let (st, b, _) = m.imds("/metadata/instance?api-version=2017-08-01", &[]).await;
    assert_eq!(
        (st, b["error"].clone()),
        (400, json!("Bad request. Required metadata header not specified"))
    );
    let (st, b, _) = m
        .imds(
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
            &[],
        )
        .await;
    assert_eq!((st, b["error"].clone()), (400, json!("bad_request_102")), "{b}");
    let (st, _, _) = m
        .imds(
            "/metadata/instance?api-version=2017-08-01",
            &[("Metadata", "true"), ("X-Forwarded-For", "10.1.1.1")],
        )
        .await;
    assert_eq!(st, 400);
    let (st, b, _) = m.imds("/metadata/instance", &[("Metadata", "true")]).await;
    assert_eq!(st, 400);
    assert!(b["newest-versions"].is_array(), "{b}");

    // The instance and identity, all values strings.
    let (st, inst, _) = m
        .imds(
            "/metadata/instance?api-version=2017-08-01",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(st, 200, "{inst}");
    assert_eq!(inst["compute"]["resourceId"], app1.as_str());
    assert_eq!(inst["compute"]["name"], "app1");
    assert_eq!(inst["compute"]["osType"], "Linux");
    assert!(
        inst["compute"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| !v.is_number() && !v.is_boolean()),
        "{inst}"
    );
    let (_, info, _) = m
        .imds(
            "/metadata/identity/info?api-version=2018-02-01",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(info["tenantId"], s.tenant_id.as_str());

    // A token for the device-registration resource whose oid is the VM's identity.
    let (_, vmv) = s.api("GET", &app1, &admin, None).await;
    let principal = vmv["identity"]["principalId"].as_str().unwrap().to_owned();
    let (st, t, _) = m
        .imds("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=urn:ms-drs:enterpriseregistration.windows.net", &[("Metadata", "true")])
        .await;
    assert_eq!(st, 200, "{t}");
    for k in ["expires_in", "expires_on", "not_before", "resource", "token_type"] {
        assert!(t[k].is_string(), "{k}: {t}");
    }
    let payload = t["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&usher_crypto_decode(payload)).unwrap();
    assert_eq!(claims["oid"], principal.as_str());
    let (st, bad, _) = m
        .imds(
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://nothing.example/",
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(st, 400, "{bad}");
    let (st, bad, _) = m
        .imds("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x&client_id=00000000-0000-0000-0000-000000000000", &[("Metadata", "true")])
        .await;
    assert_eq!(
        (st, bad["error_description"].clone()),
        (400, json!("Identity not found"))
    );

    // A token for the management API works against it once the identity has a role.
    let (st, mgmt, _) = m
        .imds(
            &format!(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                s.url
            ),
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(st, 200, "{mgmt}");
    let mi = mgmt["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.api("GET", &app1, &mi, None).await.0, 403, "no role yet");
    let (st, b) = s
        .api("PUT", &format!("{rg}/providers/Microsoft.Authorization/roleAssignments/7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"), &admin,
            Some(json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}"), "principalId": principal}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, got) = s.api("GET", &app1, &mi, None).await;
    assert_eq!((st, got["name"].clone()), (200, json!("app1")));
    // The cached token is served again (same token) until near expiry.
    let (_, again, _) = m
        .imds(
            &format!(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                s.url
            ),
            &[("Metadata", "true")],
        )
        .await;
    assert_eq!(again["access_token"], mgmt["access_token"]);

    // Calls that reach the server are limited per machine (20/s, 5 at once): a burst gets 429s.
    let burst_started = Instant::now();
    let burst: Vec<_> = (0..40)
        .map(|_| {
            let path = format!(
                "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}&bypass_cache=true",
                s.url
            );
            let port = m.imds_port;
            tokio::spawn(async move { imds_get(port, &path, &[("Metadata", "true")]).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for h in burst {
        let (st, body, _) = h.await.unwrap();
        if st == 429 {
            assert_eq!(body["error"], "too_many_requests", "{body}");
        }
        statuses.push(st);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?} in {:?}",
        burst_started.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    // Cache hits are not limited.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..50 {
        let (st, _, _) = m
            .imds(
                &format!(
                    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}",
                    s.url
                ),
                &[("Metadata", "true")],
            )
            .await;
        assert_eq!(st, 200);
    }

    // The Arc-style endpoint challenges first, then accepts the root-only file's content.
    let (st, _, headers) = imds_get(
        arc_port,
        &format!(
            "/metadata/identity/oauth2/token?api-version=2020-06-01&resource={}",
            s.url
        ),
        &[("Metadata", "true")],
    )
    .await;
    assert_eq!(st, 401);
    let realm = headers
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .strip_prefix("Basic realm=")
        .unwrap()
        .to_owned();
    assert!(
        realm.starts_with("/var/opt/azcmagent/tokens/") && realm.ends_with(".key"),
        "{realm}"
    );
    let meta = std::fs::metadata(&realm).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600,
        "root only"
    );
    let secret = std::fs::read_to_string(&realm).unwrap();
    let (st, wrong, _) = imds_get(
        arc_port,
        &format!(
            "/metadata/identity/oauth2/token?api-version=2020-06-01&resource={}",
            s.url
        ),
        &[("Metadata", "true"), ("Authorization", "Basic nope")],
    )
    .await;
    assert_eq!(st, 401, "{wrong}");
    let auth = format!("Basic {secret}");
    let (st, arc, _) = imds_get(
        arc_port,
        &format!(
            "/metadata/identity/oauth2/token?api-version=2020-06-01&resource={}",
            s.url
        ),
        &[("Metadata", "true"), ("Authorization", &auth)],
    )
    .await;
    assert_eq!(st, 200, "{arc}");

    // The real Azure SDK (azure-identity from PyPI) on the machine, both ways.
    let python = std::env::var("USHER_TEST_PYTHON")
        .expect("USHER_TEST_PYTHON names a Python with azure-identity (scripts/python-deps.sh sets it up; scripts/test.sh runs it)");
    let script = format!(
        "from azure.identity import ManagedIdentityCredential as M\nt = M().get_token('{}/.default')\nprint(t.token)\n",
        s.url
    );
    for (label, env) in [
        (
            "IMDS",
            vec![(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST".to_owned(),
                format!("http://127.0.0.1:{}", m.imds_port),
            )],
        ),
        (
            "Arc",
            vec![
                (
                    "IDENTITY_ENDPOINT".to_owned(),
                    format!("http://127.0.0.1:{arc_port}/metadata/identity/oauth2/token"),
                ),
                ("IMDS_ENDPOINT".to_owned(), format!("http://127.0.0.1:{arc_port}")),
            ],
        ),
    ] {
        let out = tokio::process::Command::new(&python)
            .arg("-c")
            .arg(&script)
            .envs(env)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("IDENTITY_HEADER")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sdk_token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (st, got) = s.api("GET", &app1, &sdk_token, None).await;
        assert_eq!(
            (st, got["name"].clone()),
            (200, json!("app1")),
            "{label}: the server accepts the SDK's token"
        );
    }
    m.stop().await;
    // The Arc file goes away with the agent.
    assert!(!Path::new(&realm).exists());

    // IMDS on 169.254.169.254:80, as the seed's curl commands expect: the agent adds the address
    // to the loopback interface first (here in a network namespace of the machine's own).
    let mut n = Machine::new("linklocal", DEBIAN12);
    let (_, token) = vm(&s, &admin, &rg, "linklocal", true).await;
    assert_eq!(n.join(&s, &token).await.0, 0);
    n.own_network = true;
    n.start(&["--imds-address", "169.254.169.254"]);
    let pid = n.agent.as_ref().unwrap().id().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let out = tokio::process::Command::new("nsenter")
            .args([
                "--net",
                "--target",
                &pid,
                "curl",
                "-s",
                "-H",
                "Metadata: true",
                "http://169.254.169.254/metadata/versions",
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("apiVersions") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(answer.contains("2018-02-01"), "{answer}");
    let addrs = tokio::process::Command::new("nsenter")
        .args(["--net", "--target", &pid, "ip", "-o", "addr", "show", "dev", "lo"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&addrs.stdout).contains("169.254.169.254/32"));
    n.stop().await;
}

fn usher_crypto_decode(part: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap()
}

/// Waits (≤ 5 s) until the machine's login cache satisfies `want`; returns the cache.
async fn cache_until(m: &Machine, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let cache: Value = std::fs::read(m.state().join("logins.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if want(&cache) {
            return cache;
        }
        assert!(
            Instant::now() < deadline,
            "the login cache never got there: {cache}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn login_of<'a>(cache: &'a Value, upn: &str) -> Option<&'a Value> {
    cache["logins"]
        .as_array()?
        .iter()
        .find(|l| l["userPrincipalName"] == upn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_cache_follows_roles_groups_and_accounts() {
    let s = usher_testkit::spawn().await;
    let admin = s.admin_token().await;
    let sub = default_sub(&s, &admin).await;
    let rg = format!("/subscriptions/{sub}/resourceGroups/rg1");
    s.api("PUT", &rg, &admin, Some(json!({"location": "southcentralus"})))
        .await;
    let mut m = Machine::new("cache1", DEBIAN12);
    let (_, token) = vm(&s, &admin, &rg, "cache1", true).await;
    assert_eq!(m.join(&s, &token).await.0, 0);
    m.start(&[]);
    cache_until(&m, |c| c["logins"] == json!([])).await;
    // With the login extension installed, the NSS files follow the cache too.
    let cache1 = format!("{rg}/providers/Microsoft.Compute/virtualMachines/cache1");
    set_extension(&s, &admin, &cache1, "Usher.Identity", "LoginForLinux", None).await;
    let e = terminal(&s, &admin, &cache1, "LoginForLinux").await;
    assert_eq!(e["properties"]["provisioningState"], "Succeeded", "{e}");
    assert_eq!(
        std::fs::read_to_string(m.etc("usher/group")).unwrap(),
        "usher-admins:x:2147352576:\n"
    );

    // A role through a group at the resource group: the member appears, with a UID.
    let ann = s.create_user("ann@contoso.test", "Sunny-garden-41", false).await;
    let (_, g) = s.api("POST", "/v1.0/groups", &admin, Some(json!({"displayName": "ops", "mailNickname": "ops", "securityEnabled": true, "mailEnabled": false}))).await;
    let g = g["id"].as_str().unwrap().to_owned();
    let role =
        |r: &str| format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{r}");
    let (st, b) = s
        .api("PUT", &format!("{rg}/providers/Microsoft.Authorization/roleAssignments/3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"), &admin,
            Some(json!({"properties": {"roleDefinitionId": role("fb879df8-f326-4884-b1cf-06f3ad86be52"), "principalId": g}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = s
        .api(
            "POST",
            &format!("/v1.0/groups/{g}/members/$ref"),
            &admin,
            Some(json!({"@odata.id": format!("{}/v1.0/directoryObjects/{ann}", s.url)})),
        )
        .await;
    assert!(st == 204 || st == 200, "{b}");
    let cache = cache_until(&m, |c| login_of(c, "ann@contoso.test").is_some()).await;
    let entry = login_of(&cache, "ann@contoso.test").unwrap();
    assert_eq!(entry["right"], "user");
    assert!(entry["uid"].as_u64().unwrap() >= 0x7000_0000, "{entry}");
    let uid = entry["uid"].clone();
    // An admin role directly: the right becomes admin, the UID stays.
    let (st, b) = s
        .api("PUT", &format!("{rg}/providers/Microsoft.Authorization/roleAssignments/2b1c0d9e-8f7a-4b6c-9d5e-4f3a2b1c0d9e"), &admin,
            Some(json!({"properties": {"roleDefinitionId": role("1c0163c0-47e6-4577-8991-ea5c82e286e4"), "principalId": ann}})))
        .await;
    assert_eq!(st, 201, "{b}");
    let cache = cache_until(&m, |c| {
        login_of(c, "ann@contoso.test").is_some_and(|l| l["right"] == "admin")
    })
    .await;
    assert_eq!(login_of(&cache, "ann@contoso.test").unwrap()["uid"], uid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(m.etc("usher/group"))
        .unwrap_or_default()
        .contains("usher-admins:x:2147352576:ann@contoso.test")
    {
        assert!(Instant::now() < deadline, "usher-admins never got ann");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let passwd = std::fs::read_to_string(m.etc("usher/passwd")).unwrap();
    assert_eq!(
        passwd,
        format!("ann@contoso.test:*:{uid}:{uid}:ann@contoso.test:/home/ann@contoso.test:/bin/bash\n")
    );
    // A disabled account leaves the cache.
    let (st, b) = s
        .api(
            "PATCH",
            &format!("/v1.0/users/{ann}"),
            &admin,
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert!(st == 204 || st == 200, "{b}");
    cache_until(&m, |c| c["logins"] == json!([])).await;
    assert_eq!(m.status().await["CachedLogins"], 0);
    // Removing the extension takes the NSS files away.
    let (st, _) = s
        .api(
            "DELETE",
            &format!("{cache1}/extensions/LoginForLinux"),
            &admin,
            None,
        )
        .await;
    assert_eq!(st, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.etc("usher/passwd").exists() {
        assert!(Instant::now() < deadline, "the NSS files stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.stop().await;
}
