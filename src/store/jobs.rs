//! The background jobs' queries: the job leases in `scheduled_jobs`, and the batches of the
//! expired-token cleanup, the expiry notices and the non-compliant revoke.
//!
//! A job runs on the replica holding its row's lease, taken with one conditional UPDATE (the
//! job is due and its lease free, or held by a replica that stopped renewing it). Every batch
//! runs in one transaction that first locks the job's row and checks the lease is still this
//! replica's (extending it), so a replica that lost its lease writes nothing. Each batch then
//! locks the token rows it changes (before their sessions and the log's control row, the
//! order of every other token change) and re-checks its condition under that lock, so a token
//! is changed, and recorded, once, whoever else acts on it meanwhile.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Query},
};

use super::Store;
use super::entities::{scheduled_jobs as jobs, sessions, user_access_tokens as tokens, users};
use super::lifecycle::Appended;
use crate::domain::{
    error::Result,
    ids::TokenId,
    jobs::{ExpiringToken, ExpiryNotice, JobLease, JobState},
    lifecycle::NewRecord,
    model::{UnixMillis, UserAccessToken},
};

impl Store {
    /// Every job's row, by name.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn job_states(&self) -> Result<Vec<JobState>> {
        Ok(jobs::Entity::find()
            .order_by_asc(jobs::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| JobState {
                name: m.name,
                lease_owner: m.lease_owner,
                lease_until: m.lease_until,
                last_started_at: m.last_started_at,
                last_finished_at: m.last_finished_at,
            })
            .collect())
    }

    /// Creates the job's row if there is none yet (never run: due at once).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn ensure_job(&self, name: &str) -> Result<()> {
        if jobs::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let row = jobs::ActiveModel {
            name: Set(name.to_owned()),
            lease_owner: Set(String::new()),
            lease_until: Set(0),
            last_started_at: Set(0),
            last_finished_at: Set(0),
        };
        if let Err(e) = jobs::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
        {
            // Another replica created it first.
            if jobs::Entity::find_by_id(name.to_owned())
                .one(&self.db)
                .await?
                .is_none()
            {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Takes the job's lease for `lease.owner` until `lease.until` if the job is due at `now`:
    /// free and last started at or before `started_by` (a finished run is at least one
    /// interval old), or held by a replica whose lease lapsed (an unfinished run, taken over
    /// at once). One conditional UPDATE, so one replica wins. Marks the run started at `now`.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn take_job_lease(
        &self,
        lease: &JobLease,
        now: UnixMillis,
        started_by: UnixMillis,
    ) -> Result<bool> {
        let done = jobs::Entity::update_many()
            .col_expr(jobs::Column::LeaseOwner, Expr::value(lease.owner.clone()))
            .col_expr(jobs::Column::LeaseUntil, Expr::value(lease.until))
            .col_expr(jobs::Column::LastStartedAt, Expr::value(now))
            .filter(jobs::Column::Name.eq(lease.job))
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(jobs::Column::LeaseOwner.eq(""))
                            .add(jobs::Column::LastStartedAt.lte(started_by)),
                    )
                    .add(
                        Condition::all()
                            .add(jobs::Column::LeaseOwner.ne(""))
                            .add(jobs::Column::LeaseUntil.lte(now)),
                    ),
            )
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Ends `lease.owner`'s run: the lease is given up; finished at `now` if `finished`,
    /// else left for any replica to continue at once (the lease lapses now).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn end_job_run(
        &self,
        lease: &JobLease,
        now: UnixMillis,
        finished: bool,
    ) -> Result<()> {
        let update = if finished {
            jobs::Entity::update_many()
                .col_expr(jobs::Column::LeaseOwner, Expr::value(""))
                .col_expr(jobs::Column::LeaseUntil, Expr::value(0i64))
                .col_expr(jobs::Column::LastFinishedAt, Expr::value(now))
        } else {
            jobs::Entity::update_many().col_expr(jobs::Column::LeaseUntil, Expr::value(now))
        };
        update
            .filter(jobs::Column::Name.eq(lease.job))
            .filter(jobs::Column::LeaseOwner.eq(lease.owner.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Extends `lease.owner`'s lease to `lease.until` (if it still holds it): a run that
    /// reads for a while without writing keeps its lease.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn renew_job_lease(&self, lease: &JobLease) -> Result<()> {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::LeaseUntil, Expr::value(lease.until))
            .filter(jobs::Column::Name.eq(lease.job))
            .filter(jobs::Column::LeaseOwner.eq(lease.owner.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Inside a batch's transaction: locks the job's row and extends the lease to
    /// `lease.until` if `lease.owner` still holds it; false (nothing may be written) if not.
    async fn hold_job_lease(&self, txn: &DatabaseTransaction, lease: &JobLease) -> Result<bool> {
        let row = jobs::Entity::find_by_id(lease.job.to_owned())
            .lock_exclusive()
            .one(txn)
            .await?;
        if row.is_none_or(|row| row.lease_owner != lease.owner) {
            return Ok(false);
        }
        jobs::Entity::update_many()
            .col_expr(jobs::Column::LeaseUntil, Expr::value(lease.until))
            .filter(jobs::Column::Name.eq(lease.job))
            .exec(txn)
            .await?;
        Ok(true)
    }

    /// One batch of the cleanup: up to `limit` active tokens with `0 < expires_at <= now`
    /// (oldest expiry first) are deleted with the sessions minted from them, each with the
    /// record `record` makes for it, in one transaction while `lease` is held. The tokens
    /// deleted; `None` if the lease was lost (nothing written).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_expired_access_tokens(
        &self,
        lease: &JobLease,
        now: UnixMillis,
        limit: u64,
        record: impl Fn(&UserAccessToken) -> NewRecord,
    ) -> Result<Option<Vec<UserAccessToken>>> {
        let txn = self.begin_write().await?;
        if !self.hold_job_lease(&txn, lease).await? {
            return Ok(None);
        }
        // A locking read sees the rows as they are now (not an older snapshot) and holds them.
        let expired: Vec<UserAccessToken> = tokens::Entity::find()
            .filter(tokens::Column::IsActive.eq(true))
            .filter(tokens::Column::ExpiresAt.gt(0))
            .filter(tokens::Column::ExpiresAt.lte(now))
            .order_by_asc(tokens::Column::ExpiresAt)
            .order_by_asc(tokens::Column::Id)
            .limit(limit)
            .lock_exclusive()
            .all(&txn)
            .await?
            .into_iter()
            .map(UserAccessToken::from)
            .collect();
        let appended = self
            .delete_locked_tokens(&txn, &expired, now, record)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(Some(expired))
    }

    /// Deletes `locked` (token rows this transaction holds) with their minted sessions and
    /// appends one record per token.
    async fn delete_locked_tokens(
        &self,
        txn: &DatabaseTransaction,
        locked: &[UserAccessToken],
        now: UnixMillis,
        record: impl Fn(&UserAccessToken) -> NewRecord,
    ) -> Result<Appended> {
        if locked.is_empty() {
            return Ok(Appended::default());
        }
        let ids: Vec<String> = locked.iter().map(|t| t.id.to_string()).collect();
        sessions::Entity::delete_many()
            .filter(sessions::Column::UserAccessTokenId.is_in(ids.clone()))
            .exec(txn)
            .await?;
        tokens::Entity::delete_many()
            .filter(tokens::Column::Id.is_in(ids))
            .exec(txn)
            .await?;
        let records: Vec<NewRecord> = locked.iter().map(record).collect();
        self.append_to_log(txn, &records, now).await
    }

    /// Active tokens that an expiry notice is due for at `now`: `now < expires_at`, and for
    /// some threshold T of `thresholds_ms`, `expires_at <= now + T` with no notice since
    /// `expires_at - T` (`last_notified_at` unset or earlier). Ordered by (expires_at, id),
    /// after `after` when given, at most `limit`.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn expiring_access_tokens(
        &self,
        now: UnixMillis,
        thresholds_ms: &[i64],
        after: Option<(UnixMillis, &TokenId)>,
        limit: u64,
    ) -> Result<Vec<ExpiringToken>> {
        let Some(horizon) = thresholds_ms.iter().max() else {
            return Ok(Vec::new());
        };
        let mut due = Condition::any();
        for &threshold in thresholds_ms {
            due = due.add(
                Condition::all()
                    .add(tokens::Column::ExpiresAt.lte(now.saturating_add(threshold)))
                    .add(
                        Condition::any()
                            .add(tokens::Column::LastNotifiedAt.is_null())
                            .add(
                                Expr::col(tokens::Column::LastNotifiedAt)
                                    .lt(Expr::col(tokens::Column::ExpiresAt).sub(threshold)),
                            ),
                    ),
            );
        }
        let mut query = tokens::Entity::find()
            .filter(tokens::Column::IsActive.eq(true))
            .filter(tokens::Column::ExpiresAt.gt(now))
            .filter(tokens::Column::ExpiresAt.lte(now.saturating_add(*horizon)))
            .filter(due);
        if let Some((expires_at, id)) = after {
            query = query.filter(
                Condition::any()
                    .add(tokens::Column::ExpiresAt.gt(expires_at))
                    .add(
                        Condition::all()
                            .add(tokens::Column::ExpiresAt.eq(expires_at))
                            .add(tokens::Column::Id.gt(id.as_str())),
                    ),
            );
        }
        Ok(query
            .order_by_asc(tokens::Column::ExpiresAt)
            .order_by_asc(tokens::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| {
                let last_notified_at = m.last_notified_at;
                ExpiringToken {
                    token: UserAccessToken::from(m),
                    last_notified_at,
                }
            })
            .collect())
    }

    /// Records a batch of expiry notices at `now` while `lease` is held, in one transaction:
    /// for each, the token's `last_notified_at` is set to `now` only if it is still active,
    /// still expires at the same time and has had no notice since `notice.notified_before`,
    /// and only then is its record appended. The tokens noticed; `None` if the lease was
    /// lost (nothing written).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn record_expiry_notices(
        &self,
        lease: &JobLease,
        now: UnixMillis,
        notices: &[ExpiryNotice],
    ) -> Result<Option<Vec<TokenId>>> {
        let txn = self.begin_write().await?;
        if !self.hold_job_lease(&txn, lease).await? {
            return Ok(None);
        }
        let mut records = Vec::new();
        let mut noticed = Vec::new();
        for notice in notices {
            // `now` is later than `notified_before`, so a matched row always changes (MariaDB
            // counts changed rows).
            let done = tokens::Entity::update_many()
                .col_expr(tokens::Column::LastNotifiedAt, Expr::value(Some(now)))
                .filter(tokens::Column::Id.eq(notice.token_id.as_str()))
                .filter(tokens::Column::IsActive.eq(true))
                .filter(tokens::Column::ExpiresAt.eq(notice.expires_at))
                .filter(
                    Condition::any()
                        .add(tokens::Column::LastNotifiedAt.is_null())
                        .add(tokens::Column::LastNotifiedAt.lt(notice.notified_before)),
                )
                .exec(&txn)
                .await?;
            if done.rows_affected == 1 {
                records.push(notice.record.clone());
                noticed.push(notice.token_id.clone());
            }
        }
        let appended = self.append_to_log(&txn, &records, now).await?;
        self.commit_logged(txn, appended).await?;
        Ok(Some(noticed))
    }

    /// The condition "active, owned by a user who is not a bot, and expiring never or after
    /// `max_expires_at`": a token breaking the maximum-lifetime policy.
    fn non_compliant(max_expires_at: UnixMillis) -> Condition {
        let bots = Query::select()
            .column(users::Column::Id)
            .from(users::Entity)
            .and_where(users::Column::IsBot.eq(true))
            .to_owned();
        Condition::all()
            .add(tokens::Column::IsActive.eq(true))
            .add(
                Condition::any()
                    .add(tokens::Column::ExpiresAt.eq(0))
                    .add(tokens::Column::ExpiresAt.gt(max_expires_at)),
            )
            .add(Expr::col(tokens::Column::UserId).not_in_subquery(bots))
    }

    /// How many tokens break the maximum-lifetime policy (see [`Store::non_compliant`]).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn count_non_compliant_access_tokens(
        &self,
        max_expires_at: UnixMillis,
    ) -> Result<u64> {
        Ok(tokens::Entity::find()
            .filter(Self::non_compliant(max_expires_at))
            .count(&self.db)
            .await?)
    }

    /// One batch of the non-compliant revoke: up to `limit` tokens breaking the policy are
    /// deleted with their minted sessions, each with the record `record` makes, in one
    /// transaction. The candidates are picked first, then locked and checked again (never
    /// locking owners' rows, which session inserts lock before the token). How many were
    /// picked (0: none is left) and the tokens deleted (fewer if some changed meanwhile).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_non_compliant_access_tokens(
        &self,
        max_expires_at: UnixMillis,
        now: UnixMillis,
        limit: u64,
        record: impl Fn(&UserAccessToken) -> NewRecord,
    ) -> Result<(usize, Vec<UserAccessToken>)> {
        let candidates: Vec<String> = tokens::Entity::find()
            .select_only()
            .column(tokens::Column::Id)
            .filter(Self::non_compliant(max_expires_at))
            .order_by_asc(tokens::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        if candidates.is_empty() {
            return Ok((0, Vec::new()));
        }
        let picked = candidates.len();
        let txn = self.begin_write().await?;
        let locked: Vec<UserAccessToken> = tokens::Entity::find()
            .filter(tokens::Column::Id.is_in(candidates))
            .filter(tokens::Column::IsActive.eq(true))
            .filter(
                Condition::any()
                    .add(tokens::Column::ExpiresAt.eq(0))
                    .add(tokens::Column::ExpiresAt.gt(max_expires_at)),
            )
            .order_by_asc(tokens::Column::Id)
            .lock_exclusive()
            .all(&txn)
            .await?
            .into_iter()
            .map(UserAccessToken::from)
            .collect();
        let appended = self
            .delete_locked_tokens(&txn, &locked, now, record)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok((picked, locked))
    }
}
