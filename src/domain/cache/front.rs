//! Each thread's own copies of the principals it checks again and again.
//!
//! One token presented by every request (a service's token, a gateway's) would otherwise
//! make every core take the same shard's read lock, add to the same counter and count
//! references on the same `Arc`: each of those writes moves one cache line between cores,
//! and with enough cores the line is the limit. A thread that finds a key in a shard twice
//! in a row (same entry, same epoch) keeps a copy of the principal of its own, in a small
//! set-associative table in thread-local storage, and later hits on that thread touch
//! nothing another thread writes.
//!
//! A copy is used only while its cache's epoch is the one it was taken in: the cache bumps
//! the epoch after every change that may make a copy wrong (an invalidation, a `touch`, a
//! replaced entry, losing or regaining trust), and after the change is in the shards, so a
//! copy taken from a shard read that saw the old state carries the old epoch. Copies expire
//! with their entry's TTL (they keep its `cached_at`), and every [`REVISIT_EVERY`] hits a
//! lookup goes to the shard instead, which keeps the entry's CLOCK bit set and the copy
//! checked against the entry.

use std::{cell::RefCell, sync::Arc};

use super::super::{caller::Principal, model::UnixMillis};

/// Sets in each thread's table (a power of two).
const SETS: usize = 8;
/// Ways per set: two keys that land in one set both get a copy.
const WAYS: usize = 2;
/// Every this many front hits of a copy, the lookup goes to the shard.
pub(super) const REVISIT_EVERY: u32 = 1024;

/// Which lookup this is: the cache (process-unique, never 0), its epoch when the lookup
/// began, and the credential's quick key (what finds a copy: see
/// `TokenHasher::quick_key`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lookup {
    pub cache: u64,
    pub epoch: u64,
    pub quick: u128,
}

impl Lookup {
    fn set(&self) -> usize {
        // Bits 72..: a quick key made from a digest (`quick_of_digest`) takes its byte 9,
        // another byte than the ones that place the key in a shard.
        usize::try_from(self.quick >> 72).unwrap_or(0) & (SETS - 1)
    }
}

#[derive(Debug)]
struct Way {
    /// 0: empty.
    cache: u64,
    epoch: u64,
    quick: u128,
    /// The shards' key (the MAC), for [`forget`].
    key: [u8; 32],
    cached_at: UnixMillis,
    /// None: seen once in the shard, no copy yet.
    principal: Option<Arc<Principal>>,
    /// Front hits since the copy was taken or last revisited.
    hits: u32,
}

impl Way {
    const EMPTY: Way = Way {
        cache: 0,
        epoch: 0,
        quick: 0,
        key: [0; 32],
        cached_at: 0,
        principal: None,
        hits: 0,
    };

    fn holds(&self, lookup: &Lookup) -> bool {
        self.cache == lookup.cache && self.epoch == lookup.epoch && self.quick == lookup.quick
    }
}

thread_local! {
    static FRONT: RefCell<[[Way; WAYS]; SETS]> =
        const { RefCell::new([const { [Way::EMPTY, Way::EMPTY] }; SETS]) };
}

/// This thread's copy for `lookup`, if it has one taken in the lookup's epoch, younger
/// than `ttl_ms`, and not due for a revisit.
pub(super) fn get(lookup: &Lookup, now: UnixMillis, ttl_ms: i64) -> Option<Arc<Principal>> {
    FRONT.with_borrow_mut(|front| {
        let way = front[lookup.set()]
            .iter_mut()
            .find(|way| way.holds(lookup))?;
        let principal = way.principal.as_ref()?;
        if now - way.cached_at >= ttl_ms || way.hits >= REVISIT_EVERY {
            return None;
        }
        way.hits += 1;
        Some(Arc::clone(principal))
    })
}

/// Notes that the shard had `principal`, cached at `cached_at`, under `key` for `lookup`:
/// the second time in a row for the same entry, this thread takes a copy; otherwise the key
/// is remembered (in place of the way least worth keeping) to be copied if it comes again.
pub(super) fn found_in_shard(
    lookup: &Lookup,
    key: &[u8; 32],
    cached_at: UnixMillis,
    principal: &Principal,
) {
    FRONT.with_borrow_mut(|front| {
        let set = &mut front[lookup.set()];
        if let Some(way) = set
            .iter_mut()
            .find(|way| way.holds(lookup) && way.cached_at == cached_at)
        {
            if way.principal.is_none() {
                way.principal = Some(Arc::new(principal.clone()));
            }
            way.hits = 0;
            return;
        }
        // The way to replace: the same key (a changed entry), else one of another epoch or
        // cache, else one without a copy, else the one with fewer hits.
        let at = (0..WAYS)
            .min_by_key(|&i| {
                let way = &set[i];
                let current = way.cache == lookup.cache && way.epoch == lookup.epoch;
                match (
                    way.quick == lookup.quick && current,
                    current,
                    &way.principal,
                ) {
                    (true, _, _) => (0, 0),
                    (false, false, _) => (1, 0),
                    (false, true, None) => (2, 0),
                    (false, true, Some(_)) => (3, way.hits),
                }
            })
            .unwrap_or(0);
        set[at] = Way {
            cache: lookup.cache,
            epoch: lookup.epoch,
            quick: lookup.quick,
            key: *key,
            cached_at,
            principal: None,
            hits: 0,
        };
    });
}

/// Drops this thread's copy for the shards' `key` in cache `cache`, if any (a rare path: it
/// looks in every set).
pub(super) fn forget(cache: u64, key: &[u8; 32]) {
    FRONT.with_borrow_mut(|front| {
        for way in front.iter_mut().flatten() {
            if way.cache == cache && way.key == *key {
                *way = Way::EMPTY;
            }
        }
    });
}

/// The quick key of a lookup by digest alone (no token at hand): the digest's first 16
/// bytes. It finds only copies taken by lookups by digest.
pub(super) fn quick_of_digest(key: &[u8; 32]) -> u128 {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&key[..16]);
    u128::from_le_bytes(bytes)
}
