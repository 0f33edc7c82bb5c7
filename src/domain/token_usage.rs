//! Last use of personal access tokens, GitLab-style: when each token last authenticated,
//! the user agent of that use, and the 5 most recent distinct client addresses.
//!
//! The token check never writes. It notes the use in a [`UsageCollector`] (the calling
//! thread's own map, behind a mutex no other request thread takes, held for one hash probe;
//! nothing allocated when the token already has an entry there and the address and user
//! agent are the ones noted before), and a background task ([`run_last_use_flush`])
//! swaps the collected uses out every `last_use.flush_interval` and writes them in batches:
//! at most one write per token per interval per replica, whatever the request rate. A crash
//! loses at most one interval of last-use data, never a token; a flush that fails puts its
//! uses back for the next one. Graceful shutdown flushes once more.
//!
//! Session tokens are not tracked here (sessions have `last_activity_at`).

use std::{
    collections::{HashMap, hash_map::Entry},
    net::IpAddr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::{
    Context,
    error::Result,
    ids::{TokenId, UserId},
    lifecycle::{Action, Actor, NewRecord, Origin, RequestOrigin, cut},
    model::UnixMillis,
};
use crate::stripes::{Padded, thread_number};

/// Most client addresses kept per token.
pub const MAX_RECENT_ADDRESSES: usize = 5;

/// Longest user agent kept, in bytes (cut at a character boundary).
pub const MAX_LAST_USER_AGENT_BYTES: usize = 255;

/// Most tokens written in one transaction.
pub const FLUSH_BATCH_SIZE: usize = 100;

/// The uses of one token noted since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUse {
    /// The latest use (Unix ms).
    pub last_used_at: UnixMillis,
    /// The user agent of the latest use ("" if it sent none), cut to
    /// [`MAX_LAST_USER_AGENT_BYTES`].
    pub user_agent: Box<str>,
    /// Distinct client addresses with the time each was last seen, at most
    /// [`MAX_RECENT_ADDRESSES`] (the oldest is dropped), in no particular order.
    pub addresses: Vec<(IpAddr, UnixMillis)>,
}

impl PendingUse {
    fn new(at: UnixMillis, ip: Option<IpAddr>, user_agent: &str) -> Self {
        let mut addresses = Vec::with_capacity(MAX_RECENT_ADDRESSES);
        if let Some(ip) = ip {
            addresses.push((ip, at));
        }
        Self {
            last_used_at: at,
            user_agent: Box::from(user_agent),
            addresses,
        }
    }

    /// Adds a use at `at`; allocates only when the user agent differs from the one noted.
    fn add(&mut self, at: UnixMillis, ip: Option<IpAddr>, user_agent: &str) {
        if at >= self.last_used_at {
            self.last_used_at = at;
            if *self.user_agent != *user_agent {
                self.user_agent = Box::from(user_agent);
            }
        }
        if let Some(ip) = ip {
            self.add_address(ip, at);
        }
    }

    fn add_address(&mut self, ip: IpAddr, at: UnixMillis) {
        if let Some(seen) = self.addresses.iter_mut().find(|(known, _)| *known == ip) {
            seen.1 = seen.1.max(at);
            return;
        }
        if self.addresses.len() < MAX_RECENT_ADDRESSES {
            self.addresses.push((ip, at));
            return;
        }
        if let Some(oldest) = self.addresses.iter_mut().min_by_key(|(_, seen)| *seen)
            && oldest.1 < at
        {
            *oldest = (ip, at);
        }
    }

    /// Merges uses noted later (or put back after a failed flush).
    fn merge(&mut self, other: PendingUse) {
        if other.last_used_at >= self.last_used_at {
            self.last_used_at = other.last_used_at;
            self.user_agent = other.user_agent;
        }
        for (ip, at) in other.addresses {
            self.add_address(ip, at);
        }
    }
}

/// One token's collected uses, as the flush writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    pub token_id: TokenId,
    pub last_used_at: UnixMillis,
    pub user_agent: String,
    /// Canonical text form and last-seen time, newest first.
    pub addresses: Vec<(String, UnixMillis)>,
}

/// Collects token uses in memory between flushes: [`USAGE_STRIPES`] maps, each behind its
/// own mutex, a thread noting into its own one ([`thread_number`]), so checks on different
/// cores do not meet on a lock even when they check the same token (one token presented by
/// every request is the common case of a service's token). A token used on several threads
/// has an entry in each of their maps; [`UsageCollector::take`] merges them.
#[derive(Debug)]
pub struct UsageCollector {
    stripes: Box<[Padded<Mutex<UsesByToken>>]>,
}

/// One shard's uses. Keyed by ids of tokens that authenticated (no client chooses them), so
/// a fast hasher is safe here.
type UsesByToken = HashMap<TokenId, PendingUse, foldhash::fast::RandomState>;

/// How many maps the collector spreads threads over (more threads share, round them).
pub const USAGE_STRIPES: usize = 32;

impl Default for UsageCollector {
    fn default() -> Self {
        Self {
            stripes: (0..USAGE_STRIPES).map(|_| Padded::default()).collect(),
        }
    }
}

impl UsageCollector {
    /// The calling thread's map.
    fn own(&self) -> MutexGuard<'_, UsesByToken> {
        lock(&self.stripes[thread_number() % USAGE_STRIPES].0)
    }

    /// Notes a use of `token` at `at`, from `ip` with `user_agent`. The hot path: one hash
    /// probe under the thread's own lock, no await.
    pub fn note(
        &self,
        token: &TokenId,
        at: UnixMillis,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) {
        let user_agent = cut(user_agent.unwrap_or(""), MAX_LAST_USER_AGENT_BYTES);
        let ip = ip.map(|ip| ip.to_canonical());
        let mut pending = self.own();
        match pending.get_mut(token) {
            Some(entry) => entry.add(at, ip, user_agent),
            None => {
                pending.insert(token.clone(), PendingUse::new(at, ip, user_agent));
            }
        }
    }

    /// Takes every use noted so far, leaving the collector empty: one entry per token, the
    /// threads' entries for it merged.
    pub fn take(&self) -> HashMap<TokenId, PendingUse> {
        let mut all = HashMap::new();
        for stripe in &self.stripes {
            let taken = std::mem::take(&mut *lock(&stripe.0));
            merge_into(&mut all, taken);
        }
        all
    }

    /// Puts back uses a flush could not write, merged with any noted since.
    pub fn put_back(&self, uses: impl IntoIterator<Item = (TokenId, PendingUse)>) {
        merge_into(&mut *self.own(), uses);
    }
}

/// Adds `uses` to `into`, merging a token's uses with those it already has there.
fn merge_into<S: std::hash::BuildHasher>(
    into: &mut HashMap<TokenId, PendingUse, S>,
    uses: impl IntoIterator<Item = (TokenId, PendingUse)>,
) {
    for (token, used) in uses {
        match into.entry(token) {
            Entry::Occupied(mut entry) => entry.get_mut().merge(used),
            Entry::Vacant(entry) => {
                entry.insert(used);
            }
        }
    }
}

/// A shard's map, even if a thread panicked holding it (the map stays consistent: every
/// change under the lock is a single insert or update).
fn lock<T>(shard: &Mutex<T>) -> MutexGuard<'_, T> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Tokens whose last use was written (one UPDATE each).
    pub tokens: usize,
    /// Transactions committed.
    pub batches: usize,
}

impl Context {
    /// Notes a use of personal access token `token` by the current request (its client
    /// address and user agent from the request's origin). Called by the token check.
    pub(crate) fn note_token_use(&self, token: &TokenId, now: UnixMillis) {
        let usage = self.usage();
        RequestOrigin::with_current(|origin| match origin {
            Some(o) => usage.note(token, now, o.ip, o.user_agent.as_deref()),
            None => usage.note(token, now, None, None),
        });
    }

    /// Writes every use noted so far, in batches of [`FLUSH_BATCH_SIZE`] tokens, one
    /// transaction each. Uses of a batch that fails (and of the batches after it) are put
    /// back for the next flush.
    pub async fn flush_last_use(&self) -> Result<FlushReport> {
        let taken = self.usage().take();
        if taken.is_empty() {
            return Ok(FlushReport::default());
        }
        let mut all: Vec<(TokenId, PendingUse)> = taken.into_iter().collect();
        // The same order on every replica: concurrent flushes lock rows in one order.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut report = FlushReport::default();
        let mut rest = all.into_iter().peekable();
        while rest.peek().is_some() {
            let batch: Vec<(TokenId, PendingUse)> = rest.by_ref().take(FLUSH_BATCH_SIZE).collect();
            let uses: Vec<TokenUse> = batch.iter().map(token_use).collect();
            let recorded = self
                .store()
                .record_token_uses(&uses, self.now(), new_address_record)
                .await;
            match recorded {
                Ok(()) => {
                    report.tokens += uses.len();
                    report.batches += 1;
                    self.metrics().record_last_use_flush(uses.len());
                }
                Err(e) => {
                    self.metrics().record_last_use_flush_failure();
                    self.usage().put_back(batch.into_iter().chain(rest));
                    return Err(e);
                }
            }
        }
        Ok(report)
    }
}

fn token_use((token_id, used): &(TokenId, PendingUse)) -> TokenUse {
    let mut addresses: Vec<(String, UnixMillis)> = used
        .addresses
        .iter()
        .map(|(ip, at)| (ip.to_string(), *at))
        .collect();
    addresses.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    TokenUse {
        token_id: token_id.clone(),
        last_used_at: used.last_used_at,
        user_agent: used.user_agent.to_string(),
        addresses,
    }
}

/// Flushes the collected token uses every `interval` until `shutdown` (the server flushes
/// once more after the last call is answered).
pub async fn run_last_use_flush(
    ctx: Context,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
        match ctx.flush_last_use().await {
            Ok(report) if report.tokens > 0 => {
                debug!(
                    tokens = report.tokens,
                    batches = report.batches,
                    "flushed token last use"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "could not flush token last use; will retry"),
        }
    }
}

/// The record of a token used from an address it had not been seen from among its recent
/// ones: by its owner, from that address with the use's user agent (the request id is not
/// kept between a use and its flush).
fn new_address_record(owner: &UserId, used: &TokenUse, ip: &str, seen_at: UnixMillis) -> NewRecord {
    NewRecord::new_with(
        Action::AccessTokenUsedFromNewAddress,
        Actor::User(owner.clone()),
        Origin::new(ip, &used.user_agent, ""),
    )
    .user(owner)
    .token(&used.token_id)
    .detail(json!({"ip": ip, "seen_at": seen_at}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn many_uses_of_one_token_make_one_entry_with_the_latest_use() {
        let c = UsageCollector::default();
        let t = TokenId::generate();
        for at in 1..=1000 {
            c.note(&t, at, ip("10.0.0.1"), Some("curl/8"));
        }
        c.note(&t, 500, ip("10.0.0.2"), Some("older"));
        let taken = c.take();
        assert_eq!(taken.len(), 1);
        let used = &taken[&t];
        assert_eq!(used.last_used_at, 1000);
        assert_eq!(
            &*used.user_agent, "curl/8",
            "an older use does not set the agent"
        );
        let mut addresses = used.addresses.clone();
        addresses.sort();
        assert_eq!(
            addresses,
            vec![
                ("10.0.0.1".parse().unwrap(), 1000),
                ("10.0.0.2".parse().unwrap(), 500)
            ]
        );
        assert!(c.take().is_empty(), "take empties the collector");
    }

    #[test]
    fn only_the_five_most_recent_addresses_are_kept() {
        let c = UsageCollector::default();
        let t = TokenId::generate();
        for i in 1..=7 {
            c.note(&t, i, ip(&format!("10.0.0.{i}")), None);
        }
        let used = &c.take()[&t];
        let mut kept: Vec<_> = used.addresses.iter().map(|(_, at)| *at).collect();
        kept.sort();
        assert_eq!(kept, vec![3, 4, 5, 6, 7]);
        assert_eq!(&*used.user_agent, "");
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4_and_long_agents_are_cut_at_a_character() {
        let c = UsageCollector::default();
        let t = TokenId::generate();
        c.note(&t, 1, ip("::ffff:10.0.0.1"), Some(&"é".repeat(200)));
        c.note(&t, 2, ip("10.0.0.1"), Some(&"é".repeat(200)));
        let used = &c.take()[&t];
        assert_eq!(used.addresses, vec![("10.0.0.1".parse().unwrap(), 2)]);
        assert_eq!(used.user_agent.len(), 254, "cut to 255 bytes at a boundary");
    }

    #[test]
    fn uses_put_back_merge_with_those_noted_since() {
        let c = UsageCollector::default();
        let t = TokenId::generate();
        c.note(&t, 10, ip("10.0.0.1"), Some("a"));
        let taken = c.take();
        c.note(&t, 5, ip("10.0.0.2"), Some("b"));
        c.put_back(taken);
        let used = &c.take()[&t];
        assert_eq!(used.last_used_at, 10);
        assert_eq!(&*used.user_agent, "a");
        assert_eq!(used.addresses.len(), 2);
    }

    #[test]
    fn uses_of_one_token_on_many_threads_are_taken_as_one_entry() {
        let c = UsageCollector::default();
        let t = TokenId::generate();
        let threads = USAGE_STRIPES + 3;
        std::thread::scope(|s| {
            for i in 0..threads {
                let (c, t) = (&c, &t);
                s.spawn(move || {
                    let at = i as UnixMillis + 1;
                    c.note(
                        t,
                        at,
                        ip(&format!("10.0.1.{}", i + 1)),
                        Some(&format!("agent {at}")),
                    );
                });
            }
        });
        let taken = c.take();
        assert_eq!(taken.len(), 1);
        let used = &taken[&t];
        let newest = threads as UnixMillis;
        assert_eq!(used.last_used_at, newest);
        assert_eq!(&*used.user_agent, format!("agent {newest}"));
        let mut kept: Vec<_> = used.addresses.iter().map(|(_, at)| *at).collect();
        kept.sort();
        assert_eq!(kept, ((newest - 4)..=newest).collect::<Vec<_>>());
        assert!(c.take().is_empty());
    }

    #[test]
    fn a_flushed_use_lists_its_addresses_newest_first() {
        let t = TokenId::generate();
        let mut used = PendingUse::new(1, ip("10.0.0.1"), "x");
        used.add(3, ip("2001:db8::1"), "y");
        used.add(2, ip("10.0.0.3"), "z");
        let written = token_use(&(t, used));
        assert_eq!(written.last_used_at, 3);
        assert_eq!(written.user_agent, "y");
        assert_eq!(
            written.addresses,
            vec![
                ("2001:db8::1".to_owned(), 3),
                ("10.0.0.3".to_owned(), 2),
                ("10.0.0.1".to_owned(), 1)
            ]
        );
    }
}
