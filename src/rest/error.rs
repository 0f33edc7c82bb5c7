//! `domain::Error` to Mattermost's AppError JSON, once, exhaustively:
//! `{"id","message","detailed_error","request_id","status_code"}`, in that order. The status
//! for each reason is Mattermost's (for example an unknown session is 400
//! `app.session.get.app_error`), and so is the English `message` wherever Mattermost has a
//! text for the id. `detailed_error` carries the field rule or missing permission, and is
//! blanked unless `enable_developer` is on (Mattermost's `EnableDeveloper`), except in the
//! router's 404, which Mattermost always explains; database text never leaves the process
//! (internal causes are logged once, here).

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::{error, warn};

use crate::domain::error::{Error, Reason};

/// An error response: rendered to JSON, with the request id, by the request-id middleware.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) id: &'static str,
    pub(crate) message: String,
    pub(crate) detailed_error: String,
    /// `detailed_error` is shown even when developer mode is off (only the router's 404,
    /// which Mattermost writes without its usual `WipeDetailed`).
    pub(crate) detail_always_shown: bool,
    /// A presented token did not authenticate: the response clears the `MMAUTHTOKEN`
    /// cookie, as Mattermost's `RemoveSessionCookie` does.
    pub(crate) clear_session_cookie: bool,
    /// Seconds for the `Retry-After` header of a rate-limited request.
    pub(crate) retry_after_secs: Option<u64>,
}

/// Mattermost's AppError as it is serialized (model/utils.go): the field order is the
/// struct's. `is_oauth` is `omitempty` there and never true here, so it never appears.
#[derive(Debug, Serialize)]
pub(crate) struct AppErrorJson<'a> {
    pub(crate) id: &'a str,
    pub(crate) message: &'a str,
    pub(crate) detailed_error: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) status_code: u16,
}

impl ApiError {
    pub(crate) fn new(
        reason: Reason,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status: rest(reason).0,
            id: reason.id(),
            message: message.into(),
            detailed_error: detail.into(),
            detail_always_shown: false,
            clear_session_cookie: false,
            retry_after_secs: None,
        }
    }

    /// The error for `reason` with Mattermost's message (or ours where it has none).
    pub(crate) fn from_reason(reason: Reason) -> Self {
        let message = rest(reason)
            .1
            .map_or_else(|| reason.to_string(), Into::into);
        Self::new(reason, message, "")
    }

    /// This error, also clearing the session cookie.
    pub(crate) fn clearing_session_cookie(mut self) -> Self {
        self.clear_session_cookie = true;
        self
    }

    /// The JSON body, with the request id. Without `developer` (Mattermost's
    /// `EnableDeveloper`), `detailed_error` is blank, as Mattermost's `WipeDetailed` leaves it.
    pub(crate) fn to_json(&self, request_id: &str, developer: bool) -> String {
        let detailed_error = if developer || self.detail_always_shown {
            self.detailed_error.as_str()
        } else {
            ""
        };
        serde_json::to_string(&AppErrorJson {
            id: self.id,
            message: &self.message,
            detailed_error,
            request_id,
            status_code: self.status.as_u16(),
        })
        .expect("strings and a number serialize")
    }

    /// Mattermost's `SetInvalidParam` for a body parameter.
    pub(crate) fn invalid_body_param(name: &str) -> Self {
        Self::new(
            Reason::InvalidBodyParam,
            format!("Invalid or missing {name} in request body."),
            "",
        )
    }

    /// Mattermost's `SetInvalidURLParam`.
    pub(crate) fn invalid_url_param(name: &str) -> Self {
        Self::new(
            Reason::InvalidUrlParam,
            format!("Invalid or missing {name} parameter in request URL."),
            "",
        )
    }

    /// Every authentication failure, as Mattermost reports it.
    pub(crate) fn session_expired() -> Self {
        Self::from_reason(Reason::SessionExpired)
    }

    /// The router's 404 for an unknown API path (or a known path with another method).
    pub(crate) fn route_not_found(path: &str) -> Self {
        let mut err = Self::new(
            Reason::RouteNotFound,
            rest(Reason::RouteNotFound).1.unwrap_or_default(),
            format!(
                "There doesn't appear to be an api call for the url='{path}'.  Typo? are you missing a team_id or user_id as part of the url?"
            ),
        );
        err.detail_always_shown = true;
        err
    }
}

impl ApiError {
    /// An AppError for a failure the HTTP layer produced without one.
    pub(crate) fn from_status(status: StatusCode) -> Self {
        let (reason, message) = match status.as_u16() {
            404 | 405 => return Self::route_not_found(""),
            413 => (Reason::BodyTooLarge, "Request body is too large."),
            400..=499 => (Reason::InvalidUrlParam, "Invalid or malformed request."),
            _ => (Reason::Internal, "An internal error occurred."),
        };
        let mut err = Self::new(reason, message, "");
        if status.is_client_error() {
            err.status = status;
        }
        err
    }
}

/// How the REST shim reports each reason: Mattermost's HTTP status, and Mattermost's English
/// text for the ids that have one (server/i18n/en.json); `None` where Mattermost's text is not
/// known or takes parameters we do not have, and our own text is used.
/// `invalid_body_param`/`invalid_url_param` are built with the parameter's name. No catch-all
/// arm: a new reason does not compile until its status and text are decided here.
fn rest(reason: Reason) -> (StatusCode, Option<&'static str>) {
    use StatusCode as S;
    match reason {
        Reason::InvalidUrlParam => (S::BAD_REQUEST, None),
        Reason::InvalidBodyParam => (S::BAD_REQUEST, None),
        Reason::TokenDescriptionTooLong => (
            S::BAD_REQUEST,
            Some("Invalid description, must be 255 or less characters."),
        ),
        Reason::ExpiresAtInPast => (
            S::BAD_REQUEST,
            Some("The provided expires_at is in the past."),
        ),
        Reason::ExpiresAtRequired => (S::BAD_REQUEST, None),
        Reason::ExpiresAtTooFar => (S::BAD_REQUEST, None),
        Reason::InvalidExpiresAt => (S::BAD_REQUEST, None),
        Reason::RotateDisabledToken => (
            S::BAD_REQUEST,
            Some("Cannot regenerate a disabled access token."),
        ),
        Reason::InvalidUsername => (S::BAD_REQUEST, None),
        Reason::InvalidEmail => (S::BAD_REQUEST, None),
        Reason::InvalidRole => (S::BAD_REQUEST, None),
        Reason::InvalidBotOwner => (S::BAD_REQUEST, None),
        Reason::SessionExpired => (
            S::UNAUTHORIZED,
            Some("Invalid or expired session, please login again."),
        ),
        Reason::PermissionDenied => (
            S::FORBIDDEN,
            Some("You do not have the appropriate permissions."),
        ),
        Reason::UserNotFound => (S::NOT_FOUND, None),
        Reason::AccessTokenNotFound => (
            S::NOT_FOUND,
            Some("Unable to get the personal access tokens by user."),
        ),
        Reason::SessionNotFound => (
            S::BAD_REQUEST,
            Some("We encountered an error finding the session."),
        ),
        Reason::CommandNotFound => (S::NOT_FOUND, Some("Unable to get the command.")),
        Reason::CommandsDisabled => (
            S::NOT_IMPLEMENTED,
            Some("Commands have been disabled by the system admin."),
        ),
        Reason::InvalidCommandTrigger => (S::BAD_REQUEST, None),
        Reason::InvalidCommandMethod => (S::BAD_REQUEST, None),
        Reason::InvalidCommandUrl => (S::BAD_REQUEST, None),
        Reason::InvalidCommandDisplayName => (S::BAD_REQUEST, None),
        Reason::InvalidCommandDescription => (S::BAD_REQUEST, None),
        Reason::DuplicateTrigger => (S::BAD_REQUEST, None),
        Reason::WebrtcDisabled => (
            S::NOT_IMPLEMENTED,
            Some("WebRTC is not enabled in this server."),
        ),
        Reason::TokenInQuery => (
            S::UNAUTHORIZED,
            Some("Session is not OAuth but token was provided in the query string."),
        ),
        Reason::RouteNotFound => (S::NOT_FOUND, Some("Sorry, we could not find the page.")),
        Reason::BodyTooLarge => (S::PAYLOAD_TOO_LARGE, None),
        Reason::BodyTimeout => (S::REQUEST_TIMEOUT, None),
        Reason::TooManyStreams => (S::SERVICE_UNAVAILABLE, None),
        Reason::UserDeactivated => (S::BAD_REQUEST, None),
        Reason::UsernameTaken => (S::BAD_REQUEST, None),
        Reason::UserIdTaken => (S::BAD_REQUEST, None),
        Reason::AccessTokensDisabled => (
            S::NOT_IMPLEMENTED,
            Some(
                "Personal access tokens are disabled on this server. Please contact your system administrator for details.",
            ),
        ),
        Reason::NonCompliantNoPolicy => (
            S::BAD_REQUEST,
            Some(
                "No maximum personal access token lifetime is configured, so no token is non-compliant.",
            ),
        ),
        Reason::NonCompliantPartial => (
            S::INTERNAL_SERVER_ERROR,
            Some(
                "Some non-compliant personal access tokens were revoked, but the batch limit was reached. Run the revocation again.",
            ),
        ),
        Reason::RevocationLogPruned => (S::GONE, None),
        Reason::WebhookNotFound => (S::NOT_FOUND, None),
        Reason::InvalidWebhookUrl => (S::BAD_REQUEST, None),
        Reason::WebhookAddressRefused => (S::BAD_REQUEST, None),
        Reason::InvalidWebhookAction => (S::BAD_REQUEST, None),
        Reason::InvalidWebhookDescription => (S::BAD_REQUEST, None),
        Reason::RateLimited => (S::TOO_MANY_REQUESTS, None),
        Reason::LeakReportsDisabled => (S::NOT_IMPLEMENTED, None),
        Reason::DatabaseUnavailable => (S::SERVICE_UNAVAILABLE, None),
        Reason::ShuttingDown => (S::SERVICE_UNAVAILABLE, None),
        Reason::Internal => (S::INTERNAL_SERVER_ERROR, None),
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let reason = err.reason();
        match &err {
            Error::InvalidArgument { field, .. } => {
                let message = match reason {
                    Reason::InvalidUrlParam => {
                        format!("Invalid or missing {field} parameter in request URL.")
                    }
                    Reason::InvalidBodyParam => {
                        format!("Invalid or missing {field} in request body.")
                    }
                    _ => rest(reason).1.map_or_else(|| err.to_string(), Into::into),
                };
                ApiError::new(reason, message, err.to_string())
            }
            Error::Unauthenticated { reason } => ApiError::from_reason(*reason),
            Error::PermissionDenied { permission } => {
                let mut api = ApiError::from_reason(reason);
                api.detailed_error = format!("permission={permission}");
                api
            }
            Error::NotFound { .. } | Error::AlreadyExists { .. } | Error::Unimplemented { .. } => {
                let message = rest(reason).1.map_or_else(|| err.to_string(), Into::into);
                ApiError::new(reason, message, "")
            }
            Error::OutOfRange { .. } => ApiError::new(reason, reason.to_string(), err.to_string()),
            Error::FailedPrecondition { .. } => {
                let message = rest(reason).1.map_or_else(|| err.to_string(), Into::into);
                ApiError::new(reason, message, err.to_string())
            }
            Error::RateLimited { retry_after_ms } => {
                let mut api = ApiError::new(reason, err.to_string(), "");
                api.retry_after_secs = Some(retry_after_secs(*retry_after_ms));
                api
            }
            Error::Unavailable(cause) => {
                warn!(cause = %cause, "database unavailable");
                ApiError::new(reason, err.to_string(), "")
            }
            Error::ShuttingDown => ApiError::new(reason, err.to_string(), ""),
            Error::ResourceExhausted { .. } => ApiError::new(reason, err.to_string(), ""),
            Error::Internal(cause) => {
                error!(cause = %cause, "internal error");
                ApiError::new(reason, "An internal error occurred.", "")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// `Retry-After`'s value for a wait of `retry_after_ms`: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::permissions::Permission;

    #[test]
    fn statuses_follow_mattermost() {
        let cases = [
            (
                Error::invalid("user_id", Reason::InvalidUrlParam, "bad"),
                400,
            ),
            (
                Error::Unauthenticated {
                    reason: Reason::SessionExpired,
                },
                401,
            ),
            (
                Error::PermissionDenied {
                    permission: Permission::ManageSystem,
                },
                403,
            ),
            (
                Error::NotFound {
                    reason: Reason::AccessTokenNotFound,
                },
                404,
            ),
            (
                Error::NotFound {
                    reason: Reason::SessionNotFound,
                },
                400,
            ),
            (
                Error::Unimplemented {
                    reason: Reason::AccessTokensDisabled,
                },
                501,
            ),
            (Error::Unavailable("x".into()), 503),
            (Error::Internal("database says secret".into()), 500),
        ];
        for (err, status) in cases {
            let api = ApiError::from(err);
            assert_eq!(api.status.as_u16(), status, "{api:?}");
            assert!(!api.message.contains("secret") && !api.detailed_error.contains("secret"));
        }
    }

    #[test]
    fn invalid_params_use_mattermost_messages_and_keep_the_rule() {
        let api = ApiError::from(Error::invalid(
            "description",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
        assert_eq!(api.id, "api.context.invalid_body_param.app_error");
        assert_eq!(
            api.message,
            "Invalid or missing description in request body."
        );
        assert_eq!(api.detailed_error, "description: must not be empty");
    }

    #[test]
    fn messages_are_mattermosts_english_texts_and_keep_our_detail() {
        let api = ApiError::from(Error::NotFound {
            reason: Reason::AccessTokenNotFound,
        });
        assert_eq!(
            api.message,
            "Unable to get the personal access tokens by user."
        );
        let api = ApiError::from(Error::invalid(
            "description",
            Reason::TokenDescriptionTooLong,
            "must be at most 255 bytes",
        ));
        assert_eq!(
            api.message,
            "Invalid description, must be 255 or less characters."
        );
        assert_eq!(api.detailed_error, "description: must be at most 255 bytes");
        assert_eq!(
            ApiError::from_reason(Reason::TokenInQuery).message,
            "Session is not OAuth but token was provided in the query string."
        );
    }

    #[test]
    fn app_error_json_keeps_mattermosts_key_order() {
        let json = ApiError::session_expired().to_json("rid", false);
        assert_eq!(
            json,
            r#"{"id":"api.context.session_expired.app_error","message":"Invalid or expired session, please login again.","detailed_error":"","request_id":"rid","status_code":401}"#
        );
    }

    #[test]
    fn detail_is_shown_only_in_developer_mode_except_for_the_router_404() {
        let api = ApiError::from(Error::invalid(
            "description",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
        let body = |developer| -> serde_json::Value {
            serde_json::from_str(&api.to_json("rid", developer)).unwrap()
        };
        assert_eq!(body(false)["detailed_error"], "");
        assert_eq!(
            body(true)["detailed_error"],
            "description: must not be empty"
        );
        assert_eq!(
            body(false)["message"],
            "Invalid or missing description in request body."
        );
        let not_found = ApiError::route_not_found("/api/v4/nope");
        let body: serde_json::Value =
            serde_json::from_str(&not_found.to_json("rid", false)).unwrap();
        assert!(
            body["detailed_error"]
                .as_str()
                .unwrap()
                .contains("url='/api/v4/nope'")
        );
    }
}
