//! The connections the token check reads through, held outside sqlx's pool.
//!
//! sqlx's pool pings a connection when it hands it out and, always, again when it takes it
//! back: two round trips around the check's one statement, each waking the database and the
//! driver. The check's reads go instead through a small fixed set of connections (`pool.
//! check_connections`), each opened when first needed and kept until shutdown closes it
//! ([`HeldConnections::close`]); a check takes the first free one, so checks one at a time
//! keep to one connection:
//!
//! - a connection is pinged only when it may be unfit: after a statement that did not finish
//!   (the check was cancelled mid-read, so a reply may be left unread: the ping drains it, as
//!   sqlx's pool does on every release) or after [`PING_AFTER_IDLE`] unused;
//! - a statement that fails because the connection was lost (the database restarted, a proxy
//!   cut it) is sent once more on a fresh connection, so a restart costs no failed check;
//! - waiting for a free connection is first come, first served, bounded by the pool's
//!   acquire timeout, and answered like the pool's own timeout.
//!
//! A check holds its connection (and only that) across the statement's await: the
//! connection is the resource. Nothing else is locked.
//!
//! The PostgreSQL seal of the lifecycle log holds a set of one for its transactions
//! ([`HeldConnections::hold`]): a hold dropped before it settled closes its connection, so
//! a transaction cut short never serves the next seal.

use std::time::{Duration, Instant};

use sea_orm::sqlx::{
    self, ConnectOptions as _, Connection as _, Database, Encode, Executor, IntoArguments, Pool,
    Type,
};
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

use super::error::means_connection_lost;

/// A connection unused for this long is pinged before its next statement (a firewall or
/// proxy may have dropped it silently; the ping finds out before a check waits on it).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// The check's connections to one database.
pub struct HeldConnections<DB: Database> {
    slots: Box<[Mutex<Slot<DB>>]>,
    /// One permit per slot: waiting checks queue here, in order.
    free: Semaphore,
    /// How the slots are opened: the request pool's options (URL, TLS, statement cache),
    /// adjusted for the set's use ([`HeldConnections::with_options`]).
    options: std::sync::Arc<<DB::Connection as sqlx::Connection>::Options>,
    connect_timeout: Duration,
    acquire_timeout: Duration,
}

struct Slot<DB: Database> {
    conn: Option<DB::Connection>,
    /// False from a statement's start until its end: a statement cancelled in between may
    /// leave a reply unread.
    settled: bool,
    last_used: Instant,
}

impl<DB: Database> std::fmt::Debug for HeldConnections<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldConnections")
            .field("slots", &self.slots.len())
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl<DB: Database> HeldConnections<DB> {
    /// Closes the open connections (telling the database, so it logs no lost client),
    /// waiting at most `patience` for a check still reading; reopened if used again.
    pub async fn close(&self, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        for slot in self.slots.iter() {
            let Ok(mut slot) = tokio::time::timeout_at(deadline, slot.lock()).await else {
                return;
            };
            if let Some(conn) = slot.conn.take() {
                let _ = tokio::time::timeout_at(deadline, conn.close()).await;
            }
        }
    }

    /// How many connections the set holds at most.
    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// How many of the connections are open now (those busy count as open).
    pub fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.try_lock().map_or(true, |s| s.conn.is_some()))
            .count()
    }
}

impl<DB: Database> HeldConnections<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    DB::Arguments: IntoArguments<DB>,
{
    /// `size` (at least one) connections opened like `pool`'s when first needed.
    pub fn new(
        pool: Pool<DB>,
        size: usize,
        connect_timeout: Duration,
        acquire_timeout: Duration,
    ) -> Self {
        let size = size.max(1);
        Self {
            slots: (0..size)
                .map(|_| {
                    Mutex::new(Slot {
                        conn: None,
                        settled: true,
                        last_used: Instant::now(),
                    })
                })
                .collect(),
            free: Semaphore::new(size),
            options: pool.connect_options(),
            connect_timeout,
            acquire_timeout,
        }
    }

    /// The set, its connections opened with the options `adjust` makes of the pool's.
    pub fn with_options(
        mut self,
        adjust: impl FnOnce(
            <DB::Connection as sqlx::Connection>::Options,
        ) -> <DB::Connection as sqlx::Connection>::Options,
    ) -> Self {
        self.options = std::sync::Arc::new(adjust((*self.options).clone()));
        self
    }

    /// The rows `sql` returns with `values` bound in order.
    pub async fn fetch_rows(
        &self,
        sql: &'static str,
        values: &[&str],
    ) -> Result<Vec<DB::Row>, sqlx::Error> {
        let (mut slot, _permit) = self.acquire().await?;
        let mut retried = false;
        loop {
            let conn = self.checkout(&mut slot).await?;
            let mut query = sqlx::query::<DB>(sql);
            for value in values {
                query = query.bind(*value);
            }
            match query.fetch_all(conn).await {
                Ok(rows) => {
                    slot.settled = true;
                    slot.last_used = Instant::now();
                    return Ok(rows);
                }
                Err(e) if means_connection_lost(&e) => {
                    slot.conn = None;
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
                Err(e) => {
                    // The database answered (a constraint, a type): the connection is sound.
                    slot.settled = true;
                    return Err(e);
                }
            }
        }
    }

    /// One connection of the set for a sequence of statements (a transaction), opened or
    /// pinged first as [`HeldConnections::fetch_rows`] would. Call [`Held::settle`] when the
    /// sequence ended cleanly; a `Held` dropped unsettled (a statement failed mid-way, or the
    /// future was dropped) closes its connection, so a transaction left open with its locks
    /// dies with it instead of serving the next user.
    pub async fn hold(&self) -> Result<Held<'_, DB>, sqlx::Error> {
        let (mut slot, permit) = self.acquire().await?;
        self.checkout(&mut slot).await?;
        Ok(Held {
            slot,
            _permit: permit,
        })
    }

    /// A free slot, first come first served, within the acquire timeout.
    async fn acquire(
        &self,
    ) -> Result<(MutexGuard<'_, Slot<DB>>, SemaphorePermit<'_>), sqlx::Error> {
        let permit = match self.free.try_acquire() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(self.acquire_timeout, self.free.acquire())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?,
        };
        // The first free slot: checks one at a time keep using the first connection, and a
        // further one is opened only when that many checks read at once. Holding a permit,
        // at least one slot is free (each holder locks at most one).
        loop {
            for slot in self.slots.iter() {
                if let Ok(slot) = slot.try_lock() {
                    return Ok((slot, permit));
                }
            }
            // None free only while a metrics scrape counts the slots (for an instant).
            tokio::task::yield_now().await;
        }
    }

    /// The slot's connection, marked unsettled until its statement ends: opened if the slot
    /// has none, pinged first if it may be unfit (and replaced when the ping fails).
    async fn checkout<'s>(
        &self,
        slot: &'s mut Slot<DB>,
    ) -> Result<&'s mut DB::Connection, sqlx::Error> {
        let fit = match slot.conn.as_mut() {
            None => false,
            Some(_) if slot.settled && slot.last_used.elapsed() < PING_AFTER_IDLE => true,
            Some(conn) => matches!(
                tokio::time::timeout(self.connect_timeout, conn.ping()).await,
                Ok(Ok(()))
            ),
        };
        let conn = match slot.conn.take() {
            Some(conn) if fit => conn,
            _ => tokio::time::timeout(self.connect_timeout, self.options.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        };
        slot.settled = false;
        Ok(slot.conn.insert(conn))
    }
}

/// A connection of a [`HeldConnections`] set, held by one user for several statements.
pub struct Held<'a, DB: Database> {
    slot: MutexGuard<'a, Slot<DB>>,
    _permit: SemaphorePermit<'a>,
}

impl<DB: Database> Held<'_, DB> {
    /// The connection.
    pub fn connection(&mut self) -> &mut DB::Connection {
        self.slot
            .conn
            .as_mut()
            .expect("a held slot has its connection until dropped")
    }

    /// The statements ended cleanly (committed or rolled back): the connection may serve
    /// the next user without a ping.
    pub fn settle(mut self) {
        self.slot.settled = true;
        self.slot.last_used = Instant::now();
    }
}

impl<DB: Database> std::fmt::Debug for Held<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("settled", &self.slot.settled)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Drop for Held<'_, DB> {
    fn drop(&mut self) {
        if !self.slot.settled {
            // Dropping the connection closes its socket; the database rolls back whatever
            // it had open.
            self.slot.conn = None;
            self.slot.settled = true;
        }
    }
}

/// The check's connections, for the store's backend.
#[derive(Debug)]
pub enum CheckConnections {
    Postgres(HeldConnections<sqlx::Postgres>),
    MySql(HeldConnections<sqlx::MySql>),
    Sqlite(HeldConnections<sqlx::Sqlite>),
    /// A backend the check has no statement for (the lookups say so).
    Unsupported,
}

impl CheckConnections {
    /// Closes the open connections (see [`HeldConnections::close`]).
    pub async fn close(&self, patience: Duration) {
        match self {
            CheckConnections::Postgres(held) => held.close(patience).await,
            CheckConnections::MySql(held) => held.close(patience).await,
            CheckConnections::Sqlite(held) => held.close(patience).await,
            CheckConnections::Unsupported => {}
        }
    }

    /// How many of the connections are open now.
    pub fn open(&self) -> usize {
        match self {
            CheckConnections::Postgres(held) => held.open(),
            CheckConnections::MySql(held) => held.open(),
            CheckConnections::Sqlite(held) => held.open(),
            CheckConnections::Unsupported => 0,
        }
    }

    /// `options.check_connections` connections opened like `db`'s pool's, when first needed.
    pub fn beside(db: &sea_orm::DatabaseConnection, options: &super::PoolOptions) -> Self {
        use sea_orm::DbBackend;
        let size = usize::try_from(options.check_connections).unwrap_or(usize::MAX);
        let (connect, acquire) = (options.connect_timeout, options.acquire_timeout);
        match db.get_database_backend() {
            // Generic plans: the check's statements look rows up by unique keys, whose
            // generic plan is the one a custom plan would find; planning again at each run
            // (PostgreSQL's default keeps custom plans for the batched lookup, whose
            // generic cost it estimates higher) cost more than running the statement.
            DbBackend::Postgres => CheckConnections::Postgres(
                HeldConnections::new(
                    db.get_postgres_connection_pool().clone(),
                    size,
                    connect,
                    acquire,
                )
                .with_options(|options| {
                    options.options([("plan_cache_mode", "force_generic_plan")])
                }),
            ),
            DbBackend::MySql => CheckConnections::MySql(HeldConnections::new(
                db.get_mysql_connection_pool().clone(),
                size,
                connect,
                acquire,
            )),
            DbBackend::Sqlite => CheckConnections::Sqlite(HeldConnections::new(
                db.get_sqlite_connection_pool().clone(),
                size,
                connect,
                acquire,
            )),
            _ => CheckConnections::Unsupported,
        }
    }
}
