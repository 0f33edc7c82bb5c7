//! Group commit of token creations on PostgreSQL. A creation is one statement (the token's
//! row and its queued lifecycle record; see [`Store::insert_access_token`]), and under load
//! most of what the database spends on it is per statement, not per row: its round trip,
//! executor start, foreign-key trigger set-up and commit. Creations that arrive while
//! others are being written therefore share the next statement: up to [`IN_FLIGHT`]
//! statements run at once, each taking every creation waiting when it starts (at most
//! [`BATCH_JSON_BYTES`] of rows), as JSON parameters of one fixed statement, prepared once
//! per connection. One creation alone is written at once, as before.
//!
//! A batch is one statement, so it commits whole or not at all. When the database refuses
//! it (a row breaks a constraint: its owner was deleted meanwhile, say), nothing of it was
//! written and each of its creations is sent again on its own, so only the one at fault
//! fails. When the connection fails instead, whether the batch committed is unknown, and
//! every creation in it gets that error, as a single statement's writer would.

use std::sync::{Arc, Mutex};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityName, IdenStatic, Iterable,
    RuntimeErr, Statement,
};
use tokio::sync::oneshot;

use super::entities::{lifecycle_pending as pending, user_access_tokens as tokens};
use super::error::means_connection_lost;
use crate::domain::error::{Error, Result};

/// How many batch statements may run at once (each on a pooled connection of its own).
const IN_FLIGHT: usize = 4;

/// The most JSON (token rows and records together) one batch carries: below one TLS record
/// (16 KiB), since the driver does not set `TCP_NODELAY` (see the seal's
/// `APPEND_JSON_BYTES`). A creation is about 800 bytes, so a batch holds about 15.
const BATCH_JSON_BYTES: usize = 12 * 1024;

/// One creation: its token row and its record, each a JSON object keyed by column name.
pub(super) struct TokenInsert {
    pub(super) token: String,
    pub(super) record: String,
}

impl TokenInsert {
    fn len(&self) -> usize {
        self.token.len() + self.record.len() + 2
    }
}

/// What became of a creation handed to [`TokenInserts::insert`].
pub(super) enum Inserted {
    /// Written, with its record queued for the seal.
    Done,
    /// Not written: the database refused its batch. The caller writes it on its own.
    Alone,
}

/// The creations waiting for a statement, and how many statements run.
#[derive(Default)]
pub(super) struct TokenInserts {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for TokenInserts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("TokenInserts")
            .field("waiting", &queue.waiting.len())
            .field("running", &queue.running)
            .finish()
    }
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(TokenInsert, oneshot::Sender<Outcome>)>,
    running: usize,
}

/// A batch's answer to each of its creations.
enum Outcome {
    Done,
    Alone,
    Failed(DbErr),
}

impl TokenInserts {
    /// Writes `insert` in the next batch statement on `db` (started now if fewer than
    /// [`IN_FLIGHT`] run). The statements run in tasks of their own, so a caller that gives
    /// up waiting does not cut short the creations that share its statement.
    pub(super) async fn insert(
        self: &Arc<Self>,
        db: &DatabaseConnection,
        insert: TokenInsert,
    ) -> Result<Inserted> {
        let (answer, outcome) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push((insert, answer));
            let start = queue.running < IN_FLIGHT;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            tokio::spawn(self.clone().run(db.clone()));
        }
        match outcome.await {
            Ok(Outcome::Done) => Ok(Inserted::Done),
            Ok(Outcome::Alone) => Ok(Inserted::Alone),
            Ok(Outcome::Failed(e)) => Err(e.into()),
            Err(_) => Err(Error::internal(
                "the token creation's batch ended without an answer",
            )),
        }
    }

    /// Writes batches while creations wait.
    async fn run(self: Arc<Self>, db: DatabaseConnection) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    return;
                }
                take_batch(&mut queue.waiting)
            };
            let (inserts, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let outcome = write_batch(&db, &inserts).await;
            for answer in answers {
                let _ = answer.send(match &outcome {
                    Ok(()) => Outcome::Done,
                    Err(e) if refused(e) => Outcome::Alone,
                    Err(e) => Outcome::Failed(e.clone()),
                });
            }
        }
    }
}

/// The oldest waiting creations that fit [`BATCH_JSON_BYTES`] (at least one).
fn take_batch<T: Sized>(waiting: &mut Vec<(TokenInsert, T)>) -> Vec<(TokenInsert, T)> {
    let mut bytes = 0;
    let fit = waiting
        .iter()
        .take_while(|(insert, _)| {
            bytes += insert.len();
            bytes <= BATCH_JSON_BYTES
        })
        .count()
        .max(1);
    let rest = waiting.split_off(fit);
    std::mem::replace(waiting, rest)
}

/// Whether the database answered `e` (the statement was rolled back whole) rather than the
/// connection failing (the statement may have committed).
fn refused(e: &DbErr) -> bool {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(inner)) => {
            matches!(inner.as_ref(), sea_orm::sqlx::Error::Database(_))
                && !means_connection_lost(inner)
        }
        _ => false,
    }
}

/// Inserts `inserts` (token rows and their records) as one statement.
async fn write_batch(db: &DatabaseConnection, inserts: &[TokenInsert]) -> Result<(), DbErr> {
    let json_array = |field: fn(&TokenInsert) -> &str| {
        let mut array = String::with_capacity(BATCH_JSON_BYTES);
        array.push('[');
        for (i, insert) in inserts.iter().enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(field(insert));
        }
        array.push(']');
        array
    };
    let tokens = json_array(|insert| &insert.token);
    let records = json_array(|insert| &insert.record);
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        batch_sql(),
        [tokens.into(), records.into()],
    ))
    .await?;
    Ok(())
}

/// The batch statement: `$1`, a JSON array of token rows; `$2`, a JSON array of their
/// records (the queue's `seq` left to its identity). Both tables' columns are the entities'.
/// A data-modifying `WITH` runs whole even though nothing reads it, and the statement is
/// atomic.
pub(super) fn batch_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let list = |columns: Vec<&str>| {
            columns
                .iter()
                .map(|column| format!("\"{column}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let token_columns = list(tokens::Column::iter().map(|c| c.as_str()).collect());
        let record_columns = list(
            pending::Column::iter()
                .filter(|c| !matches!(c, pending::Column::Seq))
                .map(|c| c.as_str())
                .collect(),
        );
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

#[cfg(test)]
mod tests {
    use super::{BATCH_JSON_BYTES, TokenInsert, take_batch};

    fn insert(bytes: usize) -> (TokenInsert, usize) {
        let insert = TokenInsert {
            token: "t".repeat(bytes / 2),
            record: "r".repeat(bytes / 2),
        };
        (insert, bytes)
    }

    #[test]
    fn a_batch_takes_the_oldest_that_fit_and_at_least_one() {
        let mut waiting: Vec<_> = (0..40).map(|_| insert(1000)).collect();
        let batch = take_batch(&mut waiting);
        let bytes: usize = batch.iter().map(|(i, _)| i.len()).sum();
        assert!(bytes <= BATCH_JSON_BYTES, "{bytes}");
        assert_eq!(batch.len(), BATCH_JSON_BYTES / 1002);
        assert_eq!(waiting.len(), 40 - batch.len());
        let mut huge = vec![insert(BATCH_JSON_BYTES * 2), insert(10)];
        assert_eq!(take_batch(&mut huge).len(), 1, "a long one goes alone");
        assert_eq!(huge.len(), 1);
    }
}
