//! The background jobs, Mattermost's scheduled jobs for personal access tokens, and the
//! scheduler that runs them: every replica runs one [`run_scheduler`] task, and each job run
//! is carried out by one replica at a time.
//!
//! - `cleanup_expired_access_tokens` (Mattermost's job of that name, hourly): deletes active
//!   tokens whose expiry has passed (`0 < expires_at <= now`; a disabled expired token stays,
//!   as in Mattermost) with the sessions minted from them, in batches, one
//!   `access_token.expired` record per token (which revokes it on every replica).
//! - `notify_expiring_access_tokens` (Mattermost's notifier with `LastNotifiedAt`, hourly):
//!   warns the owner of a token expiring within 7, 3 or 1 days with one
//!   `access_token.expiring` record; the webhooks deliver it (a chat platform turns it into
//!   a message). Only the most urgent threshold is noticed (no catch-up burst), each at most
//!   once per token: the notice time is stored with the record, in one transaction.
//!
//! Coordination is the database's: a job's row in `scheduled_jobs` holds its lease (taken
//! with one conditional UPDATE when the job is due, renewed by every batch, which writes only
//! while it holds it) and when it last started and finished. A replica that dies mid-run
//! stops renewing; once the lease lapses another replica takes the unfinished run over. The
//! lease and the schedule use the context's clock (the wall clock, or a test's clock), as
//! webhook leases do; only the polling is real time.

use std::{collections::HashMap, time::Duration};

use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    Context,
    error::Result,
    ids::{TokenId, UserId},
    lifecycle::{Action, NewRecord},
    model::{Revocation, UnixMillis, User, UserAccessToken},
};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// Most batches one run (or one non-compliant revoke) works through (Mattermost: 1000).
pub const MAX_BATCHES: usize = 1000;

/// The thresholds of the expiry notices, in days, most urgent first.
pub const NOTICE_THRESHOLD_DAYS: [i64; 3] = [1, 3, 7];

/// The scheduler's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsPolicy {
    /// Run the scheduler on this replica.
    pub enable: bool,
    /// Interval of `cleanup_expired_access_tokens`, in milliseconds.
    pub cleanup_interval_ms: i64,
    /// Interval of `notify_expiring_access_tokens`, in milliseconds.
    pub notify_interval_ms: i64,
    /// Tokens per batch (one transaction); also the non-compliant revoke's batch.
    pub batch_size: u64,
    /// How long a job's lease lasts without renewal, in milliseconds.
    pub lease_ms: i64,
    /// How often a replica looks for a due job, in milliseconds (real time).
    pub poll_interval_ms: u64,
    /// How long one RevokeNonCompliantUserAccessTokens call may work before it stops after
    /// its current batch and answers "incomplete" (real time; two thirds of the request
    /// timeout, so the answer arrives before the call is cut off); `None`: no bound.
    pub revoke_time_budget_ms: Option<u64>,
}

impl Default for JobsPolicy {
    fn default() -> Self {
        Self {
            enable: true,
            cleanup_interval_ms: 3_600_000,
            notify_interval_ms: 3_600_000,
            batch_size: 1000,
            lease_ms: 300_000,
            poll_interval_ms: 10_000,
            revoke_time_budget_ms: Some(10_000),
        }
    }
}

/// The jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    CleanupExpiredAccessTokens,
    NotifyExpiringAccessTokens,
}

impl Job {
    /// Every job, in the order a replica looks at them.
    pub const ALL: [Job; 2] = [
        Job::CleanupExpiredAccessTokens,
        Job::NotifyExpiringAccessTokens,
    ];

    /// The job's name (its row in `scheduled_jobs`, Mattermost's job type).
    pub fn name(self) -> &'static str {
        match self {
            Job::CleanupExpiredAccessTokens => "cleanup_expired_access_tokens",
            Job::NotifyExpiringAccessTokens => "notify_expiring_access_tokens",
        }
    }

    fn interval_ms(self, policy: &JobsPolicy) -> i64 {
        match self {
            Job::CleanupExpiredAccessTokens => policy.cleanup_interval_ms,
            Job::NotifyExpiringAccessTokens => policy.notify_interval_ms,
        }
    }
}

/// A job's lease as a batch claims it: the job, this replica's name, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub job: &'static str,
    pub owner: String,
    pub until: UnixMillis,
}

/// A job's row as stored: who holds its lease, and its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    pub name: String,
    /// The replica running it (`<host>-<pid>-<random>`), or "".
    pub lease_owner: String,
    pub lease_until: UnixMillis,
    /// 0: never.
    pub last_started_at: UnixMillis,
    /// 0: never.
    pub last_finished_at: UnixMillis,
}

/// A candidate of the notice job, as the store finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringToken {
    pub token: UserAccessToken,
    /// When its owner was last warned (Mattermost's `LastNotifiedAt`).
    pub last_notified_at: Option<UnixMillis>,
}

/// A notice to record: set the token's `last_notified_at` and append `record`, unless it
/// changed meanwhile (another expiry, disabled, deleted) or was noticed since
/// `notified_before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryNotice {
    pub token_id: TokenId,
    pub expires_at: UnixMillis,
    pub notified_before: UnixMillis,
    pub record: NewRecord,
}

/// The threshold (in days) a token expiring at `expires_at` is noticed for at `now`, if a
/// notice is due: the most urgent threshold T (the smallest with `expires_at - now <= T`
/// days), unless the owner was warned at or after `expires_at - T` days. Expired tokens and
/// tokens further than 7 days away get none.
pub fn notice_due(
    expires_at: UnixMillis,
    last_notified_at: Option<UnixMillis>,
    now: UnixMillis,
) -> Option<i64> {
    if expires_at <= now {
        return None;
    }
    let remaining = expires_at - now;
    let days = NOTICE_THRESHOLD_DAYS
        .into_iter()
        .find(|days| remaining <= days * DAY_MS)?;
    let already = last_notified_at.is_some_and(|at| at >= expires_at - days * DAY_MS);
    (!already).then_some(days)
}

/// Who is warned of a token's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipient {
    user_id: UserId,
    owner_is_bot: bool,
}

/// Runs the due jobs until `shutdown` turns true, looking every `jobs.poll_interval`.
pub async fn run_scheduler(ctx: Context, mut shutdown: watch::Receiver<bool>) {
    let owner = super::webhook_worker::worker_name();
    let poll = Duration::from_millis(ctx.policy().jobs.poll_interval_ms);
    let mut rows_ready = false;
    debug!(%owner, "job scheduler started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        if !rows_ready {
            rows_ready = ensure_rows(&ctx).await;
        }
        if rows_ready {
            for job in Job::ALL {
                if *shutdown.borrow() {
                    break;
                }
                if let Err(e) = run_if_due(&ctx, job, &owner, &shutdown).await {
                    warn!(job = job.name(), error = %e, "job run failed; it is retried at the next poll");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => {}
        }
    }
    debug!(%owner, "job scheduler stopped");
}

async fn ensure_rows(ctx: &Context) -> bool {
    for job in Job::ALL {
        if let Err(e) = ctx.store().ensure_job(job.name()).await {
            debug!(job = job.name(), error = %e, "cannot create the job's row");
            return false;
        }
    }
    true
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// Done: the lease is given up and the run recorded as finished.
    Finished,
    /// Shutting down: the unfinished run is left for another replica to continue at once.
    Interrupted,
    /// Another replica holds the lease now.
    LeaseLost,
}

/// One run of a job on this replica, while it holds the job's lease.
struct Run<'a> {
    ctx: &'a Context,
    job: Job,
    owner: &'a str,
    shutdown: &'a watch::Receiver<bool>,
}

impl Run<'_> {
    /// The lease a batch starting now claims.
    fn lease(&self) -> JobLease {
        JobLease {
            job: self.job.name(),
            owner: self.owner.to_owned(),
            until: self
                .ctx
                .now()
                .saturating_add(self.ctx.policy().jobs.lease_ms),
        }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// Runs `job` if it is due and this replica takes its lease.
async fn run_if_due(
    ctx: &Context,
    job: Job,
    owner: &str,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let policy = &ctx.policy().jobs;
    let now = ctx.now();
    let run = Run {
        ctx,
        job,
        owner,
        shutdown,
    };
    let lease = run.lease();
    let started_by = now.saturating_sub(job.interval_ms(policy));
    if !ctx.store().take_job_lease(&lease, now, started_by).await? {
        return Ok(());
    }
    debug!(job = job.name(), %owner, "job started");
    ctx.metrics().record_job_run(job.name());
    let ended = match job {
        Job::CleanupExpiredAccessTokens => cleanup_expired_access_tokens(&run).await,
        Job::NotifyExpiringAccessTokens => notify_expiring_access_tokens(&run).await,
    };
    match ended {
        Ok(RunEnd::Finished) => {
            ctx.store()
                .end_job_run(&run.lease(), ctx.now(), true)
                .await?;
            debug!(job = job.name(), "job finished");
        }
        Ok(RunEnd::Interrupted) => {
            ctx.store()
                .end_job_run(&run.lease(), ctx.now(), false)
                .await?;
        }
        Ok(RunEnd::LeaseLost) => {
            info!(
                job = job.name(),
                "job lease lost to another replica; it continues there"
            );
        }
        Err(e) => {
            // Left unfinished: any replica continues it at its next poll.
            let _ = ctx
                .store()
                .end_job_run(&run.lease(), ctx.now(), false)
                .await;
            return Err(e);
        }
    }
    Ok(())
}

/// `cleanup_expired_access_tokens`: batches of expired active tokens deleted with their
/// sessions, one `access_token.expired` record each (revoking it everywhere).
async fn cleanup_expired_access_tokens(run: &Run<'_>) -> Result<RunEnd> {
    let ctx = run.ctx;
    let batch_size = ctx.policy().jobs.batch_size;
    for _ in 0..MAX_BATCHES {
        if run.stopping() {
            return Ok(RunEnd::Interrupted);
        }
        let now = ctx.now();
        let Some(deleted) = ctx
            .store()
            .delete_expired_access_tokens(&run.lease(), now, batch_size, expired_record)
            .await?
        else {
            return Ok(RunEnd::LeaseLost);
        };
        for token in &deleted {
            ctx.revoked_here(&Revocation::AccessToken(token.id.clone()));
            info!(target: "audit", action = "expire_user_access_token", token_id = %token.id,
                user_id = %token.user_id, expires_at = token.expires_at,
                "expired personal access token deleted");
        }
        ctx.metrics()
            .record_expired_tokens_deleted(deleted.len() as u64);
        if (deleted.len() as u64) < batch_size {
            break;
        }
    }
    Ok(RunEnd::Finished)
}

/// The record of an expired token's deletion.
fn expired_record(token: &UserAccessToken) -> NewRecord {
    NewRecord::by_service(Action::AccessTokenExpired)
        .user(&token.user_id)
        .token(&token.id)
        .detail(json!({"expires_at": token.expires_at}))
        .revokes(Revocation::AccessToken(token.id.clone()))
}

/// `notify_expiring_access_tokens`: one `access_token.expiring` record per token entering a
/// threshold, for its owner or, for a bot, the bot's owner.
async fn notify_expiring_access_tokens(run: &Run<'_>) -> Result<RunEnd> {
    let ctx = run.ctx;
    let batch_size = ctx.policy().jobs.batch_size;
    let thresholds_ms = NOTICE_THRESHOLD_DAYS.map(|days| days * DAY_MS);
    let mut users: HashMap<UserId, Option<User>> = HashMap::new();
    let mut after: Option<(UnixMillis, TokenId)> = None;
    for _ in 0..MAX_BATCHES {
        if run.stopping() {
            return Ok(RunEnd::Interrupted);
        }
        // Batches without a notice write nothing: keep the lease anyway.
        ctx.store().renew_job_lease(&run.lease()).await?;
        let now = ctx.now();
        let candidates = ctx
            .store()
            .expiring_access_tokens(
                now,
                &thresholds_ms,
                after.as_ref().map(|(at, id)| (*at, id)),
                batch_size,
            )
            .await?;
        let full = candidates.len() as u64 == batch_size;
        if let Some(last) = candidates.last() {
            after = Some((last.token.expires_at, last.token.id.clone()));
        }
        let mut notices = Vec::new();
        for candidate in candidates {
            let token = candidate.token;
            let Some(days) = notice_due(token.expires_at, candidate.last_notified_at, now) else {
                continue;
            };
            let Some(recipient) = recipient(ctx, &mut users, &token).await? else {
                continue;
            };
            let record = NewRecord::by_service(Action::AccessTokenExpiring)
                .user(&token.user_id)
                .token(&token.id)
                .detail(json!({
                    "days": days,
                    "expires_at": token.expires_at,
                    "description": token.description,
                    "recipient_user_id": recipient.user_id.as_str(),
                    "owner_is_bot": recipient.owner_is_bot,
                }));
            notices.push(ExpiryNotice {
                token_id: token.id.clone(),
                expires_at: token.expires_at,
                notified_before: token.expires_at - days * DAY_MS,
                record,
            });
        }
        if !notices.is_empty() {
            let Some(noticed) = ctx
                .store()
                .record_expiry_notices(&run.lease(), now, &notices)
                .await?
            else {
                return Ok(RunEnd::LeaseLost);
            };
            ctx.metrics().record_expiry_notices(noticed.len() as u64);
            for id in &noticed {
                info!(token_id = %id, "personal access token expiry notice recorded");
            }
        }
        if !full {
            break;
        }
    }
    Ok(RunEnd::Finished)
}

/// Who is warned of `token`'s expiry (Mattermost's `resolveAccessTokenNotificationRecipient`):
/// its owner if active; for a bot, the bot's owner if that is an active user; nobody for an
/// ownerless bot or a deactivated owner. With `enable_user_access_tokens` off, tokens of
/// users (not bots) do not authenticate, so only bots' tokens are noticed.
async fn recipient(
    ctx: &Context,
    users: &mut HashMap<UserId, Option<User>>,
    token: &UserAccessToken,
) -> Result<Option<Recipient>> {
    let Some(owner) = lookup(ctx, users, &token.user_id).await? else {
        return Ok(None);
    };
    if !owner.is_active() {
        return Ok(None);
    }
    if !owner.is_bot {
        return Ok(ctx.policy().enable_user_access_tokens.then(|| Recipient {
            user_id: owner.id.clone(),
            owner_is_bot: false,
        }));
    }
    let Some(bot_owner_id) = owner.bot_owner_id.clone() else {
        return Ok(None);
    };
    Ok(lookup(ctx, users, &bot_owner_id)
        .await?
        .filter(|u| u.is_active() && !u.is_bot)
        .map(|u| Recipient {
            user_id: u.id,
            owner_is_bot: true,
        }))
}

async fn lookup(
    ctx: &Context,
    users: &mut HashMap<UserId, Option<User>>,
    id: &UserId,
) -> Result<Option<User>> {
    if let Some(found) = users.get(id) {
        return Ok(found.clone());
    }
    let found = ctx.store().find_user(id).await?;
    users.insert(id.clone(), found.clone());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn the_most_urgent_threshold_is_noticed_once() {
        // Beyond 7 days, or expired: nothing.
        assert_eq!(notice_due(NOW + 8 * DAY_MS, None, NOW), None);
        assert_eq!(notice_due(NOW, None, NOW), None);
        assert_eq!(notice_due(NOW - 1, None, NOW), None);
        // Exactly on a threshold belongs to it.
        assert_eq!(notice_due(NOW + 7 * DAY_MS, None, NOW), Some(7));
        assert_eq!(notice_due(NOW + 3 * DAY_MS, None, NOW), Some(3));
        assert_eq!(notice_due(NOW + DAY_MS, None, NOW), Some(1));
        // Two days left is the 3-day bucket; never warned before: only that one (no burst).
        assert_eq!(notice_due(NOW + 2 * DAY_MS, None, NOW), Some(3));
        // Warned in the 7-day bucket: the 3-day bucket is still due.
        let expires = NOW + 2 * DAY_MS;
        assert_eq!(
            notice_due(expires, Some(expires - 6 * DAY_MS), NOW),
            Some(3)
        );
        // Warned inside the 3-day bucket: nothing until the 1-day bucket.
        assert_eq!(notice_due(expires, Some(expires - 3 * DAY_MS), NOW), None);
        assert_eq!(
            notice_due(expires, Some(expires - 3 * DAY_MS), expires - DAY_MS),
            Some(1)
        );
        assert_eq!(
            notice_due(expires, Some(expires - DAY_MS), expires - 1),
            None
        );
    }
}
