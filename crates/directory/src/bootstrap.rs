//! First start (SPEC D1): the tenant, the global administrator, the default subscription with the
//! administrator as Owner, and the built-in applications with their service principals.

use serde_json::json;
use usher_core::{PasswordPolicy, well_known};
use usher_store::Record;
use zeroize::Zeroizing;

use crate::apps::BUILTINS;
use crate::model::Tenant;
use crate::users::NewUser;
use crate::{DirResult, Directory, DirectoryError, kinds};

/// Azure's built-in Owner role definition id.
pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

/// What the operator configured for the first start.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    /// The tenant's first verified domain.
    pub domain: String,
    /// The tenant's display name.
    pub display_name: String,
    /// The administrator's password; generated when `None`.
    pub admin_password: Option<Zeroizing<String>>,
}

/// What the first start did.
#[derive(Debug)]
pub struct BootstrapReport {
    /// The tenant (new or existing).
    pub tenant: Tenant,
    /// Whether this call created the tenant.
    pub created: bool,
    /// The administrator's UPN.
    pub admin_upn: String,
    /// The generated administrator password, when one was generated (to be written to a 0600 file).
    pub generated_password: Option<Zeroizing<String>>,
}

/// A GUID derived from a name (the first 16 bytes of its SHA-256, shaped as a version-8 UUID).
pub fn derived_guid(name: &str) -> String {
    let d = usher_crypto::secret::sha256(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    uuid::Builder::from_custom_bytes(b).into_uuid().to_string()
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Directory {
    /// Creates the tenant and its first objects if the store is empty; otherwise returns the tenant.
    /// Every step is idempotent, and the tenant is marked complete only after the last one, so a
    /// first start interrupted half-way (crash, refused password) is finished by the next start.
    pub async fn bootstrap(&self, options: BootstrapOptions) -> DirResult<BootstrapReport> {
        let existing = match self.tenant().await {
            Ok(t) => Some(t),
            Err(DirectoryError::TenantNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(tenant) = &existing
            && tenant.bootstrap_complete
        {
            let admin_upn = format!("admin@{}", tenant.domains.first().cloned().unwrap_or_default());
            return Ok(BootstrapReport {
                tenant: tenant.clone(),
                created: false,
                admin_upn,
                generated_password: None,
            });
        }
        let domain = match &existing {
            Some(t) => t.domains.first().cloned().unwrap_or_default(),
            None => options.domain.trim().to_lowercase(),
        };
        if !valid_domain(&domain) {
            return Err(DirectoryError::Invalid(format!(
                "`{domain}` is not a valid domain name"
            )));
        }
        let admin_upn = format!("admin@{domain}");
        let (password, generated) = match options.admin_password {
            Some(p) => (p, false),
            None => (Zeroizing::new(format!("Us-{}", self.rng.token(18))), true),
        };
        // Check the password before writing anything.
        PasswordPolicy::default()
            .check(&password, &admin_upn)
            .map_err(|v| {
                DirectoryError::Invalid(format!("USHER_BOOTSTRAP_PASSWORD is not acceptable: {v}"))
            })?;
        let now = self.now();
        for (app_id, _, _, _) in BUILTINS {
            if self.get_application(app_id).await.is_err()
                && let Some(app) = self.builtin_application(app_id)
            {
                let rec = Record::from_value(kinds::APPLICATION, &app.id, &app)?.with_key(app.app_id.clone());
                self.store.insert(rec).await?;
            }
            if self.find_service_principal(app_id).await?.is_none() {
                self.create_service_principal(app_id).await?;
            }
        }
        let tenant = match existing {
            Some(t) => t,
            None => {
                let t = Tenant {
                    id: self.new_id(),
                    display_name: options.display_name,
                    domains: vec![domain.clone()],
                    allow_public_client_flows: true,
                    password_policy: PasswordPolicy::default(),
                    default_subscription_id: self.new_id(),
                    bootstrap_complete: false,
                    created_at: now,
                    session_idle_timeout_secs: None,
                };
                self.store
                    .insert(Record::from_value(kinds::TENANT, &t.id, &t)?)
                    .await?;
                t
            }
        };
        let admin = match self.find_user_by_upn(&admin_upn).await? {
            // A resumed first start: the password reported now must be the one that works.
            Some(a) => {
                self.update_user(
                    &a.id,
                    crate::UserPatch {
                        password: Some(password.to_string()),
                        force_change_password_next_sign_in: Some(false),
                        ..Default::default()
                    },
                )
                .await?
            }
            None => {
                self.create_user(NewUser {
                    user_principal_name: admin_upn.clone(),
                    display_name: "Global Administrator".into(),
                    mail_nickname: Some("admin".into()),
                    password: password.to_string(),
                    force_change_password_next_sign_in: false,
                    account_enabled: true,
                })
                .await?
            }
        };
        self.modify::<crate::model::User, _>(kinds::USER, &admin.id, |u| {
            if !u
                .directory_roles
                .iter()
                .any(|r| r == well_known::GLOBAL_ADMIN_ROLE)
            {
                u.directory_roles.push(well_known::GLOBAL_ADMIN_ROLE.to_owned());
            }
            Ok(None)
        })
        .await?;
        let sub_id = tenant.default_subscription_id.clone();
        if self.store.get("subscription", &sub_id, now).await?.is_none() {
            self.store
                .insert(Record::new(
                    "subscription",
                    &sub_id,
                    json!({"subscriptionId": sub_id, "displayName": "Default subscription", "state": "Enabled", "tenantId": tenant.id}),
                ))
                .await?;
        }
        // The Owner assignment's name is a GUID derived from the subscription, so a resumed start
        // finds it.
        let assignment_id = derived_guid(&format!("owner-assignment:{sub_id}"));
        if self
            .store
            .get("role_assignment", &assignment_id, now)
            .await?
            .is_none()
        {
            self.store
                .insert(Record::new(
                    "role_assignment",
                    &assignment_id,
                    json!({
                        "name": assignment_id,
                        "scope": format!("/subscriptions/{sub_id}"),
                        "roleDefinitionId": format!("/subscriptions/{sub_id}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_ROLE_ID}"),
                        "principalId": admin.id,
                        "principalType": "User",
                        "createdOn": now,
                    }),
                ))
                .await?;
        }
        let tenant = self
            .modify::<Tenant, _>(kinds::TENANT, &tenant.id, |t| {
                t.bootstrap_complete = true;
                Ok(None)
            })
            .await?;
        self.audit(crate::AuditEvent {
            activity: "Bootstrap tenant".into(),
            category: "Core Directory".into(),
            actor_id: "usherd".into(),
            actor_name: "usherd".into(),
            target_id: tenant.id.clone(),
            target_name: domain,
            target_type: "Tenant".into(),
            details: json!({"admin": admin_upn}),
        })
        .await?;
        Ok(BootstrapReport {
            tenant,
            created: true,
            admin_upn,
            generated_password: generated.then_some(password),
        })
    }

    /// Gives a user a directory role (template id) directly.
    pub async fn assign_directory_role(&self, user_id: &str, role: &str) -> DirResult<crate::model::User> {
        let user = self.get_user(user_id).await?;
        self.modify::<crate::model::User, _>(kinds::USER, &user.id, |u| {
            if !u.directory_roles.iter().any(|r| r == role) {
                u.directory_roles.push(role.to_owned());
            }
            Ok(None)
        })
        .await
    }

    /// Whether `user_id` holds one of `roles` directly or through a group.
    pub async fn has_directory_role(&self, user_id: &str, roles: &[&str]) -> DirResult<bool> {
        let user = match self.get_object(user_id).await? {
            crate::model::DirectoryObject::User(u) => u,
            _ => return Ok(false),
        };
        if user.directory_roles.iter().any(|r| roles.contains(&r.as_str())) {
            return Ok(true);
        }
        let groups = self.transitive_member_of(&user.id).await?;
        Ok(groups
            .iter()
            .any(|g| g.directory_roles.iter().any(|r| roles.contains(&r.as_str()))))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn domains() {
        assert!(super::valid_domain("contoso.test"));
        assert!(super::valid_domain("a-b.example.org"));
        assert!(!super::valid_domain("localhost"));
        assert!(!super::valid_domain("-a.test"));
        assert!(!super::valid_domain("a..test"));
        assert!(!super::valid_domain("a b.test"));
    }
}
