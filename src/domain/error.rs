//! The one error type of the domain.
//!
//! Policy: every failure a caller can cause is a variant carrying a [`Reason`], a closed set of
//! situations. Each reason has one stable error id ([`Reason::id`]), which is Mattermost's own
//! AppError id where Mattermost has one, so the gRPC status (as `google.rpc.ErrorInfo.reason`)
//! and the REST shim's error JSON report the same id. `Unavailable` and `Internal` are our
//! failures: they carry a fixed message for the client, and the cause is logged once, at the
//! transport boundary, never sent. Nothing here ever contains a secret.

use std::fmt;

use super::permissions::Permission;

/// A domain result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a domain operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field breaks a rule. `field` is the request field name, `rule` says what is
    /// required, in words a client can act on.
    #[error("{field}: {rule}")]
    InvalidArgument {
        field: &'static str,
        rule: String,
        reason: Reason,
    },
    /// No credential, or one that does not authenticate.
    #[error("authentication required: {reason}")]
    Unauthenticated { reason: Reason },
    /// The caller lacks a permission.
    #[error("permission {permission} is required")]
    PermissionDenied { permission: Permission },
    /// The thing asked for does not exist (or is hidden from the caller).
    #[error("{reason}")]
    NotFound { reason: Reason },
    /// A unique field is taken.
    #[error("{field}: already taken")]
    AlreadyExists { field: &'static str, reason: Reason },
    /// A position (such as a revocation event id to resume after) outside what is kept.
    #[error("{field}: {rule}")]
    OutOfRange {
        field: &'static str,
        rule: String,
        reason: Reason,
    },
    /// The operation is switched off by configuration.
    #[error("{reason}")]
    Unimplemented { reason: Reason },
    /// The database cannot be reached; the call may be retried.
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] BoxError),
    /// The server is shutting down: a long-lived call (a revocation stream) ends with this so
    /// the client reconnects, to another replica, and resumes.
    #[error("the server is shutting down; reconnect and resume")]
    ShuttingDown,
    /// A bug or an unexpected database failure.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// A boxed cause, kept for the log only.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: Reason, rule: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            rule: rule.into(),
            reason,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into().into())
    }

    /// The reason behind the error, for its stable id.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument { reason, .. }
            | Error::OutOfRange { reason, .. }
            | Error::Unauthenticated { reason }
            | Error::NotFound { reason }
            | Error::AlreadyExists { reason, .. }
            | Error::Unimplemented { reason } => *reason,
            Error::PermissionDenied { .. } => Reason::PermissionDenied,
            Error::Unavailable(_) => Reason::DatabaseUnavailable,
            Error::ShuttingDown => Reason::ShuttingDown,
            Error::Internal(_) => Reason::Internal,
        }
    }
}

/// Every distinct situation an error can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A malformed id or value in the URL path or query (Mattermost: invalid URL parameter).
    InvalidUrlParam,
    /// A missing or malformed field in the request body.
    InvalidBodyParam,
    /// A personal access token description over 255 bytes.
    TokenDescriptionTooLong,
    /// `expires_at` is in the past.
    ExpiresAtInPast,
    /// A maximum token lifetime is configured and `expires_at` is unset.
    ExpiresAtRequired,
    /// `expires_at` is beyond the configured maximum lifetime.
    ExpiresAtTooFar,
    /// `expires_at` is negative (the token model's own check, reached by exempt bots).
    InvalidExpiresAt,
    /// A username that breaks the username rules.
    InvalidUsername,
    /// An e-mail address that is not plausible.
    InvalidEmail,
    /// A role the server does not know.
    InvalidRole,
    /// A bot owner that is missing or not allowed.
    InvalidBotOwner,
    /// No valid credential (every authentication failure; the cause is only logged).
    SessionExpired,
    /// The caller lacks a permission.
    PermissionDenied,
    /// The user does not exist.
    UserNotFound,
    /// The personal access token does not exist.
    AccessTokenNotFound,
    /// The session does not exist.
    SessionNotFound,
    /// The slash command does not exist, is deleted, or is hidden from the caller.
    CommandNotFound,
    /// Slash commands are switched off (`enable_commands = false`).
    CommandsDisabled,
    /// A command trigger that breaks the rules.
    InvalidCommandTrigger,
    /// A command method other than P or G.
    InvalidCommandMethod,
    /// A command URL that is not http(s).
    InvalidCommandUrl,
    /// A command display name over 64 characters.
    InvalidCommandDisplayName,
    /// A command description over 128 characters.
    InvalidCommandDescription,
    /// The trigger is used by another command of the team.
    DuplicateTrigger,
    /// WebRTC is switched off.
    WebrtcDisabled,
    /// A valid non-OAuth session was sent in the `access_token` query parameter.
    TokenInQuery,
    /// No API route matches the path (REST only).
    RouteNotFound,
    /// The request body is over the size limit (REST only).
    BodyTooLarge,
    /// The user is deactivated.
    UserDeactivated,
    /// The username is taken.
    UsernameTaken,
    /// The user id is taken.
    UserIdTaken,
    /// Personal access tokens are switched off (`enable_user_access_tokens = false`).
    AccessTokensDisabled,
    /// Events after the requested position were pruned from the revocation log.
    RevocationLogPruned,
    /// The database is unreachable.
    DatabaseUnavailable,
    /// The server is shutting down.
    ShuttingDown,
    /// Anything unexpected.
    Internal,
}

impl Reason {
    /// The stable error id: Mattermost's AppError id where Mattermost has one, else a
    /// `token_service.*` id. Both transports send this id.
    pub fn id(self) -> &'static str {
        match self {
            Reason::InvalidUrlParam => "api.context.invalid_url_param.app_error",
            Reason::InvalidBodyParam => "api.context.invalid_body_param.app_error",
            Reason::TokenDescriptionTooLong => {
                "model.user_access_token.is_valid.description.app_error"
            }
            Reason::ExpiresAtInPast => "app.user_access_token.expires_at_in_past.app_error",
            Reason::ExpiresAtRequired => "app.user_access_token.expires_at_required.app_error",
            Reason::ExpiresAtTooFar => "app.user_access_token.expires_at_too_far.app_error",
            Reason::InvalidExpiresAt => "model.user_access_token.is_valid.expires_at.app_error",
            Reason::InvalidUsername => "model.user.is_valid.username.app_error",
            Reason::InvalidEmail => "model.user.is_valid.email.app_error",
            Reason::InvalidRole => "model.user.is_valid.roles.app_error",
            Reason::InvalidBotOwner => "model.bot.is_valid.creator_id.app_error",
            Reason::SessionExpired => "api.context.session_expired.app_error",
            Reason::PermissionDenied => "api.context.permissions.app_error",
            Reason::UserNotFound => "app.user.missing_account.const",
            Reason::AccessTokenNotFound => "app.user_access_token.get_by_user.app_error",
            Reason::SessionNotFound => "app.session.get.app_error",
            Reason::CommandNotFound => "store.sql_command.save.get.app_error",
            Reason::CommandsDisabled => "api.command.disabled.app_error",
            Reason::InvalidCommandTrigger => "model.command.is_valid.trigger.app_error",
            Reason::InvalidCommandMethod => "model.command.is_valid.method.app_error",
            Reason::InvalidCommandUrl => "model.command.is_valid.url_http.app_error",
            Reason::InvalidCommandDisplayName => "model.command.is_valid.display_name.app_error",
            Reason::InvalidCommandDescription => "model.command.is_valid.description.app_error",
            Reason::DuplicateTrigger => "api.command.duplicate_trigger.app_error",
            Reason::WebrtcDisabled => "api.webrtc.disabled.app_error",
            Reason::TokenInQuery => "api.context.token_provided.app_error",
            Reason::RouteNotFound => "api.context.404.app_error",
            Reason::BodyTooLarge => "api.context.request_body_too_large.app_error",
            Reason::UserDeactivated => "api.user.login.inactive.app_error",
            Reason::UsernameTaken => "app.user.save.username_exists.app_error",
            Reason::UserIdTaken => "store.sql_user.save.existing.app_error",
            Reason::AccessTokensDisabled => "app.user_access_token.disabled",
            Reason::RevocationLogPruned => "token_service.revocation_log.pruned",
            Reason::DatabaseUnavailable => "token_service.database_unavailable",
            Reason::ShuttingDown => "token_service.shutting_down",
            Reason::Internal => "token_service.internal_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Reason::InvalidUrlParam => "invalid URL parameter",
            Reason::InvalidBodyParam => "invalid body parameter",
            Reason::TokenDescriptionTooLong => "description is longer than 255 bytes",
            Reason::ExpiresAtInPast => "expires_at is in the past",
            Reason::ExpiresAtRequired => "expires_at is required by the token lifetime policy",
            Reason::ExpiresAtTooFar => "expires_at is beyond the maximum token lifetime",
            Reason::InvalidExpiresAt => "expires_at must be zero or a positive Unix timestamp",
            Reason::InvalidUsername => "invalid username",
            Reason::InvalidEmail => "invalid e-mail address",
            Reason::InvalidRole => "unknown role",
            Reason::InvalidBotOwner => "invalid bot owner",
            Reason::SessionExpired => "invalid or expired session, please login again",
            Reason::PermissionDenied => "you do not have the appropriate permissions",
            Reason::UserNotFound => "user not found",
            Reason::AccessTokenNotFound => "personal access token not found",
            Reason::SessionNotFound => "session not found",
            Reason::CommandNotFound => "command not found",
            Reason::CommandsDisabled => {
                "slash commands are disabled on this server (enable_commands)"
            }
            Reason::InvalidCommandTrigger => "invalid trigger",
            Reason::InvalidCommandMethod => "invalid method",
            Reason::InvalidCommandUrl => "invalid URL",
            Reason::InvalidCommandDisplayName => "invalid display name",
            Reason::InvalidCommandDescription => "invalid description",
            Reason::DuplicateTrigger => "trigger already used on this team",
            Reason::WebrtcDisabled => "WebRTC is not enabled on this server",
            Reason::TokenInQuery => {
                "session tokens may not be sent in the URL; use the Authorization header"
            }
            Reason::RouteNotFound => "no API call matches this URL",
            Reason::BodyTooLarge => "the request body is too large",
            Reason::UserDeactivated => "the user is deactivated",
            Reason::UsernameTaken => "an account with that username already exists",
            Reason::UserIdTaken => "an account with that id already exists",
            Reason::AccessTokensDisabled => {
                "personal access tokens are disabled on this server (enable_user_access_tokens)"
            }
            Reason::RevocationLogPruned => {
                "revocation events after this position are no longer kept"
            }
            Reason::DatabaseUnavailable => "the database is unavailable",
            Reason::ShuttingDown => "the server is shutting down",
            Reason::Internal => "internal error",
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ids_are_unique() {
        let all = [
            Reason::InvalidUrlParam,
            Reason::InvalidBodyParam,
            Reason::TokenDescriptionTooLong,
            Reason::ExpiresAtInPast,
            Reason::ExpiresAtRequired,
            Reason::ExpiresAtTooFar,
            Reason::InvalidExpiresAt,
            Reason::InvalidUsername,
            Reason::InvalidEmail,
            Reason::InvalidRole,
            Reason::InvalidBotOwner,
            Reason::SessionExpired,
            Reason::PermissionDenied,
            Reason::UserNotFound,
            Reason::AccessTokenNotFound,
            Reason::SessionNotFound,
            Reason::CommandNotFound,
            Reason::CommandsDisabled,
            Reason::InvalidCommandTrigger,
            Reason::InvalidCommandMethod,
            Reason::InvalidCommandUrl,
            Reason::InvalidCommandDisplayName,
            Reason::InvalidCommandDescription,
            Reason::DuplicateTrigger,
            Reason::WebrtcDisabled,
            Reason::TokenInQuery,
            Reason::RouteNotFound,
            Reason::BodyTooLarge,
            Reason::UserDeactivated,
            Reason::UsernameTaken,
            Reason::UserIdTaken,
            Reason::AccessTokensDisabled,
            Reason::RevocationLogPruned,
            Reason::DatabaseUnavailable,
            Reason::ShuttingDown,
            Reason::Internal,
        ];
        let ids: std::collections::HashSet<_> = all.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn invalid_argument_names_field_and_rule() {
        let e = Error::invalid("description", Reason::InvalidBodyParam, "must not be empty");
        assert_eq!(e.to_string(), "description: must not be empty");
        assert_eq!(e.reason().id(), "api.context.invalid_body_param.app_error");
    }
}
