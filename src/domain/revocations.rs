//! Revocations: every change that takes a credential away is applied to this replica's cache
//! before the call returns and appended to the revocation log, which every other replica
//! reads (the feed below) to drop what it cached.
//!
//! On PostgreSQL every append is followed by a `NOTIFY`, and each replica's feed `LISTEN`s
//! and reads the log as soon as it is woken (and at least every second). On MariaDB and
//! SQLite the feed reads the log every `revocation_poll_interval_ms` (50 ms by default); on
//! SQLite the only other writer is the `admin` command on the same file. A replica that
//! cannot read the log, or loses its notification connection, stops trusting its cache
//! (every check goes to the database) until it has read everything it missed.

use std::{
    collections::{BTreeSet, VecDeque},
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use crate::store::{RevocationWakeups, Wakeup};
use tracing::{debug, info, warn};

use super::{
    Context,
    auth::Caller,
    error::{Error, Reason, Result},
    model::{Revocation, RevocationEvent, now_millis},
    permissions::Permission,
};

/// How long revocation events are kept (for late readers and `WatchRevocations` resumption).
pub const RETENTION_MS: i64 = 24 * 3_600_000;

/// Events read per query.
const BATCH: u64 = 1_000;

/// How far behind the newest event each read starts. Ids are assigned when a row is inserted
/// but become visible when it commits, so a lower id can appear after a higher one; reading
/// again from a position this old catches such stragglers (applied ids are remembered, so
/// nothing is applied twice).
const STRAGGLER_WINDOW_MS: i64 = 2_000;

/// Where the feed is in the log.
#[derive(Debug, Default)]
struct FeedPosition {
    /// Every event at or below this id has been applied.
    floor: i64,
    /// Applied ids above the floor.
    applied: BTreeSet<i64>,
    /// (when, newest id seen then), to move the floor once the window has passed.
    history: VecDeque<(i64, i64)>,
}

impl FeedPosition {
    fn starting_at(id: i64) -> Self {
        Self {
            floor: id,
            ..Self::default()
        }
    }

    /// Records a read made at `now` whose newest id was `newest`, and moves the floor.
    fn advance(&mut self, now: i64, newest: i64) {
        self.history.push_back((now, newest));
        while let Some(&(at, id)) = self.history.front() {
            if now - at < STRAGGLER_WINDOW_MS {
                break;
            }
            self.floor = self.floor.max(id);
            self.history.pop_front();
        }
        let floor = self.floor;
        self.applied.retain(|id| *id > floor);
    }
}

impl Context {
    /// Applies a revocation: drops matching cache entries here, at once, and records it for
    /// the other replicas. Call after the database change has committed.
    pub async fn revoke(&self, revocation: Revocation) -> Result<()> {
        self.cache().invalidate(&revocation);
        let id = self
            .store()
            .append_revocation(&revocation, now_millis())
            .await?;
        debug!(
            event_id = id,
            kind = revocation.kind(),
            subject_id = revocation.subject_id(),
            "revocation recorded"
        );
        Ok(())
    }
}

/// Reads the revocation log until `shutdown` turns true, applying other replicas'
/// revocations to this replica's cache.
pub async fn run_revocation_feed(
    ctx: Context,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let cache = ctx.cache();
    let store = ctx.store();
    // Until the starting position is known, nothing cached can be trusted (the server also
    // marks it so before it accepts calls).
    cache.set_trusted(false);
    let mut position: Option<FeedPosition> = None;
    let mut last_pruned = 0;
    let mut wakeups: Option<RevocationWakeups> = None;
    let mut listen_supported = true;
    let mut next_listen_attempt = 0;
    let stall_limit = (interval * 10).max(Duration::from_millis(500));
    loop {
        if *shutdown.borrow() {
            return;
        }
        let read = async {
            match position.as_mut() {
                None => store.latest_revocation_id().await.map(|id| {
                    position = Some(FeedPosition::starting_at(id));
                }),
                Some(position) => read_batches(&ctx, position).await,
            }
        };
        // A read that stalls (database unreachable, pool exhausted) must not leave the cache
        // trusted for the length of a connect timeout.
        let caught_up = match tokio::time::timeout(stall_limit, read).await {
            Ok(result) => result,
            Err(_) => Err(super::error::Error::Unavailable(
                "reading the revocation log timed out".into(),
            )),
        };
        match caught_up {
            Ok(()) => {
                if !cache.is_trusted() {
                    info!("revocation feed caught up; cache trusted");
                    cache.set_trusted(true);
                }
            }
            Err(e) => {
                if cache.is_trusted() {
                    warn!(error = %e, "cannot read the revocation log; cache bypassed until it catches up");
                    cache.set_trusted(false);
                }
            }
        }
        let now = now_millis();
        if now - last_pruned > 60_000 {
            last_pruned = now;
            match store.prune_revocations(now - RETENTION_MS).await {
                Ok(n) if n > 0 => debug!(pruned = n, "old revocation events pruned"),
                Ok(_) => {}
                Err(e) => debug!(error = %e, "could not prune revocation events"),
            }
        }
        if listen_supported && wakeups.is_none() && now >= next_listen_attempt {
            next_listen_attempt = now + 1_000;
            match store.revocation_wakeups().await {
                Ok(Some(listener)) => {
                    debug!("listening for revocation notifications");
                    wakeups = Some(listener);
                }
                Ok(None) => listen_supported = false,
                Err(e) => debug!(error = %e, "cannot listen for revocation notifications"),
            }
        }
        // With notifications, polling is only the fallback.
        let pause = if wakeups.is_some() {
            interval.max(NOTIFIED_POLL_INTERVAL)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            wakeup = next_wakeup(&mut wakeups) => {
                if wakeup == Wakeup::ConnectionLost {
                    warn!("revocation notifications lost; cache bypassed until the log is read again");
                    cache.set_trusted(false);
                    wakeups = None;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// How often the log is still read while PostgreSQL notifications are flowing.
const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_secs(1);

async fn next_wakeup(wakeups: &mut Option<RevocationWakeups>) -> Wakeup {
    match wakeups {
        Some(listener) => listener.next().await,
        None => std::future::pending().await,
    }
}

/// Applies every event above the floor not applied yet.
async fn read_batches(ctx: &Context, position: &mut FeedPosition) -> Result<()> {
    for event in read_new(ctx, position).await? {
        ctx.cache().invalidate(&event.revocation);
    }
    Ok(())
}

/// Every event above the floor not seen yet, in the order found (ids ascending, except an
/// event whose id committed late, which follows the higher ids already seen).
async fn read_new(ctx: &Context, position: &mut FeedPosition) -> Result<Vec<RevocationEvent>> {
    let now = now_millis();
    let mut after = position.floor;
    let mut newest = position.floor;
    let mut found = Vec::new();
    loop {
        let events = ctx.store().revocations_after(after, BATCH).await?;
        let full = events.len() as u64 == BATCH;
        for event in events {
            after = event.id;
            newest = newest.max(event.id);
            if position.applied.insert(event.id) {
                found.push(event);
            }
        }
        if !full {
            position.advance(now, newest);
            return Ok(found);
        }
    }
}

/// Opens a revocation stream for `caller`: events after `after_event_id`, or from the next
/// one when it is `None`, then every new event as it is recorded. The stream ends with an
/// error when the database cannot be read, with [`Error::ShuttingDown`] once `shutdown`
/// turns true (so a draining server is not held open by its subscribers, who reconnect
/// elsewhere and resume), and when the receiver is dropped.
pub async fn watch_revocations(
    ctx: &Context,
    caller: &Caller,
    after_event_id: Option<i64>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<RevocationEvent>>> {
    require_watch_permission(ctx, caller)?;
    let start = match after_event_id {
        Some(id) => validate_position(id)?,
        None => ctx.store().latest_revocation_id().await?,
    };
    let (sender, receiver) = mpsc::channel(256);
    let ctx = ctx.clone();
    let interval = Duration::from_millis(ctx.policy().revocation_poll_interval_ms);
    tokio::spawn(async move {
        let mut position = FeedPosition::starting_at(start);
        loop {
            match read_new(&ctx, &mut position).await {
                Ok(events) => {
                    for event in events {
                        if sender.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = sender.closed() => return,
                // A closed channel means the server is gone too.
                () = async { drop(shutdown.wait_for(|stop| *stop).await) } => {
                    let _ = sender.send(Err(Error::ShuttingDown)).await;
                    return;
                }
            }
        }
    });
    Ok(receiver)
}

/// The events after `after_event_id`, at most 1000 (the REST mirror of the stream).
pub async fn revocations_after(
    ctx: &Context,
    caller: &Caller,
    after_event_id: i64,
) -> Result<Vec<RevocationEvent>> {
    require_watch_permission(ctx, caller)?;
    let after = validate_position(after_event_id)?;
    ctx.store().revocations_after(after, BATCH).await
}

fn require_watch_permission(ctx: &Context, caller: &Caller) -> Result<()> {
    if ctx.has_permission(caller, Permission::ManageSystem) {
        return Ok(());
    }
    ctx.require_permission(caller, Permission::IntrospectToken)
}

fn validate_position(after_event_id: i64) -> Result<i64> {
    if after_event_id < 0 {
        return Err(Error::invalid(
            "after_event_id",
            Reason::InvalidUrlParam,
            "must be zero or positive",
        ));
    }
    Ok(after_event_id)
}
