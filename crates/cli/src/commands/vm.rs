//! `usher vm create|show|list|delete|identity` and `usher vm extension set|show|list|delete`
//! (ARM `.../providers/Microsoft.Compute/virtualMachines`), printed as the Azure CLI prints
//! them: `properties` lifted to the top level, with `resourceGroup`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::{Map, Value, json};
use usher_client::Client;
use usher_proto::compute;

use crate::cli::{
    ExtensionCommand, ExtensionNameArgs, ExtensionSetArgs, VmCommand, VmCreateArgs, VmIdentityCommand,
    VmNameArgs,
};
use crate::commands::arm::{self, RESOURCES_API_VERSION, resource_group_scope, subscription_id};
use crate::commands::resource_group::{confirm, parse_tags};
use crate::config::Session;
use crate::context::{Context, warn};

/// The api-version of compute requests (as az uses).
pub const COMPUTE_API_VERSION: &str = "2024-11-01";

/// Runs a `vm` command.
pub async fn run(ctx: &Context, cmd: VmCommand) -> Result<()> {
    let (client, session) = ctx.api().await?;
    match cmd {
        VmCommand::Create(args) => create(ctx, &client, &session, &args).await,
        VmCommand::Show(args) => {
            let vm = arm::send(
                &client,
                Method::GET,
                &vm_path(&args, &session)?,
                COMPUTE_API_VERSION,
                &[],
                None,
            )
            .await?;
            ctx.print(&flatten_vm(&vm))
        }
        VmCommand::List(args) => {
            let sub = subscription_id(&args.subscription, &session)?;
            let path = match &args.resource_group {
                Some(rg) => format!(
                    "{}/providers/Microsoft.Compute/virtualMachines",
                    resource_group_scope(&sub, rg)
                ),
                None => format!("/subscriptions/{sub}/providers/Microsoft.Compute/virtualMachines"),
            };
            let vms = arm::list(&client, &path, COMPUTE_API_VERSION, &[]).await?;
            ctx.print(&Value::Array(vms.iter().map(flatten_vm).collect()))
        }
        VmCommand::Delete(args) => {
            if !args.yes {
                confirm()?;
            }
            arm::send(
                &client,
                Method::DELETE,
                &vm_path(&args.vm, &session)?,
                COMPUTE_API_VERSION,
                &[],
                None,
            )
            .await?;
            Ok(())
        }
        VmCommand::Identity(VmIdentityCommand::Assign(args)) => {
            let body = json!({"identity": {"type": "SystemAssigned"}});
            let vm = arm::send(
                &client,
                Method::PATCH,
                &vm_path(&args, &session)?,
                COMPUTE_API_VERSION,
                &[],
                Some(&body),
            )
            .await?;
            ctx.print(&identity_summary(&vm))
        }
        VmCommand::Identity(VmIdentityCommand::Show(args)) => {
            let vm = arm::send(
                &client,
                Method::GET,
                &vm_path(&args, &session)?,
                COMPUTE_API_VERSION,
                &[],
                None,
            )
            .await?;
            ctx.print(vm.get("identity").unwrap_or(&Value::Null))
        }
        VmCommand::Extension(cmd) => extension(ctx, &client, &session, cmd).await,
        VmCommand::OnboardingToken(args) => {
            let path = format!("{}/onboardingToken", vm_path(&args, &session)?);
            let token = arm::send(&client, Method::POST, &path, COMPUTE_API_VERSION, &[], None).await?;
            ctx.print(&token)
        }
    }
}

fn vm_path(args: &VmNameArgs, session: &Session) -> Result<String> {
    let sub = subscription_id(&args.subscription, session)?;
    Ok(vm_path_in(&sub, &args.resource_group, &args.name))
}

fn vm_path_in(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{}",
        resource_group_scope(sub, rg),
        usher_client::encode_path_segment(name)
    )
}

/// The resource group named in an ARM id.
fn resource_group_of(id: &str) -> Option<&str> {
    let segs: Vec<&str> = id.split('/').collect();
    segs.iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| segs.get(i + 1).copied())
}

/// A resource as az prints it: `properties` lifted up (a nested `type` as `type_key`), plus
/// `resourceGroup`.
pub fn flatten_resource(item: &Value, type_key: &str) -> Value {
    let Some(obj) = item.as_object() else {
        return item.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        if k != "properties" {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (k, v) in props {
            let key = if k == "type" { type_key } else { k.as_str() };
            out.insert(key.to_string(), v.clone());
        }
    }
    if let Some(rg) = obj.get("id").and_then(Value::as_str).and_then(resource_group_of) {
        out.insert("resourceGroup".into(), Value::String(rg.to_string()));
    }
    Value::Object(out)
}

/// A VM as az prints it; its extensions (`resources`) flattened too.
pub fn flatten_vm(vm: &Value) -> Value {
    let mut out = flatten_resource(vm, "type");
    if let Some(Value::Array(exts)) = out.get_mut("resources") {
        for e in exts.iter_mut() {
            *e = flatten_resource(e, "typePropertiesType");
        }
    }
    out
}

/// `vm identity assign`'s output: `{"systemAssignedIdentity", "userAssignedIdentities"}`.
pub fn identity_summary(vm: &Value) -> Value {
    json!({
        "systemAssignedIdentity": vm["identity"]["principalId"].as_str().unwrap_or_default(),
        "userAssignedIdentities": {},
    })
}

/// The image reference and OS type of `--image`: an alias, or a URN publisher:offer:sku:version.
pub fn image_reference(image: &str, os_type: Option<&str>) -> Result<(Value, Option<String>)> {
    if let Some(alias) = compute::image_alias(image) {
        return Ok((
            json!({"publisher": alias.publisher, "offer": alias.offer, "sku": alias.sku, "version": "latest"}),
            Some(alias.os_type.to_string()),
        ));
    }
    let parts: Vec<&str> = image.split(':').collect();
    match parts.as_slice() {
        [publisher, offer, sku, version] if parts.iter().all(|p| !p.is_empty()) => Ok((
            json!({"publisher": publisher, "offer": offer, "sku": sku, "version": version}),
            os_type.map(str::to_string),
        )),
        _ => Err(anyhow!(
            "(InvalidParameter) '{image}' is neither an image alias ({}) nor a URN publisher:offer:sku:version.",
            compute::IMAGE_ALIASES
                .iter()
                .map(|i| i.alias)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether a password meets Azure's rule: 12-123 characters with three of lower case, upper
/// case, digit and special character.
pub fn password_is_strong(p: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_lowercase()),
        p.chars().any(|c| c.is_uppercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_alphanumeric()),
    ];
    (12..=123).contains(&p.chars().count()) && classes.iter().filter(|c| **c).count() >= 3
}

/// An SSH public key given as text or as a file name.
fn ssh_key(value: &str) -> Result<String> {
    let v = value.trim();
    if v.starts_with("ssh-") || v.starts_with("ecdsa-") || v.starts_with("sk-") {
        return Ok(v.to_string());
    }
    let path = shellexpand_home(v);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| anyhow!("cannot read the SSH public key file '{path}': {e}"))
}

fn shellexpand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => p.to_string(),
    }
}

/// The ARM body of `vm create`.
pub fn create_body(args: &VmCreateArgs, location: &str) -> Result<Value> {
    let (reference, os_type) = image_reference(&args.image, args.os_type.as_deref())?;
    let mut os_profile = json!({
        "computerName": args.computer_name.clone().unwrap_or_else(|| args.name.clone()),
        "adminUsername": args.admin_username,
    });
    let keys: Vec<String> = args
        .ssh_key_values
        .iter()
        .map(|k| ssh_key(k))
        .collect::<Result<_>>()?;
    if let Some(m) = os_profile.as_object_mut() {
        if let Some(p) = &args.admin_password {
            m.insert("adminPassword".into(), json!(p));
        }
        if !keys.is_empty() {
            m.insert(
                "linuxConfiguration".into(),
                json!({"ssh": {"publicKeys": keys.iter().map(|k| json!({
                    "path": format!("/home/{}/.ssh/authorized_keys", args.admin_username), "keyData": k,
                })).collect::<Vec<_>>()}}),
            );
        }
    }
    let mut storage = json!({"imageReference": reference});
    if let (Some(os), Some(m)) = (os_type, storage.as_object_mut()) {
        m.insert(
            "osDisk".into(),
            json!({"osType": os, "createOption": "FromImage"}),
        );
    }
    let mut body = json!({
        "location": location,
        "properties": {
            "hardwareProfile": {"vmSize": args.size},
            "storageProfile": storage,
            "osProfile": os_profile,
        },
    });
    if let Some(m) = body.as_object_mut() {
        if args.assign_identity || args.enable_login {
            m.insert("identity".into(), json!({"type": "SystemAssigned"}));
        }
        if let Some(tags) = &args.tags {
            m.insert("tags".into(), Value::Object(parse_tags(tags)));
        }
    }
    Ok(body)
}

async fn create(ctx: &Context, client: &Client, session: &Session, args: &VmCreateArgs) -> Result<()> {
    let sub = subscription_id(&args.subscription, session)?;
    let location = match &args.location {
        Some(l) => l.clone(),
        None => {
            let rg = arm::send(
                client,
                Method::GET,
                &resource_group_scope(&sub, &args.resource_group),
                RESOURCES_API_VERSION,
                &[],
                None,
            )
            .await?;
            rg["location"].as_str().unwrap_or_default().to_string()
        }
    };
    let body = create_body(args, &location)?;
    if let Some(p) = &args.admin_password
        && !password_is_strong(p)
    {
        warn(
            &ctx.global,
            "The admin password is weak (Azure requires 12-123 characters with three of: lower case, upper case, digit, special character). It protects the machine's local break-glass account: choose a strong one.",
        );
    }
    let path = vm_path_in(&sub, &args.resource_group, &args.name);
    let vm = arm::send(client, Method::PUT, &path, COMPUTE_API_VERSION, &[], Some(&body)).await?;
    let mut login_extension = Value::Null;
    if args.enable_login {
        let os = vm["properties"]["storageProfile"]["osDisk"]["osType"]
            .as_str()
            .unwrap_or("Linux");
        let (publisher, name) = compute::login_extension_for(os);
        let ext_body = json!({"location": location, "properties": {
            "publisher": publisher, "type": name, "autoUpgradeMinorVersion": true,
        }});
        let ext = arm::send(
            client,
            Method::PUT,
            &format!("{path}/extensions/{name}"),
            COMPUTE_API_VERSION,
            &[],
            Some(&ext_body),
        )
        .await?;
        login_extension = json!({"name": name, "provisioningState": ext["properties"]["provisioningState"]});
    }
    let token = arm::send(
        client,
        Method::POST,
        &format!("{path}/onboardingToken"),
        COMPUTE_API_VERSION,
        &[],
        None,
    )
    .await?;
    let mut out = json!({
        "onboardingToken": token["onboardingToken"],
        "onboardingTokenExpiresOn": token["expiresOn"],
        "id": vm["id"],
        "resourceGroup": args.resource_group,
        "location": vm["location"],
        "computerName": vm["properties"]["osProfile"]["computerName"],
        "osType": vm["properties"]["storageProfile"]["osDisk"]["osType"],
        "vmId": vm["properties"]["vmId"],
        "powerState": "VM registered; waiting for its agent to join (usher-agent join --token ...)",
    });
    if let Some(m) = out.as_object_mut() {
        if vm.get("identity").is_some() {
            m.insert("identity".into(), identity_summary(&vm));
        }
        if !login_extension.is_null() {
            m.insert("loginExtension".into(), login_extension);
        }
    }
    ctx.print(&out)
}

fn extension_path(sub: &str, rg: &str, vm: &str, name: &str) -> String {
    format!(
        "{}/extensions/{}",
        vm_path_in(sub, rg, vm),
        usher_client::encode_path_segment(name)
    )
}

fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

async fn extension(ctx: &Context, client: &Client, session: &Session, cmd: ExtensionCommand) -> Result<()> {
    match cmd {
        ExtensionCommand::Set(args) => extension_set(ctx, client, session, &args).await,
        ExtensionCommand::Show(args) => {
            let path = extension_path_of(&args, session)?;
            let query: &[(&str, &str)] = if args.instance_view {
                &[("$expand", "instanceView")]
            } else {
                &[]
            };
            let ext = arm::send(client, Method::GET, &path, COMPUTE_API_VERSION, query, None).await?;
            ctx.print(&flatten_resource(&ext, "typePropertiesType"))
        }
        ExtensionCommand::List(args) => {
            let sub = subscription_id(&args.subscription, session)?;
            let path = format!(
                "{}/extensions",
                vm_path_in(&sub, &args.resource_group, &args.vm_name)
            );
            let exts = arm::list(client, &path, COMPUTE_API_VERSION, &[]).await?;
            ctx.print(&Value::Array(
                exts.iter()
                    .map(|e| flatten_resource(e, "typePropertiesType"))
                    .collect(),
            ))
        }
        ExtensionCommand::Delete(args) => {
            let path = extension_path_of(&args.extension, session)?;
            arm::send(client, Method::DELETE, &path, COMPUTE_API_VERSION, &[], None).await?;
            if !args.no_wait {
                let deadline = Instant::now() + Duration::from_secs(args.timeout);
                loop {
                    match arm::send(client, Method::GET, &path, COMPUTE_API_VERSION, &[], None).await {
                        Err(e)
                            if e.downcast_ref::<usher_client::Error>()
                                .and_then(usher_client::Error::status)
                                == Some(404) =>
                        {
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                        Ok(ext) if Instant::now() >= deadline => {
                            warn(
                                &ctx.global,
                                "The extension is still being removed: the machine's agent has not reported yet.",
                            );
                            return ctx.print(&flatten_resource(&ext, "typePropertiesType"));
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
            Ok(())
        }
    }
}

fn extension_path_of(args: &ExtensionNameArgs, session: &Session) -> Result<String> {
    let sub = subscription_id(&args.subscription, session)?;
    Ok(extension_path(
        &sub,
        &args.resource_group,
        &args.vm_name,
        &args.name,
    ))
}

fn parse_json_arg(what: &str, text: &str) -> Result<Value> {
    let content = match text.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).map_err(|e| anyhow!("cannot read {what} from '{file}': {e}"))?
        }
        None => text.to_string(),
    };
    let v: Value = serde_json::from_str(&content).map_err(|e| anyhow!("{what} is not valid JSON: {e}"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(anyhow!("{what} must be a JSON object"))
    }
}

async fn extension_set(
    ctx: &Context,
    client: &Client,
    session: &Session,
    args: &ExtensionSetArgs,
) -> Result<()> {
    let sub = subscription_id(&args.subscription, session)?;
    let vm_path = vm_path_in(&sub, &args.resource_group, &args.vm_name);
    let vm = arm::send(
        client,
        Method::GET,
        &vm_path,
        COMPUTE_API_VERSION,
        &[("$expand", "instanceView")],
        None,
    )
    .await?;
    let mut props = json!({
        "publisher": args.publisher,
        "type": args.name,
        "autoUpgradeMinorVersion": !args.no_auto_upgrade,
        "settings": match &args.settings { Some(s) => parse_json_arg("--settings", s)?, None => json!({}) },
    });
    if let Some(m) = props.as_object_mut() {
        if let Some(v) = &args.handler_version {
            m.insert("typeHandlerVersion".into(), json!(v));
        }
        if let Some(p) = &args.protected_settings {
            m.insert(
                "protectedSettings".into(),
                parse_json_arg("--protected-settings", p)?,
            );
        }
        if args.force_update {
            m.insert("forceUpdateTag".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
    }
    let body = json!({"location": vm["location"], "properties": props});
    let path = extension_path(&sub, &args.resource_group, &args.vm_name, &args.name);
    let mut ext = arm::send(client, Method::PUT, &path, COMPUTE_API_VERSION, &[], Some(&body)).await?;
    if !args.no_wait {
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        loop {
            let state = ext["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if is_terminal(&state) {
                break;
            }
            if Instant::now() >= deadline {
                warn(
                    &ctx.global,
                    &format!(
                        "The extension is still {state} after {} s: the machine's agent has not applied it yet. Check that usher-agent runs and has joined (usher-agent status), then 'usher vm extension show'.",
                        args.timeout
                    ),
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            ext = arm::send(
                client,
                Method::GET,
                &path,
                COMPUTE_API_VERSION,
                &[("$expand", "instanceView")],
                None,
            )
            .await?;
        }
        if ext["properties"]["provisioningState"] == "Failed" {
            let message = ext["properties"]["instanceView"]["statuses"][0]["message"]
                .as_str()
                .unwrap_or_default();
            return Err(anyhow!(
                "(VMExtensionProvisioningError) VM has reported a failure when processing extension '{}'. Error message: \"{message}\"",
                args.name
            ));
        }
    }
    ctx.print(&flatten_resource(&ext, "typePropertiesType"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_passwords() -> Result<()> {
        let (r, os) = image_reference("win2019datacenter", None)?;
        assert_eq!(r["sku"], "2019-Datacenter");
        assert_eq!(os.as_deref(), Some("Windows"));
        let (r, os) = image_reference("rocky:rocky-9:9:latest", Some("Linux"))?;
        assert_eq!(r["offer"], "rocky-9");
        assert_eq!(os.as_deref(), Some("Linux"));
        let e = image_reference("CentOS", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("Debian12") && e.contains("URN"), "{e}");
        assert!(!password_is_strong("yourpassword"));
        assert!(password_is_strong("Correct-horse-9"));
        Ok(())
    }

    #[test]
    fn flattening() {
        let vm = json!({"id": "/subscriptions/s/resourceGroups/myRG/providers/Microsoft.Compute/virtualMachines/vm1", "name": "vm1", "type": "Microsoft.Compute/virtualMachines",
            "properties": {"vmId": "x", "provisioningState": "Succeeded"},
            "resources": [{"id": "…/extensions/e", "name": "e", "type": "Microsoft.Compute/virtualMachines/extensions", "properties": {"type": "AADSSHLoginForLinux", "provisioningState": "Creating"}}]});
        let flat = flatten_vm(&vm);
        assert_eq!(flat["resourceGroup"], "myRG");
        assert_eq!(flat["vmId"], "x");
        assert_eq!(flat["type"], "Microsoft.Compute/virtualMachines");
        assert_eq!(flat["resources"][0]["typePropertiesType"], "AADSSHLoginForLinux");
        assert_eq!(
            flat["resources"][0]["type"],
            "Microsoft.Compute/virtualMachines/extensions"
        );
    }
}
