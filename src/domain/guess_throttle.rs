//! Guessing is throttled: failed checks of a caller's own credential (a presented token that
//! does not authenticate: unknown, revoked, disabled, expired, malformed, owner deactivated)
//! are counted per client address in a token bucket ([`RateLimiter`]); an address that
//! empties its bucket is refused (`Error::RateLimited`: 429 with `Retry-After` /
//! RESOURCE_EXHAUSTED with retry info) for a cool-down, on every request that presents a
//! credential, valid or not, before any cache or database work.
//!
//! The address is the request's client address as the request layer decided it (the peer,
//! or behind a trusted proxy the address its headers name; see [`crate::client_ip`]), an
//! IPv6 address counted with its whole /64. The local operator (no address) is never
//! throttled.
//!
//! Successful checks are never counted and never slowed: while no address is refused (the
//! normal state) a check reads one atomic; only a failure takes the limiter's lock.
//!
//! What counts is the caller's *own* credential ([`Context::authenticate_caller`]): the
//! gRPC `authorization` metadata, the REST shim's token (header, cookie, query), the client
//! credential of `POST /oauth2/introspect`, a gateway's own token on an ext_authz Check, and
//! the token of `GET /auth/verify` (an endpoint anyone who reaches the port may call, so it
//! must not be an unlimited oracle). A token checked *on behalf of* someone else by a
//! service that already proved it may ask (IntrospectToken's and `/oauth2/introspect`'s
//! `token`, the forwarded credential of an ext_authz Check) is not counted: an
//! introspection service or gateway legitimately sees many dead tokens, and counting them
//! against its address would let one bad client behind it lock out everybody else.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use tracing::warn;

use super::{
    Context,
    caller::Principal,
    error::{Error, Result},
    lifecycle::RequestOrigin,
    model::UnixMillis,
    rate_limit::{RateLimit, RateLimiter},
    secret::PlainToken,
};

/// Most addresses refused at once; beyond it, those whose cool-down is over are forgotten,
/// and if none is, the oldest refusals give way (the map never grows without bound).
const MAX_REFUSED: usize = 65_536;

/// The throttle's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessThrottlePolicy {
    /// Off: failures are still counted in metrics, nobody is refused.
    pub enable: bool,
    /// Failed checks an address may make at once (`burst`), and per minute sustained.
    pub limit: RateLimit,
    /// How long an address that exceeded the limit is refused, in milliseconds.
    pub cool_down_ms: i64,
}

impl Default for GuessThrottlePolicy {
    fn default() -> Self {
        Self {
            enable: true,
            limit: RateLimit {
                per_minute: 60,
                burst: 100,
            },
            cool_down_ms: 60_000,
        }
    }
}

/// The failure buckets and the addresses refused now.
#[derive(Debug)]
pub struct GuessThrottle {
    policy: GuessThrottlePolicy,
    failures: RateLimiter,
    /// Address to the end of its cool-down.
    refused: Mutex<HashMap<IpAddr, UnixMillis>>,
    /// The latest end of any cool-down: while the clock is past it, nobody is refused and a
    /// check reads only this.
    refused_until: AtomicI64,
}

impl GuessThrottle {
    /// A throttle with `policy`.
    pub fn new(policy: GuessThrottlePolicy) -> Self {
        Self {
            policy,
            failures: RateLimiter::new(policy.limit),
            refused: Mutex::new(HashMap::new()),
            refused_until: AtomicI64::new(0),
        }
    }

    /// `Error::RateLimited` (with the rest of the cool-down) if `address` is refused at
    /// `now`. Reads one atomic, and the clock (`now`) only if an address has ever been
    /// refused: the token check's common case reads no clock.
    pub fn check(&self, address: IpAddr, now: impl FnOnce() -> UnixMillis) -> Result<()> {
        let refused_until = self.refused_until.load(Ordering::Acquire);
        if refused_until == 0 {
            return Ok(());
        }
        let now = now();
        if refused_until <= now {
            return Ok(());
        }
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        match refused.get(&address) {
            Some(&until) if until > now => Err(Error::RateLimited {
                retry_after_ms: u64::try_from(until - now).unwrap_or(1).max(1),
            }),
            _ => Ok(()),
        }
    }

    /// Counts a failed check from `address` at `now`; if it empties the address's bucket
    /// (and the throttle is on), refuses the address for the cool-down and returns its end.
    pub fn failed(&self, address: IpAddr, now: UnixMillis) -> Option<UnixMillis> {
        if !self.policy.enable || self.failures.admit(address, now).is_ok() {
            return None;
        }
        let until = now.saturating_add(self.policy.cool_down_ms.max(1));
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() >= MAX_REFUSED && !refused.contains_key(&address) {
            refused.retain(|_, end| *end > now);
            if refused.len() >= MAX_REFUSED {
                refused.clear();
            }
        }
        refused.insert(address, until);
        self.refused_until.fetch_max(until, Ordering::AcqRel);
        Some(until)
    }
}

/// What the current request's failures count against: its client address, an IPv6 one cut
/// to its /64 (the block one subscriber gets, so rotating addresses within it gains nothing);
/// none for the local operator or outside a request.
fn client_address() -> Option<IpAddr> {
    RequestOrigin::with_current(|o| o.and_then(|o| o.ip)).map(throttle_key)
}

fn throttle_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

impl Context {
    /// Authenticates the credential a caller presents for itself ([`Context::authenticate`]),
    /// throttled: refused at once with `Error::RateLimited` while the caller's address is in
    /// its cool-down, and a failure counted against the address. See the module's text for
    /// which checks are a caller's own.
    pub async fn authenticate_caller(
        &self,
        token: &PlainToken,
    ) -> Result<std::sync::Arc<Principal>> {
        let address = client_address();
        if let Some(address) = address
            && let Err(refused) = self.guess_throttle().check(address, || self.now())
        {
            self.metrics().record_guess_throttled();
            return Err(refused);
        }
        let result = self.authenticate(token).await;
        if let Err(Error::Unauthenticated { .. }) = &result {
            self.metrics().record_failed_credential_check();
            if let Some(address) = address
                && let Some(until) = self.guess_throttle().failed(address, self.now())
            {
                self.metrics().record_guess_throttle_block();
                // Once per burst: further requests are refused without coming here.
                warn!(
                    client_ip = %address,
                    cool_down_ms = until - self.now(),
                    "too many failed credential checks from this address; its requests are refused for the cool-down (guess_throttle)"
                );
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(burst: u32, per_minute: u32, cool_down_ms: i64) -> GuessThrottle {
        GuessThrottle::new(GuessThrottlePolicy {
            enable: true,
            limit: RateLimit { per_minute, burst },
            cool_down_ms,
        })
    }

    #[test]
    fn a_burst_of_failures_refuses_the_address_for_the_cool_down_only() {
        let t = throttle(3, 60, 10_000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.failed(a, 0), None);
            t.check(a, || 0).unwrap();
        }
        assert_eq!(t.failed(a, 0), Some(10_000));
        match t.check(a, || 4_000) {
            Err(Error::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 6_000),
            other => panic!("{other:?}"),
        }
        t.check(b, || 4_000).unwrap();
        t.check(a, || 10_000).unwrap();
    }

    #[test]
    fn an_ipv6_subscriber_is_one_key_for_its_whole_64() {
        let key = |s: &str| throttle_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[test]
    fn off_counts_nothing_against_anyone() {
        let t = GuessThrottle::new(GuessThrottlePolicy {
            enable: false,
            ..GuessThrottlePolicy::default()
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1_000 {
            assert_eq!(t.failed(a, 0), None);
        }
        t.check(a, || 0).unwrap();
    }
}
