//! Personal access tokens: insert, look up, list, search, and the changes (revoke, disable,
//! enable) applied as the domain describes them, each in one transaction with its
//! lifecycle record.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    TryIntoModel,
    sea_query::{Expr, Query},
};

use super::Store;
use super::batched_writes::{Batched, TokenCreation, TokenDeletion};
use super::entities::{sessions, user_access_tokens as tokens, users};
use super::lifecycle::{Appended, pending_json};
use crate::domain::error::{Error, Result};
use crate::domain::{
    access_tokens::{TokenFilter, TokenState, TokenWindow},
    bound_tokens::BoundCidrs,
    ids::{TokenId, UserId},
    lifecycle::NewRecord,
    model::{AccessTokenChange, LastUse, TokenWrite, UnixMillis, UserAccessToken},
    permissions::Scopes,
    secret::TokenDigest,
};

impl From<tokens::Model> for UserAccessToken {
    fn from(m: tokens::Model) -> Self {
        UserAccessToken {
            id: TokenId::from_trusted(m.id),
            user_id: UserId::from_trusted(m.user_id),
            description: m.description,
            is_active: m.is_active,
            expires_at: m.expires_at,
            create_at: m.create_at,
            last_use: LastUse {
                last_used_at: m.last_used_at,
                user_agent: m.last_user_agent,
                recent_addresses: Vec::new(),
            },
            bound_cidrs: BoundCidrs::from_stored(&m.bound_cidrs),
            scopes: Scopes::from_stored(&m.scopes),
        }
    }
}

/// The list filters as a condition; with no filter, every token passes.
fn filter_condition(filter: &TokenFilter, now: UnixMillis) -> Condition {
    let mut condition = Condition::all();
    if let Some(before) = filter.last_used_before {
        condition = condition
            .add(tokens::Column::LastUsedAt.gt(0))
            .add(tokens::Column::LastUsedAt.lt(before));
    }
    if let Some(after) = filter.last_used_after {
        condition = condition
            .add(tokens::Column::LastUsedAt.gt(0))
            .add(tokens::Column::LastUsedAt.gte(after));
    }
    if let Some(before) = filter.expires_before {
        condition = condition
            .add(tokens::Column::ExpiresAt.gt(0))
            .add(tokens::Column::ExpiresAt.lt(before));
    }
    let unexpired = Condition::any()
        .add(tokens::Column::ExpiresAt.eq(0))
        .add(tokens::Column::ExpiresAt.gt(now));
    match filter.state {
        None => {}
        Some(TokenState::Active) => {
            condition = condition
                .add(tokens::Column::IsActive.eq(true))
                .add(unexpired);
        }
        Some(TokenState::Disabled) => {
            condition = condition.add(tokens::Column::IsActive.eq(false));
        }
        Some(TokenState::Expired) => {
            condition = condition
                .add(tokens::Column::ExpiresAt.gt(0))
                .add(tokens::Column::ExpiresAt.lte(now));
        }
    }
    condition
}

impl Store {
    /// Stores a new token under the digest of its secret, with its lifecycle record, in one
    /// transaction (on PostgreSQL one statement).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn insert_access_token(
        &self,
        token: &UserAccessToken,
        digest: &TokenDigest,
        record: &NewRecord,
    ) -> Result<()> {
        let row = tokens::ActiveModel {
            id: Set(token.id.to_string()),
            token_hash: Set(digest.as_str().to_owned()),
            user_id: Set(token.user_id.to_string()),
            description: Set(token.description.clone()),
            is_active: Set(token.is_active),
            expires_at: Set(token.expires_at),
            create_at: Set(token.create_at),
            last_notified_at: Set(None),
            last_used_at: Set(token.last_use.last_used_at),
            last_user_agent: Set(token.last_use.user_agent.clone()),
            bound_cidrs: Set(token.bound_cidrs.to_stored()),
            scopes: Set(token.scopes.to_stored()),
        };
        if self.queues_in_one_statement() {
            // Concurrent creations share a statement (`batched_writes`); one the database
            // refused with others is written on its own.
            let batched = TokenCreation {
                token: serde_json::to_string(&row.clone().try_into_model()?)
                    .map_err(|e| Error::internal(format!("a token row as JSON: {e}")))?,
                record: pending_json(record, token.create_at)?,
            };
            if let Batched::Written(_) = self.token_creations.write(&self.db, batched).await? {
                self.await_committed_records().await;
                return Ok(());
            }
            let mut insert = tokens::Entity::insert(row).into_query();
            insert.returning_col(tokens::Column::Id);
            self.change_and_queue(insert, record, token.create_at)
                .await?;
            return Ok(());
        }
        let txn = self.begin_with_write().await?;
        tokens::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), token.create_at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(())
    }

    /// A token by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_access_token(&self, id: &TokenId) -> Result<Option<UserAccessToken>> {
        Ok(tokens::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(UserAccessToken::from))
    }

    /// A token by the digest of its secret, with the stored digest.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_access_token_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(UserAccessToken, TokenDigest)>> {
        Ok(tokens::Entity::find()
            .filter(tokens::Column::TokenHash.eq(digest.as_str()))
            .one(&self.db)
            .await?
            .map(|m| {
                let stored = TokenDigest::from_stored(m.token_hash.clone());
                (UserAccessToken::from(m), stored)
            }))
    }

    /// A window of a user's tokens that pass `filter` (at time `now`), ordered by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn list_access_tokens_for_user(
        &self,
        user_id: &UserId,
        filter: &TokenFilter,
        now: UnixMillis,
        window: &TokenWindow,
    ) -> Result<Vec<UserAccessToken>> {
        self.list_access_tokens_where(
            filter_condition(filter, now).add(tokens::Column::UserId.eq(user_id.as_str())),
            window,
        )
        .await
    }

    /// A window of all tokens that pass `filter` (at time `now`), ordered by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn list_access_tokens(
        &self,
        filter: &TokenFilter,
        now: UnixMillis,
        window: &TokenWindow,
    ) -> Result<Vec<UserAccessToken>> {
        self.list_access_tokens_where(filter_condition(filter, now), window)
            .await
    }

    /// The window's rows. After a position (keyset), the index seeks to it: the cost does
    /// not depend on the depth. Skipping rows (Mattermost's page number), the page's ids
    /// are read first, from the primary key's index alone when no filter needs the row, and
    /// then only the page's rows: the skipped rows cost index entries, not table rows
    /// (still O(offset): a keyset walk avoids that).
    async fn list_access_tokens_where(
        &self,
        mut condition: Condition,
        window: &TokenWindow,
    ) -> Result<Vec<UserAccessToken>> {
        if window.limit == 0 {
            return Ok(Vec::new());
        }
        if let Some(after) = &window.after {
            condition = condition.add(tokens::Column::Id.gt(after.as_str()));
        }
        let rows = if window.offset == 0 {
            tokens::Entity::find()
                .filter(condition)
                .order_by_asc(tokens::Column::Id)
                .limit(window.limit)
                .all(&self.db)
                .await?
        } else {
            let ids: Vec<String> = tokens::Entity::find()
                .select_only()
                .column(tokens::Column::Id)
                .filter(condition)
                .order_by_asc(tokens::Column::Id)
                .offset(window.offset)
                .limit(window.limit)
                .into_tuple()
                .all(&self.db)
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            // A token deleted between the two reads is simply missing from the page.
            tokens::Entity::find()
                .filter(tokens::Column::Id.is_in(ids))
                .order_by_asc(tokens::Column::Id)
                .all(&self.db)
                .await?
        };
        Ok(rows.into_iter().map(UserAccessToken::from).collect())
    }

    /// Every token whose id, user id or owner's username equals `term`, ordered by id. The
    /// owner named `term` is looked up first, so each part of the match is an index lookup.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn search_access_tokens(&self, term: &str) -> Result<Vec<UserAccessToken>> {
        let owner_named: Option<String> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(users::Column::Username.eq(term))
            .into_tuple()
            .one(&self.db)
            .await?;
        let owners = std::iter::once(term.to_owned()).chain(owner_named);
        Ok(tokens::Entity::find()
            .filter(
                Condition::any()
                    .add(tokens::Column::Id.eq(term))
                    .add(tokens::Column::UserId.is_in(owners)),
            )
            .order_by_asc(tokens::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(UserAccessToken::from)
            .collect())
    }

    /// Applies a token change and appends its lifecycle record in one transaction, if token
    /// `id` exists and belongs to `owner`; returns whether it did (nothing is written if
    /// not). The owner condition lets a caller change its own token without reading it
    /// first.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn change_access_token(
        &self,
        id: &TokenId,
        owner: &UserId,
        change: &AccessTokenChange,
        record: &NewRecord,
    ) -> Result<bool> {
        match change.token {
            TokenWrite::Delete => self.delete_access_token(id, owner, change, record).await,
            TokenWrite::SetActive(active) => {
                self.set_access_token_active(id, owner, active, change, record)
                    .await
            }
        }
    }

    /// Deletes a token of `owner`, first (if `change` says so) the sessions minted from it,
    /// and appends the record, in one transaction.
    async fn delete_access_token(
        &self,
        id: &TokenId,
        owner: &UserId,
        change: &AccessTokenChange,
        record: &NewRecord,
    ) -> Result<bool> {
        if change.delete_minted_sessions && self.queues_in_one_statement() {
            // The sessions minted from the token go with it (their foreign key cascades),
            // in the same statement: a session minted concurrently either committed first
            // (and is deleted) or fails its foreign key check.
            // Concurrent deletions share a statement, as creations do.
            let batched = TokenDeletion::new(
                id.as_str(),
                owner.as_str(),
                &pending_json(record, change.at)?,
            );
            if let Batched::Written(deleted) = self.token_deletions.write(&self.db, batched).await?
            {
                if deleted {
                    self.await_committed_records().await;
                }
                return Ok(deleted);
            }
            let delete = Query::delete()
                .from_table(tokens::Entity)
                .and_where(tokens::Column::Id.eq(id.as_str()))
                .and_where(tokens::Column::UserId.eq(owner.as_str()))
                .returning_col(tokens::Column::Id)
                .take();
            return self.change_and_queue(delete, record, change.at).await;
        }
        let txn = self.begin_write().await?;
        lock_access_token_row(&txn, id).await?;
        if change.delete_minted_sessions {
            // A minted session is its token owner's: another user's token keeps its sessions.
            sessions::Entity::delete_many()
                .filter(sessions::Column::UserAccessTokenId.eq(id.as_str()))
                .filter(sessions::Column::UserId.eq(owner.as_str()))
                .exec(&txn)
                .await?;
        }
        let deleted = tokens::Entity::delete_many()
            .filter(tokens::Column::Id.eq(id.as_str()))
            .filter(tokens::Column::UserId.eq(owner.as_str()))
            .exec(&txn)
            .await?;
        let existed = deleted.rows_affected > 0;
        let mut appended = Appended::default();
        if existed {
            appended = self
                .append_to_log(&txn, std::slice::from_ref(record), change.at)
                .await?;
        }
        self.commit_logged(txn, appended).await?;
        Ok(existed)
    }

    /// Sets the active flag of a token of `owner` and, if that token exists, deletes the
    /// sessions minted from it (if `change` says so) and appends the record, in one
    /// transaction.
    async fn set_access_token_active(
        &self,
        id: &TokenId,
        owner: &UserId,
        active: bool,
        change: &AccessTokenChange,
        record: &NewRecord,
    ) -> Result<bool> {
        let txn = self.begin_write().await?;
        // Write first: on SQLite a transaction that reads before it writes cannot wait for
        // another writer (its lock upgrade fails at once), so concurrent toggles would fail.
        tokens::Entity::update_many()
            .col_expr(tokens::Column::IsActive, Expr::value(active))
            .filter(tokens::Column::Id.eq(id.as_str()))
            .filter(tokens::Column::UserId.eq(owner.as_str()))
            .exec(&txn)
            .await?;
        // MariaDB counts changed rows, not matched ones, so existence is read explicitly.
        let exists = tokens::Entity::find_by_id(id.to_string())
            .filter(tokens::Column::UserId.eq(owner.as_str()))
            .one(&txn)
            .await?
            .is_some();
        let mut appended = Appended::default();
        if exists {
            if change.delete_minted_sessions {
                sessions::Entity::delete_many()
                    .filter(sessions::Column::UserAccessTokenId.eq(id.as_str()))
                    .exec(&txn)
                    .await?;
            }
            appended = self
                .append_to_log(&txn, std::slice::from_ref(record), change.at)
                .await?;
        }
        self.commit_logged(txn, appended).await?;
        Ok(exists)
    }
}

/// Locks token `id`'s row (a write that changes nothing), before anything else a change
/// of the token does. A first use minting a session checks the token (its foreign key)
/// before it touches `sessions`, so it waits for the change instead of holding the token
/// while the change holds the sessions it must insert between (a deadlock on MariaDB).
pub(super) async fn lock_access_token_row(
    txn: &sea_orm::DatabaseTransaction,
    id: &TokenId,
) -> Result<()> {
    tokens::Entity::update_many()
        .col_expr(
            tokens::Column::IsActive,
            Expr::col(tokens::Column::IsActive),
        )
        .filter(tokens::Column::Id.eq(id.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}
