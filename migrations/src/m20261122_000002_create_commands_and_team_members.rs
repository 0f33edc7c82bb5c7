//! Slash commands and team memberships.
//!
//! A command token is sent with every slash-command request, so it cannot be hashed: it is
//! stored encrypted (`token_ciphertext`, AES-256-GCM, prefixed with the id of the key used).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("team_members")
                    .if_not_exists()
                    .col(string_len("team_id", 26))
                    .col(string_len("user_id", 26))
                    .col(string_len("roles", 256))
                    .col(big_integer("create_at"))
                    .col(big_integer("delete_at").default(0))
                    .primary_key(Index::create().col("team_id").col("user_id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_team_members_user")
                            .from("team_members", "user_id")
                            .to("users", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_team_members_user_id")
                    .table("team_members")
                    .col("user_id")
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                crate::exact_table(manager)
                    .table("commands")
                    .if_not_exists()
                    .col(string_len("id", 26).primary_key())
                    .col(string_len("token_ciphertext", 255))
                    .col(string_len("team_id", 26))
                    .col(string_len("creator_id", 26))
                    .col(string_len("trigger", 128))
                    .col(string_len("method", 1))
                    .col(string_len("url", 1024))
                    .col(string_len("display_name", 64).default(""))
                    .col(string_len("description", 128).default(""))
                    .col(string_len("username", 64).default(""))
                    .col(string_len("icon_url", 1024).default(""))
                    .col(boolean("auto_complete").default(false))
                    .col(string_len("auto_complete_desc", 1024).default(""))
                    .col(string_len("auto_complete_hint", 1024).default(""))
                    .col(big_integer("create_at"))
                    .col(big_integer("update_at"))
                    .col(big_integer("delete_at").default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_commands_team_id_trigger")
                    .table("commands")
                    .col("team_id")
                    .col("trigger")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["commands", "team_members"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
