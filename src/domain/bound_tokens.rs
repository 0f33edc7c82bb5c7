//! Bound personal access tokens (Vault's `token_bound_cidrs`): a token created with a list of
//! address blocks authenticates only for a client whose address lies in one of them. The
//! address is the one the request layer trusts (the socket peer, or what a trusted proxy
//! reported; see `trusted_proxies`), the same one the last-use work records. Used from any
//! other address (or from an unknown one) the token is refused exactly like an unknown token,
//! and an `access_token.address_refused` record names the address (at most once a minute per
//! token and address on each replica, written off the request path).
//!
//! The check runs on every token check, cache hits included: the cached principal carries the
//! token's blocks, and the check allocates nothing.

use std::{fmt, net::IpAddr};

use serde_json::json;
use tracing::{debug, warn};

use super::{
    Context,
    error::{Error, Reason, Result},
    lifecycle::{Action, Actor, NewRecord, Origin, RequestOrigin},
    model::{UnixMillis, UserAccessToken},
    secret::PlainToken,
};

/// Most address blocks one token may be bound to.
pub const MAX_BOUND_CIDRS: usize = 16;

/// An address block: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a single address (`10.0.0.1`, `::1`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an IP address or CIDR block (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of `self` lies in `outer`.
    pub fn within(&self, outer: &IpBlock) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }

    /// The block's network address: its address with the bits beyond the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

/// Canonical text: `10.0.0.0/8`, `::1/128`.
impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The address blocks a personal access token is bound to. Unbound (`None`, the Mattermost
/// behaviour) allocates nothing; a stored value that cannot be read is bound to nothing at
/// all (fail closed: the token authenticates from nowhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundCidrs(Option<Box<[IpBlock]>>);

impl BoundCidrs {
    /// Not bound: usable from any address.
    pub fn unbound() -> Self {
        Self(None)
    }

    /// Whether the token is bound to address blocks.
    pub fn is_bound(&self) -> bool {
        self.0.is_some()
    }

    /// The blocks (empty when unbound).
    pub fn blocks(&self) -> &[IpBlock] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Whether a client at `ip` may use the token: always when unbound; when bound, only a
    /// known address inside one of the blocks. Allocates nothing.
    pub fn admits(&self, ip: Option<IpAddr>) -> bool {
        match &self.0 {
            None => true,
            Some(blocks) => ip.is_some_and(|ip| blocks.iter().any(|b| b.contains(ip))),
        }
    }

    /// The `bound_cidrs` of a create request: each an IPv4 or IPv6 address or CIDR block
    /// whose address has no bits set beyond the prefix, at most [`MAX_BOUND_CIDRS`];
    /// duplicates count once. Refused with `InvalidArgument` naming `bound_cidrs`.
    pub fn parse_request<S: AsRef<str>>(list: &[S]) -> Result<Self> {
        let invalid = |rule: String| Error::invalid("bound_cidrs", Reason::InvalidBodyParam, rule);
        if list.len() > MAX_BOUND_CIDRS {
            return Err(invalid(format!(
                "at most {MAX_BOUND_CIDRS} address blocks, got {}",
                list.len()
            )));
        }
        let mut blocks: Vec<IpBlock> = Vec::with_capacity(list.len());
        for text in list {
            let text = text.as_ref();
            if text.len() > 64 {
                return Err(invalid(
                    "each entry is an IP address or CIDR block (e.g. 10.0.0.0/8), at most 64 bytes"
                        .into(),
                ));
            }
            let block = IpBlock::parse(text).map_err(|e| {
                invalid(format!(
                    "{e}; each entry is an IPv4 or IPv6 address or CIDR block"
                ))
            })?;
            if block.network() != block.addr {
                return Err(invalid(format!(
                    "{text:?} has bits set beyond its prefix length; did you mean {}/{}?",
                    block.network(),
                    block.prefix
                )));
            }
            if !blocks.contains(&block) {
                blocks.push(block);
            }
        }
        Ok(if blocks.is_empty() {
            Self(None)
        } else {
            Self(Some(blocks.into_boxed_slice()))
        })
    }

    /// Whether a token bound so is usable from no address a token bound to `outer` is not:
    /// `outer` is unbound, or these are bound and each block lies in one of `outer`'s.
    pub fn within(&self, outer: &BoundCidrs) -> bool {
        match (&outer.0, &self.0) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(outer), Some(inner)) => inner.iter().all(|b| outer.iter().any(|o| b.within(o))),
        }
    }

    /// The stored form: the blocks in canonical text, space-separated ("" when unbound).
    pub fn to_stored(&self) -> String {
        self.texts().join(" ")
    }

    /// Reads the stored form. A value that cannot be read (never written by this service)
    /// binds the token to nothing, so it is refused everywhere rather than usable anywhere.
    pub fn from_stored(stored: &str) -> Self {
        if stored.trim().is_empty() {
            return Self(None);
        }
        let parsed: Result<Vec<IpBlock>, String> =
            stored.split_whitespace().map(IpBlock::parse).collect();
        Self(Some(parsed.unwrap_or_default().into_boxed_slice()))
    }

    /// The blocks in canonical text.
    pub fn texts(&self) -> Vec<String> {
        self.blocks().iter().map(ToString::to_string).collect()
    }
}

impl Context {
    /// Refuses a personal access token bound to address blocks when the current request's
    /// client address (see `trusted_proxies`) lies outside them, or is unknown, with the same
    /// refusal as any token that does not authenticate; the refusal is recorded as
    /// `access_token.address_refused` naming the address. Unbound tokens and sessions pass
    /// without a look at the address; nothing is allocated unless the token is refused.
    pub(super) fn require_bound_address(
        &self,
        token: Option<&UserAccessToken>,
        presented: &PlainToken,
        now: UnixMillis,
    ) -> Result<()> {
        let Some(token) = token.filter(|t| t.bound_cidrs.is_bound()) else {
            return Ok(());
        };
        let ip = RequestOrigin::with_current(|o| o.and_then(|o| o.ip));
        if token.bound_cidrs.admits(ip) {
            return Ok(());
        }
        if self
            .bound_address_throttle()
            .admits(&(token.id.clone(), ip), now)
        {
            self.record_address_refused(token, presented, ip, now);
        }
        debug!(token_id = %token.id, ip = ?ip,
            "credential refused: address outside the token's bound CIDRs");
        Err(Error::Unauthenticated {
            reason: Reason::SessionExpired,
        })
    }

    fn record_address_refused(
        &self,
        token: &UserAccessToken,
        presented: &PlainToken,
        ip: Option<IpAddr>,
        now: UnixMillis,
    ) {
        let address = ip.map(|ip| ip.to_canonical().to_string());
        let current = Origin::current();
        let origin = Origin::new(
            address.as_deref().unwrap_or(""),
            &current.user_agent,
            &current.request_id,
        );
        let record = NewRecord::new_with(Action::AccessTokenAddressRefused, Actor::Unknown, origin)
            .user(&token.user_id)
            .token(&token.id)
            .credential(self.audit_key(), presented)
            .detail(json!({"address": address, "bound_cidrs": token.bound_cidrs.texts()}));
        let ctx = self.clone();
        let token_id = token.id.clone();
        tokio::spawn(async move {
            match ctx.store().append_records(&[record], now).await {
                Ok(()) => {
                    warn!(target: "audit", action = "access_token_address_refused",
                        token_id = %token_id, ip = address.as_deref().unwrap_or("unknown"),
                        "a bound personal access token was presented from outside its address blocks");
                }
                Err(e) => {
                    warn!(token_id = %token_id, error = %e,
                        "could not record a bound token's refused address");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn requests_are_validated_and_stored_canonically() {
        let b = BoundCidrs::parse_request(&["10.0.0.0/8", "::1/128", "10.0.0.0/8", "192.0.2.7"])
            .unwrap();
        assert_eq!(b.to_stored(), "10.0.0.0/8 ::1/128 192.0.2.7/32");
        assert_eq!(BoundCidrs::from_stored(&b.to_stored()), b);
        assert!(!BoundCidrs::parse_request::<&str>(&[]).unwrap().is_bound());
        for bad in [
            "10.0.0.0/33",
            "nope",
            "10.1.2.3/8",
            "::1/129",
            "fe80::1%eth0",
            "",
        ] {
            let e = BoundCidrs::parse_request(&[bad]).unwrap_err();
            assert!(e.to_string().contains("bound_cidrs"), "{bad}: {e}");
        }
        let e = BoundCidrs::parse_request(&["10.1.2.3/8"]).unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        let many: Vec<String> = (0..=MAX_BOUND_CIDRS)
            .map(|n| format!("10.0.0.{n}"))
            .collect();
        assert!(BoundCidrs::parse_request(&many).is_err());
    }

    #[test]
    fn admits_only_known_addresses_inside_the_blocks() {
        let b = BoundCidrs::parse_request(&["127.0.0.1/32", "2001:db8::/32"]).unwrap();
        assert!(b.admits(Some(ip("127.0.0.1"))));
        assert!(b.admits(Some(ip("::ffff:127.0.0.1"))));
        assert!(!b.admits(Some(ip("127.0.0.2"))));
        assert!(b.admits(Some(ip("2001:db8::5"))));
        assert!(!b.admits(Some(ip("::1"))));
        assert!(!b.admits(None), "an unknown address is refused");
        assert!(BoundCidrs::unbound().admits(None));
        let unreadable = BoundCidrs::from_stored("10.0.0.0/8 garbage");
        assert!(unreadable.is_bound());
        assert!(!unreadable.admits(Some(ip("10.0.0.1"))), "fail closed");
    }
}
