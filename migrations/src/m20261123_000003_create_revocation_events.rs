//! The revocation log: one row per revocation (a token revoked or disabled, a session
//! revoked, a user's sessions or roles changed, every session revoked). Replicas read it in
//! order to drop what they cached; `WatchRevocations` subscribers resume from an event id.
//! Rows are pruned after a retention period.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("revocation_events")
                    .if_not_exists()
                    .col(big_integer("id").auto_increment().primary_key())
                    .col(string_len("kind", 16))
                    .col(string_len("subject_id", 26).default(""))
                    .col(big_integer("create_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_revocation_events_create_at")
                    .table("revocation_events")
                    .col("create_at")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("revocation_events").to_owned())
            .await
    }
}
