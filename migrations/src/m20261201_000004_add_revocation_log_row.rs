//! The revocation log's control row in `service_meta`: every append locks it first, so event
//! ids are handed out in commit order (a reader that has seen id N has seen every event below
//! N), and its value records the highest event id pruned, so a subscriber resuming from an
//! older position learns it missed events instead of silently skipping them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const ROW: &str = "revocation_log";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Nothing has been pruned yet: the log so far is complete.
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("service_meta")
                    .columns(["name", "value"])
                    .values_panic([ROW.into(), "0".into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .exec_stmt(
                Query::delete()
                    .from_table("service_meta")
                    .and_where(Expr::col("name").eq(ROW))
                    .to_owned(),
            )
            .await
    }
}
