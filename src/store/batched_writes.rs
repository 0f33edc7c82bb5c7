//! Group commit of the hottest one-statement changes on PostgreSQL: creating a token, and a
//! user revoking their own. Each is one statement (the change and its queued lifecycle
//! record; see [`Store::insert_access_token`] and [`Store::change_access_token`]), and under
//! load most of what the database spends on it is per statement, not per row: its round
//! trip, executor start, trigger set-up and commit. Changes of one kind that arrive while
//! others are being written therefore share the next statement: up to [`IN_FLIGHT`]
//! statements of a kind run at once, each taking every change waiting when it starts (at
//! most [`BATCH_JSON_BYTES`] of it), as a JSON parameter of one fixed statement, prepared
//! once per connection. A change alone is written at once, as before.
//!
//! A batch is one statement, so it commits whole or not at all. When the database refuses
//! it (a row breaks a constraint: a token's owner was deleted meanwhile, say), nothing of it
//! was written and each of its changes is sent again on its own, so only the one at fault
//! fails. When the connection fails instead, whether the batch committed is unknown, and
//! every change in it gets that error, as a single statement's writer would.
//!
//! [`Store::insert_access_token`]: super::Store::insert_access_token
//! [`Store::change_access_token`]: super::Store::change_access_token

use std::future::Future;
use std::sync::{Arc, Mutex};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityName, IdenStatic, Iterable,
    RuntimeErr, Statement,
};
use tokio::sync::oneshot;
use tracing::warn;

use super::entities::{lifecycle_pending as pending, user_access_tokens as tokens};
use super::error::means_connection_lost;
use crate::domain::error::{Error, Result};

/// How many batch statements of a kind may run at once (each on a pooled connection).
const IN_FLIGHT: usize = 4;

/// The most JSON one batch carries: below one TLS record (16 KiB), since the driver does
/// not set `TCP_NODELAY` (see the seal's `APPEND_JSON_BYTES`). A creation is about 800
/// bytes, so a batch holds about 15.
const BATCH_JSON_BYTES: usize = 12 * 1024;

/// A kind of change that concurrent writers batch.
pub(super) trait BatchedWrite: Send + Sync + 'static {
    /// What one writer hands over.
    type Change: Send + 'static;
    /// `change`'s length in the statement (its JSON).
    fn len(change: &Self::Change) -> usize;
    /// Writes `changes` as one statement; whether each changed something, in order.
    fn write(
        db: &DatabaseConnection,
        changes: &[Self::Change],
    ) -> impl Future<Output = std::result::Result<Vec<bool>, DbErr>> + Send;
}

/// What became of a change handed to [`Batches::write`].
pub(super) enum Batched {
    /// Written; whether it changed something (a deletion finds nothing to delete).
    Written(bool),
    /// Not written: the database refused its batch. The caller writes it on its own.
    Alone,
}

/// The changes of one kind waiting for a statement, and how many statements run.
pub(super) struct Batches<W: BatchedWrite> {
    queue: BatchQueue<(W::Change, oneshot::Sender<Outcome>)>,
}

impl<W: BatchedWrite> std::fmt::Debug for Batches<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.queue.fmt(f)
    }
}

impl<W: BatchedWrite> Default for Batches<W> {
    fn default() -> Self {
        Self {
            queue: BatchQueue::default(),
        }
    }
}

/// What waits for a batch, and how many runners take batches: shared by the batched
/// writes and the token check's batched reads (`credentials::CredentialLookups`).
pub(super) struct BatchQueue<T> {
    state: Mutex<(Vec<T>, usize)>,
}

impl<T> Default for BatchQueue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new((Vec::new(), 0)),
        }
    }
}

impl<T> std::fmt::Debug for BatchQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("BatchQueue")
            .field("waiting", &state.0.len())
            .field("running", &state.1)
            .finish()
    }
}

impl<T> BatchQueue<T> {
    /// Queues `item`; true if the caller must start a runner (fewer than `runners` run,
    /// and this one is now counted).
    pub(super) fn push(&self, item: T, runners: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.push(item);
        let start = state.1 < runners;
        if start {
            state.1 += 1;
        }
        start
    }

    /// A runner's next batch, picked from the waiting items by `take`; `None` when nothing
    /// waits, and the runner, no longer counted, must end.
    pub(super) fn next(&self, take: impl FnOnce(&mut Vec<T>) -> Vec<T>) -> Option<Vec<T>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0.is_empty() {
            state.1 -= 1;
            return None;
        }
        Some(take(&mut state.0))
    }
}

/// A batch's answer to each of its writers.
enum Outcome {
    Written(bool),
    Alone,
    Failed(DbErr),
}

impl<W: BatchedWrite> Batches<W> {
    /// Writes `change` in the next batch statement on `db` (started now if fewer than
    /// [`IN_FLIGHT`] run). The statements run in tasks of their own, so a caller that gives
    /// up waiting does not cut short the changes that share its statement.
    pub(super) async fn write(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        change: W::Change,
    ) -> Result<Batched> {
        let (answer, outcome) = oneshot::channel();
        if self.queue.push((change, answer), IN_FLIGHT) {
            tokio::spawn(self.clone().run(db.clone()));
        }
        match outcome.await {
            Ok(Outcome::Written(changed)) => Ok(Batched::Written(changed)),
            Ok(Outcome::Alone) => Ok(Batched::Alone),
            Ok(Outcome::Failed(e)) => Err(e.into()),
            Err(_) => Err(Error::internal("a batched change ended without an answer")),
        }
    }

    /// Writes batches while changes wait.
    async fn run(self: Arc<Self>, db: DatabaseConnection) {
        while let Some(batch) = self.queue.next(|waiting| take_batch(waiting, W::len)) {
            let (changes, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let Some(written) = caught(W::write(&db, &changes)).await else {
                // Its writers learn that their batch ended without an answer.
                warn!(changes = changes.len(), "a batch of changes panicked");
                continue;
            };
            if let Err(e) = &written
                && refused(e)
                && changes.len() > 1
            {
                // Each change is sent again on its own; the one at fault fails there.
                warn!(error = %e, changes = changes.len(), "a batch of changes was refused");
            }
            for (i, answer) in answers.into_iter().enumerate() {
                let _ = answer.send(match &written {
                    Ok(changed) => Outcome::Written(changed.get(i).copied().unwrap_or(false)),
                    Err(e) if refused(e) => Outcome::Alone,
                    Err(e) => Outcome::Failed(e.clone()),
                });
            }
        }
    }
}

/// `work`'s output, or `None` if it panicked: a batch's runner outlives a bug in one batch
/// (whose callers then learn that it ended without an answer) instead of leaving its place
/// among the statements in flight taken for good.
pub(super) async fn caught<T>(work: impl Future<Output = T> + Send) -> Option<T> {
    struct CatchUnwind<'a, T>(std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>);
    impl<T> Future for CatchUnwind<'_, T> {
        type Output = Option<T>;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            let polled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.as_mut().poll(cx)));
            match polled {
                Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Some(output)),
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Err(_) => std::task::Poll::Ready(None),
            }
        }
    }
    CatchUnwind(Box::pin(work)).await
}

/// The oldest waiting changes that fit [`BATCH_JSON_BYTES`] (at least one).
fn take_batch<C, T>(waiting: &mut Vec<(C, T)>, len: fn(&C) -> usize) -> Vec<(C, T)> {
    let mut bytes = 0;
    let fit = waiting
        .iter()
        .take_while(|(change, _)| {
            bytes += len(change) + 1;
            bytes <= BATCH_JSON_BYTES
        })
        .count()
        .max(1);
    let rest = waiting.split_off(fit);
    std::mem::replace(waiting, rest)
}

/// Whether the database refused the rows of `e`'s statement (it was rolled back whole):
/// the database answered, the connection did not fail (then the statement may have
/// committed), and the statement itself is sound (class 42, a syntax error or an unknown
/// column, is a bug that sending each change alone would hide; its writers get the error).
fn refused(e: &DbErr) -> bool {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            match inner.as_ref() {
                sea_orm::sqlx::Error::Database(db) => {
                    !means_connection_lost(inner)
                        && !db.code().is_some_and(|code| code.starts_with("42"))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// `items` as one JSON array.
fn json_array<T>(items: &[T], json: impl Fn(&T) -> &str) -> String {
    let mut array = String::with_capacity(BATCH_JSON_BYTES);
    array.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(json(item));
    }
    array.push(']');
    array
}

/// The columns of the queue of lifecycle records a statement inserts (all but `seq`,
/// numbered by its identity), quoted, with `prefix` (a table alias and a dot, or nothing).
fn queue_columns(prefix: &str) -> String {
    pending::Column::iter()
        .filter(|c| !matches!(c, pending::Column::Seq))
        .map(|c| format!("{prefix}\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token creation: its token row and its record, each a JSON object keyed by column name.
pub(super) struct TokenCreation {
    pub(super) token: String,
    pub(super) record: String,
}

/// Token creations ([`TokenCreation`]); every one writes.
pub(super) struct TokenCreations;

impl BatchedWrite for TokenCreations {
    type Change = TokenCreation;

    fn len(change: &TokenCreation) -> usize {
        change.token.len() + change.record.len() + 2
    }

    async fn write(
        db: &DatabaseConnection,
        changes: &[TokenCreation],
    ) -> std::result::Result<Vec<bool>, DbErr> {
        let tokens = json_array(changes, |c| &c.token);
        let records = json_array(changes, |c| &c.record);
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            creations_sql(),
            [tokens.into(), records.into()],
        ))
        .await?;
        Ok(vec![true; changes.len()])
    }
}

/// The creations' statement: `$1`, a JSON array of token rows; `$2`, a JSON array of their
/// records. Both tables' columns are the entities'. A data-modifying `WITH` runs whole
/// although nothing reads it, and the statement is atomic.
pub(super) fn creations_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let token_columns = tokens::Column::iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let record_columns = queue_columns("");
        let token_table = tokens::Entity.table_name();
        let record_table = pending::Entity.table_name();
        format!(
            "WITH inserted AS (INSERT INTO {token_table} ({token_columns}) \
             SELECT {token_columns} FROM json_populate_recordset(NULL::{token_table}, $1::json)) \
             INSERT INTO {record_table} ({record_columns}) \
             SELECT {record_columns} FROM json_populate_recordset(NULL::{record_table}, $2::json)"
        )
    })
}

/// A token deletion by its owner: a JSON object with the token's `id`, its owner's
/// `user_id` and the deletion's `record`.
pub(super) struct TokenDeletion(String);

impl TokenDeletion {
    /// The deletion of token `id` if `owner`'s, recorded by `record` (a JSON object keyed
    /// by column name).
    pub(super) fn new(id: &str, owner: &str, record: &str) -> Self {
        let (id, owner) = (serde_json::Value::from(id), serde_json::Value::from(owner));
        Self(format!(
            "{{\"id\":{id},\"user_id\":{owner},\"record\":{record}}}"
        ))
    }
}

/// Deletions of tokens by id and owner ([`TokenDeletion`]), with the sessions minted from
/// them (their foreign key cascades); each changes something if the owner's token existed.
pub(super) struct TokenDeletions;

impl BatchedWrite for TokenDeletions {
    type Change = TokenDeletion;

    fn len(change: &TokenDeletion) -> usize {
        change.0.len()
    }

    async fn write(
        db: &DatabaseConnection,
        changes: &[TokenDeletion],
    ) -> std::result::Result<Vec<bool>, DbErr> {
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                deletions_sql(),
                [json_array(changes, |c| &c.0).into()],
            ))
            .await?;
        let mut deleted = vec![false; changes.len()];
        for row in rows {
            let n: i64 = row.try_get_by_index(0)?;
            if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| deleted.get_mut(i)) {
                *slot = true;
            }
        }
        Ok(deleted)
    }
}

/// The deletions' statement: `$1`, a JSON array of `{id, user_id, record}`; returns the
/// (1-based) positions of those that deleted a token, whose records it queues. Of two
/// deletions of one token by one owner in a batch only the first deletes it, as one after
/// the other would.
pub(super) fn deletions_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let token_table = tokens::Entity.table_name();
        let record_table = pending::Entity.table_name();
        let columns = queue_columns("");
        let from_record = queue_columns("r.");
        format!(
            "WITH asked AS (SELECT DISTINCT ON (a.x->>'id', a.x->>'user_id') a.n, a.x->>'id' AS id, \
             a.x->>'user_id' AS user_id, a.x->'record' AS record \
             FROM json_array_elements($1::json) WITH ORDINALITY AS a(x, n) \
             ORDER BY a.x->>'id', a.x->>'user_id', a.n), \
             deleted AS (DELETE FROM {token_table} t USING asked \
             WHERE t.id = asked.id AND t.user_id = asked.user_id RETURNING asked.n, asked.record), \
             queued AS (INSERT INTO {record_table} ({columns}) SELECT {from_record} \
             FROM (SELECT * FROM deleted ORDER BY n) d, \
             json_populate_record(NULL::{record_table}, d.record) r) \
             SELECT n FROM deleted"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{BATCH_JSON_BYTES, caught, take_batch};

    #[tokio::test]
    async fn a_batch_that_panics_is_caught_and_others_are_not_touched() {
        let panicked = caught(async {
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("a bug in a batch");
            }
            1
        })
        .await;
        assert_eq!(panicked, None);
        assert_eq!(caught(async { 2 }).await, Some(2));
    }

    #[test]
    fn a_batch_takes_the_oldest_that_fit_and_at_least_one() {
        let len = |bytes: &usize| *bytes;
        let mut waiting: Vec<(usize, ())> = (0..40).map(|_| (1000, ())).collect();
        let batch = take_batch(&mut waiting, len);
        let bytes: usize = batch.iter().map(|(b, _)| b + 1).sum();
        assert!(bytes <= BATCH_JSON_BYTES, "{bytes}");
        assert_eq!(batch.len(), BATCH_JSON_BYTES / 1001);
        assert_eq!(waiting.len(), 40 - batch.len());
        let mut huge = vec![(BATCH_JSON_BYTES * 2, ()), (10, ())];
        assert_eq!(take_batch(&mut huge, len).len(), 1, "a long one goes alone");
        assert_eq!(huge.len(), 1);
    }
}
