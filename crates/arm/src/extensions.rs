//! VM extensions (SPEC A3) and their asynchronous operations. Setting an extension records what
//! the machine should run; the machine's agent applies it and reports the outcome, until which
//! the extension stays `Creating` (or `Updating`, `Deleting`) and its operation `InProgress`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use usher_authz::Scope;
use usher_proto::compute;
use usher_store::{Record, StoreError};

use crate::vms::StoredVm;
use crate::{Arm, ArmError, ArmResult, kinds};

/// `Microsoft.Compute/virtualMachines/extensions` actions.
mod actions {
    pub const READ: &str = "Microsoft.Compute/virtualMachines/extensions/read";
    pub const WRITE: &str = "Microsoft.Compute/virtualMachines/extensions/write";
    pub const DELETE: &str = "Microsoft.Compute/virtualMachines/extensions/delete";
}

/// How long an operation's status stays readable.
const OPERATION_TTL_SECS: i64 = 24 * 3600;

/// What the agent last reported for an extension.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionStatus {
    /// `ProvisioningState/succeeded`, `ProvisioningState/failed/<exit code>`, ...
    pub code: String,
    /// `Info`, `Warning` or `Error`.
    pub level: String,
    /// `Provisioning succeeded`, ...
    pub display_status: String,
    /// What happened, in the handler's words.
    pub message: String,
    /// When (unix seconds).
    pub time: i64,
}

/// A stored extension (id: `<vm id lower>/extensions/<name lower>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredExtension {
    vm_id: String,
    name: String,
    location: String,
    publisher: String,
    type_name: String,
    type_handler_version: String,
    auto_upgrade_minor_version: bool,
    #[serde(default)]
    settings: Map<String, Value>,
    /// Sealed at rest; never returned.
    #[serde(default)]
    sealed_protected_settings: Option<String>,
    #[serde(default)]
    force_update_tag: Option<String>,
    provisioning_state: String,
    /// Bumped at every change the agent must apply; reports name the generation they apply to.
    generation: u64,
    /// The generation an agent last reported on (None: no agent has seen this extension yet).
    #[serde(default)]
    reported_generation: Option<u64>,
    #[serde(default)]
    status: Option<ExtensionStatus>,
    operation_id: String,
}

/// An asynchronous operation (id: its GUID).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredOperation {
    extension_key: String,
    vm_scope: String,
    delete: bool,
    generation: u64,
    started_at: i64,
    /// Final when set; otherwise derived from the extension.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    ended_at: Option<i64>,
}

/// What an extension write or delete returned.
#[derive(Debug, Clone)]
pub struct ExtensionChange {
    /// HTTP status: 201 created, 200 updated or done, 202 accepted (delete running).
    pub status: u16,
    /// The extension's JSON (none for a finished delete).
    pub body: Option<Value>,
    /// The operation's path, for `Azure-AsyncOperation`, while one runs.
    pub operation: Option<String>,
}

/// The outcome an agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionOutcome {
    /// The handler succeeded.
    Succeeded {
        /// What it did.
        message: String,
    },
    /// The handler failed with an exit code.
    Failed {
        /// Its exit code (the seed's: 51, -2145648574, ...).
        exit_code: i64,
        /// What went wrong and how to fix it.
        message: String,
    },
    /// The handler removed the extension (after a delete).
    Removed,
}

fn extension_key(vm_scope: &Scope, name: &str) -> String {
    format!("{}/extensions/{}", vm_scope.as_str(), name.to_ascii_lowercase())
}

fn valid_extension_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn operation_path(sub: &str, location: &str, id: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/operations/{id}")
}

fn waiting_status(e: &StoredExtension) -> ExtensionStatus {
    let doing = match e.provisioning_state.as_str() {
        "Deleting" => "remove",
        _ => "apply",
    };
    ExtensionStatus {
        code: format!("ProvisioningState/{}", e.provisioning_state.to_ascii_lowercase()),
        level: "Info".into(),
        display_status: "Transitioning".into(),
        message: format!("Waiting for the machine's agent to {doing} the extension."),
        time: 0,
    }
}

fn status_json(s: &ExtensionStatus) -> Value {
    let mut v =
        json!({"code": s.code, "level": s.level, "displayStatus": s.display_status, "message": s.message});
    if s.time > 0
        && let Some(m) = v.as_object_mut()
    {
        m.insert("time".into(), Value::String(usher_core::rfc3339(s.time)));
    }
    v
}

fn instance_view_json(e: &StoredExtension) -> Value {
    let status = match (&e.status, e.reported_generation == Some(e.generation)) {
        (Some(s), true) => s.clone(),
        _ => waiting_status(e),
    };
    json!({
        "name": e.name,
        "type": format!("{}.{}", e.publisher, e.type_name),
        "typeHandlerVersion": e.type_handler_version,
        "statuses": [status_json(&status)],
        "substatuses": [],
    })
}

fn extension_json(e: &StoredExtension, with_instance_view: bool) -> Value {
    let mut props = json!({
        "publisher": e.publisher,
        "type": e.type_name,
        "typeHandlerVersion": e.type_handler_version,
        "autoUpgradeMinorVersion": e.auto_upgrade_minor_version,
        "settings": e.settings,
        "provisioningState": e.provisioning_state,
        "suppressFailures": false,
    });
    if let Some(m) = props.as_object_mut() {
        if let Some(t) = &e.force_update_tag {
            m.insert("forceUpdateTag".into(), Value::String(t.clone()));
        }
        if with_instance_view {
            m.insert("instanceView".into(), instance_view_json(e));
        }
    }
    json!({
        "id": format!("{}/extensions/{}", e.vm_id, e.name),
        "name": e.name,
        "type": "Microsoft.Compute/virtualMachines/extensions",
        "location": e.location,
        "properties": props,
    })
}

/// The instance views of a VM's extensions.
pub(crate) async fn instance_views(arm: &Arm, vm_scope: &Scope) -> ArmResult<Vec<Value>> {
    Ok(load_all(arm, vm_scope)
        .await?
        .iter()
        .map(|(_, e)| instance_view_json(e))
        .collect())
}

async fn load_all(arm: &Arm, vm_scope: &Scope) -> ArmResult<Vec<(Record, StoredExtension)>> {
    let prefix = format!("{}/extensions/", vm_scope.as_str());
    let mut out = Vec::new();
    for rec in crate::list_all(&arm.dir, kinds::VM_EXTENSION, &prefix).await? {
        let e: StoredExtension = rec.decode()?;
        out.push((rec, e));
    }
    Ok(out)
}

/// The desired extensions of a VM, for its agent: protected settings opened, the handler named.
pub(crate) async fn desired(arm: &Arm, vm_scope: &Scope) -> ArmResult<Vec<Value>> {
    let mut out = Vec::new();
    for (rec, e) in load_all(arm, vm_scope).await? {
        let protected = match &e.sealed_protected_settings {
            Some(sealed) => {
                let plain = arm
                    .dir
                    .sealing()
                    .open(sealed, &format!("vm-extension:{}", rec.id))
                    .map_err(|err| {
                        tracing::error!(error = %err, "opening protected settings failed");
                        ArmError::internal()
                    })?;
                serde_json::from_slice(&plain).unwrap_or(Value::Null)
            }
            None => json!({}),
        };
        let handler = compute::extension_type(&e.publisher, &e.type_name);
        out.push(json!({
            "name": e.name,
            "publisher": e.publisher,
            "type": e.type_name,
            "typeHandlerVersion": e.type_handler_version,
            "settings": e.settings,
            "protectedSettings": protected,
            "generation": e.generation,
            "provisioningState": e.provisioning_state,
            "handler": handler.map(|h| h.canonical),
            "handlerOsType": handler.map(|h| h.os_type),
        }));
    }
    Ok(out)
}

/// Removes every extension record of a VM (the VM is being deleted).
pub(crate) async fn remove_all(arm: &Arm, vm_scope: &Scope) -> ArmResult<()> {
    for (rec, _) in load_all(arm, vm_scope).await? {
        arm.dir.store().delete(kinds::VM_EXTENSION, &rec.id, None).await?;
    }
    Ok(())
}

fn extension_not_found(vm: &str, name: &str) -> ArmError {
    ArmError::new(
        404,
        "NotFound",
        format!(
            "The entity was not found in this Azure location. Extension '{name}' of VM '{vm}' does not exist."
        ),
    )
}

impl Arm {
    /// A VM's extensions as resources (for the VM's `resources`).
    pub(crate) async fn extensions_json(&self, vm_scope: &Scope) -> ArmResult<Vec<Value>> {
        Ok(load_all(self, vm_scope)
            .await?
            .iter()
            .map(|(_, e)| extension_json(e, false))
            .collect())
    }

    async fn vm_for_extension(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        vm: &str,
        action: &str,
    ) -> ArmResult<(Scope, StoredVm)> {
        let scope = Self::vm_scope(sub, rg, vm)?;
        self.authorize(caller, &scope, action).await?;
        let (_, stored) = self
            .load_vm(&scope)
            .await?
            .ok_or_else(|| Self::vm_not_found(rg, vm))?;
        Ok((scope, stored))
    }

    async fn new_operation(
        &self,
        ext: &StoredExtension,
        key: &str,
        vm: &StoredVm,
        delete: bool,
    ) -> ArmResult<String> {
        let now = self.dir.clock().now_unix();
        let op = StoredOperation {
            extension_key: key.to_owned(),
            vm_scope: vm.arm_id(),
            delete,
            generation: ext.generation,
            started_at: now,
            status: None,
            ended_at: None,
        };
        self.dir
            .store()
            .insert(
                Record::from_value(kinds::OPERATION, &ext.operation_id, &op)?
                    .with_expiry(now + OPERATION_TTL_SECS),
            )
            .await?;
        Ok(operation_path(
            &vm.subscription_id,
            &vm.location,
            &ext.operation_id,
        ))
    }

    /// Creates or updates an extension (`extensions/write`). A new or changed extension is
    /// `Creating`/`Updating` until the machine's agent reports; an unchanged one that already
    /// succeeded is left as it is.
    pub async fn put_extension(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        vm_name: &str,
        name: &str,
        body: &Value,
    ) -> ArmResult<ExtensionChange> {
        let (scope, vm) = self
            .vm_for_extension(caller, sub, rg, vm_name, actions::WRITE)
            .await?;
        if !valid_extension_name(name) {
            return Err(ArmError::new(
                400,
                "InvalidParameter",
                format!("The extension name '{name}' is not valid: 1-64 letters, digits, '-', '_' or '.'."),
            ));
        }
        let props = body.get("properties").unwrap_or(body);
        let text = |k: &str| {
            props
                .get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let (Some(publisher), Some(type_name)) = (text("publisher"), text("type")) else {
            return Err(ArmError::new(
                400,
                "InvalidParameter",
                "properties.publisher and properties.type are required.",
            ));
        };
        let known = compute::extension_type(publisher, type_name).ok_or_else(|| {
            ArmError::new(
                400,
                "VMExtensionHandlerNonTransientError",
                format!(
                    "The extension '{publisher}.{type_name}' is not one usher's agent runs; it runs {}.",
                    compute::EXTENSION_TYPES
                        .iter()
                        .map(|t| format!("{}.{}", t.publisher, t.type_name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let version = match text("typeHandlerVersion") {
            Some(v) => {
                let wanted = v.split('.').take(2).collect::<Vec<_>>().join(".");
                if !known
                    .versions
                    .iter()
                    .any(|k| k.starts_with(&format!("{wanted}.")))
                {
                    return Err(ArmError::new(
                        400,
                        "InvalidParameter",
                        format!(
                            "Version '{v}' of '{}.{}' does not exist; versions: {}.",
                            known.publisher,
                            known.type_name,
                            known.versions.join(", ")
                        ),
                    ));
                }
                v.to_owned()
            }
            None => known
                .versions
                .last()
                .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."))
                .unwrap_or_else(|| "1.0".into()),
        };
        let settings = props
            .get("settings")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let protected = props
            .get("protectedSettings")
            .filter(|p| p.as_object().is_some_and(|o| !o.is_empty()));
        let force_update_tag = text("forceUpdateTag").map(str::to_owned);
        let key = extension_key(&scope, name);
        let now = self.dir.clock().now_unix();
        let existing = self.dir.store().get(kinds::VM_EXTENSION, &key, now).await?;
        if existing.is_none() {
            // One instance per handler on a VM (Azure's rule too): aliases run the same handler.
            for (_, other) in load_all(self, &scope).await? {
                let same = compute::extension_type(&other.publisher, &other.type_name)
                    .is_some_and(|t| t.canonical == known.canonical);
                if same {
                    return Err(ArmError::new(
                        409,
                        "OperationNotAllowed",
                        format!(
                            "Multiple VMExtensions per handler not supported: extension '{}' ({}.{}) already runs the handler {} on this VM; update or delete it instead.",
                            other.name, other.publisher, other.type_name, known.canonical
                        ),
                    ));
                }
            }
        }
        let seal = |p: &Value| -> ArmResult<String> {
            self.dir
                .sealing()
                .seal(
                    p.to_string().as_bytes(),
                    &format!("vm-extension:{key}"),
                    self.dir.rng().as_ref(),
                )
                .map_err(|e| {
                    tracing::error!(error = %e, "sealing protected settings failed");
                    ArmError::internal()
                })
        };
        let (created, rec_ext) = match existing {
            Some(mut rec) => {
                let mut e: StoredExtension = rec.decode()?;
                if e.provisioning_state == "Deleting" {
                    return Err(ArmError::new(
                        409,
                        "OperationNotAllowed",
                        format!(
                            "Extension '{}' is being deleted; set it again once the machine has removed it.",
                            e.name
                        ),
                    ));
                }
                if !e.publisher.eq_ignore_ascii_case(publisher)
                    || !e.type_name.eq_ignore_ascii_case(type_name)
                {
                    return Err(ArmError::new(
                        409,
                        "PropertyChangeNotAllowed",
                        format!(
                            "Changing property 'type' is not allowed: extension '{}' is {}.{}; delete it first.",
                            e.name, e.publisher, e.type_name
                        ),
                    ));
                }
                let unchanged = e.type_handler_version == version
                    && e.settings == settings
                    && protected.is_none()
                    && e.force_update_tag == force_update_tag;
                // Nothing new to apply: a finished extension stays as it is, one in progress
                // keeps its operation. A failed one runs again.
                if unchanged && e.provisioning_state == "Succeeded" {
                    return Ok(ExtensionChange {
                        status: 200,
                        body: Some(extension_json(&e, false)),
                        operation: None,
                    });
                }
                if unchanged && matches!(e.provisioning_state.as_str(), "Creating" | "Updating") {
                    return Ok(ExtensionChange {
                        status: 200,
                        body: Some(extension_json(&e, false)),
                        operation: Some(operation_path(&vm.subscription_id, &vm.location, &e.operation_id)),
                    });
                }
                e.type_handler_version = version;
                e.settings = settings;
                if let Some(p) = protected {
                    e.sealed_protected_settings = Some(seal(p)?);
                }
                e.force_update_tag = force_update_tag;
                e.generation += 1;
                e.provisioning_state = "Updating".into();
                e.operation_id = self.dir.new_id();
                rec.data = serde_json::to_value(&e).map_err(|_| ArmError::internal())?;
                self.dir.store().update(rec).await.map_err(|err| match err {
                    StoreError::Conflict { .. } => {
                        ArmError::new(409, "Conflict", "The extension was changed concurrently; retry.")
                    }
                    other => other.into(),
                })?;
                (false, e)
            }
            None => {
                let e = StoredExtension {
                    vm_id: vm.arm_id(),
                    name: name.to_owned(),
                    location: vm.location.clone(),
                    publisher: known.publisher.to_owned(),
                    type_name: known.type_name.to_owned(),
                    type_handler_version: version,
                    auto_upgrade_minor_version: props
                        .get("autoUpgradeMinorVersion")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                    settings,
                    sealed_protected_settings: protected.map(seal).transpose()?,
                    force_update_tag,
                    provisioning_state: "Creating".into(),
                    // Generations start at the creation time (ms), so an extension deleted and
                    // set again never reuses a generation an agent may still report on.
                    generation: u64::try_from(self.dir.clock().now_unix()).unwrap_or(0) * 1000
                        + self.dir.rng().range(0, 999),
                    reported_generation: None,
                    status: None,
                    operation_id: self.dir.new_id(),
                };
                self.dir
                    .store()
                    .insert(Record::from_value(kinds::VM_EXTENSION, &key, &e)?)
                    .await
                    .map_err(|err| match err {
                        StoreError::Conflict { .. } => {
                            ArmError::new(409, "Conflict", "The extension was created concurrently; retry.")
                        }
                        other => other.into(),
                    })?;
                if self
                    .load_vm(&scope)
                    .await?
                    .is_none_or(|(_, now_vm)| now_vm.vm_id != vm.vm_id)
                {
                    self.dir.store().delete(kinds::VM_EXTENSION, &key, None).await?;
                    return Err(Self::vm_not_found(rg, vm_name));
                }
                (true, e)
            }
        };
        let operation = self.new_operation(&rec_ext, &key, &vm, false).await?;
        self.extensions_changed();
        self.audit(
            caller,
            if created { "Create VM extension" } else { "Update VM extension" },
            "ResourceManagement",
            (&format!("{}/extensions/{}", vm.arm_id(), rec_ext.name), &rec_ext.name, "VirtualMachineExtension"),
            json!({"publisher": rec_ext.publisher, "type": rec_ext.type_name, "typeHandlerVersion": rec_ext.type_handler_version}),
        )
        .await?;
        Ok(ExtensionChange {
            status: if created { 201 } else { 200 },
            body: Some(extension_json(&rec_ext, false)),
            operation: Some(operation),
        })
    }

    /// Reads an extension (`extensions/read`).
    pub async fn get_extension(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        vm_name: &str,
        name: &str,
        with_instance_view: bool,
    ) -> ArmResult<Value> {
        let (scope, _) = self
            .vm_for_extension(caller, sub, rg, vm_name, actions::READ)
            .await?;
        let now = self.dir.clock().now_unix();
        let rec = self
            .dir
            .store()
            .get(kinds::VM_EXTENSION, &extension_key(&scope, name), now)
            .await?
            .ok_or_else(|| extension_not_found(vm_name, name))?;
        Ok(extension_json(&rec.decode()?, with_instance_view))
    }

    /// Lists a VM's extensions (`extensions/read`).
    pub async fn list_extensions(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        vm_name: &str,
        with_instance_view: bool,
    ) -> ArmResult<Vec<Value>> {
        let (scope, _) = self
            .vm_for_extension(caller, sub, rg, vm_name, actions::READ)
            .await?;
        Ok(load_all(self, &scope)
            .await?
            .iter()
            .map(|(_, e)| extension_json(e, with_instance_view))
            .collect())
    }

    /// Deletes an extension (`extensions/delete`). One no agent has seen goes at once; otherwise
    /// it is `Deleting` until the agent reports it removed (202 with an operation).
    pub async fn delete_extension(
        &self,
        caller: &str,
        sub: &str,
        rg: &str,
        vm_name: &str,
        name: &str,
    ) -> ArmResult<ExtensionChange> {
        let (scope, vm) = self
            .vm_for_extension(caller, sub, rg, vm_name, actions::DELETE)
            .await?;
        let key = extension_key(&scope, name);
        let now = self.dir.clock().now_unix();
        let Some(mut rec) = self.dir.store().get(kinds::VM_EXTENSION, &key, now).await? else {
            return Ok(ExtensionChange {
                status: 204,
                body: None,
                operation: None,
            });
        };
        let mut e: StoredExtension = rec.decode()?;
        let target = format!("{}/extensions/{}", vm.arm_id(), e.name);
        let operation = if e.reported_generation.is_none() {
            self.dir
                .store()
                .delete(kinds::VM_EXTENSION, &key, Some(rec.version))
                .await?;
            None
        } else {
            e.generation += 1;
            e.provisioning_state = "Deleting".into();
            e.operation_id = self.dir.new_id();
            rec.data = serde_json::to_value(&e).map_err(|_| ArmError::internal())?;
            self.dir.store().update(rec).await?;
            Some(self.new_operation(&e, &key, &vm, true).await?)
        };
        self.extensions_changed();
        self.audit(
            caller,
            "Delete VM extension",
            "ResourceManagement",
            (&target, &e.name, "VirtualMachineExtension"),
            json!({}),
        )
        .await?;
        Ok(ExtensionChange {
            status: if operation.is_some() { 202 } else { 200 },
            body: None,
            operation,
        })
    }

    /// The status of an asynchronous operation (the caller needs `extensions/read` on its VM).
    pub async fn get_operation(&self, caller: &str, sub: &str, id: &str) -> ArmResult<Value> {
        let now = self.dir.clock().now_unix();
        let not_found = || {
            ArmError::new(
                404,
                "OperationNotFound",
                format!("The operation '{id}' was not found (operations are kept for 24 hours)."),
            )
        };
        let rec = self
            .dir
            .store()
            .get(kinds::OPERATION, &id.to_ascii_lowercase(), now)
            .await?
            .ok_or_else(not_found)?;
        let op: StoredOperation = rec.decode()?;
        let vm_scope = Scope::parse(&op.vm_scope).map_err(|_| ArmError::internal())?;
        if vm_scope.subscription() != Some(sub.to_ascii_lowercase().as_str()) {
            return Err(not_found());
        }
        self.authorize(caller, &vm_scope, actions::READ).await?;
        let ext: Option<StoredExtension> = self
            .dir
            .store()
            .get(kinds::VM_EXTENSION, &op.extension_key, now)
            .await?
            .map(|r| r.decode())
            .transpose()?;
        let failure = |e: &StoredExtension| {
            let detail = e.status.as_ref().map(|s| s.message.clone()).unwrap_or_default();
            json!({
                "code": "VMExtensionProvisioningError",
                "message": format!("VM has reported a failure when processing extension '{}'. Error message: \"{detail}\"", e.name),
            })
        };
        let (status, error) = match (&op.status, ext) {
            (Some(s), Some(e)) if s == "Failed" && e.generation == op.generation => {
                (s.clone(), Some(failure(&e)))
            }
            (Some(s), _) => (s.clone(), None),
            (None, None) if op.delete => ("Succeeded".to_owned(), None),
            (None, None) => ("Canceled".to_owned(), None),
            (None, Some(e)) if e.generation != op.generation => ("Canceled".to_owned(), None),
            (None, Some(e)) => match e.provisioning_state.as_str() {
                "Succeeded" => ("Succeeded".to_owned(), None),
                "Failed" => ("Failed".to_owned(), Some(failure(&e))),
                _ => ("InProgress".to_owned(), None),
            },
        };
        let mut out = json!({"name": id, "status": status, "startTime": usher_core::rfc3339(op.started_at)});
        if let Some(m) = out.as_object_mut() {
            if let Some(t) = op.ended_at {
                m.insert("endTime".into(), Value::String(usher_core::rfc3339(t)));
            }
            if let Some(err) = error {
                m.insert("error".into(), err);
            }
        }
        Ok(out)
    }

    /// The machine's agent reports the outcome of applying generation `generation` of extension
    /// `name`. Only the VM's own identity may report (or the machine itself, through
    /// [`Arm::machine_report`]). A report for an older generation is ignored (returns false):
    /// the desired state changed since.
    pub async fn report_extension(
        &self,
        caller: &str,
        vm_id: &str,
        name: &str,
        generation: u64,
        outcome: ExtensionOutcome,
    ) -> ArmResult<bool> {
        let scope = Scope::parse(vm_id).map_err(|_| {
            ArmError::new(
                400,
                "InvalidMachine",
                format!("'{vm_id}' is not a VM's resource id."),
            )
        })?;
        if !self.vm_of_identity(caller, &scope).await? {
            return Err(ArmError::authorization_failed(
                caller,
                "Microsoft.Compute/virtualMachines/extensions/status/write",
                scope.as_str(),
            ));
        }
        self.record_report(&scope, name, generation, outcome).await
    }

    /// Records an agent's report (the caller is authenticated as the VM's machine or identity).
    pub(crate) async fn record_report(
        &self,
        scope: &Scope,
        name: &str,
        generation: u64,
        outcome: ExtensionOutcome,
    ) -> ArmResult<bool> {
        let key = extension_key(scope, name);
        let now = self.dir.clock().now_unix();
        let Some(mut rec) = self.dir.store().get(kinds::VM_EXTENSION, &key, now).await? else {
            return Ok(false);
        };
        let mut e: StoredExtension = rec.decode()?;
        if e.generation != generation {
            return Ok(false);
        }
        // Removal is the answer to a delete only, and a delete is answered only by removal (or
        // a failure to remove).
        let deleting = e.provisioning_state == "Deleting";
        let fits = match &outcome {
            ExtensionOutcome::Removed => deleting,
            ExtensionOutcome::Succeeded { .. } => !deleting,
            ExtensionOutcome::Failed { .. } => true,
        };
        if !fits {
            return Ok(false);
        }
        let operation_id = e.operation_id.clone();
        match outcome {
            ExtensionOutcome::Removed => {
                return match self
                    .dir
                    .store()
                    .delete(kinds::VM_EXTENSION, &key, Some(rec.version))
                    .await
                {
                    Ok(_) => {
                        self.finish_operation(&operation_id, "Succeeded").await?;
                        Ok(true)
                    }
                    Err(StoreError::Conflict { .. }) => Ok(false),
                    Err(err) => Err(err.into()),
                };
            }
            ExtensionOutcome::Succeeded { message } => {
                e.provisioning_state = "Succeeded".into();
                e.status = Some(ExtensionStatus {
                    code: "ProvisioningState/succeeded".into(),
                    level: "Info".into(),
                    display_status: "Provisioning succeeded".into(),
                    message,
                    time: now,
                });
            }
            ExtensionOutcome::Failed { exit_code, message } => {
                e.provisioning_state = "Failed".into();
                e.status = Some(ExtensionStatus {
                    code: format!("ProvisioningState/failed/{exit_code}"),
                    level: "Error".into(),
                    display_status: "Provisioning failed".into(),
                    message,
                    time: now,
                });
            }
        }
        e.reported_generation = Some(generation);
        let final_status = e.provisioning_state.clone();
        rec.data = serde_json::to_value(&e).map_err(|_| ArmError::internal())?;
        match self.dir.store().update(rec).await {
            Ok(_) => {
                self.finish_operation(&operation_id, &final_status).await?;
                Ok(true)
            }
            // Changed while the report was in flight: the agent will see the new generation.
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// What a VM's agent is asked to run, with generations (`vm_id`: its ARM id). For
    /// administrators' diagnostics and tests; agents get the same through their own API.
    pub async fn desired_extensions(&self, vm_id: &str) -> ArmResult<Vec<Value>> {
        let scope = Scope::parse(vm_id).map_err(|_| {
            ArmError::new(
                400,
                "InvalidMachine",
                format!("'{vm_id}' is not a VM's resource id."),
            )
        })?;
        desired(self, &scope).await
    }

    /// Records an operation's final status, so it stays readable after later changes.
    async fn finish_operation(&self, id: &str, status: &str) -> ArmResult<()> {
        let now = self.dir.clock().now_unix();
        let Some(mut rec) = self.dir.store().get(kinds::OPERATION, id, now).await? else {
            return Ok(());
        };
        let mut op: StoredOperation = rec.decode()?;
        op.status = Some(status.to_owned());
        op.ended_at = Some(now);
        rec.data = serde_json::to_value(&op).map_err(|_| ArmError::internal())?;
        match self.dir.store().update(rec).await {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `GET .../publishers/{publisher}/artifacttypes/vmextension/types`: the types usher runs.
    pub fn extension_image_types(&self, location: &str, publisher: &str) -> Vec<Value> {
        compute::EXTENSION_TYPES
            .iter()
            .filter(|t| t.publisher.eq_ignore_ascii_case(publisher))
            .map(|t| json!({"name": t.type_name, "location": location, "id": format!("/Subscriptions/providers/Microsoft.Compute/Locations/{location}/Publishers/{}/ArtifactTypes/VMExtension/Types/{}", t.publisher, t.type_name)}))
            .collect()
    }

    /// `.../types/{type}/versions`: the versions of one type.
    pub fn extension_image_versions(&self, location: &str, publisher: &str, type_name: &str) -> Vec<Value> {
        compute::extension_type(publisher, type_name)
            .map(|t| {
                t.versions
                    .iter()
                    .map(|v| json!({"name": v, "location": location, "id": format!("/Subscriptions/providers/Microsoft.Compute/Locations/{location}/Publishers/{}/ArtifactTypes/VMExtension/Types/{}/Versions/{v}", t.publisher, t.type_name)}))
                    .collect()
            })
            .unwrap_or_default()
    }
}
