//! `domain::Error` to `tonic::Status`, once, exhaustively. Every status carries a
//! `google.rpc.ErrorInfo` whose reason is the stable error id (Mattermost's where it has one);
//! invalid arguments also carry a `google.rpc.BadRequest` field violation. Internal and
//! unavailable errors send a fixed message; their cause is logged here, never sent.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::{error, warn};

use crate::domain::error::Error;

/// The `ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "token-service";

/// Maps a domain error to a gRPC status, so handlers convert with `?`.
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let reason = err.reason();
        let mut details = ErrorDetails::new();
        let mut metadata = HashMap::new();
        let (code, message) = match &err {
        Error::InvalidArgument { field, rule, .. } => {
            details.add_bad_request_violation(*field, rule.clone());
            metadata.insert("field".to_owned(), (*field).to_owned());
            (Code::InvalidArgument, err.to_string())
        }
        Error::Unauthenticated { .. } => (
            Code::Unauthenticated,
            "a valid session token or personal access token is required (authorization: Bearer <token>)"
                .to_owned(),
        ),
        Error::PermissionDenied { permission } => {
            metadata.insert("permission".to_owned(), permission.id().to_owned());
            (Code::PermissionDenied, err.to_string())
        }
        Error::NotFound { .. } => (Code::NotFound, err.to_string()),
        Error::AlreadyExists { field, .. } => {
            metadata.insert("field".to_owned(), (*field).to_owned());
            (Code::AlreadyExists, err.to_string())
        }
        Error::OutOfRange { field, .. } => {
            metadata.insert("field".to_owned(), (*field).to_owned());
            (Code::OutOfRange, err.to_string())
        }
        Error::Unimplemented { .. } => (Code::Unimplemented, err.to_string()),
        Error::FailedPrecondition { .. } => (Code::FailedPrecondition, err.to_string()),
        Error::RateLimited { retry_after_ms } => {
            details.set_retry_info(Some(std::time::Duration::from_millis(*retry_after_ms)));
            metadata.insert("retry_after_ms".to_owned(), retry_after_ms.to_string());
            (Code::ResourceExhausted, err.to_string())
        }
        Error::ResourceExhausted { .. } => (Code::ResourceExhausted, err.to_string()),
        Error::Unavailable(cause) => {
            warn!(cause = %cause, "database unavailable");
            (Code::Unavailable, err.to_string())
        }
        Error::ShuttingDown => (Code::Unavailable, err.to_string()),
        Error::Internal(cause) => {
            error!(cause = %cause, "internal error");
            (Code::Internal, err.to_string())
        }
    };
        details.set_error_info(reason.id(), ERROR_DOMAIN, metadata);
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{error::Reason, permissions::Permission};

    fn reason_of(status: &Status) -> String {
        status.get_details_error_info().unwrap().reason
    }

    #[test]
    fn every_kind_maps_to_its_code_and_id() {
        let cases = [
            (
                Error::invalid("user_id", Reason::InvalidUrlParam, "bad"),
                Code::InvalidArgument,
                "api.context.invalid_url_param.app_error",
            ),
            (
                Error::Unauthenticated {
                    reason: Reason::SessionExpired,
                },
                Code::Unauthenticated,
                "api.context.session_expired.app_error",
            ),
            (
                Error::PermissionDenied {
                    permission: Permission::ManageSystem,
                },
                Code::PermissionDenied,
                "api.context.permissions.app_error",
            ),
            (
                Error::NotFound {
                    reason: Reason::AccessTokenNotFound,
                },
                Code::NotFound,
                "app.user_access_token.get_by_user.app_error",
            ),
            (
                Error::AlreadyExists {
                    field: "username",
                    reason: Reason::UsernameTaken,
                },
                Code::AlreadyExists,
                "app.user.save.username_exists.app_error",
            ),
            (
                Error::Unimplemented {
                    reason: Reason::AccessTokensDisabled,
                },
                Code::Unimplemented,
                "app.user_access_token.disabled",
            ),
            (
                Error::Unavailable("connection refused".into()),
                Code::Unavailable,
                "token_service.database_unavailable",
            ),
            (
                Error::ShuttingDown,
                Code::Unavailable,
                "token_service.shutting_down",
            ),
            (
                Error::Internal("secret database text".into()),
                Code::Internal,
                "token_service.internal_error",
            ),
        ];
        for (err, code, id) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(reason_of(&status), id);
            assert!(!status.message().contains("secret database text"));
        }
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(Error::invalid(
            "description",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
        let bad = status.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "description");
        assert_eq!(status.message(), "description: must not be empty");
    }

    #[test]
    fn permission_denied_names_the_permission() {
        let status = Status::from(Error::PermissionDenied {
            permission: Permission::EditOtherUsers,
        });
        assert!(status.message().contains("edit_other_users"));
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.metadata["permission"], "edit_other_users");
    }
}
