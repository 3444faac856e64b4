//! What `usher ssh` needs from the resource manager (SPEC L1, L3): finding a machine by its VM
//! or host name with only a login role (not Reader), the user's right there, and the
//! first-connection consent kept per user for 30 days and at most 15 machines.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_authz::{LoginRight, Scope};
use usher_proto::local::{IP_ADDRESS_TEXT, NO_ROLE_TEXT};
use usher_store::{Record, StoreError};

use crate::{Arm, ArmError, ArmResult, kinds};

/// How long a consent lasts.
pub const CONSENT_DAYS: i64 = 30;
/// How many machines a user's consents cover; allowing one more forgets the oldest.
pub const CONSENT_MACHINES: usize = 15;

/// A machine a user may log in to.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The device id (what certificates are bound to).
    pub device_id: String,
    /// The device (host) name.
    pub hostname: String,
    /// The VM's ARM id.
    pub vm_id: String,
    /// The user's right there.
    pub right: LoginRight,
    /// Whether the user has allowed logging in to it (SPEC L3).
    pub consented: bool,
}

impl SshTarget {
    /// The API shape.
    pub fn to_json(&self) -> Value {
        json!({
            "deviceId": self.device_id,
            "hostname": self.hostname,
            "vmResourceId": self.vm_id,
            "right": if self.right == LoginRight::Admin { "admin" } else { "user" },
            "consented": self.consented,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consents {
    /// (device id, when allowed), oldest first.
    machines: Vec<(String, i64)>,
}

fn no_role() -> ArmError {
    ArmError::new(403, "LoginNotAllowed", NO_ROLE_TEXT)
}

impl Arm {
    /// The best login right of `oid` (with its groups) at `scope`; none for a disabled account.
    pub async fn login_right_of(&self, oid: &str, enabled: bool, scope: &Scope) -> ArmResult<LoginRight> {
        if !enabled {
            return Ok(LoginRight::Deny);
        }
        let principals = self.principals_of(oid).await?;
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        Ok(self.snapshot()?.login_decision(&refs, scope).right)
    }

    /// A machine named by its VM's ARM id, a device id or a host name, for a user who may log
    /// in to it. A user without a login role gets L6's refusal, the same as for a machine that
    /// does not exist, so the answer says nothing about machines the user may not use.
    pub async fn ssh_target(&self, oid: &str, enabled: bool, machine: &str) -> ArmResult<SshTarget> {
        let machine = machine.trim();
        if machine.parse::<std::net::IpAddr>().is_ok()
            || machine
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::Ipv6Addr>()
                .is_ok()
        {
            return Err(ArmError::new(400, "IpAddressNotAllowed", IP_ADDRESS_TEXT));
        }
        let found = if machine.starts_with('/') {
            let scope = Scope::parse(machine).map_err(|_| {
                ArmError::new(
                    400,
                    "InvalidMachine",
                    format!("'{machine}' is not a VM's resource id."),
                )
            })?;
            self.device_of_vm(&scope)
                .await?
                .map(|(id, host)| (id, host, scope))
        } else {
            self.find_device(machine).await?
        };
        let Some((device_id, hostname, scope)) = found else {
            return Err(no_role());
        };
        let right = self.login_right_of(oid, enabled, &scope).await?;
        if right == LoginRight::Deny {
            return Err(no_role());
        }
        let consented = self.consented(oid, &device_id).await?;
        Ok(SshTarget {
            device_id,
            hostname,
            vm_id: scope.as_str().to_owned(),
            right,
            consented,
        })
    }

    async fn consents(&self, oid: &str) -> ArmResult<(Option<Record>, Consents)> {
        let now = self.dir.clock().now_unix();
        match self.dir.store().get(kinds::LOGIN_CONSENT, oid, now).await? {
            Some(rec) => {
                let mut c: Consents = rec.decode()?;
                c.machines.retain(|(_, at)| now - at < CONSENT_DAYS * 86_400);
                Ok((Some(rec), c))
            }
            None => Ok((None, Consents::default())),
        }
    }

    /// Whether the user allowed logging in to the device within the last 30 days.
    pub async fn consented(&self, oid: &str, device_id: &str) -> ArmResult<bool> {
        let (_, c) = self.consents(oid).await?;
        Ok(c.machines.iter().any(|(d, _)| d.eq_ignore_ascii_case(device_id)))
    }

    /// Records that the user allows logging in to the device (renewing an earlier consent);
    /// the oldest beyond 15 machines is forgotten.
    pub async fn consent(&self, oid: &str, device_id: &str) -> ArmResult<()> {
        let device_id = device_id.to_ascii_lowercase();
        for _ in 0..5 {
            let now = self.dir.clock().now_unix();
            let (rec, mut c) = self.consents(oid).await?;
            c.machines.retain(|(d, _)| *d != device_id);
            c.machines.push((device_id.clone(), now));
            let excess = c.machines.len().saturating_sub(CONSENT_MACHINES);
            c.machines.drain(..excess);
            let data = serde_json::to_value(&c).map_err(|_| ArmError::internal())?;
            let result = match rec {
                Some(mut r) => {
                    r.data = data;
                    self.dir.store().update(r).await.map(|_| ())
                }
                None => self
                    .dir
                    .store()
                    .insert(Record::from_value(kinds::LOGIN_CONSENT, oid, &c)?)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ArmError::new(
            409,
            "Conflict",
            "The consent changed concurrently; retry.",
        ))
    }
}
