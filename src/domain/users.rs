//! The user directory that internal services keep in sync: create, change roles,
//! (de)activate; and the caller's own record.

use serde_json::json;
use tracing::info;

use super::model::{TimeWrite, UserActivationChange, UserRolesChange};
use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::UserId,
    lifecycle::{Action, NewRecord},
    model::{Revocation, User},
    permissions::{Permission, SYSTEM_USER},
    text::require_no_nul,
};

/// Longest username (Mattermost's `USER_NAME_MAX_LENGTH`).
pub const MAX_USERNAME_CHARS: usize = 64;
/// Longest e-mail address.
pub const MAX_EMAIL_CHARS: usize = 128;

/// What CreateUser asks for.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Empty: generate.
    pub id: String,
    pub username: String,
    pub email: String,
    /// Empty: `["system_user"]`.
    pub roles: Vec<String>,
    pub is_bot: bool,
    /// Empty: none.
    pub bot_owner_id: String,
}

/// Creates a user or bot.
pub async fn create_user(ctx: &Context, caller: &Caller, request: NewUser) -> Result<User> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let id = if request.id.is_empty() {
        UserId::generate()
    } else {
        UserId::parse(&request.id, "id", Reason::InvalidBodyParam)?
    };
    let username = validate_username(&request.username)?;
    require_no_nul("email", &request.email)?;
    let email = request.email.trim().to_lowercase();
    if !email.is_empty()
        && (email.len() > MAX_EMAIL_CHARS
            || !email.contains('@')
            || email.starts_with('@')
            || email.ends_with('@'))
    {
        return Err(Error::invalid(
            "email",
            Reason::InvalidEmail,
            format!(
                "must be an address like name@example.com, at most {MAX_EMAIL_CHARS} characters"
            ),
        ));
    }
    let roles = if request.roles.is_empty() {
        vec![SYSTEM_USER.to_owned()]
    } else {
        validate_roles(ctx, &request.roles)?
    };
    let bot_owner_id = match (request.is_bot, request.bot_owner_id.as_str()) {
        (_, "") => None,
        (false, _) => {
            return Err(Error::invalid(
                "bot_owner_id",
                Reason::InvalidBotOwner,
                "must be empty unless is_bot is true",
            ));
        }
        (true, owner) => {
            let owner_id = UserId::parse(owner, "bot_owner_id", Reason::InvalidBotOwner)?;
            match ctx.store().find_user(&owner_id).await? {
                Some(owner) if !owner.is_bot => Some(owner_id),
                Some(_) => {
                    return Err(Error::invalid(
                        "bot_owner_id",
                        Reason::InvalidBotOwner,
                        "must be a user, not a bot",
                    ));
                }
                None => {
                    return Err(Error::invalid(
                        "bot_owner_id",
                        Reason::InvalidBotOwner,
                        "must be the id of an existing user",
                    ));
                }
            }
        }
    };
    if ctx.store().find_user(&id).await?.is_some() {
        return Err(Error::AlreadyExists {
            field: "id",
            reason: Reason::UserIdTaken,
        });
    }
    if ctx
        .store()
        .find_user_by_username(&username)
        .await?
        .is_some()
    {
        return Err(Error::AlreadyExists {
            field: "username",
            reason: Reason::UsernameTaken,
        });
    }
    let now = ctx.now();
    let user = User {
        id,
        username,
        email,
        roles,
        is_bot: request.is_bot,
        bot_owner_id,
        create_at: now,
        update_at: now,
        delete_at: 0,
    };
    let mut detail = json!({"username": user.username, "roles": user.roles, "is_bot": user.is_bot});
    if let Some(owner) = &user.bot_owner_id {
        detail["bot_owner_id"] = json!(owner.as_str());
    }
    let record = NewRecord::by(caller, Action::UserCreated)
        .user(&user.id)
        .detail(detail);
    ctx.store().insert_user(&user, &record).await?;
    info!(target: "audit", action = "create_user", user_id = %user.id, is_bot = user.is_bot,
        "user created");
    Ok(user)
}

/// Replaces a user's roles; effective on the user's next request. The rules, carried out by
/// the store in one transaction: the user's sessions take the new roles too, and a revocation
/// of the user is recorded.
pub async fn update_user_roles(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
    roles: &[String],
) -> Result<User> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_permission(caller, Permission::ManageSystem)?;
    if roles.is_empty() {
        return Err(Error::invalid(
            "roles",
            Reason::InvalidRole,
            "must name at least one role",
        ));
    }
    let change = UserRolesChange {
        roles: validate_roles(ctx, roles)?,
        update_at: ctx.now(),
        // Sessions show their user's roles (Mattermost's `Session.Roles`): keep them equal.
        copy_to_sessions: true,
        // Every replica drops what it cached about the user, so the new roles apply at once.
        revocation: Revocation::User(user_id.clone()),
    };
    let record = NewRecord::by(caller, Action::UserRolesChanged)
        .user(&user_id)
        .detail(json!({"roles": change.roles}))
        .revokes(change.revocation.clone());
    let user = ctx
        .store()
        .update_user_roles(&user_id, &change, &record)
        .await?
        .ok_or(Error::NotFound {
            reason: Reason::UserNotFound,
        })?;
    ctx.revoked_here(&change.revocation);
    info!(target: "audit", action = "update_user_roles", user_id = %user.id,
        roles = %user.roles.join(" "), "user roles updated");
    Ok(user)
}

/// Deactivates or reactivates a user. The rules, carried out by the store in one transaction:
/// deactivation stamps `delete_at` once (deactivating again keeps the first stamp) and deletes
/// the user's sessions; reactivation clears `delete_at`; either way a revocation of the user
/// is recorded.
pub async fn update_user_active(
    ctx: &Context,
    caller: &Caller,
    user_id: &str,
    active: bool,
) -> Result<User> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let now = ctx.now();
    let change = UserActivationChange {
        delete_at: if active {
            TimeWrite::Set(0)
        } else {
            // Against the stored value: an already deactivated user keeps the first stamp.
            TimeWrite::SetIfUnset(now)
        },
        update_at: now,
        // A deactivated user is signed out everywhere.
        delete_sessions: !active,
        // Every replica drops what it cached about the user.
        revocation: Revocation::User(user_id.clone()),
    };
    let action = if active {
        Action::UserReactivated
    } else {
        Action::UserDeactivated
    };
    let record = NewRecord::by(caller, action)
        .user(&user_id)
        .revokes(change.revocation.clone());
    let user = ctx
        .store()
        .set_user_active(&user_id, &change, &record)
        .await?
        .ok_or(Error::NotFound {
            reason: Reason::UserNotFound,
        })?;
    ctx.revoked_here(&change.revocation);
    info!(target: "audit", action = "update_user_active", user_id = %user.id, active,
        "user activation changed");
    Ok(user)
}

/// The caller's own user record.
pub fn get_me(caller: &Caller) -> Result<&User> {
    match caller {
        Caller::User(p) => Ok(&p.user),
        Caller::Local => Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        }),
    }
}

/// One user of the directory, sanitized for the caller (Mattermost's getUser). `user_id` may
/// be "me". Checks in Mattermost's order: the id (400), whether the caller may see the user
/// (403 `view_members`, before the lookup, so a restricted caller cannot tell who exists),
/// then the lookup (404).
pub async fn get_user(ctx: &Context, caller: &Caller, user_id: &str) -> Result<User> {
    let user_id = caller.resolve_user_id(user_id)?;
    ctx.require_can_see_user(caller, &user_id).await?;
    let user = ctx.require_user(&user_id).await?;
    Ok(sanitize_for(ctx, caller, user))
}

/// The user with `username` (matched case-insensitively), sanitized for the caller
/// (Mattermost's getUserByUsername). An unknown username is 404 for a caller who sees every
/// user and 403 `view_members` for any other, as in Mattermost.
pub async fn get_user_by_username(ctx: &Context, caller: &Caller, username: &str) -> Result<User> {
    let username = validate_username(username).map_err(|_| {
        Error::invalid(
            "username",
            Reason::InvalidUrlParam,
            format!(
                "must be 1 to {MAX_USERNAME_CHARS} characters, start with a letter, and contain only letters, digits, '.', '-' and '_'"
            ),
        )
    })?;
    let Some(user) = ctx.store().find_user_by_username(&username).await? else {
        if ctx.sees_every_user(caller) {
            return Err(Error::NotFound {
                reason: Reason::UserNotFound,
            });
        }
        return Err(Error::PermissionDenied {
            permission: Permission::ViewMembers,
        });
    };
    ctx.require_can_see_user(caller, &user.id).await?;
    Ok(sanitize_for(ctx, caller, user))
}

/// What another caller may see of `user` (Mattermost's `Sanitize` / `SanitizeProfile`): the
/// user themself, the local operator and holders of `manage_system` see everything; others
/// see the e-mail address only when `show_email_address` is set. A user record holds no
/// secret, so nothing else is removed.
fn sanitize_for(ctx: &Context, caller: &Caller, mut user: User) -> User {
    let sees_email = caller.user_id() == Some(&user.id)
        || ctx.policy().show_email_address
        || ctx
            .require_permission(caller, Permission::ManageSystem)
            .is_ok();
    if !sees_email {
        user.email.clear();
    }
    user
}

impl Context {
    /// Loads a user that must exist (`NotFound` otherwise).
    pub async fn require_user(&self, id: &UserId) -> Result<User> {
        self.store().find_user(id).await?.ok_or(Error::NotFound {
            reason: Reason::UserNotFound,
        })
    }
}

/// Finds a user by id or by username (operator tooling).
pub async fn find_user_by_id_or_username(ctx: &Context, key: &str) -> Result<User> {
    let by_id = if crate::domain::ids::is_valid_id(key) {
        ctx.store()
            .find_user(&UserId::parse(key, "user", Reason::InvalidUrlParam)?)
            .await?
    } else {
        None
    };
    let found = match by_id {
        Some(user) => Some(user),
        None => {
            ctx.store()
                .find_user_by_username(&key.to_lowercase())
                .await?
        }
    };
    found.ok_or(Error::NotFound {
        reason: Reason::UserNotFound,
    })
}

/// Mattermost's username rule: 1 to 64 characters, starting with a letter, made of lower-case
/// letters, digits, '.', '-' and '_'. Input is lower-cased first.
fn validate_username(raw: &str) -> Result<String> {
    let username = raw.trim().to_lowercase();
    let valid = !username.is_empty()
        && username.chars().count() <= MAX_USERNAME_CHARS
        && username.starts_with(|c: char| c.is_ascii_lowercase())
        && username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c));
    if valid {
        Ok(username)
    } else {
        Err(Error::invalid(
            "username",
            Reason::InvalidUsername,
            format!(
                "must be 1 to {MAX_USERNAME_CHARS} characters, start with a letter, and contain only lower-case letters, digits, '.', '-' and '_'"
            ),
        ))
    }
}

fn validate_roles(ctx: &Context, roles: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles.iter().flat_map(|r| r.split_whitespace()) {
        if !ctx.policy().roles.is_known(role) {
            return Err(Error::invalid(
                "roles",
                Reason::InvalidRole,
                format!("unknown role {role:?}"),
            ));
        }
        if !out.iter().any(|r| r == role) {
            out.push(role.to_owned());
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "roles",
            Reason::InvalidRole,
            "must name at least one role",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_mattermost_rules() {
        assert_eq!(validate_username("Alice").unwrap(), "alice");
        assert!(validate_username("a.b-c_d9").is_ok());
        assert!(validate_username("9lives").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_username("bad name").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
    }
}
