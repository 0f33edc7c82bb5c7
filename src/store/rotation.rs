//! Token rotation: the new secret's digest replaces the old on the token row, the old
//! digest is kept in `access_token_superseded_secrets`, and the sessions minted from the
//! old secret go (or, with a grace period, end with it); and the reuse of a replaced secret
//! is recorded, revoking its token if the domain says so. Each in one transaction with its
//! lifecycle records.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, sea_query::Expr,
};

use super::Store;
use super::entities::{
    access_token_superseded_secrets as superseded, sessions, user_access_tokens as tokens,
};
use crate::domain::error::Result;
use crate::domain::{
    ids::{TokenId, UserId},
    lifecycle::NewRecord,
    model::{AccessTokenRotation, RotationOutcome, SupersededSecret, UnixMillis},
    secret::TokenDigest,
};

impl Store {
    /// The secret a rotation replaced, by its digest, with the stored digest.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_superseded_secret(
        &self,
        digest: &TokenDigest,
    ) -> Result<Option<(SupersededSecret, TokenDigest)>> {
        Ok(superseded::Entity::find_by_id(digest.as_str().to_owned())
            .one(&self.db)
            .await?
            .map(|m| {
                let stored = TokenDigest::from_stored(m.token_hash);
                let secret = SupersededSecret {
                    token_id: TokenId::from_trusted(m.token_id),
                    user_id: UserId::from_trusted(m.user_id),
                    superseded_at: m.superseded_at,
                    grace_until: m.grace_until,
                };
                (secret, stored)
            }))
    }

    /// Rotates token `id` as `rotation` says and appends `record`, in one transaction that
    /// starts by locking the token row: keeps the current digest as superseded (ending the
    /// grace of secrets superseded earlier), writes the new digest and expiry, and deletes
    /// the sessions minted from the token, except, with a grace period, the replaced
    /// secret's, whose expiry is brought forward to the end of the grace. Nothing is written
    /// if the token is missing or disabled.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn rotate_access_token(
        &self,
        id: &TokenId,
        rotation: &AccessTokenRotation,
        record: &NewRecord,
    ) -> Result<RotationOutcome> {
        let txn = self.begin_write().await?;
        super::access_tokens::lock_access_token_row(&txn, id).await?;
        let Some(row) = tokens::Entity::find_by_id(id.to_string()).one(&txn).await? else {
            txn.rollback().await?;
            return Ok(RotationOutcome::Missing);
        };
        if !row.is_active {
            txn.rollback().await?;
            return Ok(RotationOutcome::Disabled);
        }
        let at = rotation.at;
        // Only the secret replaced now may have a grace period: earlier ones end now.
        superseded::Entity::update_many()
            .col_expr(superseded::Column::GraceUntil, Expr::value(at))
            .filter(superseded::Column::TokenId.eq(id.as_str()))
            .filter(superseded::Column::GraceUntil.gt(at))
            .exec(&txn)
            .await?;
        superseded::Entity::insert(superseded::ActiveModel {
            token_hash: Set(row.token_hash.clone()),
            token_id: Set(row.id.clone()),
            user_id: Set(row.user_id.clone()),
            superseded_at: Set(at),
            grace_until: Set(rotation.grace_until),
        })
        .exec_without_returning(&txn)
        .await?;
        tokens::Entity::update_many()
            .col_expr(
                tokens::Column::TokenHash,
                Expr::value(rotation.new_digest.as_str()),
            )
            .col_expr(tokens::Column::ExpiresAt, Expr::value(rotation.expires_at))
            .filter(tokens::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        let mut minted = Condition::all().add(sessions::Column::UserAccessTokenId.eq(id.as_str()));
        if rotation.grace_until > 0 {
            sessions::Entity::update_many()
                .col_expr(
                    sessions::Column::ExpiresAt,
                    Expr::value(rotation.grace_until),
                )
                .filter(sessions::Column::UserAccessTokenId.eq(id.as_str()))
                .filter(sessions::Column::TokenHash.eq(row.token_hash.as_str()))
                .filter(
                    Condition::any()
                        .add(sessions::Column::ExpiresAt.eq(0))
                        .add(sessions::Column::ExpiresAt.gt(rotation.grace_until)),
                )
                .exec(&txn)
                .await?;
            minted = minted.add(sessions::Column::TokenHash.ne(row.token_hash.as_str()));
        }
        sessions::Entity::delete_many()
            .filter(minted)
            .exec(&txn)
            .await?;
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), at)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(RotationOutcome::Rotated)
    }

    /// Appends `reuse` (the reuse of a replaced secret of token `id`) and, when `revoke` is
    /// given, deletes the token and the sessions minted from it and appends `revoke` too, in
    /// one transaction. Returns whether the token was revoked (false if it was already gone;
    /// the reuse is recorded either way).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn record_access_token_reuse(
        &self,
        id: &TokenId,
        reuse: &NewRecord,
        revoke: Option<&NewRecord>,
        at: UnixMillis,
    ) -> Result<bool> {
        let txn = self.begin_write().await?;
        let mut revoked = false;
        if revoke.is_some() {
            tokens::Entity::update_many()
                .col_expr(
                    tokens::Column::IsActive,
                    Expr::col(tokens::Column::IsActive),
                )
                .filter(tokens::Column::Id.eq(id.as_str()))
                .exec(&txn)
                .await?;
            sessions::Entity::delete_many()
                .filter(sessions::Column::UserAccessTokenId.eq(id.as_str()))
                .exec(&txn)
                .await?;
            // The superseded secrets go with the token (ON DELETE CASCADE).
            revoked = tokens::Entity::delete_by_id(id.to_string())
                .exec(&txn)
                .await?
                .rows_affected
                > 0;
        }
        let mut records = vec![reuse.clone()];
        if let Some(revoke) = revoke.filter(|_| revoked) {
            records.push(revoke.clone());
        }
        let appended = self.append_to_log(&txn, &records, at).await?;
        self.commit_logged(txn, appended).await?;
        Ok(revoked)
    }
}
