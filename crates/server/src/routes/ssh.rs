//! SSH logins (SPEC T7, L1–L4, L8): what `usher ssh` asks before a certificate (the machine, the
//! user's right, consent), the public certificate authorities, and the machine side: host
//! certificates, the PAM password relay and reports of ended sessions.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use usher_arm::{Arm, ArmError};
use usher_directory::SignInEvent;
use usher_directory::model::User;
use usher_idp::relay::{RelayOutcome, RelayRefusal};
use usher_idp::ssh::{Admission, SshGate, VM_SIGN_IN_APP};
use usher_idp::{IdpError, IdpResult};

use super::Caller;
use super::agent::MachineCaller;
use super::arm::arm_error;
use crate::AppState;

/// The resource manager admitting users to machines for certificates.
pub struct Gate(pub Arm);

#[async_trait::async_trait]
impl SshGate for Gate {
    async fn admit(&self, user: &User, device_id: &str) -> IdpResult<Admission> {
        match self.0.ssh_target(&user.id, user.account_enabled, device_id).await {
            Ok(t) if !t.consented => Err(usher_idp::ssh::consent_required(&t.hostname)),
            Ok(t) => Ok(Admission { hostname: t.hostname }),
            Err(e) if e.status == 403 => Err(IdpError::new("invalid_grant", 50105, e.message)),
            Err(e) if e.status == 400 => Err(IdpError::new("invalid_request", 900144, e.message)),
            Err(e) => {
                tracing::error!(error = %e.message, "admission check failed");
                Err(IdpError::server_error())
            }
        }
    }
}

async fn user_of(state: &AppState, caller: &Caller) -> Result<User, Response> {
    if caller.is_app {
        return Err(arm_error(ArmError::new(
            403,
            "UserRequired",
            "SSH logins are for users: sign in as a user (usher login).",
        )));
    }
    state
        .dir()
        .get_user(&caller.oid)
        .await
        .map_err(|e| arm_error(ArmError::from(e)))
}

/// `GET /usher/ssh/target?machine=VM-ID|DEVICE-ID|HOSTNAME`: the machine, if the caller may log
/// in to it (needs only a login role, SPEC L1).
pub async fn target(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(machine) = q.get("machine").filter(|m| !m.trim().is_empty()) else {
        return arm_error(ArmError::new(400, "MissingParameter", "'machine' is required."));
    };
    let user = match user_of(&state, &caller).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match state
        .arm
        .ssh_target(&user.id, user.account_enabled, machine)
        .await
    {
        Ok(t) => Json(t.to_json()).into_response(),
        Err(e) => arm_error(e),
    }
}

/// A consent.
#[derive(Debug, Deserialize)]
pub struct ConsentAsk {
    machine: String,
}

/// `POST /usher/ssh/consent {"machine"}`: the caller allows logging in to the machine (SPEC L3).
pub async fn consent(State(state): State<AppState>, caller: Caller, Json(ask): Json<ConsentAsk>) -> Response {
    let user = match user_of(&state, &caller).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let target = match state
        .arm
        .ssh_target(&user.id, user.account_enabled, &ask.machine)
        .await
    {
        Ok(t) => t,
        Err(e) => return arm_error(e),
    };
    match state.arm.consent(&user.id, &target.device_id).await {
        Ok(()) => Json(json!({"deviceId": target.device_id, "hostname": target.hostname, "consented": true}))
            .into_response(),
        Err(e) => arm_error(e),
    }
}

/// `GET /usher/ssh/ca`: the tenant's certificate authorities (public keys) and the
/// `known_hosts` line clients trust hosts with.
pub async fn authorities(State(state): State<AppState>) -> Response {
    let host = state.idp.ssh().host_ca().to_openssh();
    Json(json!({
        "userCertificateAuthority": state.idp.ssh().user_ca().to_openssh(),
        "hostCertificateAuthority": host,
        "knownHosts": format!("@cert-authority * {host} usher-host-ca-{}", state.idp.tenant().id),
    }))
    .into_response()
}

/// The calling machine's device id, or the refusal for a machine without one.
fn device_of(m: &usher_arm::Machine) -> Result<String, ArmError> {
    m.device_id().map(str::to_owned).ok_or_else(|| {
        ArmError::new(
            409,
            "DeviceNotRegistered",
            "The machine has no device yet: install the login extension first.",
        )
    })
}

/// A host certificate request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostCertAsk {
    public_key: String,
}

/// `POST /usher/agent/hostcert {"publicKey"}`: a host certificate for the machine's device name.
pub async fn host_certificate(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Json(ask): Json<HostCertAsk>,
) -> Response {
    let device = match device_of(&m) {
        Ok(d) => d,
        Err(e) => return arm_error(e),
    };
    let key = match usher_crypto::ssh::SshPublicKey::from_openssh(&ask.public_key) {
        Ok(k) => k,
        Err(e) => {
            return arm_error(ArmError::new(
                400,
                "InvalidPublicKey",
                format!("publicKey must be an OpenSSH public key line: {e}"),
            ));
        }
    };
    match state
        .idp
        .ssh()
        .host_certificate(state.dir(), &key, m.hostname(), &device)
    {
        Ok((cert, until)) => Json(json!({
            "certificate": cert,
            "expiresOn": until,
            "principals": [m.hostname().to_ascii_lowercase()],
            "userCertificateAuthority": state.idp.ssh().user_ca().to_openssh(),
        }))
        .into_response(),
        Err(_) => arm_error(ArmError::internal()),
    }
}

/// A relayed sign-in step.
#[derive(Deserialize)]
pub struct RelayAsk {
    /// The user (first step).
    #[serde(default)]
    user: Option<String>,
    /// The password (first step).
    #[serde(default)]
    password: Option<String>,
    /// The flow handle (second step).
    #[serde(default)]
    flow: Option<String>,
    /// The one-time code (second step).
    #[serde(default)]
    code: Option<String>,
    /// The remote address of the login, as the machine saw it.
    #[serde(default)]
    rhost: Option<String>,
}

fn refusal_text(r: RelayRefusal, change_url: &str) -> String {
    match r {
        RelayRefusal::BadCredentials | RelayRefusal::Disabled => {
            usher_proto::local::BAD_CREDENTIALS_TEXT.to_owned()
        }
        RelayRefusal::Locked => "Your account is temporarily locked to prevent unauthorized use. Try again later, or contact your system administrator.".to_owned(),
        RelayRefusal::MustChange => format!(
            "Your password is temporary or has expired and must be changed before you sign in here. Change it at {change_url}, then sign in again."
        ),
        RelayRefusal::MfaRegistration => "Your account needs a second sign-in method before you can sign in here. Sign in with the usher CLI or the sign-in page to register one, then try again.".to_owned(),
        RelayRefusal::Blocked => usher_proto::local::NO_ROLE_TEXT.to_owned(),
        RelayRefusal::MethodNotAllowed => usher_proto::local::METHOD_NOT_ALLOWED_TEXT.to_owned(),
    }
}

/// `POST /usher/agent/signin`: the PAM password path (SPEC L4), relayed by the machine's agent.
/// The answer is always 200 with `result`: `success` (with the user's right here), `code`
/// (a one-time code is needed: `flow`), or `refused` (`code`, `message`, `reason`).
pub async fn relay(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(ask): Json<RelayAsk>,
) -> Response {
    let device = match device_of(&m) {
        Ok(d) => d,
        Err(e) => return arm_error(e),
    };
    let rhost = ask.rhost.clone().unwrap_or_else(|| peer.ip().to_string());
    let outcome = match (&ask.flow, &ask.code, &ask.user, &ask.password) {
        (Some(flow), Some(code), _, _) => state.idp.relay_code(&device, flow, code, &rhost).await,
        (_, _, Some(user), Some(password)) => {
            let upn = usher_proto::local::canonical_user(user);
            state.idp.relay_password(&device, &upn, password, &rhost).await
        }
        _ => {
            return arm_error(ArmError::new(
                400,
                "MissingParameter",
                "Give 'user' and 'password', or 'flow' and 'code'.",
            ));
        }
    };
    let (outcome, ca) = match outcome {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e.description, "relay failed");
            return arm_error(ArmError::internal());
        }
    };
    let change_url = format!("{}/changepassword", state.idp.public_url());
    let mut event = SignInEvent {
        user_principal_name: ask
            .user
            .clone()
            .map(|u| usher_proto::local::canonical_user(&u))
            .unwrap_or_default(),
        app_id: VM_SIGN_IN_APP.into(),
        app_display_name: "Azure Windows VM Sign-In".into(),
        resource_id: m.vm_id(),
        ip_address: rhost.clone(),
        client_app_used: "machinePasswordRelay".into(),
        conditional_access_status: "notApplied".into(),
        correlation_id: state.dir().new_id(),
        ..Default::default()
    };
    if let Some(report) = &ca {
        report.log_into(&mut event);
    }
    let reply = match outcome {
        RelayOutcome::NeedsCode(user, flow) => {
            event.user_principal_name.clone_from(&user.user_principal_name);
            event.user_id.clone_from(&user.id);
            event.authentication_methods = vec!["password".into()];
            event.error_code = 50076;
            event.failure_reason = "A one-time code is needed (per-user MFA or Conditional Access).".into();
            json!({"result": "code", "flow": flow, "prompt": "One-time code: "})
        }
        RelayOutcome::Refused(user, why) => {
            if let Some(u) = &user {
                event.user_principal_name.clone_from(&u.user_principal_name);
                event.user_id.clone_from(&u.id);
            }
            event.error_code = why.code();
            let message = refusal_text(why, &change_url);
            event.failure_reason.clone_from(&message);
            json!({"result": "refused", "code": why.code(), "reason": format!("{why:?}"), "message": message})
        }
        RelayOutcome::Authenticated(user, amr) => {
            event.user_principal_name.clone_from(&user.user_principal_name);
            event.user_id.clone_from(&user.id);
            event.authentication_methods = amr
                .iter()
                .map(|a| {
                    if a == "pwd" {
                        "password".to_owned()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            match state
                .arm
                .login_right_of(&user.id, user.account_enabled, &m.scope)
                .await
            {
                Ok(usher_authz::LoginRight::Deny) => {
                    event.error_code = 50105;
                    event.failure_reason = usher_proto::local::NO_ROLE_TEXT.into();
                    json!({"result": "refused", "code": 50105, "reason": "NoRole", "message": usher_proto::local::NO_ROLE_TEXT})
                }
                Ok(right) => json!({
                    "result": "success",
                    "userPrincipalName": user.user_principal_name,
                    "right": if right == usher_authz::LoginRight::Admin { "admin" } else { "user" },
                }),
                Err(e) => return arm_error(e),
            }
        }
    };
    if event.error_code == 0
        && let Err(e) = state.dir().note_network(&event.user_id, &rhost).await
    {
        tracing::warn!(error = %e, "could not record the sign-in's network");
    }
    state.dir().log_sign_in(event).await;
    Json(reply).into_response()
}

/// A report of sessions the agent ended.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndedAsk {
    user_principal_name: String,
    #[serde(default)]
    principal_id: Option<String>,
    sessions: u32,
    /// `revoked` (L8, the default) or `idleLock` (L7).
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /usher/agent/sessions/ended`: the agent ended a user's live sessions (SPEC L8); the
/// sign-in log records why, as the directory sees it now.
pub async fn sessions_ended(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Json(ask): Json<EndedAsk>,
) -> Response {
    let user = match ask.principal_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => state.dir().get_user(id).await.ok(),
        None => state
            .dir()
            .find_user_by_upn(&ask.user_principal_name)
            .await
            .ok()
            .flatten(),
    };
    let log = |client_app: &str, code: u32, reason: String| SignInEvent {
        user_principal_name: ask.user_principal_name.clone(),
        user_id: user.as_ref().map(|u| u.id.clone()).unwrap_or_default(),
        app_id: VM_SIGN_IN_APP.into(),
        app_display_name: "Azure Windows VM Sign-In".into(),
        resource_id: m.vm_id(),
        client_app_used: client_app.into(),
        error_code: code,
        failure_reason: reason,
        conditional_access_status: "notApplied".into(),
        correlation_id: state.dir().new_id(),
        ..Default::default()
    };
    if ask.reason.as_deref() == Some("idleLock") {
        let reason = format!(
            "{} idle session(s) on {} were locked and disconnected; reconnecting is a new sign-in.",
            ask.sessions,
            m.hostname()
        );
        state.dir().log_sign_in(log("sessionLock", 0, reason)).await;
        return Json(json!({"recorded": true, "reason": "idleLock"})).into_response();
    }
    let (code, why) = match &user {
        None => (50034, "the account was deleted".to_owned()),
        Some(u) if !u.account_enabled => (50057, "the account was disabled".to_owned()),
        Some(u) => match state.arm.login_right_of(&u.id, true, &m.scope).await {
            Ok(usher_authz::LoginRight::Deny) => {
                (50105, "the login role on this machine was removed".to_owned())
            }
            Ok(_) => (
                0,
                "the machine lost its record of the user's role (the role is back now)".to_owned(),
            ),
            Err(e) => return arm_error(e),
        },
    };
    let reason = format!(
        "{} live session(s) on {} ended because {why}.",
        ask.sessions,
        m.hostname()
    );
    state
        .dir()
        .log_sign_in(log("sessionRevocation", code, reason))
        .await;
    Json(json!({"recorded": true, "reason": why})).into_response()
}

/// `GET /usher/agent/logincheck?user=UPN`: the server's decision for one user on the calling
/// machine now (the agent asks past its staleness bound).
pub async fn machine_login_check(
    State(state): State<AppState>,
    MachineCaller(m): MachineCaller,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(user) = q.get("user") else {
        return arm_error(ArmError::new(400, "MissingParameter", "'user' is required."));
    };
    let upn = usher_proto::local::canonical_user(user);
    let found = match state.dir().find_user_by_upn(&upn).await {
        Ok(u) => u,
        Err(e) => return arm_error(ArmError::from(e)),
    };
    let Some(u) = found else {
        return Json(json!({"userPrincipalName": upn, "decision": "deny", "exists": false})).into_response();
    };
    match state.arm.login_right_of(&u.id, u.account_enabled, &m.scope).await {
        Ok(right) => Json(json!({
            "userPrincipalName": u.user_principal_name,
            "principalId": u.id,
            "exists": true,
            "decision": match right {
                usher_authz::LoginRight::Admin => "admin",
                usher_authz::LoginRight::User => "user",
                usher_authz::LoginRight::Deny => "deny",
            },
        }))
        .into_response(),
        Err(e) => arm_error(e),
    }
}
