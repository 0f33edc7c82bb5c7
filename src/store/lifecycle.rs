//! The lifecycle log (see `domain::lifecycle`): appends with each change, the sealer that
//! moves queued records into the log (group commit), and the reads of the revocation feed,
//! WatchEvents, webhooks and the audit listing.
//!
//! The log's control row in `service_meta` (`lifecycle_log`: "<newest id> <newest hash>") is
//! locked (`SELECT ... FOR UPDATE`) by whatever writes log rows, until it commits. So ids are
//! handed out in commit order (a reader that has seen record N has seen every record below N,
//! and resuming "after N" is exact) and each new record's hash chains over the previous one's.
//! On PostgreSQL the writer also queues one `NOTIFY` (payload `r` when a record revokes
//! something, `e` otherwise), delivered when it commits.
//!
//! **Group commit (PostgreSQL, MariaDB).** Holding that lock inside every change, across its
//! commit, made every write on every replica wait for the one before (lock, insert, update,
//! NOTIFY, commit and its fsync, one after another). So a change inserts its records into
//! `lifecycle_pending` in its own transaction, without the lock: the change and its records
//! still commit together or not at all. A **seal** ([`Store::seal_pending`]) then, in one
//! transaction, locks the control row, reads every waiting row (`ORDER BY seq`, `FOR UPDATE`
//! so it reads the latest rows; on MariaDB at READ COMMITTED, so its reads take no gap locks
//! that would stop writers inserting), gives them the next ids and chained hashes in that
//! order, inserts them into the log, deletes them from the queue, moves the control row and
//! queues one `NOTIFY` for the batch. On PostgreSQL the seal runs on a connection of its own
//! held outside sqlx's pool (no ping when it is taken or given back), with the driver
//! directly: three round trips for a batch of up to about 20 rows (`BEGIN`, the lock and the
//! take, `DELETE ... RETURNING` as one JSON array, in one message of three statements; the
//! rows inserted, sent as one JSON parameter, with the control row's update and the `NOTIFY`
//! in the same statement; `COMMIT`), one more per 12 KiB of rows beyond. A writer waits for
//! one to two seals. Ids follow the seals' commit order, so
//! "resume after N" stays exact, and sealed rows are exactly the rows an inline append wrote:
//! the chain check, pruning and every reader are unchanged.
//!
//! After its commit the writer waits ([`Store::commit_logged`]) for a seal run that *reads
//! the queue after* the commit: runs are counted (`started`, `completed`, and `reading`, the
//! latest run that has begun reading the queue); the writer's ticket is the run going if it
//! has not begun reading, else `started + 1`; it starts that run if none is going (in a task
//! of its own, so a cancelled request cannot cut it short) and waits until `completed`
//! reaches its ticket. Writers that commit while a run reads or writes all ride the next
//! one, so one seal covers many writes, and the writer's record is in the log when its call
//! returns (read-your-writes). The wait is bounded
//! ([`SEAL_WAIT`]); a seal that fails is logged and the call still succeeds (the change is
//! committed: a retry would repeat it). Whatever waits is sealed by the next run: the server's
//! sealer task ([`Store::run_log_sealer`]) seals at start, every second while anything waits
//! (rows of a replica that stopped between a commit and its seal are sealed by any replica),
//! and once more at shutdown if anything waits.
//!
//! Another replica's sealer may seal our rows first. That is correct: a run reads the queue
//! only after it holds the control row's lock, and our run reads after our commit, so by
//! the time it reads, our rows are either still queued (and it seals them) or were sealed by
//! a run that committed before it got the lock; either way they are in the log when our wait
//! ends. Two sealers never seal the same row: the second reads the queue after the first's
//! commit deleted it. Changes that touch the same row (a token revoked twice, disabled then
//! enabled) queue their records after the row lock that orders them, so `seq`, and thus the
//! ids, keep their order.
//!
//! **SQLite** appends inline, as before: it has one writer at a time anyway (a write
//! transaction excludes every other), so queuing would only add a second transaction per
//! write. A change that needs its record's id (a webhook's delivery starts after its
//! `webhook.created`) also appends inline on every backend ([`Store::append_to_log_inline`]):
//! it takes the same lock, so ids still follow commit order. A replica of the previous version
//! during a rolling deploy appends inline too, under the same lock.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, IdenStatic, IsolationLevel, Iterable, NotSet, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement, TransactionTrait, TryIntoModel,
    sea_query::{
        Alias, CommonTableExpression, Expr, LockType, Order as SqlOrder, Query, SubQueryStatement,
        WithClause,
    },
    sqlx::{self, Column as _, Row as _, postgres::PgListener},
};
use tracing::warn;

use super::{
    Store,
    entities::{lifecycle_log as log, lifecycle_pending as pending, service_meta},
    error::{driver_error, means_connection_lost},
    held_connections::HeldConnections,
};
use crate::domain::{
    audit::{AuditQuery, Order},
    error::{Error, Result},
    lifecycle::{LifecycleRecord, NewRecord, Origin, RecordFilter, StoredRecord, Subjects},
    model::{Revocation, RevocationEvent, UnixMillis, Wakeup},
};

/// The control row: "<newest id> <newest hash>"; every append locks it.
const HEAD_ROW: &str = "lifecycle_log";
/// "<id> <hash>" of the record the hash chain starts after.
const CHAIN_ROW: &str = "lifecycle_log_chain";
/// The highest id deleted by pruning.
const PRUNED_ROW: &str = "lifecycle_log_pruned";

/// The PostgreSQL notification channel of the log.
const NOTIFY_CHANNEL: &str = "token_service_lifecycle";

/// A position in the log: a record id and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub id: i64,
    pub hash: String,
}

impl ChainLink {
    fn parse(value: &str, row: &str) -> Result<Self> {
        let (id, hash) = value.split_once(' ').unwrap_or((value, ""));
        let id = id
            .parse()
            .map_err(|_| Error::internal(format!("the log's control row {row} is unreadable")))?;
        Ok(Self {
            id,
            hash: hash.to_owned(),
        })
    }

    fn stored(&self) -> String {
        format!("{} {}", self.id, self.hash)
    }
}

impl Store {
    /// Appends `records` that describe no change of their own (an observation, such as a
    /// refused use), made at `now`. On PostgreSQL and MariaDB one statement (no transaction
    /// of its own) queues them for the next seal, which this call waits for.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn append_records(&self, records: &[NewRecord], now: UnixMillis) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if self.seals_log() {
            queue(&self.db, records, now).await?;
            self.await_seal().await;
            return Ok(());
        }
        let txn = self.begin_write().await?;
        let appended = self.append_to_log(&txn, records, now).await?;
        self.commit_logged(txn, appended).await
    }

    /// Whether changes queue their records for the sealer (PostgreSQL, MariaDB) instead of
    /// appending them to the log inline (SQLite, whose one writer at a time gains nothing).
    fn seals_log(&self) -> bool {
        self.db.get_database_backend() != DbBackend::Sqlite
    }

    /// Appends `records`, made at `now`, inside `txn` (the transaction of the change they
    /// describe): on PostgreSQL and MariaDB into `lifecycle_pending` (no lock), on SQLite
    /// straight into the log. Commit `txn` with [`Store::commit_logged`], which waits until
    /// the records are in the log.
    pub(super) async fn append_to_log(
        &self,
        txn: &DatabaseTransaction,
        records: &[NewRecord],
        now: UnixMillis,
    ) -> Result<Appended> {
        if records.is_empty() {
            return Ok(Appended::default());
        }
        if !self.seals_log() {
            self.append_to_log_inline(txn, records, now).await?;
            return Ok(Appended::default());
        }
        queue(txn, records, now).await?;
        Ok(Appended { pending: true })
    }

    /// Waits (bounded, as a writer does) until every change committed before this call has
    /// its records in the log; at once where changes append to the log themselves (SQLite).
    /// For a reader that saw a change's effect in the tables (a subscriber re-checking its
    /// credential) and then reads the log: the change's own records are then among it.
    pub async fn await_committed_records(&self) {
        if self.seals_log() {
            self.await_seal().await;
        }
    }

    /// Whether a change of one statement can queue its records in that same statement
    /// ([`Store::change_and_queue`]): PostgreSQL, whose data-modifying `WITH` makes both one
    /// atomic statement.
    pub(super) fn queues_in_one_statement(&self) -> bool {
        self.db.get_database_backend() == DbBackend::Postgres
    }

    /// Runs `change` (one data-modifying statement with a `RETURNING` clause) and, if it
    /// returned a row, queues `record`, made at `now`, for the sealer, as one statement:
    /// `WITH change AS (<change>) INSERT INTO lifecycle_pending (...) SELECT <values> FROM
    /// change`. A single statement is atomic on its own, so the change costs one round trip
    /// instead of four or more (BEGIN, change, queue, COMMIT). Then, if it queued the
    /// record, waits for the seal as [`Store::commit_logged`] does. Returns whether the
    /// change returned a row. Only where [`Store::queues_in_one_statement`].
    pub(super) async fn change_and_queue(
        &self,
        change: impl Into<SubQueryStatement>,
        record: &NewRecord,
        now: UnixMillis,
    ) -> Result<bool> {
        debug_assert!(self.queues_in_one_statement());
        let model = pending_model(stored(record, now));
        let (columns, values): (Vec<pending::Column>, Vec<Expr>) = pending::Column::iter()
            .filter_map(|column| {
                let value = model.get(column).into_value()?;
                Some((column, Expr::val(value)))
            })
            .unzip();
        // Built in place (`take`, not `to_owned`: a builder's `to_owned` clones the tree).
        let change_table = Alias::new("change");
        let select = Query::select()
            .exprs(values)
            .from(change_table.clone())
            .take();
        let mut cte = CommonTableExpression::new();
        cte.query(change).table_name(change_table);
        let mut with = WithClause::new();
        with.cte(cte);
        let statement = Query::insert()
            .into_table(pending::Entity)
            .columns(columns)
            .select_from(select)
            .map_err(|e| Error::internal(format!("queue statement: {e}")))?
            .take()
            .with(with);
        let changed = self.db.execute(&statement).await?.rows_affected() > 0;
        if changed {
            self.await_seal().await;
        }
        Ok(changed)
    }

    /// Commits `txn`; when its change queued records, waits (bounded) for a seal that
    /// started after the commit, so the records are in the log when the call returns. A
    /// seal that fails or is late is logged, not returned: the change is committed (a retry
    /// would repeat it) and the next seal takes its records.
    pub(super) async fn commit_logged(
        &self,
        txn: DatabaseTransaction,
        appended: Appended,
    ) -> Result<()> {
        txn.commit().await?;
        if appended.pending {
            self.await_seal().await;
        }
        Ok(())
    }

    /// Appends `records`, made at `now`, to the log itself inside `txn`, under the log's
    /// lock (held until `txn` ends); returns their ids. Every change on SQLite; elsewhere
    /// only a change that needs its record's id (a webhook starts after its own creation).
    pub(super) async fn append_to_log_inline(
        &self,
        txn: &DatabaseTransaction,
        records: &[NewRecord],
        now: UnixMillis,
    ) -> Result<Vec<i64>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let head = lock_head(txn).await?;
        let rows = records.iter().map(|r| stored(r, now)).collect();
        self.write_chained(txn, head, rows).await
    }

    /// Gives `rows` the ids after `head` and hashes chained from it, in order, inserts them
    /// into the log, moves the control row to the last and (PostgreSQL) queues one `NOTIFY`
    /// for them. `txn` holds the control row's lock.
    async fn write_chained(
        &self,
        txn: &DatabaseTransaction,
        head: ChainLink,
        mut rows: Vec<StoredRecord>,
    ) -> Result<Vec<i64>> {
        let head = self.chain(head, &mut rows)?;
        let ids = rows.iter().map(|r| r.id).collect();
        if txn.get_database_backend() == DbBackend::Postgres {
            let append = PostgresAppend::new(&head, rows)?;
            for chunk in append.earlier {
                txn.execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    postgres_append_sql(false),
                    [chunk.into()],
                ))
                .await?;
            }
            let [last, head, row, channel, payload] = append.last;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                postgres_append_sql(true),
                [
                    last.into(),
                    head.into(),
                    row.into(),
                    channel.into(),
                    payload.into(),
                ],
            ))
            .await?;
        } else {
            for run in power_of_two_runs(rows) {
                log::Entity::insert_many(run.into_iter().map(log_model))
                    .exec_without_returning(txn)
                    .await?;
            }
            set_control(txn, HEAD_ROW, &head.stored()).await?;
        }
        Ok(ids)
    }

    /// Gives `rows` the ids after `head` and hashes chained from it, in order; returns the
    /// new head (the last row's link).
    fn chain(&self, mut head: ChainLink, rows: &mut [StoredRecord]) -> Result<ChainLink> {
        let key = self.audit_key()?;
        for row in rows {
            row.id = head.id + 1;
            row.hash = row.chained_hash(key, &head.hash);
            head = ChainLink {
                id: row.id,
                hash: row.hash.clone(),
            };
        }
        Ok(head)
    }

    /// Waits (at most [`SEAL_WAIT`]) until a seal run that read the queue after this call
    /// began has finished: the writer's ticket is the run going, if it has not read the
    /// queue yet, else the next one; if no run is going, one starts now (a task of its own,
    /// so a cancelled request cannot cut it short). Writers that come while a run reads or
    /// writes all ride the next one.
    async fn await_seal(&self) {
        let (ticket, start) = self
            .sealer
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ticket();
        let mut done = self.sealer.completed.subscribe();
        if start {
            tokio::spawn(self.clone().run_seals());
        }
        if tokio::time::timeout(SEAL_WAIT, done.wait_for(|run| *run >= ticket))
            .await
            .is_err()
        {
            warn!(
                wait_ms = SEAL_WAIT.as_millis() as u64,
                "a change is committed but its lifecycle records are not in the log yet; \
                 the next seal takes them"
            );
        }
    }

    /// Seal runs, one after another, while writers wait for a later one.
    async fn run_seals(self) {
        loop {
            let run = self
                .sealer
                .runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .started;
            if let Err(e) = unwound_as_error(self.seal_pending(run)).await {
                warn!(error = %e, "could not seal the waiting lifecycle records; will retry");
            }
            self.sealer.completed.send_replace(run);
            let mut runs = self.sealer.runs.lock().unwrap_or_else(|e| e.into_inner());
            if runs.wanted > run {
                runs.started = run + 1;
            } else {
                runs.running = false;
                return;
            }
        }
    }

    /// One seal, run number `run`: moves every committed row of `lifecycle_pending` into
    /// the log, in `seq` order, `SEAL_BATCH` rows per transaction. Returns how many.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    async fn seal_pending(&self, run: u64) -> Result<u64> {
        let mut total = 0;
        loop {
            let txn = match &self.seal {
                SealConnection::Held(held) => {
                    let count = self.seal_batch_postgres(held, run).await?;
                    total += count;
                    if count < SEAL_BATCH {
                        return Ok(total);
                    }
                    continue;
                }
                // No gap locks: writers keep inserting while the seal reads.
                SealConnection::Pool(db) if db.get_database_backend() == DbBackend::MySql => {
                    db.begin_with_config(Some(IsolationLevel::ReadCommitted), None)
                        .await?
                }
                SealConnection::Pool(db) => db.begin().await?,
                SealConnection::Inline => self.begin_write().await?,
            };
            let head = lock_head(&txn).await?;
            // From here on a writer that commits rides the next run: the read below may
            // have taken its snapshot before that commit.
            self.sealer.reading(run);
            let taken = txn.get_database_backend() == DbBackend::Postgres;
            let waiting = if taken {
                take_pending(&txn).await?
            } else {
                // Locking reads see the latest committed rows (MariaDB's REPEATABLE READ
                // would otherwise read its snapshot).
                pending::Entity::find()
                    .order_by_asc(pending::Column::Seq)
                    .limit(SEAL_BATCH)
                    .lock_exclusive()
                    .all(&txn)
                    .await?
            };
            if waiting.is_empty() {
                txn.rollback().await?;
                return Ok(total);
            }
            let count = waiting.len() as u64;
            let seqs: Vec<i64> = waiting.iter().map(|p| p.seq).collect();
            let rows = waiting.into_iter().map(stored_of_pending).collect();
            self.write_chained(&txn, head, rows).await?;
            if !taken {
                for run in power_of_two_runs(seqs) {
                    pending::Entity::delete_many()
                        .filter(pending::Column::Seq.is_in(run))
                        .exec(&txn)
                        .await?;
                }
            }
            txn.commit().await?;
            total += count;
            if count < SEAL_BATCH {
                return Ok(total);
            }
        }
    }

    /// One seal transaction on PostgreSQL, on the seal's own connection (held outside
    /// sqlx's pool, so no ping when it is taken or given back) with the driver directly:
    /// three round trips for up to about 20 rows. `BEGIN`, the control row's lock and the
    /// take travel as one message of three statements (each statement still reads the
    /// latest committed rows, as separate ones would); then the append with the control
    /// row's update and the `NOTIFY`; then `COMMIT`. A connection lost on the way is
    /// replaced and the batch sent once more: either nothing of it committed, or its rows
    /// are no longer queued. Returns how many rows it sealed.
    async fn seal_batch_postgres(
        &self,
        seal: &HeldConnections<sqlx::Postgres>,
        run: u64,
    ) -> Result<u64> {
        let mut retried = false;
        loop {
            let mut held = seal.hold().await.map_err(driver_error)?;
            // The take's snapshot comes after this: writers that commit from now on ride
            // the next run.
            self.sealer.reading(run);
            match self.seal_batch_on(held.connection()).await {
                Ok(count) => {
                    held.settle();
                    return Ok(count);
                }
                // `held` drops unsettled: its connection closes, a fresh one is opened.
                Err(SealFailure::Driver(e)) if means_connection_lost(&e) && !retried => {
                    retried = true;
                }
                Err(failure) => {
                    // The database answered (or the rows could not be chained): end the
                    // transaction, and keep the connection if that works.
                    if sqlx::raw_sql("ROLLBACK")
                        .execute(held.connection())
                        .await
                        .is_ok()
                    {
                        held.settle();
                    }
                    return Err(failure.into());
                }
            }
        }
    }

    /// The statements of [`Store::seal_batch_postgres`] on `conn`.
    async fn seal_batch_on(
        &self,
        conn: &mut sqlx::PgConnection,
    ) -> std::result::Result<u64, SealFailure> {
        let answers = sqlx::raw_sql(postgres_take_sql())
            .fetch_all(&mut *conn)
            .await?;
        let answer = |name: &str| -> std::result::Result<Option<String>, SealFailure> {
            let row = answers.iter().find(|row| {
                row.columns()
                    .first()
                    .is_some_and(|column| column.name() == name)
            });
            Ok(row.map(|row| row.try_get::<String, _>(0)).transpose()?)
        };
        let head = answer("head")?
            .ok_or_else(|| Error::internal("the lifecycle log's control row is missing"))?;
        let head = ChainLink::parse(&head, HEAD_ROW)?;
        let taken = answer("taken")?.unwrap_or_default();
        let waiting: Vec<pending::Model> = serde_json::from_str(&taken)
            .map_err(|e| Error::internal(format!("the taken lifecycle rows as JSON: {e}")))?;
        if waiting.is_empty() {
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
            return Ok(0);
        }
        let count = waiting.len() as u64;
        let mut rows: Vec<StoredRecord> = waiting.into_iter().map(stored_of_pending).collect();
        let head = self.chain(head, &mut rows)?;
        let append = PostgresAppend::new(&head, rows)?;
        for chunk in append.earlier {
            sqlx::query(postgres_append_sql(false))
                .bind(chunk)
                .execute(&mut *conn)
                .await?;
        }
        let [last, head, row, channel, payload] = append.last;
        sqlx::query(postgres_append_sql(true))
            .bind(last)
            .bind(head)
            .bind(row)
            .bind(channel)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        Ok(count)
    }

    /// Whether records wait in `lifecycle_pending`.
    async fn log_pending(&self) -> Result<bool> {
        Ok(pending::Entity::find()
            .select_only()
            .column(pending::Column::Seq)
            .limit(1)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .is_some())
    }

    /// The sealer of this server (PostgreSQL, MariaDB; returns at once on SQLite): seals
    /// at start, then every `SEAL_INTERVAL` when records wait (a change whose writer
    /// could not wait for its seal, or a replica that stopped between a commit and its
    /// seal: any replica seals them), and once more at `shutdown` if records wait. Writers
    /// start the runs they wait for themselves (`Store::commit_logged`).
    pub async fn run_log_sealer(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if !self.seals_log() {
            return;
        }
        loop {
            match self.log_pending().await {
                Ok(true) => self.await_seal().await,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not look for waiting lifecycle records"),
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(SEAL_INTERVAL) => {}
            }
        }
        // What a writer gave up waiting for, if anything (writers wait for their own seals).
        if self.log_pending().await.unwrap_or(false) {
            self.await_seal().await;
        }
    }

    /// On PostgreSQL, a listener on its own connection (not one of the pool's) that wakes
    /// when any replica appends to the log; `None` on other backends (their readers poll).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn log_wakeups(&self, connect_timeout: Duration) -> Result<Option<LogWakeups>> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let pool = self.db.get_postgres_connection_pool();
        let own = sea_orm::sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(connect_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*pool.connect_options()).clone());
        let unavailable = |e: sea_orm::sqlx::Error| Error::Unavailable(Box::new(e));
        let mut listener = PgListener::connect_with(&own).await.map_err(unavailable)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(unavailable)?;
        Ok(Some(LogWakeups { listener }))
    }

    /// Revocations after record `after`, oldest first, at most `limit` (the records that
    /// take something away, read by every replica's feed and `WatchRevocations`).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn revocations_after(&self, after: i64, limit: u64) -> Result<Vec<RevocationEvent>> {
        let rows: Vec<(i64, String, String, i64)> = log::Entity::find()
            .select_only()
            .columns([
                log::Column::Id,
                log::Column::Revokes,
                log::Column::RevokesId,
            ])
            .column(log::Column::CreateAt)
            .filter(log::Column::Revoking.eq(1))
            .filter(log::Column::Id.gt(after))
            .order_by_asc(log::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, subject_id, create_at)| RevocationEvent {
                id,
                // A kind written by a newer version: drop everything, to be safe.
                revocation: Revocation::from_stored(&kind, subject_id).unwrap_or(Revocation::All),
                create_at,
            })
            .collect())
    }

    /// Records after `after` that pass `filter`, oldest first, at most `limit`.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn records_after(
        &self,
        after: i64,
        filter: &RecordFilter,
        limit: u64,
    ) -> Result<Vec<LifecycleRecord>> {
        let mut query = log::Entity::find().filter(log::Column::Id.gt(after));
        if !filter.actions.is_empty() {
            query =
                query.filter(log::Column::Action.is_in(filter.actions.iter().map(|a| a.as_str())));
        }
        if let Some(user_id) = &filter.user_id {
            query = query.filter(log::Column::UserId.eq(user_id.as_str()));
        }
        let rows = query
            .order_by_asc(log::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().filter_map(record_of).collect())
    }

    /// The records that pass `query`'s filters, past its position in its order, at most
    /// its limit (the audit listing). Every record, whatever its action.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn list_records(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>> {
        let mut find = log::Entity::find();
        if let Some(since) = query.since {
            find = find.filter(log::Column::CreateAt.gte(since));
        }
        if let Some(until) = query.until {
            find = find.filter(log::Column::CreateAt.lt(until));
        }
        if !query.actions.is_empty() {
            find = find.filter(log::Column::Action.is_in(query.actions.iter().map(|a| a.as_str())));
        }
        if let Some(kind) = query.actor_type {
            find = find.filter(log::Column::ActorType.eq(kind));
        }
        let exact = [
            (
                log::Column::ActorId,
                query.actor_id.as_ref().map(|id| id.as_str()),
            ),
            (
                log::Column::UserId,
                query.user_id.as_ref().map(|id| id.as_str()),
            ),
            (
                log::Column::TokenId,
                query.token_id.as_ref().map(|id| id.as_str()),
            ),
            (
                log::Column::SessionId,
                query.session_id.as_ref().map(|id| id.as_str()),
            ),
            (
                log::Column::CommandId,
                query.command_id.as_ref().map(|id| id.as_str()),
            ),
            (log::Column::Ip, query.ip.as_deref()),
            (log::Column::RequestId, query.request_id.as_deref()),
            (
                log::Column::CredentialHmac,
                query.credential_hmac.as_deref(),
            ),
        ];
        for (column, value) in exact {
            if let Some(value) = value {
                find = find.filter(column.eq(value));
            }
        }
        find = match query.order {
            Order::NewestFirst => {
                if let Some(after) = query.after_id {
                    find = find.filter(log::Column::Id.lt(after));
                }
                find.order_by_desc(log::Column::Id)
            }
            Order::OldestFirst => {
                if let Some(after) = query.after_id {
                    find = find.filter(log::Column::Id.gt(after));
                }
                find.order_by_asc(log::Column::Id)
            }
        };
        let rows = find.limit(query.limit).all(&self.db).await?;
        Ok(rows.into_iter().map(stored_of).collect())
    }

    /// Records with `after < id <= through`, oldest first, at most `limit` (the chain check).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn stored_records_between(
        &self,
        after: i64,
        through: i64,
        limit: u64,
    ) -> Result<Vec<StoredRecord>> {
        let rows = log::Entity::find()
            .filter(log::Column::Id.gt(after))
            .filter(log::Column::Id.lte(through))
            .order_by_asc(log::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(stored_of).collect())
    }

    /// Record `id`, if it exists.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn stored_record(&self, id: i64) -> Result<Option<StoredRecord>> {
        Ok(log::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(stored_of))
    }

    /// The newest record id, or 0 when the log is empty.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn latest_record_id(&self) -> Result<i64> {
        let newest: Option<i64> = log::Entity::find()
            .select_only()
            .column_as(log::Column::Id.max(), "max_id")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?
            .flatten();
        Ok(newest.unwrap_or(0))
    }

    /// The highest record id deleted by pruning (0 when nothing was pruned): resuming from
    /// a position below it would miss records.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn pruned_log_through(&self) -> Result<i64> {
        Ok(self.control_link(PRUNED_ROW).await?.id)
    }

    /// The record the hash chain starts after (its id and hash), and the newest record.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn log_chain_ends(&self) -> Result<(ChainLink, ChainLink)> {
        Ok((
            self.control_link(CHAIN_ROW).await?,
            self.control_link(HEAD_ROW).await?,
        ))
    }

    async fn control_link(&self, row: &str) -> Result<ChainLink> {
        let value = service_meta::Entity::find_by_id(row.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal(format!("the log's control row {row} is missing")))?
            .value;
        ChainLink::parse(&value, row)
    }

    /// Deletes records older than `before`, at most `batch` per transaction (each one short,
    /// so appends never wait long), moving the chain's start past them. Returns how many
    /// were deleted.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn prune_log(&self, before: UnixMillis, batch: u64) -> Result<u64> {
        let mut total = 0;
        loop {
            let txn = self.begin_write().await?;
            // Pruners on several replicas take turns on this row; appends lock another.
            service_meta::Entity::find_by_id(PRUNED_ROW.to_owned())
                .lock_exclusive()
                .one(&txn)
                .await?
                .ok_or_else(|| Error::internal("the log's control row is missing"))?;
            // The oldest records in log order, up to the first one still young enough (a
            // walk of the primary key, however large the log).
            let oldest: Vec<(i64, String, i64)> = log::Entity::find()
                .select_only()
                .columns([log::Column::Id, log::Column::Hash, log::Column::CreateAt])
                .order_by_asc(log::Column::Id)
                .limit(batch)
                .into_tuple()
                .all(&txn)
                .await?;
            let expired = oldest
                .iter()
                .take_while(|(_, _, create_at)| *create_at < before)
                .count();
            let Some((last_id, last_hash, _)) =
                expired.checked_sub(1).map(|last| oldest[last].clone())
            else {
                return Ok(total);
            };
            let deleted = log::Entity::delete_many()
                .filter(log::Column::Id.lte(last_id))
                .exec(&txn)
                .await?;
            set_control(&txn, PRUNED_ROW, &last_id.to_string()).await?;
            let chain = service_meta::Entity::find_by_id(CHAIN_ROW.to_owned())
                .one(&txn)
                .await?
                .map(|row| ChainLink::parse(&row.value, CHAIN_ROW))
                .transpose()?;
            if chain.is_some_and(|c| c.id < last_id) {
                let start = ChainLink {
                    id: last_id,
                    hash: last_hash,
                };
                set_control(&txn, CHAIN_ROW, &start.stored()).await?;
            }
            txn.commit().await?;
            total += deleted.rows_affected;
            if expired < oldest.len() || (oldest.len() as u64) < batch {
                return Ok(total);
            }
        }
    }
}

async fn set_control(txn: &DatabaseTransaction, row: &str, value: &str) -> Result<()> {
    service_meta::Entity::update_many()
        .col_expr(service_meta::Column::Value, Expr::value(value))
        .filter(service_meta::Column::Name.eq(row))
        .exec(txn)
        .await?;
    Ok(())
}

/// `record`, made at `now`, as stored (without its id and hash, which the seal gives).
fn stored(record: &NewRecord, now: UnixMillis) -> StoredRecord {
    LifecycleRecord {
        id: 0,
        create_at: now,
        record: record.clone(),
        hash: String::new(),
    }
    .stored()
}

/// A row of the log or of the queue (the same columns) to insert: `$r`'s fields, and `$extra`.
macro_rules! active_row {
    ($model:path, $r:ident { $($extra:tt)* }) => {{
        let s = $r.subjects;
        $model {
            create_at: Set($r.create_at),
            action: Set($r.action),
            actor_type: Set($r.actor_type),
            actor_id: Set($r.actor_id),
            user_id: Set(s.user_id),
            token_id: Set(s.token_id),
            session_id: Set(s.session_id),
            command_id: Set(s.command_id),
            team_id: Set(s.team_id),
            webhook_id: Set(s.webhook_id),
            ip: Set($r.origin.ip),
            user_agent: Set($r.origin.user_agent),
            request_id: Set($r.origin.request_id),
            detail: Set($r.detail),
            credential_hmac: Set($r.credential_hmac),
            revoking: Set(i16::from(!$r.revokes.is_empty())),
            revokes: Set($r.revokes),
            revokes_id: Set($r.revokes_id),
            $($extra)*
        }
    }};
}

/// A row of the log or of the queue as stored, field for field, with `$extra` (id, hash).
macro_rules! stored_row {
    ($m:ident { $($extra:tt)* }) => {
        StoredRecord {
            create_at: $m.create_at,
            action: $m.action,
            actor_type: $m.actor_type,
            actor_id: $m.actor_id,
            subjects: Subjects {
                user_id: $m.user_id,
                token_id: $m.token_id,
                session_id: $m.session_id,
                command_id: $m.command_id,
                team_id: $m.team_id,
                webhook_id: $m.webhook_id,
            },
            origin: Origin {
                ip: $m.ip,
                user_agent: $m.user_agent,
                request_id: $m.request_id,
            },
            detail: $m.detail,
            credential_hmac: $m.credential_hmac,
            revokes: $m.revokes,
            revokes_id: $m.revokes_id,
            $($extra)*
        }
    };
}

fn log_model(r: StoredRecord) -> log::ActiveModel {
    active_row!(
        log::ActiveModel,
        r {
            id: Set(r.id),
            hash: Set(r.hash)
        }
    )
}

fn pending_model(r: StoredRecord) -> pending::ActiveModel {
    active_row!(pending::ActiveModel, r { seq: NotSet })
}

/// `record`, made at `now`, as a queued row in JSON keyed by column name (`seq` 0: the
/// queue's identity numbers it).
pub(super) fn pending_json(record: &NewRecord, now: UnixMillis) -> Result<String> {
    let r = stored(record, now);
    let row = active_row!(pending::ActiveModel, r { seq: Set(0) }).try_into_model()?;
    serde_json::to_string(&row)
        .map_err(|e| Error::internal(format!("a lifecycle record as JSON: {e}")))
}

/// A waiting row as stored, without its id and hash (a pending row is copied field for
/// field, so a record written by a newer version is sealed unchanged).
fn stored_of_pending(m: pending::Model) -> StoredRecord {
    stored_row!(m {
        id: 0,
        hash: String::new()
    })
}

/// Queues `records`, made at `now`, for the next seal (one multi-row insert on `db`).
async fn queue(db: &impl ConnectionTrait, records: &[NewRecord], now: UnixMillis) -> Result<()> {
    pending::Entity::insert_many(records.iter().map(|r| pending_model(stored(r, now))))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// PostgreSQL: takes the oldest waiting records (at most [`SEAL_BATCH`], locked) out of the
/// queue in one statement (`DELETE ... WHERE seq IN (SELECT ... FOR UPDATE) RETURNING`), in
/// `seq` order. The transaction's commit makes the move into the log and the deletion one.
/// (MariaDB cannot limit a subquery of the table it deletes from: it reads, then deletes.)
async fn take_pending(txn: &DatabaseTransaction) -> Result<Vec<pending::Model>> {
    let oldest = Query::select()
        .column(pending::Column::Seq)
        .from(pending::Entity)
        .order_by(pending::Column::Seq, SqlOrder::Asc)
        .limit(SEAL_BATCH)
        .lock(LockType::Update)
        .to_owned();
    let take = Query::delete()
        .from_table(pending::Entity)
        .and_where(pending::Column::Seq.in_subquery(oldest))
        .returning_all()
        .to_owned();
    let mut taken = pending::Model::find_by_statement(txn.get_database_backend().build(&take))
        .all(txn)
        .await?;
    taken.sort_unstable_by_key(|p| p.seq);
    Ok(taken)
}

/// PostgreSQL: the statement that appends log rows (`$1`, a JSON array of rows, each an
/// object keyed by column name; the columns are the entity's) and, with `move_head`, in the
/// same statement moves the control row (`$2`, named `$3`) and queues the notification (`$4`
/// channel, `$5` payload). Fixed texts, so each is prepared once per connection whatever
/// the row count.
fn postgres_append_sql(move_head: bool) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    SQL[usize::from(move_head)].get_or_init(|| {
        let columns = log::Column::iter()
            .map(|column| format!("\"{}\"", column.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let insert = format!(
            "INSERT INTO lifecycle_log ({columns}) SELECT {columns} \
             FROM json_populate_recordset(NULL::lifecycle_log, $1::json)"
        );
        if move_head {
            format!(
                "WITH appended AS ({insert}) \
                 UPDATE service_meta SET value = $2 WHERE name = $3 \
                 RETURNING (SELECT 1 FROM pg_notify($4, $5))"
            )
        } else {
            insert
        }
    })
}

/// PostgreSQL: the seal's first message, three statements: `BEGIN`; the control row,
/// locked (a row named `head`); the oldest waiting records (at most [`SEAL_BATCH`], locked)
/// deleted from the queue and returned as one JSON array in `seq` order (a row named
/// `taken`). Sent as a simple query (no parameters), so all three cost one round trip.
fn postgres_take_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        // Constants of this module, spliced as literals (no quote in them).
        debug_assert!(
            HEAD_ROW
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        format!(
            "BEGIN; \
             SELECT value AS head FROM service_meta WHERE name = '{HEAD_ROW}' FOR UPDATE; \
             WITH taken AS (DELETE FROM lifecycle_pending WHERE seq IN \
             (SELECT seq FROM lifecycle_pending ORDER BY seq LIMIT {SEAL_BATCH} FOR UPDATE) \
             RETURNING *) \
             SELECT coalesce(json_agg(t ORDER BY t.seq), '[]')::text AS taken FROM taken t"
        )
    })
}

/// The `NOTIFY` payload of appended `rows`: `r` if one of them revokes something, else `e`.
fn notify_payload(rows: &[StoredRecord]) -> &'static str {
    if rows.iter().any(|r| !r.revokes.is_empty()) {
        "r"
    } else {
        "e"
    }
}

/// What a PostgreSQL seal failed on: the driver (whose errors say whether the connection
/// is lost) or anything else.
enum SealFailure {
    Driver(sqlx::Error),
    Other(Error),
}

impl From<sqlx::Error> for SealFailure {
    fn from(e: sqlx::Error) -> Self {
        SealFailure::Driver(e)
    }
}

impl From<Error> for SealFailure {
    fn from(e: Error) -> Self {
        SealFailure::Other(e)
    }
}

impl From<SealFailure> for Error {
    fn from(failure: SealFailure) -> Self {
        match failure {
            SealFailure::Driver(e) => driver_error(e),
            SealFailure::Other(e) => e,
        }
    }
}

/// The connection the seal runs on.
#[derive(Debug, Clone)]
pub(super) enum SealConnection {
    /// SQLite: changes append to the log inline; a seal (if ever run) uses a write
    /// transaction of the request pool.
    Inline,
    /// MariaDB: a pool of one connection of its own, through SeaORM.
    Pool(sea_orm::DatabaseConnection),
    /// PostgreSQL: one connection of its own held outside sqlx's pool, used with the
    /// driver directly ([`Store::seal_batch_postgres`]).
    Held(std::sync::Arc<HeldConnections<sqlx::Postgres>>),
}

impl SealConnection {
    /// The seal's connection for `db` (opened when first needed): every write waits for a
    /// seal, so a seal must not queue for a pooled connection behind the writers that
    /// wait for it.
    pub(super) async fn beside(
        db: &sea_orm::DatabaseConnection,
        options: sea_orm::ConnectOptions,
        pool: &super::PoolOptions,
    ) -> Result<Self> {
        Ok(match db.get_database_backend() {
            DbBackend::Postgres => SealConnection::Held(std::sync::Arc::new(HeldConnections::new(
                db.get_postgres_connection_pool().clone(),
                1,
                pool.connect_timeout,
                pool.acquire_timeout,
            ))),
            DbBackend::MySql => {
                let mut options = options;
                options.max_connections(1).min_connections(0);
                SealConnection::Pool(sea_orm::Database::connect(options).await?)
            }
            _ => SealConnection::Inline,
        })
    }

    /// Closes the seal's connection (waiting at most a second for a seal in progress).
    pub(super) async fn close(&self) {
        match self {
            SealConnection::Inline => {}
            SealConnection::Pool(db) => {
                let _ = db.clone().close().await;
            }
            SealConnection::Held(held) => held.close(Duration::from_secs(1)).await,
        }
    }
}

/// The most JSON one append statement carries. sqlx does not set `TCP_NODELAY`, and over
/// TLS a message longer than one record (16 KiB) leaves in two writes: the second waits
/// for the database's delayed acknowledgement of the first, 40 ms on Linux (measured: a
/// 30-row append took 45 ms against 0.5 ms for 20 rows). Below one record it leaves in one.
const APPEND_JSON_BYTES: usize = 12 * 1024;

/// `rows` as JSON arrays of log rows, in order, each at most [`APPEND_JSON_BYTES`] long
/// unless a single row is longer: all but the last, and the last (`[]` if there are no
/// rows).
fn json_chunks(rows: Vec<StoredRecord>) -> Result<(Vec<String>, String)> {
    let mut earlier = Vec::new();
    let mut chunk = String::from("[");
    for row in rows {
        let row = serde_json::to_string(&log_model(row).try_into_model()?)
            .map_err(|e| Error::internal(format!("a lifecycle row as JSON: {e}")))?;
        if chunk.len() > 1 && chunk.len() + row.len() + 2 > APPEND_JSON_BYTES {
            chunk.push(']');
            earlier.push(std::mem::replace(&mut chunk, String::from("[")));
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&row);
    }
    chunk.push(']');
    Ok((earlier, chunk))
}

/// PostgreSQL: the parameters of the statements that append chained rows, whichever
/// executor sends them (a request's SeaORM transaction, or the seal's own connection).
struct PostgresAppend {
    /// One chunk each for `postgres_append_sql(false)`, in order.
    earlier: Vec<String>,
    /// The parameters of `postgres_append_sql(true)`: the last chunk, the new head's stored
    /// value, the control row's name, the notification's channel and payload.
    last: [String; 5],
}

impl PostgresAppend {
    /// The append of `rows`, chained and ending at `head`.
    fn new(head: &ChainLink, rows: Vec<StoredRecord>) -> Result<Self> {
        let payload = notify_payload(&rows);
        let (earlier, last) = json_chunks(rows)?;
        Ok(Self {
            earlier,
            last: [
                last,
                head.stored(),
                HEAD_ROW.to_owned(),
                NOTIFY_CHANNEL.to_owned(),
                payload.to_owned(),
            ],
        })
    }
}

/// Splits `items` into runs whose lengths are powers of two, largest first, in order (13
/// items: 8, 4, 1). A multi-row statement's text depends on its row count, and each new text
/// is prepared anew on every pooled connection (a seal that prepared one took 12 ms at the
/// median against 1 ms for one whose statements were cached, under write load on
/// PostgreSQL); in runs, a seal's statements come in at most 11 shapes (1 to 1024 rows).
fn power_of_two_runs<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut runs = Vec::new();
    while !items.is_empty() {
        let len = 1 << items.len().ilog2();
        let rest = items.split_off(len);
        runs.push(std::mem::replace(&mut items, rest));
    }
    runs
}

/// Locks the log's control row until `txn` ends; its value, the newest record.
async fn lock_head(txn: &DatabaseTransaction) -> Result<ChainLink> {
    let head = service_meta::Entity::find_by_id(HEAD_ROW.to_owned())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| Error::internal("the lifecycle log's control row is missing"))?;
    ChainLink::parse(&head.value, HEAD_ROW)
}

/// What an append leaves for after its transaction commits.
#[must_use = "commit the transaction with Store::commit_logged"]
#[derive(Debug, Default)]
pub(super) struct Appended {
    /// Records wait in `lifecycle_pending` for a seal.
    pending: bool,
}

/// Runs `work` and returns its result, or an internal error if it panicked: a seal run that
/// panics must still end (else `running` stays set, no run starts again and every later
/// writer waits [`SEAL_WAIT`]). Its transaction ends with it (a held connection dropped
/// mid-use is closed).
async fn unwound_as_error<T>(
    work: impl std::future::Future<Output = Result<T>> + Send,
) -> Result<T> {
    super::batched_writes::caught(work)
        .await
        .unwrap_or_else(|| {
            Err(Error::internal(
                "the seal run ended abnormally: it panicked",
            ))
        })
}

/// How long a writer waits for the seal of its records before answering anyway.
const SEAL_WAIT: Duration = Duration::from_secs(5);
/// How often the sealer looks for records nobody waits for.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// Rows per seal transaction (bounds its size; on MariaDB its multi-row inserts stay far
/// below the 65,535 placeholders a statement may have).
const SEAL_BATCH: u64 = 1000;

/// The seal runs of one store (shared by its clones): `started` and `completed` count them;
/// `wanted` is the highest run a writer waits for.
#[derive(Debug)]
pub(super) struct Sealer {
    runs: std::sync::Mutex<SealRuns>,
    completed: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct SealRuns {
    started: u64,
    wanted: u64,
    running: bool,
    /// The latest run that has begun reading the queue (a writer that commits before
    /// then can ride that run).
    reading: u64,
}

impl SealRuns {
    /// A writer's ticket, the run whose end it waits for (see `Store::await_seal`), and
    /// whether the writer starts that run.
    fn ticket(&mut self) -> (u64, bool) {
        let ticket = if self.running && self.reading < self.started {
            self.started
        } else {
            self.started + 1
        };
        self.wanted = self.wanted.max(ticket);
        let start = !self.running;
        if start {
            self.running = true;
            self.started = ticket;
        }
        (ticket, start)
    }
}

impl Sealer {
    /// Notes that run `run` is about to read the queue.
    fn reading(&self, run: u64) {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.reading = runs.reading.max(run);
    }
}

impl Default for Sealer {
    fn default() -> Self {
        Self {
            runs: std::sync::Mutex::default(),
            completed: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A stored row, field for field.
fn stored_of(m: log::Model) -> StoredRecord {
    stored_row!(m {
        id: m.id,
        hash: m.hash
    })
}

/// A stored row as a record; `None` for an action this version does not know (written by a
/// newer one).
pub(super) fn record_of(m: log::Model) -> Option<LifecycleRecord> {
    stored_of(m).into_record()
}

/// Notifications that something was appended to the log (PostgreSQL `LISTEN`): store
/// machinery the domain's feed holds like the `Store` handle, waking with a domain `Wakeup`.
pub struct LogWakeups {
    listener: PgListener,
}

impl std::fmt::Debug for LogWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWakeups")
    }
}

impl LogWakeups {
    /// Waits for the next notification.
    pub async fn next(&mut self) -> Wakeup {
        match self.listener.try_recv().await {
            Ok(Some(notification)) if notification.payload() == "e" => Wakeup::Appended,
            Ok(Some(_)) => Wakeup::Revoked,
            Ok(None) | Err(_) => Wakeup::ConnectionLost,
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{IdenStatic, Iterable};

    use super::{APPEND_JSON_BYTES, SealRuns, StoredRecord, json_chunks, log, power_of_two_runs};

    #[test]
    fn rows_go_in_json_chunks_below_the_limit_in_order_and_a_long_row_alone() {
        let row = |id: i64, detail_bytes: usize| StoredRecord {
            id,
            action: "access_token.revoked".to_owned(),
            detail: format!("{{\"x\":\"{}\"}}", "a".repeat(detail_bytes)),
            ..StoredRecord::default()
        };
        let mut rows: Vec<StoredRecord> = (1..=100).map(|id| row(id, 300)).collect();
        rows.insert(50, row(1000, APPEND_JSON_BYTES));
        let (mut chunks, last) = json_chunks(rows).unwrap();
        chunks.push(last);
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        let mut ids = Vec::new();
        for chunk in &chunks {
            let parsed: Vec<serde_json::Value> = serde_json::from_str(chunk).unwrap();
            assert!(
                chunk.len() <= APPEND_JSON_BYTES || parsed.len() == 1,
                "{} bytes in {} rows",
                chunk.len(),
                parsed.len()
            );
            ids.extend(parsed.iter().map(|r| r["id"].as_i64().unwrap()));
            // Every column, named as the table's.
            let columns: Vec<&str> = log::Column::iter().map(|c| c.as_str()).collect();
            let keys: Vec<&str> = parsed[0]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            assert_eq!(keys.len(), columns.len());
            assert!(columns.iter().all(|c| keys.contains(c)), "{keys:?}");
            assert_eq!(parsed[0]["action"], "access_token.revoked");
        }
        let mut expected: Vec<i64> = (1..=100).collect();
        expected.insert(50, 1000);
        assert_eq!(ids, expected, "every row once, in order");
        assert_eq!(
            json_chunks(Vec::new()).unwrap(),
            (Vec::new(), "[]".to_owned())
        );
    }

    #[tokio::test]
    async fn a_seal_run_that_panics_ends_with_an_error() {
        let panicked = super::unwound_as_error(async {
            if std::hint::black_box(true) {
                panic!("a bug in a seal");
            }
            Ok(1)
        })
        .await;
        let message = format!("{:?}", panicked.unwrap_err());
        assert!(message.contains("ended abnormally"), "{message}");
        assert_eq!(super::unwound_as_error(async { Ok(2) }).await.unwrap(), 2);
    }

    #[test]
    fn a_writer_rides_the_run_going_until_it_reads_the_queue_then_the_next() {
        let mut runs = SealRuns::default();
        assert_eq!(
            runs.ticket(),
            (1, true),
            "none going: the writer starts run 1"
        );
        assert_eq!(runs.ticket(), (1, false), "run 1 has not read: ride it");
        runs.reading = 1;
        assert_eq!(runs.ticket(), (2, false), "run 1 has read: wait for run 2");
        assert_eq!(runs.ticket(), (2, false));
        assert_eq!(runs.wanted, 2, "run 1's end starts run 2");
        // Run 2 starts (as `run_seals` does once run 1 completes) and has not read yet.
        runs.started = 2;
        assert_eq!(runs.ticket(), (2, false));
        runs.reading = 2;
        runs.running = false;
        assert_eq!(runs.ticket(), (3, true), "none going again: start run 3");
    }

    #[test]
    fn runs_are_powers_of_two_largest_first_in_order() {
        let lengths = |n: usize| -> Vec<usize> {
            let runs = power_of_two_runs((0..n).collect::<Vec<_>>());
            assert_eq!(
                runs.concat(),
                (0..n).collect::<Vec<_>>(),
                "order kept for {n}"
            );
            runs.iter().map(Vec::len).collect()
        };
        assert_eq!(lengths(0), Vec::<usize>::new());
        assert_eq!(lengths(1), [1]);
        assert_eq!(lengths(13), [8, 4, 1]);
        assert_eq!(lengths(64), [64]);
        assert_eq!(lengths(1000), [512, 256, 128, 64, 32, 8]);
    }
}
