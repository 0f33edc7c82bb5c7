//! Where a credential is presented, and the rules of each place: cutting the token out of an
//! `Authorization` header, a cookie or a query parameter exactly as Mattermost does, and what
//! each place additionally requires once the token has authenticated (CSRF evidence for
//! cookie-authenticated writes; only OAuth sessions in the query string).

use std::borrow::Cow;

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
    // No more bytes than the limit means no more characters (every token this service
    // mints): nothing to count.
    let end = if raw.len() <= MAX_PRESENTED_TOKEN_CHARS {
        raw.len()
    } else {
        raw.char_indices()
            .nth(MAX_PRESENTED_TOKEN_CHARS)
            .map_or(raw.len(), |(at, _)| at)
    };
    (end > 0).then(|| PlainToken::from_presented(&raw[..end]))
}

/// Where a request presented its token, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The `MMAUTHTOKEN` cookie.
    Cookie,
    /// The `Authorization` header (`Bearer` or `Token`).
    Header,
    /// The `access_token` query parameter.
    Query,
}

/// The parts of an HTTP request that carry a credential, as any front end sees them (the
/// REST shim, or a gateway asking on a request's behalf).
#[derive(Debug, Clone, Default)]
pub struct PresentedRequest<'a> {
    /// The values of every `Cookie` header, in order.
    pub cookie_headers: Vec<&'a [u8]>,
    /// The first `Authorization` header (Go's `Header.Get`).
    pub authorization: Option<&'a str>,
    /// The query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// The method is not GET (a cookie-authenticated write needs CSRF evidence).
    pub write: bool,
    /// The `X-CSRF-Token` header.
    pub csrf_header: Option<&'a str>,
    /// The `X-Requested-With` header.
    pub requested_with: Option<&'a str>,
}

impl<'a> PresentedRequest<'a> {
    /// The token the request presents and where, as Mattermost's `ParseAuthTokenFromRequest`
    /// picks it: the `MMAUTHTOKEN` cookie, then the `Authorization` header, then the
    /// `access_token` query parameter. The first place that has one wins, even when its value
    /// is empty (then nobody is authenticated).
    ///
    /// The header's token is borrowed: [`presented_token`] makes the one copy a check needs.
    pub fn find_token(&self) -> Option<(Cow<'a, str>, Location)> {
        if let Some(value) = cookie(self.cookie_headers.iter().copied(), "MMAUTHTOKEN") {
            return Some((Cow::Owned(value), Location::Cookie));
        }
        if let Some(token) = self.authorization.and_then(authorization_header_token) {
            return Some((Cow::Borrowed(token), Location::Header));
        }
        query_get(self.query, "access_token").map(|t| (Cow::Owned(t), Location::Query))
    }

    /// What the place `location` requires of this request once its token authenticated.
    pub fn presentation(&self, location: Location) -> Presentation<'a> {
        match location {
            Location::Header => Presentation::Header,
            Location::Query => Presentation::Query,
            Location::Cookie => Presentation::Cookie {
                write: self.write,
                csrf_header: self.csrf_header,
                requested_with: self.requested_with,
            },
        }
    }
}

/// Go's `Request.Cookie(name)` over the values of every `Cookie` header, in order: the first
/// well-formed cookie of that name. A cookie is present even with an empty value
/// (`MMAUTHTOKEN=` or a bare `MMAUTHTOKEN`); surrounding double quotes are removed; a value
/// with a byte Go refuses makes that cookie absent.
pub fn cookie<'a>(
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    name: &str,
) -> Option<String> {
    let trim = |s: &[u8]| -> Vec<u8> { s.trim_ascii().to_vec() };
    for line in cookie_headers {
        for part in line.split(|b| *b == b';') {
            let part = trim(part);
            if part.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = match part.iter().position(|b| *b == b'=') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => (&part[..], &b""[..]),
            };
            if trim(raw_name) != name.as_bytes() {
                continue;
            }
            if let Some(value) = cookie_value(raw_value) {
                return Some(value);
            }
        }
    }
    None
}

/// Go's `parseCookieValue(raw, true)`.
fn cookie_value(raw: &[u8]) -> Option<String> {
    let raw = match raw {
        [b'"', inner @ .., b'"'] => inner,
        _ => raw,
    };
    raw.iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b';' && b != b'\\')
        .then(|| String::from_utf8_lossy(raw).into_owned())
}

/// Go's `URL.Query().Get(name)`: pairs split on `&`, a pair containing `;` or an invalid
/// `%` escape is skipped, `+` is a space, and the first value wins. `None` when absent.
pub fn query_get(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = query_unescape(key)?;
            if key != name {
                return None;
            }
            query_unescape(value)
        })
}

/// Go's `url.QueryUnescape`; `None` on a malformed escape. Bytes that are not UTF-8 once
/// decoded are replaced (a Rust string must be UTF-8).
pub fn query_unescape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
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

    #[test]
    fn a_presented_token_is_cut_to_50_characters_not_bytes() {
        let cut = |raw: &str| presented_token(raw).map(|t| t.expose().to_owned());
        assert_eq!(cut(""), None);
        assert_eq!(cut(&"a".repeat(50)), Some("a".repeat(50)));
        assert_eq!(cut(&"a".repeat(51)), Some("a".repeat(50)));
        // 30 two-byte characters: 60 bytes, under 50 characters, kept whole.
        assert_eq!(cut(&"ä".repeat(30)), Some("ä".repeat(30)));
        assert_eq!(cut(&"ä".repeat(60)), Some("ä".repeat(50)));
    }

    #[test]
    fn cookies_follow_go() {
        let get = |values: &[&str]| cookie(values.iter().map(|v| v.as_bytes()), "MMAUTHTOKEN");
        assert_eq!(get(&["a=1; MMAUTHTOKEN=abc"]).as_deref(), Some("abc"));
        assert_eq!(get(&["MMAUTHTOKEN="]).as_deref(), Some(""));
        assert_eq!(get(&["MMAUTHTOKEN"]).as_deref(), Some(""));
        assert_eq!(get(&["MMAUTHTOKEN=\"abc\""]).as_deref(), Some("abc"));
        assert_eq!(
            get(&["MMAUTHTOKEN=a\\b; MMAUTHTOKEN=good"]).as_deref(),
            Some("good")
        );
        assert_eq!(
            get(&["x=1", "MMAUTHTOKEN=second"]).as_deref(),
            Some("second")
        );
        assert_eq!(get(&["MMAUTHTOKENX=1"]), None);
        assert_eq!(get(&[]), None);
    }
}
