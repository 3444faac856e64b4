//! Virtual machines (SPEC A2): the machines people log in to, with their system-assigned managed
//! identity. A VM here is a registration: the machine itself runs usher's agent, which joins with
//! the VM's identity (the next layer); the resource manager keeps what Azure's VM resource says.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use usher_authz::Scope;
use usher_proto::compute;
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, extensions, kinds};

/// `Microsoft.Compute/virtualMachines` actions.
pub(crate) mod actions {
    pub const READ: &str = "Microsoft.Compute/virtualMachines/read";
    pub const WRITE: &str = "Microsoft.Compute/virtualMachines/write";
    pub const DELETE: &str = "Microsoft.Compute/virtualMachines/delete";
}

/// Azure's reserved administrator names (a break-glass account needs a name of its own).
const RESERVED_ADMIN_NAMES: &[&str] = &[
    "administrator",
    "admin",
    "user",
    "user1",
    "test",
    "user2",
    "test1",
    "user3",
    "admin1",
    "1",
    "123",
    "a",
    "actuser",
    "adm",
    "admin2",
    "aspnet",
    "backup",
    "console",
    "david",
    "guest",
    "john",
    "owner",
    "root",
    "server",
    "sql",
    "support",
    "support_388945a0",
    "sys",
    "test2",
    "test3",
    "user4",
    "user5",
];

/// The image a VM runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageRef {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    pub version: String,
}

/// A VM's system-assigned identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VmIdentity {
    pub principal_id: String,
    pub tenant_id: String,
}

/// A stored virtual machine (id: its lower-cased ARM id).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredVm {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub vm_id: String,
    pub vm_size: String,
    pub image: ImageRef,
    pub os_type: String,
    pub computer_name: String,
    pub admin_username: String,
    /// The break-glass password, sealed at rest for the agent; never returned.
    #[serde(default)]
    pub sealed_admin_password: Option<String>,
    #[serde(default)]
    pub ssh_public_keys: Vec<String>,
    #[serde(default)]
    pub identity: Option<VmIdentity>,
    #[serde(default)]
    pub tags: Map<String, Value>,
    pub created_at: i64,
}

impl StoredVm {
    /// The VM's ARM id, in the case it was created with.
    pub fn arm_id(&self) -> String {
        vm_id(&self.subscription_id, &self.resource_group, &self.name)
    }
}

/// A VM's ARM id.
pub(crate) fn vm_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}")
}

fn invalid(target: &str, message: impl Into<String>) -> ArmError {
    let message = message.into();
    ArmError::new(400, "InvalidParameter", format!("{message} (target: '{target}')"))
}

/// VM names: 1-64 letters, digits, `-` `_` `.`, starting with a letter or digit, not ending in
/// `.` or `-`.
fn valid_vm_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && !n.ends_with('.')
        && !n.ends_with('-')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Host names: letters, digits and hyphens; at most 15 characters on Windows, 64 on Linux.
fn check_computer_name(name: &str, os_type: &str) -> ArmResult<()> {
    let max = if os_type == "Windows" { 15 } else { 64 };
    let ok = !name.is_empty()
        && name.len() <= max
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "computerName",
            format!(
                "The computer name '{name}' is not valid: use 1-{max} letters, digits and hyphens (not only digits, no hyphen at either end); pass --computer-name for a VM whose name does not fit"
            ),
        ))
    }
}

fn check_admin_username(name: &str, os_type: &str) -> ArmResult<()> {
    let max = if os_type == "Windows" { 20 } else { 32 };
    if RESERVED_ADMIN_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(invalid(
            "adminUsername",
            format!(
                "The admin user name '{name}' is reserved; choose another name for the machine's local administrator"
            ),
        ));
    }
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "adminUsername",
            format!(
                "The admin user name '{name}' is not valid: 1-{max} letters, digits, '_', '-' or '.', starting with a letter or '_'"
            ),
        ))
    }
}

/// The image of a create request: an alias's reference, or any reference with an explicit OS type.
fn image_of(props: &Value) -> ArmResult<(ImageRef, String)> {
    let storage = &props["storageProfile"];
    let reference = &storage["imageReference"];
    let field = |k: &str| {
        reference
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let (Some(publisher), Some(offer), Some(sku)) = (field("publisher"), field("offer"), field("sku")) else {
        return Err(invalid(
            "imageReference",
            format!(
                "storageProfile.imageReference needs publisher, offer and sku; the aliases usher knows are {}",
                compute::IMAGE_ALIASES
                    .iter()
                    .map(|i| i.alias)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let explicit_os = storage["osDisk"]["osType"].as_str();
    let os_type = match (compute::image_by_reference(publisher, offer, sku), explicit_os) {
        (_, Some(os)) if os.eq_ignore_ascii_case("linux") => "Linux",
        (_, Some(os)) if os.eq_ignore_ascii_case("windows") => "Windows",
        (_, Some(os)) => {
            return Err(invalid(
                "osType",
                format!("osDisk.osType '{os}' is not Linux or Windows"),
            ));
        }
        (Some(alias), None) => alias.os_type,
        (None, None) => {
            return Err(invalid(
                "imageReference",
                format!(
                    "The image '{publisher}:{offer}:{sku}' is not one usher knows; name its operating system in storageProfile.osDisk.osType (Linux or Windows) or use one of {}",
                    compute::IMAGE_ALIASES
                        .iter()
                        .map(|i| i.alias)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    };
    Ok((
        ImageRef {
            publisher: publisher.to_owned(),
            offer: offer.to_owned(),
            sku: sku.to_owned(),
            version: field("version").unwrap_or("latest").to_owned(),
        },
        os_type.to_owned(),
    ))
}

/// The identity type a request asks for: Some(true) system-assigned, Some(false) none, None unsaid.
fn requested_identity(body: &Value) -> ArmResult<Option<bool>> {
    let Some(t) = body.get("identity").and_then(|i| i.get("type")) else {
        return Ok(None);
    };
    match t.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("systemassigned") => Ok(Some(true)),
        Some("none") => Ok(Some(false)),
        Some(other) if other.contains("userassigned") => Err(invalid(
            "identity.type",
            "User-assigned identities are not supported; use SystemAssigned",
        )),
        _ => Err(invalid(
            "identity.type",
            "identity.type must be SystemAssigned or None",
        )),
    }
}

pub(crate) fn vm_json(vm: &StoredVm, extensions: &[Value], instance_view: Option<Value>) -> Value {
    let os_config = if vm.os_type == "Windows" {
        json!({"windowsConfiguration": {"provisionVMAgent": true, "enableAutomaticUpdates": true}})
    } else {
        json!({"linuxConfiguration": {
            "disablePasswordAuthentication": vm.sealed_admin_password.is_none(),
            "ssh": {"publicKeys": vm.ssh_public_keys.iter().map(|k| json!({
                "path": format!("/home/{}/.ssh/authorized_keys", vm.admin_username),
                "keyData": k,
            })).collect::<Vec<_>>()},
            "provisionVMAgent": true,
        }})
    };
    let mut os_profile = json!({
        "computerName": vm.computer_name,
        "adminUsername": vm.admin_username,
        "allowExtensionOperations": true,
    });
    if let (Some(m), Some(extra)) = (os_profile.as_object_mut(), os_config.as_object()) {
        m.extend(extra.clone());
    }
    let mut props = json!({
        "vmId": vm.vm_id,
        "provisioningState": "Succeeded",
        "timeCreated": usher_core::rfc3339(vm.created_at),
        "hardwareProfile": {"vmSize": vm.vm_size},
        "storageProfile": {
            "imageReference": {
                "publisher": vm.image.publisher, "offer": vm.image.offer,
                "sku": vm.image.sku, "version": vm.image.version,
            },
            "osDisk": {"osType": vm.os_type, "name": format!("{}_OsDisk_1", vm.name), "createOption": "FromImage"},
        },
        "osProfile": os_profile,
    });
    if let (Some(iv), Some(m)) = (instance_view, props.as_object_mut()) {
        m.insert("instanceView".into(), iv);
    }
    let mut out = json!({
        "id": vm.arm_id(),
        "name": vm.name,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": vm.tags,
        "properties": props,
    });
    if let Some(m) = out.as_object_mut() {
        if let Some(id) = &vm.identity {
            m.insert(
                "identity".into(),
                json!({"type": "SystemAssigned", "principalId": id.principal_id, "tenantId": id.tenant_id}),
            );
        }
        if !extensions.is_empty() {
            m.insert("resources".into(), Value::Array(extensions.to_vec()));
        }
    }
    out
}

/// What a VM create or update returned.
#[derive(Debug, Clone)]
pub struct VmPut {
    /// Whether the VM was created (201) rather than updated (200).
    pub created: bool,
    /// The VM's JSON.
    pub body: Value,
}

impl Arm {
    pub(crate) fn vm_scope(sub: &str, rg: &str, name: &str) -> ArmResult<Scope> {
        if !valid_vm_name(name) {
            return Err(invalid(
                "vmName",
                format!(
                    "The VM name '{name}' is not valid: 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit, not ending in '.' or '-'"
                ),
            ));
        }
        Scope::parse(&vm_id(sub, rg, name)).map_err(|e| invalid("id", e.to_string()))
    }

    pub(crate) fn vm_not_found(rg: &str, name: &str) -> ArmError {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' was not found."
            ),
        )
    }

    /// A VM's stored record (no authorisation: callers check first).
    pub(crate) async fn load_vm(&self, scope: &Scope) -> ArmResult<Option<(Record, StoredVm)>> {
        let now = self.dir.clock().now_unix();
        match self
            .dir
            .store()
            .get(kinds::VIRTUAL_MACHINE, scope.as_str(), now)
            .await?
        {
            Some(rec) => {
                let vm: StoredVm = rec.decode()?;
                Ok(Some((rec, vm)))
            }
            None => Ok(None),
        }
    }

    async fn new_identity(&self, vm_name: &str, arm_id: &str) -> ArmResult<VmIdentity> {
        let tenant = self.dir.tenant().await?;
        let sp = self.dir.create_managed_identity(vm_name, arm_id).await?;
        Ok(VmIdentity {
            principal_id: sp.id,
            tenant_id: tenant.id,
        })
    }

    async fn drop_identity(&self, identity: &VmIdentity) -> ArmResult<()> {
        match self.dir.delete_service_principal(&identity.principal_id).await {
            Ok(_) | Err(usher_directory::DirectoryError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or updates a VM (`virtualMachines/write`). `login` additionally turns on the
    /// system-assigned identity and sets the login extension as desired (the portal's
    /// "Login with Microsoft Entra ID" checkbox).
    pub async fn put_vm(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        name: &str,
        body: &Value,
        patch: bool,
    ) -> ArmResult<VmPut> {
        let scope = Self::vm_scope(sub, rg, name)?;
        self.authorize(caller, &scope, actions::WRITE).await?;
        let group = self.group_record(sub, rg).await?;
        let props = body.get("properties").cloned().unwrap_or(Value::Null);
        let wants_identity = requested_identity(body)?;
        let tags = body.get("tags").and_then(Value::as_object).cloned();
        let existing = self.load_vm(&scope).await?;
        let (created, vm) = match existing {
            Some((mut rec, mut vm)) => {
                self.check_unchanged(&vm, body, &props, patch)?;
                if let Some(t) = tags {
                    vm.tags = t;
                }
                // The identity changes with the VM record: a new principal is removed again if
                // the update loses a race; an old one goes only once the update is stored.
                let mut created_identity = None;
                let mut dropped_identity = None;
                match (wants_identity, &vm.identity) {
                    (Some(true), None) => {
                        let id = self.new_identity(&vm.name, &vm.arm_id()).await?;
                        created_identity = Some(id.clone());
                        vm.identity = Some(id);
                    }
                    (Some(false), Some(id)) => {
                        dropped_identity = Some(id.clone());
                        vm.identity = None;
                    }
                    _ => {}
                }
                rec.data = serde_json::to_value(&vm).map_err(|_| ArmError::internal())?;
                if let Err(e) = self.dir.store().update(rec).await {
                    if let Some(id) = &created_identity {
                        self.drop_identity(id).await?;
                    }
                    return Err(match e {
                        StoreError::Conflict { .. } => {
                            ArmError::new(409, "Conflict", "The VM was changed concurrently; retry.")
                        }
                        other => other.into(),
                    });
                }
                if let Some(id) = &dropped_identity {
                    self.drop_identity(id).await?;
                }
                (false, vm)
            }
            None if patch => return Err(Self::vm_not_found(rg, name)),
            None => {
                let vm = self.new_vm(sub, &group.name, name, body, &props, tags).await?;
                let vm = match wants_identity {
                    Some(true) => {
                        let identity = self.new_identity(&vm.name, &vm.arm_id()).await?;
                        StoredVm {
                            identity: Some(identity),
                            ..vm
                        }
                    }
                    _ => vm,
                };
                let rec = Record::from_value(kinds::VIRTUAL_MACHINE, scope.as_str(), &vm)?;
                if let Err(e) = self.dir.store().insert(rec).await {
                    if let Some(id) = &vm.identity {
                        self.drop_identity(id).await?;
                    }
                    return Err(match e {
                        StoreError::Conflict { .. } => {
                            ArmError::new(409, "Conflict", "The VM was created concurrently; retry.")
                        }
                        other => other.into(),
                    });
                }
                (true, vm)
            }
        };
        self.audit(
            caller,
            if created {
                "Create virtual machine"
            } else {
                "Update virtual machine"
            },
            "ResourceManagement",
            (&vm.arm_id(), &vm.name, "VirtualMachine"),
            json!({"identity": vm.identity.as_ref().map(|i| &i.principal_id), "image": vm.image}),
        )
        .await?;
        let extensions = self.extensions_json(&scope).await?;
        Ok(VmPut {
            created,
            body: vm_json(&vm, &extensions, None),
        })
    }

    /// Properties a VM keeps for life: changing them is PropertyChangeNotAllowed.
    fn check_unchanged(&self, vm: &StoredVm, body: &Value, props: &Value, patch: bool) -> ArmResult<()> {
        let refuse = |p: &str| {
            ArmError::new(
                409,
                "PropertyChangeNotAllowed",
                format!("Changing property '{p}' is not allowed."),
            )
        };
        if let Some(l) = body.get("location").and_then(Value::as_str)
            && !l.eq_ignore_ascii_case(&vm.location)
        {
            return Err(refuse("location"));
        }
        if let Some(u) = props["osProfile"]["adminUsername"].as_str()
            && u != vm.admin_username
        {
            return Err(refuse("osProfile.adminUsername"));
        }
        if let Some(c) = props["osProfile"]["computerName"].as_str()
            && !c.eq_ignore_ascii_case(&vm.computer_name)
        {
            return Err(refuse("osProfile.computerName"));
        }
        if !patch && props["storageProfile"]["imageReference"].is_object() {
            let (image, _) = image_of(props)?;
            let same = image.publisher.eq_ignore_ascii_case(&vm.image.publisher)
                && image.offer.eq_ignore_ascii_case(&vm.image.offer)
                && image.sku.eq_ignore_ascii_case(&vm.image.sku);
            if !same {
                return Err(refuse("imageReference"));
            }
        }
        Ok(())
    }

    async fn new_vm(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        body: &Value,
        props: &Value,
        tags: Option<Map<String, Value>>,
    ) -> ArmResult<StoredVm> {
        let location = crate::shapes::required_location(body)?;
        let (image, os_type) = image_of(props)?;
        let os = &props["osProfile"];
        let admin_username = os["adminUsername"]
            .as_str()
            .ok_or_else(|| invalid("adminUsername", "osProfile.adminUsername is required"))?
            .to_owned();
        check_admin_username(&admin_username, &os_type)?;
        let computer_name = os["computerName"].as_str().unwrap_or(name).to_owned();
        check_computer_name(&computer_name, &os_type)?;
        let password = os["adminPassword"].as_str().filter(|p| !p.is_empty());
        let ssh_public_keys: Vec<String> = os["linuxConfiguration"]["ssh"]["publicKeys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["keyData"].as_str().map(|s| s.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for k in &ssh_public_keys {
            if !k.starts_with("ssh-") && !k.starts_with("ecdsa-") && !k.starts_with("sk-") {
                return Err(invalid(
                    "linuxConfiguration.ssh.publicKeys",
                    "An SSH public key must be in OpenSSH format (ssh-ed25519 AAAA…)",
                ));
            }
        }
        match (password, ssh_public_keys.is_empty(), os_type.as_str()) {
            (None, _, "Windows") => {
                return Err(invalid(
                    "adminPassword",
                    "A Windows VM needs osProfile.adminPassword",
                ));
            }
            (None, true, _) => {
                return Err(invalid(
                    "adminPassword",
                    "The local administrator needs a password (osProfile.adminPassword) or an SSH public key (linuxConfiguration.ssh.publicKeys)",
                ));
            }
            (Some(p), _, _) if p.len() > 123 => {
                return Err(invalid(
                    "adminPassword",
                    "The admin password must be at most 123 characters",
                ));
            }
            _ => {}
        }
        let vm_id = self.dir.new_id();
        let sealed_admin_password = match password {
            Some(p) => Some(
                self.dir
                    .sealing()
                    .seal(
                        p.as_bytes(),
                        &format!("vm-admin:{vm_id}"),
                        self.dir.rng().as_ref(),
                    )
                    .map_err(|e| {
                        tracing::error!(error = %e, "sealing a VM's admin password failed");
                        ArmError::internal()
                    })?,
            ),
            None => None,
        };
        Ok(StoredVm {
            subscription_id: sub.to_ascii_lowercase(),
            resource_group: rg.to_owned(),
            name: name.to_owned(),
            location,
            vm_id,
            vm_size: props["hardwareProfile"]["vmSize"]
                .as_str()
                .unwrap_or("Standard_DS1_v2")
                .to_owned(),
            image,
            os_type,
            computer_name,
            admin_username,
            sealed_admin_password,
            ssh_public_keys,
            identity: None,
            tags: tags.unwrap_or_default(),
            created_at: self.dir.clock().now_unix(),
        })
    }

    /// Reads a VM (`virtualMachines/read`), with its instance view when asked.
    pub async fn get_vm(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        name: &str,
        with_instance_view: bool,
    ) -> ArmResult<Value> {
        let scope = Self::vm_scope(sub, rg, name)?;
        self.authorize(caller, &scope, actions::READ).await?;
        let (_, vm) = self
            .load_vm(&scope)
            .await?
            .ok_or_else(|| Self::vm_not_found(rg, name))?;
        let extensions = self.extensions_json(&scope).await?;
        let iv = if with_instance_view {
            Some(self.vm_instance_view(&scope, &vm).await?)
        } else {
            None
        };
        Ok(vm_json(&vm, &extensions, iv))
    }

    /// A VM's instance view (`virtualMachines/read`).
    pub async fn get_vm_instance_view(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        name: &str,
    ) -> ArmResult<Value> {
        let scope = Self::vm_scope(sub, rg, name)?;
        self.authorize(caller, &scope, actions::READ).await?;
        let (_, vm) = self
            .load_vm(&scope)
            .await?
            .ok_or_else(|| Self::vm_not_found(rg, name))?;
        self.vm_instance_view(&scope, &vm).await
    }

    async fn vm_instance_view(&self, scope: &Scope, vm: &StoredVm) -> ArmResult<Value> {
        let os_name = compute::image_by_reference(&vm.image.publisher, &vm.image.offer, &vm.image.sku)
            .map(|i| i.os_name)
            .unwrap_or(&vm.image.offer);
        let exts = extensions::instance_views(self, scope).await?;
        let now = self.dir.clock().now_unix();
        let agent = match self.machine_contact(scope).await? {
            // Agents call at least every minute (their long poll): ten minutes of silence is Not Ready.
            Some((hostname, last)) if now - last > 600 => json!({
                "vmAgentVersion": "Unknown",
                "statuses": [{
                    "code": "ProvisioningState/Unavailable",
                    "level": "Warning",
                    "displayStatus": "Not Ready",
                    "message": format!("The agent on '{hostname}' has not called since {}; check that usher-agent runs (usher-agent doctor on the machine).", usher_core::rfc3339(last)),
                    "time": usher_core::rfc3339(last),
                }],
            }),
            Some((hostname, last)) => json!({
                "vmAgentVersion": env!("CARGO_PKG_VERSION"),
                "statuses": [{
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Ready",
                    "message": format!("The agent on '{hostname}' has joined; last contact {}.", usher_core::rfc3339(last)),
                    "time": usher_core::rfc3339(last),
                }],
            }),
            None => json!({
                "vmAgentVersion": "Unknown",
                "statuses": [{
                    "code": "ProvisioningState/Unavailable",
                    "level": "Warning",
                    "displayStatus": "Not Ready",
                    "message": "The machine's agent has not joined; run `usher-agent join` on the machine with a token from `usher vm onboarding-token`.",
                }],
            }),
        };
        Ok(json!({
            "computerName": vm.computer_name,
            "osName": os_name,
            "vmAgent": agent,
            "extensions": exts,
            "statuses": [{
                "code": "ProvisioningState/succeeded",
                "level": "Info",
                "displayStatus": "Provisioning succeeded",
                "time": usher_core::rfc3339(vm.created_at),
            }],
        }))
    }

    /// VMs of a resource group, or of the whole subscription when `rg` is `None`, that the
    /// caller may read.
    pub async fn list_vms(&self, caller: &str, sub: &str, rg: Option<&str>) -> ArmResult<Vec<Value>> {
        self.subscription_record(sub).await?;
        let prefix = match rg {
            Some(g) => {
                self.group_record(sub, g).await?;
                format!(
                    "{}/providers/microsoft.compute/virtualmachines/",
                    Self::group_scope(sub, g)?.as_str()
                )
            }
            None => format!("/subscriptions/{}/", sub.to_ascii_lowercase()),
        };
        let principals = self.principals_of(caller).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        for rec in crate::list_all(&self.dir, kinds::VIRTUAL_MACHINE, &prefix).await? {
            let scope = Scope::parse(&rec.id).map_err(|_| ArmError::internal())?;
            let readable = self
                .snapshot()?
                .check(&refs, &scope, usher_authz::ActionKind::Action, actions::READ)
                .allowed;
            if readable {
                let vm: StoredVm = rec.decode()?;
                let extensions = self.extensions_json(&scope).await?;
                out.push(vm_json(&vm, &extensions, None));
            }
        }
        Ok(out)
    }

    /// Deletes a VM (`virtualMachines/delete`) with its extensions, its managed identity, its
    /// machine, device and join token, and the role assignments at its scope (so a VM created
    /// later under the same name inherits nobody's access). Returns whether it existed.
    pub async fn delete_vm(&self, caller: &str, sub: &str, rg: &str, name: &str) -> ArmResult<bool> {
        let scope = Self::vm_scope(sub, rg, name)?;
        self.authorize(caller, &scope, actions::DELETE).await?;
        let deleted = self.remove_vm(&scope).await?;
        if let Some(vm) = &deleted {
            let removed = self.remove_assignments_under(&scope).await?;
            self.audit(
                caller,
                "Delete virtual machine",
                "ResourceManagement",
                (&vm.arm_id(), &vm.name, "VirtualMachine"),
                json!({"roleAssignmentsRemoved": removed}),
            )
            .await?;
        }
        Ok(deleted.is_some())
    }

    /// Removes a VM's records and identity (no authorisation; callers check first).
    pub(crate) async fn remove_vm(&self, scope: &Scope) -> ArmResult<Option<StoredVm>> {
        let Some((_, vm)) = self.load_vm(scope).await? else {
            return Ok(None);
        };
        // The VM record goes first: writers racing this delete re-check it and back out.
        self.dir
            .store()
            .delete(kinds::VIRTUAL_MACHINE, scope.as_str(), None)
            .await?;
        extensions::remove_all(self, scope).await?;
        self.forget_machine(scope).await?;
        if let Some(id) = &vm.identity {
            self.drop_identity(id).await?;
        }
        Ok(Some(vm))
    }

    /// The VM whose system-assigned identity is `principal_id`, if any (machines asking about
    /// themselves).
    pub(crate) async fn vm_of_identity(&self, principal_id: &str, machine: &Scope) -> ArmResult<bool> {
        Ok(self
            .load_vm(machine)
            .await?
            .and_then(|(_, vm)| vm.identity)
            .is_some_and(|i| i.principal_id.eq_ignore_ascii_case(principal_id)))
    }
}

#[cfg(test)]
#[allow(clippy::panic, reason = "test code")]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_vm_name("myVM"));
        assert!(valid_vm_name("web-01.prod_a"));
        assert!(!valid_vm_name("-vm"));
        assert!(!valid_vm_name("vm-"));
        assert!(!valid_vm_name("has space"));
        assert!(!valid_vm_name(&"a".repeat(65)));
        assert!(check_computer_name("myVM", "Windows").is_ok());
        assert!(check_computer_name("a-very-long-windows-name", "Windows").is_err());
        assert!(check_computer_name("a-very-long-windows-name", "Linux").is_ok());
        assert!(check_computer_name("12345", "Linux").is_err());
        assert!(check_computer_name("web_1", "Linux").is_err());
        assert!(check_admin_username("azureuser", "Windows").is_ok());
        assert!(check_admin_username("root", "Linux").is_err());
        assert!(check_admin_username("Administrator", "Windows").is_err());
        assert!(check_admin_username("9lives", "Linux").is_err());
    }

    #[test]
    fn images() {
        let alias = json!({"storageProfile": {"imageReference": {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer", "sku": "2019-Datacenter", "version": "latest"}}});
        let (img, os) = image_of(&alias).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((img.sku.as_str(), os.as_str()), ("2019-Datacenter", "Windows"));
        let custom = json!({"storageProfile": {"imageReference": {"publisher": "rocky", "offer": "rocky-9", "sku": "9"}, "osDisk": {"osType": "linux"}}});
        assert_eq!(image_of(&custom).map(|(_, os)| os).ok().as_deref(), Some("Linux"));
        let unknown = json!({"storageProfile": {"imageReference": {"publisher": "rocky", "offer": "rocky-9", "sku": "9"}}});
        let e = image_of(&unknown).err().map(|e| e.message).unwrap_or_default();
        assert!(e.contains("osType") && e.contains("Debian12"), "{e}");
        assert!(image_of(&json!({})).is_err());
    }
}
