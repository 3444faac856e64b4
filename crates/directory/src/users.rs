//! Users (SPEC D2).

use serde::Serialize;
use serde::de::DeserializeOwned;
use usher_core::MfaState;
use usher_store::{Record, StoreError};

use crate::model::{Tenant, User};
use crate::{DirResult, Directory, DirectoryError, kinds};

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// `user@domain`; the domain must be one of the tenant's.
    pub user_principal_name: String,
    /// Display name.
    pub display_name: String,
    /// Mail nickname (defaults to the UPN's local part).
    pub mail_nickname: Option<String>,
    /// Initial password.
    pub password: String,
    /// Whether the password is temporary.
    pub force_change_password_next_sign_in: bool,
    /// Whether the account may sign in.
    pub account_enabled: bool,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Enable or disable.
    pub account_enabled: Option<bool>,
    /// New password (checked against the policy).
    pub password: Option<String>,
    /// Whether the (new or current) password is temporary.
    pub force_change_password_next_sign_in: Option<bool>,
    /// Per-user MFA state.
    pub mfa_state: Option<MfaState>,
}

fn valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-'+".contains(c))
}

impl Directory {
    /// The tenant.
    pub async fn tenant(&self) -> DirResult<Tenant> {
        let list = self.store.list(kinds::TENANT, None, 1, self.now()).await?;
        let rec = list
            .first()
            .ok_or_else(|| DirectoryError::TenantNotFound("(none)".into()))?;
        Ok(rec.decode()?)
    }

    /// Changes the tenant's settings: its password policy and whether public clients may use the
    /// password grant.
    pub async fn update_tenant_settings(
        &self,
        password_policy: Option<usher_core::PasswordPolicy>,
        allow_public_client_flows: Option<bool>,
        session_idle_timeout_secs: Option<u64>,
    ) -> DirResult<Tenant> {
        if session_idle_timeout_secs.is_some_and(|s| s > 7 * 86_400) {
            return Err(DirectoryError::Invalid(
                "sessionIdleTimeoutSeconds must be at most 604800 (a week); 0 turns it off".into(),
            ));
        }
        if let Some(p) = &password_policy {
            if !(8..=256).contains(&p.min_length) {
                return Err(DirectoryError::Invalid(
                    "minLength must be between 8 and 256".into(),
                ));
            }
            if p.max_age_days == Some(0) {
                return Err(DirectoryError::Invalid(
                    "maxAgeDays must be at least 1 (omit it for no expiry)".into(),
                ));
            }
        }
        let tenant = self.tenant().await?;
        self.modify::<Tenant, _>(kinds::TENANT, &tenant.id, |t| {
            if let Some(p) = &password_policy {
                t.password_policy = p.clone();
            }
            if let Some(a) = allow_public_client_flows {
                t.allow_public_client_flows = a;
            }
            if let Some(s) = session_idle_timeout_secs {
                t.session_idle_timeout_secs = (s > 0).then_some(s);
            }
            Ok(None)
        })
        .await
    }

    /// Reads, changes and writes back an object, retrying on concurrent changes.
    pub(crate) async fn modify<T, F>(&self, kind: &str, id: &str, mut change: F) -> DirResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut T) -> DirResult<Option<String>>,
    {
        for _ in 0..20 {
            let rec = self
                .store
                .get(kind, id, self.now())
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    kind: kind.to_owned(),
                    id: id.to_owned(),
                })?;
            let mut value: T = rec.decode()?;
            let key = change(&mut value)?;
            let mut next = rec.clone();
            next.data = serde_json::to_value(&value).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
            if let Some(k) = key {
                next.key = Some(k);
            }
            match self.store.update(next).await {
                Ok(_) => {
                    if kind == kinds::USER || kind == kinds::GROUP || kind == kinds::SERVICE_PRINCIPAL {
                        self.changed();
                    }
                    return Ok(value);
                }
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Contended)
    }

    pub(crate) async fn hash_password(&self, password: &str) -> DirResult<String> {
        self.hashing.hash(password).await
    }

    /// Creates a user.
    pub async fn create_user(&self, new: NewUser) -> DirResult<User> {
        let tenant = self.tenant().await?;
        let upn = new.user_principal_name.trim().to_owned();
        let (local, domain) = upn.split_once('@').ok_or_else(|| {
            DirectoryError::Invalid("userPrincipalName must have the form user@domain".into())
        })?;
        if !valid_local_part(local) {
            return Err(DirectoryError::Invalid(format!(
                "the user name part of `{upn}` may contain only letters, digits and . _ - ' +"
            )));
        }
        if !tenant.domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return Err(DirectoryError::Invalid(format!(
                "the domain portion of the userPrincipalName `{upn}` is invalid: use one of the verified domains of this tenant ({})",
                tenant.domains.join(", ")
            )));
        }
        if new.display_name.trim().is_empty() {
            return Err(DirectoryError::Invalid("displayName must not be empty".into()));
        }
        tenant.password_policy.check(&new.password, &upn)?;
        if self.find_user_by_upn(&upn).await?.is_some() {
            return Err(DirectoryError::AlreadyExists(format!(
                "another object with the same value for property userPrincipalName already exists: `{upn}`"
            )));
        }
        let hash = self.hash_password(&new.password).await?;
        let now = self.now();
        let user = User {
            id: self.new_id(),
            mail_nickname: new.mail_nickname.unwrap_or_else(|| local.to_owned()),
            user_principal_name: upn.clone(),
            display_name: new.display_name,
            account_enabled: new.account_enabled,
            user_type: usher_core::UserType::Member,
            password_hash: Some(hash),
            force_change_password_next_sign_in: new.force_change_password_next_sign_in,
            password_set_at: now,
            mfa_state: MfaState::Disabled,
            totp: None,
            passkeys: vec![],
            directory_roles: vec![],
            refresh_tokens_valid_from: now,
            created_at: now,
        };
        let rec = Record::from_value(kinds::USER, &user.id, &user)?.with_key(upn.to_lowercase());
        match self.store.insert(rec).await {
            Ok(_) => {
                self.changed();
                Ok(user)
            }
            Err(StoreError::Conflict { .. }) => Err(DirectoryError::AlreadyExists(format!(
                "another object with the same value for property userPrincipalName already exists: `{upn}`"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Finds a user by UPN (case-insensitive).
    pub async fn find_user_by_upn(&self, upn: &str) -> DirResult<Option<User>> {
        let rec = self
            .store
            .get_by_key(kinds::USER, &upn.trim().to_lowercase(), self.now())
            .await?;
        rec.map(|r| r.decode().map_err(Into::into)).transpose()
    }

    /// A user by object id or UPN.
    pub async fn get_user(&self, id_or_upn: &str) -> DirResult<User> {
        let found = if id_or_upn.contains('@') {
            self.find_user_by_upn(id_or_upn).await?
        } else {
            let rec = self
                .store
                .get(kinds::USER, &id_or_upn.to_lowercase(), self.now())
                .await?;
            rec.map(|r| r.decode()).transpose()?
        };
        found.ok_or_else(|| DirectoryError::NotFound {
            what: "user",
            id: id_or_upn.to_owned(),
        })
    }

    /// All users, in object-id order.
    pub async fn list_users(&self) -> DirResult<Vec<User>> {
        self.list_all(kinds::USER).await
    }

    /// Every record of a kind, page by page.
    pub(crate) async fn list_all_records(&self, kind: &str) -> DirResult<Vec<usher_store::Record>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(kind, after.as_deref(), 500, self.now()).await?;
            let done = page.len() < 500;
            after = page.last().map(|r| r.id.clone());
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    pub(crate) async fn list_all<T: DeserializeOwned>(&self, kind: &str) -> DirResult<Vec<T>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(kind, after.as_deref(), 500, self.now()).await?;
            let done = page.len() < 500;
            after = page.last().map(|r| r.id.clone());
            for r in page {
                out.push(r.decode()?);
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// Changes a user.
    pub async fn update_user(&self, id_or_upn: &str, patch: UserPatch) -> DirResult<User> {
        let user = self.get_user(id_or_upn).await?;
        let tenant = self.tenant().await?;
        let new_hash = match &patch.password {
            Some(pw) => {
                tenant.password_policy.check(pw, &user.user_principal_name)?;
                Some(self.hash_password(pw).await?)
            }
            None => None,
        };
        if patch.display_name.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(DirectoryError::Invalid("displayName must not be empty".into()));
        }
        let now = self.now();
        let updated = self
            .modify::<User, _>(kinds::USER, &user.id, |u| {
                if let Some(d) = &patch.display_name {
                    u.display_name.clone_from(d);
                }
                if let Some(e) = patch.account_enabled {
                    u.account_enabled = e;
                    if !e {
                        u.refresh_tokens_valid_from = now;
                    }
                }
                if let Some(h) = &new_hash {
                    u.password_hash = Some(h.clone());
                    u.password_set_at = now;
                    u.refresh_tokens_valid_from = now;
                    // A password set by an administrator is temporary unless said otherwise.
                    u.force_change_password_next_sign_in =
                        patch.force_change_password_next_sign_in.unwrap_or(false);
                } else if let Some(f) = patch.force_change_password_next_sign_in {
                    u.force_change_password_next_sign_in = f;
                }
                if let Some(m) = patch.mfa_state {
                    u.mfa_state = m;
                }
                Ok(None)
            })
            .await?;
        if new_hash.is_some() {
            // A new password clears smart lockout.
            self.store.delete(kinds::LOCKOUT, &user.id, None).await?;
        }
        Ok(updated)
    }

    /// Changes a user's own password after verifying the current one has been checked by the
    /// caller (the forced-change page). The new password must differ from the old.
    pub async fn change_own_password(&self, user_id: &str, current: &str, new: &str) -> DirResult<User> {
        let user = self.get_user(user_id).await?;
        if current == new {
            return Err(DirectoryError::Invalid(
                "the new password must differ from the current one".into(),
            ));
        }
        self.tenant()
            .await?
            .password_policy
            .check(new, &user.user_principal_name)?;
        let hash = self.hash_password(new).await?;
        let now = self.now();
        self.modify::<User, _>(kinds::USER, &user.id, |u| {
            u.password_hash = Some(hash.clone());
            u.password_set_at = now;
            u.refresh_tokens_valid_from = now;
            u.force_change_password_next_sign_in = false;
            Ok(None)
        })
        .await
    }

    /// Deletes a user and removes it from every group.
    pub async fn delete_user(&self, id_or_upn: &str) -> DirResult<User> {
        let user = self.get_user(id_or_upn).await?;
        self.remove_from_all_groups(&user.id).await?;
        self.store.delete(kinds::USER, &user.id, None).await?;
        self.store.delete(kinds::LOCKOUT, &user.id, None).await?;
        self.changed();
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_parts() {
        assert!(super::valid_local_part("ann.o'neil+x"));
        assert!(!super::valid_local_part(""));
        assert!(!super::valid_local_part(".ann"));
        assert!(!super::valid_local_part("an n"));
        assert!(!super::valid_local_part("ann;rm"));
    }
}
