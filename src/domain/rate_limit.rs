//! A per-address rate limit (a token bucket per client address), kept in memory on each
//! replica: `burst` requests at once, refilled at `per_minute`. A refused request learns how
//! long to wait. The lock is held for a map lookup only, never across an await.

use std::{collections::HashMap, net::IpAddr, sync::Mutex};

use super::error::{Error, Result};
use super::model::UnixMillis;

/// Most addresses remembered; beyond it, addresses whose bucket has refilled are forgotten
/// (they are indistinguishable from new ones), and if none has, the whole map is reset rather
/// than grow without bound.
const MAX_ADDRESSES: usize = 65_536;

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute, sustained. 0 refuses every request.
    pub per_minute: u32,
    /// Requests allowed at once (the bucket's size), at least 1.
    pub burst: u32,
}

/// The buckets of one kind of request.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    /// Address to (tokens left, when they were counted).
    buckets: Mutex<HashMap<IpAddr, (f64, UnixMillis)>>,
}

impl RateLimiter {
    /// A limiter with `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `address`'s bucket at `now`, or says how long to wait
    /// (`Error::RateLimited`).
    pub fn admit(&self, address: IpAddr, now: UnixMillis) -> Result<()> {
        let burst = f64::from(self.limit.burst.max(1));
        let per_ms = f64::from(self.limit.per_minute) / 60_000.0;
        if per_ms == 0.0 {
            return Err(Error::RateLimited {
                retry_after_ms: 60_000,
            });
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&address) {
            buckets.retain(|_, (tokens, at)| *tokens + (now - *at) as f64 * per_ms < burst);
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(address).or_insert((burst, now));
        let elapsed = (now - *at).max(0) as f64;
        *tokens = (*tokens + elapsed * per_ms).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / per_ms).ceil() as u64;
            Err(Error::RateLimited {
                retry_after_ms: wait.max(1),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit { per_minute, burst })
    }

    fn retry_after(result: Result<()>) -> u64 {
        match result {
            Err(Error::RateLimited { retry_after_ms }) => retry_after_ms,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills() {
        let l = limiter(6, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            l.admit(a, 0).unwrap();
        }
        // Six a minute: one every 10 s.
        assert_eq!(retry_after(l.admit(a, 0)), 10_000);
        assert_eq!(retry_after(l.admit(a, 4_000)), 6_000);
        l.admit(a, 10_000).unwrap();
        assert!(l.admit(a, 10_001).is_err());
        // A long pause refills to the burst, not beyond.
        for _ in 0..3 {
            l.admit(a, 10_000_000).unwrap();
        }
        assert!(l.admit(a, 10_000_000).is_err());
    }

    #[test]
    fn addresses_have_their_own_buckets() {
        let l = limiter(1, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        l.admit(a, 0).unwrap();
        assert!(l.admit(a, 0).is_err());
        l.admit(b, 0).unwrap();
    }

    #[test]
    fn a_zero_rate_refuses_everything() {
        let l = limiter(0, 5);
        assert!(l.admit("10.0.0.1".parse().unwrap(), 0).is_err());
    }

    #[test]
    fn the_map_stays_bounded() {
        let l = limiter(60, 1);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            l.admit(IpAddr::from(i.to_be_bytes()), 0).unwrap();
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
