//! Webhook endpoints (stored with their secrets encrypted) and their delivery state.
//!
//! Delivery is coordinated through the database only: a replica delivers to an endpoint
//! while it holds the endpoint's lease, taken with one conditional UPDATE (free, lapsed or
//! already its own) and renewed the same way; every write of the delivery state is
//! conditional on still holding it, so a replica that lost its lease can change nothing.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};

use super::Store;
use super::entities::webhook_endpoints as endpoints;
use super::lifecycle::Appended;
use crate::domain::{
    error::{Error, Result},
    ids::{UserId, WebhookId},
    lifecycle::NewRecord,
    model::UnixMillis,
    webhooks::{DeliveryState, FailureWrite, StoredWebhook, Webhook, WebhookFilter, WebhookWrite},
};

impl From<endpoints::Model> for StoredWebhook {
    fn from(m: endpoints::Model) -> Self {
        StoredWebhook {
            webhook: Webhook {
                id: WebhookId::from_trusted(m.id),
                url: m.url,
                description: m.description,
                filter: WebhookFilter {
                    actions: m.actions.split_whitespace().map(str::to_owned).collect(),
                    user_id: (!m.user_id.is_empty()).then(|| UserId::from_trusted(m.user_id)),
                },
                enabled: m.enabled,
                disabled_reason: m.disabled_reason,
                previous_secret_expires_at: m.previous_secret_expires_at,
                delivery: DeliveryState {
                    delivered_through: m.delivered_through,
                    attempts: u32::try_from(m.attempts).unwrap_or(0),
                    next_attempt_at: m.next_attempt_at,
                    failing_since: m.failing_since,
                    last_error: m.last_error,
                    last_attempt_at: m.last_attempt_at,
                    last_success_at: m.last_success_at,
                },
                create_at: m.create_at,
                update_at: m.update_at,
            },
            secret_ciphertext: m.secret_ciphertext,
            previous_secret_ciphertext: m.previous_secret_ciphertext,
        }
    }
}

/// The condition "`owner` holds the lease".
fn held_by(owner: &str) -> Condition {
    Condition::all().add(endpoints::Column::LeaseOwner.eq(owner))
}

impl Store {
    /// Stores a new endpoint with its encrypted secret and appends `record` (its
    /// `webhook.created`) in one transaction; its delivery starts after that record.
    /// Returns it as stored.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn insert_webhook(
        &self,
        webhook: &Webhook,
        secret_ciphertext: &str,
        record: &NewRecord,
    ) -> Result<Webhook> {
        let txn = self.begin_write().await?;
        // Inline (under the log's lock): delivery starts after this record's id.
        let ids = self
            .append_to_log_inline(&txn, std::slice::from_ref(record), webhook.create_at)
            .await?;
        let start_after = ids.last().copied().unwrap_or(0);
        let row = endpoints::ActiveModel {
            id: Set(webhook.id.to_string()),
            url: Set(webhook.url.clone()),
            description: Set(webhook.description.clone()),
            actions: Set(webhook.filter.actions.join(" ")),
            user_id: Set(webhook
                .filter
                .user_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()),
            enabled: Set(webhook.enabled),
            secret_ciphertext: Set(secret_ciphertext.to_owned()),
            previous_secret_ciphertext: Set(String::new()),
            previous_secret_expires_at: Set(0),
            delivered_through: Set(start_after),
            lease_owner: Set(String::new()),
            lease_expires_at: Set(0),
            attempts: Set(0),
            next_attempt_at: Set(0),
            failing_since: Set(0),
            last_error: Set(String::new()),
            last_attempt_at: Set(0),
            last_success_at: Set(0),
            disabled_reason: Set(String::new()),
            create_at: Set(webhook.create_at),
            update_at: Set(webhook.update_at),
        };
        endpoints::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
        let stored = endpoints::Entity::find_by_id(webhook.id.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::internal("webhook vanished"))?;
        txn.commit().await?;
        Ok(StoredWebhook::from(stored).webhook)
    }

    /// Every endpoint, ordered by id.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>> {
        Ok(endpoints::Entity::find()
            .order_by_asc(endpoints::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| StoredWebhook::from(m).webhook)
            .collect())
    }

    /// One endpoint with its encrypted secrets.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_webhook(&self, id: &WebhookId) -> Result<Option<StoredWebhook>> {
        Ok(endpoints::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .map(StoredWebhook::from))
    }

    /// Writes an endpoint's settings (not its delivery state, except the failures a
    /// re-enable forgets). `None` if it does not exist.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn update_webhook(
        &self,
        id: &WebhookId,
        write: &WebhookWrite,
        record: &NewRecord,
    ) -> Result<Option<Webhook>> {
        let txn = self.begin_write().await?;
        let mut update = endpoints::Entity::update_many()
            .col_expr(endpoints::Column::Url, Expr::value(write.url.clone()))
            .col_expr(
                endpoints::Column::Description,
                Expr::value(write.description.clone()),
            )
            .col_expr(
                endpoints::Column::Actions,
                Expr::value(write.filter.actions.join(" ")),
            )
            .col_expr(
                endpoints::Column::UserId,
                Expr::value(
                    write
                        .filter
                        .user_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
            )
            .col_expr(endpoints::Column::Enabled, Expr::value(write.enabled))
            .col_expr(endpoints::Column::UpdateAt, Expr::value(write.update_at));
        if write.reset_failures {
            update = update
                .col_expr(endpoints::Column::Attempts, Expr::value(0))
                .col_expr(endpoints::Column::NextAttemptAt, Expr::value(0i64))
                .col_expr(endpoints::Column::FailingSince, Expr::value(0i64))
                .col_expr(endpoints::Column::LastError, Expr::value(""))
                .col_expr(endpoints::Column::DisabledReason, Expr::value(""));
        }
        let done = update
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Ok(None);
        }
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), write.update_at)
            .await?;
        let row = endpoints::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::internal("webhook vanished"))?;
        self.commit_logged(txn, appended).await?;
        Ok(Some(StoredWebhook::from(row).webhook))
    }

    /// Deletes an endpoint; whether it existed.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn delete_webhook(
        &self,
        id: &WebhookId,
        record: &NewRecord,
        now: UnixMillis,
    ) -> Result<bool> {
        let txn = self.begin_write().await?;
        let done = endpoints::Entity::delete_many()
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Ok(false);
        }
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), now)
            .await?;
        self.commit_logged(txn, appended).await?;
        Ok(true)
    }

    /// Makes `secret_ciphertext` the endpoint's secret; the one it replaces keeps signing
    /// until `previous_until` (0: not at all). `None` if the endpoint does not exist.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn rotate_webhook_secret(
        &self,
        id: &WebhookId,
        secret_ciphertext: &str,
        previous_until: UnixMillis,
        now: UnixMillis,
        record: &NewRecord,
    ) -> Result<Option<Webhook>> {
        let txn = self.begin_write().await?;
        let Some(current) = endpoints::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
        else {
            return Ok(None);
        };
        let previous = if previous_until == 0 {
            String::new()
        } else {
            current.secret_ciphertext.clone()
        };
        // Only if the secret is still the one read (a concurrent rotation wins otherwise).
        let done = endpoints::Entity::update_many()
            .col_expr(
                endpoints::Column::SecretCiphertext,
                Expr::value(secret_ciphertext.to_owned()),
            )
            .col_expr(
                endpoints::Column::PreviousSecretCiphertext,
                Expr::value(previous),
            )
            .col_expr(
                endpoints::Column::PreviousSecretExpiresAt,
                Expr::value(previous_until),
            )
            .col_expr(endpoints::Column::UpdateAt, Expr::value(now))
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(endpoints::Column::SecretCiphertext.eq(current.secret_ciphertext.as_str()))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Err(Error::Unavailable(
                "the webhook secret was rotated concurrently; retry".into(),
            ));
        }
        let appended = self
            .append_to_log(&txn, std::slice::from_ref(record), now)
            .await?;
        let row = endpoints::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::internal("webhook vanished"))?;
        self.commit_logged(txn, appended).await?;
        Ok(Some(StoredWebhook::from(row).webhook))
    }

    /// Endpoints due for delivery at `now` whose lease `owner` could take: enabled, behind
    /// the log's newest record `latest`, not waiting for a retry, lease free, lapsed or
    /// already `owner`'s.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn due_webhooks(
        &self,
        owner: &str,
        now: UnixMillis,
        latest: i64,
    ) -> Result<Vec<WebhookId>> {
        let ids: Vec<String> = endpoints::Entity::find()
            .select_only()
            .column(endpoints::Column::Id)
            .filter(endpoints::Column::Enabled.eq(true))
            .filter(endpoints::Column::DeliveredThrough.lt(latest))
            .filter(endpoints::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(endpoints::Column::LeaseOwner.eq(""))
                    .add(endpoints::Column::LeaseOwner.eq(owner))
                    .add(endpoints::Column::LeaseExpiresAt.lte(now)),
            )
            .order_by_asc(endpoints::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(WebhookId::from_trusted).collect())
    }

    /// Takes the endpoint's delivery lease for `owner` until `until`, with one conditional
    /// UPDATE (enabled, due, and the lease free, lapsed or `owner`'s already); the endpoint
    /// as it stands if taken.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn take_webhook_lease(
        &self,
        id: &WebhookId,
        owner: &str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> Result<Option<StoredWebhook>> {
        let done = endpoints::Entity::update_many()
            .col_expr(endpoints::Column::LeaseOwner, Expr::value(owner.to_owned()))
            .col_expr(endpoints::Column::LeaseExpiresAt, Expr::value(until))
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(endpoints::Column::Enabled.eq(true))
            .filter(endpoints::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(endpoints::Column::LeaseOwner.eq(""))
                    .add(endpoints::Column::LeaseOwner.eq(owner))
                    .add(endpoints::Column::LeaseExpiresAt.lte(now)),
            )
            .exec(&self.db)
            .await?;
        if done.rows_affected == 0 {
            return Ok(None);
        }
        self.find_webhook(id).await
    }

    /// Extends `owner`'s lease to `until`; false if `owner` no longer holds it (or the
    /// endpoint was disabled or deleted meanwhile).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn renew_webhook_lease(
        &self,
        id: &WebhookId,
        owner: &str,
        until: UnixMillis,
    ) -> Result<bool> {
        let done = endpoints::Entity::update_many()
            .col_expr(endpoints::Column::LeaseExpiresAt, Expr::value(until))
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(endpoints::Column::Enabled.eq(true))
            .filter(held_by(owner))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Gives the lease up (if `owner` holds it).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn release_webhook_lease(&self, id: &WebhookId, owner: &str) -> Result<()> {
        endpoints::Entity::update_many()
            .col_expr(endpoints::Column::LeaseOwner, Expr::value(""))
            .col_expr(endpoints::Column::LeaseExpiresAt, Expr::value(0i64))
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(held_by(owner))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Moves the cursor to `through` while `owner` holds the lease; with `delivered_at`, a
    /// delivery succeeded then, which ends any run of failures. False if the lease is lost.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn advance_webhook(
        &self,
        id: &WebhookId,
        owner: &str,
        through: i64,
        delivered_at: Option<UnixMillis>,
    ) -> Result<bool> {
        let mut update = endpoints::Entity::update_many()
            .col_expr(endpoints::Column::DeliveredThrough, Expr::value(through));
        if let Some(at) = delivered_at {
            update = update
                .col_expr(endpoints::Column::Attempts, Expr::value(0))
                .col_expr(endpoints::Column::NextAttemptAt, Expr::value(0i64))
                .col_expr(endpoints::Column::FailingSince, Expr::value(0i64))
                .col_expr(endpoints::Column::LastError, Expr::value(""))
                .col_expr(endpoints::Column::LastAttemptAt, Expr::value(at))
                .col_expr(endpoints::Column::LastSuccessAt, Expr::value(at));
        }
        let done = update
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(held_by(owner))
            .filter(endpoints::Column::DeliveredThrough.lt(through))
            .exec(&self.db)
            .await?;
        if done.rows_affected == 1 {
            return Ok(true);
        }
        // Already there (nothing to move), or the lease is gone.
        Ok(endpoints::Entity::find_by_id(id.to_string())
            .filter(held_by(owner))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Records a failed attempt while `owner` holds the lease, and gives the lease up (any
    /// replica retries when it is due); disables the endpoint if `failure.disable` says so.
    /// False if the lease was lost.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn webhook_failed(
        &self,
        id: &WebhookId,
        owner: &str,
        failure: &FailureWrite,
    ) -> Result<bool> {
        let txn = self.begin_write().await?;
        let mut update = endpoints::Entity::update_many()
            .col_expr(
                endpoints::Column::Attempts,
                Expr::value(i32::try_from(failure.attempts).unwrap_or(i32::MAX)),
            )
            .col_expr(
                endpoints::Column::NextAttemptAt,
                Expr::value(failure.next_attempt_at),
            )
            .col_expr(
                endpoints::Column::FailingSince,
                Expr::value(failure.failing_since),
            )
            .col_expr(
                endpoints::Column::LastError,
                Expr::value(failure.last_error.clone()),
            )
            .col_expr(
                endpoints::Column::LastAttemptAt,
                Expr::value(failure.attempted_at),
            )
            .col_expr(endpoints::Column::LeaseOwner, Expr::value(""))
            .col_expr(endpoints::Column::LeaseExpiresAt, Expr::value(0i64));
        if let Some(reason) = &failure.disable {
            update = update
                .col_expr(endpoints::Column::Enabled, Expr::value(false))
                .col_expr(
                    endpoints::Column::DisabledReason,
                    Expr::value(reason.clone()),
                )
                .col_expr(
                    endpoints::Column::UpdateAt,
                    Expr::value(failure.attempted_at),
                );
        }
        let done = update
            .filter(endpoints::Column::Id.eq(id.as_str()))
            .filter(held_by(owner))
            .exec(&txn)
            .await?;
        if done.rows_affected == 0 {
            return Ok(false);
        }
        let mut appended = Appended::default();
        if let Some(record) = &failure.disabled_record {
            appended = self
                .append_to_log(&txn, std::slice::from_ref(record), failure.attempted_at)
                .await?;
        }
        self.commit_logged(txn, appended).await?;
        Ok(true)
    }
}
