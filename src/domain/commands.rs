//! Slash commands: creation, Mattermost's `regen_token` rules, token verification for
//! slash-command receivers, and the team memberships that carry team-scoped permissions.

use serde_json::json;
use tracing::info;

use super::token_format::SecretKind;
use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::{CommandId, TeamId, UserId},
    lifecycle::{Action, NewRecord},
    model::{Command, TeamMember, TeamMemberWrite, UnixMillis},
    permissions::Permission,
    secret::PlainToken,
    text::require_no_nul,
};

/// What CreateCommand asks for.
#[derive(Debug, Clone, Default)]
pub struct NewCommand {
    pub team_id: String,
    pub trigger: String,
    /// "P", "G", or empty for "P".
    pub method: String,
    pub url: String,
    pub display_name: String,
    pub description: String,
    pub username: String,
    pub icon_url: String,
    pub auto_complete: bool,
    pub auto_complete_desc: String,
    pub auto_complete_hint: String,
}

/// A new command and its token.
#[derive(Debug)]
pub struct CreatedCommand {
    pub command: Command,
    pub token: PlainToken,
}

/// The team roles a membership may hold (plus configured roles).
const DEFAULT_TEAM_ROLE: &str = "team_user";

/// Creates a slash command; the caller becomes its creator.
pub async fn create_command(
    ctx: &Context,
    caller: &Caller,
    request: NewCommand,
) -> Result<CreatedCommand> {
    if !ctx.policy().enable_commands {
        return Err(Error::Unimplemented {
            reason: Reason::CommandsDisabled,
        });
    }
    let Caller::User(principal) = caller else {
        return Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        });
    };
    let team_id = TeamId::parse(&request.team_id, "team_id", Reason::InvalidBodyParam)?;
    ctx.require_team_permission(caller, &team_id, Permission::ManageOwnSlashCommands)
        .await?;
    let command = validate_command(request, team_id, principal.user.id.clone(), ctx.now())?;
    if ctx
        .store()
        .command_trigger_taken(&command.team_id, &command.trigger)
        .await?
    {
        return Err(Error::invalid(
            "trigger",
            Reason::DuplicateTrigger,
            "is already used by another command on this team",
        ));
    }
    let token = ctx.mint_secret(SecretKind::Command);
    let ciphertext = ctx
        .command_cipher()
        .encrypt(&token, command.id.as_str())
        .map_err(Error::internal)?;
    let record = NewRecord::by(caller, Action::CommandCreated)
        .user(&command.creator_id)
        .command(&command.id)
        .team(&command.team_id)
        .credential(ctx.audit_key(), &token)
        .detail(json!({"trigger": command.trigger, "method": command.method}));
    ctx.store()
        .insert_command(&command, &ciphertext, &record)
        .await?;
    info!(target: "audit", action = "create_command", command_id = %command.id,
        team_id = %command.team_id, caller = %caller, "slash command created");
    Ok(CreatedCommand { command, token })
}

/// Mattermost's `regenCommandToken`: missing, deleted, disabled or not permitted all answer
/// the same NOT_FOUND, so existence is not revealed; another user's command needs
/// `manage_others_slash_commands`. Returns the new token; the old one is invalid at once.
pub async fn regen_command_token(
    ctx: &Context,
    caller: &Caller,
    command_id: &str,
) -> Result<PlainToken> {
    let command_id = CommandId::parse(command_id, "command_id", Reason::InvalidUrlParam)?;
    let hidden = || Error::NotFound {
        reason: Reason::CommandNotFound,
    };
    if !ctx.policy().enable_commands {
        return Err(hidden());
    }
    let (command, _) = ctx
        .store()
        .find_command(&command_id)
        .await?
        .filter(|(c, _)| c.delete_at == 0)
        .ok_or_else(hidden)?;
    // Without the permission on the team the command does not exist for the caller.
    ctx.require_team_permission(caller, &command.team_id, Permission::ManageOwnSlashCommands)
        .await
        .map_err(|err| match err {
            Error::PermissionDenied { .. } => hidden(),
            other => other,
        })?;
    if caller.user_id() != Some(&command.creator_id) {
        ctx.require_team_permission(
            caller,
            &command.team_id,
            Permission::ManageOthersSlashCommands,
        )
        .await?;
    }
    let token = ctx.mint_secret(SecretKind::Command);
    let ciphertext = ctx
        .command_cipher()
        .encrypt(&token, command.id.as_str())
        .map_err(Error::internal)?;
    let record = NewRecord::by(caller, Action::CommandTokenRegenerated)
        .user(&command.creator_id)
        .command(&command.id)
        .team(&command.team_id)
        .credential(ctx.audit_key(), &token);
    if !ctx
        .store()
        .update_command_token(&command.id, &ciphertext, ctx.now(), &record)
        .await?
    {
        return Err(hidden());
    }
    info!(target: "audit", action = "regen_command_token", command_id = %command.id,
        caller = %caller, "slash command token regenerated");
    Ok(token)
}

/// Whether `token` is the command's current token (constant-time). Unknown or deleted
/// commands are simply `false`. Requires `introspect_token`.
pub async fn verify_command_token(
    ctx: &Context,
    caller: &Caller,
    command_id: &str,
    token: &str,
) -> Result<bool> {
    ctx.require_permission(caller, Permission::IntrospectToken)?;
    let command_id = CommandId::parse(command_id, "command_id", Reason::InvalidUrlParam)?;
    if token.is_empty() {
        return Err(Error::invalid(
            "token",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
    }
    let Some((command, ciphertext)) = ctx.store().find_command(&command_id).await? else {
        return Ok(false);
    };
    if command.delete_at != 0 {
        return Ok(false);
    }
    let current = ctx
        .command_cipher()
        .decrypt(&ciphertext, command.id.as_str())
        .map_err(Error::internal)?;
    Ok(current.matches(&PlainToken::from_presented(token)))
}

/// Adds a user to a team, as Mattermost's `POST /teams/{team_id}/members` does, or sets the
/// team roles of a member. Requires `manage_system`.
///
/// Without roles, a live membership is returned unchanged (Mattermost's `joinUserToTeam`
/// "does nothing if already added": a team admin stays an admin), and a new or removed
/// member gets `team_user`. With roles (our extension; Mattermost sets them with
/// `PUT /teams/{team_id}/members/{user_id}/roles`), they replace the member's roles. The
/// decision and the write happen in one transaction, so a concurrent promotion is never
/// overwritten by a role-less add.
pub async fn add_team_member(
    ctx: &Context,
    caller: &Caller,
    team_id: &str,
    user_id: &str,
    roles: &[String],
) -> Result<TeamMember> {
    ctx.require_permission(caller, Permission::ManageSystem)?;
    let team_id = TeamId::parse(team_id, "team_id", Reason::InvalidUrlParam)?;
    let user_id = UserId::parse(user_id, "user_id", Reason::InvalidBodyParam)?;
    let mut team_roles: Vec<String> = Vec::new();
    for role in roles.iter().flat_map(|r| r.split_whitespace()) {
        if !ctx.policy().roles.is_known(role) || role.starts_with("system_") {
            return Err(Error::invalid(
                "roles",
                Reason::InvalidRole,
                format!("unknown team role {role:?}"),
            ));
        }
        if !team_roles.iter().any(|r| r == role) {
            team_roles.push(role.to_owned());
        }
    }
    let write = if team_roles.is_empty() {
        TeamMemberWrite::JoinKeepingLiveRoles(vec![DEFAULT_TEAM_ROLE.to_owned()])
    } else {
        TeamMemberWrite::SetRoles(team_roles)
    };
    ctx.require_user(&user_id).await?;
    let roles = match &write {
        TeamMemberWrite::JoinKeepingLiveRoles(r) | TeamMemberWrite::SetRoles(r) => r,
    };
    let record = NewRecord::by(caller, Action::TeamMemberAdded)
        .user(&user_id)
        .team(&team_id)
        .detail(json!({"roles": roles}));
    let (member, written) = ctx
        .store()
        .upsert_team_member(&team_id, &user_id, &write, ctx.now(), &record)
        .await?;
    if written {
        info!(target: "audit", action = "add_team_member", team_id = %team_id, user_id = %user_id,
            roles = %member.roles.join(" "), "team membership set");
    }
    Ok(member)
}

/// Mattermost's `Command.IsValid`, with field-named errors; normalises the trigger to lower
/// case and an empty method to "P".
fn validate_command(
    request: NewCommand,
    team_id: TeamId,
    creator_id: UserId,
    now: UnixMillis,
) -> Result<Command> {
    for (field, value) in [
        ("trigger", &request.trigger),
        ("method", &request.method),
        ("url", &request.url),
        ("display_name", &request.display_name),
        ("description", &request.description),
        ("username", &request.username),
        ("icon_url", &request.icon_url),
        ("auto_complete_desc", &request.auto_complete_desc),
        ("auto_complete_hint", &request.auto_complete_hint),
    ] {
        require_no_nul(field, value)?;
    }
    let trigger = request.trigger.trim().to_lowercase();
    if trigger.is_empty()
        || trigger.chars().count() > 128
        || trigger.starts_with('/')
        || trigger.contains(char::is_whitespace)
    {
        return Err(Error::invalid(
            "trigger",
            Reason::InvalidCommandTrigger,
            "must be 1 to 128 characters, without a leading '/' or spaces",
        ));
    }
    let method = match request.method.as_str() {
        "" | "P" | "p" => "P",
        "G" | "g" => "G",
        _ => {
            return Err(Error::invalid(
                "method",
                Reason::InvalidCommandMethod,
                "must be \"P\" (POST) or \"G\" (GET)",
            ));
        }
    };
    if !is_http_url(&request.url) || request.url.len() > 1024 {
        return Err(Error::invalid(
            "url",
            Reason::InvalidCommandUrl,
            "must be an http:// or https:// URL of at most 1024 characters",
        ));
    }
    let limits: [(&'static str, &str, usize, Reason); 6] = [
        (
            "display_name",
            &request.display_name,
            64,
            Reason::InvalidCommandDisplayName,
        ),
        (
            "description",
            &request.description,
            128,
            Reason::InvalidCommandDescription,
        ),
        ("username", &request.username, 64, Reason::InvalidBodyParam),
        (
            "icon_url",
            &request.icon_url,
            1024,
            Reason::InvalidBodyParam,
        ),
        (
            "auto_complete_desc",
            &request.auto_complete_desc,
            1024,
            Reason::InvalidBodyParam,
        ),
        (
            "auto_complete_hint",
            &request.auto_complete_hint,
            1024,
            Reason::InvalidBodyParam,
        ),
    ];
    for (field, value, max, reason) in limits {
        if value.chars().count() > max {
            return Err(Error::invalid(
                field,
                reason,
                format!("must be at most {max} characters"),
            ));
        }
    }
    Ok(Command {
        id: CommandId::generate(),
        team_id,
        creator_id,
        trigger,
        method: method.to_owned(),
        url: request.url,
        display_name: request.display_name,
        description: request.description,
        username: request.username,
        icon_url: request.icon_url,
        auto_complete: request.auto_complete,
        auto_complete_desc: request.auto_complete_desc,
        auto_complete_hint: request.auto_complete_hint,
        create_at: now,
        update_at: now,
        delete_at: 0,
    })
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !url.contains(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(is_http_url("https://example.com/hook"));
        assert!(is_http_url("http://127.0.0.1:8080"));
        assert!(!is_http_url("ftp://example.com"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https://exa mple.com"));
    }
}
