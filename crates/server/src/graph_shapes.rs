//! Directory objects in Microsoft Graph's JSON shapes.

use serde_json::{Value, json};
use usher_directory::model::{Application, DirectoryObject, Group, ServicePrincipal, User};

/// A user.
pub fn user(u: &User) -> Value {
    json!({
        "id": u.id,
        "userPrincipalName": u.user_principal_name,
        "displayName": u.display_name,
        "mailNickname": u.mail_nickname,
        "mail": Value::Null,
        "accountEnabled": u.account_enabled,
        "userType": format!("{:?}", u.user_type),
        "createdDateTime": usher_core::rfc3339(u.created_at),
        "lastPasswordChangeDateTime": usher_core::rfc3339(u.password_set_at),
        "passwordPolicies": "None",
        "passwordProfile": {"forceChangePasswordNextSignIn": u.force_change_password_next_sign_in},
    })
}

/// A group.
pub fn group(g: &Group) -> Value {
    json!({
        "id": g.id,
        "displayName": g.display_name,
        "mailNickname": g.mail_nickname,
        "description": g.description,
        "securityEnabled": g.security_enabled,
        "mailEnabled": false,
        "groupTypes": [],
        "createdDateTime": usher_core::rfc3339(g.created_at),
    })
}

/// An application (secrets never, hints only).
pub fn application(a: &Application) -> Value {
    json!({
        "id": a.id,
        "appId": a.app_id,
        "displayName": a.display_name,
        "identifierUris": a.identifier_uris,
        "isFallbackPublicClient": a.is_fallback_public_client,
        "web": {"redirectUris": a.web_redirect_uris},
        "publicClient": {"redirectUris": a.public_client_redirect_uris},
        "signInAudience": "AzureADMyOrg",
        "createdDateTime": usher_core::rfc3339(a.created_at),
        "passwordCredentials": a.password_credentials.iter().map(|c| json!({
            "keyId": c.key_id, "displayName": c.display_name, "hint": c.hint,
            "startDateTime": usher_core::rfc3339(c.start), "endDateTime": usher_core::rfc3339(c.end), "secretText": Value::Null,
        })).collect::<Vec<_>>(),
        "keyCredentials": a.key_credentials.iter().map(|k| json!({
            "keyId": k.key_id, "displayName": k.display_name, "type": "Jwk", "usage": "Verify",
            "customKeyIdentifier": k.jwk.kid,
        })).collect::<Vec<_>>(),
    })
}

/// A service principal.
pub fn service_principal(s: &ServicePrincipal) -> Value {
    json!({
        "id": s.id,
        "appId": s.app_id,
        "displayName": s.display_name,
        "appDisplayName": s.display_name,
        "servicePrincipalType": s.service_principal_type,
        "servicePrincipalNames": s.service_principal_names,
        "alternativeNames": s.alternative_names,
        "accountEnabled": s.account_enabled,
    })
}

/// Any directory object; in mixed collections Graph names each object's type.
pub fn object(o: &DirectoryObject) -> Value {
    let (mut v, t) = match o {
        DirectoryObject::User(u) => (user(u), "#microsoft.graph.user"),
        DirectoryObject::Group(g) => (group(g), "#microsoft.graph.group"),
        DirectoryObject::ServicePrincipal(s) => (service_principal(s), "#microsoft.graph.servicePrincipal"),
    };
    if let Some(m) = v.as_object_mut() {
        m.insert("@odata.type".into(), Value::String(t.into()));
    }
    v
}
