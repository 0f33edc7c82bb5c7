//! The database baselines of the uncached token check: the point select by digest that a
//! cache miss needs at least, issued directly with a driver against the very database the
//! uncached target reads, at the same concurrency. `sqlx` is the driver the service uses
//! (through SeaORM); `tokio-postgres` is the figure of the fastest Rust PostgreSQL client.
//!
//! The statement reads the session stored under a token's digest (`SELECT * FROM sessions
//! WHERE token_hash = $1`, a unique index), prepared once per connection as the drivers do
//! by default; the digests are those of the scenario's tokens, each used once first so its
//! session exists.

use std::sync::Arc;

use sqlx::{
    self, MySqlPool, PgPool, Row as _, SqlitePool, mysql::MySqlPoolOptions,
    postgres::PgPoolOptions, sqlite::SqlitePoolOptions,
};

/// Connections each baseline opens: the service's default `pool.max_connections`.
pub(crate) const POOL_SIZE: u32 = 16;

const SELECT_PG: &str = "SELECT * FROM sessions WHERE token_hash = $1";
const SELECT_OTHERS: &str = "SELECT * FROM sessions WHERE token_hash = ?";

/// A connected driver.
#[derive(Debug, Clone)]
pub(crate) enum DbClient {
    Postgres(PgPool),
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    /// One client per connection (each pipelines the queries of the workers sharing it).
    TokioPostgres(Arc<[(tokio_postgres::Client, tokio_postgres::Statement)]>),
}

/// Which driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriverKind {
    Sqlx,
    TokioPostgres,
}

impl DbClient {
    /// Connects `kind` to `url` with [`POOL_SIZE`] connections. `None` for tokio-postgres on
    /// a database that is not PostgreSQL.
    pub(crate) async fn connect(kind: DriverKind, url: &str) -> Result<Option<Self>, String> {
        let is_postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let err = |e: sqlx::Error| format!("connect the baseline to the database: {e}");
        Ok(Some(match kind {
            DriverKind::Sqlx if is_postgres => DbClient::Postgres(
                PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .connect(url)
                    .await
                    .map_err(err)?,
            ),
            DriverKind::Sqlx if url.starts_with("mysql:") || url.starts_with("mariadb:") => {
                DbClient::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(POOL_SIZE)
                        .connect(url)
                        .await
                        .map_err(err)?,
                )
            }
            DriverKind::Sqlx => DbClient::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .connect(url)
                    .await
                    .map_err(err)?,
            ),
            DriverKind::TokioPostgres if !is_postgres => return Ok(None),
            DriverKind::TokioPostgres => {
                let mut clients = Vec::new();
                for _ in 0..POOL_SIZE {
                    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                        .await
                        .map_err(|e| format!("tokio-postgres connect: {e}"))?;
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    let statement = client
                        .prepare(SELECT_PG)
                        .await
                        .map_err(|e| format!("tokio-postgres prepare: {e}"))?;
                    clients.push((client, statement));
                }
                DbClient::TokioPostgres(clients.into())
            }
        }))
    }

    /// The stored digests of every session minted for a personal access token.
    pub(crate) async fn session_digests(&self) -> Result<Vec<String>, String> {
        const SQL: &str = "SELECT token_hash FROM sessions WHERE user_access_token_id IS NOT NULL";
        let err = |e: sqlx::Error| format!("read the session digests: {e}");
        let digests = match self {
            DbClient::Postgres(pool) => {
                sqlx::query_scalar(SQL).fetch_all(pool).await.map_err(err)?
            }
            DbClient::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.map_err(err)?,
            DbClient::MySql(pool) => sqlx::query_scalar(SQL).fetch_all(pool).await.map_err(err)?,
            DbClient::TokioPostgres(clients) => clients[0]
                .0
                .query(SQL, &[])
                .await
                .map_err(|e| format!("read the session digests: {e}"))?
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect(),
        };
        Ok(digests)
    }

    /// Reads the session stored under `digest` (worker `worker`'s connection for
    /// tokio-postgres); an error if there is none.
    pub(crate) async fn select_session(&self, worker: usize, digest: &str) -> Result<(), String> {
        let found = match self {
            DbClient::Postgres(pool) => sqlx::query(SELECT_PG)
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map(|row| row.map(|r| r.len()))
                .map_err(|e| e.to_string())?,
            DbClient::Sqlite(pool) => sqlx::query(SELECT_OTHERS)
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map(|row| row.map(|r| r.len()))
                .map_err(|e| e.to_string())?,
            DbClient::MySql(pool) => sqlx::query(SELECT_OTHERS)
                .bind(digest)
                .fetch_optional(pool)
                .await
                .map(|row| row.map(|r| r.len()))
                .map_err(|e| e.to_string())?,
            DbClient::TokioPostgres(clients) => {
                let (client, statement) = &clients[worker % clients.len()];
                client
                    .query_opt(statement, &[&digest])
                    .await
                    .map(|row| row.map(|r| r.len()))
                    .map_err(|e| e.to_string())?
            }
        };
        match found {
            Some(columns) if columns > 0 => Ok(()),
            _ => Err("no session under one of the digests".to_owned()),
        }
    }
}
