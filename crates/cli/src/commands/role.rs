//! `usher role definition list` and `usher role assignment create|list|delete`
//! (ARM `{scope}/providers/Microsoft.Authorization/...`), in the Azure CLI's shapes: the
//! `properties` of definitions and assignments are lifted to the top level.

use std::collections::HashMap;

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::{Map, Value, json};
use usher_client::Client;

use crate::cli::{
    RoleAssignmentCommand, RoleAssignmentCreateArgs, RoleAssignmentDeleteArgs, RoleAssignmentListArgs,
    RoleCommand, RoleDefinitionCommand, RoleDefinitionListArgs, SubscriptionArg,
};
use crate::commands::arm::{
    self, AUTHORIZATION_API_VERSION, normalize_scope, resource_group_scope, subscription_id,
    subscription_of_scope, subscription_scope,
};
use crate::commands::{eq_filter, find_by, is_guid};
use crate::config::Session;
use crate::context::{Context, warn};

const PROVIDER: &str = "providers/Microsoft.Authorization";
const USERS: &str = "/v1.0/users";
const GROUPS: &str = "/v1.0/groups";
const SPS: &str = "/v1.0/servicePrincipals";

/// Runs a `role` command.
pub async fn run(ctx: &Context, cmd: RoleCommand) -> Result<()> {
    let (client, session) = ctx.api().await?;
    match cmd {
        RoleCommand::Definition(RoleDefinitionCommand::List(args)) => {
            let defs = definition_list(&client, &session, &args).await?;
            ctx.print(&Value::Array(defs))
        }
        RoleCommand::Definition(RoleDefinitionCommand::Create(args)) => {
            let text = match args.role_definition.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .map_err(|e| anyhow!("cannot read the role definition from '{file}': {e}"))?,
                None => args.role_definition.clone(),
            };
            let (scope, body) = custom_role_body(&text)?;
            let id = uuid::Uuid::new_v4().to_string();
            let path = format!("{scope}/{PROVIDER}/roleDefinitions/{id}");
            let created = arm::send(
                &client,
                Method::PUT,
                &path,
                AUTHORIZATION_API_VERSION,
                &[],
                Some(&body),
            )
            .await?;
            ctx.print(&flatten_definition(&created))
        }
        RoleCommand::Definition(RoleDefinitionCommand::Delete(args)) => {
            let scope = match &args.scope {
                Some(s) => normalize_scope(s)?,
                None => subscription_scope(&subscription_id(&args.subscription, &session)?),
            };
            let guid = resolve_role(&client, &scope, &args.name).await?;
            let path = format!("{scope}/{PROVIDER}/roleDefinitions/{guid}");
            arm::send(
                &client,
                Method::DELETE,
                &path,
                AUTHORIZATION_API_VERSION,
                &[],
                None,
            )
            .await?;
            Ok(())
        }
        RoleCommand::Assignment(RoleAssignmentCommand::Create(args)) => {
            let created = assignment_create(&client, &session, &args).await?;
            ctx.print(&created)
        }
        RoleCommand::Assignment(RoleAssignmentCommand::List(args)) => {
            let list = assignment_list(&client, &session, &args).await?;
            ctx.print(&Value::Array(list))
        }
        RoleCommand::Assignment(RoleAssignmentCommand::Delete(args)) => {
            assignment_delete(ctx, &client, &session, &args).await
        }
    }
}

/// The scope and ARM body of a custom role given in the Azure CLI's form (keys in any case):
/// `{"Name", "Description", "Actions", "NotActions", "DataActions", "NotDataActions",
/// "AssignableScopes"}`. The role is created at its first assignable scope.
pub fn custom_role_body(text: &str) -> Result<(String, Value)> {
    let given: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("the role definition is not valid JSON: {e}"))?;
    let Some(obj) = given.as_object() else {
        return Err(anyhow!("the role definition must be a JSON object"));
    };
    let lower: HashMap<String, &Value> = obj.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let list = |k: &str| lower.get(k).cloned().cloned().unwrap_or_else(|| json!([]));
    let name = lower
        .get("name")
        .or_else(|| lower.get("rolename"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("the role definition needs a \"Name\""))?;
    let scopes = list("assignablescopes");
    let first = scopes
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            anyhow!("the role definition needs \"AssignableScopes\" (e.g. [\"/subscriptions/{{id}}\"])")
        })?;
    let body = json!({"properties": {
        "roleName": name,
        "description": lower.get("description").and_then(|v| v.as_str()).unwrap_or_default(),
        "type": "CustomRole",
        "permissions": [{
            "actions": list("actions"), "notActions": list("notactions"),
            "dataActions": list("dataactions"), "notDataActions": list("notdataactions"),
        }],
        "assignableScopes": scopes,
    }});
    Ok((normalize_scope(first)?, body))
}

/// A role definition as az prints it: `properties` lifted to the top level, `properties.type`
/// (BuiltInRole / CustomRole) as `roleType`.
pub fn flatten_definition(def: &Value) -> Value {
    flatten(def, "roleType")
}

/// A role assignment as az prints it: `properties` lifted to the top level.
pub fn flatten_assignment(assignment: &Value) -> Value {
    flatten(assignment, "type")
}

/// Lifts `properties` into the object; a `properties.type` becomes `type_key` (the outer
/// `type`, the resource type, is kept).
fn flatten(item: &Value, type_key: &str) -> Value {
    let Some(obj) = item.as_object() else {
        return item.clone();
    };
    let mut out = Map::new();
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (k, v) in props {
            let key = if k == "type" { type_key } else { k.as_str() };
            out.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in obj {
        if k != "properties" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The GUID at the end of a role definition id (or the GUID itself).
pub fn role_guid(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
pub fn role_definition_id(subscription: &str, guid: &str) -> String {
    format!(
        "{}/{PROVIDER}/roleDefinitions/{guid}",
        subscription_scope(subscription)
    )
}

/// Role definitions visible at `scope`, flattened; only `name` (case-insensitively) when given.
async fn definitions(client: &Client, scope: &str, name: Option<&str>) -> Result<Vec<Value>> {
    let path = format!("{scope}/{PROVIDER}/roleDefinitions");
    let filter = name.map(|n| eq_filter("roleName", n));
    let query: Vec<(&str, &str)> = filter.iter().map(|f| ("$filter", f.as_str())).collect();
    let mut defs: Vec<Value> = arm::list(client, &path, AUTHORIZATION_API_VERSION, &query)
        .await?
        .iter()
        .map(flatten_definition)
        .collect();
    if let Some(n) = name {
        defs.retain(|d| {
            d.get("roleName")
                .and_then(Value::as_str)
                .is_some_and(|r| r.eq_ignore_ascii_case(n))
        });
    }
    Ok(defs)
}

async fn definition_list(
    client: &Client,
    session: &Session,
    args: &RoleDefinitionListArgs,
) -> Result<Vec<Value>> {
    let scope = match &args.scope {
        Some(s) => normalize_scope(s)?,
        None => subscription_scope(&subscription_id(&args.subscription, session)?),
    };
    definitions(client, &scope, args.name.as_deref()).await
}

/// The GUID of `--role`: a role definition id or GUID as given, else the role of that name at
/// `scope`.
async fn resolve_role(client: &Client, scope: &str, role: &str) -> Result<String> {
    let role = role.trim();
    if role.contains('/') || is_guid(role) {
        return Ok(role_guid(role));
    }
    let found = definitions(client, scope, Some(role)).await?;
    match found.as_slice() {
        [] => Err(anyhow!(
            "(RoleDefinitionDoesNotExist) Role '{role}' doesn't exist."
        )),
        [one] => one
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| anyhow!("the server's role definition has no name: {one}")),
        many => {
            let ids: Vec<&str> = many
                .iter()
                .filter_map(|d| d.get("id").and_then(Value::as_str))
                .collect();
            Err(anyhow!(
                "More than one role matches the given name '{role}'. Please pick an id from '{ids:?}'."
            ))
        }
    }
}

/// The error az gives for an assignee that is not in the directory.
pub fn principal_not_found(assignee: &str) -> anyhow::Error {
    anyhow!(
        "(PrincipalNotFound) Cannot find user or service principal in graph database for '{assignee}'. If the assignee is an appId, make sure the corresponding service principal is created with 'usher ad sp create --id {assignee}'. To assign a principal of another directory, pass --assignee-object-id."
    )
}

/// The ARM principal type of a Graph object (`@odata.type`, else the fields it has).
fn principal_type_of(object: &Value) -> Option<&'static str> {
    let odata = object
        .get("@odata.type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let odata = odata.trim_start_matches("#microsoft.graph.").to_ascii_lowercase();
    match odata.as_str() {
        "user" => Some("User"),
        "group" => Some("Group"),
        "serviceprincipal" => Some("ServicePrincipal"),
        _ if object.get("userPrincipalName").is_some() => Some("User"),
        _ if object.get("appId").is_some() => Some("ServicePrincipal"),
        _ if object.get("securityEnabled").is_some() => Some("Group"),
        _ => None,
    }
}

/// Exactly one match, or an error naming the ambiguity.
fn one_of(mut items: Vec<Value>, what: &str, name: &str) -> Result<Option<Value>> {
    match items.len() {
        0 => Ok(None),
        1 => Ok(Some(items.remove(0))),
        _ => Err(anyhow!(
            "More than one {what} matches '{name}'. Please use --assignee with the object id instead."
        )),
    }
}

/// Resolves `--assignee` as az does: an object id (looked up to learn its type; an app id
/// finds its service principal), a user principal name, a group's display name, or a service
/// principal's display name. Returns the object id and principal type.
pub async fn resolve_assignee(client: &Client, assignee: &str) -> Result<(String, &'static str)> {
    let assignee = assignee.trim();
    let found = if is_guid(assignee) {
        let objects = client
            .post("/v1.0/directoryObjects/getByIds", &json!({"ids": [assignee]}))
            .await?;
        let by_id = objects
            .get("value")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .cloned();
        match by_id {
            Some(object) => Some(object),
            None => one_of(
                find_by(client, SPS, "appId", assignee).await?,
                "service principal",
                assignee,
            )?,
        }
    } else {
        let mut found = None;
        if assignee.contains('@') {
            found = one_of(
                find_by(client, USERS, "userPrincipalName", assignee).await?,
                "user",
                assignee,
            )?;
        }
        if found.is_none() {
            found = one_of(
                find_by(client, GROUPS, "displayName", assignee).await?,
                "group",
                assignee,
            )?;
        }
        if found.is_none() {
            found = one_of(
                find_by(client, SPS, "displayName", assignee).await?,
                "service principal",
                assignee,
            )?;
        }
        found
    };
    let object = found.ok_or_else(|| principal_not_found(assignee))?;
    let id = object
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| anyhow!("the directory's answer has no object id: {object}"))?;
    let kind = principal_type_of(&object).unwrap_or("User");
    Ok((id, kind))
}

/// The scope of a create/list/delete: `--scope`, else the resource group's, else the
/// subscription's.
fn scope_of(
    scope: Option<&str>,
    resource_group: Option<&str>,
    subscription: &SubscriptionArg,
    session: &Session,
) -> Result<String> {
    match (scope, resource_group) {
        (Some(s), _) => normalize_scope(s),
        (None, Some(rg)) => Ok(resource_group_scope(&subscription_id(subscription, session)?, rg)),
        (None, None) => Ok(subscription_scope(&subscription_id(subscription, session)?)),
    }
}

/// The subscription a scope belongs to (for the role definition id), else the command's.
fn subscription_for(scope: &str, subscription: &SubscriptionArg, session: &Session) -> Result<String> {
    match subscription_of_scope(scope) {
        Some(s) => Ok(s.to_string()),
        None => subscription_id(subscription, session),
    }
}

/// The ARM body of a role assignment.
pub fn assignment_body(role_definition_id: &str, principal_id: &str, principal_type: Option<&str>) -> Value {
    let mut props = json!({
        "roleDefinitionId": role_definition_id,
        "principalId": principal_id,
    });
    if let (Some(t), Some(map)) = (principal_type, props.as_object_mut()) {
        map.insert("principalType".into(), json!(t));
    }
    json!({ "properties": props })
}

async fn assignment_create(
    client: &Client,
    session: &Session,
    args: &RoleAssignmentCreateArgs,
) -> Result<Value> {
    let scope = scope_of(
        args.scope.as_deref(),
        args.resource_group.as_deref(),
        &args.subscription,
        session,
    )?;
    let subscription = subscription_for(&scope, &args.subscription, session)?;
    let role = resolve_role(client, &scope, &args.role).await?;
    let (principal_id, principal_type) = match (&args.assignee_object_id, &args.assignee) {
        (Some(oid), _) => (
            oid.trim().to_ascii_lowercase(),
            args.assignee_principal_type.map(|t| t.as_str()),
        ),
        (None, Some(assignee)) => {
            let (id, kind) = resolve_assignee(client, assignee).await?;
            (id, Some(kind))
        }
        (None, None) => return Err(anyhow!("usage error: --assignee | --assignee-object-id")),
    };
    let name = uuid::Uuid::new_v4().to_string();
    let body = assignment_body(
        &role_definition_id(&subscription, &role),
        &principal_id,
        principal_type,
    );
    let created = arm::send(
        client,
        Method::PUT,
        &format!("{scope}/{PROVIDER}/roleAssignments/{name}"),
        AUTHORIZATION_API_VERSION,
        &[],
        Some(&body),
    )
    .await?;
    Ok(flatten_assignment(&created))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// What `search` looks for.
struct Search<'a> {
    /// `None`: every assignment of the subscription (`--all`).
    scope: Option<String>,
    subscription: String,
    assignee: Option<&'a str>,
    role: Option<&'a str>,
    include_inherited: bool,
}

/// Finds role assignments as az does: at a scope with `atScope()` (then only those exactly at
/// it, or also above it with --include-inherited), or everywhere in the subscription
/// (`principalId eq` when an assignee is given); then by role and principal here.
async fn search(client: &Client, s: &Search<'_>) -> Result<Vec<Value>> {
    let principal = match s.assignee {
        Some(a) => Some(resolve_assignee(client, a).await?.0),
        None => None,
    };
    let lookup_scope = s
        .scope
        .clone()
        .unwrap_or_else(|| subscription_scope(&s.subscription));
    let role = match s.role {
        Some(r) => Some(resolve_role(client, &lookup_scope, r).await?),
        None => None,
    };
    let filter = match (&s.scope, &principal) {
        (Some(_), _) => Some("atScope()".to_string()),
        (None, Some(p)) => Some(eq_filter("principalId", p)),
        (None, None) => None,
    };
    let query: Vec<(&str, &str)> = filter.iter().map(|f| ("$filter", f.as_str())).collect();
    let path = format!("{lookup_scope}/{PROVIDER}/roleAssignments");
    let mut found: Vec<Value> = arm::list(client, &path, AUTHORIZATION_API_VERSION, &query)
        .await?
        .iter()
        .map(flatten_assignment)
        .collect();
    if let Some(scope) = &s.scope {
        let wanted = scope.to_ascii_lowercase();
        found.retain(|a| {
            let at = text(a, "scope").trim_end_matches('/').to_ascii_lowercase();
            at == wanted || (s.include_inherited && (at == "/" || wanted.starts_with(&format!("{at}/"))))
        });
    }
    if let Some(role) = &role {
        found.retain(|a| role_guid(text(a, "roleDefinitionId")) == *role);
    }
    if let Some(p) = &principal {
        found.retain(|a| text(a, "principalId").eq_ignore_ascii_case(p));
    }
    Ok(found)
}

async fn assignment_list(
    client: &Client,
    session: &Session,
    args: &RoleAssignmentListArgs,
) -> Result<Vec<Value>> {
    let scope = if args.all {
        None
    } else {
        Some(scope_of(
            args.scope.as_deref(),
            args.resource_group.as_deref(),
            &args.subscription,
            session,
        )?)
    };
    let subscription = match &scope {
        Some(s) => subscription_for(s, &args.subscription, session)?,
        None => subscription_id(&args.subscription, session)?,
    };
    let mut found = search(
        client,
        &Search {
            scope,
            subscription: subscription.clone(),
            assignee: args.assignee.as_deref(),
            role: args.role.as_deref(),
            include_inherited: args.include_inherited,
        },
    )
    .await?;
    fill_names(client, &subscription, &mut found).await;
    Ok(found)
}

/// Adds `roleDefinitionName` and `principalName` to listed assignments, as az does. Best
/// effort: a lookup that fails leaves the names out.
async fn fill_names(client: &Client, subscription: &str, assignments: &mut [Value]) {
    if assignments.is_empty() {
        return;
    }
    let roles: HashMap<String, String> = definitions(client, &subscription_scope(subscription), None)
        .await
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                text(d, "name").to_ascii_lowercase(),
                text(d, "roleName").to_string(),
            )
        })
        .collect();
    let mut ids: Vec<&str> = assignments.iter().map(|a| text(a, "principalId")).collect();
    ids.sort_unstable();
    ids.dedup();
    let principals: HashMap<String, String> = match client
        .post("/v1.0/directoryObjects/getByIds", &json!({ "ids": ids }))
        .await
    {
        Ok(objects) => objects
            .get("value")
            .and_then(Value::as_array)
            .map(|objects| {
                objects
                    .iter()
                    .map(|o| (text(o, "id").to_ascii_lowercase(), displayable_name(o)))
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => HashMap::new(),
    };
    for a in assignments.iter_mut() {
        let role = roles.get(&role_guid(text(a, "roleDefinitionId"))).cloned();
        let principal = principals
            .get(&text(a, "principalId").to_ascii_lowercase())
            .cloned();
        if let Some(map) = a.as_object_mut() {
            if let Some(r) = role {
                map.insert("roleDefinitionName".into(), json!(r));
            }
            map.insert("principalName".into(), json!(principal.unwrap_or_default()));
        }
    }
}

/// az's name for a principal: the UPN, else the first service principal name, else the
/// display name.
fn displayable_name(object: &Value) -> String {
    let upn = text(object, "userPrincipalName");
    if !upn.is_empty() {
        return upn.to_string();
    }
    object
        .get("servicePrincipalNames")
        .and_then(Value::as_array)
        .and_then(|names| names.first())
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(object, "displayName"))
        .to_string()
}

async fn assignment_delete(
    ctx: &Context,
    client: &Client,
    session: &Session,
    args: &RoleAssignmentDeleteArgs,
) -> Result<()> {
    let ids: Vec<String> = if !args.ids.is_empty() {
        args.ids
            .iter()
            .map(|id| normalize_scope(id))
            .collect::<Result<_>>()?
    } else {
        if args.assignee.is_none()
            && args.role.is_none()
            && args.scope.is_none()
            && args.resource_group.is_none()
        {
            return Err(anyhow!(
                "usage error: give --ids, or at least one of --assignee, --role, --scope and --resource-group."
            ));
        }
        let scope = scope_of(
            args.scope.as_deref(),
            args.resource_group.as_deref(),
            &args.subscription,
            session,
        )?;
        let subscription = subscription_for(&scope, &args.subscription, session)?;
        let found = search(
            client,
            &Search {
                scope: Some(scope),
                subscription,
                assignee: args.assignee.as_deref(),
                role: args.role.as_deref(),
                include_inherited: false,
            },
        )
        .await?;
        if found.is_empty() {
            warn(&ctx.global, "No matched assignments were found to delete");
        }
        found.iter().map(|a| text(a, "id").to_string()).collect()
    };
    for id in ids {
        arm::send(client, Method::DELETE, &id, AUTHORIZATION_API_VERSION, &[], None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_flattened_as_az_prints_them() {
        let def = json!({
            "id": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/fb879df8-f326-4884-b1cf-06f3ad86be52",
            "name": "fb879df8-f326-4884-b1cf-06f3ad86be52",
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": "Virtual Machine User Login", "type": "BuiltInRole",
                "assignableScopes": ["/"], "permissions": [], "description": ""},
        });
        let flat = flatten_definition(&def);
        assert_eq!(flat["roleName"], "Virtual Machine User Login");
        assert_eq!(flat["roleType"], "BuiltInRole");
        assert_eq!(flat["type"], "Microsoft.Authorization/roleDefinitions");
        assert_eq!(flat["name"], "fb879df8-f326-4884-b1cf-06f3ad86be52");
        assert_eq!(flat["assignableScopes"], json!(["/"]));
        assert!(flat.get("properties").is_none());
    }

    #[test]
    fn assignments_are_flattened() {
        let a = json!({"id": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/n",
            "name": "n", "type": "Microsoft.Authorization/roleAssignments",
            "properties": {"principalId": "p", "principalType": "User", "roleDefinitionId": "r", "scope": "/subscriptions/s"}});
        let flat = flatten_assignment(&a);
        assert_eq!(flat["principalType"], "User");
        assert_eq!(flat["type"], "Microsoft.Authorization/roleAssignments");
        assert_eq!(flat["scope"], "/subscriptions/s");
        assert_eq!(flat["name"], "n");
    }

    #[test]
    fn role_ids_and_bodies() {
        assert_eq!(
            role_guid(
                "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/1C0163C0-47e6-4577-8991-ea5c82e286e4"
            ),
            "1c0163c0-47e6-4577-8991-ea5c82e286e4"
        );
        assert_eq!(
            role_definition_id("s", "g"),
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/g"
        );
        assert_eq!(
            assignment_body("r", "p", Some("User")),
            json!({"properties": {"roleDefinitionId": "r", "principalId": "p", "principalType": "User"}})
        );
        assert_eq!(
            assignment_body("r", "p", None),
            json!({"properties": {"roleDefinitionId": "r", "principalId": "p"}})
        );
    }

    #[test]
    fn principal_types_and_names() {
        assert_eq!(
            principal_type_of(&json!({"@odata.type": "#microsoft.graph.group"})),
            Some("Group")
        );
        assert_eq!(
            principal_type_of(&json!({"@odata.type": "#microsoft.graph.servicePrincipal"})),
            Some("ServicePrincipal")
        );
        assert_eq!(
            principal_type_of(&json!({"userPrincipalName": "a@b"})),
            Some("User")
        );
        assert_eq!(
            displayable_name(&json!({"userPrincipalName": "a@b", "displayName": "A"})),
            "a@b"
        );
        assert_eq!(
            displayable_name(&json!({"servicePrincipalNames": ["app"], "displayName": "A"})),
            "app"
        );
        assert_eq!(displayable_name(&json!({"displayName": "G"})), "G");
        let msg = principal_not_found("nobody@fabrikam.test").to_string();
        assert!(msg.starts_with("(PrincipalNotFound) Cannot find user or service principal in graph database for 'nobody@fabrikam.test'."));
        assert!(msg.contains("--assignee-object-id"));
    }
}
