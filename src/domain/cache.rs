//! The hot-path cache: token digest -> the principal it authenticated as, so a repeated
//! token check touches no database.
//!
//! Staleness is bounded three ways: every revocation on this replica drops matching entries
//! before its RPC returns; revocations on other replicas arrive through the revocation log
//! (see [`super::revocations`]) and drop them within the feed's interval; and every entry
//! expires after `ttl_ms` regardless. While the feed cannot read the log the cache is not
//! trusted: lookups miss and go to the database until it has caught up.
//!
//! A lookup takes a read lock for a hash-map probe and a clone; no lock is held across an
//! await. Entries filled by a read that raced with a revocation are discarded (a generation
//! counter is bumped by every invalidation).

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use super::{
    caller::Principal,
    model::{Revocation, UnixMillis},
};

/// Cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Off: every check reads the database.
    pub enable: bool,
    /// Most entries held; when full, expired entries are dropped, then the oldest half.
    pub capacity: usize,
    /// An entry is used for at most this long after it was read from the database.
    pub ttl_ms: i64,
}

#[derive(Debug)]
struct Entry {
    principal: Arc<Principal>,
    cached_at: UnixMillis,
}

/// Token digest -> principal, bounded in size and age.
#[derive(Debug)]
pub struct PrincipalCache {
    settings: CacheSettings,
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped by every invalidation; an insert prepared before a bump is dropped.
    generation: AtomicU64,
    /// False while revocations from other replicas may have been missed.
    trusted: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hit and miss counts, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub trusted: bool,
}

impl PrincipalCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            trusted: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The generation to pass to [`PrincipalCache::insert`] for a read starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached principal of `digest`, if fresh and the cache is trusted.
    pub fn get(&self, digest: &str, now: UnixMillis) -> Option<Arc<Principal>> {
        if !self.settings.enable || !self.trusted.load(Ordering::Acquire) {
            return None;
        }
        let found = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            entries
                .get(digest)
                .filter(|e| now - e.cached_at < self.settings.ttl_ms)
                .map(|e| Arc::clone(&e.principal))
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches a principal read from the database, unless an invalidation happened since
    /// `generation` was taken (the read may have seen a row that is now revoked), or the
    /// cache is not trusted (the revocation feed does not know yet which events it must
    /// apply, so an entry filled now could outlive a revocation it never hears of).
    pub fn insert(
        &self,
        digest: &str,
        principal: &Arc<Principal>,
        generation: u64,
        now: UnixMillis,
    ) {
        if !self.settings.enable {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != generation
            || !self.trusted.load(Ordering::Acquire)
        {
            return;
        }
        if entries.len() >= self.settings.capacity && !entries.contains_key(digest) {
            let ttl = self.settings.ttl_ms;
            entries.retain(|_, e| now - e.cached_at < ttl);
            if entries.len() >= self.settings.capacity {
                let mut ages: Vec<UnixMillis> = entries.values().map(|e| e.cached_at).collect();
                ages.sort_unstable();
                let median = ages[ages.len() / 2];
                entries.retain(|_, e| e.cached_at > median);
            }
        }
        entries.insert(
            digest.to_owned(),
            Entry {
                principal: Arc::clone(principal),
                cached_at: now,
            },
        );
    }

    /// Replaces the cached principal after its session's activity was recorded (keeping
    /// when it was read from the database).
    pub fn touch(&self, digest: &str, principal: &Arc<Principal>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(digest) {
            entry.principal = Arc::clone(principal);
        }
    }

    /// Drops every entry a revocation affects.
    pub fn invalidate(&self, revocation: &Revocation) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        match revocation {
            Revocation::All => entries.clear(),
            _ => entries.retain(|_, e| !e.principal.covered_by(revocation)),
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
    pub fn set_trusted(&self, trusted: bool) {
        if trusted {
            let _entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.trusted.store(true, Ordering::Release);
        } else {
            self.trusted.store(false, Ordering::Release);
            self.clear();
        }
    }

    /// Whether revocations from other replicas are known to be applied.
    pub fn is_trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Counters and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.read().map(|e| e.len()).unwrap_or(0),
            trusted: self.trusted.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
}
