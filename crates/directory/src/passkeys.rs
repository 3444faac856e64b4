//! Passkeys on the user object: registered, used (counter and backup state recorded) and removed.
//! The WebAuthn ceremony itself is the token service's; this keeps the credentials.

use crate::model::{PasskeyMethod, User};
use crate::{DirResult, Directory, DirectoryError, kinds};

/// Passkeys per user at most.
pub const MAX_PASSKEYS: usize = 20;

impl Directory {
    /// Adds a passkey (refused past [`MAX_PASSKEYS`] or when the credential is registered already).
    pub async fn add_passkey(&self, user_id: &str, method: PasskeyMethod) -> DirResult<User> {
        let user = self
            .modify::<User, _>(kinds::USER, user_id, |u| {
                if u.passkeys.len() >= MAX_PASSKEYS {
                    return Err(DirectoryError::Invalid(format!(
                        "A user has at most {MAX_PASSKEYS} passkeys; remove one first."
                    )));
                }
                if u.passkeys.iter().any(|p| p.credential_id == method.credential_id) {
                    return Err(DirectoryError::AlreadyExists(
                        "This passkey is registered already.".into(),
                    ));
                }
                u.passkeys.push(method.clone());
                Ok(None)
            })
            .await?;
        Ok(user)
    }

    /// Records a passkey sign-in: the new counter, backup state and time; an updated credential
    /// when the relying-party library changed it.
    pub async fn record_passkey_use(
        &self,
        user_id: &str,
        credential_id: &str,
        sign_count: u32,
        backup_state: bool,
        credential: Option<serde_json::Value>,
    ) -> DirResult<()> {
        let now = self.now();
        self.modify::<User, _>(kinds::USER, user_id, |u| {
            if let Some(p) = u.passkeys.iter_mut().find(|p| p.credential_id == credential_id) {
                p.sign_count = p.sign_count.max(sign_count);
                p.backup_state = backup_state;
                p.last_used_at = Some(now);
                if let Some(c) = &credential {
                    p.credential = c.clone();
                }
            }
            Ok(None)
        })
        .await?;
        Ok(())
    }

    /// Removes a passkey by its method id.
    pub async fn remove_passkey(&self, user_id: &str, method_id: &str) -> DirResult<PasskeyMethod> {
        let mut removed = None;
        self.modify::<User, _>(kinds::USER, user_id, |u| {
            removed = None;
            if let Some(i) = u
                .passkeys
                .iter()
                .position(|p| p.id.eq_ignore_ascii_case(method_id))
            {
                removed = Some(u.passkeys.remove(i));
            }
            Ok(None)
        })
        .await?;
        removed.ok_or_else(|| DirectoryError::NotFound {
            what: "passkey",
            id: method_id.to_owned(),
        })
    }
}
