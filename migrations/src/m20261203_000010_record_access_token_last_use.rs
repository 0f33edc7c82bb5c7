//! Last use of personal access tokens, GitLab-style: when a token was last used
//! (`last_used_at`, Unix ms, 0 = never), the user agent of that use (`last_user_agent`, cut to
//! 255 bytes), and the most recent distinct client addresses in `access_token_addresses`
//! (the service keeps the 5 newest per token). Written in batches by each replica's last-use
//! flush, never by the token check itself. Expand only: old code ignores the new columns and
//! table.
//!
//! Indexes on `last_used_at` and `expires_at` serve the list filters over every user's tokens
//! (`last_used_before/after`, `expires_before`, `state=expired`); one user's list is served by
//! the existing `(user_id, id)` index.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table("user_access_tokens")
                    .add_column(big_integer("last_used_at").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("user_access_tokens")
                    .add_column(string_len("last_user_agent", 255).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("access_token_addresses")
                    .if_not_exists()
                    .col(string_len("token_id", 26))
                    // The canonical text form of an IPv4 or IPv6 address.
                    .col(string_len("ip", 64))
                    .col(big_integer("last_seen_at"))
                    .primary_key(Index::create().col("token_id").col("ip"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_access_token_addresses_token")
                            .from("access_token_addresses", "token_id")
                            .to("user_access_tokens", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_user_access_tokens_last_used_at", "last_used_at"),
            ("idx_user_access_tokens_expires_at", "expires_at"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table("user_access_tokens")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in [
            "idx_user_access_tokens_expires_at",
            "idx_user_access_tokens_last_used_at",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table("user_access_tokens")
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(
                Table::drop()
                    .table("access_token_addresses")
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for column in ["last_user_agent", "last_used_at"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("user_access_tokens")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
