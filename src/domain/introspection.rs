//! IntrospectToken, the hot path: is this token valid, and whose is it?

use std::sync::Arc;

use super::{
    Context,
    caller::{Caller, Principal},
    error::{Error, Reason, Result},
    permissions::Permission,
    secret::PlainToken,
};

/// Checks `token` for an internal service. `Ok(None)` means the token does not authenticate
/// (unknown, revoked, disabled, expired, or its user deactivated): a normal answer, not an
/// error. An error means the question could not be decided (for example the database is
/// unavailable). Never writes to the database, except minting a personal access token's
/// session on its very first use.
pub async fn introspect_token(
    ctx: &Context,
    caller: &Caller,
    token: &str,
) -> Result<Option<Arc<Principal>>> {
    ctx.require_permission(caller, Permission::IntrospectToken)?;
    if token.is_empty() {
        return Err(Error::invalid(
            "token",
            Reason::InvalidBodyParam,
            "must not be empty",
        ));
    }
    match ctx.authenticate(&PlainToken::from_presented(token)).await {
        Ok(principal) => Ok(Some(principal)),
        Err(Error::Unauthenticated { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}
