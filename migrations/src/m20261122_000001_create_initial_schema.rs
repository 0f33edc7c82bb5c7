//! Users, personal access tokens, sessions, and the service metadata table.
//!
//! Times are Unix milliseconds in BIGINT columns (0 = unset), as Mattermost stores them, so
//! every backend compares them the same way. Secrets are never stored: `token_hash` holds a
//! hex HMAC-SHA256 of the token under the server key.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("service_meta")
                    .if_not_exists()
                    .col(string_len("name", 64).primary_key())
                    .col(string_len("value", 255))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                crate::exact_table(manager)
                    .table("users")
                    .if_not_exists()
                    .col(string_len("id", 26).primary_key())
                    .col(string_len_uniq("username", 64))
                    .col(string_len("email", 128).default(""))
                    .col(string_len("roles", 256))
                    .col(boolean("is_bot").default(false))
                    .col(string_len_null("bot_owner_id", 26))
                    .col(big_integer("create_at"))
                    .col(big_integer("update_at"))
                    .col(big_integer("delete_at").default(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                crate::exact_table(manager)
                    .table("user_access_tokens")
                    .if_not_exists()
                    .col(string_len("id", 26).primary_key())
                    .col(string_len_uniq("token_hash", 64))
                    .col(string_len("user_id", 26))
                    .col(string_len("description", 255))
                    .col(boolean("is_active").default(true))
                    .col(big_integer("expires_at").default(0))
                    .col(big_integer("create_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_access_tokens_user")
                            .from("user_access_tokens", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_access_tokens_user_id")
                    .table("user_access_tokens")
                    .col("user_id")
                    .col("id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                crate::exact_table(manager)
                    .table("sessions")
                    .if_not_exists()
                    .col(string_len("id", 26).primary_key())
                    .col(string_len_uniq("token_hash", 64))
                    .col(string_len("user_id", 26))
                    .col(string_len_null("user_access_token_id", 26))
                    .col(big_integer("create_at"))
                    .col(big_integer("expires_at").default(0))
                    .col(big_integer("last_activity_at"))
                    .col(big_integer("length_ms").default(0))
                    .col(string_len("device_id", 512).default(""))
                    .col(string_len("roles", 256))
                    .col(boolean("is_oauth").default(false))
                    .col(boolean("expired_notify").default(false))
                    .col(text("props"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user")
                            .from("sessions", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_user_access_token")
                            .from("sessions", "user_access_token_id")
                            .to("user_access_tokens", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_id_last_activity")
                    .table("sessions")
                    .col("user_id")
                    .col("last_activity_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_user_access_token_id")
                    .table("sessions")
                    .col("user_access_token_id")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["sessions", "user_access_tokens", "users", "service_meta"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
