//! The revocation log.
//!
//! An event is appended inside the transaction that makes the change it describes, so a
//! revocation is either committed together with its event or not at all. Appends first lock
//! the log's control row in `service_meta`, so ids are handed out in commit order: a reader
//! that has seen event N has seen every event below N, and resuming "after N" is exact. On
//! PostgreSQL the append also queues a `NOTIFY`, delivered when the transaction commits.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::Expr,
    sqlx::postgres::PgListener,
};

use super::{
    Store,
    entities::{revocation_events as events, service_meta},
};
use crate::domain::model::Wakeup;
use crate::domain::{
    error::{Error, Result},
    model::{Revocation, RevocationEvent, UnixMillis},
};

/// The `service_meta` row that serialises appends; its value is the highest event id pruned.
const LOG_ROW: &str = "revocation_log";

/// The PostgreSQL notification channel of the revocation log.
const NOTIFY_CHANNEL: &str = "token_service_revocations";

/// Appends `revocation`, made at `now`, to the log inside `txn`; returns its event id.
pub(super) async fn append_revocation(
    txn: &DatabaseTransaction,
    revocation: &Revocation,
    now: UnixMillis,
) -> Result<i64> {
    lock_log(txn).await?;
    let row = events::ActiveModel {
        id: NotSet,
        kind: Set(revocation.kind().to_owned()),
        subject_id: Set(revocation.subject_id().to_owned()),
        create_at: Set(now),
    }
    .insert(txn)
    .await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        // Queued now, delivered to every listening replica when the transaction commits.
        txn.execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
            .await?;
    }
    Ok(row.id)
}

/// Locks the log's control row until `txn` ends (a row lock on PostgreSQL and MariaDB; on
/// SQLite the write transaction already excludes every other writer).
async fn lock_log(txn: &DatabaseTransaction) -> Result<()> {
    service_meta::Entity::update_many()
        .col_expr(
            service_meta::Column::Value,
            Expr::col(service_meta::Column::Value),
        )
        .filter(service_meta::Column::Name.eq(LOG_ROW))
        .exec(txn)
        .await?;
    Ok(())
}

impl Store {
    /// On PostgreSQL, a listener on its own connection (not one of the pool's) that wakes
    /// when any replica appends a revocation; `None` on other backends (their feed polls).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn revocation_wakeups(
        &self,
        connect_timeout: Duration,
    ) -> Result<Option<RevocationWakeups>> {
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
        Ok(Some(RevocationWakeups { listener }))
    }

    /// Events after `after`, oldest first, at most `limit`.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn revocations_after(&self, after: i64, limit: u64) -> Result<Vec<RevocationEvent>> {
        let rows = events::Entity::find()
            .filter(events::Column::Id.gt(after))
            .order_by_asc(events::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| RevocationEvent {
                id: row.id,
                // A kind written by a newer version: drop everything, to be safe.
                revocation: Revocation::from_stored(&row.kind, row.subject_id)
                    .unwrap_or(Revocation::All),
                create_at: row.create_at,
            })
            .collect())
    }

    /// The newest event id, or 0 when the log is empty.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn latest_revocation_id(&self) -> Result<i64> {
        let newest = events::Entity::find()
            .order_by_desc(events::Column::Id)
            .one(&self.db)
            .await?;
        Ok(newest.map_or(0, |row| row.id))
    }

    /// The highest event id deleted by pruning (0 when nothing was pruned): resuming from a
    /// position below it would miss events.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn pruned_revocations_through(&self) -> Result<i64> {
        let row = service_meta::Entity::find_by_id(LOG_ROW.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("the revocation log's control row is missing"))?;
        row.value
            .parse()
            .map_err(|_| Error::internal("the revocation log's control row is unreadable"))
    }

    /// Deletes events older than `before` and records the highest id deleted; returns how
    /// many were deleted.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn prune_revocations(&self, before: UnixMillis) -> Result<u64> {
        let txn = self.begin_write().await?;
        lock_log(&txn).await?;
        let newest_pruned: Option<i64> = events::Entity::find()
            .select_only()
            .column_as(events::Column::Id.max(), "max_id")
            .filter(events::Column::CreateAt.lt(before))
            .into_tuple::<Option<i64>>()
            .one(&txn)
            .await?
            .flatten();
        let Some(newest_pruned) = newest_pruned else {
            return Ok(0);
        };
        let deleted = events::Entity::delete_many()
            .filter(events::Column::Id.lte(newest_pruned))
            .exec(&txn)
            .await?;
        service_meta::Entity::update_many()
            .col_expr(
                service_meta::Column::Value,
                Expr::value(newest_pruned.to_string()),
            )
            .filter(service_meta::Column::Name.eq(LOG_ROW))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }
}

/// Notifications that a revocation was appended (PostgreSQL `LISTEN`): store machinery the
/// domain's feed holds like the `Store` handle, waking with a domain `Wakeup`.
pub struct RevocationWakeups {
    listener: PgListener,
}

impl std::fmt::Debug for RevocationWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationWakeups")
    }
}

impl RevocationWakeups {
    /// Waits for the next notification.
    pub async fn next(&mut self) -> Wakeup {
        match self.listener.try_recv().await {
            Ok(Some(_)) => Wakeup::Notified,
            Ok(None) | Err(_) => Wakeup::ConnectionLost,
        }
    }
}
