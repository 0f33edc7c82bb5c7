//! Scoped personal access tokens: `scopes` holds the scopes that narrow what a token may do,
//! space-separated ("read tokens"); "" means unscoped, as every existing token is. Expand
//! only: old code ignores the column (and would let a scoped token do all its owner may, so
//! finish a rolling deploy before creating scoped tokens).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("user_access_tokens")
                    .add_column(string_len("scopes", 255).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("user_access_tokens")
                    .drop_column("scopes")
                    .to_owned(),
            )
            .await
    }
}
