//! Records waiting to enter the lifecycle log (group commit). On PostgreSQL and MariaDB a
//! change inserts its records here, in its own transaction and without taking the log's lock;
//! a sealer then moves every waiting row into `lifecycle_log` in one transaction under the lock,
//! assigning ids and chained hashes in `seq` order. The columns are the log's, without `id` and
//! `hash`, so sealing is a copy. Expand only: a replica still running the previous version keeps
//! appending to the log directly under the same lock, which stays correct.
//!
//! `down` refuses while rows are waiting (they would be lost): start a server to seal them.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "lifecycle_pending";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table(TABLE)
                    .if_not_exists()
                    .col(big_integer("seq").auto_increment().primary_key())
                    .col(big_integer("create_at"))
                    .col(string_len("action", 48))
                    .col(string_len("actor_type", 16))
                    .col(string_len("actor_id", 26).default(""))
                    .col(string_len("user_id", 26).default(""))
                    .col(string_len("token_id", 26).default(""))
                    .col(string_len("session_id", 26).default(""))
                    .col(string_len("command_id", 26).default(""))
                    .col(string_len("team_id", 26).default(""))
                    .col(string_len("webhook_id", 26).default(""))
                    .col(string_len("ip", 64).default(""))
                    .col(string_len("user_agent", 256).default(""))
                    .col(string_len("request_id", 64).default(""))
                    .col(text("detail"))
                    .col(string_len("credential_hmac", 64).default(""))
                    .col(string_len("revokes", 16).default(""))
                    .col(string_len("revokes_id", 26).default(""))
                    .col(small_integer("revoking").default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let waiting = manager
            .get_connection()
            .query_one(
                Query::select()
                    .expr_as(Expr::cust("COUNT(*)"), "waiting")
                    .from(TABLE),
            )
            .await?
            .map(|row| row.try_get::<i64>("", "waiting"))
            .transpose()?
            .unwrap_or(0);
        if waiting > 0 {
            return Err(DbErr::Migration(format!(
                "{TABLE} holds {waiting} lifecycle records not yet in the log; start a server \
                 (it seals them within a second) before rolling this migration back"
            )));
        }
        manager
            .drop_table(Table::drop().table(TABLE).to_owned())
            .await
    }
}
