//! Interactive sign-in (SPEC T6): the authorize endpoint's request validation and the step
//! machine behind the HTML pages, shared by the authorization-code and device flows.
//!
//! Steps: password → (forced password change) → (TOTP, or TOTP registration when MFA is required
//! and nothing is registered) → done. Each transaction lives 15 minutes and is bound by the edge
//! to the browser that started it (a cookie).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use usher_directory::{PasswordCheck, SignInEvent, TotpCheck};
use usher_store::Record;

use crate::scopes::ScopeRequest;
use crate::{Idp, IdpError, IdpResult, RequestMeta, kinds};

mod passkey;

pub use passkey::PasskeyView;

/// Lifetime of a sign-in transaction.
const LOGIN_LIFETIME_SECS: i64 = 900;
/// Wrong TOTP codes tolerated in one transaction.
const MAX_TOTP_FAILURES: u32 = 5;

/// A validated authorization request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizeRequest {
    /// Client id.
    pub client_id: String,
    /// Client display name.
    pub client_name: String,
    /// The exact registered redirect URI.
    pub redirect_uri: String,
    /// Opaque client state.
    pub state: Option<String>,
    /// OIDC nonce.
    pub nonce: Option<String>,
    /// Requested scopes.
    pub scope: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// Login hint.
    pub login_hint: Option<String>,
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(IdpError),
    /// Redirect back to the client with this error URL.
    Redirect(String),
}

/// What the sign-in is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum LoginPurpose {
    /// An authorization request.
    Authorize(AuthorizeRequest),
    /// Changing one's password at `/changepassword` (where AADSTS50055 sends users).
    ChangePassword,
    /// Approving a device code (the record id of the device request).
    Device {
        /// Device record id.
        device_id: String,
        /// Client display name.
        client_name: String,
    },
    /// The user's own passkeys page: sign in, then list, add and remove passkeys.
    Passkeys,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum Stage {
    Password,
    ChangePassword,
    Totp,
    RegisterTotp,
    /// Waiting for a passkey assertion.
    Passkey,
    /// Signed in on the passkeys page.
    ManagePasskeys,
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Txn {
    purpose: LoginPurpose,
    stage: Stage,
    user_id: Option<String>,
    upn: Option<String>,
    amr: Vec<String>,
    pending_totp: Option<String>,
    totp_failures: u32,
    /// The running WebAuthn ceremony's state (server-side only).
    #[serde(default)]
    passkey_state: Option<String>,
}

/// Input from a sign-in page.
#[derive(Debug, Clone)]
pub enum LoginInput {
    /// Show the current step.
    Show,
    /// The password page.
    Password {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// The one-time code page.
    Totp {
        /// Code.
        code: String,
    },
    /// The registration page's confirmation code.
    RegisterTotp {
        /// Code.
        code: String,
    },
    /// The forced password change page.
    ChangePassword {
        /// Current (temporary) password.
        current: String,
        /// New password.
        new: String,
    },
    /// "Sign in with a passkey" on the password page.
    PasskeyStart {
        /// User name.
        username: String,
    },
    /// The browser's passkey assertion (JSON).
    PasskeyAssertion {
        /// The `PublicKeyCredential` as JSON.
        response: String,
    },
    /// A new passkey's attestation (JSON) and its name.
    PasskeyRegister {
        /// The `PublicKeyCredential` (attestation) as JSON.
        response: String,
        /// The user's name for it.
        name: String,
    },
    /// Remove a passkey by method id.
    PasskeyRemove {
        /// Method id.
        id: String,
    },
}

/// What the page should show next.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginStep {
    /// Ask for user name and password.
    Password {
        /// Error of the previous attempt.
        error: Option<String>,
        /// Prefilled user name.
        username: Option<String>,
        /// Who is asking.
        client_name: String,
    },
    /// Ask for a new password.
    ChangePassword {
        /// Error of the previous attempt.
        error: Option<String>,
    },
    /// Ask for a TOTP code.
    Totp {
        /// Error of the previous attempt.
        error: Option<String>,
    },
    /// Show a new TOTP secret and ask for a code.
    RegisterTotp {
        /// base32 secret.
        secret: String,
        /// `otpauth://` URI.
        uri: String,
        /// Error of the previous attempt.
        error: Option<String>,
    },
    /// Redirect the browser (authorization response).
    Redirect(String),
    /// The password was changed at `/changepassword`.
    PasswordChanged,
    /// The device sign-in is approved; the device will get its tokens.
    DeviceApproved {
        /// Client display name.
        client_name: String,
    },
    /// The sign-in cannot go on.
    Failed {
        /// Message for the user.
        message: String,
    },
    /// Use a passkey.
    Passkey {
        /// The browser's request options (JSON).
        options: String,
        /// Error of the previous attempt.
        error: Option<String>,
    },
    /// The passkeys page.
    ManagePasskeys(PasskeyView),
}

/// The message for wrong credentials (SPEC L6).
pub const BAD_CREDENTIALS: &str = "Your credentials did not work. Your account or password is incorrect.";

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

impl Idp {
    /// Validates an authorization request (query parameters of `/authorize`).
    pub async fn validate_authorize(
        &self,
        tenant: &str,
        q: &HashMap<String, String>,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        self.resolve_tenant(tenant).map_err(AuthorizeError::Page)?;
        let client_id = q
            .get("client_id")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AuthorizeError::Page(IdpError::missing("client_id")))?;
        let client = self.client(client_id).await.map_err(AuthorizeError::Page)?;
        let redirect_uri = q
            .get("redirect_uri")
            .ok_or_else(|| AuthorizeError::Page(IdpError::missing("redirect_uri")))?;
        if !client.has_redirect_uri(redirect_uri) {
            return Err(AuthorizeError::Page(IdpError::new(
                "invalid_request",
                50011,
                format!(
                    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
                ),
            )));
        }
        let state = q.get("state").cloned();
        let fail = |error: &str, code: u32, desc: &str| {
            let mut params = vec![
                ("error", error.to_owned()),
                ("error_description", format!("AADSTS{code}: {desc}")),
            ];
            if let Some(s) = &state {
                params.push(("state", s.clone()));
            }
            let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            AuthorizeError::Redirect(redirect_with(redirect_uri, &borrowed))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                700054,
                "response_type must be 'code' (the implicit flow is not supported).",
            ));
        }
        let Some(challenge) = q.get("code_challenge").filter(|c| !c.is_empty()) else {
            return Err(fail(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required: send code_challenge with code_challenge_method=S256.",
            ));
        };
        if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err(fail(
                "invalid_request",
                5000751,
                "code_challenge_method must be S256.",
            ));
        }
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(fail(
                "invalid_request",
                5000751,
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters).",
            ));
        }
        if let Some(mode) = q.get("response_mode")
            && mode != "query"
        {
            return Err(fail(
                "invalid_request",
                900144,
                "Only response_mode=query is supported.",
            ));
        }
        let scope = q.get("scope").cloned().unwrap_or_else(|| "openid".into());
        if let Err(e) = ScopeRequest::parse(&scope) {
            return Err(fail(e.error, e.code, &e.description));
        }
        Ok(AuthorizeRequest {
            client_id: client.app_id.clone(),
            client_name: client.display_name.clone(),
            redirect_uri: redirect_uri.clone(),
            state,
            nonce: q.get("nonce").cloned(),
            scope,
            code_challenge: challenge.clone(),
            login_hint: q.get("login_hint").cloned(),
        })
    }

    /// Starts a sign-in transaction; returns its id.
    pub async fn start_login(&self, purpose: LoginPurpose) -> IdpResult<String> {
        let id = self.directory().rng().token(24);
        let txn = Txn {
            purpose,
            stage: Stage::Password,
            user_id: None,
            upn: None,
            amr: vec![],
            pending_totp: None,
            totp_failures: 0,
            passkey_state: None,
        };
        self.directory()
            .store()
            .insert(
                Record::from_value(kinds::LOGIN, &id, &txn)?.with_expiry(self.now() + LOGIN_LIFETIME_SECS),
            )
            .await?;
        Ok(id)
    }

    async fn load_txn(&self, id: &str) -> IdpResult<Option<(Record, Txn)>> {
        let rec = self.directory().store().get(kinds::LOGIN, id, self.now()).await?;
        Ok(match rec {
            Some(r) => {
                let t = r.decode()?;
                Some((r, t))
            }
            None => None,
        })
    }

    async fn save_txn(&self, mut rec: Record, txn: &Txn) -> IdpResult<()> {
        rec.data = serde_json::to_value(txn).map_err(|_| IdpError::server_error())?;
        self.directory().store().update(rec).await.map_err(|e| match e {
            usher_store::StoreError::Conflict { .. } => IdpError::new(
                "invalid_request",
                90033,
                "This sign-in page was submitted twice; start again.",
            ),
            other => other.into(),
        })?;
        Ok(())
    }

    fn client_name(txn: &Txn) -> String {
        match &txn.purpose {
            LoginPurpose::Authorize(a) => a.client_name.clone(),
            LoginPurpose::Device { client_name, .. } => client_name.clone(),
            LoginPurpose::ChangePassword | LoginPurpose::Passkeys => "your account".into(),
        }
    }

    /// Advances a sign-in transaction with a page's input.
    pub async fn login_step(
        &self,
        txn_id: &str,
        input: LoginInput,
        meta: &RequestMeta,
    ) -> IdpResult<LoginStep> {
        let Some((rec, mut txn)) = self.load_txn(txn_id).await? else {
            return Ok(LoginStep::Failed {
                message: "This sign-in has expired. Go back to the application and start again.".into(),
            });
        };
        let stage_view = |txn: &Txn, error: Option<String>| -> LoginStep {
            match txn.stage {
                Stage::Password => LoginStep::Password {
                    error,
                    username: txn.upn.clone().or_else(|| match &txn.purpose {
                        LoginPurpose::Authorize(a) => a.login_hint.clone(),
                        LoginPurpose::Device { .. }
                        | LoginPurpose::ChangePassword
                        | LoginPurpose::Passkeys => None,
                    }),
                    client_name: Self::client_name(txn),
                },
                Stage::ChangePassword => LoginStep::ChangePassword { error },
                Stage::Totp => LoginStep::Totp { error },
                Stage::RegisterTotp | Stage::Passkey | Stage::ManagePasskeys | Stage::Done => {
                    LoginStep::Failed {
                        message: "This sign-in is finished.".into(),
                    }
                }
            }
        };
        match (txn.stage, input) {
            (Stage::RegisterTotp, LoginInput::Show) => self.registration_view(txn_id, &txn, None),
            (Stage::Passkey | Stage::ManagePasskeys, input)
            | (Stage::Password, input @ LoginInput::PasskeyStart { .. }) => {
                self.passkey_step(rec, txn, input, meta).await
            }
            (_, LoginInput::Show) => Ok(stage_view(&txn, None)),
            (Stage::Password, LoginInput::Password { username, password }) => {
                let upn = username
                    .trim()
                    .trim_start_matches("USHER\\")
                    .trim_start_matches("usher\\")
                    .to_owned();
                txn.upn = Some(upn.clone());
                let check = self.directory().check_password(&upn, &password).await?;
                let (user, must_change) = match check {
                    PasswordCheck::Valid(u) => (u, false),
                    PasswordCheck::MustChange(u) => (u, true),
                    PasswordCheck::Invalid => {
                        self.log_interactive(&txn, &upn, "", 50126, BAD_CREDENTIALS, meta)
                            .await;
                        self.save_txn(rec, &txn).await?;
                        return Ok(stage_view(&txn, Some(BAD_CREDENTIALS.into())));
                    }
                    PasswordCheck::Locked { .. } => {
                        let e = IdpError::locked();
                        self.log_interactive(&txn, &upn, "", e.code, &e.description, meta)
                            .await;
                        return Ok(stage_view(&txn, Some(e.description)));
                    }
                    PasswordCheck::Disabled(u) => {
                        let e = IdpError::disabled();
                        self.log_interactive(&txn, &upn, &u.id, e.code, &e.description, meta)
                            .await;
                        return Ok(LoginStep::Failed {
                            message: "Your account has been disabled. Contact your administrator.".into(),
                        });
                    }
                };
                txn.user_id = Some(user.id.clone());
                txn.upn = Some(user.user_principal_name.clone());
                txn.amr = vec!["pwd".into()];
                if must_change || matches!(txn.purpose, LoginPurpose::ChangePassword) {
                    txn.stage = Stage::ChangePassword;
                    self.save_txn(rec, &txn).await?;
                    return Ok(LoginStep::ChangePassword { error: None });
                }
                self.after_first_factor(txn_id, rec, txn, meta).await
            }
            (Stage::ChangePassword, LoginInput::ChangePassword { current, new }) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                let upn = txn.upn.clone().unwrap_or_default();
                match self.directory().check_password(&upn, &current).await? {
                    PasswordCheck::MustChange(_) | PasswordCheck::Valid(_) => {}
                    _ => {
                        return Ok(LoginStep::ChangePassword {
                            error: Some("Your current password is incorrect.".into()),
                        });
                    }
                }
                match self
                    .directory()
                    .change_own_password(&user_id, &current, &new)
                    .await
                {
                    Ok(_) => self.after_first_factor(txn_id, rec, txn, meta).await,
                    Err(usher_directory::DirectoryError::PasswordPolicy(v)) => {
                        Ok(LoginStep::ChangePassword {
                            error: Some(v.to_string()),
                        })
                    }
                    Err(usher_directory::DirectoryError::Invalid(m)) => {
                        Ok(LoginStep::ChangePassword { error: Some(m) })
                    }
                    Err(e) => Err(e.into()),
                }
            }
            (Stage::Totp, LoginInput::Totp { code }) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                match self.directory().verify_totp(&user_id, &code).await? {
                    TotpCheck::Valid => {
                        txn.amr = vec!["pwd".into(), "mfa".into(), "otp".into()];
                        return self.complete(rec, txn, meta).await;
                    }
                    TotpCheck::Locked => {
                        txn.stage = Stage::Done;
                        self.save_txn(rec, &txn).await?;
                        let e = IdpError::locked();
                        let upn = txn.upn.clone().unwrap_or_default();
                        self.log_interactive(&txn, &upn, &user_id, e.code, &e.description, meta)
                            .await;
                        return Ok(LoginStep::Failed {
                            message: e.description,
                        });
                    }
                    TotpCheck::Invalid => {}
                }
                txn.totp_failures += 1;
                if txn.totp_failures >= MAX_TOTP_FAILURES {
                    txn.stage = Stage::Done;
                    self.save_txn(rec, &txn).await?;
                    let upn = txn.upn.clone().unwrap_or_default();
                    self.log_interactive(
                        &txn,
                        &upn,
                        &user_id,
                        50074,
                        "too many wrong verification codes",
                        meta,
                    )
                    .await;
                    return Ok(LoginStep::Failed {
                        message: "Too many wrong codes. Start the sign-in again.".into(),
                    });
                }
                self.save_txn(rec, &txn).await?;
                Ok(LoginStep::Totp {
                    error: Some("That code didn't work. Check the code and try again.".into()),
                })
            }
            (Stage::RegisterTotp, LoginInput::RegisterTotp { code }) => {
                let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
                let sealed = txn.pending_totp.clone().ok_or_else(IdpError::server_error)?;
                let secret = self
                    .directory()
                    .sealing()
                    .open(&sealed, &format!("totp-pending:{txn_id}"))
                    .map_err(|_| IdpError::server_error())?;
                if self.directory().register_totp(&user_id, &secret, &code).await? {
                    txn.amr = vec!["pwd".into(), "mfa".into(), "otp".into()];
                    txn.pending_totp = None;
                    return self.complete(rec, txn, meta).await;
                }
                self.registration_view(
                    txn_id,
                    &txn,
                    Some("That code didn't work. Check the code and try again.".into()),
                )
            }
            (_, _) => Ok(stage_view(&txn, Some("Please complete this step.".into()))),
        }
    }

    fn registration_view(&self, txn_id: &str, txn: &Txn, error: Option<String>) -> IdpResult<LoginStep> {
        let sealed = txn.pending_totp.clone().ok_or_else(IdpError::server_error)?;
        let secret = self
            .directory()
            .sealing()
            .open(&sealed, &format!("totp-pending:{txn_id}"))
            .map_err(|_| IdpError::server_error())?;
        let upn = txn.upn.clone().unwrap_or_default();
        Ok(LoginStep::RegisterTotp {
            secret: usher_crypto::totp::base32(&secret),
            uri: usher_crypto::totp::otpauth_uri("usher", &upn, &secret),
            error,
        })
    }

    async fn after_first_factor(
        &self,
        txn_id: &str,
        rec: Record,
        mut txn: Txn,
        meta: &RequestMeta,
    ) -> IdpResult<LoginStep> {
        let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
        let user = self.directory().get_user(&user_id).await?;
        // Step-up: what Conditional Access asks of the sign-in so far is asked for here (the
        // code for MFA, the passkey for phishing-resistant MFA) rather than refused. Passwordless
        // MFA cannot follow a password: that sign-in is refused later, saying to use a passkey.
        use usher_authz::conditional::{Requirement, Strength};
        let ca = self.interactive_ca(&txn, &user, meta).await?;
        let asks = |wanted: fn(Requirement) -> bool| ca.as_ref().is_some_and(|(r, ..)| r.requires(wanted));
        let ca_wants_mfa = asks(|q| matches!(q, Requirement::Mfa | Requirement::Strength(Strength::Mfa)));
        let ca_wants_passkey = asks(|q| q == Requirement::Strength(Strength::PhishingResistantMfa));
        // On the passkeys page a user who has passkeys proves one before changing them, so a
        // password alone never adds a method that would satisfy stronger policies.
        let manage = matches!(txn.purpose, LoginPurpose::Passkeys);
        if !user.passkeys.is_empty() && (manage || ca_wants_passkey) {
            return self.ask_passkey(rec, txn, &user, None).await;
        }
        // The passkeys page asks for the second factor whenever the user has one.
        let manage_needs_code = matches!(txn.purpose, LoginPurpose::Passkeys) && user.totp.is_some();
        if !user.mfa_state.requires_mfa() && !ca_wants_mfa && !manage_needs_code {
            return self.complete(rec, txn, meta).await;
        }
        if user.totp.is_some() {
            txn.stage = Stage::Totp;
            self.save_txn(rec, &txn).await?;
            return Ok(LoginStep::Totp { error: None });
        }
        let secret = usher_crypto::totp::generate_secret(self.directory().rng().as_ref());
        let sealed = self
            .directory()
            .sealing()
            .seal(
                &secret,
                &format!("totp-pending:{txn_id}"),
                self.directory().rng().as_ref(),
            )
            .map_err(|_| IdpError::server_error())?;
        txn.pending_totp = Some(sealed);
        txn.stage = Stage::RegisterTotp;
        self.save_txn(rec, &txn).await?;
        self.registration_view(txn_id, &txn, None)
    }

    /// Conditional Access for the resource an interactive sign-in is for, with what the
    /// sign-in used so far (`None` for the password-change page, which issues no token).
    async fn interactive_ca(
        &self,
        txn: &Txn,
        user: &usher_directory::model::User,
        meta: &RequestMeta,
    ) -> IdpResult<Option<(crate::conditional::CaReport, String, bool)>> {
        let (scope, client_app) = match &txn.purpose {
            LoginPurpose::Authorize(a) => (a.scope.clone(), usher_authz::conditional::ClientApp::Browser),
            LoginPurpose::Device { device_id, .. } => {
                let Some(rec) = self
                    .directory()
                    .store()
                    .get(kinds::DEVICE_CODE, device_id, self.now())
                    .await?
                else {
                    return Ok(None);
                };
                let d: crate::grants::StoredDevice = rec.decode()?;
                (
                    d.scope,
                    usher_authz::conditional::ClientApp::MobileAppsAndDesktopClients,
                )
            }
            // The passkeys page is usher's own: Conditional Access sees its management app, so
            // blocks and risk rules apply to adding and removing sign-in methods too.
            LoginPurpose::Passkeys => (String::new(), usher_authz::conditional::ClientApp::Browser),
            LoginPurpose::ChangePassword => return Ok(None),
        };
        let resource = self.resolve_resource(&ScopeRequest::parse(&scope)?).await?;
        let name = match &resource {
            crate::scopes::Resource::Api => self.public_url().to_owned(),
            crate::scopes::Resource::App { display_name, .. } => display_name.clone(),
        };
        let ctx = crate::conditional::SignInContext::new(&meta.ip, &meta.user_agent, client_app);
        let report = self
            .evaluate_ca(
                user,
                crate::conditional::app_of(&resource),
                &txn.amr,
                self.now(),
                &ctx,
                None,
            )
            .await?;
        let machine = crate::conditional::app_of(&resource) == usher_core::well_known::VM_SIGN_IN_APP_ID;
        Ok(Some((report, name, machine)))
    }

    async fn complete(&self, rec: Record, mut txn: Txn, meta: &RequestMeta) -> IdpResult<LoginStep> {
        let user_id = txn.user_id.clone().ok_or_else(IdpError::server_error)?;
        let upn = txn.upn.clone().unwrap_or_default();
        if matches!(txn.purpose, LoginPurpose::Passkeys) {
            let user = self.directory().get_user(&user_id).await?;
            if let Some((report, resource, _)) = self.interactive_ca(&txn, &user, meta).await?
                && let Some(e) = report.refusal(&resource)
            {
                self.log_interactive_ca(&txn, &upn, &user_id, e.code, &e.description, meta, Some(&report))
                    .await;
                txn.stage = Stage::Done;
                self.save_txn(rec, &txn).await?;
                return Ok(LoginStep::Failed {
                    message: format!("{} {}", usher_proto::local::METHOD_NOT_ALLOWED_TEXT, e),
                });
            }
            self.log_interactive(&txn, &upn, &user_id, 0, "", meta).await;
            return self.enter_manage(rec, txn, &user, None, None).await;
        }
        txn.stage = Stage::Done;
        self.save_txn(rec, &txn).await?;
        let user = self.directory().get_user(&user_id).await?;
        let ca = self.interactive_ca(&txn, &user, meta).await?;
        if let Some((report, resource, machine)) = &ca {
            if let Some(e) = report.refusal(resource) {
                self.log_interactive_ca(&txn, &upn, &user_id, e.code, &e.description, meta, Some(report))
                    .await;
                // Machine logins get L6's wording; other apps Entra's text alone.
                let message = match (e.code, machine) {
                    (53003, true) => format!("{} {}", usher_proto::local::NO_ROLE_TEXT, e),
                    (53003, false) => e.to_string(),
                    _ => format!("{} {}", usher_proto::local::METHOD_NOT_ALLOWED_TEXT, e),
                };
                return Ok(LoginStep::Failed { message });
            }
            if let Err(e) = self.directory().note_network(&user_id, &meta.ip).await {
                tracing::warn!(error = %e, "could not record the sign-in's network");
            }
        }
        let report = ca.as_ref().map(|(r, ..)| r);
        let now = self.now();
        match &txn.purpose {
            LoginPurpose::Authorize(a) => {
                let code = usher_crypto::secret::generate(self.directory().rng().as_ref());
                let family_id = self.new_family(&user_id, &a.client_id).await?;
                let stored = crate::grants::StoredCodeExport {
                    client_id: a.client_id.clone(),
                    redirect_uri: a.redirect_uri.clone(),
                    code_challenge: a.code_challenge.clone(),
                    user_id: user_id.clone(),
                    scope: a.scope.clone(),
                    nonce: a.nonce.clone(),
                    amr: txn.amr.clone(),
                    auth_time: now,
                    family_id,
                    used: false,
                };
                let rec = Record::from_value(kinds::AUTH_CODE, usher_crypto::secret::digest(&code), &stored)?
                    .with_expiry(now + crate::grants::CODE_LIFETIME);
                self.directory().store().insert(rec).await?;
                self.log_interactive_ca(&txn, &upn, &user_id, 0, "", meta, report)
                    .await;
                let mut params = vec![("code", code.as_str())];
                if let Some(s) = &a.state {
                    params.push(("state", s.as_str()));
                }
                Ok(LoginStep::Redirect(redirect_with(&a.redirect_uri, &params)))
            }
            LoginPurpose::ChangePassword => {
                self.log_interactive_ca(&txn, &upn, &user_id, 0, "", meta, report)
                    .await;
                Ok(LoginStep::PasswordChanged)
            }
            LoginPurpose::Device {
                device_id,
                client_name,
            } => {
                self.approve_device(device_id, &user_id, &txn.amr).await?;
                self.log_interactive_ca(&txn, &upn, &user_id, 0, "", meta, report)
                    .await;
                Ok(LoginStep::DeviceApproved {
                    client_name: client_name.clone(),
                })
            }
            // Handled before the transaction is finished (it stays open for the page).
            LoginPurpose::Passkeys => Ok(LoginStep::Failed {
                message: "This sign-in is finished.".into(),
            }),
        }
    }

    async fn log_interactive(
        &self,
        txn: &Txn,
        upn: &str,
        user_id: &str,
        code: u32,
        reason: &str,
        meta: &RequestMeta,
    ) {
        self.log_interactive_ca(txn, upn, user_id, code, reason, meta, None)
            .await;
    }

    #[allow(clippy::too_many_arguments, reason = "one log entry's fields")]
    async fn log_interactive_ca(
        &self,
        txn: &Txn,
        upn: &str,
        user_id: &str,
        code: u32,
        reason: &str,
        meta: &RequestMeta,
        report: Option<&crate::conditional::CaReport>,
    ) {
        let (app_id, app_name, via) = match &txn.purpose {
            LoginPurpose::Authorize(a) => (a.client_id.clone(), a.client_name.clone(), "Browser"),
            LoginPurpose::Device { client_name, .. } => (String::new(), client_name.clone(), "Device code"),
            LoginPurpose::ChangePassword => (String::new(), "Change password".to_owned(), "Browser"),
            LoginPurpose::Passkeys => (String::new(), "Passkeys".to_owned(), "Browser"),
        };
        let mut event = SignInEvent {
            user_principal_name: upn.to_owned(),
            user_id: user_id.to_owned(),
            app_id,
            app_display_name: app_name,
            resource_id: String::new(),
            ip_address: meta.ip.clone(),
            client_app_used: via.into(),
            authentication_methods: txn.amr.clone(),
            error_code: code,
            failure_reason: reason.to_owned(),
            conditional_access_status: String::new(),
            correlation_id: meta.correlation_id.clone(),
            ..Default::default()
        };
        if let Some(r) = report {
            r.log_into(&mut event);
        }
        self.directory().log_sign_in(event).await;
    }
}
