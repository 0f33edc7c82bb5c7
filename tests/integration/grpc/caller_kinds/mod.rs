//! Every RPC against every kind of caller: permission matrices with one row per kind of
//! caller (no credential, garbage, revoked, disabled, a deactivated user's, an owner, a
//! stranger, a manager, an admin, a bot, by session and by token).
//!
//! - [`tokens`]: the personal access token RPCs and IntrospectToken, one table per kind,
//!   each call also checked for its effect.
//! - [`sessions`]: the session, slash command and WebRTC RPCs in one table of status codes;
//!   the credentials it tries, and the session calls.
//! - [`commands`]: that table's team, command and WebRTC calls.
//! - [`users`]: GetUser, GetUserByUsername and Logout, on the credentials of [`sessions`].
//! - [`webhooks`]: the webhook RPCs (manage_system), on the same credentials.
//! - [`audit`]: ListAuditRecords, ComputeAuditHash and VerifyAuditLog, on the same credentials
//!   plus a system_auditor's.
//! - [`non_compliant`]: Count/RevokeNonCompliantUserAccessTokens (manage_system), on the
//!   same credentials.
//!
//! Outcomes read as the tables print them: [`outcome`] for the token table, [`code`] for the
//! other; an UNAUTHENTICATED always carries Mattermost's session-expired error id.

mod audit;
mod commands;
mod non_compliant;
mod sessions;
mod tokens;
pub(crate) use tokens::scoped_pat;
mod users;
mod webhooks;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::common::*;

/// The token table's outcome of an accepted call.
const OK: &str = "ok";
/// The token table's outcome of a credential that does not authenticate.
const UNAUTHENTICATED: &str = "unauthenticated";

/// Mattermost's error id for a credential that does not authenticate.
const SESSION_EXPIRED: &str = "api.context.session_expired.app_error";

/// A refusal as the token table writes it: `unauthenticated`; `denied: <permission named>`;
/// `<code>: <error id>` for anything else.
fn describe(status: &Status) -> String {
    let id = error_id(status);
    match status.code() {
        Code::Unauthenticated if id == SESSION_EXPIRED => UNAUTHENTICATED.to_owned(),
        Code::PermissionDenied => {
            let info = status.get_details_error_info().expect("ErrorInfo");
            format!("denied: {}", info.metadata["permission"])
        }
        code => format!("{code:?}: {id}"),
    }
}

/// A call's outcome as the token table writes it: `ok`, or [`describe`]d.
fn outcome<T>(result: &Reply<T>) -> String {
    match result {
        Ok(_) => OK.to_owned(),
        Err(status) => describe(status),
    }
}

/// A call's status code, as the session table writes it.
fn code<T>(result: Reply<T>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => {
            if status.code() == Code::Unauthenticated {
                assert_eq!(error_id(&status), SESSION_EXPIRED);
            }
            status.code()
        }
    }
}
