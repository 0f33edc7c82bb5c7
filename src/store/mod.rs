//! The store: SeaORM entities and the queries the domain needs, returning domain records.
//! Nothing outside this module names a SeaORM type.

mod access_tokens;
mod batched_writes;
mod commands;
mod connect;
mod credentials;
mod entities;
mod error;
pub mod held_connections;
mod jobs;
mod leaks;
mod lifecycle;
mod rotation;
mod sessions;
mod token_usage;
mod users;
mod webhooks;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    Statement,
};
use sea_orm_migration::MigratorTrait;
use token_service_migrations::Migrator;

use crate::domain::error::{Error, Result};
pub use connect::check_database_url;
pub use credentials::{
    access_token_with_owner_sql, credential_by_digest_sql, credentials_by_digests_sql,
};
pub use lifecycle::{ChainLink, LogWakeups};

/// A pooled connection unused this long is pinged before it is handed out (sqlx pings on
/// every acquire by default: a round trip before each write, a third of a one-statement
/// write's). A connection the database ended is then found before a statement is sent on
/// it, unless the database restarted within this time of the connection's last use.
pub const POOL_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// Connections held for the token check's reads (see [`held_connections`]).
    pub check_connections: u32,
    /// Shared statements of cache misses at once on PostgreSQL (see
    /// [`credentials::CredentialLookups`]).
    pub check_batches: u32,
}

/// How many connections a pool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections.
    pub connections: u32,
    /// Open and idle.
    pub idle: usize,
    /// The pool's limit.
    pub max: u32,
    /// Open connections of the token check's own set (outside the pool).
    pub check_connections: usize,
}

/// The state of one migration, for `token-service migrate status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Chains the lifecycle log's hashes; set by the domain context (appends need it).
    audit_key: Option<std::sync::Arc<crate::domain::lifecycle::AuditKey>>,
    /// The lifecycle log's seal runs (group commit; see `lifecycle`).
    sealer: std::sync::Arc<lifecycle::Sealer>,
    /// The seal's own connection on PostgreSQL and MariaDB (see
    /// [`lifecycle::SealConnection`]).
    seal: lifecycle::SealConnection,
    /// The token check's connections, outside the pool (see [`held_connections`]).
    check: std::sync::Arc<held_connections::CheckConnections>,
    /// Token creations and deletions waiting to share a statement (PostgreSQL; see
    /// [`batched_writes`]).
    token_creations: std::sync::Arc<batched_writes::Batches<batched_writes::TokenCreations>>,
    token_deletions: std::sync::Arc<batched_writes::Batches<batched_writes::TokenDeletions>>,
    /// Cache misses waiting to share a statement (PostgreSQL; see
    /// [`credentials::CredentialLookups`]).
    credential_lookups: std::sync::Arc<credentials::CredentialLookups>,
}

impl Store {
    /// Connects. SQLite files are created if missing (with `?mode=rwc`) and switched to WAL.
    /// A server that cannot be reached is reported in the operator's terms (host and port,
    /// and why: refused, unresolvable, authentication, missing database) within the
    /// connect timeout; SQLite's own reason is kept without the driver's prefixes.
    pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Self> {
        connect::probe_server(url, pool.connect_timeout).await?;
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool.max_connections)
            .min_connections(pool.min_connections)
            .connect_timeout(pool.connect_timeout)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire_if_idle_for(POOL_PING_AFTER_IDLE)
            .sqlx_logging(false);
        let db = Database::connect(options.clone()).await.map_err(|e| {
            match connect::sqlite_open_failure(&e).filter(|_| url.starts_with("sqlite:")) {
                Some(text) => Error::Unavailable(text.into()),
                None => Error::from(e),
            }
        })?;
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        }
        let seal = lifecycle::SealConnection::beside(&db, options, pool).await?;
        let check = std::sync::Arc::new(held_connections::CheckConnections::beside(&db, pool));
        Ok(Self {
            db,
            audit_key: None,
            sealer: std::sync::Arc::default(),
            seal,
            check,
            token_creations: std::sync::Arc::default(),
            token_deletions: std::sync::Arc::default(),
            credential_lookups: std::sync::Arc::new(credentials::CredentialLookups::new(
                usize::try_from(pool.check_batches).unwrap_or(usize::MAX),
            )),
        })
    }

    /// This store, appending to the lifecycle log with hashes chained under `key`.
    pub fn with_audit_key(mut self, key: crate::domain::lifecycle::AuditKey) -> Self {
        self.audit_key = Some(std::sync::Arc::new(key));
        self
    }

    fn audit_key(&self) -> Result<&crate::domain::lifecycle::AuditKey> {
        self.audit_key
            .as_deref()
            .ok_or_else(|| Error::internal("the lifecycle log is written without its audit key"))
    }

    /// Begins a transaction whose first statement writes (an insert): on SQLite that
    /// statement takes the write lock itself (waiting for other writers, as no read came
    /// first), so the lock-taking no-op of [`Store::begin_write`] is not needed.
    pub(crate) async fn begin_with_write(&self) -> Result<sea_orm::DatabaseTransaction> {
        use sea_orm::TransactionTrait;
        Ok(self.db.begin().await?)
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock first (a
    /// no-op UPDATE), so a later read-then-write waits for other writers (busy timeout)
    /// instead of failing with SQLITE_BUSY on the lock upgrade.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub(crate) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction> {
        use sea_orm::TransactionTrait;
        let txn = self.db.begin().await?;
        if self.db.get_database_backend() == DbBackend::Sqlite {
            txn.execute_unprepared("UPDATE service_meta SET value = value WHERE 0 = 1")
                .await?;
        }
        Ok(txn)
    }

    /// Which database this is: "sqlite", "postgres" or "mysql".
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            DbBackend::Sqlite => "sqlite",
            DbBackend::Postgres => "postgres",
            DbBackend::MySql => "mysql",
            _ => "unknown",
        }
    }

    /// Applies pending migrations.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn migrate_up(&self) -> Result<()> {
        Ok(Migrator::up(&self.db, None).await?)
    }

    /// Rolls back the last `steps` migrations.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn migrate_down(&self, steps: u32) -> Result<()> {
        Ok(Migrator::down(&self.db, Some(steps)).await?)
    }

    /// Every known migration and whether it is applied.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>> {
        let applied: Vec<String> = Migrator::get_applied_migrations(&self.db)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(Migrator::migrations()
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: applied.iter().any(|a| a == m.name()),
            })
            .collect())
    }

    /// Whether the database answers a trivial query.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn ping(&self) -> Result<()> {
        let backend = self.db.get_database_backend();
        self.db
            .query_one_raw(Statement::from_string(backend, "SELECT 1"))
            .await?;
        Ok(())
    }

    /// The request pool's usage, and the token check's open connections.
    pub fn pool_stats(&self) -> PoolStats {
        fn of<DB: sea_orm::sqlx::Database>(
            pool: &sea_orm::sqlx::Pool<DB>,
            check_connections: usize,
        ) -> PoolStats {
            PoolStats {
                connections: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
                check_connections,
            }
        }
        let check = self.check.open();
        match self.db.get_database_backend() {
            DbBackend::Sqlite => of(self.db.get_sqlite_connection_pool(), check),
            DbBackend::Postgres => of(self.db.get_postgres_connection_pool(), check),
            _ => of(self.db.get_mysql_connection_pool(), check),
        }
    }

    /// Closes the pool and the token check's connections.
    pub async fn close(self) {
        self.check.close(Duration::from_secs(1)).await;
        self.seal.close().await;
        let _ = self.db.close().await;
    }

    /// Reads a service metadata value.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn meta_value(&self, name: &str) -> Result<Option<String>> {
        Ok(entities::service_meta::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await?
            .map(|m| m.value))
    }

    /// Writes a service metadata value if none is set; returns the value now stored.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn meta_value_or_insert(&self, name: &str, value: &str) -> Result<String> {
        use sea_orm::ActiveValue::Set;
        if let Some(existing) = self.meta_value(name).await? {
            return Ok(existing);
        }
        let row = entities::service_meta::ActiveModel {
            name: Set(name.to_owned()),
            value: Set(value.to_owned()),
        };
        match entities::service_meta::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
        {
            Ok(_) => Ok(value.to_owned()),
            // Another replica initialised it first: use what it wrote.
            Err(e) if error::is_unique_violation(&e) => self
                .meta_value(name)
                .await?
                .ok_or_else(|| Error::internal("service_meta row vanished")),
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) fn join_roles(roles: &[String]) -> String {
    roles.join(" ")
}

pub(crate) fn split_roles(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_owned).collect()
}
