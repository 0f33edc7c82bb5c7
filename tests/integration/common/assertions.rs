//! What a refused gRPC call must look like: the status code, Mattermost's error id in the
//! `google.rpc.ErrorInfo` detail, the permission named, the field a BadRequest names.
//!
//! Each takes the call's result, whether a `tonic::Response` or the message an
//! [`ActorClient`](super::ActorClient) method returns.

use std::fmt::Debug;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::CallAs;

/// The `google.rpc.ErrorInfo` reason (the Mattermost error id) of a status.
pub fn error_id(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| panic!("status without ErrorInfo: {status:?}"))
}

/// Asserts a call failed with `code` and error id `id`.
#[track_caller]
pub fn assert_error<R: Debug>(result: Result<R, Status>, code: Code, id: &str) -> Status {
    let status = result.expect_err("call should fail");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    assert_eq!(error_id(&status), id, "unexpected error id: {status:?}");
    status
}

/// Asserts a call failed with PERMISSION_DENIED naming `permission`.
#[track_caller]
pub fn assert_denied<R: Debug>(result: Result<R, Status>, permission: &str) {
    let status = assert_error(
        result,
        Code::PermissionDenied,
        "api.context.permissions.app_error",
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some(permission),
        "{status:?}"
    );
    assert!(status.message().contains(permission), "{status:?}");
}

/// Asserts a call failed as unauthenticated.
#[track_caller]
pub fn assert_unauthenticated<R: Debug>(result: Result<R, Status>) {
    assert_error(
        result,
        Code::Unauthenticated,
        "api.context.session_expired.app_error",
    );
}

/// Asserts INVALID_ARGUMENT naming `field` in a BadRequest violation.
#[track_caller]
pub fn assert_invalid<R: Debug>(result: Result<R, Status>, field: &str, id: &str) {
    let status = assert_error(result, Code::InvalidArgument, id);
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail: {status:?}"));
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "field {field} not named: {status:?}"
    );
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "{status:?}"
    );
}

/// Asserts that `token` no longer authenticates on `on` (GetMe is UNAUTHENTICATED).
pub async fn assert_token_refused(on: &impl CallAs, token: &str) {
    assert_unauthenticated(on.as_(token).get_me().await);
}
