//! WatchEvents: the whole lifecycle log as a stream, for services that react to what happens
//! to credentials (a security team's pipeline, a directory that mirrors users).
//!
//! A subscriber remembers the id of the last record it sent and reads the log after it with
//! its filter ([`Store::records_after`](crate::store::Store::records_after)) each time this
//! replica's feed reports that the log grew ([`Context::log_advanced`]: on PostgreSQL per
//! notification of any append, elsewhere per poll). There is no polling of its own, and the
//! feed never waits for a subscriber: the signal is a `watch` value, so a slow subscriber only
//! delays itself. Record ids follow commit order, so "after the last id sent" misses nothing.
//!
//! The cut-off rules are WatchRevocations' (see `revocations`): the same permission, the same
//! checks of a resume position, the end on a graceful shutdown, and the subscriber's own
//! credential checked again whenever the feed passes on a revocation that covers it (whether
//! or not the subscriber's filter shows that record).

use tokio::sync::{broadcast, mpsc, watch};

use super::{
    Context,
    caller::Caller,
    error::{Error, Reason, Result},
    ids::UserId,
    lifecycle::{Action, LifecycleRecord, RecordFilter},
    model::Revocation,
    revocations::{
        BATCH, FeedItem, listing_position, require_watch_permission, resumable_position,
    },
};

/// Records queued for one subscriber before its task waits for the client to read.
const CHANNEL_CAPACITY: usize = 256;

/// The longest piece of an unknown action name quoted back in an error.
const MAX_QUOTED: usize = 64;

/// What a subscriber asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Resume after this record id; `None`: start with the next record.
    pub after_event_id: Option<i64>,
    /// Action names (`access_token.created`, ...); empty: every action.
    pub actions: Vec<String>,
    /// Only records about this user; empty: every record.
    pub user_id: String,
}

/// The filter `query` asks for: every action name known, the user id well formed.
pub fn record_filter(query: &EventQuery) -> Result<RecordFilter> {
    let mut actions = Vec::new();
    for name in &query.actions {
        let Some(action) = Action::parse(name) else {
            let quoted: String = name.chars().take(MAX_QUOTED).collect();
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            return Err(Error::invalid(
                "actions",
                Reason::InvalidUrlParam,
                format!(
                    "unknown action {quoted:?}; known actions: {}",
                    known.join(", ")
                ),
            ));
        };
        if !actions.contains(&action) {
            actions.push(action);
        }
    }
    let user_id = match query.user_id.as_str() {
        "" => None,
        id => Some(UserId::parse(id, "user_id", Reason::InvalidUrlParam)?),
    };
    Ok(RecordFilter { actions, user_id })
}

/// Opens an event stream for `caller`: the records passing the query's filter after
/// `after_event_id` (or from the next one when it is `None`), then every new one as this
/// replica's feed learns of it. The stream ends with an error when the log cannot be read,
/// when the caller's own credential is revoked or loses the permission, with
/// [`Error::ShuttingDown`] once `shutdown` turns true, and ends quietly when the receiver is
/// dropped.
pub async fn watch_events(
    ctx: &Context,
    caller: &Caller,
    query: &EventQuery,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Result<LifecycleRecord>>> {
    require_watch_permission(ctx, caller)?;
    let filter = record_filter(query)?;
    let permit = ctx.watch_stream_permit()?;
    // Subscribe before reading where the log stands: whatever the feed learns after this
    // point wakes the subscriber, and what it learnt before was committed before the read.
    let advanced = ctx.log_advanced();
    let feed = ctx.feed().subscribe();
    let start = match query.after_event_id {
        Some(id) => resumable_position(ctx, id).await?,
        None => ctx.store().latest_record_id().await?,
    };
    let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
    let subscription = Subscription {
        ctx: ctx.clone(),
        caller: caller.clone(),
        filter,
        sender,
        last_sent: start,
        shutdown,
        _permit: permit,
    };
    tokio::spawn(subscription.run(advanced, feed));
    Ok(receiver)
}

/// The records passing the query's filter after its `after_event_id` (unset or 0: from the
/// oldest kept), oldest first, at most 1000 (the REST mirror of the stream).
pub async fn events_after(
    ctx: &Context,
    caller: &Caller,
    query: &EventQuery,
) -> Result<Vec<LifecycleRecord>> {
    require_watch_permission(ctx, caller)?;
    let filter = record_filter(query)?;
    let after = listing_position(ctx, query.after_event_id.unwrap_or(0)).await?;
    ctx.store().records_after(after, &filter, BATCH).await
}

/// One WatchEvents subscriber.
struct Subscription {
    ctx: Context,
    caller: Caller,
    filter: RecordFilter,
    sender: mpsc::Sender<Result<LifecycleRecord>>,
    /// The position read up to: the last record sent, or the start.
    last_sent: i64,
    shutdown: watch::Receiver<bool>,
    /// Its place under `max_watch_streams`, given back when the subscription ends.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Why a subscription stops.
enum Stop {
    /// The receiver went away (or the server with it).
    Closed,
    /// The subscriber is told why, then the stream ends.
    Failed(Error),
}

/// What woke a waiting subscriber.
enum Wake {
    /// The log may have grown.
    Grew,
    /// A revocation may cover the subscriber's own credential.
    CheckCaller,
}

impl Subscription {
    async fn run(
        mut self,
        mut advanced: watch::Receiver<i64>,
        mut feed: broadcast::Receiver<FeedItem>,
    ) {
        let stop = loop {
            if let Err(stop) = self.catch_up().await {
                break stop;
            }
            match self.wait(&mut advanced, &mut feed).await {
                Ok(Wake::Grew) => {}
                Ok(Wake::CheckCaller) => {
                    // Deliver what was committed up to the revocation first (it among it, if
                    // the filter shows it), then check the credential as it stands.
                    if let Err(stop) = self.catch_up().await {
                        break stop;
                    }
                    if let Err(stop) = self.check_caller().await {
                        break stop;
                    }
                }
                Err(stop) => break stop,
            }
        };
        if let Stop::Failed(e) = stop {
            let _ = self.sender.send(Err(e)).await;
        }
    }

    /// Sends every logged record after the last one sent that passes the filter.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let records = self.logged_after_last_sent().await?;
            let full = records.len() as u64 == BATCH;
            for record in records {
                // A long backlog must not hold a draining server.
                if *self.shutdown.borrow() {
                    return Err(Stop::Failed(Error::ShuttingDown));
                }
                self.send(record).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Waits until the log grew or a revocation may concern the subscriber.
    async fn wait(
        &mut self,
        advanced: &mut watch::Receiver<i64>,
        feed: &mut broadcast::Receiver<FeedItem>,
    ) -> Result<Wake, Stop> {
        let caller = &self.caller;
        loop {
            tokio::select! {
                changed = advanced.changed() => {
                    // A closed channel means the server is gone.
                    return changed.map(|()| Wake::Grew).map_err(|_| Stop::Closed);
                }
                item = feed.recv() => match item {
                    Ok(FeedItem::Event(event)) if covers(caller, &event.revocation) => {
                        return Ok(Wake::CheckCaller);
                    }
                    Ok(FeedItem::Event(_)) => {}
                    Ok(FeedItem::Lost) => {
                        return Err(Stop::Failed(Error::Unavailable(
                            "the lifecycle log cannot be read".into(),
                        )));
                    }
                    // What was missed may have covered the subscriber: check.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Ok(Wake::CheckCaller),
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Closed),
                },
                _ = self.sender.closed() => return Err(Stop::Closed),
                _ = self.shutdown.wait_for(|stop| *stop) => {
                    return Err(Stop::Failed(Error::ShuttingDown));
                }
            }
        }
    }

    /// Checks the subscriber's credential and permission again; if either is gone, sends what
    /// was committed up to then and stops.
    async fn check_caller(&mut self) -> Result<(), Stop> {
        let checked = match self.ctx.reauthenticate(&self.caller).await {
            Ok(caller) => require_watch_permission(&self.ctx, &caller).map(|()| caller),
            Err(e) => Err(e),
        };
        match checked {
            Ok(caller) => {
                self.caller = caller;
                Ok(())
            }
            Err(e) => {
                // Deliver what was committed up to the check (the change that cut the
                // subscriber off among it), then end. A change's records reach the log in a
                // seal after its commit, so the check may have seen the change before the
                // log has its record: wait for the records of every committed change first.
                self.ctx.store().await_committed_records().await;
                for record in self.logged_after_last_sent().await? {
                    self.send(record).await?;
                }
                Err(Stop::Failed(e))
            }
        }
    }

    async fn send(&mut self, record: LifecycleRecord) -> Result<(), Stop> {
        self.last_sent = record.id;
        self.sender.send(Ok(record)).await.map_err(|_| Stop::Closed)
    }

    /// One batch of the log after the last record sent, through the filter.
    async fn logged_after_last_sent(&self) -> Result<Vec<LifecycleRecord>, Stop> {
        self.ctx
            .store()
            .records_after(self.last_sent, &self.filter, BATCH)
            .await
            .map_err(|e| Stop::Failed(e.into_log_unreadable()))
    }
}

/// Whether `revocation` may take `caller`'s own credential away.
fn covers(caller: &Caller, revocation: &Revocation) -> bool {
    match caller {
        Caller::Local => false,
        Caller::User(p) => p.covered_by(revocation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(actions: &[&str], user_id: &str) -> EventQuery {
        EventQuery {
            after_event_id: None,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            user_id: user_id.to_owned(),
        }
    }

    #[test]
    fn a_filter_names_known_actions_once_and_a_well_formed_user() {
        let filter = record_filter(&query(
            &["session.revoked", "access_token.created", "session.revoked"],
            "abcdefghijklmnopqrstuvwxyz",
        ))
        .unwrap();
        assert_eq!(
            filter.actions,
            vec![Action::SessionRevoked, Action::AccessTokenCreated]
        );
        assert_eq!(
            filter.user_id.as_ref().map(UserId::as_str),
            Some("abcdefghijklmnopqrstuvwxyz")
        );
        assert_eq!(
            record_filter(&query(&[], "")).unwrap(),
            RecordFilter::default()
        );
    }

    #[test]
    fn an_unknown_action_or_a_malformed_user_names_its_field() {
        let unknown = record_filter(&query(&["user.created", "token.stolen"], "")).unwrap_err();
        assert!(
            matches!(&unknown, Error::InvalidArgument { field: "actions", rule, .. }
                if rule.contains("\"token.stolen\"") && rule.contains("access_token.created")),
            "{unknown:?}"
        );
        let long = record_filter(&query(&[&"x".repeat(10_000)], "")).unwrap_err();
        assert!(long.to_string().len() < 1_000, "{long}");
        let user = record_filter(&query(&[], "me")).unwrap_err();
        assert!(
            matches!(
                user,
                Error::InvalidArgument {
                    field: "user_id",
                    ..
                }
            ),
            "{user:?}"
        );
    }
}
