//! Request authentication exactly as Mattermost parses it: the `MMAUTHTOKEN` cookie, then the
//! `Authorization` header (`Bearer`/`Token`), then the `access_token` query parameter (which
//! only OAuth sessions may use), with the CSRF check on cookie-authenticated writes. Every
//! failure is 401 `api.context.session_expired.app_error`.

use axum::{
    extract::FromRequestParts,
    http::{Method, request::Parts},
};

use super::{RestState, error::ApiError};
use crate::domain::{
    auth::{Caller, csrf_allows, parse_authorization_header, presented_token},
    error::Reason,
    secret::PlainToken,
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

fn cookie_token(parts: &Parts) -> Option<PlainToken> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "MMAUTHTOKEN")
                .then(|| presented_token(value))
                .flatten()
        })
}

fn query_token(parts: &Parts) -> Option<PlainToken> {
    let query = parts.uri.query()?;
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "access_token")
            .then(|| presented_token(value))
            .flatten()
    })
}

fn find_token(parts: &Parts) -> Option<(PlainToken, Location)> {
    if let Some(token) = cookie_token(parts) {
        return Some((token, Location::Cookie));
    }
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_authorization_header);
    if let Some(token) = header {
        return Some((token, Location::Header));
    }
    query_token(parts).map(|t| (t, Location::Query))
}

impl FromRequestParts<RestState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        let ctx = &state.ctx;
        let (token, location) = find_token(parts).ok_or_else(ApiError::session_expired)?;
        let principal = ctx.authenticate(&token).await.map_err(ApiError::from)?;
        match location {
            Location::Query if !principal.session.is_oauth => {
                return Err(ApiError::from_reason(Reason::TokenInQuery));
            }
            Location::Cookie if parts.method != Method::GET => {
                let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
                if !csrf_allows(
                    &principal.session,
                    header("X-CSRF-Token"),
                    header("X-Requested-With"),
                    ctx.policy().strict_csrf,
                ) {
                    return Err(ApiError::session_expired());
                }
            }
            _ => {}
        }
        Ok(Authenticated(Caller::User(Box::new(principal))))
    }
}
