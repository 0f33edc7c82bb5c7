//! Request authentication exactly as Mattermost parses it (`ParseAuthTokenFromRequest`): the
//! `MMAUTHTOKEN` cookie, then the `Authorization` header (`Bearer`/`Token`), then the
//! `access_token` query parameter (which only OAuth sessions may use), with the CSRF check
//! on cookie-authenticated writes. Every failure is 401
//! `api.context.session_expired.app_error`; a presented token that does not authenticate
//! also clears the `MMAUTHTOKEN` cookie, as Mattermost does.

use axum::{
    extract::FromRequestParts,
    http::{HeaderName, Method, header, request::Parts},
};

use super::{RestState, error::ApiError};
use crate::domain::{
    caller::Caller,
    credentials::{Presentation, PresentedRequest, check_presentation, presented_token},
    error::Error,
    secret::PlainToken,
};

/// The authenticated caller of a REST request.
#[derive(Debug)]
pub(crate) struct Authenticated(pub(crate) Caller);

/// `X-CSRF-Token` and `X-Requested-With`, named once (a lookup by `&str` parses and
/// lowercases the name on every request).
const CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");
const REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// The parts of `parts` that carry a credential. The CSRF headers are read for a write only:
/// nothing else looks at them.
fn presented(parts: &Parts, write: bool) -> PresentedRequest<'_> {
    let header = |name: &HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let for_write = |name: &HeaderName| if write { header(name) } else { None };
    PresentedRequest {
        cookie_headers: parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect(),
        // Go's Header.Get: the first Authorization header.
        authorization: header(&header::AUTHORIZATION),
        query: parts.uri.query(),
        write,
        csrf_header: for_write(&CSRF_TOKEN),
        requested_with: for_write(&REQUESTED_WITH),
    }
}

impl FromRequestParts<RestState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        authenticate(parts, state, Unknown::Refuse)
            .await?
            .map(Authenticated)
            .ok_or_else(ApiError::session_expired)
    }
}

/// What a presented token that does not authenticate means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// 401, clearing the `MMAUTHTOKEN` cookie (Mattermost's `APISessionRequired`).
    Refuse,
    /// An anonymous request (Mattermost's `APIHandler`).
    Anonymous,
}

/// The token a request presents, cut and truncated as Mattermost does, and the rules of the
/// place it was presented in; `None` when it presents no token, or an empty one (which
/// authenticates nobody; Mattermost does not even look it up, and so leaves the cookie
/// alone). `write` says whether the request is a write, for the CSRF rule of the cookie: the
/// REST shim passes its own method, `/auth/verify` the original request's. Shared by every
/// route that reads a credential the way the REST shim does.
pub(super) fn presented_credential(
    parts: &Parts,
    write: bool,
) -> Option<(PlainToken, Presentation<'_>)> {
    let request = presented(parts, write);
    let (raw, location) = request.find_token()?;
    let token = presented_token(&raw)?;
    Some((token, request.presentation(location)))
}

/// The caller a request presents, `None` when it presents no token (or an empty one), or,
/// with [`Unknown::Anonymous`], one that does not authenticate.
async fn authenticate(
    parts: &Parts,
    state: &RestState,
    unknown: Unknown,
) -> Result<Option<Caller>, ApiError> {
    let ctx = &state.ctx;
    let Some((token, presentation)) = presented_credential(parts, parts.method != Method::GET)
    else {
        return Ok(None);
    };
    let principal = match ctx.authenticate_caller(&token).await {
        Ok(principal) => principal,
        Err(Error::Unauthenticated { .. }) if unknown == Unknown::Anonymous => return Ok(None),
        Err(err @ Error::Unauthenticated { .. }) => {
            return Err(ApiError::from(err).clearing_session_cookie());
        }
        Err(err) => return Err(ApiError::from(err)),
    };
    check_presentation(&principal, presentation, ctx.policy().strict_csrf)?;
    crate::telemetry::record_caller(&principal);
    Ok(Some(Caller::User(principal)))
}

/// The caller of a route that serves anonymous requests too (Mattermost's `APIHandler`, as
/// for logout): a token that does not authenticate leaves the request anonymous instead of
/// failing it. What a valid token must still satisfy fails as on every route: the
/// `access_token` query parameter (401 `api.context.token_provided.app_error`) and the CSRF
/// check of cookie-authenticated writes; an unreachable database is still 503.
#[derive(Debug)]
pub(crate) struct MaybeAuthenticated(pub(crate) Option<Caller>);

impl FromRequestParts<RestState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        authenticate(parts, state, Unknown::Anonymous)
            .await
            .map(MaybeAuthenticated)
    }
}
