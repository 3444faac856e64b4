//! What the resource-manager commands (`group`, `role`) share: the subscription a command
//! works in, ARM requests with an `api-version`, and ARM collections (`value` + `nextLink`).

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::Value;
use usher_client::Client;

use crate::cli::SubscriptionArg;
use crate::commands::is_guid;
use crate::config::Session;

/// The api-version of resource-group requests (as az uses).
pub const RESOURCES_API_VERSION: &str = "2021-04-01";

/// The api-version of role definition and role assignment requests (as az uses).
pub const AUTHORIZATION_API_VERSION: &str = "2022-04-01";

/// The error when neither `--subscription` nor the cached sign-in names a subscription.
pub const NO_SUBSCRIPTION: &str = "(SubscriptionNotFound) No subscription found. Run 'usher account show' to check the signed-in account and its subscriptions (sign in again with 'usher login' after being granted access), or pass --subscription ID.";

/// The subscription id a command works in: `--subscription` (an id, or the name of a cached
/// subscription), else the signed-in account's default subscription.
pub fn subscription_id(arg: &SubscriptionArg, session: &Session) -> Result<String> {
    let text = |sub: &Value, key: &str| sub.get(key).and_then(Value::as_str).map(str::to_string);
    match arg.subscription.as_deref().map(str::trim) {
        Some(given) if !given.is_empty() => {
            let cached = session.subscriptions.iter().find(|s| {
                text(s, "id").is_some_and(|id| id.eq_ignore_ascii_case(given))
                    || text(s, "name").is_some_and(|n| n.eq_ignore_ascii_case(given))
            });
            match cached.and_then(|s| text(s, "id")) {
                Some(id) => Ok(id),
                None if is_guid(given) => Ok(given.to_ascii_lowercase()),
                None => Err(anyhow!(
                    "(SubscriptionNotFound) Subscription '{given}' not found. Check the spelling and casing and try again."
                )),
            }
        }
        _ => session
            .subscriptions
            .iter()
            .find(|s| s.get("isDefault").and_then(Value::as_bool) == Some(true))
            .or_else(|| session.subscriptions.first())
            .and_then(|s| text(s, "id"))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| anyhow!(NO_SUBSCRIPTION)),
    }
}

/// `/subscriptions/{id}`.
pub fn subscription_scope(subscription: &str) -> String {
    format!("/subscriptions/{subscription}")
}

/// `/subscriptions/{sub}/resourceGroups/{name}`.
pub fn resource_group_scope(subscription: &str, name: &str) -> String {
    format!(
        "{}/resourceGroups/{}",
        subscription_scope(subscription),
        usher_client::encode_path_segment(name)
    )
}

/// A scope as given on the command line: a leading `/`, no trailing `/`.
pub fn normalize_scope(scope: &str) -> Result<String> {
    let trimmed = scope.trim().trim_end_matches('/');
    if !trimmed.starts_with('/') || trimmed.len() < 2 {
        return Err(anyhow!(
            "(InvalidScope) The scope '{scope}' is not valid: it must start with '/', e.g. /subscriptions/{{id}}/resourceGroups/{{name}}."
        ));
    }
    Ok(trimmed.to_string())
}

/// The subscription id in a scope `/subscriptions/{id}/...`, if it names one.
pub fn subscription_of_scope(scope: &str) -> Option<&str> {
    let mut parts = scope.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some(k), Some(id)) if k.eq_ignore_ascii_case("subscriptions") && !id.is_empty() => Some(id),
        _ => None,
    }
}

/// One ARM request with `api-version` (and any further query pairs).
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    api_version: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> Result<Value> {
    let mut pairs = vec![("api-version", api_version)];
    pairs.extend_from_slice(query);
    Ok(client.send_json(method, path, &pairs, body, &[]).await?)
}

/// GETs an ARM collection and follows `nextLink`, returning the concatenated `value` arrays.
pub async fn list(
    client: &Client,
    path: &str,
    api_version: &str,
    query: &[(&str, &str)],
) -> Result<Vec<Value>> {
    let mut items = Vec::new();
    let mut page = send(client, Method::GET, path, api_version, query, None).await?;
    loop {
        let next = page
            .get("nextLink")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .map(str::to_string);
        match page.get_mut("value").map(Value::take) {
            Some(Value::Array(values)) => items.extend(values),
            _ => {
                return Err(anyhow!(
                    "unexpected response from {path}: no `value` array in {page}"
                ));
            }
        }
        match next {
            // the next link carries its own query, api-version included
            Some(link) => page = client.send_json(Method::GET, &link, &[], None, &[]).await?,
            None => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn session(subs: Vec<Value>) -> Session {
        Session {
            server: "https://127.0.0.1:8443".into(),
            ca_file: None,
            tenant: "contoso.test".into(),
            tenant_id: "t".into(),
            user: "admin@contoso.test".into(),
            client_id: usher_client::CLI_CLIENT_ID.into(),
            access_token: "a".into(),
            refresh_token: None,
            expires_on: 0,
            subscriptions: subs,
        }
    }

    const SUB: &str = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";

    #[test]
    fn subscription_from_option_or_cache() -> Result<()> {
        let arg = |s: Option<&str>| SubscriptionArg {
            subscription: s.map(str::to_string),
        };
        let none = session(vec![]);
        let err = subscription_id(&arg(None), &none).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("(SubscriptionNotFound) No subscription found.")));
        assert_eq!(subscription_id(&arg(Some(SUB)), &none)?, SUB);
        assert!(subscription_id(&arg(Some("Prod")), &none).is_err());

        let cached = session(vec![
            json!({"id": "other", "name": "Other", "isDefault": false}),
            json!({"id": SUB, "name": "Default", "isDefault": true}),
        ]);
        assert_eq!(subscription_id(&arg(None), &cached)?, SUB);
        assert_eq!(subscription_id(&arg(Some("other")), &cached)?, "other");
        assert_eq!(subscription_id(&arg(Some("default")), &cached)?, SUB);
        Ok(())
    }

    #[test]
    fn scopes() -> Result<()> {
        assert_eq!(
            resource_group_scope(SUB, "myResourceGroup"),
            format!("/subscriptions/{SUB}/resourceGroups/myResourceGroup")
        );
        assert_eq!(normalize_scope(" /subscriptions/x/ ")?, "/subscriptions/x");
        assert!(normalize_scope("subscriptions/x").is_err());
        assert!(normalize_scope("/").is_err());
        assert_eq!(
            subscription_of_scope("/subscriptions/abc/resourceGroups/rg"),
            Some("abc")
        );
        assert_eq!(
            subscription_of_scope("/providers/Microsoft.Management/managementGroups/m"),
            None
        );
        Ok(())
    }
}
