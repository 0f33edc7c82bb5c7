//! Revoke by value: whoever finds a token (in a public repository, a paste, a log) reports it,
//! without an account, and the token stops working at once, as GitHub's credential-revocation
//! API does. Each live personal access token reported is revoked, each live login session
//! ended, on every replica through the revocation log; the owner is told by the lifecycle log
//! (`access_token.leaked`, `session.leaked`, with the reporter's address and the `url` where
//! the token was found) and so by webhooks. The answer is the same whatever the tokens were,
//! so the endpoint cannot be used to learn which strings are live tokens, and each address may
//! report only a few times a minute (`leak_reports.*`).
//!
//! Slash-command tokens are not covered: they are stored encrypted under their command's
//! record, not as a digest, so they cannot be found by value; regenerate a leaked one.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;
use tracing::warn;

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    lifecycle::{Action, Actor, NewRecord, Origin, RequestOrigin},
    model::{AccessTokenChange, Revocation, Session, TokenWrite, UserAccessToken},
    rate_limit::RateLimit,
    secret::{PlainToken, TokenDigest},
};

/// Most tokens one report may carry.
pub const MAX_REPORTED_TOKENS: usize = 1000;

/// Longest `url`, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// Longest string looked at as a token: longer ones cannot be a token (tokens are at most 50
/// characters) and are skipped unread.
const MAX_TOKEN_BYTES: usize = 256;

/// Leaked-token reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakReportPolicy {
    /// Serve ReportLeakedTokens.
    pub enable: bool,
    /// Reports per client address (the local operator is not limited).
    pub limit: RateLimit,
}

impl Default for LeakReportPolicy {
    fn default() -> Self {
        Self {
            enable: true,
            limit: RateLimit {
                per_minute: 10,
                burst: 10,
            },
        }
    }
}

/// The credentials whose secrets have one of the digests asked for, each with its stored
/// digest (what the store finds for a report).
#[derive(Debug, Default)]
pub struct CredentialsByDigest {
    /// Personal access tokens.
    pub access_tokens: Vec<(UserAccessToken, TokenDigest)>,
    /// Login sessions (not the sessions minted for a personal access token: they go with
    /// their token).
    pub sessions: Vec<(Session, TokenDigest)>,
}

/// A report: the strings found, and where (optional).
#[derive(Clone, Default)]
pub struct LeakReport {
    /// Candidate tokens, as found (1 to 1000).
    pub tokens: Vec<String>,
    /// Where they were found (an http(s) URL), or "".
    pub url: String,
}

impl fmt::Debug for LeakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakReport")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("url", &self.url)
            .finish()
    }
}

/// The answer to a report: the same for any tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakReceipt {
    /// How many strings the report carried.
    pub received: usize,
}

/// Revokes every live credential among `report.tokens`. `caller` is `None` for an anonymous
/// reporter (the usual case). Errors: `tokens` empty or over 1000, or `url` malformed
/// (INVALID_ARGUMENT naming the field); the address over its rate limit (`RateLimited`);
/// reports switched off (`Unimplemented`). Which tokens were live is never returned.
pub async fn report_leaked_tokens(
    ctx: &Context,
    caller: Option<&Caller>,
    report: LeakReport,
) -> Result<LeakReceipt> {
    if !ctx.policy().leak_reports.enable {
        return Err(Error::Unimplemented {
            reason: Reason::LeakReportsDisabled,
        });
    }
    let now = ctx.now();
    if !matches!(caller, Some(Caller::Local)) {
        let address = RequestOrigin::with_current(|o| o.and_then(|o| o.ip))
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if let Err(refused) = ctx.leak_report_limiter().admit(address, now) {
            ctx.metrics().record_leak_report("rate_limited");
            return Err(refused);
        }
    }
    validate(&report)?;
    let received = report.tokens.len();

    // The candidates that could be tokens at all (shape and checksum), once each.
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for raw in &report.tokens {
        let raw = raw.trim();
        if raw.len() > MAX_TOKEN_BYTES || !seen.insert(raw) {
            continue;
        }
        let token = PlainToken::from_presented(raw);
        if token.shape().may_authenticate() {
            let digest = ctx.hasher().digest(&token);
            candidates.push((token, digest));
        }
    }
    let digests: Vec<_> = candidates.iter().map(|(_, d)| d.clone()).collect();
    let found = ctx.store().find_credentials_by_digests(&digests).await?;

    let actor = caller.map_or(Actor::Unknown, Actor::of);
    let origin = Origin::current();
    let detail = json!({"url": report.url, "reason": "reported_leaked"});
    let plain = |digest: &TokenDigest| {
        candidates
            .iter()
            .find(|(_, d)| d.matches(digest))
            .map(|(t, _)| t)
    };
    let mut revoked = 0usize;
    for (token, digest) in &found.access_tokens {
        let revocation = Revocation::AccessToken(token.id.clone());
        let mut record =
            NewRecord::new_with(Action::AccessTokenLeaked, actor.clone(), origin.clone())
                .user(&token.user_id)
                .token(&token.id)
                .detail(detail.clone())
                .revokes(revocation.clone());
        if let Some(value) = plain(digest) {
            record = record.credential(ctx.audit_key(), value);
        }
        let change = AccessTokenChange {
            token: TokenWrite::Delete,
            at: now,
            delete_minted_sessions: true,
            revocation: Some(revocation.clone()),
        };
        if ctx
            .store()
            .change_access_token(&token.id, &token.user_id, &change, &record)
            .await?
        {
            ctx.revoked_here(&revocation);
            revoked += 1;
            warn!(target: "audit", action = "access_token_leaked", token_id = %token.id,
                user_id = %token.user_id, ip = %origin.ip,
                "a leaked personal access token was reported and revoked");
        }
    }
    for (session, digest) in &found.sessions {
        let revocation = Revocation::Session(session.id.clone());
        let mut record = NewRecord::new_with(Action::SessionLeaked, actor.clone(), origin.clone())
            .user(&session.user_id)
            .session(&session.id)
            .detail(detail.clone())
            .revokes(revocation.clone());
        if let Some(value) = plain(digest) {
            record = record.credential(ctx.audit_key(), value);
        }
        if ctx
            .store()
            .delete_session(&session.id, now, &record)
            .await?
        {
            ctx.revoked_here(&revocation);
            revoked += 1;
            warn!(target: "audit", action = "session_leaked", session_id = %session.id,
                user_id = %session.user_id, ip = %origin.ip,
                "a leaked session token was reported and the session ended");
        }
    }
    ctx.metrics().record_leak_report("accepted");
    ctx.metrics()
        .record_leaked_credentials_revoked(revoked as u64);
    Ok(LeakReceipt { received })
}

fn validate(report: &LeakReport) -> Result<()> {
    if report.tokens.is_empty() || report.tokens.len() > MAX_REPORTED_TOKENS {
        return Err(Error::invalid(
            "tokens",
            Reason::InvalidBodyParam,
            format!("must hold 1 to {MAX_REPORTED_TOKENS} tokens"),
        ));
    }
    let url = &report.url;
    if url.is_empty() {
        return Ok(());
    }
    let scheme_ok = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        || url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    if url.len() > MAX_URL_BYTES || !scheme_ok || url.chars().any(char::is_control) {
        return Err(Error::invalid(
            "url",
            Reason::InvalidBodyParam,
            format!("must be an http(s) URL of at most {MAX_URL_BYTES} bytes, or empty"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(tokens: usize, url: &str) -> LeakReport {
        LeakReport {
            tokens: vec!["x".to_owned(); tokens],
            url: url.to_owned(),
        }
    }

    fn field(result: Result<()>) -> &'static str {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn reports_are_validated() {
        assert!(validate(&report(1, "")).is_ok());
        assert!(validate(&report(1000, "https://github.com/acme/app/blob/main/.env")).is_ok());
        assert!(validate(&report(1, "HTTP://example.com")).is_ok());
        assert_eq!(field(validate(&report(0, ""))), "tokens");
        assert_eq!(field(validate(&report(1001, ""))), "tokens");
        assert_eq!(field(validate(&report(1, "ftp://example.com"))), "url");
        assert_eq!(field(validate(&report(1, "example.com"))), "url");
        assert_eq!(field(validate(&report(1, "https://a\n.com"))), "url");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(field(validate(&report(1, &long))), "url");
    }

    #[test]
    fn reports_never_print_their_tokens() {
        let r = LeakReport {
            tokens: vec!["mmp_secretsecret".to_owned()],
            url: String::new(),
        };
        assert!(!format!("{r:?}").contains("secretsecret"));
    }
}
