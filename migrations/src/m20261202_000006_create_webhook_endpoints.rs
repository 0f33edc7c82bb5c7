//! Webhook endpoints: where the lifecycle log is delivered, and each endpoint's delivery
//! state (cursor, lease, retries).
//!
//! The signing secret is needed to sign every delivery, so it cannot be hashed: it is stored
//! encrypted (`secret_ciphertext`, AES-256-GCM under the command-token keyring, prefixed with
//! the id of the key used), as slash-command tokens are. During a rotation's grace period the
//! previous secret is kept the same way until `previous_secret_expires_at`.
//!
//! Delivery state: `delivered_through` is the id of the last lifecycle record delivered (or skipped by
//! the filter); a replica delivers only while it holds the lease (`lease_owner` until
//! `lease_expires_at`, taken with one conditional UPDATE). A failed delivery counts
//! `attempts`, waits until `next_attempt_at`, and `failing_since` says since when it has
//! failed without a success in between.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("webhook_endpoints")
                    .if_not_exists()
                    .col(string_len("id", 26).primary_key())
                    .col(string_len("url", 2048))
                    .col(string_len("description", 255).default(""))
                    // Space-separated lifecycle actions; empty: every action.
                    .col(string_len("actions", 2048).default(""))
                    // Only records whose subject user is this one; empty: any.
                    .col(string_len("user_id", 26).default(""))
                    .col(boolean("enabled").default(true))
                    .col(string_len("secret_ciphertext", 255))
                    .col(string_len("previous_secret_ciphertext", 255).default(""))
                    .col(big_integer("previous_secret_expires_at").default(0))
                    .col(big_integer("delivered_through").default(0))
                    .col(string_len("lease_owner", 64).default(""))
                    .col(big_integer("lease_expires_at").default(0))
                    .col(integer("attempts").default(0))
                    .col(big_integer("next_attempt_at").default(0))
                    .col(big_integer("failing_since").default(0))
                    .col(string_len("last_error", 512).default(""))
                    .col(big_integer("last_attempt_at").default(0))
                    .col(big_integer("last_success_at").default(0))
                    .col(string_len("disabled_reason", 255).default(""))
                    .col(big_integer("create_at"))
                    .col(big_integer("update_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("webhook_endpoints")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
