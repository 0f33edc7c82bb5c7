//! The operator commands: `migrate` and `admin`, sharing the service's configuration.

use std::fmt;

use serde_json::{Value, json};

use crate::{
    cli::{AdminAction, MigrateAction},
    config::{Config, DatabaseLocation, KeyLocation},
    domain::{
        access_tokens::{self, NewUserAccessToken, TokenRestrictions},
        caller::Caller,
        commands,
        error::Reason,
        users::{self, NewUser, find_user_by_id_or_username},
    },
    server::{ServerError, connect_store, open_context},
};

/// Runs a `migrate` action; returns what to print.
pub async fn migrate(config: &Config, action: &MigrateAction) -> Result<Value, ServerError> {
    let store = connect_store(config).await?;
    let result = match action {
        MigrateAction::Up => store.migrate_up().await.map(|()| json!({"status": "OK"})),
        MigrateAction::Down { steps } => store
            .migrate_down(*steps)
            .await
            .map(|()| json!({"status": "OK", "rolled_back": steps})),
        MigrateAction::Status => store.migration_status().await.map(|list| {
            Value::Array(
                list.into_iter()
                    .map(|m| json!({"name": m.name, "applied": m.applied}))
                    .collect(),
            )
        }),
    };
    store.close().await;
    result.map_err(|e| describe(&e).into())
}

/// The database or the server key an `admin` command needs does not exist where the
/// configuration points (exit code 2): the message names the absolute path looked at and
/// the setting that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSetUp(pub String);

impl fmt::Display for NotSetUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSetUp {}

/// What an `admin` command prints on standard output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One JSON document, to print.
    Json(Value),
    /// Nothing more: the command wrote its JSON lines as it read them (`admin audit`).
    Printed,
}

/// Runs an `admin` action as the local operator; returns the JSON it prints (`Null` for a
/// command that printed JSON lines itself). See [`admin_output`].
pub async fn admin(config: &Config, action: &AdminAction) -> Result<Value, ServerError> {
    admin_output(config, action)
        .await
        .map(|output| match output {
            Output::Json(value) => value,
            Output::Printed => Value::Null,
        })
}

/// Runs an `admin` action as the local operator; returns what to print. Only `init`
/// creates a database or a server key; every other action refuses to run without them.
pub async fn admin_output(config: &Config, action: &AdminAction) -> Result<Output, ServerError> {
    if let AdminAction::Init = action {
        return init(config).await.map(Output::Json);
    }
    if is_operator_call(action) {
        return crate::grpc::operator::run(config, action).await;
    }
    config.require_existing_state().map_err(NotSetUp)?;
    let ctx = open_context(config).await?;
    let caller = Caller::Local;
    let result = match action {
        AdminAction::CreateUser {
            username,
            email,
            roles,
            bot,
            owner,
            id,
        } => {
            let bot_owner_id = match owner {
                Some(owner) => find_user_by_id_or_username(&ctx, owner)
                    .await
                    .map_err(|e| format!("--owner {owner}: {}", describe(&e)))?
                    .id
                    .to_string(),
                None => String::new(),
            };
            let user = users::create_user(
                &ctx,
                &caller,
                NewUser {
                    id: id.clone().unwrap_or_default(),
                    username: username.clone(),
                    email: email.clone(),
                    roles: roles.split_whitespace().map(str::to_owned).collect(),
                    is_bot: *bot,
                    bot_owner_id,
                },
            )
            .await
            .map_err(|e| describe(&e))?;
            json!({
                "id": user.id.as_str(),
                "username": user.username,
                "email": user.email,
                "roles": user.roles.join(" "),
                "is_bot": user.is_bot,
                "bot_owner_id": user.bot_owner_id.map(|o| o.to_string()).unwrap_or_default(),
                "create_at": user.create_at,
            })
        }
        AdminAction::AddTeamMember { team, user, roles } => {
            let member_user = find_user_by_id_or_username(&ctx, user)
                .await
                .map_err(|e| format!("--user {user}: {}", describe(&e)))?;
            let roles: Vec<String> = roles.split_whitespace().map(str::to_owned).collect();
            let member =
                commands::add_team_member(&ctx, &caller, team, member_user.id.as_str(), &roles)
                    .await
                    .map_err(|e| describe(&e))?;
            json!({
                "team_id": member.team_id.as_str(),
                "user_id": member.user_id.as_str(),
                "roles": member.roles.join(" "),
            })
        }
        AdminAction::Init => unreachable!("handled above"),
        AdminAction::CreateToken {
            user,
            description,
            expires_in_days,
            bound_cidrs,
            scopes,
        } => {
            let owner = find_user_by_id_or_username(&ctx, user)
                .await
                .map_err(|e| format!("--user {user}: {}", describe(&e)))?;
            let expires_at = expires_in_days.map(|days| ctx.now() + i64::from(days) * 86_400_000);
            let created = access_tokens::create_user_access_token(
                &ctx,
                &caller,
                NewUserAccessToken {
                    user_id: owner.id.to_string(),
                    description: description.clone(),
                    expires_at,
                    restrictions: TokenRestrictions {
                        bound_cidrs: bound_cidrs.clone(),
                        scopes: scopes.clone(),
                    },
                },
            )
            .await
            .map_err(|e| match &e {
                // The lifetime policy: name the flag that sets the expiry.
                crate::domain::error::Error::InvalidArgument {
                    field: "expires_at",
                    rule,
                    reason,
                } => {
                    let rule = match reason {
                        Reason::ExpiresAtInPast => "must be at least 1",
                        _ => rule.as_str(),
                    };
                    let max = config.maximum_personal_access_token_lifetime_days;
                    let setting = if max > 0 {
                        format!(" (maximum_personal_access_token_lifetime_days = {max})")
                    } else {
                        String::new()
                    };
                    format!("--expires-in-days: {rule}{setting} [{}]", reason.id())
                }
                crate::domain::error::Error::InvalidArgument {
                    field: field @ ("bound_cidrs" | "scopes"),
                    rule,
                    reason,
                } => {
                    let flag = if *field == "scopes" {
                        "--scope"
                    } else {
                        "--bound-cidr"
                    };
                    format!("{flag}: {rule} [{}]", reason.id())
                }
                _ => describe(&e),
            })?;
            let mut token = json!({
                "id": created.token.id.as_str(),
                "token": created.secret.expose(),
                "user_id": created.token.user_id.as_str(),
                "description": created.token.description,
                "is_active": created.token.is_active,
                "expires_at": created.token.expires_at,
            });
            if created.token.bound_cidrs.is_bound() {
                token["bound_cidrs"] = json!(created.token.bound_cidrs.texts());
            }
            if created.token.scopes.is_scoped() {
                token["scopes"] = json!(created.token.scopes.ids());
            }
            token
        }
        _ => unreachable!("operator calls are handled above"),
    };
    ctx.store().clone().close().await;
    Ok(Output::Json(result))
}

/// `admin init`: creates what is missing (the SQLite file and data_dir, the server key
/// file), migrates, and checks the key against the database, exactly as `serve` starts.
async fn init(config: &Config) -> Result<Value, ServerError> {
    let database_existed = match config.database_location() {
        DatabaseLocation::SqliteFile { file, .. } => file.exists(),
        _ => true,
    };
    let key_existed = match config.server_key_location() {
        KeyLocation::File { path, .. } => path.exists(),
        KeyLocation::Inline => true,
    };
    let ctx = open_context(config).await?;
    ctx.store().clone().close().await;
    Ok(json!({
        "status": "OK",
        "database": config.database_location().to_string(),
        "server_key": config.server_key_location().to_string(),
        "created_database": !database_existed,
        "created_server_key": !key_existed,
    }))
}

/// An error for the operator: the message plus its stable id, and the cause when it is
/// ours (the operator owns the machine; no secret is ever part of an error).
fn describe(e: &crate::domain::error::Error) -> String {
    use std::error::Error as _;
    let mut text = format!("{e} [{}]", e.reason().id());
    if let Some(cause) = e.source() {
        text.push_str(&format!(": {cause}"));
    }
    text
}

/// Whether `action` is one of the day-2 commands that go to the running server's local socket
/// when it answers (and to the database directly otherwise): see [`crate::grpc::operator`].
fn is_operator_call(action: &AdminAction) -> bool {
    !matches!(
        action,
        AdminAction::Init
            | AdminAction::CreateUser { .. }
            | AdminAction::AddTeamMember { .. }
            | AdminAction::CreateToken { .. }
    )
}
