//! The passkey steps of the sign-in pages: "sign in with a passkey" instead of the password,
//! the passkey asked for as step-up when Conditional Access wants a strength only a passkey
//! gives, and the user's own passkeys page (`/passkeys`: list, add, remove).

use usher_directory::AuditEvent;
use usher_directory::model::User;
use usher_store::Record;

use super::{LoginInput, LoginPurpose, LoginStep, Stage, Txn};
use crate::{Idp, IdpError, IdpResult, RequestMeta};

/// Wrong passkey answers allowed in one sign-in.
const MAX_PASSKEY_FAILURES: u32 = 5;

/// A passkey as the passkeys page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyItem {
    /// Method id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Registered (RFC 3339).
    pub created: String,
    /// Last used (RFC 3339), if ever.
    pub last_used: Option<String>,
    /// Signature counter.
    pub sign_count: u32,
    /// Backed up (synced).
    pub backed_up: bool,
}

/// The passkeys page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyView {
    /// The user.
    pub upn: String,
    /// Their passkeys.
    pub passkeys: Vec<PasskeyItem>,
    /// Options to register one more (JSON); `None` when passkeys are unavailable here.
    pub options: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// What was done.
    pub notice: Option<String>,
}

fn no_passkey_text() -> String {
    "No passkey is registered for this account. Sign in with your password, then add one at /passkeys.".into()
}

impl Idp {
    /// Asks the browser for a passkey of `user` (a fresh challenge each time).
    pub(super) async fn ask_passkey(
        &self,
        rec: Record,
        mut txn: Txn,
        user: &User,
        error: Option<String>,
    ) -> IdpResult<LoginStep> {
        let Some((options, state)) = self.start_passkey_authentication(user)? else {
            txn.stage = Stage::Done;
            self.save_txn(rec, &txn).await?;
            return Ok(LoginStep::Failed {
                message: format!(
                    "{} {}",
                    usher_proto::local::METHOD_NOT_ALLOWED_TEXT,
                    no_passkey_text()
                ),
            });
        };
        txn.passkey_state = Some(state);
        txn.stage = Stage::Passkey;
        self.save_txn(rec, &txn).await?;
        Ok(LoginStep::Passkey { options, error })
    }

    /// Shows the passkeys page, with a fresh registration challenge.
    pub(super) async fn enter_manage(
        &self,
        rec: Record,
        mut txn: Txn,
        user: &User,
        error: Option<String>,
        notice: Option<String>,
    ) -> IdpResult<LoginStep> {
        let (options, error) = if self.passkeys_enabled() {
            let (options, state) = self.start_passkey_registration(user)?;
            txn.passkey_state = Some(state);
            (Some(options), error)
        } else {
            txn.passkey_state = None;
            (
                None,
                error.or_else(|| {
                    Some(
                        "Passkeys need this server to be published under a domain name, not an IP address."
                            .into(),
                    )
                }),
            )
        };
        txn.stage = Stage::ManagePasskeys;
        self.save_txn(rec, &txn).await?;
        let passkeys = user
            .passkeys
            .iter()
            .map(|p| PasskeyItem {
                id: p.id.clone(),
                name: p.display_name.clone(),
                created: usher_core::rfc3339(p.created_at),
                last_used: p.last_used_at.map(usher_core::rfc3339),
                sign_count: p.sign_count,
                backed_up: p.backup_state,
            })
            .collect();
        Ok(LoginStep::ManagePasskeys(PasskeyView {
            upn: user.user_principal_name.clone(),
            passkeys,
            options,
            error,
            notice,
        }))
    }

    async fn audit_security_info(&self, user: &User, activity: &str, name: &str) {
        let event = AuditEvent {
            activity: activity.into(),
            category: "UserManagement".into(),
            actor_id: user.id.clone(),
            actor_name: user.user_principal_name.clone(),
            target_id: user.id.clone(),
            target_name: user.user_principal_name.clone(),
            target_type: "User".into(),
            details: serde_json::json!({"method": "passkey", "displayName": name}),
        };
        if let Err(e) = self.directory().audit(event).await {
            tracing::error!(error = %e, "cannot audit a security-info change");
        }
    }

    /// The passkey inputs of the sign-in pages.
    pub(super) async fn passkey_step(
        &self,
        rec: Record,
        mut txn: Txn,
        input: LoginInput,
        meta: &RequestMeta,
    ) -> IdpResult<LoginStep> {
        match (txn.stage, input) {
            (Stage::Password, LoginInput::PasskeyStart { username }) => {
                let upn = username
                    .trim()
                    .trim_start_matches("USHER\\")
                    .trim_start_matches("usher\\")
                    .to_owned();
                let again = |error: String| LoginStep::Password {
                    error: Some(error),
                    username: Some(upn.clone()),
                    client_name: Self::client_name(&txn),
                };
                if matches!(txn.purpose, LoginPurpose::ChangePassword) {
                    return Ok(again("Changing a password needs the current password.".into()));
                }
                if !self.passkeys_enabled() {
                    return Ok(again(
                        "Passkeys need this server to be published under a domain name.".into(),
                    ));
                }
                let user = match self.directory().find_user_by_upn(&upn).await? {
                    Some(u) if !u.passkeys.is_empty() => u,
                    _ => return Ok(again(no_passkey_text())),
                };
                if !user.account_enabled {
                    return Ok(LoginStep::Failed {
                        message: "Your account has been disabled. Contact your administrator.".into(),
                    });
                }
                txn.user_id = Some(user.id.clone());
                txn.upn = Some(user.user_principal_name.clone());
                txn.amr = vec![];
                self.ask_passkey(rec, txn, &user, None).await
            }
            (Stage::Passkey, LoginInput::PasskeyAssertion { response }) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                let user = self.directory().get_user(&user_id).await?;
                let state = txn.passkey_state.take().ok_or_else(IdpError::server_error)?;
                match self.finish_passkey_authentication(&user, &response, &state).await {
                    Ok(()) => {
                        if !user.account_enabled {
                            return Ok(LoginStep::Failed {
                                message: "Your account has been disabled. Contact your administrator.".into(),
                            });
                        }
                        let mut amr: Vec<String> = if txn.amr.iter().any(|a| a == "pwd") {
                            vec!["pwd".into()]
                        } else {
                            vec![]
                        };
                        amr.extend(crate::passkeys::PASSKEY_AMR.iter().map(|s| (*s).to_owned()));
                        txn.amr = amr;
                        self.complete(rec, txn, meta).await
                    }
                    Err(e) if e.error == "server_error" => Err(e),
                    Err(e) => {
                        let upn = txn.upn.clone().unwrap_or_default();
                        self.log_interactive(&txn, &upn, &user_id, e.code, &e.description, meta)
                            .await;
                        txn.totp_failures += 1;
                        if txn.totp_failures >= MAX_PASSKEY_FAILURES {
                            txn.stage = Stage::Done;
                            self.save_txn(rec, &txn).await?;
                            return Ok(LoginStep::Failed {
                                message: "Too many failed passkey attempts. Start the sign-in again.".into(),
                            });
                        }
                        self.ask_passkey(rec, txn, &user, Some(e.description)).await
                    }
                }
            }
            (Stage::Passkey, input) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                let user = self.directory().get_user(&user_id).await?;
                let error =
                    (!matches!(input, LoginInput::Show)).then(|| "Please complete this step.".to_owned());
                self.ask_passkey(rec, txn, &user, error).await
            }
            (Stage::ManagePasskeys, input) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                let user = self.directory().get_user(&user_id).await?;
                match input {
                    LoginInput::PasskeyRegister { response, name } => {
                        let state = txn.passkey_state.take().ok_or_else(IdpError::server_error)?;
                        match self
                            .finish_passkey_registration(&user, &response, &state, &name)
                            .await
                        {
                            Ok(m) => {
                                self.audit_security_info(
                                    &user,
                                    "User registered security info",
                                    &m.display_name,
                                )
                                .await;
                                let user = self.directory().get_user(&user_id).await?;
                                self.enter_manage(
                                    rec,
                                    txn,
                                    &user,
                                    None,
                                    Some(format!("Passkey '{}' added.", m.display_name)),
                                )
                                .await
                            }
                            Err(e) if e.error == "server_error" => Err(e),
                            Err(e) => {
                                self.enter_manage(rec, txn, &user, Some(e.description), None)
                                    .await
                            }
                        }
                    }
                    LoginInput::PasskeyRemove { id } => match self
                        .directory()
                        .remove_passkey(&user_id, &id)
                        .await
                    {
                        Ok(m) => {
                            self.audit_security_info(&user, "User deleted security info", &m.display_name)
                                .await;
                            let user = self.directory().get_user(&user_id).await?;
                            self.enter_manage(
                                rec,
                                txn,
                                &user,
                                None,
                                Some(format!("Passkey '{}' removed.", m.display_name)),
                            )
                            .await
                        }
                        Err(usher_directory::DirectoryError::NotFound { .. }) => {
                            self.enter_manage(rec, txn, &user, Some("No such passkey.".into()), None)
                                .await
                        }
                        Err(e) => Err(e.into()),
                    },
                    _ => self.enter_manage(rec, txn, &user, None, None).await,
                }
            }
            (_, _) => Ok(LoginStep::Failed {
                message: "This sign-in is finished.".into(),
            }),
        }
    }
}
