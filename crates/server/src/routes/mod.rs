//! The router: every path of the one origin.

mod agent;
mod arm;
mod auth;
mod conditional;
mod graph;
mod identity;
mod methods;
mod ops;
pub(crate) mod ssh;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use arm::normalize_path;
pub use auth::{Caller, TokenCache, UserCaller};

/// The whole application.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/usher/keys/rotate", post(ops::rotate_keys))
        .route("/usher/users/{id}/unlock", post(graph::unlock_user))
        .route(
            "/usher/tenant",
            get(graph::get_tenant).patch(graph::update_tenant),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(identity::discovery),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(identity::jwks))
        .route("/{tenant}/oauth2/v2.0/authorize", get(identity::authorize))
        .route("/{tenant}/oauth2/v2.0/token", post(identity::token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(identity::devicecode))
        .route("/{tenant}/login", post(identity::login_post))
        .route(
            "/devicelogin",
            get(identity::devicelogin_get).post(identity::devicelogin_post),
        )
        .route("/changepassword", get(identity::changepassword_get))
        .route("/passkeys", get(identity::passkeys_get))
        .route("/static/passkey.js", get(identity::passkey_js))
        .route("/common/userrealm/{upn}", get(identity::userrealm))
        .route("/v1.0/me", get(graph::me))
        .route("/v1.0/me/authentication/fido2Methods", get(methods::my_passkeys))
        .route(
            "/v1.0/me/authentication/fido2Methods/{method}",
            axum::routing::delete(methods::delete_my_passkey),
        )
        .route(
            "/v1.0/users/{id}/authentication/fido2Methods",
            get(methods::user_passkeys),
        )
        .route(
            "/v1.0/users/{id}/authentication/fido2Methods/{method}",
            axum::routing::delete(methods::delete_user_passkey),
        )
        .route("/v1.0/users", get(graph::list_users).post(graph::create_user))
        .route(
            "/v1.0/users/{id}",
            get(graph::get_user)
                .patch(graph::update_user)
                .delete(graph::delete_user),
        )
        .route("/v1.0/users/{id}/memberOf", get(graph::user_member_of))
        .route(
            "/v1.0/users/{id}/transitiveMemberOf",
            get(graph::user_transitive_member_of),
        )
        .route(
            "/beta/users/{id}/authentication/requirements",
            get(graph::get_mfa).patch(graph::set_mfa),
        )
        .route("/v1.0/groups", get(graph::list_groups).post(graph::create_group))
        .route(
            "/v1.0/groups/{id}",
            get(graph::get_group).delete(graph::delete_group),
        )
        .route("/v1.0/groups/{id}/members", get(graph::group_members))
        .route(
            "/v1.0/groups/{id}/transitiveMembers",
            get(graph::group_transitive_members),
        )
        .route("/v1.0/groups/{id}/members/$ref", post(graph::add_member))
        .route(
            "/v1.0/groups/{id}/members/{member}/$ref",
            axum::routing::delete(graph::remove_member),
        )
        .route(
            "/v1.0/applications",
            get(graph::list_apps).post(graph::create_app),
        )
        .route(
            "/v1.0/applications/{id}",
            get(graph::get_app).delete(graph::delete_app),
        )
        .route("/v1.0/applications/{id}/addPassword", post(graph::add_password))
        .route("/v1.0/applications/{id}/addKey", post(graph::add_key))
        .route(
            "/v1.0/servicePrincipals",
            get(graph::list_sps).post(graph::create_sp),
        )
        .route(
            "/v1.0/servicePrincipals/{id}",
            get(graph::get_sp).delete(graph::delete_sp),
        )
        .route("/v1.0/directoryObjects/getByIds", post(graph::get_by_ids))
        .route("/v1.0/auditLogs/signIns", get(graph::sign_ins))
        .route(
            "/v1.0/identity/conditionalAccess/policies",
            get(conditional::list_policies).post(conditional::create_policy),
        )
        .route(
            "/v1.0/identity/conditionalAccess/policies/{id}",
            get(conditional::get_policy)
                .patch(conditional::update_policy)
                .delete(conditional::delete_policy),
        )
        .route(
            "/v1.0/identity/conditionalAccess/namedLocations",
            get(conditional::list_locations).post(conditional::create_location),
        )
        .route(
            "/v1.0/identity/conditionalAccess/namedLocations/{id}",
            get(conditional::get_location).delete(conditional::delete_location),
        )
        .route(
            "/v1.0/identity/conditionalAccess/authenticationStrength/policies",
            get(conditional::strengths),
        )
        .route(
            "/v1.0/identity/conditionalAccess/evaluate",
            post(conditional::what_if),
        )
        .route(
            "/v1.0/identityProtection/riskyUsers",
            get(conditional::risky_users),
        )
        .route(
            "/v1.0/identityProtection/riskyUsers/confirmCompromised",
            post(conditional::confirm_compromised),
        )
        .route(
            "/v1.0/identityProtection/riskyUsers/dismiss",
            post(conditional::dismiss),
        )
        .route("/v1.0/auditLogs/directoryAudits", get(graph::directory_audits))
        .route("/tenants", get(arm::tenants))
        .route("/metadata/endpoints", get(arm::metadata_endpoints))
        .route("/usher/loginCheck", get(arm::login_check))
        .route("/usher/endpoints", get(agent::endpoints))
        .route("/usher/agent", get(agent::bare))
        .route("/usher/agent/join", post(agent::join))
        .route("/usher/agent/config", get(agent::config))
        .route("/usher/agent/extensions", get(agent::extensions))
        .route(
            "/usher/agent/extensions/{name}/status",
            post(agent::extension_status),
        )
        .route("/usher/agent/token", post(agent::token))
        .route("/usher/agent/logins", get(agent::logins))
        .route("/usher/agent/logincheck", get(ssh::machine_login_check))
        .route("/usher/agent/hostcert", post(ssh::host_certificate))
        .route("/usher/agent/signin", post(ssh::relay))
        .route("/usher/agent/sessions/ended", post(ssh::sessions_ended))
        .route("/usher/ssh/target", get(ssh::target))
        .route("/usher/ssh/consent", post(ssh::consent))
        .route("/usher/ssh/ca", get(ssh::authorities))
        .route(
            "/usher/agent/device",
            get(agent::bare)
                .post(agent::register_device)
                .delete(agent::unregister_device),
        )
        .route("/v1.0/devices", get(arm::list_devices))
        .route("/v1.0/devices/{id}", axum::routing::delete(arm::delete_device))
        .route("/usher/machineLogins", get(arm::machine_logins))
        .route("/subscriptions", axum::routing::any(arm::dispatch))
        .route("/subscriptions/{*rest}", axum::routing::any(arm::dispatch))
        .route("/providers/{*rest}", axum::routing::any(arm::dispatch_providers))
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024))
        .with_state(state)
}
