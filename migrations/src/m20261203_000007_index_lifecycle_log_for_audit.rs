//! Indexes for the audit trail's filters that the lifecycle log did not index yet: a client
//! address, an action and a slash command, each with `id` so that a newest-first page of one
//! of them reads only its own rows. (The subjects, the actor, the request id and the
//! credential HMAC were indexed when the log was created.)

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "lifecycle_log";

const INDEXED: [&str; 3] = ["ip", "action", "command_id"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in INDEXED {
            manager
                .create_index(
                    Index::create()
                        .name(format!("idx_lifecycle_log_{column}"))
                        .table(TABLE)
                        .col(column)
                        .col("id")
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in INDEXED {
            manager
                .drop_index(
                    Index::drop()
                        .name(format!("idx_lifecycle_log_{column}"))
                        .table(TABLE)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
