//! The one error type of the domain.
//!
//! Policy: every failure a caller can cause is a variant carrying a [`Reason`], a closed set of
//! situations. Each reason has one stable error id ([`Reason::id`]), which is Mattermost's own
//! AppError id where Mattermost has one, so the gRPC status (as `google.rpc.ErrorInfo.reason`)
//! and the REST shim's error JSON report the same id. `Unavailable` and `Internal` are our
//! failures: they carry a fixed message for the client, and the cause is logged once, at the
//! transport boundary, never sent. Nothing here ever contains a secret.
//!
//! A reason is one line of the `reasons!` table below (variant, id, message, documentation).
//! Each transport maps reasons once and exhaustively: gRPC by the `Error` variant
//! (`grpc/status.rs`), REST by reason (`rest/error.rs`, Mattermost's status and text).

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
    /// The request is fine but the server's state or settings do not allow it (for example
    /// revoking tokens that break a lifetime policy when no policy is set). `rule` says why,
    /// naming the setting.
    #[error("{rule}")]
    FailedPrecondition { rule: String, reason: Reason },
    /// The caller (its address) has made too many such requests; it may retry after
    /// `retry_after_ms`.
    #[error("too many requests; retry in {} s", retry_after_ms.div_ceil(1000))]
    RateLimited { retry_after_ms: u64 },
    /// A server-wide limit is reached (open streams); retry later or on another replica.
    #[error("{rule}")]
    ResourceExhausted { rule: String, reason: Reason },
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
    /// A stream subscriber's failed read of the log: whatever the database said (a lost
    /// connection, or a table it cannot read), the subscriber is told the log is unavailable
    /// and resumes later from its last id, as when the replica's feed reports the same
    /// failure first. Other errors pass through.
    pub(crate) fn into_log_unreadable(self) -> Self {
        match self {
            Error::Internal(source) => Error::Unavailable(source),
            other => other,
        }
    }

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
            | Error::FailedPrecondition { reason, .. }
            | Error::ResourceExhausted { reason, .. }
            | Error::Unauthenticated { reason }
            | Error::NotFound { reason }
            | Error::AlreadyExists { reason, .. }
            | Error::Unimplemented { reason } => *reason,
            Error::PermissionDenied { .. } => Reason::PermissionDenied,
            Error::RateLimited { .. } => Reason::RateLimited,
            Error::Unavailable(_) => Reason::DatabaseUnavailable,
            Error::ShuttingDown => Reason::ShuttingDown,
            Error::Internal(_) => Reason::Internal,
        }
    }
}

/// Declares [`Reason`] from one line per reason: the variant, its stable error id, our
/// message (its `Display`), and its documentation. Emits the enum, [`Reason::ALL`],
/// [`Reason::id`] and `Display`, so a new reason is one line here plus its REST mapping
/// (`rest/error.rs`, an exhaustive match that fails to compile until it is decided).
macro_rules! reasons {
    ($($variant:ident, $id:literal, $text:literal, $doc:literal;)*) => {
        /// Every distinct situation an error can report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: [Reason; [$(stringify!($variant)),*].len()] = [$(Reason::$variant),*];

            /// The stable error id: Mattermost's AppError id where Mattermost has one, else a
            /// `token_service.*` id. Both transports send this id.
            pub fn id(self) -> &'static str {
                match self {
                    $(Reason::$variant => $id,)*
                }
            }
        }

        impl fmt::Display for Reason {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Reason::$variant => $text,)*
                })
            }
        }
    };
}

// Variant, stable id, our message, documentation.
reasons! {
    InvalidUrlParam, "api.context.invalid_url_param.app_error", "invalid URL parameter", "A malformed id or value in the URL path or query (Mattermost: invalid URL parameter).";
    InvalidBodyParam, "api.context.invalid_body_param.app_error", "invalid body parameter", "A missing or malformed field in the request body.";
    TokenDescriptionTooLong, "model.user_access_token.is_valid.description.app_error", "description is longer than 255 bytes", "A personal access token description over 255 bytes.";
    ExpiresAtInPast, "app.user_access_token.expires_at_in_past.app_error", "expires_at is in the past", "`expires_at` is in the past.";
    ExpiresAtRequired, "app.user_access_token.expires_at_required.app_error", "expires_at is required by the token lifetime policy", "A maximum token lifetime is configured and `expires_at` is unset.";
    ExpiresAtTooFar, "app.user_access_token.expires_at_too_far.app_error", "expires_at is beyond the maximum token lifetime", "`expires_at` is beyond the configured maximum lifetime.";
    RotateDisabledToken, "api.user.rotate_user_access_token.disabled_token.app_error", "a disabled token cannot be rotated; enable it first", "RotateUserAccessToken on a disabled token (Mattermost answers 400).";
    InvalidExpiresAt, "model.user_access_token.is_valid.expires_at.app_error", "expires_at must be zero or a positive Unix timestamp", "`expires_at` is negative (the token model's own check, reached by exempt bots).";
    InvalidUsername, "model.user.is_valid.username.app_error", "invalid username", "A username that breaks the username rules.";
    InvalidEmail, "model.user.is_valid.email.app_error", "invalid e-mail address", "An e-mail address that is not plausible.";
    InvalidRole, "model.user.is_valid.roles.app_error", "unknown role", "A role the server does not know.";
    InvalidBotOwner, "model.bot.is_valid.creator_id.app_error", "invalid bot owner", "A bot owner that is missing or not allowed.";
    SessionExpired, "api.context.session_expired.app_error", "invalid or expired session, please login again", "No valid credential (every authentication failure; the cause is only logged).";
    PermissionDenied, "api.context.permissions.app_error", "you do not have the appropriate permissions", "The caller lacks a permission.";
    UserNotFound, "app.user.missing_account.const", "user not found", "The user does not exist.";
    AccessTokenNotFound, "app.user_access_token.get_by_user.app_error", "personal access token not found", "The personal access token does not exist.";
    SessionNotFound, "app.session.get.app_error", "session not found", "The session does not exist.";
    CommandNotFound, "store.sql_command.save.get.app_error", "command not found", "The slash command does not exist, is deleted, or is hidden from the caller.";
    CommandsDisabled, "api.command.disabled.app_error", "slash commands are disabled on this server (enable_commands)", "Slash commands are switched off (`enable_commands = false`).";
    InvalidCommandTrigger, "model.command.is_valid.trigger.app_error", "invalid trigger", "A command trigger that breaks the rules.";
    InvalidCommandMethod, "model.command.is_valid.method.app_error", "invalid method", "A command method other than P or G.";
    InvalidCommandUrl, "model.command.is_valid.url_http.app_error", "invalid URL", "A command URL that is not http(s).";
    InvalidCommandDisplayName, "model.command.is_valid.display_name.app_error", "invalid display name", "A command display name over 64 characters.";
    InvalidCommandDescription, "model.command.is_valid.description.app_error", "invalid description", "A command description over 128 characters.";
    DuplicateTrigger, "api.command.duplicate_trigger.app_error", "trigger already used on this team", "The trigger is used by another command of the team.";
    WebrtcDisabled, "api.webrtc.disabled.app_error", "WebRTC is not enabled on this server", "WebRTC is switched off.";
    TokenInQuery, "api.context.token_provided.app_error", "session tokens may not be sent in the URL; use the Authorization header", "A valid non-OAuth session was sent in the `access_token` query parameter.";
    RouteNotFound, "api.context.404.app_error", "no API call matches this URL", "No API route matches the path (REST only).";
    BodyTooLarge, "api.context.request_body_too_large.app_error", "the request body is too large", "The request body is over the size limit (REST only).";
    TooManyStreams, "token_service.too_many_streams", "this replica serves as many watch streams as it may", "`connections.max_watch_streams` WatchRevocations and WatchEvents streams are open on this replica (RESOURCE_EXHAUSTED); retry later or on another replica.";
    BodyTimeout, "token_service.request.body_timeout", "the request body did not arrive in time", "The client had not sent the whole request body when `request_timeout_ms` passed (REST 408; gRPC answers DEADLINE_EXCEEDED).";
    UserDeactivated, "api.user.login.inactive.app_error", "the user is deactivated", "The user is deactivated.";
    UsernameTaken, "app.user.save.username_exists.app_error", "an account with that username already exists", "The username is taken.";
    UserIdTaken, "store.sql_user.save.existing.app_error", "an account with that id already exists", "The user id is taken.";
    AccessTokensDisabled, "app.user_access_token.disabled", "personal access tokens are disabled on this server (enable_user_access_tokens)", "Personal access tokens are switched off (`enable_user_access_tokens = false`).";
    NonCompliantNoPolicy, "app.user_access_token.revoke_non_compliant.no_policy.app_error", "no maximum token lifetime is set (maximum_personal_access_token_lifetime_days is 0)", "RevokeNonCompliantUserAccessTokens without a maximum-lifetime policy.";
    NonCompliantPartial, "app.user_access_token.revoke_non_compliant.partial.app_error", "the batch limit was reached before every non-compliant token was revoked; run it again", "RevokeNonCompliantUserAccessTokens stopped at its batch limit (REST only; gRPC answers complete = false).";
    RevocationLogPruned, "token_service.revocation_log.pruned", "revocation events after this position are no longer kept", "Events after the requested position were pruned from the revocation log.";
    WebhookNotFound, "token_service.webhook.not_found", "webhook not found", "The webhook endpoint does not exist.";
    InvalidWebhookUrl, "token_service.webhook.invalid_url", "invalid webhook URL", "A webhook URL that is not an absolute http(s) URL with a host, has user information, or is too long.";
    WebhookAddressRefused, "token_service.webhook.address_refused", "the webhook URL names a private or local address", "A webhook URL whose host is a loopback, private, link-local, unspecified or multicast address (allowed only with `webhooks.allow_private_addresses`).";
    InvalidWebhookAction, "token_service.webhook.invalid_action", "unknown lifecycle action", "A webhook filter naming an action the lifecycle log does not have.";
    InvalidWebhookDescription, "token_service.webhook.invalid_description", "webhook description is too long", "A webhook description over 255 bytes.";
    RateLimited, "token_service.rate_limited", "too many requests from this address; retry later", "The caller's address made more requests of this kind than its rate limit allows (429 / RESOURCE_EXHAUSTED, with when to retry).";
    LeakReportsDisabled, "token_service.leak_reports.disabled", "leaked-token reports are disabled on this server (leak_reports.enable)", "ReportLeakedTokens is switched off (`leak_reports.enable = false`).";
    DatabaseUnavailable, "token_service.database_unavailable", "the database is unavailable", "The database is unreachable.";
    ShuttingDown, "token_service.shutting_down", "the server is shutting down", "The server is shutting down.";
    Internal, "token_service.internal_error", "internal error", "Anything unexpected.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_ids_are_unique() {
        let ids: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Reason::ALL.len());
    }

    #[test]
    fn invalid_argument_names_field_and_rule() {
        let e = Error::invalid("description", Reason::InvalidBodyParam, "must not be empty");
        assert_eq!(e.to_string(), "description: must not be empty");
        assert_eq!(e.reason().id(), "api.context.invalid_body_param.app_error");
    }
}
