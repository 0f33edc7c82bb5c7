//! Sessions: insert under the per-user cap, look up, list, touch, and delete, each delete
//! with its lifecycle record in the same transaction.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};

use super::entities::{sessions, users};
use super::{
    Store,
    error::{is_foreign_key_violation, is_unique_violation},
    join_roles, split_roles,
};
use crate::domain::{
    error::{Error, Result},
    ids::{SessionId, TokenId, UserId},
    lifecycle::NewRecord,
    model::{Session, SessionInsert, UnixMillis},
    secret::TokenDigest,
};

impl TryFrom<sessions::Model> for Session {
    type Error = Error;

    fn try_from(m: sessions::Model) -> Result<Self> {
        let props: BTreeMap<String, String> = serde_json::from_str(&m.props)
            .map_err(|e| Error::internal(format!("session {} has unreadable props: {e}", m.id)))?;
        Ok(Session {
            id: SessionId::from_trusted(m.id),
            user_id: UserId::from_trusted(m.user_id),
            user_access_token_id: m.user_access_token_id.map(TokenId::from_trusted),
            create_at: m.create_at,
            expires_at: m.expires_at,
            last_activity_at: m.last_activity_at,
            length_ms: m.length_ms,
            device_id: m.device_id,
            roles: split_roles(&m.roles),
            is_oauth: m.is_oauth,
            expired_notify: m.expired_notify,
            props,
        })
    }
}

impl Store {
    /// A session by the digest of its token, with the stored digest.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_session_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(Session, TokenDigest)>> {
        let Some(m) = sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(digest.as_str()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let stored = TokenDigest::from_stored(m.token_hash.clone());
        Ok(Some((Session::try_from(m)?, stored)))
    }

    /// Stores a session under the digest of its token and appends `created`, first revoking
    /// the owner's least recently active sessions beyond `keep` others (appending `on_trim`
    /// if any were), at the session's creation time. One
    /// transaction that starts by locking the owner's row, so concurrent logins of one user
    /// cannot overshoot or undershoot the cap. Returns the outcome and how many sessions
    /// were revoked to make room.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn insert_session_within_cap(
        &self,
        session: &Session,
        digest: &TokenDigest,
        keep: u64,
        on_trim: &NewRecord,
        created: &NewRecord,
    ) -> Result<(SessionInsert, u64)> {
        let props = serde_json::to_string(&session.props)
            .map_err(|e| Error::internal(format!("cannot encode session props: {e}")))?;
        let row = sessions::ActiveModel {
            id: Set(session.id.to_string()),
            token_hash: Set(digest.as_str().to_owned()),
            user_id: Set(session.user_id.to_string()),
            user_access_token_id: Set(session
                .user_access_token_id
                .as_ref()
                .map(ToString::to_string)),
            create_at: Set(session.create_at),
            expires_at: Set(session.expires_at),
            last_activity_at: Set(session.last_activity_at),
            length_ms: Set(session.length_ms),
            device_id: Set(session.device_id.clone()),
            roles: Set(join_roles(&session.roles)),
            is_oauth: Set(session.is_oauth),
            expired_notify: Set(session.expired_notify),
            props: Set(props),
        };
        let txn = self.begin_write().await?;
        // A write to the owner's row: a row lock on PostgreSQL and MariaDB, the write lock on
        // SQLite. Concurrent inserts for the same user queue here.
        users::Entity::update_many()
            .col_expr(users::Column::UpdateAt, Expr::col(users::Column::UpdateAt))
            .filter(users::Column::Id.eq(session.user_id.as_str()))
            .exec(&txn)
            .await?;
        let trimmed = trim_sessions(&txn, &session.user_id, keep).await?;
        match sessions::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => {
                let records = if trimmed > 0 {
                    vec![on_trim.clone(), created.clone()]
                } else {
                    vec![created.clone()]
                };
                let appended = self
                    .append_to_log(&txn, &records, session.create_at)
                    .await?;
                self.commit_logged(txn, appended).await?;
                Ok((SessionInsert::Inserted, trimmed))
            }
            Err(e) => {
                let outcome = if is_unique_violation(&e) {
                    SessionInsert::DigestTaken
                } else if is_foreign_key_violation(&e) {
                    SessionInsert::OwnerGone
                } else {
                    return Err(e.into());
                };
                txn.rollback().await?;
                Ok((outcome, 0))
            }
        }
    }
}

/// Revokes a user's least recently active sessions beyond `keep`; returns how many.
async fn trim_sessions(db: &impl ConnectionTrait, user_id: &UserId, keep: u64) -> Result<u64> {
    let count = sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(user_id.as_str()))
        .count(db)
        .await?;
    if count <= keep {
        return Ok(0);
    }
    let oldest: Vec<String> = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .filter(sessions::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(sessions::Column::LastActivityAt)
        .order_by_asc(sessions::Column::Id)
        .limit(count - keep)
        .into_tuple()
        .all(db)
        .await?;
    let deleted = sessions::Entity::delete_many()
        .filter(sessions::Column::Id.is_in(oldest))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

impl Store {
    /// A user's sessions, most recently active first.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn list_sessions_for_user(&self, user_id: &UserId) -> Result<Vec<Session>> {
        sessions::Entity::find()
            .filter(sessions::Column::UserId.eq(user_id.as_str()))
            .order_by_desc(sessions::Column::LastActivityAt)
            .order_by_asc(sessions::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Session::try_from)
            .collect()
    }

    /// A session by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_session(&self, id: &SessionId) -> Result<Option<Session>> {
        sessions::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(Session::try_from)
            .transpose()
    }

    /// A session by id, or by the digest of its token (Mattermost accepts either).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_session_by_id_or_digest(
        &self,
        id: &str,
        digest: &TokenDigest,
    ) -> Result<Option<Session>> {
        sessions::Entity::find()
            .filter(
                Condition::any()
                    .add(sessions::Column::Id.eq(id))
                    .add(sessions::Column::TokenHash.eq(digest.as_str())),
            )
            .one(&self.db)
            .await?
            .map(Session::try_from)
            .transpose()
    }

    /// Deletes one session and appends `record` (made at `now`), in one transaction;
    /// returns whether it existed.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_session(
        &self,
        id: &SessionId,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<bool> {
        self.delete_sessions(
            sessions::Entity::delete_many().filter(sessions::Column::Id.eq(id.as_str())),
            now,
            record,
        )
        .await
        .map(|deleted| deleted > 0)
    }

    /// Deletes every session of a user and appends `record` (made at `now`); returns how
    /// many.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_sessions_for_user(
        &self,
        user_id: &UserId,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<u64> {
        self.delete_sessions(
            sessions::Entity::delete_many().filter(sessions::Column::UserId.eq(user_id.as_str())),
            now,
            record,
        )
        .await
    }

    /// Deletes every session of every user and appends `record` (made at `now`); returns
    /// how many.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_all_sessions(&self, now: UnixMillis, record: &NewRecord) -> Result<u64> {
        self.delete_sessions(sessions::Entity::delete_many(), now, record)
            .await
    }

    /// Runs a session delete and appends `record` (even if nothing matched: subscribers of
    /// the log see every revoke-all), in one transaction; returns how many sessions were
    /// deleted.
    async fn delete_sessions(
        &self,
        delete: sea_orm::DeleteMany<sessions::Entity>,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<u64> {
        let txn = self.begin_write().await?;
        let deleted = delete.exec(&txn).await?.rows_affected;
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), now)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(deleted)
    }

    /// Records activity on a session and, when `expires_at` is given, moves its expiry.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn touch_session(
        &self,
        id: &SessionId,
        last_activity_at: i64,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let mut update = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::LastActivityAt,
                Expr::value(last_activity_at),
            )
            .filter(sessions::Column::Id.eq(id.as_str()));
        if let Some(expires_at) = expires_at {
            update = update.col_expr(sessions::Column::ExpiresAt, Expr::value(expires_at));
        }
        update.exec(&self.db).await?;
        Ok(())
    }
}
