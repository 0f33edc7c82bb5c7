//! The superseded secrets of rotated personal access tokens: a rotation keeps the token (its
//! id, its "family") and replaces its secret; the digest of the secret it replaced is kept
//! here, so that a later use of it is recognised as the reuse of a rotated credential rather
//! than an unknown token, and so that it can keep working for a short grace period.
//!
//! Only the digest is stored (`token_hash`: the hex HMAC-SHA256 of the old secret under the
//! server key, as `user_access_tokens.token_hash`), never the secret. Rows live as long as
//! their token: deleting the token deletes them (`ON DELETE CASCADE`). `grace_until` is the
//! Unix millisecond until which the old secret still authenticates; 0 = no grace. The index
//! on (`token_id`, `grace_until`) serves the cascade and a rotation's ending of earlier
//! graces.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "access_token_superseded_secrets";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table(TABLE)
                    .if_not_exists()
                    .col(string_len("token_hash", 64).primary_key())
                    .col(string_len("token_id", 26))
                    .col(string_len("user_id", 26))
                    .col(big_integer("superseded_at"))
                    .col(big_integer("grace_until").default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_access_token_superseded_secrets_token")
                            .from(TABLE, "token_id")
                            .to("user_access_tokens", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_access_token_superseded_secrets_token_id")
                    .table(TABLE)
                    .col("token_id")
                    .col("grace_until")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TABLE).if_exists().to_owned())
            .await
    }
}
