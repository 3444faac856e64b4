//! Machines (SPEC X1, D5): one-time join tokens, the machine key a joined agent proves, and the
//! device object a joined machine registers. A machine is a VM whose agent has joined; the agent
//! authenticates every call with a short assertion signed by its key (never sent), verified here
//! against the key recorded at join.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::Scope;
use usher_crypto::jwt::{Expectations, Jwk, KeySet, TokenError, TokenKind};
use usher_store::{Record, StoreError};

use crate::vms::{StoredVm, actions as vm_actions};
use crate::{Arm, ArmError, ArmResult, kinds};

/// Join tokens last an hour and work once (SPEC X1).
pub const JOIN_TOKEN_TTL_SECS: i64 = 3600;
/// Machine assertions live at most this long.
const MAX_MACHINE_ASSERTION_SECS: i64 = 300;
/// The prefix that marks a join token (so a pasted secret is recognisable).
const JOIN_TOKEN_PREFIX: &str = "usher-join-";

/// A stored join token (id: digest of the token; key: the VM's scope, one live token per VM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredJoinToken {
    vm_scope: String,
    /// The VM's `vmId`: a VM deleted and created again under the same name is another VM.
    #[serde(default)]
    vm_id: String,
    issued_by: String,
}

/// A joined machine (id: the VM's scope).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StoredMachine {
    vm_scope: String,
    jwk: Jwk,
    hostname: String,
    joined_at: i64,
    #[serde(default)]
    last_contact: i64,
    #[serde(default)]
    device_id: Option<String>,
}

/// A device object (SPEC D5; id: GUID, key: lower-cased display name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDevice {
    id: String,
    display_name: String,
    vm_scope: String,
    operating_system: String,
    operating_system_version: String,
    registered_at: i64,
}

/// What a machine's agent sends to join.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The one-time join token.
    pub token: String,
    /// The machine's public key.
    pub jwk: Jwk,
    /// Proof of possession: a JWT signed with that key, `aud` the join endpoint, `nonce` the
    /// token's digest, `sub` the hostname.
    pub proof: String,
    /// The machine's hostname (its device name).
    pub hostname: String,
}

/// An authenticated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The VM's scope.
    pub scope: Scope,
    /// The VM.
    pub(crate) vm: StoredVm,
    /// The machine record.
    pub(crate) record: StoredMachine,
}

impl Machine {
    /// The VM's ARM id.
    pub fn vm_id(&self) -> String {
        self.vm.arm_id()
    }

    /// The machine's device id, once it registered its device.
    pub fn device_id(&self) -> Option<&str> {
        self.record.device_id.as_deref()
    }

    /// The machine's host name.
    pub fn hostname(&self) -> &str {
        &self.record.hostname
    }

    /// The VM identity's principal id, if the VM has one.
    pub fn identity(&self) -> Option<&str> {
        self.vm.identity.as_ref().map(|i| i.principal_id.as_str())
    }
}

fn join_refused(message: impl Into<String>) -> ArmError {
    ArmError::new(400, "InvalidJoinToken", message)
}

fn machine_unauthorized(message: impl Into<String>) -> ArmError {
    ArmError::new(401, "InvalidMachineCredential", message)
}

/// The claims of a JWT, unverified (to find the key that must verify it).
fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&usher_crypto::b64url_decode(payload).ok()?).ok()
}

/// Host names the directory accepts as device names: DNS names (labels of 1-63 letters, digits
/// and hyphens, at most 253 characters).
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Arm {
    /// Issues the VM's one-time join token (`virtualMachines/write`); a new one replaces the last.
    pub async fn onboarding_token(&self, caller: &str, sub: &str, rg: &str, name: &str) -> ArmResult<Value> {
        let scope = Self::vm_scope(sub, rg, name)?;
        self.authorize(caller, &scope, vm_actions::WRITE).await?;
        let (_, vm) = self
            .load_vm(&scope)
            .await?
            .ok_or_else(|| Self::vm_not_found(rg, name))?;
        let store = self.dir.store();
        let now = self.dir.clock().now_unix();
        if let Some(old) = store.get_by_key(kinds::JOIN_TOKEN, scope.as_str(), now).await? {
            store.delete(kinds::JOIN_TOKEN, &old.id, None).await?;
        }
        let token = format!(
            "{JOIN_TOKEN_PREFIX}{}",
            usher_crypto::secret::generate(self.dir.rng().as_ref())
        );
        let stored = StoredJoinToken {
            vm_scope: scope.as_str().to_owned(),
            vm_id: vm.vm_id.clone(),
            issued_by: caller.to_owned(),
        };
        let expires = now + JOIN_TOKEN_TTL_SECS;
        store
            .insert(
                Record::from_value(kinds::JOIN_TOKEN, usher_crypto::secret::digest(&token), &stored)?
                    .with_key(scope.as_str())
                    .with_expiry(expires),
            )
            .await?;
        self.audit(
            caller,
            "Issue machine join token",
            "ResourceManagement",
            (scope.as_str(), name, "VirtualMachine"),
            json!({"expiresOn": usher_core::rfc3339(expires)}),
        )
        .await?;
        Ok(
            json!({"onboardingToken": token, "expiresOn": usher_core::rfc3339(expires), "vmId": scope.as_str()}),
        )
    }

    /// Joins a machine (SPEC X1): checks the proof of possession, spends the token, records the
    /// key. Returns what the agent keeps.
    pub async fn join_machine(&self, req: &JoinRequest, join_audience: &str) -> ArmResult<Value> {
        if !req.token.starts_with(JOIN_TOKEN_PREFIX) {
            return Err(join_refused(
                "This is not a join token; issue one with `usher vm onboarding-token -g RG -n VM`.",
            ));
        }
        if !valid_hostname(&req.hostname) {
            return Err(join_refused(format!(
                "The host name '{}' cannot be a device name: use 1-63 letters, digits and hyphens.",
                req.hostname
            )));
        }
        let digest = usher_crypto::secret::digest(&req.token);
        let mut jwk = req.jwk.clone();
        if jwk.kid.is_none() {
            jwk.kid = Some("machine".into());
        }
        let keys = KeySet::from_jwks(std::slice::from_ref(&jwk))
            .map_err(|e| join_refused(format!("The machine key is not usable: {e}.")))?;
        let now = self.dir.clock().now_unix();
        let claims = keys
            .validate(
                &req.proof,
                &Expectations {
                    kind: TokenKind::ClientAssertion,
                    issuer: "usher-agent",
                    audiences: &[join_audience.to_owned()],
                    now,
                },
            )
            .map_err(|e| join_refused(format!("The proof of possession of the machine key failed: {e}.")))?;
        if claims.get("nonce").and_then(Value::as_str) != Some(digest.as_str())
            || claims.get("sub").and_then(Value::as_str) != Some(req.hostname.as_str())
        {
            return Err(join_refused(
                "The proof of possession does not name this token and host.",
            ));
        }
        let Some(rec) = self.dir.store().take(kinds::JOIN_TOKEN, &digest, now).await? else {
            return Err(join_refused(
                "The join token is not valid: it was already used or it expired (join tokens work once, for 1 hour). Issue a new one with `usher vm onboarding-token -g RG -n VM`.",
            ));
        };
        let token: StoredJoinToken = rec.decode()?;
        let scope = Scope::parse(&token.vm_scope).map_err(|_| ArmError::internal())?;
        let (_, vm) = self
            .load_vm(&scope)
            .await?
            .filter(|(_, vm)| vm.vm_id == token.vm_id)
            .ok_or_else(|| join_refused("The VM this token was issued for no longer exists."))?;
        let machine = StoredMachine {
            vm_scope: scope.as_str().to_owned(),
            jwk,
            hostname: req.hostname.clone(),
            joined_at: now,
            last_contact: now,
            device_id: None,
        };
        let store = self.dir.store();
        // A re-join (a new token, issued by someone allowed to) replaces the machine's key.
        if let Some(old) = store.get(kinds::MACHINE, scope.as_str(), now).await? {
            let previous: StoredMachine = old.decode()?;
            self.remove_device_of(&previous).await?;
            store.delete(kinds::MACHINE, scope.as_str(), None).await?;
        }
        store
            .insert(Record::from_value(kinds::MACHINE, scope.as_str(), &machine)?)
            .await?;
        self.audit(
            &token.issued_by,
            "Join machine",
            "ResourceManagement",
            (scope.as_str(), &vm.name, "VirtualMachine"),
            json!({"hostname": req.hostname}),
        )
        .await?;
        self.machine_config(&Machine {
            scope,
            vm,
            record: machine,
        })
        .await
    }

    /// Authenticates a machine's assertion (`iss` = `sub` = the VM id, `aud` = `audience`,
    /// at most 5 minutes, single use).
    pub async fn authenticate_machine(&self, assertion: &str, audience: &str) -> ArmResult<Machine> {
        let iss = unverified_claims(assertion)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| machine_unauthorized("The machine assertion is malformed."))?;
        let scope = Scope::parse(&iss)
            .map_err(|_| machine_unauthorized("The machine assertion does not name a VM."))?;
        let now = self.dir.clock().now_unix();
        let rec = self
            .dir
            .store()
            .get(kinds::MACHINE, scope.as_str(), now)
            .await?
            .ok_or_else(|| {
                machine_unauthorized(
                    "This machine is not joined (or was removed): join it again with a new token.",
                )
            })?;
        let mut record: StoredMachine = rec.decode()?;
        let keys = KeySet::from_jwks(std::slice::from_ref(&record.jwk)).map_err(|_| ArmError::internal())?;
        let claims = keys
            .validate(
                assertion,
                &Expectations {
                    kind: TokenKind::ClientAssertion,
                    issuer: &iss,
                    audiences: &[audience.to_owned()],
                    now,
                },
            )
            .map_err(|e| match e {
                TokenError::Expired | TokenError::NotYetValid => machine_unauthorized(
                    "The machine assertion is outside its validity; check the machine's clock.",
                ),
                other => machine_unauthorized(format!("The machine assertion is not valid: {other}.")),
            })?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if claims.get("sub").and_then(Value::as_str) != Some(iss.as_str())
            || exp - now > MAX_MACHINE_ASSERTION_SECS
        {
            return Err(machine_unauthorized(
                "The machine assertion must name the VM as sub and live at most 5 minutes.",
            ));
        }
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or_else(|| machine_unauthorized("The machine assertion needs a jti."))?;
        let seen = Record::new(
            kinds::MACHINE_JTI,
            format!("{}:{jti}", scope.as_str()),
            Value::Null,
        )
        .with_expiry(exp + 60);
        match self.dir.store().insert(seen).await {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(machine_unauthorized("The machine assertion was already used."));
            }
            Err(e) => return Err(e.into()),
        }
        let (_, vm) = self
            .load_vm(&scope)
            .await?
            .ok_or_else(|| machine_unauthorized("The VM of this machine was deleted."))?;
        if now - record.last_contact >= 60 {
            record.last_contact = now;
            let mut rec = rec;
            rec.data = serde_json::to_value(&record).map_err(|_| ArmError::internal())?;
            // Best effort: a concurrent update already recorded the contact.
            if let Err(e) = self.dir.store().update(rec).await
                && !matches!(e, StoreError::Conflict { .. })
            {
                return Err(e.into());
            }
        }
        Ok(Machine { scope, vm, record })
    }

    /// What an agent needs to know about its machine: tenant, VM, identity, device.
    pub async fn machine_config(&self, m: &Machine) -> ArmResult<Value> {
        let tenant = self.dir.tenant().await?;
        let vm = &m.vm;
        let identity = match &vm.identity {
            Some(i) => match self.dir.get_service_principal(&i.principal_id).await {
                Ok(sp) => {
                    json!({"principalId": i.principal_id, "clientId": sp.app_id, "tenantId": i.tenant_id})
                }
                Err(usher_directory::DirectoryError::NotFound { .. }) => Value::Null,
                Err(e) => return Err(e.into()),
            },
            None => Value::Null,
        };
        Ok(json!({
            "tenantId": tenant.id,
            "vmResourceId": vm.arm_id(),
            "vmId": vm.vm_id,
            "name": vm.name,
            "resourceGroupName": vm.resource_group,
            "subscriptionId": vm.subscription_id,
            "location": vm.location,
            "vmSize": vm.vm_size,
            "osType": vm.os_type,
            "computerName": vm.computer_name,
            "adminUsername": vm.admin_username,
            "image": vm.image,
            "tags": vm.tags,
            "identity": identity,
            "hostname": m.record.hostname,
            "deviceId": m.record.device_id,
        }))
    }

    /// Registers the machine as a device (SPEC D5): its display name is the hostname, unique in
    /// the tenant (case-insensitively). The same machine registering again gets its device back.
    pub async fn register_device(
        &self,
        m: &Machine,
        hostname: &str,
        os: &str,
        os_version: &str,
    ) -> ArmResult<Value> {
        if !valid_hostname(hostname) {
            return Err(ArmError::new(
                400,
                "InvalidDeviceName",
                format!("'{hostname}' cannot be a device name."),
            ));
        }
        let store = self.dir.store();
        let now = self.dir.clock().now_unix();
        let key = hostname.to_ascii_lowercase();
        if let Some(existing) = store.get_by_key(kinds::DEVICE, &key, now).await? {
            let d: StoredDevice = existing.decode()?;
            if d.vm_scope == m.scope.as_str() {
                return Ok(json!({"deviceId": d.id, "displayName": d.display_name}));
            }
            return Err(ArmError::new(
                409,
                "HostnameDuplicate",
                format!(
                    "A device named '{}' is already registered in this directory. Device names are host names and must be unique: rename this machine (hostnamectl set-hostname NEW-NAME) and run the extension again, or have an administrator delete the stale device {} (DELETE /v1.0/devices/{}).",
                    d.display_name, d.id, d.id
                ),
            ));
        }
        // One device per machine: a renamed machine replaces its old device.
        if let Some(old) = &m.record.device_id {
            store.delete(kinds::DEVICE, old, None).await?;
        }
        let device = StoredDevice {
            id: self.dir.new_id(),
            display_name: hostname.to_owned(),
            vm_scope: m.scope.as_str().to_owned(),
            operating_system: os.to_owned(),
            operating_system_version: os_version.to_owned(),
            registered_at: now,
        };
        store
            .insert(Record::from_value(kinds::DEVICE, &device.id, &device)?.with_key(key))
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ArmError::new(
                    409,
                    "HostnameDuplicate",
                    format!(
                        "A device named '{hostname}' was registered at the same moment; rename this machine."
                    ),
                ),
                other => other.into(),
            })?;
        self.set_machine_device(&m.scope, Some(device.id.clone())).await?;
        self.audit(
            m.identity().unwrap_or(&device.id),
            "Register device",
            "Device",
            (&device.id, hostname, "Device"),
            json!({"vm": m.vm_id()}),
        )
        .await?;
        Ok(json!({"deviceId": device.id, "displayName": device.display_name}))
    }

    /// The machine leaves the directory: its device object is deleted.
    pub async fn unregister_device(&self, m: &Machine) -> ArmResult<bool> {
        let removed = self.remove_device_of(&m.record).await?;
        self.set_machine_device(&m.scope, None).await?;
        if removed {
            let id = m.record.device_id.clone().unwrap_or_default();
            self.audit(
                m.identity().unwrap_or(&id),
                "Unregister device",
                "Device",
                (&id, &m.record.hostname, "Device"),
                json!({"vm": m.vm_id()}),
            )
            .await?;
        }
        Ok(removed)
    }

    async fn remove_device_of(&self, record: &StoredMachine) -> ArmResult<bool> {
        match &record.device_id {
            Some(id) => Ok(self.dir.store().delete(kinds::DEVICE, id, None).await?),
            None => Ok(false),
        }
    }

    async fn set_machine_device(&self, scope: &Scope, device: Option<String>) -> ArmResult<()> {
        for _ in 0..5 {
            let now = self.dir.clock().now_unix();
            let Some(mut rec) = self.dir.store().get(kinds::MACHINE, scope.as_str(), now).await? else {
                return Ok(());
            };
            let mut m: StoredMachine = rec.decode()?;
            m.device_id = device.clone();
            rec.data = serde_json::to_value(&m).map_err(|_| ArmError::internal())?;
            match self.dir.store().update(rec).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ArmError::new(
            409,
            "Conflict",
            "The machine record changed concurrently; retry.",
        ))
    }

    /// The joined machine's host name and last contact, if the VM has a joined agent.
    pub(crate) async fn machine_contact(&self, scope: &Scope) -> ArmResult<Option<(String, i64)>> {
        let now = self.dir.clock().now_unix();
        Ok(
            match self.dir.store().get(kinds::MACHINE, scope.as_str(), now).await? {
                Some(rec) => {
                    let m: StoredMachine = rec.decode()?;
                    Some((m.hostname, m.last_contact))
                }
                None => None,
            },
        )
    }

    /// Forgets a VM's machine, its device and its join token (the VM is being deleted).
    pub(crate) async fn forget_machine(&self, scope: &Scope) -> ArmResult<()> {
        let now = self.dir.clock().now_unix();
        if let Some(token) = self
            .dir
            .store()
            .get_by_key(kinds::JOIN_TOKEN, scope.as_str(), now)
            .await?
        {
            self.dir
                .store()
                .delete(kinds::JOIN_TOKEN, &token.id, None)
                .await?;
        }
        if let Some(rec) = self.dir.store().get(kinds::MACHINE, scope.as_str(), now).await? {
            let m: StoredMachine = rec.decode()?;
            self.remove_device_of(&m).await?;
            self.dir
                .store()
                .delete(kinds::MACHINE, scope.as_str(), None)
                .await?;
        }
        Ok(())
    }

    /// Devices (Graph's `device` shape), for administrators.
    pub async fn list_devices(&self) -> ArmResult<Vec<Value>> {
        let mut out = Vec::new();
        for rec in crate::list_all(&self.dir, kinds::DEVICE, "").await? {
            let d: StoredDevice = rec.decode()?;
            out.push(json!({
                "id": d.id, "deviceId": d.id, "displayName": d.display_name,
                "operatingSystem": d.operating_system, "operatingSystemVersion": d.operating_system_version,
                "trustType": "AzureAd", "accountEnabled": true,
                "registrationDateTime": usher_core::rfc3339(d.registered_at),
                "physicalIds": [format!("[AzureResourceId]:{}", d.vm_scope)],
            }));
        }
        Ok(out)
    }

    /// Deletes a stale device (frees its name); its machine forgets it.
    pub async fn delete_device(&self, caller: &str, id: &str) -> ArmResult<bool> {
        let now = self.dir.clock().now_unix();
        let key = id.to_ascii_lowercase();
        let Some(rec) = self.dir.store().get(kinds::DEVICE, &key, now).await? else {
            return Ok(false);
        };
        let d: StoredDevice = rec.decode()?;
        self.dir.store().delete(kinds::DEVICE, &key, None).await?;
        if let Ok(scope) = Scope::parse(&d.vm_scope) {
            self.set_machine_device(&scope, None).await?;
        }
        self.audit(
            caller,
            "Delete device",
            "Device",
            (&d.id, &d.display_name, "Device"),
            json!({"vm": d.vm_scope}),
        )
        .await?;
        Ok(true)
    }

    /// A device by id or by host name: (device id, host name, the VM's scope).
    pub(crate) async fn find_device(&self, id_or_name: &str) -> ArmResult<Option<(String, String, Scope)>> {
        let now = self.dir.clock().now_unix();
        let key = id_or_name.trim().to_ascii_lowercase();
        let rec = match self.dir.store().get(kinds::DEVICE, &key, now).await? {
            Some(r) => Some(r),
            None => self.dir.store().get_by_key(kinds::DEVICE, &key, now).await?,
        };
        let Some(rec) = rec else {
            return Ok(None);
        };
        let d: StoredDevice = rec.decode()?;
        Ok(Scope::parse(&d.vm_scope)
            .ok()
            .map(|scope| (d.id, d.display_name, scope)))
    }

    /// The device of a VM, if its machine is joined and registered.
    pub(crate) async fn device_of_vm(&self, scope: &Scope) -> ArmResult<Option<(String, String)>> {
        let now = self.dir.clock().now_unix();
        let Some(rec) = self.dir.store().get(kinds::MACHINE, scope.as_str(), now).await? else {
            return Ok(None);
        };
        let m: StoredMachine = rec.decode()?;
        match m.device_id {
            Some(id) => Ok(self.find_device(&id).await?.map(|(id, host, _)| (id, host))),
            None => Ok(None),
        }
    }

    /// The VM of a device (login checks name machines by device id too).
    pub(crate) async fn vm_of_device(&self, device_id: &str) -> ArmResult<Option<Scope>> {
        let now = self.dir.clock().now_unix();
        Ok(
            match self
                .dir
                .store()
                .get(kinds::DEVICE, &device_id.to_ascii_lowercase(), now)
                .await?
            {
                Some(rec) => {
                    let d: StoredDevice = rec.decode()?;
                    Scope::parse(&d.vm_scope).ok()
                }
                None => None,
            },
        )
    }

    /// The desired extensions of a machine's VM, with protected settings opened for the agent.
    pub async fn machine_extensions(&self, m: &Machine) -> ArmResult<Vec<Value>> {
        crate::extensions::desired(self, &m.scope).await
    }

    /// The agent's report for one extension of its own VM.
    pub async fn machine_report(
        &self,
        m: &Machine,
        name: &str,
        generation: u64,
        outcome: crate::ExtensionOutcome,
    ) -> ArmResult<bool> {
        self.record_report(&m.scope, name, generation, outcome).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostnames() {
        assert!(super::valid_hostname("web-01"));
        assert!(!super::valid_hostname("web_01"));
        assert!(!super::valid_hostname("-web"));
        assert!(!super::valid_hostname(""));
        assert!(!super::valid_hostname(&"a".repeat(64)));
    }
}
