//! `usher ad user ...` (Graph `/v1.0/users`).

use anyhow::Result;
use serde_json::{Map, Value, json};
use usher_client::Client;

use crate::cli::{UserCommand, UserCreateArgs, UserListArgs, UserUpdateArgs};
use crate::commands::{eq_filter, item_path, object_id};
use crate::context::Context;

const USERS: &str = "/v1.0/users";

/// Runs a `user` command.
pub async fn run(ctx: &Context, cmd: UserCommand) -> Result<()> {
    let (client, _session) = ctx.api().await?;
    match cmd {
        UserCommand::Create(args) => ctx.print(&client.post(USERS, &create_body(&args)).await?),
        UserCommand::List(args) => ctx.print(&Value::Array(list(&client, &args).await?)),
        UserCommand::Show(args) => ctx.print(&client.get(&item_path(USERS, &args.id)).await?),
        UserCommand::Update(args) => update(&client, &args).await,
        UserCommand::Delete(args) => {
            client.delete(&item_path(USERS, &args.id)).await?;
            Ok(())
        }
        UserCommand::Unlock(args) => {
            let id = resolve(&client, &args.id).await?;
            let answer = client
                .post(
                    &format!("/usher/users/{}/unlock", usher_client::encode_path_segment(&id)),
                    &json!({}),
                )
                .await?;
            ctx.print(&answer)
        }
    }
}

/// The Graph body of `user create`.
pub fn create_body(args: &UserCreateArgs) -> Value {
    let nickname = args.mail_nickname.clone().unwrap_or_else(|| {
        args.user_principal_name
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()
    });
    json!({
        "accountEnabled": args.account_enabled,
        "displayName": args.display_name,
        "userPrincipalName": args.user_principal_name,
        "mailNickname": nickname,
        "passwordProfile": {
            "password": args.password,
            "forceChangePasswordNextSignIn": args.force_change_password_next_sign_in,
        },
    })
}

/// The Graph PATCH body of `user update`, or `None` when only the MFA state changes.
pub fn update_body(args: &UserUpdateArgs) -> Option<Value> {
    let mut body = Map::new();
    if let Some(name) = &args.display_name {
        body.insert("displayName".into(), json!(name));
    }
    if let Some(enabled) = args.account_enabled {
        body.insert("accountEnabled".into(), json!(enabled));
    }
    if args.password.is_some() || args.force_change_password_next_sign_in.is_some() {
        let mut profile = Map::new();
        if let Some(password) = &args.password {
            profile.insert("password".into(), json!(password));
        }
        if let Some(force) = args.force_change_password_next_sign_in {
            profile.insert("forceChangePasswordNextSignIn".into(), json!(force));
        }
        body.insert("passwordProfile".into(), Value::Object(profile));
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

async fn list(client: &Client, args: &UserListArgs) -> Result<Vec<Value>> {
    let mut filters = Vec::new();
    if let Some(upn) = &args.upn {
        filters.push(eq_filter("userPrincipalName", upn));
    }
    if let Some(name) = &args.display_name {
        filters.push(eq_filter("displayName", name));
    }
    if let Some(f) = &args.filter {
        filters.push(f.clone());
    }
    let filter = filters.join(" and ");
    let query: Vec<(&str, &str)> = if filter.is_empty() {
        vec![]
    } else {
        vec![("$filter", filter.as_str())]
    };
    let mut items = client.list(USERS, &query, &[], None).await?;
    let keep = |item: &Value, field: &str, want: &Option<String>| match want {
        Some(w) => item
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(w)),
        None => true,
    };
    items.retain(|i| keep(i, "userPrincipalName", &args.upn) && keep(i, "displayName", &args.display_name));
    Ok(items)
}

/// The object id of a user given by id or UPN.
async fn resolve(client: &Client, id_or_upn: &str) -> Result<String> {
    object_id(&client.get(&item_path(USERS, id_or_upn)).await?)
}

async fn update(client: &Client, args: &UserUpdateArgs) -> Result<()> {
    let id = resolve(client, &args.id).await?;
    if let Some(body) = update_body(args) {
        client.patch(&item_path(USERS, &id), &body).await?;
    }
    if let Some(state) = args.mfa_state {
        client
            .patch(
                &format!(
                    "/beta/users/{}/authentication/requirements",
                    usher_client::encode_path_segment(&id)
                ),
                &json!({"perUserMfaState": state.as_str()}),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::MfaState;

    #[test]
    fn create_body_shape() {
        let args = UserCreateArgs {
            display_name: "Alice".into(),
            user_principal_name: "alice@contoso.test".into(),
            password: "pw".into(),
            force_change_password_next_sign_in: false,
            account_enabled: true,
            mail_nickname: None,
        };
        assert_eq!(
            create_body(&args),
            json!({
                "accountEnabled": true,
                "displayName": "Alice",
                "userPrincipalName": "alice@contoso.test",
                "mailNickname": "alice",
                "passwordProfile": {"password": "pw", "forceChangePasswordNextSignIn": false}
            })
        );
    }

    #[test]
    fn update_body_only_has_given_fields() {
        let mut args = UserUpdateArgs {
            id: "x".into(),
            display_name: None,
            password: None,
            force_change_password_next_sign_in: None,
            account_enabled: Some(false),
            mfa_state: Some(MfaState::Enabled),
        };
        assert_eq!(update_body(&args), Some(json!({"accountEnabled": false})));
        args.account_enabled = None;
        assert_eq!(update_body(&args), None);
        args.password = Some("new".into());
        args.force_change_password_next_sign_in = Some(true);
        assert_eq!(
            update_body(&args),
            Some(json!({"passwordProfile": {"password": "new", "forceChangePasswordNextSignIn": true}}))
        );
    }
}
