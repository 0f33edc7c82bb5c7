//! The hot-path cache: token digest -> the principal it authenticated as, so a repeated
//! token check touches no database.
//!
//! Staleness is bounded three ways: every revocation on this replica drops matching entries
//! before its RPC returns; revocations on other replicas arrive through the revocation log
//! (see [`super::revocations`]) and drop them within the feed's interval; and every entry
//! expires after `ttl_ms` regardless. While the feed cannot read the log the cache is not
//! trusted: lookups miss and go to the database until it has caught up.
//!
//! Fail static (`cache.stale_if_unavailable`, off by default): while the database cannot be
//! reached, the entries cached before the outage are kept (not trusted, so a lookup still
//! misses) and [`PrincipalCache::get_stale`] hands them out for at most that long from the
//! outage's start, if they were fresh when it began. When the feed catches up they are
//! dropped, as without the setting.
//!
//! Layout (README "Performance" has the measurements that chose it):
//!
//! - **Shards.** Up to [`MAX_SHARDS`] independent shards, each a `RwLock` over its own map,
//!   chosen by a byte of the key. The key is the digest's 32 bytes (decoded from its hex on
//!   the caller's stack, no allocation), an HMAC output under the server key: uniformly
//!   distributed and not choosable by a client, so the map hashes it by taking 8 of its
//!   bytes as they are. A lookup takes one shard's read lock for a probe and an `Arc` clone;
//!   no lock is held across an await.
//! - **Index.** Each shard also maps the keyed hash of every user id, session id and
//!   personal access token id to the slots of its entries, so a revocation visits, in each
//!   shard, only the entries of that user, session or token (it checks each with
//!   [`Principal::covered_by`], so a hash collision costs a comparison, never a wrong drop).
//! - **Eviction.** The capacity is the whole cache's (a count of entries shared by the
//!   shards, touched by inserts and removals only, never by lookups), so an uneven spread of
//!   keys over shards wastes none of it. An insert into a full cache evicts in its own shard
//!   by CLOCK (second chance): a hit sets the entry's referenced bit; the hand clears set
//!   bits and evicts the first entry found unreferenced or expired.
//! - **Races.** A generation counter is bumped by every invalidation before it visits the
//!   shards; an insert compares it, under its shard's write lock, with the value taken
//!   before its database read, and drops the entry if they differ (the read may have seen a
//!   row that is now revoked).
//! - **Front.** A thread that finds the same entry twice in a row keeps a copy of its own
//!   ([`front`]): a token every request presents is then checked without the shard's lock
//!   or a shared reference count. An epoch, bumped after every change that may make a copy
//!   wrong, retires the copies. Hits are counted per thread ([`StripedCounter`]).

mod front;

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState},
    sync::{
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
};

use sha2::{Digest, Sha256};

use super::{
    caller::Principal,
    model::{Revocation, UnixMillis},
};
use crate::stripes::{Padded, StripedCounter};

/// Most shards: enough that 2 to 64 cores rarely meet on one lock.
pub const MAX_SHARDS: usize = 64;
/// Fewest entries a shard is made for on average: a small cache has fewer shards, so that
/// each one holds enough to choose a victim from.
const MIN_SHARD_ENTRIES: usize = 64;

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off: every check reads the database.
    pub enable: bool,
    /// Most entries held; when full, an insert evicts by CLOCK (an expired entry or one not
    /// hit since the hand last passed).
    pub capacity: usize,
    /// An entry is used for at most this long after it was read from the database.
    pub ttl_ms: i64,
}

/// What an entry is looked up by: a digest's stored text ([`digest_key`] of it), or the
/// digest's bytes as computed ([`super::secret::TokenHasher::mac`]; the hot path, which then
/// never writes the digest as text).
pub trait DigestKey {
    /// The 32-byte key.
    fn key(&self) -> [u8; 32];
}

impl DigestKey for str {
    fn key(&self) -> [u8; 32] {
        digest_key(self)
    }
}

impl DigestKey for String {
    fn key(&self) -> [u8; 32] {
        digest_key(self)
    }
}

impl DigestKey for [u8; 32] {
    fn key(&self) -> [u8; 32] {
        *self
    }
}

/// The cache key of a digest: its 32 bytes when it is 64 lower-case hex digits (every
/// stored digest is), else the SHA-256 of the text (so any string is a usable key).
pub fn digest_key(digest: &str) -> [u8; 32] {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let text = digest.as_bytes();
    let mut key = [0u8; 32];
    if text.len() == 64 {
        let decoded = text.chunks_exact(2).zip(key.iter_mut()).all(|(pair, out)| {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(high), Some(low)) => {
                    *out = high << 4 | low;
                    true
                }
                _ => false,
            }
        });
        if decoded {
            return key;
        }
    }
    Sha256::digest(text).into()
}

/// A key whose hash is 8 of its bytes (see the module doc: digests are uniform already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

impl Key {
    fn shard(&self, mask: usize) -> usize {
        usize::from(self.0[8]) & mask
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(head));
    }
}

/// Passes a `u64` that is already a hash through; other input is folded in (unused).
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type PassThroughMap<K, V> = HashMap<K, V, BuildHasherDefault<PassThrough>>;

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    cached_at: UnixMillis,
}

#[derive(Debug)]
struct Slot {
    key: Key,
    /// None: free (listed in `Shard::free`).
    entry: Option<Entry>,
    /// Set by a hit, cleared by the passing CLOCK hand.
    referenced: AtomicBool,
}

/// The slots one index hash points at: almost always one (a session, a token), more for a
/// user with several cached credentials.
#[derive(Debug)]
enum Postings {
    One(u32),
    Many(Vec<u32>),
}

impl Postings {
    fn add(&mut self, slot: u32) {
        match self {
            Postings::One(first) => *self = Postings::Many(vec![*first, slot]),
            Postings::Many(slots) => slots.push(slot),
        }
    }

    /// Removes one occurrence of `slot`; true when nothing is left.
    fn remove(&mut self, slot: u32) -> bool {
        match self {
            Postings::One(only) => *only == slot,
            Postings::Many(slots) => {
                if let Some(at) = slots.iter().position(|&s| s == slot) {
                    slots.swap_remove(at);
                }
                match slots[..] {
                    [] => true,
                    [only] => {
                        *self = Postings::One(only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn slots(&self) -> &[u32] {
        match self {
            Postings::One(only) => std::slice::from_ref(only),
            Postings::Many(slots) => slots,
        }
    }
}

/// The index hashes of one principal: its user, its session, and its token (the session's
/// token id too, when it differs).
#[derive(Debug, Clone, Copy)]
struct IndexKeys {
    keys: [u64; 4],
    len: usize,
}

impl IndexKeys {
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys[..self.len].iter().copied()
    }
}

const TAG_USER: u8 = 0;
const TAG_SESSION: u8 = 1;
const TAG_TOKEN: u8 = 2;

/// One shard: a map from key to slot, the slots, and the index.
#[derive(Debug)]
struct Shard {
    map: PassThroughMap<Key, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    hand: usize,
    index: PassThroughMap<u64, Postings>,
}

impl Shard {
    fn new() -> Self {
        Self {
            map: PassThroughMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            hand: 0,
            index: PassThroughMap::default(),
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn place(&mut self, key: Key, entry: Entry, index_keys: IndexKeys) {
        let slot = Slot {
            key,
            entry: Some(entry),
            referenced: AtomicBool::new(false),
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.slots[at as usize] = slot;
                at
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).expect("a shard holds under 2^32 entries")
            }
        };
        self.map.insert(key, at);
        for hash in index_keys.iter() {
            self.index
                .entry(hash)
                .and_modify(|p| p.add(at))
                .or_insert(Postings::One(at));
        }
    }

    /// Frees slot `at`; returns its entry.
    fn remove(&mut self, at: u32, index_keys: impl Fn(&Principal) -> IndexKeys) -> Option<Entry> {
        let slot = &mut self.slots[at as usize];
        let entry = slot.entry.take()?;
        *slot.referenced.get_mut() = false;
        self.map.remove(&slot.key);
        for hash in index_keys(&entry.principal).iter() {
            if let Some(postings) = self.index.get_mut(&hash)
                && postings.remove(at)
            {
                self.index.remove(&hash);
            }
        }
        self.free.push(at);
        Some(entry)
    }

    /// CLOCK: the first slot from the hand that is expired or not referenced since the hand
    /// last passed; referenced ones get a second chance. Two turns at most.
    fn victim(&mut self, now: UnixMillis, ttl_ms: i64) -> Option<u32> {
        let n = self.slots.len();
        for _ in 0..=2 * n {
            let at = self.hand;
            self.hand = (self.hand + 1) % n;
            let slot = &mut self.slots[at];
            let Some(entry) = &slot.entry else { continue };
            let referenced = std::mem::replace(slot.referenced.get_mut(), false);
            if now - entry.cached_at >= ttl_ms || !referenced {
                return u32::try_from(at).ok();
            }
        }
        None
    }

    fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.hand = 0;
    }
}

/// A shard with its eviction count, alone on its cache lines.
#[derive(Debug)]
#[repr(align(128))]
struct ShardCell {
    shard: RwLock<Shard>,
    evictions: AtomicU64,
}

impl ShardCell {
    fn read(&self) -> RwLockReadGuard<'_, Shard> {
        self.shard.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Shard> {
        self.shard.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Token digest -> principal, bounded in size and age.
#[derive(Debug)]
pub struct PrincipalCache {
    settings: CacheSettings,
    shards: Box<[ShardCell]>,
    /// `shards.len() - 1` (a power of two less one).
    mask: usize,
    /// Entries held (or reserved by an insert in progress), against `settings.capacity`.
    len: Padded<AtomicUsize>,
    /// Keys the hashes of ids in the index.
    id_hasher: RandomState,
    /// Bumped by every invalidation; an insert prepared before a bump is dropped.
    generation: AtomicU64,
    /// This cache among the process's, for the threads' front copies (never 0).
    id: u64,
    /// Bumped after every change that may make a thread's front copy wrong.
    front_epoch: AtomicU64,
    /// Lookups answered (from a shard or a thread's copy) and not.
    hits: StripedCounter,
    misses: StripedCounter,
    /// False while revocations from other replicas may have been missed.
    trusted: AtomicBool,
    /// `cache.stale_if_unavailable` in milliseconds; 0: nothing is served stale.
    stale_window_ms: i64,
    /// When this replica found the database unreachable (its clock, Unix ms); 0: it has not
    /// (or it is reachable again).
    outage_since: AtomicI64,
}

/// Hit and miss counts, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries dropped to make room (not those revoked or replaced).
    pub evictions: u64,
    pub entries: usize,
    pub trusted: bool,
}

impl PrincipalCache {
    pub fn new(settings: CacheSettings) -> Self {
        let capacity = settings.capacity.max(1);
        let wanted = (capacity / MIN_SHARD_ENTRIES).clamp(1, MAX_SHARDS);
        // The largest power of two not above `wanted`.
        let count = 1usize << wanted.ilog2();
        let shards = (0..count)
            .map(|_| ShardCell {
                shard: RwLock::new(Shard::new()),
                evictions: AtomicU64::new(0),
            })
            .collect();
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            settings,
            shards,
            mask: count - 1,
            len: Padded(AtomicUsize::new(0)),
            id_hasher: RandomState::new(),
            generation: AtomicU64::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            front_epoch: AtomicU64::new(0),
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
            trusted: AtomicBool::new(true),
            stale_window_ms: 0,
            outage_since: AtomicI64::new(0),
        }
    }

    /// The same cache, serving entries cached before a database outage for at most
    /// `window_ms` of it (`cache.stale_if_unavailable`; 0: never).
    pub fn keeping_stale_for(mut self, window_ms: i64) -> Self {
        self.stale_window_ms = window_ms.max(0);
        self
    }

    /// Notes that the database could not be reached at `now` (the start of the outage, if
    /// none is known).
    pub fn outage_began(&self, now: UnixMillis) {
        let _ =
            self.outage_since
                .compare_exchange(0, now.max(1), Ordering::AcqRel, Ordering::Acquire);
    }

    /// Notes that the database answered: no outage.
    pub fn outage_ended(&self) {
        if self.outage_since.load(Ordering::Acquire) != 0 {
            self.outage_since.store(0, Ordering::Release);
        }
    }

    /// Until when entries cached before the current outage may be served (`None`: no
    /// outage known, fail static off, or its window has passed).
    pub fn stale_until(&self, now: UnixMillis) -> Option<UnixMillis> {
        let since = self.outage_since.load(Ordering::Acquire);
        let until = since.saturating_add(self.stale_window_ms);
        (self.settings.enable && self.stale_window_ms > 0 && since != 0 && now < until)
            .then_some(until)
    }

    /// The principal `digest` was cached as before the current database outage, if fail
    /// static allows it now: within `stale_if_unavailable` of the outage's start, and the
    /// entry was fresh (within its TTL) when the outage began. Whether it is still usable
    /// (expiry, owner active) is the caller's to check. Counts no hit or miss.
    pub fn get_stale(
        &self,
        digest: &(impl DigestKey + ?Sized),
        now: UnixMillis,
    ) -> Option<Arc<Principal>> {
        self.stale_until(now)?;
        let since = self.outage_since.load(Ordering::Acquire);
        let key = Key(digest.key());
        let shard = self.cell(&key).read();
        let &at = shard.map.get(&key)?;
        let entry = shard.slots[at as usize].entry.as_ref()?;
        (entry.cached_at.saturating_add(self.settings.ttl_ms) > since)
            .then(|| Arc::clone(&entry.principal))
    }

    /// How many shards the entries are spread over.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn cell(&self, key: &Key) -> &ShardCell {
        &self.shards[key.shard(self.mask)]
    }

    fn id_hash(&self, tag: u8, id: &str) -> u64 {
        let mut hasher = self.id_hasher.build_hasher();
        hasher.write_u8(tag);
        hasher.write(id.as_bytes());
        hasher.finish()
    }

    fn index_keys(&self, principal: &Principal) -> IndexKeys {
        let mut keys = [
            self.id_hash(TAG_USER, principal.user.id.as_str()),
            self.id_hash(TAG_SESSION, principal.session.id.as_str()),
            0,
            0,
        ];
        let mut len = 2;
        let token = principal.access_token.as_ref().map(|t| &t.id);
        let session_token = principal.session.user_access_token_id.as_ref();
        for id in [token, session_token.filter(|&id| Some(id) != token)]
            .into_iter()
            .flatten()
        {
            keys[len] = self.id_hash(TAG_TOKEN, id.as_str());
            len += 1;
        }
        IndexKeys { keys, len }
    }

    /// The index hash that finds what `revocation` covers (None: it covers everything).
    fn revocation_hash(&self, revocation: &Revocation) -> Option<u64> {
        match revocation {
            Revocation::All => None,
            Revocation::User(id) => Some(self.id_hash(TAG_USER, id.as_str())),
            Revocation::Session(id) => Some(self.id_hash(TAG_SESSION, id.as_str())),
            Revocation::AccessToken(id) => Some(self.id_hash(TAG_TOKEN, id.as_str())),
        }
    }

    /// The generation to pass to [`PrincipalCache::insert`] for a read starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The cached principal of `digest`, if fresh and the cache is trusted: this thread's
    /// copy when it has one, else the shard's entry.
    pub fn get(
        &self,
        digest: &(impl DigestKey + ?Sized),
        now: UnixMillis,
    ) -> Option<Arc<Principal>> {
        let key = digest.key();
        let quick = front::quick_of_digest(&key);
        self.copy(quick, now)
            .or_else(|| self.get_from_shard(&key, quick, now))
    }

    /// This thread's copy of the principal of the credential whose quick key
    /// (`TokenHasher::quick_key`) is `quick`, if it has one that is fresh and the cache is
    /// trusted. Nothing another thread writes is touched.
    pub fn copy(&self, quick: u128, now: UnixMillis) -> Option<Arc<Principal>> {
        let lookup = self.lookup(quick)?;
        let principal = front::get(&lookup, now, self.settings.ttl_ms)?;
        self.hits.add(1);
        Some(principal)
    }

    /// The shard's entry for `key` (the MAC), if fresh and the cache is trusted; found twice
    /// in a row by one thread, that thread takes a copy, found again by `quick` (see
    /// [`PrincipalCache::copy`]). Counts the hit or the miss.
    pub fn get_from_shard(
        &self,
        key: &[u8; 32],
        quick: u128,
        now: UnixMillis,
    ) -> Option<Arc<Principal>> {
        // The epoch before the shard is read: a copy taken from a read that raced with a
        // change carries the epoch the change then retires.
        let lookup = self.lookup(quick)?;
        let key = Key(*key);
        let found = {
            let shard = self.cell(&key).read();
            shard.map.get(&key).and_then(|&at| {
                let slot = &shard.slots[at as usize];
                let entry = slot
                    .entry
                    .as_ref()
                    .filter(|e| now - e.cached_at < self.settings.ttl_ms)?;
                if !slot.referenced.load(Ordering::Relaxed) {
                    slot.referenced.store(true, Ordering::Relaxed);
                }
                Some((Arc::clone(&entry.principal), entry.cached_at))
            })
        };
        match found {
            Some((principal, cached_at)) => {
                self.hits.add(1);
                front::found_in_shard(&lookup, &key.0, cached_at, &principal);
                Some(principal)
            }
            None => {
                self.misses.add(1);
                None
            }
        }
    }

    /// A lookup of `quick` in the current epoch, if the cache is on and trusted.
    fn lookup(&self, quick: u128) -> Option<front::Lookup> {
        (self.settings.enable && self.trusted.load(Ordering::Acquire)).then(|| front::Lookup {
            cache: self.id,
            epoch: self.front_epoch.load(Ordering::Acquire),
            quick,
        })
    }

    /// Drops this thread's copy of `digest`'s entry: its principal turned out unusable
    /// (expired by the clock), so the next lookup must see what the database says next.
    pub fn forget_copy(&self, digest: &(impl DigestKey + ?Sized)) {
        front::forget(self.id, &digest.key());
    }

    /// Retires every thread's copies (after a change is in the shards).
    fn retire_copies(&self) {
        self.front_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Caches a principal read from the database, unless an invalidation happened since
    /// `generation` was taken (the read may have seen a row that is now revoked), or the
    /// cache is not trusted (the revocation feed does not know yet which events it must
    /// apply, so an entry filled now could outlive a revocation it never hears of).
    pub fn insert(
        &self,
        digest: &(impl DigestKey + ?Sized),
        principal: &Arc<Principal>,
        generation: u64,
        now: UnixMillis,
    ) {
        if !self.settings.enable {
            return;
        }
        let key = Key(digest.key());
        let index_keys = self.index_keys(principal);
        let cell = self.cell(&key);
        let mut shard = cell.write();
        // Trust first: `set_trusted(true)` bumps the generation before it publishes trust,
        // so an insert that sees trust also sees that bump.
        if !self.trusted.load(Ordering::SeqCst)
            || self.generation.load(Ordering::SeqCst) != generation
        {
            return;
        }
        let replaces = shard.map.get(&key).copied();
        if let Some(at) = replaces {
            // A newer read of the same credential: it takes the old one's place in the count.
            shard.remove(at, |p| self.index_keys(p));
        } else if self.len.0.fetch_add(1, Ordering::AcqRel) >= self.settings.capacity {
            // Full: this insert's reservation is paid for by a victim from its own shard.
            let Some(victim) = shard.victim(now, self.settings.ttl_ms) else {
                self.len.0.fetch_sub(1, Ordering::AcqRel);
                return;
            };
            shard.remove(victim, |p| self.index_keys(p));
            self.len.0.fetch_sub(1, Ordering::AcqRel);
            cell.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Entry {
            principal: Arc::clone(principal),
            cached_at: now,
        };
        shard.place(key, entry, index_keys);
        drop(shard);
        if replaces.is_some() {
            self.retire_copies();
        }
    }

    /// Replaces the cached principal after its session's activity was recorded (keeping
    /// when it was read from the database and its place in the index: the session, user
    /// and token are the same). The threads' copies go even when the entry has (evicted):
    /// a copy that still said the activity was due would record it on every check.
    pub fn touch(&self, digest: &(impl DigestKey + ?Sized), principal: &Arc<Principal>) {
        let key = Key(digest.key());
        let mut shard = self.cell(&key).write();
        if let Some(&at) = shard.map.get(&key)
            && let Some(entry) = &mut shard.slots[at as usize].entry
            && entry.principal.session.id == principal.session.id
        {
            entry.principal = Arc::clone(principal);
        }
        drop(shard);
        self.retire_copies();
    }

    /// Drops every entry a revocation affects: in each shard, only the entries the index
    /// lists under the revoked user, session or token.
    pub fn invalidate(&self, revocation: &Revocation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.drop_covered(revocation);
        // Every copy goes, not only the revoked one's: an epoch is all a copy is checked
        // against (revocations are rare next to lookups; each thread copies its hot
        // entries again after two shard hits).
        self.retire_copies();
    }

    /// The shard half of [`PrincipalCache::invalidate`].
    fn drop_covered(&self, revocation: &Revocation) {
        let Some(hash) = self.revocation_hash(revocation) else {
            for cell in &self.shards {
                let mut shard = cell.write();
                self.len.0.fetch_sub(shard.len(), Ordering::AcqRel);
                shard.clear();
            }
            return;
        };
        for cell in &self.shards {
            // Most shards hold nothing of one user: a read lock tells, without stopping
            // their lookups. An insert this skips saw the bump above, so it is dropped.
            if !cell.read().index.contains_key(&hash) {
                continue;
            }
            let mut shard = cell.write();
            let candidates: Vec<u32> = match shard.index.get(&hash) {
                Some(postings) => postings.slots().to_vec(),
                None => continue,
            };
            for at in candidates {
                let covered = shard.slots[at as usize]
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.principal.covered_by(revocation));
                if covered && shard.remove(at, |p| self.index_keys(p)).is_some() {
                    self.len.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Drops everything (for instance after the revocation feed lost events).
    pub fn clear(&self) {
        self.invalidate(&Revocation::All);
    }

    /// Marks whether revocations from other replicas are known to be applied.
    ///
    /// Either way the generation moves on: losing trust drops everything (it may be stale),
    /// and a read that began before trust was regained may have seen a row revoked by an
    /// event the feed had not yet placed, so its insert is refused.
    ///
    /// With fail static on, losing trust keeps the entries (for [`PrincipalCache::get_stale`]
    /// only: lookups miss) and regaining it drops them.
    pub fn set_trusted(&self, trusted: bool) {
        if trusted {
            if self.stale_window_ms > 0 {
                self.clear();
            }
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.trusted.store(true, Ordering::SeqCst);
        } else {
            self.trusted.store(false, Ordering::SeqCst);
            if self.stale_window_ms > 0 {
                self.generation.fetch_add(1, Ordering::SeqCst);
            } else {
                self.clear();
            }
        }
        self.retire_copies();
    }

    /// Whether revocations from other replicas are known to be applied.
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            evictions: self
                .shards
                .iter()
                .map(|c| c.evictions.load(Ordering::Relaxed))
                .sum(),
            entries: self.shards.iter().map(|c| c.read().len()).sum(),
            trusted: self.trusted.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
impl PrincipalCache {
    /// Panics unless every shard's map, slots, free list and index agree and the cache is
    /// within its capacity. With no insert or removal in progress, also that the shared
    /// count is exact.
    fn check_invariants(&self, quiet: bool) {
        let mut total = 0;
        for cell in &self.shards {
            let shard = cell.read();
            total += shard.len();
            let occupied = shard.slots.iter().filter(|s| s.entry.is_some()).count();
            assert_eq!(occupied, shard.len(), "map and slots disagree");
            assert_eq!(occupied + shard.free.len(), shard.slots.len(), "free list");
            for (key, &at) in &shard.map {
                assert_eq!(&shard.slots[at as usize].key, key, "a map entry's slot");
            }
            let mut postings = 0;
            for (at, slot) in shard.slots.iter().enumerate() {
                let Some(entry) = &slot.entry else { continue };
                for hash in self.index_keys(&entry.principal).iter() {
                    postings += 1;
                    let listed = shard.index.get(&hash).map_or(&[][..], Postings::slots);
                    assert!(
                        listed.contains(&(at as u32)),
                        "an entry missing from the index"
                    );
                }
            }
            let indexed: usize = shard.index.values().map(|p| p.slots().len()).sum();
            assert_eq!(indexed, postings, "stale index postings");
        }
        assert!(
            total <= self.settings.capacity,
            "{total} entries over the capacity"
        );
        if quiet {
            assert_eq!(self.len.0.load(Ordering::SeqCst), total, "the shared count");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeMap,
        sync::{Barrier, atomic::AtomicUsize},
        thread,
    };

    use super::*;
    use crate::domain::{
        ids::{SessionId, TokenId, UserId},
        model::{Session, User, UserAccessToken},
    };

    fn principal(user: &str, session: &str, token: Option<&str>) -> Arc<Principal> {
        let user_id = UserId::from_trusted(user.to_owned());
        let token_id = token.map(|t| TokenId::from_trusted(t.to_owned()));
        Arc::new(Principal {
            user: User {
                id: user_id.clone(),
                username: user.to_owned(),
                email: String::new(),
                roles: vec!["system_user".into()],
                is_bot: false,
                bot_owner_id: None,
                create_at: 1,
                update_at: 1,
                delete_at: 0,
            },
            session: Session {
                id: SessionId::from_trusted(session.to_owned()),
                user_id: user_id.clone(),
                user_access_token_id: token_id.clone(),
                create_at: 1,
                expires_at: 0,
                last_activity_at: 1,
                length_ms: 0,
                device_id: String::new(),
                roles: vec!["system_user".into()],
                is_oauth: false,
                expired_notify: false,
                props: BTreeMap::new(),
            },
            access_token: token_id.map(|id| UserAccessToken {
                id,
                user_id,
                description: "t".into(),
                is_active: true,
                expires_at: 0,
                create_at: 1,
                last_use: Default::default(),
                bound_cidrs: Default::default(),
                scopes: Default::default(),
            }),
        })
    }

    fn cache(capacity: usize) -> PrincipalCache {
        PrincipalCache::new(CacheSettings {
            enable: true,
            capacity,
            ttl_ms: 1_000,
        })
    }

    #[test]
    fn hits_until_the_ttl_then_misses() {
        let c = cache(10);
        c.insert("d1", &principal("u1", "s1", None), c.generation(), 100);
        assert!(c.get("d1", 1_099).is_some());
        assert!(c.get("d1", 1_100).is_none());
        assert!(c.get("d2", 100).is_none());
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses), (1, 2));
    }

    /// Looks `digest` up until this thread answers it from a copy of its own (a different
    /// `Arc` than the shard's); returns the copy.
    fn copied(c: &PrincipalCache, digest: &str, now: UnixMillis) -> Arc<Principal> {
        let shared = c.get(digest, now).expect("cached");
        for _ in 0..3 {
            let found = c.get(digest, now).expect("cached");
            if !Arc::ptr_eq(&found, &shared) {
                return found;
            }
        }
        panic!("no copy of {digest} after repeated hits");
    }

    #[test]
    fn a_thread_answers_a_repeated_key_from_its_own_copy_and_counts_the_hits() {
        let c = cache(10);
        let p = principal("u1", "s1", Some("t1"));
        c.insert("d1", &p, c.generation(), 100);
        let copy = copied(&c, "d1", 100);
        assert_eq!(format!("{copy:?}"), format!("{p:?}"));
        let again = c.get("d1", 150).unwrap();
        assert!(Arc::ptr_eq(&again, &copy), "the copy answers again");
        assert!(
            c.get("d1", 1_100).is_none(),
            "the copy expires with its entry"
        );
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses), (4, 1));
        // Another thread has no copy: the shard answers it.
        thread::scope(|s| {
            s.spawn(|| assert!(Arc::ptr_eq(&c.get("d1", 100).unwrap(), &p)));
        });
    }

    #[test]
    fn copies_go_with_every_change_to_their_entries() {
        let c = cache(10);
        let p = principal("u1", "s1", Some("t1"));
        let other = principal("u2", "s2", None);
        c.insert("d1", &p, c.generation(), 100);
        c.insert("d2", &other, c.generation(), 100);

        copied(&c, "d1", 100);
        c.invalidate(&Revocation::AccessToken(TokenId::from_trusted("t1".into())));
        assert!(c.get("d1", 100).is_none(), "revoked: the copy is not used");

        // A revocation of something else retires the other copies too (they are taken
        // again from the shard).
        copied(&c, "d2", 100);
        c.invalidate(&Revocation::User(UserId::from_trusted("u9".into())));
        assert!(Arc::ptr_eq(&c.get("d2", 100).unwrap(), &other));

        // touch: the updated principal, not the copy of the old one.
        c.insert("d1", &p, c.generation(), 100);
        copied(&c, "d1", 100);
        let mut updated = (*p).clone();
        updated.session.last_activity_at = 12_345;
        let updated = Arc::new(updated);
        c.touch("d1", &updated);
        assert_eq!(c.get("d1", 100).unwrap().session.last_activity_at, 12_345);

        // A newer read of the same credential replaces the entry and the copies.
        copied(&c, "d1", 100);
        let mut reread = (*p).clone();
        reread.session.expires_at = 99_999;
        c.insert("d1", &Arc::new(reread), c.generation(), 200);
        assert_eq!(c.get("d1", 200).unwrap().session.expires_at, 99_999);

        // Losing trust: nothing answers, copies included.
        copied(&c, "d1", 200);
        c.set_trusted(false);
        assert!(c.get("d1", 200).is_none());
    }

    #[test]
    fn a_forgotten_copy_sends_the_next_lookup_to_the_shard() {
        let c = cache(10);
        let p = principal("u1", "s1", None);
        c.insert("d1", &p, c.generation(), 100);
        copied(&c, "d1", 100);
        c.forget_copy("d1");
        assert!(Arc::ptr_eq(&c.get("d1", 100).unwrap(), &p));
    }

    #[test]
    fn a_copy_taken_by_quick_key_answers_only_that_key_and_goes_when_forgotten_by_its_mac() {
        let c = cache(10);
        let p = principal("u1", "s1", Some("t1"));
        let key = "d1".key();
        let (quick, other_quick) = (7_u128 << 72 | 1, 7_u128 << 72 | 2);
        c.insert("d1", &p, c.generation(), 100);
        assert!(
            c.copy(quick, 100).is_none(),
            "no copy before the shard is read"
        );
        // Found twice in a row in the shard: the second read leaves a copy behind.
        for _ in 0..2 {
            assert!(Arc::ptr_eq(
                &c.get_from_shard(&key, quick, 100).unwrap(),
                &p
            ));
        }
        let copy = c
            .copy(quick, 100)
            .expect("the copy answers by the quick key");
        assert!(!Arc::ptr_eq(&copy, &p), "this thread's own copy");
        assert!(
            c.copy(other_quick, 100).is_none(),
            "another quick key in the same set finds nothing"
        );
        assert!(
            c.copy(quick, 1_100).is_none(),
            "the copy expires with its entry"
        );
        c.forget_copy(&key);
        assert!(c.copy(quick, 100).is_none(), "forgotten by the MAC");
        assert!(Arc::ptr_eq(
            &c.get_from_shard(&key, quick, 100).unwrap(),
            &p
        ));
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses), (4, 0));
    }

    #[test]
    fn a_copy_revisits_its_shard_entry_and_goes_when_the_entry_has() {
        // One shard of 1 entry: inserting a second key evicts the first without any change
        // that retires copies.
        let c = cache(1);
        let p = principal("u1", "s1", None);
        c.insert("d1", &p, c.generation(), 100);
        copied(&c, "d1", 100);
        // d1's hits only give it a second turn of CLOCK's hand in a one-slot shard.
        c.insert("d2", &principal("u2", "s2", None), c.generation(), 100);
        assert_eq!(c.stats().evictions, 1);
        let served = (0..2 * front::REVISIT_EVERY)
            .take_while(|_| c.get("d1", 100).is_some())
            .count();
        assert!(
            served <= front::REVISIT_EVERY as usize,
            "served {served} times after its entry went"
        );
    }

    #[test]
    fn touching_an_evicted_entry_still_retires_the_copies() {
        let c = cache(1);
        let p = principal("u1", "s1", None);
        c.insert("d1", &p, c.generation(), 100);
        copied(&c, "d1", 100);
        c.insert("d2", &principal("u2", "s2", None), c.generation(), 100);
        assert!(
            c.get("d1", 100).is_some(),
            "the copy outlives its evicted entry"
        );
        let mut updated = (*p).clone();
        updated.session.last_activity_at = 12_345;
        c.touch("d1", &Arc::new(updated));
        assert!(
            c.get("d1", 100).is_none(),
            "a copy whose activity was recorded must not answer again"
        );
    }

    #[test]
    fn each_revocation_drops_exactly_what_it_covers() {
        let c = cache(10);
        let g = c.generation();
        c.insert("a", &principal("u1", "s1", None), g, 0);
        c.insert("b", &principal("u1", "s2", Some("t1")), g, 0);
        c.insert("c", &principal("u2", "s3", Some("t2")), g, 0);
        c.insert("d", &principal("u3", "s4", None), g, 0);

        c.invalidate(&Revocation::Session(SessionId::from_trusted("s1".into())));
        assert!(c.get("a", 1).is_none());
        assert!(c.get("b", 1).is_some());

        c.invalidate(&Revocation::AccessToken(TokenId::from_trusted("t2".into())));
        assert!(c.get("c", 1).is_none());
        assert!(c.get("b", 1).is_some());

        c.invalidate(&Revocation::User(UserId::from_trusted("u1".into())));
        assert!(c.get("b", 1).is_none());
        assert!(c.get("d", 1).is_some());

        c.invalidate(&Revocation::All);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn a_read_that_raced_with_a_revocation_is_not_cached() {
        let c = cache(10);
        let before = c.generation();
        c.invalidate(&Revocation::Session(SessionId::from_trusted("s1".into())));
        c.insert("a", &principal("u1", "s1", None), before, 0);
        assert!(c.get("a", 1).is_none());
    }

    #[test]
    fn nothing_is_cached_while_untrusted_nor_by_a_read_that_began_then() {
        let c = cache(10);
        c.set_trusted(false);
        c.insert("a", &principal("u1", "s1", None), c.generation(), 0);
        let began_untrusted = c.generation();
        c.set_trusted(true);
        assert!(c.get("a", 1).is_none(), "not inserted while untrusted");
        c.insert("b", &principal("u1", "s2", None), began_untrusted, 0);
        assert!(
            c.get("b", 1).is_none(),
            "a read from before trust is dropped"
        );
        c.insert("c", &principal("u1", "s3", None), c.generation(), 0);
        assert!(c.get("c", 1).is_some());
    }

    #[test]
    fn an_untrusted_cache_misses_and_forgets() {
        let c = cache(10);
        c.insert("a", &principal("u1", "s1", None), c.generation(), 0);
        c.set_trusted(false);
        assert!(c.get("a", 1).is_none());
        c.set_trusted(true);
        assert!(c.get("a", 1).is_none(), "entries from before are gone");
    }

    #[test]
    fn fail_static_serves_entries_fresh_at_the_outage_start_for_the_window_only() {
        let c = cache(10).keeping_stale_for(5_000);
        c.insert("a", &principal("u1", "s1", None), c.generation(), 0);
        c.insert("old", &principal("u2", "s2", None), c.generation(), -2_000);
        assert!(c.get_stale("a", 100).is_none(), "no outage known");
        c.outage_began(500);
        c.set_trusted(false);
        c.outage_began(900);
        assert!(c.get("a", 600).is_none(), "lookups miss while untrusted");
        assert!(c.get_stale("a", 600).is_some());
        assert!(
            c.get_stale("a", 5_499).is_some(),
            "past its TTL, within the window"
        );
        assert!(
            c.get_stale("a", 5_500).is_none(),
            "the window counts from the start"
        );
        assert!(
            c.get_stale("old", 600).is_none(),
            "already stale when it began"
        );
        assert!(c.get_stale("never", 600).is_none());
        c.invalidate(&Revocation::Session(SessionId::from_trusted("s1".into())));
        assert!(
            c.get_stale("a", 600).is_none(),
            "a revocation here still drops it"
        );
        c.insert("b", &principal("u3", "s3", None), c.generation(), 600);
        assert!(
            c.get_stale("b", 700).is_none(),
            "nothing is cached during the outage"
        );
        c.outage_ended();
        c.set_trusted(true);
        assert_eq!(c.stats().entries, 0, "regaining trust drops what was kept");
        assert_eq!(cache(10).stale_until(1), None);
    }

    #[test]
    fn the_size_stays_bounded() {
        let c = cache(4);
        for i in 0..20 {
            let key = format!("d{i}");
            c.insert(
                &key,
                &principal("u1", &format!("s{i}"), None),
                c.generation(),
                i,
            );
            assert!(c.stats().entries <= 4);
        }
        assert!(
            c.get("d19", 19).is_some(),
            "the newest entry survives eviction"
        );
    }

    #[test]
    fn stored_digests_are_their_bytes_and_other_text_is_hashed() {
        let hex = "00ff10".to_owned() + &"ab".repeat(29);
        let key = digest_key(&hex);
        assert_eq!(&key[..3], &[0x00, 0xff, 0x10]);
        assert_eq!(key[3], 0xab);
        let upper = hex.to_uppercase();
        assert_ne!(
            digest_key(&upper),
            key,
            "only the stored (lower-case) form decodes"
        );
        assert_eq!(digest_key("d1"), digest_key("d1"));
        assert_ne!(digest_key("d1"), digest_key("d2"));
    }

    #[test]
    fn small_caches_have_fewer_shards() {
        for capacity in [1, 4, 63, 64, 1_000, 100_000, 1_000_003] {
            let c = cache(capacity);
            assert!(c.shard_count().is_power_of_two());
            assert!(c.shard_count() <= MAX_SHARDS);
            assert!(c.shard_count() == 1 || capacity / c.shard_count() >= MIN_SHARD_ENTRIES);
        }
        assert_eq!(cache(4).shard_count(), 1);
        assert_eq!(cache(100_000).shard_count(), MAX_SHARDS);
    }

    #[test]
    fn a_revocation_visits_only_what_the_index_lists() {
        // Many shards, one user's credentials spread over them among many others'.
        let c = cache(10_000);
        assert!(c.shard_count() > 1);
        let g = c.generation();
        for i in 0..2_000 {
            let user = format!("u{}", i % 100);
            let token = (i % 3 == 0).then(|| format!("t{i}"));
            c.insert(
                &format!("d{i}"),
                &principal(&user, &format!("s{i}"), token.as_deref()),
                g,
                0,
            );
        }
        c.check_invariants(true);
        c.invalidate(&Revocation::User(UserId::from_trusted("u7".into())));
        c.invalidate(&Revocation::Session(SessionId::from_trusted("s8".into())));
        c.invalidate(&Revocation::AccessToken(TokenId::from_trusted("t9".into())));
        c.check_invariants(true);
        for i in 0..2_000 {
            let gone = i % 100 == 7 || i == 8 || i == 9;
            assert_eq!(c.get(&format!("d{i}"), 1).is_none(), gone, "entry {i}");
        }
        assert_eq!(c.stats().entries, 2_000 - 20 - 2);
        c.invalidate(&Revocation::User(UserId::from_trusted("nobody".into())));
        assert_eq!(c.stats().entries, 1_978);
    }

    #[test]
    fn a_session_minted_for_a_token_goes_with_the_token() {
        // A principal whose session names a token but which carries none itself (and one
        // whose two token ids differ): both ids find it.
        let c = cache(10);
        let mut p = (*principal("u1", "s1", None)).clone();
        p.session.user_access_token_id = Some(TokenId::from_trusted("t1".into()));
        c.insert("a", &Arc::new(p), c.generation(), 0);
        let mut q = (*principal("u2", "s2", Some("t2"))).clone();
        q.session.user_access_token_id = Some(TokenId::from_trusted("t3".into()));
        c.insert("b", &Arc::new(q), c.generation(), 0);
        c.check_invariants(true);
        c.invalidate(&Revocation::AccessToken(TokenId::from_trusted("t1".into())));
        assert!(c.get("a", 1).is_none());
        c.invalidate(&Revocation::AccessToken(TokenId::from_trusted("t3".into())));
        assert!(c.get("b", 1).is_none());
        c.check_invariants(true);
    }

    #[test]
    fn eviction_gives_a_hit_entry_a_second_chance() {
        let c = cache(4);
        for key in ["a", "b", "c", "d"] {
            c.insert(key, &principal("u1", key, None), c.generation(), 0);
        }
        assert!(c.get("a", 1).is_some());
        assert!(c.get("c", 1).is_some());
        c.insert("e", &principal("u1", "e", None), c.generation(), 2);
        assert!(c.get("b", 3).is_none(), "the oldest entry never hit goes");
        c.insert("f", &principal("u1", "f", None), c.generation(), 3);
        assert!(c.get("d", 4).is_none(), "then the next one never hit");
        for key in ["a", "c", "e", "f"] {
            assert!(c.get(key, 4).is_some(), "{key} stays");
        }
        assert_eq!(c.stats().evictions, 2);
        c.check_invariants(true);
    }

    #[test]
    fn eviction_takes_an_expired_entry_even_if_it_was_hit() {
        let c = cache(4);
        c.insert("b", &principal("u1", "b", None), c.generation(), 900);
        c.insert("c", &principal("u1", "c", None), c.generation(), 900);
        c.insert("a", &principal("u1", "a", None), c.generation(), 0);
        c.insert("d", &principal("u1", "d", None), c.generation(), 900);
        for key in ["a", "b", "c", "d"] {
            assert!(c.get(key, 950).is_some());
        }
        c.insert("e", &principal("u1", "e", None), c.generation(), 1_000);
        assert!(c.get("a", 0).is_none(), "the expired entry went");
        for key in ["b", "c", "d", "e"] {
            assert!(c.get(key, 1_001).is_some(), "{key} stays");
        }
    }

    #[test]
    fn every_entry_of_the_capacity_is_usable_whatever_the_spread_over_shards() {
        let c = cache(1_000);
        assert!(c.shard_count() > 1);
        for i in 0..1_000 {
            c.insert(
                &format!("d{i}"),
                &principal("u1", &format!("s{i}"), None),
                c.generation(),
                0,
            );
        }
        let stats = c.stats();
        assert_eq!((stats.entries, stats.evictions), (1_000, 0));
        assert!((0..1_000).all(|i| c.get(&format!("d{i}"), 1).is_some()));
        c.check_invariants(true);
    }

    #[test]
    fn the_capacity_holds_across_shards_under_churn() {
        let c = cache(1_000);
        assert!(c.shard_count() > 1);
        for i in 0..10_000 {
            c.insert(
                &format!("d{i}"),
                &principal(&format!("u{}", i % 37), &format!("s{i}"), None),
                c.generation(),
                i,
            );
        }
        let stats = c.stats();
        assert!(stats.entries <= 1_000, "{} entries", stats.entries);
        assert_eq!(stats.entries as u64 + stats.evictions, 10_000);
        c.check_invariants(true);
        c.invalidate(&Revocation::User(UserId::from_trusted("u5".into())));
        c.check_invariants(true);
    }

    #[test]
    fn a_replaced_entry_is_indexed_once() {
        let c = cache(10);
        c.insert("a", &principal("u1", "s1", Some("t1")), c.generation(), 0);
        c.insert("a", &principal("u1", "s1", Some("t1")), c.generation(), 5);
        assert_eq!(c.stats().entries, 1);
        c.check_invariants(true);
        assert!(c.get("a", 1_004).is_some(), "the newer read counts");
        c.touch("a", &principal("u1", "s1", Some("t1")));
        c.check_invariants(true);
    }

    /// Workers read a shared "database" of revoked users and cache what they read while a
    /// revoker revokes users (flag in the database, then invalidate). Once a revocation has
    /// returned, no lookup may find that user, whatever the interleaving; the cache's
    /// structure stays consistent and within its capacity.
    #[test]
    fn concurrent_inserts_lookups_and_revocations_keep_the_invariants() {
        race_lookups_with_revocations(64, 16);
    }

    /// Few keys: each worker's lookups mostly hit its own front copies while the
    /// revocations retire them.
    #[test]
    fn threads_copies_never_outlive_a_revocation() {
        race_lookups_with_revocations(24, 1);
    }

    /// Workers look up, and fill on a miss, `USERS * PER_USER` keys at random while another
    /// thread revokes every third user: no lookup may find a user whose revocation returned.
    fn race_lookups_with_revocations(users: usize, per_user: usize) {
        const WORKERS: usize = 4;
        const OPS: usize = 20_000;
        let c = cache(512);
        assert!(c.shard_count() > 1);
        let revoked: Vec<AtomicBool> = (0..users).map(|_| AtomicBool::new(false)).collect();
        let done: Vec<AtomicBool> = (0..users).map(|_| AtomicBool::new(false)).collect();
        let principals: Vec<Arc<Principal>> = (0..users * per_user)
            .map(|i| {
                let (u, t) = (i / per_user, i % per_user);
                principal(
                    &format!("u{u}"),
                    &format!("s{u}-{t}"),
                    Some(&format!("t{u}-{t}")),
                )
            })
            .collect();
        let stale_hits = AtomicUsize::new(0);
        let start = Barrier::new(WORKERS + 1);
        thread::scope(|scope| {
            for worker in 0..WORKERS {
                let (c, revoked, done, principals, stale_hits, start) =
                    (&c, &revoked, &done, &principals, &stale_hits, &start);
                scope.spawn(move || {
                    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ worker as u64;
                    start.wait();
                    for op in 0..OPS {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let i = (state % (users * per_user) as u64) as usize;
                        let user = i / per_user;
                        let digest = format!("d{i}");
                        let finished = done[user].load(Ordering::SeqCst);
                        match c.get(&digest, op as i64) {
                            Some(found) => {
                                assert_eq!(
                                    found.session.id.as_str(),
                                    principals[i].session.id.as_str()
                                );
                                if finished {
                                    stale_hits.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                            None => {
                                // The miss path: take the generation, read the database.
                                let generation = c.generation();
                                if revoked[user].load(Ordering::SeqCst) {
                                    continue;
                                }
                                thread::yield_now();
                                c.insert(&digest, &principals[i], generation, op as i64);
                            }
                        }
                    }
                });
            }
            let (c, revoked, done, start) = (&c, &revoked, &done, &start);
            scope.spawn(move || {
                start.wait();
                for user in (0..users).step_by(3) {
                    revoked[user].store(true, Ordering::SeqCst);
                    c.invalidate(&Revocation::User(UserId::from_trusted(format!("u{user}"))));
                    done[user].store(true, Ordering::SeqCst);
                    c.check_invariants(false);
                    // Time for the workers to take copies again before the next one.
                    thread::sleep(std::time::Duration::from_micros(200));
                }
            });
        });
        assert_eq!(
            stale_hits.load(Ordering::SeqCst),
            0,
            "a revoked user was found"
        );
        c.check_invariants(true);
        for (i, p) in principals.iter().enumerate() {
            let user = i / per_user;
            if done[user].load(Ordering::SeqCst) {
                assert!(
                    c.get(&format!("d{i}"), 0).is_none(),
                    "{:?} cached",
                    p.user.id
                );
            }
        }
        let stats = c.stats();
        assert!(stats.entries <= 512);
        assert!(stats.hits > 0, "{stats:?}");
        if users * per_user > 512 {
            assert!(stats.evictions > 0, "{stats:?}");
        }
    }
}
