//! The revocation log.

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::{Store, db_err, entities::revocation_events as events};
use crate::domain::{
    error::{Error, Result},
    model::{Revocation, RevocationEvent, UnixMillis},
};
use sea_orm::{ConnectionTrait, DbBackend, sqlx::postgres::PgListener};

impl Store {
    /// Appends a revocation to the log and returns its event id.
    pub async fn append_revocation(&self, revocation: &Revocation, now: UnixMillis) -> Result<i64> {
        let row = events::ActiveModel {
            id: NotSet,
            kind: Set(revocation.kind().to_owned()),
            subject_id: Set(revocation.subject_id().to_owned()),
            create_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(db_err)?;
        if self.db.get_database_backend() == DbBackend::Postgres {
            // Wakes every replica's feed at once; polling stays as the fallback.
            self.db
                .execute_unprepared(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .await
                .map_err(db_err)?;
        }
        Ok(row.id)
    }

    /// On PostgreSQL, a listener that wakes when any replica appends a revocation; `None`
    /// on other backends (their feed polls).
    pub async fn revocation_wakeups(&self) -> Result<Option<RevocationWakeups>> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let pool = self.db.get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        listener
            .listen(NOTIFY_CHANNEL)
            .await
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        Ok(Some(RevocationWakeups { listener }))
    }

    /// Events after `after`, oldest first, at most `limit`.
    pub async fn revocations_after(&self, after: i64, limit: u64) -> Result<Vec<RevocationEvent>> {
        let rows = events::Entity::find()
            .filter(events::Column::Id.gt(after))
            .order_by_asc(events::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err)?;
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
    pub async fn latest_revocation_id(&self) -> Result<i64> {
        let newest = events::Entity::find()
            .order_by_desc(events::Column::Id)
            .one(&self.db)
            .await
            .map_err(db_err)?;
        Ok(newest.map_or(0, |row| row.id))
    }

    /// Deletes events older than `before`; returns how many.
    pub async fn prune_revocations(&self, before: UnixMillis) -> Result<u64> {
        let result = events::Entity::delete_many()
            .filter(events::Column::CreateAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(result.rows_affected)
    }
}

/// The PostgreSQL notification channel of the revocation log.
const NOTIFY_CHANNEL: &str = "token_service_revocations";

/// Notifications that a revocation was appended (PostgreSQL `LISTEN`).
pub struct RevocationWakeups {
    listener: PgListener,
}

impl std::fmt::Debug for RevocationWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RevocationWakeups")
    }
}

/// What woke the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// A revocation was appended somewhere.
    Notified,
    /// The notification connection broke; notifications may have been missed.
    ConnectionLost,
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
