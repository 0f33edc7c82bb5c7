//! Schema migrations for token-service, in order.
//!
//! Each migration describes the schema as it was at that step and never imports the
//! service's entities. See `README.md` for the rules (expand/contract for rolling deploys).

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_initial_schema;
mod m20261122_000002_create_commands_and_team_members;
mod m20261123_000003_create_revocation_events;
mod m20261201_000004_add_revocation_log_row;
mod m20261202_000005_create_lifecycle_log;
mod m20261202_000006_create_webhook_endpoints;
mod m20261203_000007_index_lifecycle_log_for_audit;
mod m20261203_000008_create_access_token_superseded_secrets;
mod m20261203_000009_create_scheduled_jobs;
mod m20261203_000010_record_access_token_last_use;
mod m20261204_000011_bind_access_tokens_to_addresses;
mod m20261204_000012_scope_access_tokens;
mod m20261204_000013_create_lifecycle_pending;

/// Runs token-service's migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_initial_schema::Migration),
            Box::new(m20261122_000002_create_commands_and_team_members::Migration),
            Box::new(m20261123_000003_create_revocation_events::Migration),
            Box::new(m20261201_000004_add_revocation_log_row::Migration),
            Box::new(m20261202_000005_create_lifecycle_log::Migration),
            Box::new(m20261202_000006_create_webhook_endpoints::Migration),
            Box::new(m20261203_000007_index_lifecycle_log_for_audit::Migration),
            Box::new(m20261203_000008_create_access_token_superseded_secrets::Migration),
            Box::new(m20261203_000009_create_scheduled_jobs::Migration),
            Box::new(m20261203_000010_record_access_token_last_use::Migration),
            Box::new(m20261204_000011_bind_access_tokens_to_addresses::Migration),
            Box::new(m20261204_000012_scope_access_tokens::Migration),
            Box::new(m20261204_000013_create_lifecycle_pending::Migration),
        ]
    }
}

/// A `CREATE TABLE` statement whose text columns compare byte for byte on every backend.
/// MySQL and MariaDB default to case-insensitive collations, under which an id, a username or
/// a digest could equal a differently cased value; PostgreSQL and SQLite already compare
/// exactly.
pub(crate) fn exact_table(manager: &SchemaManager<'_>) -> TableCreateStatement {
    let mut table = Table::create();
    if manager.get_database_backend() == sea_orm::DatabaseBackend::MySql {
        table.character_set("utf8mb4").collate("utf8mb4_bin");
    }
    table
}
