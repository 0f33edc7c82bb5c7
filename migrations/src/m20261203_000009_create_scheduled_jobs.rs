//! The scheduler's jobs and the expiry notices' bookkeeping.
//!
//! `scheduled_jobs`: one row per background job (`cleanup_expired_access_tokens`,
//! `notify_expiring_access_tokens`). A replica runs a job only while it holds the row's
//! lease (`lease_owner` until `lease_until`, taken with one conditional UPDATE); a run
//! started at `last_started_at` and finished at `last_finished_at` (0: never). Rows are
//! created by the service the first time it looks at a job.
//!
//! `user_access_tokens.last_notified_at` (nullable, Unix ms): when the owner was last warned
//! that the token expires (Mattermost's internal `LastNotifiedAt`; never in the API). The
//! index on (`is_active`, `expires_at`, `id`) serves the cleanup job's and the notice job's
//! scans, in their order, and the non-compliant count; the index on `users.is_bot` finds the bots that count leaves
//! out.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TOKENS: &str = "user_access_tokens";
const EXPIRY_INDEX: &str = "idx_user_access_tokens_active_expires_at";
const BOT_INDEX: &str = "idx_users_is_bot";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("scheduled_jobs")
                    .if_not_exists()
                    .col(string_len("name", 64).primary_key())
                    .col(string_len("lease_owner", 64).default(""))
                    .col(big_integer("lease_until").default(0))
                    .col(big_integer("last_started_at").default(0))
                    .col(big_integer("last_finished_at").default(0))
                    .to_owned(),
            )
            .await?;
        if !manager.has_column(TOKENS, "last_notified_at").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(TOKENS)
                        .add_column(big_integer_null("last_notified_at"))
                        .to_owned(),
                )
                .await?;
        }
        if !manager.has_index(TOKENS, EXPIRY_INDEX).await? {
            manager
                .create_index(
                    Index::create()
                        .name(EXPIRY_INDEX)
                        .table(TOKENS)
                        .col("is_active")
                        .col("expires_at")
                        .col("id")
                        .to_owned(),
                )
                .await?;
        }
        if !manager.has_index("users", BOT_INDEX).await? {
            manager
                .create_index(
                    Index::create()
                        .name(BOT_INDEX)
                        .table("users")
                        .col("is_bot")
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.has_index("users", BOT_INDEX).await? {
            manager
                .drop_index(Index::drop().name(BOT_INDEX).table("users").to_owned())
                .await?;
        }
        if manager.has_index(TOKENS, EXPIRY_INDEX).await? {
            manager
                .drop_index(Index::drop().name(EXPIRY_INDEX).table(TOKENS).to_owned())
                .await?;
        }
        if manager.has_column(TOKENS, "last_notified_at").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(TOKENS)
                        .drop_column("last_notified_at")
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table("scheduled_jobs").if_exists().to_owned())
            .await
    }
}
