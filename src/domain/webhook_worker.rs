//! Webhook delivery: every replica runs one [`run_webhook_delivery`] task, which sends the
//! lifecycle log to the endpoints, at least once and in log order per endpoint, without
//! ever touching a request's path (a change commits its record; delivery reads it later).
//!
//! Coordination is the database's: an endpoint is delivered by the replica holding its
//! lease (taken with one conditional UPDATE, renewed before and during every send, each
//! cursor move conditional on still holding it). A replica that dies mid-stream stops
//! renewing; once the lease lapses (`webhooks.lease`) another replica takes the endpoint over
//! from its cursor, so a message may arrive twice (the same `webhook-id`) but never out of
//! order and never lost.
//!
//! Per endpoint: read the records after its cursor that its filter selects (oldest first),
//! POST each as `{"type": action, "timestamp": RFC 3339, "data": record}` signed with
//! `webhook-id: msg_<record id>`, move the cursor after each 2xx. Anything else (a status,
//! a timeout, a refused address) schedules a retry with exponential backoff and full jitter
//! ([`super::webhooks::backoff_ms`]); the failed record blocks the later ones (order). An
//! endpoint failing without a success for `webhooks.disable_after` (3 days) is disabled.
//!
//! The loop wakes when the log grows and at least every `webhooks.poll_interval`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::watch, task::JoinSet};
use tracing::{debug, info, warn};

use super::{
    Context,
    error::Result,
    ids::WebhookId,
    lifecycle::{Action, LifecycleRecord, NewRecord, rfc3339},
    model::UnixMillis,
    webhooks::{FailureWrite, SendOutcome, StoredWebhook, backoff_ms, jitter, truncate},
};

/// Records read per query.
const BATCH: u64 = 100;

/// The JSON body of one record's message.
fn payload(record: &LifecycleRecord) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": record.record.action.as_str(),
        "timestamp": rfc3339(record.create_at),
        "data": record.to_json(),
    }))
    .expect("JSON values serialize")
}

/// This process's name on the leases it takes: unique per process start.
pub(crate) fn worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| truncate(h.trim(), 24))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &super::ids::new_id()[..10]
    )
}

/// Delivers webhooks until `shutdown` turns true. `log_advanced` moves when the log may
/// have grown (a wake-up; the poll interval bounds the wait without one).
pub async fn run_webhook_delivery(
    ctx: Context,
    mut log_advanced: Option<watch::Receiver<i64>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = worker_name();
    let policy = ctx.policy().webhooks;
    let poll = Duration::from_millis(policy.poll_interval_ms);
    let active: Arc<Mutex<HashSet<WebhookId>>> = Arc::default();
    let mut tasks = JoinSet::new();
    debug!(%owner, "webhook delivery started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Endpoints already at the newest record have nothing to do: no lease is taken.
        let due = match ctx.store().latest_record_id().await {
            Ok(latest) => ctx.store().due_webhooks(&owner, ctx.now(), latest).await,
            Err(e) => Err(e),
        };
        match due {
            Ok(due) => {
                for id in due {
                    if active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(&id)
                    {
                        continue;
                    }
                    let now = ctx.now();
                    match ctx
                        .store()
                        .take_webhook_lease(&id, &owner, now, now + policy.lease_ms)
                        .await
                    {
                        Ok(Some(stored)) => {
                            active
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.clone());
                            let endpoint = Endpoint {
                                ctx: ctx.clone(),
                                owner: owner.clone(),
                                id,
                                shutdown: shutdown.clone(),
                            };
                            let active = active.clone();
                            tasks.spawn(async move {
                                let id = endpoint.id.clone();
                                endpoint.deliver(stored).await;
                                active.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                            });
                        }
                        Ok(None) => {}
                        Err(e) => debug!(error = %e, "cannot take a webhook lease"),
                    }
                }
            }
            Err(e) => debug!(error = %e, "cannot read the due webhooks"),
        }
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            changed = async {
                match log_advanced.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    log_advanced = None;
                }
            }
            _ = shutdown.changed() => {}
        }
    }
    // Each endpoint stops after the message it is sending and gives its lease up.
    let drain = Duration::from_millis(policy.timeout_ms) + Duration::from_secs(1);
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    debug!(%owner, "webhook delivery stopped");
}

/// One endpoint's delivery, while this replica holds its lease.
struct Endpoint {
    ctx: Context,
    owner: String,
    id: WebhookId,
    shutdown: watch::Receiver<bool>,
}

/// How a delivery run ended.
enum Stop {
    /// Caught up, shutting down, or the endpoint was disabled or deleted: give the lease up.
    Release,
    /// The lease is someone else's now, or the failure was recorded (which gave it up).
    Done,
}

impl Endpoint {
    async fn deliver(self, stored: StoredWebhook) {
        let stop = match self.run(stored).await {
            Ok(stop) => stop,
            Err(e) => {
                warn!(webhook_id = %self.id, error = %e, "webhook delivery interrupted");
                Stop::Release
            }
        };
        if matches!(stop, Stop::Release)
            && let Err(e) = self
                .ctx
                .store()
                .release_webhook_lease(&self.id, &self.owner)
                .await
        {
            debug!(webhook_id = %self.id, error = %e, "cannot release a webhook lease");
        }
    }

    fn lease_until(&self) -> UnixMillis {
        self.ctx.now() + self.ctx.policy().webhooks.lease_ms
    }

    async fn run(&self, mut stored: StoredWebhook) -> Result<Stop> {
        let ctx = &self.ctx;
        let mut cursor = stored.webhook.delivery.delivered_through;
        loop {
            let latest = ctx.store().latest_record_id().await?;
            let batch = if stored.webhook.filter.selects_nothing() {
                Vec::new()
            } else {
                let filter = stored.webhook.filter.record_filter();
                ctx.store().records_after(cursor, &filter, BATCH).await?
            };
            let complete = (batch.len() as u64) < BATCH;
            for record in batch {
                if *self.shutdown.borrow() {
                    return Ok(Stop::Release);
                }
                if !ctx
                    .store()
                    .renew_webhook_lease(&self.id, &self.owner, self.lease_until())
                    .await?
                {
                    return Ok(Stop::Done);
                }
                let outcome = self.send_renewing(&stored, &record).await?;
                let now = ctx.now();
                if outcome.is_success() {
                    ctx.metrics().record_webhook_delivery("delivered");
                    let lag = u64::try_from(now - record.create_at).unwrap_or(0);
                    ctx.metrics().record_webhook_lag(Duration::from_millis(lag));
                    if !ctx
                        .store()
                        .advance_webhook(&self.id, &self.owner, record.id, Some(now))
                        .await?
                    {
                        return Ok(Stop::Done);
                    }
                    cursor = record.id;
                    stored.webhook.delivery.attempts = 0;
                    stored.webhook.delivery.failing_since = 0;
                } else {
                    self.failed(&stored, &record, &outcome, now).await?;
                    return Ok(Stop::Done);
                }
            }
            if complete {
                if latest > cursor
                    && !ctx
                        .store()
                        .advance_webhook(&self.id, &self.owner, latest, None)
                        .await?
                {
                    return Ok(Stop::Done);
                }
                return Ok(Stop::Release);
            }
            // More to read: pick up any change to the endpoint (secret, URL, filter).
            match ctx.store().find_webhook(&self.id).await? {
                Some(fresh) if fresh.webhook.enabled => stored = fresh,
                _ => return Ok(Stop::Release),
            }
        }
    }

    /// Sends one record, renewing the lease while the endpoint takes its time.
    async fn send_renewing(
        &self,
        stored: &StoredWebhook,
        record: &LifecycleRecord,
    ) -> Result<SendOutcome> {
        let ctx = &self.ctx;
        let send = ctx.send_signed(stored, format!("msg_{}", record.id), payload(record));
        tokio::pin!(send);
        let every = Duration::from_millis(
            u64::try_from(ctx.policy().webhooks.lease_ms / 3)
                .unwrap_or(1)
                .max(1),
        );
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                outcome = &mut send => return outcome,
                _ = renew.tick() => {
                    // A lost lease is noticed when the cursor moves; the send finishes.
                    let _ = ctx
                        .store()
                        .renew_webhook_lease(&self.id, &self.owner, self.lease_until())
                        .await;
                }
            }
        }
    }

    /// Records a failed attempt: the retry's time, or the endpoint disabled.
    async fn failed(
        &self,
        stored: &StoredWebhook,
        record: &LifecycleRecord,
        outcome: &SendOutcome,
        now: UnixMillis,
    ) -> Result<()> {
        let ctx = &self.ctx;
        let policy = ctx.policy().webhooks;
        let state = &stored.webhook.delivery;
        let attempts = state.attempts.saturating_add(1);
        let failing_since = if state.failing_since == 0 {
            now
        } else {
            state.failing_since
        };
        let error = outcome.describe();
        let disable = (now - failing_since >= policy.disable_after_ms).then(|| {
            truncate(
                &format!(
                    "failing since {} ({} attempts); last: {error}",
                    rfc3339(failing_since),
                    attempts
                ),
                255,
            )
        });
        let failure = FailureWrite {
            attempts,
            next_attempt_at: now + backoff_ms(attempts, jitter()),
            failing_since,
            last_error: error.clone(),
            attempted_at: now,
            disabled_record: disable.as_ref().map(|reason| {
                NewRecord::by_service(Action::WebhookDisabled)
                    .webhook(self.id.as_str())
                    .detail(serde_json::json!({
                        "reason": reason,
                        "attempts": attempts,
                        "failing_since": failing_since,
                        "last_error": error,
                    }))
            }),
            disable: disable.clone(),
        };
        ctx.metrics().record_webhook_delivery(match outcome {
            SendOutcome::Status(_) => "http_error",
            SendOutcome::Failed(_) => "transport_error",
        });
        if ctx
            .store()
            .webhook_failed(&self.id, &self.owner, &failure)
            .await?
        {
            if disable.is_some() {
                ctx.metrics().record_webhook_disabled();
                warn!(webhook_id = %self.id, record_id = record.id, %error, attempts,
                    "webhook disabled: failing for longer than webhooks.disable_after");
            } else {
                info!(webhook_id = %self.id, record_id = record.id, %error, attempts,
                    retry_at = %rfc3339(failure.next_attempt_at), "webhook delivery failed; will retry");
            }
        }
        Ok(())
    }
}
