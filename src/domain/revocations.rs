//! Revocations: every change that takes a credential away is recorded in the revocation log
//! in the same transaction as the change (see the store), applied to this replica's cache as
//! soon as it commits, and read from the log by every other replica (the feed below) to drop
//! what they cached.
//!
//! Event ids are handed out in commit order, so each reader only remembers the last id it
//! applied. On PostgreSQL every append queues a `NOTIFY`; each replica's feed `LISTEN`s on a
//! connection of its own and reads the log as soon as it is woken (and at least every
//! second). On MariaDB and SQLite the feed reads the log every `revocation_poll_interval_ms`
//! (50 ms by default); on SQLite the only other writer is the `admin` command on the same
//! file. A replica that cannot read the log, or loses its notification connection, stops
//! trusting its cache (every check goes to the database) until it has read everything it
//! missed.
//!
//! `WatchRevocations` subscribers are fed from the same feed (one reader per replica however
//! many subscribe), after reading their backlog from the log.

use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info, warn};

use crate::store::{LogWakeups, Store};

use super::model::Wakeup;
use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    model::{Revocation, RevocationEvent},
    permissions::Permission,
};

/// Records deleted per pruning transaction (each one short, so appends never wait long).
const PRUNE_BATCH: u64 = 1_000;

/// Events read per query (also the records of a WatchEvents read).
pub(super) const BATCH: u64 = 1_000;

/// How often old events are pruned (real time, like the polling).
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How soon a failed `LISTEN` is tried again (real time).
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How often the log is still read while PostgreSQL notifications are flowing.
const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many feed items a slow subscriber may fall behind before it re-reads the log.
pub(crate) const FEED_CAPACITY: usize = 1_024;

/// What the feed tells `WatchRevocations` subscribers.
#[derive(Debug, Clone)]
pub(crate) enum FeedItem {
    /// An event, in log order.
    Event(RevocationEvent),
    /// The feed cannot read the log: subscribers cannot be kept up to date.
    Lost,
}

impl Context {
    /// Applies a revocation this replica has just committed to its own cache, so the
    /// credential is refused before the call that revoked it returns. (The store recorded it
    /// in the log, in the same transaction, for the other replicas.)
    pub(crate) fn revoked_here(&self, revocation: &Revocation) {
        self.cache().invalidate(revocation);
    }
}

/// Feed settings.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// How often the log is read without notifications.
    pub poll_interval: Duration,
    /// How long a read or a `LISTEN` may take before the cache stops being trusted.
    pub stall_limit: Duration,
}

impl FeedSettings {
    /// Settings for a poll interval: a read may stall ten intervals, at least 500 ms.
    pub fn for_interval(poll_interval: Duration) -> Self {
        Self {
            poll_interval,
            stall_limit: (poll_interval * 10).max(Duration::from_millis(500)),
        }
    }
}

/// Reads the revocation log until `shutdown` turns true, applying other replicas'
/// revocations to this replica's cache and passing every event to `WatchRevocations`
/// subscribers. `store` should be a connection of its own (a busy request pool must not
/// delay the feed).
pub async fn run_revocation_feed(
    ctx: Context,
    store: Store,
    settings: FeedSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let cache = ctx.cache();
    // Until the starting position is known, nothing cached can be trusted (the server also
    // marks it so before it accepts calls).
    cache.set_trusted(false);
    let mut position: Option<i64> = None;
    let mut last_pruned: Option<Instant> = None;
    let mut wakeups: Option<LogWakeups> = None;
    let mut listen_supported = true;
    let mut next_listen_attempt = Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Listen before reading: whatever commits after the read's snapshot wakes us.
        if listen_supported && wakeups.is_none() && Instant::now() >= next_listen_attempt {
            next_listen_attempt = Instant::now() + LISTEN_RETRY;
            let listen = store.log_wakeups(settings.stall_limit);
            match tokio::time::timeout(settings.stall_limit, listen).await {
                Ok(Ok(Some(listener))) => {
                    debug!("listening for revocation notifications");
                    wakeups = Some(listener);
                }
                Ok(Ok(None)) => listen_supported = false,
                Ok(Err(e)) => debug!(error = %e, "cannot listen for revocation notifications"),
                Err(_) => debug!("listening for revocation notifications timed out"),
            }
        }
        let read = async {
            match position {
                None => store.latest_record_id().await.map(|id| {
                    position = Some(id);
                }),
                Some(ref mut after) => read_and_apply(&ctx, &store, after).await,
            }?;
            // Readers of the whole log (WatchEvents, webhooks) wake when it grew.
            let newest = store.latest_record_id().await?;
            ctx.log_advanced_to(newest);
            Ok(())
        };
        // A read that stalls (database unreachable, server overloaded) must not leave the
        // cache trusted for the length of a connect timeout.
        let caught_up = match tokio::time::timeout(settings.stall_limit, read).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(
                "reading the revocation log timed out".into(),
            )),
        };
        match caught_up {
            Ok(()) => {
                cache.outage_ended();
                if !cache.is_trusted() {
                    info!("revocation feed caught up; cache trusted");
                    cache.set_trusted(true);
                }
            }
            Err(e) => {
                if matches!(e, Error::Unavailable(_)) {
                    cache.outage_began(ctx.now());
                }
                if cache.is_trusted() {
                    warn!(error = %e, "cannot read the revocation log; cache bypassed until it catches up");
                    cache.set_trusted(false);
                }
                let _ = ctx.feed().send(FeedItem::Lost);
            }
        }
        if last_pruned.is_none_or(|at| at.elapsed() > PRUNE_INTERVAL) {
            last_pruned = Some(Instant::now());
            // Records carry the domain's time, so the cut-off is read from its clock.
            let before = ctx.now() - ctx.policy().log_retention_ms;
            match store.prune_log(before, PRUNE_BATCH).await {
                Ok(n) if n > 0 => debug!(pruned = n, "old lifecycle records pruned"),
                Ok(_) => {}
                Err(e) => debug!(error = %e, "could not prune the lifecycle log"),
            }
        }
        // With notifications, polling is only the fallback.
        let pause = if wakeups.is_some() {
            settings.poll_interval.max(NOTIFIED_POLL_INTERVAL)
        } else {
            settings.poll_interval
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            wakeup = next_wakeup(&mut wakeups) => {
                if wakeup == Wakeup::ConnectionLost {
                    warn!("revocation notifications lost; cache bypassed until the log is read again");
                    cache.set_trusted(false);
                    wakeups = None;
                    next_listen_attempt = Instant::now();
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

async fn next_wakeup(wakeups: &mut Option<LogWakeups>) -> Wakeup {
    match wakeups {
        Some(listener) => listener.next().await,
        None => std::future::pending().await,
    }
}

/// Applies every event after `after` to the cache and passes it to subscribers, moving
/// `after` along.
async fn read_and_apply(ctx: &Context, store: &Store, after: &mut i64) -> Result<()> {
    loop {
        let events = store.revocations_after(*after, BATCH).await?;
        let full = events.len() as u64 == BATCH;
        let now = ctx.now();
        for event in events {
            ctx.cache().invalidate(&event.revocation);
            let lag_ms = u64::try_from(now - event.create_at).unwrap_or(0);
            ctx.metrics()
                .record_revocation_lag(Duration::from_millis(lag_ms));
            *after = event.id;
            // No subscriber is not an error.
            let _ = ctx.feed().send(FeedItem::Event(event));
        }
        if !full {
            return Ok(());
        }
    }
}

/// Opens a revocation stream for `caller`: events after `after_event_id` (or from the next
/// one when it is `None`), then every new event as this replica's feed reads it. The stream
/// ends with an error when the log cannot be read, when the caller's own credential is
/// revoked or loses the permission, with [`Error::ShuttingDown`] once `shutdown` turns true
/// (so a draining server is not held open by its subscribers, who reconnect elsewhere and
/// resume), and ends quietly when the receiver is dropped.
pub async fn watch_revocations(
    ctx: &Context,
    caller: &Caller,
    after_event_id: Option<i64>,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<RevocationEvent>>> {
    require_watch_permission(ctx, caller)?;
    let permit = ctx.watch_stream_permit()?;
    // Subscribe before reading the backlog: an event the feed passes on after this point is
    // received here, and one it passed on before was committed before the backlog read.
    let feed = ctx.feed().subscribe();
    let start = match after_event_id {
        Some(id) => resumable_position(ctx, id).await?,
        None => ctx.store().latest_record_id().await?,
    };
    let (sender, receiver) = mpsc::channel(256);
    let subscription = Subscription {
        ctx: ctx.clone(),
        caller: caller.clone(),
        sender,
        last_sent: start,
        shutdown,
        _permit: permit,
    };
    tokio::spawn(subscription.run(feed));
    Ok(receiver)
}

/// One `WatchRevocations` subscriber.
struct Subscription {
    ctx: Context,
    caller: Caller,
    sender: mpsc::Sender<Result<RevocationEvent>>,
    last_sent: i64,
    shutdown: watch::Receiver<bool>,
    /// Its place under `max_watch_streams`, given back when the subscription ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Why a subscription stops.
enum Stop {
    /// The receiver went away.
    Closed,
    /// The subscriber is told why, then the stream ends.
    Failed(Error),
}

impl Subscription {
    async fn run(mut self, mut feed: broadcast::Receiver<FeedItem>) {
        let stop = loop {
            if let Err(stop) = self.send_backlog().await {
                break stop;
            }
            if let Err(stop) = self.follow(&mut feed).await {
                break stop;
            }
            // The feed ran ahead of this subscriber: read what was missed from the log.
        };
        if let Stop::Failed(e) = stop {
            let _ = self.sender.send(Err(e)).await;
        }
    }

    /// Sends every logged event after the last one sent.
    async fn send_backlog(&mut self) -> Result<(), Stop> {
        loop {
            let events = self.logged_after_last_sent().await?;
            let full = events.len() as u64 == BATCH;
            for event in events {
                self.send(event).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends what the feed passes on, until it runs ahead of this subscriber (`Ok`) or the
    /// subscription stops (`Err`).
    async fn follow(&mut self, feed: &mut broadcast::Receiver<FeedItem>) -> Result<(), Stop> {
        loop {
            let item = tokio::select! {
                item = feed.recv() => item,
                _ = self.sender.closed() => return Err(Stop::Closed),
                // A closed channel means the server is gone too.
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    return Err(Stop::Failed(Error::ShuttingDown));
                }
            };
            match item {
                Ok(FeedItem::Event(event)) if event.id > self.last_sent => self.send(event).await?,
                Ok(FeedItem::Event(_)) => {}
                Ok(FeedItem::Lost) => {
                    return Err(Stop::Failed(Error::Unavailable(
                        "the revocation log cannot be read".into(),
                    )));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Closed),
            }
        }
    }

    /// Sends one event; if it may cover the subscriber's own credential, checks the
    /// credential and the permission again afterwards.
    async fn send(&mut self, event: RevocationEvent) -> Result<(), Stop> {
        let covers_caller = match &self.caller {
            Caller::Local => false,
            Caller::User(p) => p.covered_by(&event.revocation),
        };
        self.last_sent = event.id;
        self.sender
            .send(Ok(event))
            .await
            .map_err(|_| Stop::Closed)?;
        if covers_caller {
            let checked = match self.ctx.reauthenticate(&self.caller).await {
                Ok(caller) => require_watch_permission(&self.ctx, &caller).map(|()| caller),
                Err(e) => Err(e),
            };
            match checked {
                Ok(caller) => self.caller = caller,
                Err(e) => {
                    // Deliver what was committed up to the check (the change that cut the
                    // subscriber off among it; its records may still wait for their seal),
                    // then end.
                    self.ctx.store().await_committed_records().await;
                    self.send_committed().await?;
                    return Err(Stop::Failed(e));
                }
            }
        }
        Ok(())
    }

    /// One batch of the log after the last event sent.
    async fn logged_after_last_sent(&self) -> Result<Vec<RevocationEvent>, Stop> {
        self.ctx
            .store()
            .revocations_after(self.last_sent, BATCH)
            .await
            .map_err(|e| Stop::Failed(e.into_log_unreadable()))
    }

    /// Sends, without further checks, the events logged after the last one sent (one batch).
    async fn send_committed(&mut self) -> Result<(), Stop> {
        for event in self.logged_after_last_sent().await? {
            self.last_sent = event.id;
            self.sender
                .send(Ok(event))
                .await
                .map_err(|_| Stop::Closed)?;
        }
        Ok(())
    }
}

/// The events after `after_event_id` (0: from the oldest kept), at most 1000 (the REST
/// mirror of the stream).
pub async fn revocations_after(
    ctx: &Context,
    caller: &Caller,
    after_event_id: i64,
) -> Result<Vec<RevocationEvent>> {
    require_watch_permission(ctx, caller)?;
    let after = listing_position(ctx, after_event_id).await?;
    ctx.store().revocations_after(after, BATCH).await
}

pub(super) fn require_watch_permission(ctx: &Context, caller: &Caller) -> Result<()> {
    ctx.require_any_permission(
        caller,
        &[Permission::ManageSystem, Permission::IntrospectToken],
    )
}

/// Where a REST listing starts: after `after_event_id`, as [`resumable_position`] checks it;
/// 0 means from the oldest record kept (after whatever was pruned).
pub(super) async fn listing_position(ctx: &Context, after_event_id: i64) -> Result<i64> {
    if after_event_id == 0 {
        return ctx.store().pruned_log_through().await;
    }
    resumable_position(ctx, after_event_id).await
}

/// A position to resume after: not negative, and not older than what the log still holds.
pub(super) async fn resumable_position(ctx: &Context, after_event_id: i64) -> Result<i64> {
    if after_event_id < 0 {
        return Err(Error::invalid(
            "after_event_id",
            Reason::InvalidUrlParam,
            "must be zero or positive",
        ));
    }
    let pruned_through = ctx.store().pruned_log_through().await?;
    if after_event_id < pruned_through {
        return Err(Error::OutOfRange {
            field: "after_event_id",
            rule: format!(
                "events up to {pruned_through} were pruned (they are kept {} hours); \
                 reload what you cached and watch again without a position",
                ctx.policy().log_retention_ms / 3_600_000
            ),
            reason: Reason::RevocationLogPruned,
        });
    }
    Ok(after_event_id)
}
