//! Bound personal access tokens (Vault's `token_bound_cidrs`): `bound_cidrs` holds the client
//! address blocks a token may be used from, in canonical text and space-separated (at most 16
//! blocks of at most 43 characters); "" means unbound, as every existing token is. Expand
//! only: old code ignores the column (and would let a bound token authenticate from anywhere,
//! so finish a rolling deploy before creating bound tokens).

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
                    .add_column(string_len("bound_cidrs", 1024).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("user_access_tokens")
                    .drop_column("bound_cidrs")
                    .to_owned(),
            )
            .await
    }
}
