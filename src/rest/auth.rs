//! Request authentication exactly as Mattermost parses it (`ParseAuthTokenFromRequest`): the
//! `MMAUTHTOKEN` cookie, then the `Authorization` header (`Bearer`/`Token`), then the
//! `access_token` query parameter (which only OAuth sessions may use), with the CSRF check
//! on cookie-authenticated writes. Every failure is 401
//! `api.context.session_expired.app_error`; a presented token that does not authenticate
//! also clears the `MMAUTHTOKEN` cookie, as Mattermost does.

use axum::{
    extract::FromRequestParts,
    http::{Method, request::Parts},
};

use super::{RestState, error::ApiError, go_compat};
use crate::domain::{
    caller::Caller,
    credentials::{Presentation, authorization_header_token, check_presentation, presented_token},
    error::Error,
};

/// Where the token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Cookie,
    Header,
    Query,
}

/// The authenticated caller of a REST request.
#[derive(Debug)]
pub(crate) struct Authenticated(pub(crate) Caller);

/// The token a request presents and where, as Mattermost picks it: the first place that has
/// one wins, even when its value is empty (an `MMAUTHTOKEN` cookie with no value, or a bare
/// `Bearer `), in which case nobody is authenticated.
fn find_token(parts: &Parts) -> Option<(String, Location)> {
    if let Some(value) = go_compat::cookie(&parts.headers, "MMAUTHTOKEN") {
        return Some((value, Location::Cookie));
    }
    // Go's Header.Get: the first Authorization header.
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(authorization_header_token);
    if let Some(token) = header {
        return Some((token.to_owned(), Location::Header));
    }
    go_compat::query_get(parts.uri.query(), "access_token").map(|t| (t, Location::Query))
}

impl FromRequestParts<RestState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        let ctx = &state.ctx;
        let (raw, location) = find_token(parts).ok_or_else(ApiError::session_expired)?;
        // An empty token authenticates nobody; Mattermost does not even look it up (and so
        // leaves the cookie alone).
        let token = presented_token(&raw).ok_or_else(ApiError::session_expired)?;
        let principal = match ctx.authenticate(&token).await {
            Ok(principal) => principal,
            Err(err @ Error::Unauthenticated { .. }) => {
                return Err(ApiError::from(err).clearing_session_cookie());
            }
            Err(err) => return Err(ApiError::from(err)),
        };
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let presentation = match location {
            Location::Header => Presentation::Header,
            Location::Query => Presentation::Query,
            Location::Cookie => Presentation::Cookie {
                write: parts.method != Method::GET,
                csrf_header: header("X-CSRF-Token"),
                requested_with: header("X-Requested-With"),
            },
        };
        check_presentation(&principal, presentation, ctx.policy().strict_csrf)?;
        crate::telemetry::record_caller(principal.user.id.as_str());
        Ok(Authenticated(Caller::User(principal)))
    }
}
