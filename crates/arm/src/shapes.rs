//! ARM JSON shapes.

use serde_json::{Value, json};

use crate::{ArmError, ArmResult};
use usher_authz::RoleDefinition;

/// A subscription.
pub(crate) fn subscription(id: &str, display_name: &str, tenant_id: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": tenant_id,
        "displayName": display_name,
        "state": "Enabled",
        "authorizationSource": "RoleBased",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "usher", "spendingLimit": "Off"},
    })
}

/// A role definition as listed at `scope` (a subscription, or `/` for tenant level).
pub(crate) fn role_definition(r: &RoleDefinition, scope: &str, builtin: bool, description: &str) -> Value {
    // Azure names a definition under its subscription whatever the scope it was listed at.
    let segs: Vec<&str> = scope.split('/').skip(1).collect();
    let prefix = match segs.as_slice() {
        [kw, sub, ..] if kw.eq_ignore_ascii_case("subscriptions") => format!("/subscriptions/{sub}"),
        _ => String::new(),
    };
    json!({
        "id": format!("{prefix}/providers/Microsoft.Authorization/roleDefinitions/{}", r.id),
        "name": r.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": r.name,
            "type": if builtin { "BuiltInRole" } else { "CustomRole" },
            "description": description,
            "assignableScopes": r.assignable_scopes,
            "permissions": r.permissions.iter().map(|p| json!({
                "actions": p.actions, "notActions": p.not_actions,
                "dataActions": p.data_actions, "notDataActions": p.not_data_actions,
            })).collect::<Vec<_>>(),
        },
    })
}

/// A request's `location` (lower case), or LocationRequired.
pub(crate) fn required_location(body: &Value) -> ArmResult<String> {
    body.get("location")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            ArmError::new(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            )
        })
}
