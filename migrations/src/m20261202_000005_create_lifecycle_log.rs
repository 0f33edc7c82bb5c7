//! The lifecycle log: one append-only row per state change (a user, token, session, command,
//! team membership or webhook created, changed or revoked), written in the transaction of
//! the change. It supersedes `revocation_events`: the rows that take something away carry
//! `revokes` (the kind) and `revokes_id` and are marked `revoking` (indexed with the id, so
//! replicas read them in order without walking the other records). This migration moves the
//! revocation events over (same ids, so `WatchRevocations` positions stay valid) and drops
//! the old table.
//!
//! Ids are assigned by the service under the log's lock (`service_meta` row `lifecycle_log`,
//! whose value is "<newest id> <newest hash>"), so they follow commit order. Each row's `hash`
//! chains over the previous row's. Rows moved from `revocation_events` carry no hash: the
//! chain starts after them (row `lifecycle_log_chain`: "<id> <hash>" of the record before the
//! first chained one). `lifecycle_log_pruned` holds the highest id deleted by pruning (it
//! replaces the `revocation_log` row, with its value).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "lifecycle_log";

/// Columns that get an index (with `id`, for newest-first pages of one subject).
const INDEXED: [&str; 6] = [
    "user_id",
    "token_id",
    "session_id",
    "actor_id",
    "request_id",
    "credential_hmac",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table(TABLE)
                    .if_not_exists()
                    .col(big_integer("id").primary_key())
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
                    // 1 or 0 (a number: PostgreSQL re-checks a boolean index key as a filter).
                    .col(small_integer("revoking").default(0))
                    .col(string_len("hash", 64).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_lifecycle_log_create_at")
                    .table(TABLE)
                    .col("create_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_lifecycle_log_revoking")
                    .table(TABLE)
                    .col("revoking")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        for column in INDEXED {
            manager
                .create_index(
                    Index::create()
                        .name(format!("idx_lifecycle_log_{column}"))
                        .table(TABLE)
                        .col(column)
                        .col("id")
                        .to_owned(),
                )
                .await?;
        }

        let db = manager.get_connection();
        // The revocation events, as records whose actor is not known.
        db.execute_unprepared(
            "INSERT INTO lifecycle_log (id, create_at, action, actor_type, user_id, token_id, \
             session_id, detail, revokes, revokes_id, revoking) \
             SELECT id, create_at, \
               CASE kind WHEN 'session' THEN 'session.revoked' \
                 WHEN 'access_token' THEN 'access_token.revoked' \
                 WHEN 'user' THEN 'user.sessions_revoked' \
                 ELSE 'sessions.all_revoked' END, \
               'unknown', \
               CASE kind WHEN 'user' THEN subject_id ELSE '' END, \
               CASE kind WHEN 'access_token' THEN subject_id ELSE '' END, \
               CASE kind WHEN 'session' THEN subject_id ELSE '' END, \
               '{\"moved_from\":\"revocation_events\"}', kind, subject_id, 1 \
             FROM revocation_events",
        )
        .await?;
        let newest = newest_id(db).await?;
        let pruned = meta_value(db, "revocation_log")
            .await?
            .unwrap_or("0".into());
        for (name, value) in [
            ("lifecycle_log", format!("{newest} ")),
            ("lifecycle_log_chain", format!("{newest} ")),
            ("lifecycle_log_pruned", pruned),
        ] {
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table("service_meta")
                        .columns(["name", "value"])
                        .values_panic([name.into(), value.into()])
                        .to_owned(),
                )
                .await?;
        }
        delete_meta(manager, &["revocation_log"]).await?;
        manager
            .drop_table(Table::drop().table("revocation_events").to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                crate::exact_table(manager)
                    .table("revocation_events")
                    .if_not_exists()
                    .col(big_integer("id").auto_increment().primary_key())
                    .col(string_len("kind", 16))
                    .col(string_len("subject_id", 26).default(""))
                    .col(big_integer("create_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_revocation_events_create_at")
                    .table("revocation_events")
                    .col("create_at")
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO revocation_events (id, kind, subject_id, create_at) \
             SELECT id, revokes, revokes_id, create_at FROM lifecycle_log WHERE revokes <> ''",
        )
        .await?;
        if db.get_database_backend() == DatabaseBackend::Postgres {
            // Explicit ids do not move the serial's sequence.
            db.execute_unprepared(
                "SELECT setval(pg_get_serial_sequence('revocation_events', 'id'), \
                 COALESCE((SELECT MAX(id) FROM revocation_events), 0) + 1, false)",
            )
            .await?;
        }
        let pruned = meta_value(db, "lifecycle_log_pruned")
            .await?
            .unwrap_or("0".into());
        manager
            .exec_stmt(
                Query::insert()
                    .into_table("service_meta")
                    .columns(["name", "value"])
                    .values_panic(["revocation_log".into(), pruned.into()])
                    .to_owned(),
            )
            .await?;
        delete_meta(
            manager,
            &[
                "lifecycle_log",
                "lifecycle_log_chain",
                "lifecycle_log_pruned",
            ],
        )
        .await?;
        manager
            .drop_table(Table::drop().table(TABLE).to_owned())
            .await
    }
}

async fn newest_id(db: &SchemaManagerConnection<'_>) -> Result<i64, DbErr> {
    let row = db
        .query_one(
            Query::select()
                .expr_as(Expr::cust("COALESCE(MAX(id), 0)"), "newest")
                .from(TABLE),
        )
        .await?
        .ok_or_else(|| DbErr::Custom("MAX(id) returned no row".into()))?;
    row.try_get("", "newest")
}

async fn meta_value(db: &SchemaManagerConnection<'_>, name: &str) -> Result<Option<String>, DbErr> {
    let row = db
        .query_one(
            Query::select()
                .column("value")
                .from("service_meta")
                .and_where(Expr::col("name").eq(name)),
        )
        .await?;
    row.map(|row| row.try_get("", "value")).transpose()
}

async fn delete_meta(manager: &SchemaManager<'_>, names: &[&str]) -> Result<(), DbErr> {
    manager
        .exec_stmt(
            Query::delete()
                .from_table("service_meta")
                .and_where(Expr::col("name").is_in(names.iter().copied()))
                .to_owned(),
        )
        .await
}
