//! `loadgen cache-bench` and `loadgen cache-memory`: the token cache alone, in this process,
//! no server. `cache-bench` times lookups of the service's `PrincipalCache` at several sizes
//! and thread counts against the designs it was chosen over (the previous single-lock map,
//! `papaya`'s lock-free map, `moka`'s concurrent cache), then a revocation and an insert into
//! a full cache. `cache-memory` reads the resident memory a filled cache adds.

use std::{
    collections::HashMap,
    fs, hint,
    sync::{
        Arc, Barrier, RwLock,
        atomic::{AtomicI64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use token_service::domain::{
    cache::{CacheSettings, PrincipalCache, digest_key},
    caller::Principal,
    ids::{SessionId, TokenId, UserId},
    model::{Revocation, Session, User, UserAccessToken},
};

use crate::{CacheBenchArgs, CacheDesign, CacheMemoryArgs, footprint::machine};

/// Cached credentials per user in the generated population (a user with a few tokens).
const PER_USER: usize = 4;
/// The TTL every design is given (long enough that nothing expires during a run).
const TTL: Duration = Duration::from_secs(3_600);

/// What each compared design offers the benchmark: the service's calls, by digest text.
trait Design: Sync {
    fn insert(&self, digest: &str, principal: &Arc<Principal>);
    fn get(&self, digest: &str) -> Option<Arc<Principal>>;
    /// Drops what the revocation covers; false if the design cannot do it synchronously.
    fn invalidate(&self, revocation: &Revocation) -> bool;
    /// Whether it evicts to stay within a capacity.
    fn bounded(&self) -> bool;
}

impl Design for PrincipalCache {
    fn insert(&self, digest: &str, principal: &Arc<Principal>) {
        PrincipalCache::insert(self, digest, principal, self.generation(), 0);
    }

    fn get(&self, digest: &str) -> Option<Arc<Principal>> {
        PrincipalCache::get(self, digest, 1)
    }

    fn invalidate(&self, revocation: &Revocation) -> bool {
        PrincipalCache::invalidate(self, revocation);
        true
    }

    fn bounded(&self) -> bool {
        true
    }
}

/// The design before issue 16: one `RwLock<HashMap<String, _>>` (SipHash of the digest
/// text), revocation by a scan of every entry under the write lock, and when full, expired
/// entries dropped, then the older half.
#[derive(Debug)]
struct SingleLock {
    capacity: usize,
    entries: RwLock<HashMap<String, (Arc<Principal>, i64)>>,
    clock: AtomicI64,
}

impl Design for SingleLock {
    fn insert(&self, digest: &str, principal: &Arc<Principal>) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(digest) {
            let ttl = TTL.as_millis() as i64;
            entries.retain(|_, (_, at)| now - *at < ttl);
            if entries.len() >= self.capacity {
                let mut ages: Vec<i64> = entries.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let median = ages[ages.len() / 2];
                entries.retain(|_, (_, at)| *at > median);
            }
        }
        entries.insert(digest.to_owned(), (Arc::clone(principal), now));
    }

    fn get(&self, digest: &str) -> Option<Arc<Principal>> {
        let now = self.clock.load(Ordering::Relaxed);
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(digest)
            .filter(|(_, at)| now - at < TTL.as_millis() as i64)
            .map(|(p, _)| Arc::clone(p))
    }

    fn invalidate(&self, revocation: &Revocation) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (p, _)| !p.covered_by(revocation));
        true
    }

    fn bounded(&self) -> bool {
        true
    }
}

/// `papaya::HashMap` keyed by the digest's 32 bytes (its default hasher); no index, so a
/// revocation is a scan (lock-free, but of every entry).
struct Papaya {
    entries: papaya::HashMap<[u8; 32], (Arc<Principal>, i64)>,
}

impl Design for Papaya {
    fn insert(&self, digest: &str, principal: &Arc<Principal>) {
        self.entries
            .pin()
            .insert(digest_key(digest), (Arc::clone(principal), 0));
    }

    fn get(&self, digest: &str) -> Option<Arc<Principal>> {
        self.entries
            .pin()
            .get(&digest_key(digest))
            .filter(|(_, at)| 1 - at < i64::MAX)
            .map(|(p, _)| Arc::clone(p))
    }

    fn invalidate(&self, revocation: &Revocation) -> bool {
        self.entries
            .pin()
            .retain(|_, (p, _)| !p.covered_by(revocation));
        true
    }

    fn bounded(&self) -> bool {
        false
    }
}

/// `moka::sync::Cache` keyed by the digest's 32 bytes, with its TinyLFU admission and
/// eviction and a time-to-live. Its invalidation by predicate is applied later, in the
/// background, so it is not timed.
struct Moka {
    entries: moka::sync::Cache<[u8; 32], Arc<Principal>>,
}

impl Design for Moka {
    fn insert(&self, digest: &str, principal: &Arc<Principal>) {
        self.entries
            .insert(digest_key(digest), Arc::clone(principal));
    }

    fn get(&self, digest: &str) -> Option<Arc<Principal>> {
        self.entries.get(&digest_key(digest))
    }

    fn invalidate(&self, _revocation: &Revocation) -> bool {
        false
    }

    fn bounded(&self) -> bool {
        true
    }
}

fn build(design: CacheDesign, capacity: usize) -> Box<dyn Design> {
    match design {
        CacheDesign::Sharded => Box::new(PrincipalCache::new(CacheSettings {
            enable: true,
            capacity,
            ttl_ms: TTL.as_millis() as i64,
        })),
        CacheDesign::SingleLock => Box::new(SingleLock {
            capacity,
            entries: RwLock::new(HashMap::new()),
            clock: AtomicI64::new(0),
        }),
        CacheDesign::Papaya => Box::new(Papaya {
            entries: papaya::HashMap::with_capacity(capacity),
        }),
        CacheDesign::Moka => Box::new(Moka {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .time_to_live(TTL)
                .build(),
        }),
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `n` digests as the service stores them: 64 lower-case hex digits, uniformly random.
fn digests(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|_| {
            (0..4)
                .map(|_| format!("{:016x}", rng.next()))
                .collect::<String>()
        })
        .collect()
}

/// A principal of the shape the token check caches: a user, the session minted for a
/// personal access token, and the token.
fn principal(user: &UserId) -> Arc<Principal> {
    let token = TokenId::generate();
    let roles = vec!["system_user".to_owned()];
    Arc::new(Principal {
        user: User {
            id: user.clone(),
            username: format!("user-{}", &user.as_str()[..8]),
            email: format!("{}@example.com", &user.as_str()[..8]),
            roles: roles.clone(),
            is_bot: false,
            bot_owner_id: None,
            create_at: 1,
            update_at: 1,
            delete_at: 0,
        },
        session: Session {
            id: SessionId::generate(),
            user_id: user.clone(),
            user_access_token_id: Some(token.clone()),
            create_at: 1,
            expires_at: 0,
            last_activity_at: 1,
            length_ms: 0,
            device_id: String::new(),
            roles,
            is_oauth: false,
            expired_notify: false,
            props: Default::default(),
        },
        access_token: Some(UserAccessToken {
            id: token,
            user_id: user.clone(),
            description: "ci deploy".to_owned(),
            is_active: true,
            expires_at: 0,
            create_at: 1,
            last_use: Default::default(),
            bound_cidrs: Default::default(),
            scopes: Default::default(),
        }),
    })
}

/// `n` principals, [`PER_USER`] per user.
fn principals(n: usize) -> Vec<Arc<Principal>> {
    let mut user = UserId::generate();
    (0..n)
        .map(|i| {
            if i % PER_USER == 0 {
                user = UserId::generate();
            }
            principal(&user)
        })
        .collect()
}

/// This thread's time on a CPU so far (`/proc/thread-self/schedstat`): unlike wall time,
/// not inflated by other work sharing the CPUs.
fn thread_cpu() -> Duration {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Lookups of random cached digests by `threads` threads for `duration`: (total lookups,
/// wall time, CPU time of the looking-up threads).
fn lookups(
    cache: &dyn Design,
    digests: &[String],
    threads: usize,
    duration: Duration,
) -> (u64, Duration, Duration) {
    let start = Barrier::new(threads + 1);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                scope.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                    start.wait();
                    let cpu = thread_cpu();
                    let until = Instant::now() + duration;
                    let mut done = 0u64;
                    while Instant::now() < until {
                        for _ in 0..256 {
                            let digest = &digests[(rng.next() % digests.len() as u64) as usize];
                            let found = cache.get(digest);
                            assert!(found.is_some(), "a cached digest missed");
                            hint::black_box(found);
                        }
                        done += 256;
                    }
                    (done, thread_cpu() - cpu)
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let (mut total, mut cpu) = (0, Duration::ZERO);
        for worker in workers {
            let (done, used) = worker.join().unwrap_or_default();
            total += done;
            cpu += used;
        }
        (total, began.elapsed(), cpu)
    })
}

pub(crate) fn bench(args: &CacheBenchArgs) -> Result<(), String> {
    println!("machine: {}", machine());
    println!(
        "lookups of random cached digests (drawn from {}) for {:?} per cell; ns/lookup = CPU time of the looking-up threads / lookups (not inflated by other work on the CPUs; includes waiting spun on a contended lock); Mlookups/s = all threads together, by wall time",
        args.lookup_keys
            .map_or_else(|| "all of them".to_owned(), |n| format!("the first {n}")),
        args.duration
    );
    println!(
        "| design | entries | threads | ns/lookup (CPU) | Mlookups/s | revoke one user (µs wall) | insert into a full cache (ns wall) |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut summaries = Vec::new();
    for &entries in &args.entries {
        let keys = digests(entries, entries as u64);
        let people = principals(entries);
        let extra = digests(args.full_inserts, 7);
        for &design in &args.designs {
            let cache = build(design, entries);
            for (digest, principal) in keys.iter().zip(&people) {
                cache.insert(digest, principal);
            }
            let mut cells = Vec::new();
            for &threads in &args.threads {
                let drawn = &keys[..args.lookup_keys.unwrap_or(keys.len()).clamp(1, keys.len())];
                let (count, took, cpu) = lookups(cache.as_ref(), drawn, threads, args.duration);
                let ns = cpu.as_nanos() as f64 / count as f64;
                let rate = count as f64 / took.as_secs_f64() / 1e6;
                cells.push((threads, ns, rate));
            }
            // Revoke users spread over the population (each has PER_USER entries).
            let revocations = args.revocations.min(entries / PER_USER);
            // Short single-threaded phases are timed by wall clock: a thread's CPU time in
            // schedstat advances at scheduler ticks, too coarse for them.
            let began = Instant::now();
            let mut synchronous = true;
            for r in 0..revocations {
                let victim = &people[(r * entries / revocations) / PER_USER * PER_USER];
                synchronous &= cache.invalidate(&Revocation::User(victim.user.id.clone()));
            }
            let revoke_us = began.elapsed().as_secs_f64() * 1e6 / revocations.max(1) as f64;
            // Refill to the capacity, then insert new digests: each evicts one.
            for (digest, principal) in keys.iter().zip(&people) {
                cache.insert(digest, principal);
            }
            let began = Instant::now();
            for (i, digest) in extra.iter().enumerate() {
                cache.insert(digest, &people[i % people.len()]);
            }
            let insert_ns = began.elapsed().as_nanos() as f64 / extra.len().max(1) as f64;
            for (threads, ns, rate) in cells {
                let insert = if cache.bounded() {
                    format!("{insert_ns:.0}")
                } else {
                    format!("{insert_ns:.0} (no eviction: grows)")
                };
                let revoke = if synchronous {
                    format!("{revoke_us:.1}")
                } else {
                    "n/a (deferred)".to_owned()
                };
                println!(
                    "| {} | {entries} | {threads} | {ns:.0} | {rate:.2} | {revoke} | {insert} |",
                    design.name()
                );
                summaries.push(format!(
                    "summary scenario=cache-bench design={} entries={entries} threads={threads} ns_per_lookup={ns:.1} mlookups_per_s={rate:.3} revoke_us={} insert_full_ns={insert_ns:.1} lookup_keys={}",
                    design.name(),
                    if synchronous { format!("{revoke_us:.2}") } else { "nan".to_owned() },
                    args.lookup_keys.unwrap_or(entries).clamp(1, entries),
                ));
            }
        }
    }
    for line in summaries {
        println!("{line}");
    }
    println!("load average after: {}", crate::footprint::loadavg());
    Ok(())
}

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn memory(args: &CacheMemoryArgs) -> Result<(), String> {
    let n = args.entries;
    let before = rss_kib();
    let keys = digests(n, 11);
    let after_keys = rss_kib();
    let people = principals(n);
    let after_principals = rss_kib();
    let cache = build(args.design, n);
    for (digest, principal) in keys.iter().zip(&people) {
        cache.insert(digest, principal);
    }
    let after_cache = rss_kib();
    // The cache now shares each principal; dropping the list leaves it the only owner.
    drop(people);
    let per = |kib: u64| kib as f64 * 1024.0 / n as f64;
    println!(
        "design {}, {n} entries: principals {:.0} B each (the Arc'd user, session and token); the cache's own structures {:.0} B per entry; together {:.0} B per cached credential (VmRSS deltas; the digest list, {:.0} B per entry, not counted)",
        args.design.name(),
        per(after_principals - after_keys),
        per(after_cache - after_principals),
        per(after_cache - after_keys),
        per(after_keys - before),
    );
    println!(
        "summary scenario=cache-memory design={} entries={n} principal_bytes={:.1} cache_bytes={:.1} total_bytes={:.1}",
        args.design.name(),
        per(after_principals - after_keys),
        per(after_cache - after_principals),
        per(after_cache - after_keys),
    );
    hint::black_box(&cache);
    Ok(())
}
