//! The database baselines of the uncached token check: the point select by digest that a
//! cache miss needs at least, issued directly with a driver against the very database the
//! uncached target reads, at the same concurrency. `sqlx` is the driver the service uses
//! (through SeaORM); `tokio-postgres` is the figure of the fastest Rust PostgreSQL client.
//!
//! The statement reads the session stored under a token's digest (`SELECT * FROM sessions
//! WHERE token_hash = $1`, a unique index), prepared once per connection as the drivers do
//! by default; the digests are those of the scenario's tokens, each used once first so its
//! session exists.
//!
//! The write baseline inserts one row shaped like a token's (primary key and a unique
//! digest index) in a transaction of its own, into a scratch table named for the run and
//! dropped at its end. [`DbClient::insert_filler_tokens`] bulk-inserts token rows that no
//! secret opens (multi-row inserts, not the API), for the revocation scenario to revoke.

use std::sync::Arc;

use sqlx::{
    self, AssertSqlSafe, MySqlPool, PgPool, Row as _, SqlitePool, mysql::MySqlPoolOptions,
    postgres::PgPoolOptions, sqlite::SqlitePoolOptions,
};

/// Connections each baseline opens: the service's default `pool.max_connections`.
pub(crate) const POOL_SIZE: u32 = 16;

/// Connections the held-connection baseline opens: the service's default
/// `pool.check_connections` (the connections its token check reads through).
pub(crate) const HELD_SIZE: u32 = 8;

const SELECT_PG: &str = "SELECT * FROM sessions WHERE token_hash = $1";
const SELECT_OTHERS: &str = "SELECT * FROM sessions WHERE token_hash = ?";

/// `$body` once per sqlx pool type (`$pool` bound to the pool), `$other` for tokio-postgres
/// (its clients matched by `$clients`):
/// the statements are the same text, the pools different types.
macro_rules! with_sqlx_pool {
    ($client:expr, $pool:ident => $body:expr, $clients:pat => $other:expr) => {
        match $client {
            DbClient::Postgres($pool) => $body,
            DbClient::Sqlite($pool) => $body,
            DbClient::MySql($pool) => $body,
            DbClient::TokioPostgres($clients) => $other,
        }
    };
}

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
    /// sqlx's pool set up as the service's request pool: it pings a connection only when
    /// it has been unused for `token_service::store::POOL_PING_AFTER_IDLE` (sqlx's default
    /// pings on every acquire). The write baseline's pool.
    SqlxAsService,
    /// sqlx connections held outside its pool (see [`HeldConnections`]).
    SqlxHeld,
    TokioPostgres,
}

/// [`HELD_SIZE`] sqlx connections held outside sqlx's pool, worker `w` using connection
/// `w % HELD_SIZE`: sqlx's pool pings a connection when it hands it out and again when it
/// takes it back (a round trip each), which this baseline does without, as the service's
/// token check does.
#[derive(Debug)]
pub(crate) enum HeldConnections {
    Postgres(Box<[tokio::sync::Mutex<sqlx::PgConnection>]>),
    Sqlite(Box<[tokio::sync::Mutex<sqlx::SqliteConnection>]>),
    MySql(Box<[tokio::sync::Mutex<sqlx::MySqlConnection>]>),
}

impl HeldConnections {
    /// Opens [`HELD_SIZE`] connections of the driver for `url`.
    pub(crate) async fn connect(url: &str) -> Result<Self, String> {
        async fn open<C: sqlx::Connection>(
            url: &str,
        ) -> Result<Box<[tokio::sync::Mutex<C>]>, String> {
            let mut held = Vec::new();
            for _ in 0..HELD_SIZE {
                let conn = C::connect(url)
                    .await
                    .map_err(|e| format!("connect the baseline to the database: {e}"))?;
                held.push(tokio::sync::Mutex::new(conn));
            }
            Ok(held.into())
        }
        Ok(
            if url.starts_with("postgres:") || url.starts_with("postgresql:") {
                HeldConnections::Postgres(open(url).await?)
            } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
                HeldConnections::MySql(open(url).await?)
            } else {
                HeldConnections::Sqlite(open(url).await?)
            },
        )
    }

    /// As [`DbClient::select_session`], on worker `worker`'s connection.
    pub(crate) async fn select_session(&self, worker: usize, digest: &str) -> Result<(), String> {
        macro_rules! select {
            ($conns:expr, $sql:expr) => {{
                let mut conn = $conns[worker % $conns.len()].lock().await;
                sqlx::query($sql)
                    .bind(digest)
                    .fetch_optional(&mut *conn)
                    .await
                    .map(|row| row.map(|r| r.len()))
                    .map_err(|e| e.to_string())?
            }};
        }
        let found = match self {
            HeldConnections::Postgres(conns) => select!(conns, SELECT_PG),
            HeldConnections::Sqlite(conns) => select!(conns, SELECT_OTHERS),
            HeldConnections::MySql(conns) => select!(conns, SELECT_OTHERS),
        };
        session_found(found)
    }
}

/// A point select's outcome (the columns of the row it found): an error if no session was.
fn session_found(columns: Option<usize>) -> Result<(), String> {
    match columns {
        Some(columns) if columns > 0 => Ok(()),
        _ => Err("no session under one of the digests".to_owned()),
    }
}

/// A baseline pool of [`POOL_SIZE`] connections; for [`DriverKind::SqlxAsService`], pinging
/// only connections unused for the service's threshold.
fn pool_options<DB: sqlx::Database>(
    kind: DriverKind,
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    let options = options.max_connections(POOL_SIZE);
    if kind != DriverKind::SqlxAsService {
        return options;
    }
    options
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= token_service::store::POOL_PING_AFTER_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

impl DbClient {
    /// Connects `kind` to `url` with [`POOL_SIZE`] connections. `None` for tokio-postgres on
    /// a database that is not PostgreSQL.
    pub(crate) async fn connect(kind: DriverKind, url: &str) -> Result<Option<Self>, String> {
        let is_postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let err = |e: sqlx::Error| format!("connect the baseline to the database: {e}");
        Ok(Some(match kind {
            DriverKind::TokioPostgres if !is_postgres => return Ok(None),
            DriverKind::Sqlx | DriverKind::SqlxHeld | DriverKind::SqlxAsService if is_postgres => {
                DbClient::Postgres(
                    pool_options(kind, PgPoolOptions::new())
                        .connect(url)
                        .await
                        .map_err(err)?,
                )
            }
            DriverKind::Sqlx | DriverKind::SqlxHeld | DriverKind::SqlxAsService
                if url.starts_with("mysql:") || url.starts_with("mariadb:") =>
            {
                DbClient::MySql(
                    pool_options(kind, MySqlPoolOptions::new())
                        .connect(url)
                        .await
                        .map_err(err)?,
                )
            }
            DriverKind::Sqlx | DriverKind::SqlxHeld | DriverKind::SqlxAsService => {
                DbClient::Sqlite(
                    pool_options(kind, SqlitePoolOptions::new())
                        .connect(url)
                        .await
                        .map_err(err)?,
                )
            }
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
        let digests = with_sqlx_pool!(self, pool => {
            sqlx::query_scalar(SQL).fetch_all(pool).await.map_err(err)?
        }, clients => clients[0]
            .0
            .query(SQL, &[])
            .await
            .map_err(|e| format!("read the session digests: {e}"))?
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect());
        Ok(digests)
    }

    /// Creates the write baseline's scratch table (named for the run), which
    /// [`DbClient::insert_row`] fills and [`DbClient::drop_table`] removes.
    pub(crate) async fn create_write_table(&self, table: &str) -> Result<(), String> {
        let create = format!(
            "CREATE TABLE {table} (id VARCHAR(26) NOT NULL PRIMARY KEY, \
             token_hash VARCHAR(64) NOT NULL, user_id VARCHAR(26) NOT NULL, \
             description VARCHAR(512) NOT NULL, create_at BIGINT NOT NULL)"
        );
        let index = format!("CREATE UNIQUE INDEX {table}_hash ON {table} (token_hash)");
        let err = |e: sqlx::Error| format!("create the write baseline's table: {e}");
        with_sqlx_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(create.clone())).execute(pool).await.map_err(err)?;
            sqlx::query(AssertSqlSafe(index.clone())).execute(pool).await.map_err(err)?;
        }, _ => return Err("the write baseline uses sqlx".into()));
        Ok(())
    }

    /// Drops `table` (the end of a run; an error is only reported).
    pub(crate) async fn drop_table(&self, table: &str) {
        let drop = format!("DROP TABLE {table}");
        let dropped = with_sqlx_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(drop.clone())).execute(pool).await.map(|_| ())
        }, _ => Ok(()));
        if let Err(e) = dropped {
            eprintln!("could not drop the scratch table {table}: {e}");
        }
    }

    /// The write baseline: one row (`row`, a fresh number) inserted into `table` in a
    /// transaction of its own.
    pub(crate) async fn insert_row(
        &self,
        table: &str,
        row: u64,
        ids: &IdSource,
    ) -> Result<(), String> {
        let filler = ids.filler(row);
        let err = |e: sqlx::Error| e.to_string();
        with_sqlx_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(err)?;
            let mut insert = sqlx::QueryBuilder::new(format!(
                "INSERT INTO {table} (id, token_hash, user_id, description, create_at) "
            ));
            insert.push_values([&filler], |mut b, f| {
                b.push_bind(f.id.as_str())
                    .push_bind(f.digest.as_str())
                    .push_bind(ids.user_id.as_str())
                    .push_bind("loadgen write baseline")
                    .push_bind(f.create_at);
            });
            insert.build().execute(&mut *tx).await.map_err(err)?;
            tx.commit().await.map_err(err)?;
        }, _ => return Err("the write baseline uses sqlx".into()));
        Ok(())
    }

    /// Inserts `n` personal access tokens of `ids.user_id` that no secret opens (random
    /// digests), 500 rows per statement, and returns their ids.
    pub(crate) async fn insert_filler_tokens(
        &self,
        ids: &IdSource,
        n: u64,
    ) -> Result<Vec<String>, String> {
        self.insert_filler_range(ids, 0..n).await
    }

    /// As [`DbClient::insert_filler_tokens`], rows number `rows` of `ids` (a later call with
    /// the next range adds more without repeating an id).
    pub(crate) async fn insert_filler_range(
        &self,
        ids: &IdSource,
        rows: std::ops::Range<u64>,
    ) -> Result<Vec<String>, String> {
        const BATCH: u64 = 500;
        let err = |e: sqlx::Error| format!("insert the filler tokens: {e}");
        let n = rows.end;
        let mut created = Vec::with_capacity(usize::try_from(rows.end - rows.start).unwrap_or(0));
        let mut next = rows.start;
        while next < n {
            let rows: Vec<Filler> = (next..n.min(next + BATCH)).map(|i| ids.filler(i)).collect();
            next += BATCH;
            with_sqlx_pool!(self, pool => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO user_access_tokens (id, token_hash, user_id, description, \
                     is_active, expires_at, create_at, last_used_at, last_user_agent) ",
                );
                insert.push_values(&rows, |mut b, f| {
                    b.push_bind(f.id.as_str())
                        .push_bind(f.digest.as_str())
                        .push_bind(ids.user_id.as_str())
                        .push_bind("loadgen filler")
                        .push_bind(true)
                        .push_bind(0_i64)
                        .push_bind(f.create_at)
                        .push_bind(0_i64)
                        .push_bind("");
                });
                insert.build().execute(pool).await.map_err(err)?;
            }, _ => return Err("the filler tokens are inserted with sqlx".into()));
            created.extend(rows.into_iter().map(|f| f.id));
        }
        Ok(created)
    }

    /// Refreshes the planner's statistics of `user_access_tokens` (after a bulk load, as an
    /// operator or autovacuum would; without them PostgreSQL may sort the whole table for a
    /// page instead of walking the primary key). On PostgreSQL also vacuums it, as
    /// autovacuum does after many inserts: the visibility map lets an index-only scan (the
    /// ids of a page by number) skip the table's rows.
    pub(crate) async fn analyze_tokens(&self) -> Result<(), String> {
        let sql = match self {
            DbClient::MySql(_) => "ANALYZE TABLE user_access_tokens",
            DbClient::Sqlite(_) => "ANALYZE user_access_tokens",
            _ => "VACUUM ANALYZE user_access_tokens",
        };
        let err = |e: sqlx::Error| format!("analyze the tokens table: {e}");
        with_sqlx_pool!(self, pool => {
            sqlx::query(sql).execute(pool).await.map_err(err)?;
        }, _ => return Err("the tokens table is analysed with sqlx".into()));
        Ok(())
    }

    /// Rows in `user_access_tokens` (every user's tokens, any state).
    pub(crate) async fn count_tokens(&self) -> Result<u64, String> {
        const SQL: &str = "SELECT COUNT(*) FROM user_access_tokens";
        let err = |e: sqlx::Error| format!("count the tokens: {e}");
        let n: i64 = with_sqlx_pool!(self, pool => {
            sqlx::query_scalar(SQL).fetch_one(pool).await.map_err(err)?
        }, _ => return Err("the tokens are counted with sqlx".into()));
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Reads the session stored under `digest` (worker `worker`'s connection for
    /// tokio-postgres); an error if there is none.
    pub(crate) async fn select_session(&self, worker: usize, digest: &str) -> Result<(), String> {
        let sql = match self {
            DbClient::Postgres(_) => SELECT_PG,
            _ => SELECT_OTHERS,
        };
        let found = with_sqlx_pool!(self, pool => sqlx::query(sql)
            .bind(digest)
            .fetch_optional(pool)
            .await
            .map(|row| row.map(|r| r.len()))
            .map_err(|e| e.to_string())?,
        clients => {
            let (client, statement) = &clients[worker % clients.len()];
            client
                .query_opt(statement, &[&digest])
                .await
                .map(|row| row.map(|r| r.len()))
                .map_err(|e| e.to_string())?
        });
        session_found(found)
    }
}

/// Ids and digests for rows the load generator writes itself: unique per run (a seed from
/// the clock and the process) and per row number, in Mattermost's id alphabet.
#[derive(Debug, Clone)]
pub(crate) struct IdSource {
    seed: u64,
    /// The user the rows belong to.
    pub(crate) user_id: String,
}

/// One row's values.
#[derive(Debug)]
pub(crate) struct Filler {
    pub(crate) id: String,
    pub(crate) digest: String,
    pub(crate) create_at: i64,
}

impl IdSource {
    pub(crate) fn new(user_id: String) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = splitmix(now.as_nanos() as u64 ^ u64::from(std::process::id()));
        Self { seed, user_id }
    }

    /// A short name for the run (8 hex digits of the seed), for scratch tables.
    pub(crate) fn tag(&self) -> String {
        format!("{:08x}", self.seed as u32)
    }

    /// Row `n`'s id (26 characters: the seed's 64 bits and `n`'s 64, base 32) and digest
    /// (64 hex digits).
    pub(crate) fn filler(&self, n: u64) -> Filler {
        const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
        let wide = (u128::from(self.seed) << 64) | u128::from(n);
        let id = (0..26)
            .map(|i| char::from(ALPHABET[((wide >> (5 * i)) & 31) as usize]))
            .collect();
        let mut state = self.seed ^ n.rotate_left(32);
        let digest = (0..4)
            .map(|_| {
                state = splitmix(state);
                format!("{state:016x}")
            })
            .collect();
        let create_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Filler {
            id,
            digest,
            create_at,
        }
    }
}

/// SplitMix64's step: a well-mixed 64-bit value from any other.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
