//! The real `usher` binary against a real in-process usher server (`usher_testkit::spawn()`):
//! password and device-code login, `account show`, the AADSTS errors, `ad user|group|sp|signin`,
//! output formats and the authorisation of directory writes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use usher_testkit::{ADMIN_PASSWORD, TestServer};

const ADMIN: &str = "admin@contoso.test";
const VM_SIGN_IN_APP: &str = "372140e0-b3b7-4226-8ef9-d57986796201";
const USER_PASSWORD: &str = "Correct-horse-77!";

/// The result of one `usher` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "usher failed: {self:?}");
        &self.stdout
    }

    /// Asserts exit 0 and parses stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts exit 1 with an error on stderr that starts with `(code)`.
    fn fails_with(&self, code: &str) {
        assert_eq!(self.code, 1, "expected exit 1: {self:?}");
        assert!(
            self.stderr.starts_with(&format!("({code})")),
            "expected ({code}) on stderr: {self:?}"
        );
        assert!(
            self.stdout.is_empty(),
            "stdout should be empty on errors: {self:?}"
        );
    }
}

/// One `usher` installation: its own token cache, pointed at the test server.
struct Cli {
    config: tempfile::TempDir,
    server: String,
    ca: PathBuf,
}

impl Cli {
    fn new(server: &TestServer) -> Self {
        Cli {
            config: tempfile::tempdir().unwrap(),
            server: server.url.clone(),
            ca: server.ca.clone(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_usher"));
        cmd.args(args)
            .env("USHER_CONFIG_DIR", self.config.path())
            .env("USHER_SERVER", &self.server)
            .env("USHER_CA_FILE", &self.ca)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    /// Runs with extra environment variables.
    async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("spawn usher");
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("usher {args:?} did not finish within 60 s"))
            .expect("usher output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    async fn login(&self, user: &str, password: &str) -> Run {
        self.run(&["login", "--username", user, "--password", password])
            .await
    }

    /// Signs in as the administrator, who owns the default subscription.
    async fn login_admin(&self) {
        let run = self.login(ADMIN, ADMIN_PASSWORD).await;
        let subs = run.json();
        assert_eq!(subs.as_array().map(Vec::len), Some(1), "{run:?}");
        assert_eq!(subs[0]["user"]["name"], ADMIN, "{run:?}");
    }
}

async fn admin_cli(server: &TestServer) -> Cli {
    let cli = Cli::new(server);
    cli.login_admin().await;
    cli
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_and_account_show() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);
    let run = cli.run(&["account", "show"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("Please run 'usher login' to setup account."),
        "{run:?}"
    );

    // The administrator owns the default subscription: login lists it, as `az login` does.
    let run = cli.login(ADMIN, ADMIN_PASSWORD).await;
    let subs: serde_json::Value = serde_json::from_str(run.ok().trim()).unwrap();
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "{run:?}");
    assert_eq!(subs[0]["tenantId"], server.tenant_id.as_str());
    assert_eq!(subs[0]["isDefault"], true);
    let run = cli
        .run(&["account", "show", "--query", "user.name", "--output", "tsv"])
        .await;
    assert_eq!(run.ok(), "admin@contoso.test\n");
    let account = cli.run(&["account", "show"]).await.json();
    assert_eq!(account["tenantId"], server.tenant_id.as_str(), "{account}");
    assert_eq!(account["user"], json!({"name": ADMIN, "type": "user"}));
    assert_eq!(account["isDefault"], true);

    // the cached token works against the API
    let me = cli.run(&["ad", "user", "show", "--id", ADMIN]).await.json();
    assert_eq!(me["userPrincipalName"], ADMIN);

    // an exported but empty USHER_SERVER / USHER_CA_FILE means "not given": the cached
    // sign-in's server and CA are used
    let run = cli
        .run_env(
            &["ad", "user", "show", "--id", ADMIN, "--query", "id", "-o", "tsv"],
            &[("USHER_SERVER", ""), ("USHER_CA_FILE", "")],
        )
        .await;
    assert_eq!(run.ok().trim(), me["id"].as_str().unwrap());

    let run = cli.run(&["logout"]).await;
    assert_eq!(run.ok(), "");
    let run = cli.run(&["account", "show"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_errors_carry_the_aadsts_code() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);

    let run = cli.login(ADMIN, "Not-the-password-1").await;
    run.fails_with("AADSTS50126");
    assert!(
        run.stderr.contains("AADSTS50126:"),
        "the server's description is shown: {run:?}"
    );

    server.create_user("temp@contoso.test", USER_PASSWORD, true).await;
    cli.login("temp@contoso.test", USER_PASSWORD)
        .await
        .fails_with("AADSTS50055");

    let id = server.create_user("off@contoso.test", USER_PASSWORD, false).await;
    let admin = server.admin_token().await;
    let (status, body) = server
        .api(
            "PATCH",
            &format!("/v1.0/users/{id}"),
            &admin,
            Some(json!({"accountEnabled": false})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    cli.login("off@contoso.test", USER_PASSWORD)
        .await
        .fails_with("AADSTS50057");

    // no failed login left a session behind
    let run = cli.run(&["account", "show"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lifecycle() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let ann_cli = Cli::new(&server);

    let created = cli
        .run(&[
            "ad",
            "user",
            "create",
            "--display-name",
            "Ann",
            "--user-principal-name",
            "ann@contoso.test",
            "--password",
            USER_PASSWORD,
        ])
        .await
        .json();
    assert_eq!(created["userPrincipalName"], "ann@contoso.test", "{created}");
    assert_eq!(created["displayName"], "Ann");
    let ann_id = created["id"].as_str().expect("id").to_owned();

    let list = cli.run(&["ad", "user", "list"]).await.json();
    let users = list
        .as_array()
        .unwrap_or_else(|| panic!("not a bare array: {list}"));
    assert!(
        users.iter().any(|u| u["userPrincipalName"] == "ann@contoso.test"),
        "{list}"
    );
    assert!(users.iter().any(|u| u["userPrincipalName"] == ADMIN), "{list}");
    let filtered = cli
        .run(&["ad", "user", "list", "--upn", "ann@contoso.test"])
        .await
        .json();
    assert_eq!(filtered.as_array().map(Vec::len), Some(1), "{filtered}");

    let shown = cli
        .run(&["ad", "user", "show", "--id", "ann@contoso.test"])
        .await
        .json();
    assert_eq!(shown["id"], ann_id.as_str(), "{shown}");
    assert_eq!(shown["userPrincipalName"], "ann@contoso.test");
    assert_eq!(shown["displayName"], "Ann");
    let by_id = cli.run(&["ad", "user", "show", "--id", &ann_id]).await.json();
    assert_eq!(by_id["userPrincipalName"], "ann@contoso.test");

    // Ann can sign in with the password she was given (not temporary by default)
    let run = ann_cli.login("ann@contoso.test", USER_PASSWORD).await;
    assert_eq!(run.json(), json!([]));

    let run = cli
        .run(&[
            "ad",
            "user",
            "update",
            "--id",
            "ann@contoso.test",
            "--account-enabled",
            "false",
        ])
        .await;
    assert_eq!(run.ok(), "", "update prints nothing");
    let shown = cli
        .run(&["ad", "user", "show", "--id", "ann@contoso.test"])
        .await
        .json();
    assert_eq!(shown["accountEnabled"], false, "{shown}");
    ann_cli
        .login("ann@contoso.test", USER_PASSWORD)
        .await
        .fails_with("AADSTS50057");

    let run = cli
        .run(&[
            "ad",
            "user",
            "update",
            "--id",
            &ann_id,
            "--account-enabled",
            "true",
            "--mfa-state",
            "enforced",
        ])
        .await;
    assert_eq!(run.ok(), "");
    ann_cli
        .login("ann@contoso.test", USER_PASSWORD)
        .await
        .fails_with("AADSTS50076");

    let run = cli
        .run(&["ad", "user", "update", "--id", &ann_id, "--display-name", "Ann B"])
        .await;
    assert_eq!(run.ok(), "");
    let run = cli
        .run(&[
            "ad",
            "user",
            "show",
            "--id",
            &ann_id,
            "--query",
            "displayName",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "Ann B\n");

    let run = cli
        .run(&["ad", "user", "delete", "--id", "ann@contoso.test"])
        .await;
    assert_eq!(run.ok(), "", "delete prints nothing");
    cli.run(&["ad", "user", "show", "--id", "ann@contoso.test"])
        .await
        .fails_with("Request_ResourceNotFound");
    cli.run(&["ad", "user", "delete", "--id", "ann@contoso.test"])
        .await
        .fails_with("Request_ResourceNotFound");
    let list = cli
        .run(&["ad", "user", "list", "--query", "[].userPrincipalName"])
        .await
        .json();
    assert_eq!(list, json!([ADMIN]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let bob = server.create_user("bob@contoso.test", USER_PASSWORD, false).await;

    let group = cli
        .run(&[
            "ad",
            "group",
            "create",
            "--display-name",
            "VM Admins",
            "--mail-nickname",
            "vmadmins",
            "--description",
            "admins of the VMs",
        ])
        .await
        .json();
    assert_eq!(group["displayName"], "VM Admins", "{group}");
    let gid = group["id"].as_str().expect("group id").to_owned();

    let list = cli
        .run(&["ad", "group", "list", "--query", "[].displayName"])
        .await
        .json();
    assert!(
        list.as_array().is_some_and(|l| l.contains(&json!("VM Admins"))),
        "{list}"
    );
    let shown = cli.run(&["ad", "group", "show", "-g", "VM Admins"]).await.json();
    assert_eq!(shown["id"], gid.as_str());

    let run = cli
        .run(&[
            "ad",
            "group",
            "member",
            "add",
            "-g",
            "VM Admins",
            "--member-id",
            &bob,
        ])
        .await;
    assert_eq!(run.ok(), "", "member add prints nothing");
    let members = cli
        .run(&["ad", "group", "member", "list", "-g", "VM Admins"])
        .await
        .json();
    let members = members
        .as_array()
        .unwrap_or_else(|| panic!("not a bare array: {members}"))
        .clone();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["id"], bob.as_str());
    assert_eq!(members[0]["userPrincipalName"], "bob@contoso.test");
    let run = cli
        .run(&[
            "ad",
            "group",
            "member",
            "list",
            "-g",
            &gid,
            "--query",
            "[].userPrincipalName",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "bob@contoso.test\n");
    let check = cli
        .run(&[
            "ad",
            "group",
            "member",
            "check",
            "-g",
            "VM Admins",
            "--member-id",
            &bob,
        ])
        .await
        .json();
    assert_eq!(check, json!({"value": true}));

    let run = cli
        .run(&["ad", "group", "member", "remove", "-g", &gid, "--member-id", &bob])
        .await;
    assert_eq!(run.ok(), "");
    let check = cli
        .run(&["ad", "group", "member", "check", "-g", &gid, "--member-id", &bob])
        .await
        .json();
    assert_eq!(check, json!({"value": false}));
    assert_eq!(
        cli.run(&["ad", "group", "member", "list", "-g", &gid])
            .await
            .json(),
        json!([])
    );

    let run = cli.run(&["ad", "group", "delete", "-g", "VM Admins"]).await;
    assert_eq!(run.ok(), "");
    cli.run(&["ad", "group", "show", "-g", &gid])
        .await
        .fails_with("Request_ResourceNotFound");
    cli.run(&["ad", "group", "show", "-g", "VM Admins"])
        .await
        .fails_with("Request_ResourceNotFound");
    let list = cli
        .run(&["ad", "group", "list", "--query", "[].displayName"])
        .await
        .json();
    assert!(
        !list.as_array().is_some_and(|l| l.contains(&json!("VM Admins"))),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_principals() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let query = format!("[?appId=='{VM_SIGN_IN_APP}'].displayName");

    let run = cli
        .run(&["ad", "sp", "list", "--query", &query, "-o", "tsv"])
        .await;
    assert_eq!(run.ok(), "Azure Windows VM Sign-In\n");
    let shown = cli
        .run(&["ad", "sp", "show", "--id", VM_SIGN_IN_APP])
        .await
        .json();
    assert_eq!(shown["appId"], VM_SIGN_IN_APP, "{shown}");
    let by_name = cli
        .run(&[
            "ad",
            "sp",
            "list",
            "--display-name",
            "VM Sign-In",
            "--query",
            "[].appId",
        ])
        .await
        .json();
    assert_eq!(by_name, json!([VM_SIGN_IN_APP]));

    let run = cli.run(&["ad", "sp", "delete", "--id", VM_SIGN_IN_APP]).await;
    assert_eq!(run.ok(), "");
    let run = cli
        .run(&["ad", "sp", "list", "--query", &query, "-o", "tsv"])
        .await;
    assert_eq!(run.ok(), "", "the service principal is gone");
    cli.run(&["ad", "sp", "show", "--id", VM_SIGN_IN_APP])
        .await
        .fails_with("Request_ResourceNotFound");

    let created = cli
        .run(&["ad", "sp", "create", "--id", VM_SIGN_IN_APP])
        .await
        .json();
    assert_eq!(created["appId"], VM_SIGN_IN_APP, "{created}");
    assert_eq!(created["displayName"], "Azure Windows VM Sign-In");
    let run = cli
        .run(&["ad", "sp", "list", "--query", &query, "-o", "tsv"])
        .await;
    assert_eq!(run.ok(), "Azure Windows VM Sign-In\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_log() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);
    cli.login(ADMIN, "Not-the-password-1")
        .await
        .fails_with("AADSTS50126");
    cli.login_admin().await;

    let list = cli.run(&["ad", "signin", "list", "--top", "5"]).await.json();
    let events = list
        .as_array()
        .unwrap_or_else(|| panic!("not a bare array: {list}"));
    assert!(!events.is_empty() && events.len() <= 5, "{list}");
    for e in events {
        assert!(e["userPrincipalName"].is_string(), "{e}");
        assert!(e["status"]["errorCode"].is_number(), "{e}");
    }
    // newest first: the successful sign-in, then the failure
    assert_eq!(events[0]["userPrincipalName"], ADMIN);
    assert_eq!(events[0]["status"]["errorCode"], 0, "{list}");
    assert!(events.iter().any(|e| e["status"]["errorCode"] == 50126), "{list}");

    let one = cli.run(&["ad", "signin", "list", "--top", "1"]).await.json();
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    let mine = cli
        .run(&[
            "ad",
            "signin",
            "list",
            "--upn",
            ADMIN,
            "--query",
            "[].userPrincipalName",
        ])
        .await
        .json();
    assert!(
        mine.as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|u| u == ADMIN)),
        "{mine}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_formats() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    server
        .create_user("carol@contoso.test", USER_PASSWORD, false)
        .await;

    let run = cli.run(&["ad", "user", "list", "-o", "table"]).await;
    let table = run.ok();
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("UserPrincipalName") && header.contains("DisplayName"),
        "{table}"
    );
    assert!(
        !header.split_whitespace().any(|c| c == "Id"),
        "az leaves id out of tables: {table}"
    );
    assert!(
        table.contains("admin@contoso.test") && table.contains("carol@contoso.test"),
        "{table}"
    );

    let run = cli.run(&["ad", "user", "list", "-o", "tsv"]).await;
    let tsv = run.ok();
    assert_eq!(tsv.lines().count(), 2, "one line per user: {tsv}");
    for upn in [ADMIN, "carol@contoso.test"] {
        assert!(
            tsv.lines().any(|l| l.split('\t').any(|f| f == upn)),
            "{upn} missing: {tsv}"
        );
    }
    assert!(!tsv.contains('{') && !tsv.contains('"'), "tsv has no JSON: {tsv}");

    let run = cli
        .run(&[
            "ad",
            "user",
            "list",
            "--query",
            "[].{upn:userPrincipalName, name:displayName}",
            "-o",
            "tsv",
        ])
        .await;
    assert!(
        run.ok()
            .lines()
            .any(|l| l == "carol@contoso.test\tcarol@contoso.test"),
        "{run:?}"
    );

    // the order of a multiselect hash is kept, also after a filter
    let run = cli
        .run(&[
            "ad",
            "user",
            "list",
            "--query",
            "[?userPrincipalName=='carol@contoso.test'].{z:userPrincipalName, a:accountEnabled}",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "carol@contoso.test\tTrue\n");
    let run = cli
        .run(&[
            "ad",
            "user",
            "show",
            "--id",
            ADMIN,
            "--query",
            "{z:userPrincipalName, a:accountEnabled}",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "admin@contoso.test\tTrue\n");

    let run = cli.run(&["ad", "user", "list", "-o", "none"]).await;
    assert_eq!(run.ok(), "");

    let run = cli.run(&["ad", "user", "list", "-o", "jsonc"]).await;
    assert!(
        run.json().is_array(),
        "jsonc is not coloured when not a terminal: {run:?}"
    );

    let run = cli.run(&["ad", "user", "list", "--query", "[?"]).await;
    assert_eq!(run.code, 2, "bad --query is a usage error: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admin_cannot_write_the_directory() {
    let server = usher_testkit::spawn().await;
    server
        .create_user("dave@contoso.test", USER_PASSWORD, false)
        .await;
    let dave = Cli::new(&server);
    assert_eq!(
        dave.login("dave@contoso.test", USER_PASSWORD).await.json(),
        json!([])
    );
    let run = dave
        .run(&["account", "show", "--query", "user.name", "-o", "tsv"])
        .await;
    assert_eq!(run.ok(), "dave@contoso.test\n");

    // reads are allowed to any signed-in user
    let list = dave
        .run(&["ad", "user", "list", "--query", "length(@)"])
        .await
        .json();
    assert_eq!(list, json!(2));

    dave.run(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Eve",
        "--user-principal-name",
        "eve@contoso.test",
        "--password",
        USER_PASSWORD,
    ])
    .await
    .fails_with("Authorization_RequestDenied");
    dave.run(&[
        "ad",
        "group",
        "create",
        "--display-name",
        "G",
        "--mail-nickname",
        "g",
    ])
    .await
    .fails_with("Authorization_RequestDenied");
    dave.run(&["ad", "user", "delete", "--id", ADMIN])
        .await
        .fails_with("Authorization_RequestDenied");
    let admin = server.admin_token().await;
    let (status, _) = server
        .api("GET", "/v1.0/users/eve@contoso.test", &admin, None)
        .await;
    assert_eq!(status, 404, "the refused write did not happen");
}

/// The value of a hidden input `name` in an HTML form.
fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no input {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("end of the value") + start;
    html[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_login() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);
    let mut child = cli.command(&["login"]).spawn().expect("spawn usher login");

    // the CLI prints the server's message with the user code on stderr
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let message = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains("enter the code") {
                return line;
            }
        }
        panic!("usher login ended without printing a code");
    })
    .await
    .expect("no device code message within 20 s");
    assert!(
        message.contains(&format!("{}/devicelogin", server.url)),
        "{message}"
    );
    let code = message
        .split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no code in {message}"))
        .to_owned();
    // keep draining stderr so that the child never blocks on a full pipe
    let rest_of_stderr = tokio::spawn(async move {
        let mut rest = String::new();
        let _ = lines.into_inner().read_to_string(&mut rest).await;
        rest
    });

    // a browser completes the sign-in
    let browser = server.client();
    let r = browser
        .get(format!("{}/devicelogin", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = browser
        .post(format!("{}/devicelogin", server.url))
        .form(&[("user_code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    let txn = hidden_input(&page, "txn");
    assert_eq!(hidden_input(&page, "step"), "password", "{page}");
    let r = browser
        .post(format!("{}/{}/login", server.url, server.tenant_id))
        .form(&[
            ("txn", txn.as_str()),
            ("step", "password"),
            ("username", ADMIN),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let page = r.text().await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"done\""),
        "the device sign-in did not finish: {page}"
    );

    // the CLI's next poll (every 5 s) gets the tokens
    let mut stdout = child.stdout.take().expect("stdout");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("usher login did not finish within 30 s of the sign-in")
        .expect("wait for usher login");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    let err = rest_of_stderr.await.unwrap();
    assert!(
        status.success(),
        "usher login failed: {status}; stdout {out}; stderr {err}"
    );
    // The administrator owns the default subscription, so login lists it.
    let subs: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}; stderr {err}"));
    assert_eq!(subs.as_array().map(Vec::len), Some(1), "stderr: {err}");

    let run = cli
        .run(&["account", "show", "--query", "user.name", "--output", "tsv"])
        .await;
    assert_eq!(run.ok(), "admin@contoso.test\n");
    let run = cli
        .run(&[
            "ad",
            "user",
            "show",
            "--id",
            ADMIN,
            "--query",
            "userPrincipalName",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "admin@contoso.test\n");
}

fn session_path(cli: &Cli) -> PathBuf {
    cli.config.path().join("session.json")
}

fn read_session(cli: &Cli) -> Value {
    serde_json::from_slice(&std::fs::read(session_path(cli)).unwrap()).unwrap()
}

fn write_session(cli: &Cli, session: &Value) {
    std::fs::write(session_path(cli), serde_json::to_vec(session).unwrap()).unwrap();
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_is_refreshed_once_across_processes() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let mut session = read_session(&cli);
    let first_refresh = session["refreshToken"]
        .as_str()
        .expect("refresh token cached")
        .to_owned();
    let first_access = session["accessToken"]
        .as_str()
        .expect("access token cached")
        .to_owned();
    session["expiresOn"] = json!(unix_now() - 10);
    write_session(&cli, &session);

    // four processes find the token expired at once: one refreshes, the others use its result
    let args = ["ad", "user", "list", "--query", "length(@)"];
    let (a, b, c, d) = tokio::join!(cli.run(&args), cli.run(&args), cli.run(&args), cli.run(&args));
    for run in [a, b, c, d] {
        assert_eq!(run.json(), json!(1), "{run:?}");
    }
    let session = read_session(&cli);
    assert_ne!(
        session["refreshToken"],
        first_refresh.as_str(),
        "the rotated refresh token is saved"
    );
    assert_ne!(session["accessToken"], first_access.as_str());
    assert!(
        session["expiresOn"].as_i64().unwrap() > unix_now() + 300,
        "{session}"
    );
    let refreshes = cli
        .run(&[
            "ad",
            "signin",
            "list",
            "--query",
            "[?clientAppUsed=='refresh_token'].status.errorCode",
        ])
        .await
        .json();
    assert_eq!(
        refreshes,
        json!([0]),
        "exactly one refresh, and no reuse of a rotated token"
    );

    // presenting the rotated refresh token again revokes the sign-in: the CLI says to log in
    let mut stale = session.clone();
    stale["refreshToken"] = json!(first_refresh);
    stale["expiresOn"] = json!(unix_now() - 10);
    write_session(&cli, &stale);
    let run = cli.run(&["ad", "user", "list"]).await;
    run.fails_with("AADSTS50173");
    assert!(
        run.stderr
            .trim_end()
            .ends_with("Please run 'usher login' to setup account."),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_and_client_secret() {
    use base64::Engine as _;
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;

    let app = cli
        .run(&[
            "ad",
            "app",
            "create",
            "--display-name",
            "e2e web",
            "--web-redirect-uris",
            "https://app.example/cb",
            "--identifier-uris",
            "api://e2e-web",
        ])
        .await
        .json();
    let app_id = app["appId"]
        .as_str()
        .unwrap_or_else(|| panic!("no appId: {app}"))
        .to_owned();
    assert_eq!(app["web"]["redirectUris"], json!(["https://app.example/cb"]));
    let sp = cli.run(&["ad", "sp", "create", "--id", &app_id]).await.json();
    assert_eq!(sp["appId"], app_id.as_str(), "{sp}");

    let cred = cli
        .run(&[
            "ad",
            "app",
            "credential",
            "reset",
            "--id",
            &app_id,
            "--display-name",
            "ci",
        ])
        .await
        .json();
    assert_eq!(cred["appId"], app_id.as_str(), "{cred}");
    assert_eq!(cred["tenant"], server.tenant_id.as_str());
    let secret = cred["password"].as_str().expect("password").to_owned();
    let (status, body) = server
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app_id),
            ("client_secret", &secret),
            ("scope", &format!("{}/.default", server.url)),
        ])
        .await;
    assert_eq!(status, 200, "the secret the CLI printed works: {body}");

    let run = cli
        .run(&[
            "ad",
            "app",
            "show",
            "--id",
            &app_id,
            "--query",
            "displayName",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), "e2e web\n");
    let listed = cli
        .run(&["ad", "app", "list", "--app-id", &app_id, "--query", "[].appId"])
        .await
        .json();
    assert_eq!(listed, json!([app_id]));

    // a token for the application's API, obtained with the cached refresh token
    let token = cli
        .run(&["account", "get-access-token", "--resource", "api://e2e-web"])
        .await
        .json();
    let payload = token["accessToken"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["tid"], server.tenant_id.as_str(), "{claims}");
    assert!(
        claims["aud"] == app_id.as_str() || claims["aud"] == "api://e2e-web",
        "{claims}"
    );
    assert_eq!(token["tenant"], server.tenant_id.as_str());

    let run = cli.run(&["ad", "app", "delete", "--id", &app_id]).await;
    assert_eq!(run.ok(), "");
    cli.run(&["ad", "app", "show", "--id", &app_id])
        .await
        .fails_with("Request_ResourceNotFound");
}

const VM_ADMIN_LOGIN: &str = "1c0163c0-47e6-4577-8991-ea5c82e286e4";
const VM_USER_LOGIN: &str = "fb879df8-f326-4884-b1cf-06f3ad86be52";

/// The ids in a JSON array of objects.
fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// The seed document's sequence, with `usher` in place of `az`: a resource group, the signed-in
/// user's name, the group's id, and a role assignment at the group's scope; then the same
/// assignment again, listing and deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_sequence_group_and_role_assignment() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);
    cli.run(&["login", "-u", ADMIN, "-p", ADMIN_PASSWORD]).await.ok();
    let sub = cli
        .run(&["account", "show", "--query", "id", "-o", "tsv"])
        .await
        .ok()
        .trim()
        .to_string();

    let group = cli
        .run(&[
            "group",
            "create",
            "--name",
            "myResourceGroup",
            "--location",
            "southcentralus",
        ])
        .await
        .json();
    let rg_id = format!("/subscriptions/{sub}/resourceGroups/myResourceGroup");
    assert_eq!(group["id"], rg_id.as_str(), "{group}");
    assert_eq!(group["name"], "myResourceGroup");
    assert_eq!(group["location"], "southcentralus");
    assert_eq!(group["properties"]["provisioningState"], "Succeeded");

    let username = cli
        .run(&["account", "show", "--query", "user.name", "--output", "tsv"])
        .await
        .ok()
        .trim()
        .to_string();
    assert_eq!(username, ADMIN);
    let rg = cli
        .run(&[
            "group",
            "show",
            "--resource-group",
            "myResourceGroup",
            "--query",
            "id",
            "-o",
            "tsv",
        ])
        .await
        .ok()
        .trim()
        .to_string();
    assert_eq!(rg, rg_id);

    let create = [
        "role",
        "assignment",
        "create",
        "--role",
        "Virtual Machine Administrator Login",
        "--assignee",
        username.as_str(),
        "--scope",
        rg.as_str(),
    ];
    let created = cli.run(&create).await.json();
    assert_eq!(created["principalType"], "User", "{created}");
    assert_eq!(
        created["roleDefinitionId"],
        format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{VM_ADMIN_LOGIN}"),
        "{created}"
    );
    assert!(
        created["scope"].as_str().unwrap().eq_ignore_ascii_case(&rg),
        "{created}"
    );
    assert_eq!(created["type"], "Microsoft.Authorization/roleAssignments");
    assert!(created.get("properties").is_none(), "flattened: {created}");
    let admin_id = cli
        .run(&["ad", "user", "show", "--id", ADMIN, "--query", "id", "-o", "tsv"])
        .await
        .ok()
        .trim()
        .to_string();
    assert_eq!(created["principalId"], admin_id.as_str());
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.ends_with(created["name"].as_str().unwrap()), "{created}");

    // the same assignment again: Azure's conflict
    let again = cli.run(&create).await;
    again.fails_with("RoleAssignmentExists");

    // listed for the assignee across the subscription, with az's filled-in names
    let listed = cli
        .run(&["role", "assignment", "list", "--assignee", &username, "--all"])
        .await
        .json();
    assert!(ids_of(&listed).contains(&id), "{listed}");
    let mine = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["roleDefinitionName"], "Virtual Machine Administrator Login");
    assert_eq!(mine["principalName"], ADMIN);
    assert_eq!(mine["principalType"], "User");
    // by default only the subscription's own scope is listed; --scope / -g list the group's
    let at_sub = cli.run(&["role", "assignment", "list"]).await.json();
    assert!(!ids_of(&at_sub).contains(&id), "{at_sub}");
    let at_rg = cli
        .run(&["role", "assignment", "list", "--scope", &rg])
        .await
        .json();
    assert_eq!(ids_of(&at_rg), vec![id.clone()], "{at_rg}");
    let by_role = cli
        .run(&[
            "role",
            "assignment",
            "list",
            "-g",
            "myResourceGroup",
            "--role",
            "Virtual Machine User Login",
        ])
        .await
        .json();
    assert_eq!(by_role, json!([]));

    let run = cli.run(&["role", "assignment", "delete", "--ids", &id]).await;
    assert_eq!(run.ok(), "");
    let listed = cli
        .run(&["role", "assignment", "list", "--assignee", &username, "--all"])
        .await
        .json();
    assert!(!ids_of(&listed).contains(&id), "{listed}");

    // delete by assignee, role and scope
    let created = cli.run(&create).await.json();
    let run = cli
        .run(&[
            "role",
            "assignment",
            "delete",
            "--assignee",
            &username,
            "--role",
            "Virtual Machine Administrator Login",
            "--scope",
            &rg,
        ])
        .await;
    assert_eq!(run.ok(), "");
    let at_rg = cli
        .run(&["role", "assignment", "list", "--scope", &rg])
        .await
        .json();
    assert!(
        !ids_of(&at_rg).contains(&created["id"].as_str().unwrap().to_string()),
        "{at_rg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_assignment_unknown_principal_and_role() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let run = cli
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Virtual Machine User Login",
            "--assignee",
            "nobody@fabrikam.test",
        ])
        .await;
    run.fails_with("PrincipalNotFound");
    assert!(
        run.stderr
            .contains("Cannot find user or service principal in graph database for 'nobody@fabrikam.test'"),
        "{run:?}"
    );
    assert!(run.stderr.contains("--assignee-object-id"), "{run:?}");

    // an object id given as such is not looked up here: the server refuses it
    let run = cli
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Virtual Machine User Login",
            "--assignee-object-id",
            "3f2b8a61-9c7e-4d0a-b5e4-2a6c1d9e7f30",
            "--assignee-principal-type",
            "User",
        ])
        .await;
    run.fails_with("PrincipalNotFound");
    assert!(
        run.stderr.contains("3f2b8a61-9c7e-4d0a-b5e4-2a6c1d9e7f30"),
        "{run:?}"
    );

    cli.run(&[
        "role",
        "assignment",
        "create",
        "--role",
        "Virtual Machine Superhero",
        "--assignee",
        ADMIN,
    ])
    .await
    .fails_with("RoleDefinitionDoesNotExist");

    // a group by display name and a service principal by app id are assignees too
    cli.run(&[
        "ad",
        "group",
        "create",
        "--display-name",
        "VM Users",
        "--mail-nickname",
        "vmusers",
    ])
    .await
    .ok();
    let a = cli
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            VM_USER_LOGIN,
            "--assignee",
            "VM Users",
        ])
        .await
        .json();
    assert_eq!(a["principalType"], "Group", "{a}");
    let sp = cli
        .run(&[
            "ad",
            "sp",
            "show",
            "--id",
            VM_SIGN_IN_APP,
            "--query",
            "id",
            "-o",
            "tsv",
        ])
        .await
        .ok()
        .trim()
        .to_string();
    let a = cli
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Virtual Machine User Login",
            "--assignee",
            VM_SIGN_IN_APP,
        ])
        .await
        .json();
    assert_eq!(a["principalType"], "ServicePrincipal", "{a}");
    assert_eq!(a["principalId"], sp.as_str(), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_owner_cannot_assign_roles_or_create_groups() {
    let server = usher_testkit::spawn().await;
    let admin = admin_cli(&server).await;
    let sub = admin
        .run(&["account", "show", "--query", "id", "-o", "tsv"])
        .await
        .ok()
        .trim()
        .to_string();
    admin
        .run(&[
            "ad",
            "user",
            "create",
            "--display-name",
            "Frank",
            "--user-principal-name",
            "frank@contoso.test",
            "--password",
            USER_PASSWORD,
        ])
        .await
        .ok();
    let frank = Cli::new(&server);
    assert_eq!(
        frank.login("frank@contoso.test", USER_PASSWORD).await.json(),
        json!([])
    );

    // no subscription of his own: a clear error, unless --subscription names one
    let run = frank.run(&["group", "list"]).await;
    run.fails_with("SubscriptionNotFound");
    assert!(run.stderr.contains("usher account show"), "{run:?}");

    frank
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Virtual Machine Administrator Login",
            "--assignee",
            "frank@contoso.test",
            "--subscription",
            &sub,
        ])
        .await
        .fails_with("AuthorizationFailed");
    frank
        .run(&[
            "group",
            "create",
            "-n",
            "franksGroup",
            "-l",
            "westus",
            "--subscription",
            &sub,
        ])
        .await
        .fails_with("AuthorizationFailed");
    let run = admin.run(&["group", "exists", "-n", "franksGroup"]).await;
    assert_eq!(run.ok(), "false\n");
    let listed = admin
        .run(&[
            "role",
            "assignment",
            "list",
            "--assignee",
            "frank@contoso.test",
            "--all",
        ])
        .await
        .json();
    assert_eq!(listed, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_definition_list() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    let run = cli
        .run(&[
            "role",
            "definition",
            "list",
            "--name",
            "Virtual Machine User Login",
            "--query",
            "[0].name",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(run.ok(), format!("{VM_USER_LOGIN}\n"));

    let defs = cli
        .run(&[
            "role",
            "definition",
            "list",
            "--name",
            "virtual machine administrator login",
        ])
        .await
        .json();
    let defs = defs.as_array().unwrap();
    assert_eq!(defs.len(), 1, "{defs:?}");
    let d = &defs[0];
    assert_eq!(d["roleName"], "Virtual Machine Administrator Login");
    assert_eq!(d["name"], VM_ADMIN_LOGIN);
    assert_eq!(d["roleType"], "BuiltInRole");
    assert_eq!(d["type"], "Microsoft.Authorization/roleDefinitions");
    assert!(d["id"].as_str().unwrap().ends_with(VM_ADMIN_LOGIN), "{d}");
    assert!(
        d["permissions"].is_array() && d["assignableScopes"].is_array(),
        "{d}"
    );

    let all = cli
        .run(&["role", "definition", "list", "--query", "[].roleName"])
        .await
        .json();
    assert!(all.as_array().unwrap().contains(&json!("Owner")), "{all}");
    let none = cli
        .run(&["role", "definition", "list", "--name", "No Such Role"])
        .await
        .json();
    assert_eq!(none, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_group_list_exists_delete() {
    let server = usher_testkit::spawn().await;
    let cli = admin_cli(&server).await;
    assert_eq!(cli.run(&["group", "list"]).await.json(), json!([]));
    let run = cli.run(&["group", "exists", "--name", "rg1"]).await;
    assert_eq!(run.ok(), "false\n");

    let g = cli
        .run(&[
            "group", "create", "-g", "rg1", "-l", "westus", "--tags", "env=test", "owner",
        ])
        .await
        .json();
    assert_eq!(g["tags"], json!({"env": "test", "owner": ""}), "{g}");
    cli.run(&["group", "create", "-n", "rg2", "-l", "eastus"])
        .await
        .ok();
    let names = cli
        .run(&["group", "list", "--query", "[].name", "-o", "tsv"])
        .await;
    let mut names: Vec<&str> = names.ok().lines().collect();
    names.sort_unstable();
    assert_eq!(names, vec!["rg1", "rg2"]);
    let run = cli.run(&["group", "exists", "-n", "rg1"]).await;
    assert_eq!(run.ok(), "true\n");
    let shown = cli.run(&["group", "show", "-n", "rg1"]).await.json();
    assert_eq!(shown["location"], "westus");

    // another location for an existing group: Azure's error
    cli.run(&["group", "create", "-n", "rg1", "-l", "eastus"])
        .await
        .fails_with("InvalidResourceGroupLocation");

    // without --yes and without a terminal, delete refuses and deletes nothing
    let run = cli.run(&["group", "delete", "-n", "rg1"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{run:?}");
    assert_eq!(cli.run(&["group", "exists", "-n", "rg1"]).await.ok(), "true\n");

    let run = cli.run(&["group", "delete", "-g", "rg1", "--yes"]).await;
    assert_eq!(run.ok(), "");
    assert_eq!(cli.run(&["group", "exists", "-n", "rg1"]).await.ok(), "false\n");
    cli.run(&["group", "show", "-n", "rg1"])
        .await
        .fails_with("ResourceGroupNotFound");
    let names = cli
        .run(&["group", "list", "--query", "[].name", "-o", "tsv"])
        .await;
    assert_eq!(names.ok(), "rg2\n");
}

/// Plays the machine's agent (which comes with the next layer) for one extension change: waits
/// until the extension is in `state`, then reports `outcome` with
/// the VM's own identity, through the same function the agent's endpoint calls.
async fn agent_reports(
    server: &TestServer,
    vm_id: String,
    machine: String,
    state: &'static str,
    outcome: usher_arm::ExtensionOutcome,
) -> tokio::task::JoinHandle<bool> {
    let arm = server.running().state.arm.clone();
    let admin = server
        .running()
        .state
        .dir()
        .find_user_by_upn(ADMIN)
        .await
        .unwrap()
        .unwrap()
        .id;
    tokio::spawn(async move {
        // Let the CLI start waiting first.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let parts: Vec<&str> = vm_id.split('/').collect();
        let (sub, rg, vm) = (parts[2], parts[4], parts[8]);
        for _ in 0..200 {
            if let Ok(e) = arm
                .get_extension(&admin, sub, rg, vm, "AADSSHLoginForLinux", false)
                .await
                && e["properties"]["provisioningState"] == state
            {
                // The generation the agent is asked to apply.
                let desired = arm.desired_extensions(&vm_id).await.unwrap();
                let current = desired[0]["generation"].as_u64().unwrap();
                return arm
                    .report_extension(&machine, &vm_id, "AADSSHLoginForLinux", current, outcome)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    })
}

/// The seed's VM steps with `usher` in place of `az`: `vm create` with `--assign-identity` and
/// the seed's (weak) password, `vm extension set` waiting for the machine, then the other `vm`
/// commands, `--enable-login`, and a custom role assigned at the VM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_sequence_vm_and_login_extension() {
    let server = usher_testkit::spawn().await;
    let cli = Cli::new(&server);
    cli.run(&["login", "-u", ADMIN, "-p", ADMIN_PASSWORD]).await.ok();
    cli.run(&[
        "group",
        "create",
        "--name",
        "myResourceGroup",
        "--location",
        "southcentralus",
    ])
    .await
    .ok();
    let run = cli
        .run(&[
            "vm",
            "create",
            "--resource-group",
            "myResourceGroup",
            "--name",
            "myVM",
            "--image",
            "Win2019Datacenter",
            "--assign-identity",
            "--admin-username",
            "azureuser",
            "--admin-password",
            "yourpassword",
        ])
        .await;
    let created = run.json();
    assert!(
        run.stderr.contains("WARNING: The admin password is weak"),
        "{run:?}"
    );
    let vm_id = created["id"].as_str().unwrap().to_string();
    assert!(
        vm_id.ends_with("/resourceGroups/myResourceGroup/providers/Microsoft.Compute/virtualMachines/myVM"),
        "{created}"
    );
    assert_eq!(created["location"], "southcentralus", "the group's location");
    assert_eq!(created["osType"], "Windows");
    // The one-time join token for the machine's agent; a new one replaces it.
    let first = created["onboardingToken"].as_str().unwrap().to_string();
    assert!(first.starts_with("usher-join-"), "{created}");
    assert!(created["onboardingTokenExpiresOn"].is_string(), "{created}");
    let again = cli
        .run(&["vm", "onboarding-token", "-g", "myResourceGroup", "-n", "myVM"])
        .await
        .json();
    let second = again["onboardingToken"].as_str().unwrap();
    assert!(second.starts_with("usher-join-") && second != first, "{again}");
    let machine = created["identity"]["systemAssignedIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = cli
        .run(&[
            "vm",
            "show",
            "-g",
            "myResourceGroup",
            "-n",
            "myVM",
            "--query",
            "identity.principalId",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(shown.ok().trim(), machine);

    // No agent yet: set waits (here 2 s), then prints the current state with a warning.
    let set = [
        "vm",
        "extension",
        "set",
        "--publisher",
        "Microsoft.Azure.ActiveDirectory",
        "--name",
        "AADSSHLoginForLinux",
        "--resource-group",
        "myResourceGroup",
        "--vm-name",
        "myVM",
    ];
    let mut waiting = set.to_vec();
    waiting.extend(["--timeout", "2"]);
    let run = cli.run(&waiting).await;
    assert_eq!(run.json()["provisioningState"], "Creating", "{run:?}");
    assert!(run.stderr.contains("still Creating after 2 s"), "{run:?}");
    // --no-wait returns at once (nothing changed, so the state is as it was).
    let mut no_wait = set.to_vec();
    no_wait.push("--no-wait");
    assert_eq!(cli.run(&no_wait).await.json()["provisioningState"], "Creating");

    // The machine applies the first change while set waits: set prints Succeeded.
    let agent = agent_reports(
        &server,
        vm_id.clone(),
        machine.clone(),
        "Creating",
        usher_arm::ExtensionOutcome::Succeeded {
            message: "Joined the directory.".into(),
        },
    )
    .await;
    let done = cli.run(&set).await.json();
    assert!(agent.await.unwrap());
    assert_eq!(done["provisioningState"], "Succeeded", "{done}");
    assert_eq!(done["typePropertiesType"], "AADSSHLoginForLinux");
    assert_eq!(done["resourceGroup"], "myResourceGroup");
    let code = cli
        .run(&[
            "vm",
            "extension",
            "show",
            "-g",
            "myResourceGroup",
            "--vm-name",
            "myVM",
            "-n",
            "AADSSHLoginForLinux",
            "--instance-view",
            "--query",
            "instanceView.statuses[0].code",
            "-o",
            "tsv",
        ])
        .await;
    assert_eq!(code.ok().trim(), "ProvisioningState/succeeded");

    // A change the machine fails: set exits 1 with the machine's message.
    let agent = agent_reports(
        &server,
        vm_id.clone(),
        machine.clone(),
        "Updating",
        usher_arm::ExtensionOutcome::Failed {
            exit_code: 51,
            message: "This extension is not supported on the VM's operating system".into(),
        },
    )
    .await;
    let mut changed = set.to_vec();
    changed.extend(["--settings", "{\"sshd\": true}"]);
    let run = cli.run(&changed).await;
    run.fails_with("VMExtensionProvisioningError");
    assert!(
        run.stderr.contains("not supported on the VM's operating system"),
        "{run:?}"
    );
    assert!(agent.await.unwrap());
    let listed = cli
        .run(&[
            "vm",
            "extension",
            "list",
            "-g",
            "myResourceGroup",
            "--vm-name",
            "myVM",
        ])
        .await
        .json();
    assert_eq!(listed[0]["provisioningState"], "Failed", "{listed}");

    // Delete waits until the machine has removed it.
    let agent = agent_reports(
        &server,
        vm_id.clone(),
        machine.clone(),
        "Deleting",
        usher_arm::ExtensionOutcome::Removed,
    )
    .await;
    let run = cli
        .run(&[
            "vm",
            "extension",
            "delete",
            "-g",
            "myResourceGroup",
            "--vm-name",
            "myVM",
            "-n",
            "AADSSHLoginForLinux",
        ])
        .await;
    assert_eq!(run.ok(), "");
    assert!(agent.await.unwrap());
    let listed = cli
        .run(&[
            "vm",
            "extension",
            "list",
            "-g",
            "myResourceGroup",
            "--vm-name",
            "myVM",
        ])
        .await
        .json();
    assert_eq!(listed, json!([]));

    // A VM without identity gets one later; --enable-login turns it on and sets the extension.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl break-glass";
    let plain = cli
        .run(&[
            "vm",
            "create",
            "-g",
            "myResourceGroup",
            "-n",
            "web1",
            "--image",
            "Debian12",
            "--admin-username",
            "azureuser",
            "--ssh-key-values",
            key,
        ])
        .await
        .json();
    assert!(plain.get("identity").is_none(), "{plain}");
    let assigned = cli
        .run(&["vm", "identity", "assign", "-g", "myResourceGroup", "-n", "web1"])
        .await
        .json();
    assert!(
        is_guid_text(assigned["systemAssignedIdentity"].as_str().unwrap()),
        "{assigned}"
    );
    let login = cli
        .run(&[
            "vm",
            "create",
            "-g",
            "myResourceGroup",
            "-n",
            "web2",
            "--image",
            "Ubuntu2204",
            "--enable-login",
            "--admin-username",
            "azureuser",
            "--admin-password",
            "Long-and-Strong-42",
        ])
        .await;
    let login_json = login.json();
    assert!(!login.stderr.contains("weak"), "{login:?}");
    assert_eq!(
        login_json["loginExtension"]["name"], "LoginForLinux",
        "{login_json}"
    );
    assert_eq!(login_json["loginExtension"]["provisioningState"], "Creating");
    assert!(login_json["identity"]["systemAssignedIdentity"].is_string());
    let names = cli
        .run(&[
            "vm",
            "list",
            "-g",
            "myResourceGroup",
            "--query",
            "[].name",
            "-o",
            "tsv",
        ])
        .await;
    let mut names: Vec<&str> = names.ok().lines().collect();
    names.sort_unstable();
    assert_eq!(names, vec!["myVM", "web1", "web2"]);
    cli.run(&[
        "vm",
        "create",
        "-g",
        "myResourceGroup",
        "-n",
        "bad",
        "--image",
        "CentOS",
        "--admin-username",
        "azureuser",
        "--admin-password",
        "x",
    ])
    .await
    .fails_with("InvalidParameter");

    // A custom role, assignable at the group, assigned at a VM.
    let role = json!({
        "Name": "Login operators", "Description": "Log in as users",
        "Actions": ["Microsoft.Compute/virtualMachines/read"],
        "DataActions": ["Microsoft.Compute/virtualMachines/login/action"],
        "AssignableScopes": [vm_id.split("/providers/").next().unwrap()],
    });
    let created_role = cli
        .run(&[
            "role",
            "definition",
            "create",
            "--role-definition",
            &role.to_string(),
        ])
        .await
        .json();
    assert_eq!(created_role["roleName"], "Login operators", "{created_role}");
    assert_eq!(created_role["roleType"], "CustomRole");
    cli.run(&[
        "ad",
        "user",
        "create",
        "--display-name",
        "Ann",
        "--user-principal-name",
        "ann@contoso.test",
        "--password",
        USER_PASSWORD,
    ])
    .await
    .ok();
    let web1 = vm_id.replace("/myVM", "/web1");
    let assigned = cli
        .run(&[
            "role",
            "assignment",
            "create",
            "--role",
            "Login operators",
            "--assignee",
            "ann@contoso.test",
            "--scope",
            &web1,
        ])
        .await
        .json();
    assert_eq!(
        assigned["roleDefinitionId"].as_str().unwrap().rsplit('/').next(),
        created_role["name"].as_str()
    );
    cli.run(&[
        "role",
        "definition",
        "delete",
        "--name",
        "Login operators",
        "--scope",
        &web1,
    ])
    .await
    .fails_with("RoleDefinitionHasAssignments");

    // Deleting a VM: gone, with its identity.
    cli.run(&["vm", "delete", "-g", "myResourceGroup", "-n", "web2", "--yes"])
        .await
        .ok();
    cli.run(&["vm", "show", "-g", "myResourceGroup", "-n", "web2"])
        .await
        .fails_with("ResourceNotFound");
}

fn is_guid_text(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}
