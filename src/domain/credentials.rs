//! Where a credential is presented, and the rules of each place: cutting the token out of an
//! `Authorization` header, a cookie or a query parameter exactly as Mattermost does, and what
//! each place additionally requires once the token has authenticated (CSRF evidence for
//! cookie-authenticated writes; only OAuth sessions in the query string).

use super::{
    caller::Principal,
    error::{Error, Reason, Result},
    model::Session,
    secret::PlainToken,
};

/// Mattermost truncates presented tokens to this many characters.
const MAX_PRESENTED_TOKEN_CHARS: usize = 50;

/// Extracts the token from an `Authorization` header value exactly as Mattermost does:
/// `Bearer` (any case) followed by one separator character, or `Token` (any case) followed
/// by one separator; the token is truncated to 50 characters. `None` when there is no token.
pub fn parse_authorization_header(value: &str) -> Option<PlainToken> {
    authorization_header_token(value).and_then(presented_token)
}

/// The token part of an `Authorization` header value as Mattermost cuts it, before
/// truncation: `None` when the scheme is neither `Bearer` nor `Token`; empty for a bare
/// `Bearer ` (Mattermost then goes on with an empty token, which authenticates nobody,
/// instead of looking further).
pub fn authorization_header_token(value: &str) -> Option<&str> {
    let scheme_is = |len: usize, scheme: &str| {
        value
            .get(..len)
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    if scheme_is(6, "bearer") {
        value.get(7..)
    } else if scheme_is(5, "token") {
        value.get(6..)
    } else {
        None
    }
}

/// A token as presented in a cookie, header or query parameter: truncated to 50 characters
/// as Mattermost does; `None` when empty.
pub fn presented_token(raw: &str) -> Option<PlainToken> {
    let end = raw
        .char_indices()
        .nth(MAX_PRESENTED_TOKEN_CHARS)
        .map_or(raw.len(), |(at, _)| at);
    (end > 0).then(|| PlainToken::from_presented(raw[..end].to_owned()))
}

/// Where a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation<'a> {
    /// An `Authorization` header (or gRPC metadata): nothing more is required.
    Header,
    /// The session cookie. A write (any method but GET) must carry CSRF evidence.
    Cookie {
        /// The request is a write.
        write: bool,
        /// The `X-CSRF-Token` header.
        csrf_header: Option<&'a str>,
        /// The `X-Requested-With` header.
        requested_with: Option<&'a str>,
    },
    /// The `access_token` query parameter: only OAuth sessions may be sent there.
    Query,
}

/// The rules of the place a token was presented in, checked after it authenticated:
/// `Unauthenticated` with `TokenInQuery` for a non-OAuth session in the query string, and
/// with `SessionExpired` for a cookie-authenticated write without CSRF evidence (Mattermost's
/// answers).
pub fn check_presentation(
    principal: &Principal,
    presentation: Presentation<'_>,
    strict_csrf: bool,
) -> Result<()> {
    let refused = |reason| Err(Error::Unauthenticated { reason });
    match presentation {
        Presentation::Query if !principal.session.is_oauth => refused(Reason::TokenInQuery),
        Presentation::Cookie {
            write: true,
            csrf_header,
            requested_with,
        } if !csrf_allows(&principal.session, csrf_header, requested_with, strict_csrf) => {
            refused(Reason::SessionExpired)
        }
        _ => Ok(()),
    }
}

/// Mattermost's CSRF rule for cookie-authenticated writes: the `X-CSRF-Token` header equals
/// the session's `csrf` prop, or (legacy fallback, unless strict) the request carries
/// `X-Requested-With: XMLHttpRequest`.
pub fn csrf_allows(
    session: &Session,
    csrf_header: Option<&str>,
    requested_with: Option<&str>,
    strict: bool,
) -> bool {
    let expected = session.props.get("csrf").map(String::as_str).unwrap_or("");
    let header_matches = match csrf_header {
        // An empty expected value never matches (Mattermost would let "" == "" pass).
        Some(sent) if !expected.is_empty() => {
            subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), expected.as_bytes()).into()
        }
        _ => false,
    };
    header_matches || (!strict && requested_with == Some("XMLHttpRequest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(header: &str) -> Option<String> {
        parse_authorization_header(header).map(|t| t.expose().to_owned())
    }

    #[test]
    fn authorization_header_follows_mattermost() {
        assert_eq!(parsed("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(parsed("BEARER abc").as_deref(), Some("abc"));
        assert_eq!(parsed("bearer abc").as_deref(), Some("abc"));
        assert_eq!(parsed("Token abc").as_deref(), Some("abc"));
        assert_eq!(parsed("TOKEN abc").as_deref(), Some("abc"));
        assert_eq!(parsed("Bearerxyz").as_deref(), Some("yz"));
        assert_eq!(parsed("Bearer  x").as_deref(), Some(" x"));
        assert_eq!(parsed("Bearer "), None);
        assert_eq!(authorization_header_token("Bearer "), Some(""));
        assert_eq!(authorization_header_token("Bearer"), None);
        assert_eq!(authorization_header_token("Basic abc"), None);
        assert_eq!(parsed("Basic abc"), None);
        assert_eq!(parsed(""), None);
        let long = format!("Bearer {}", "a".repeat(80));
        assert_eq!(parsed(&long).unwrap().len(), 50);
        // Multi-byte input never panics.
        assert_eq!(parsed("Beäre x"), None);
        assert_eq!(parsed("Beaäer x"), None);
        assert_eq!(parsed("Bearerä"), None);
    }
}
