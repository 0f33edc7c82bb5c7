//! The token check's read: everything a presented credential's check needs (its session, the
//! session's user and personal access token, or, before a PAT's first use, the token and its
//! owner) in one indexed query, one round trip.
//!
//! The statement is plain SQL built once per backend from the entities' column lists and sent
//! with the driver (sqlx) directly on the check's own connections (`held_connections`: no
//! pool pings), not through SeaORM's connection, so the query builder's cost is paid once per
//! process, the driver's statement cache prepares it once per connection, and the row is read
//! by column position. Its two branches are each served by a
//! unique index on `token_hash` (checked on PostgreSQL by `contract::query_plans`).
//!
//! On PostgreSQL and SQLite, misses that arrive while others are being read share the next
//! statement ([`CredentialLookups`]): the single statement's rows for each of several
//! digests, each answered with its own; a miss alone is read with the single statement at
//! once. MariaDB reads each miss alone.

use std::sync::OnceLock;

use sea_orm::{
    DbBackend,
    sqlx::{
        ColumnIndex, Database, Decode, Row, Type, mysql::MySqlRow, postgres::PgRow,
        sqlite::SqliteRow,
    },
};

use super::Store;
use super::batched_writes::{BatchQueue, caught};
use super::entities::{sessions, user_access_tokens as tokens, users};
use super::error::driver_error;
use super::held_connections::CheckConnections;
use tracing::warn;

use crate::domain::{
    error::{Error, Result},
    ids::{SessionId, TokenId},
    model::{Session, StoredCredential, StoredSession, User, UserAccessToken},
    secret::TokenDigest,
};

/// The columns of each table in the joined row, in the entities' field order (the order the
/// decoders below read them in; a unit test ties each list to its entity).
const SESSION_COLUMNS: [&str; 13] = [
    "id",
    "token_hash",
    "user_id",
    "user_access_token_id",
    "create_at",
    "expires_at",
    "last_activity_at",
    "length_ms",
    "device_id",
    "roles",
    "is_oauth",
    "expired_notify",
    "props",
];
const USER_COLUMNS: [&str; 9] = [
    "id",
    "username",
    "email",
    "roles",
    "is_bot",
    "bot_owner_id",
    "create_at",
    "update_at",
    "delete_at",
];
const TOKEN_COLUMNS: [&str; 12] = [
    "id",
    "token_hash",
    "user_id",
    "description",
    "is_active",
    "expires_at",
    "create_at",
    "last_notified_at",
    "last_used_at",
    "last_user_agent",
    "bound_cidrs",
    "scopes",
];

/// Where each table's columns start in the row: `kind` first, then the session's, the
/// user's and the token's columns. Rows are read by position: no column name is formatted
/// or looked up per value.
const SESSION_AT: usize = 1;
const USER_AT: usize = SESSION_AT + SESSION_COLUMNS.len();
const TOKEN_AT: usize = USER_AT + USER_COLUMNS.len();
/// Where a row of [`credentials_by_digests_sql`] holds the position of its digest.
const POSITION_AT: usize = TOKEN_AT + TOKEN_COLUMNS.len();

/// Which branch of the union a row comes from (`kind` column): a session (whose digest is
/// not its token's current secret's, or, [`BY_SESSION_OF_TOKEN`], is), or a token that no
/// session is stored under yet (before its first use).
const BY_SESSION: &str = "s";
const BY_SESSION_OF_TOKEN: &str = "st";
const BY_ACCESS_TOKEN: &str = "t";

/// The column list `alias.col, ...` (or NULLs, when `present` is false: the other branch of
/// the union).
fn columns(alias: &str, names: &[&str], present: bool) -> String {
    names
        .iter()
        .map(|name| {
            if present {
                format!("{alias}.{name}")
            } else {
                "NULL".to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The positional parameter of `backend` (PostgreSQL numbers it; the others bind it again for
/// each use).
fn parameter(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        "$1"
    } else {
        "?"
    }
}

/// The session branch: sessions matching `condition` with their user and token, and
/// whether that token's current secret has the session's digest (the kind: a session a
/// token's first use minted is stored under the token's digest and names that token, while
/// a login session's digest is no token's; after a rotation the token's new secret differs,
/// so the session is a plain one and a rotated-away secret is told apart by its digest).
/// `list`, if not empty, is a table the sessions are read with (listed first) and `extra`
/// columns that follow the row's.
fn session_select_with(list: &str, condition: &str, extra: &str) -> String {
    format!(
        "SELECT CASE WHEN t.token_hash = s.token_hash THEN '{BY_SESSION_OF_TOKEN}' \
         ELSE '{BY_SESSION}' END AS kind, {s}, {u}, {t}{extra} \
         FROM {list}sessions s \
         LEFT JOIN users u ON u.id = s.user_id \
         LEFT JOIN user_access_tokens t ON t.id = s.user_access_token_id \
         WHERE {condition}",
        s = columns("s", &SESSION_COLUMNS, true),
        u = columns("u", &USER_COLUMNS, true),
        t = columns("t", &TOKEN_COLUMNS, true),
    )
}

fn session_select(condition: &str) -> String {
    session_select_with("", condition, "")
}

/// The access token branch: tokens matching `condition` with their owner (`list` and
/// `extra` as for [`session_select_with`]).
fn token_select_with(list: &str, condition: &str, extra: &str) -> String {
    format!(
        "SELECT '{BY_ACCESS_TOKEN}' AS kind, {no_s}, {u}, {t}{extra} \
         FROM {list}user_access_tokens t \
         JOIN users u ON u.id = t.user_id \
         WHERE {condition}",
        u = columns("u", &USER_COLUMNS, true),
        t = columns("t", &TOKEN_COLUMNS, true),
        no_s = columns("s", &SESSION_COLUMNS, false),
    )
}

fn token_select(condition: &str) -> String {
    token_select_with("", condition, "")
}

/// The access token branch's condition by digest: no session is stored under `digest` (a
/// session's row says already whether a token has its digest: one row a digest, the token
/// read only for its first use).
fn no_session_under(digest: &str) -> String {
    format!("NOT EXISTS (SELECT 1 FROM sessions n WHERE n.token_hash = {digest})")
}

/// The statement with parameter `param`: the session branch by digest, and the access token branch
/// (a token and its owner) by the same digest.
fn by_digest_sql(param: &str) -> String {
    // A `?` (MariaDB, SQLite) is bound once per use: there the subquery names the row's
    // digest, so the statement keeps one use of the parameter a branch.
    let token_digest = if param == "?" { "t.token_hash" } else { param };
    format!(
        "{sessions} UNION ALL {tokens}",
        sessions = session_select(&format!("s.token_hash = {param}")),
        tokens = token_select(&format!(
            "t.token_hash = {param} AND {}",
            no_session_under(token_digest)
        )),
    )
}

/// A statement's text for `backend` from `cells` (PostgreSQL's, then the others': they differ
/// only in the parameter's spelling), built by `build` the first time.
fn built_once(
    backend: DbBackend,
    cells: &'static [OnceLock<String>; 2],
    build: impl FnOnce(&str) -> String,
) -> &'static str {
    let cell = &cells[usize::from(backend != DbBackend::Postgres)];
    cell.get_or_init(|| build(parameter(backend)))
}

/// The statement for several digests at once, `$1` their list (PostgreSQL: comma-separated,
/// digests being hex; SQLite: a JSON array). Each digest is looked up on its own, as the
/// single statement looks up one (a loop over the list, each branch served by its unique
/// index), and its rows end with the digest's position in the list (1-based,
/// [`POSITION_AT`]).
///
/// Not `token_hash = ANY(list)`: on small tables PostgreSQL's generic plan for that (the
/// one a prepared statement settles on) scans the tables and evaluates the list per row,
/// which cost more per digest than a statement each.
pub fn credentials_by_digests_sql(backend: DbBackend) -> &'static str {
    static CELLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    built_once(backend, &CELLS, |_| {
        if backend == DbBackend::Postgres {
            format!(
                "SELECT found.*, d.position \
                 FROM unnest(string_to_array($1, ',')) WITH ORDINALITY AS d(digest, position) \
                 CROSS JOIN LATERAL ({by_digest}) found",
                by_digest = by_digest_sql("d.digest"),
            )
        } else {
            // SQLite (no LATERAL): each branch reads the list (`json_each`) first and its
            // table by each element.
            let (list, position) = ("json_each(?1) d, ", ", d.key + 1 AS position");
            format!(
                "{sessions} UNION ALL {tokens}",
                sessions = session_select_with(list, "s.token_hash = d.value", position),
                tokens = token_select_with(
                    list,
                    &format!("t.token_hash = d.value AND {}", no_session_under("d.value")),
                    position
                ),
            )
        }
    })
}

/// The statement text for `backend`, built once.
pub fn credential_by_digest_sql(backend: DbBackend) -> &'static str {
    static CELLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    built_once(backend, &CELLS, by_digest_sql)
}

/// The statement that reads one session by id with its user and token (a stream
/// subscriber's recheck): the session branch of [`credential_by_digest_sql`] by primary key.
fn by_session_id_sql(backend: DbBackend) -> &'static str {
    static CELLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    built_once(backend, &CELLS, |param| {
        session_select(&format!("s.id = {param}"))
    })
}

/// The statement that reads one personal access token by id with its owner (a change's
/// authorization): the access token branch of [`credential_by_digest_sql`] by primary key.
pub fn access_token_with_owner_sql(backend: DbBackend) -> &'static str {
    static CELLS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    built_once(backend, &CELLS, |param| {
        token_select(&format!("t.id = {param}"))
    })
}

/// Reads a row's columns in order from a position, by index (no column name is formatted
/// or looked up per value).
struct Columns<'r, R> {
    row: &'r R,
    next: usize,
}

impl<'r, R> Columns<'r, R>
where
    R: Row,
    usize: ColumnIndex<R>,
{
    fn at(row: &'r R, next: usize) -> Self {
        Columns { row, next }
    }

    fn read<T>(&mut self) -> Result<T>
    where
        T: Decode<'r, R::Database> + Type<R::Database>,
    {
        let value = self.row.try_get(self.next).map_err(driver_error)?;
        self.next += 1;
        Ok(value)
    }

    /// Whether the table whose columns start here is present (its id is not NULL), read
    /// without decoding the id.
    fn present(&self) -> Result<bool> {
        use sea_orm::sqlx::ValueRef as _;
        Ok(!self
            .row
            .try_get_raw(self.next)
            .map_err(driver_error)?
            .is_null())
    }
}

fn unsupported(backend: DbBackend) -> Error {
    Error::internal(format!("no credential query for the {backend:?} backend"))
}

/// The column types the credential row holds, decodable from a row of database `DB`.
trait CredentialColumns<'r, DB: Database>: Decode<'r, DB> + Type<DB> + Sized {}
impl<'r, DB: Database, T: Decode<'r, DB> + Type<DB>> CredentialColumns<'r, DB> for T {}

/// A row of the credential statement, of any backend.
trait CredentialRow<'r>: Row + Sized
where
    usize: ColumnIndex<Self>,
    &'r str: CredentialColumns<'r, Self::Database>,
    String: CredentialColumns<'r, Self::Database>,
    Option<String>: CredentialColumns<'r, Self::Database>,
    i64: CredentialColumns<'r, Self::Database>,
    Option<i64>: CredentialColumns<'r, Self::Database>,
    bool: CredentialColumns<'r, Self::Database>,
{
    fn kind(&'r self) -> Result<&'r str> {
        self.try_get(0).map_err(driver_error)
    }

    fn session_model(&'r self) -> Result<sessions::Model> {
        let mut c = Columns::at(self, SESSION_AT);
        Ok(sessions::Model {
            id: c.read()?,
            token_hash: c.read()?,
            user_id: c.read()?,
            user_access_token_id: c.read()?,
            create_at: c.read()?,
            expires_at: c.read()?,
            last_activity_at: c.read()?,
            length_ms: c.read()?,
            device_id: c.read()?,
            roles: c.read()?,
            is_oauth: c.read()?,
            expired_notify: c.read()?,
            props: c.read()?,
        })
    }

    /// The user of the row, if its branch has one.
    fn user_model(&'r self) -> Result<Option<users::Model>> {
        let mut c = Columns::at(self, USER_AT);
        if !c.present()? {
            return Ok(None);
        }
        Ok(Some(users::Model {
            id: c.read()?,
            username: c.read()?,
            email: c.read()?,
            roles: c.read()?,
            is_bot: c.read()?,
            bot_owner_id: c.read()?,
            create_at: c.read()?,
            update_at: c.read()?,
            delete_at: c.read()?,
        }))
    }

    /// The personal access token of the row, if its branch has one.
    fn token_model(&'r self) -> Result<Option<tokens::Model>> {
        let mut c = Columns::at(self, TOKEN_AT);
        if !c.present()? {
            return Ok(None);
        }
        Ok(Some(tokens::Model {
            id: c.read()?,
            token_hash: c.read()?,
            user_id: c.read()?,
            description: c.read()?,
            is_active: c.read()?,
            expires_at: c.read()?,
            create_at: c.read()?,
            last_notified_at: c.read()?,
            last_used_at: c.read()?,
            last_user_agent: c.read()?,
            bound_cidrs: c.read()?,
            scopes: c.read()?,
        }))
    }

    fn session_row(&'r self) -> Result<StoredSession> {
        let model = self.session_model()?;
        let stored_digest = TokenDigest::from_stored(model.token_hash.clone());
        Ok(StoredSession {
            session: Session::try_from(model)?,
            stored_digest,
            user: self.user_model()?.map(User::from),
            access_token: self.token_model()?.map(UserAccessToken::from),
        })
    }

    fn access_token_row(&'r self) -> Result<(UserAccessToken, User, TokenDigest)> {
        let (Some(token), Some(user)) = (self.token_model()?, self.user_model()?) else {
            return Err(Error::internal(
                "credential query returned a token row without its token or owner",
            ));
        };
        let stored = TokenDigest::from_stored(token.token_hash.clone());
        Ok((UserAccessToken::from(token), User::from(user), stored))
    }
}

impl<'r> CredentialRow<'r> for PgRow {}
impl<'r> CredentialRow<'r> for MySqlRow {}
impl<'r> CredentialRow<'r> for SqliteRow {}

/// What `rows` of the digest statement say.
fn credential_of<'r, R: CredentialRow<'r> + 'r>(
    rows: impl IntoIterator<Item = &'r R>,
) -> Result<StoredCredential>
where
    usize: ColumnIndex<R>,
    &'r str: CredentialColumns<'r, R::Database>,
    String: CredentialColumns<'r, R::Database>,
    Option<String>: CredentialColumns<'r, R::Database>,
    i64: CredentialColumns<'r, R::Database>,
    Option<i64>: CredentialColumns<'r, R::Database>,
    bool: CredentialColumns<'r, R::Database>,
{
    let mut found = StoredCredential::default();
    let mut token_row = None;
    for row in rows {
        match row.kind()? {
            BY_SESSION => found.session = Some(row.session_row()?),
            BY_SESSION_OF_TOKEN => {
                found.session = Some(row.session_row()?);
                found.digest_names_a_token = true;
            }
            BY_ACCESS_TOKEN => token_row = Some(row),
            other => {
                return Err(Error::internal(format!(
                    "credential query returned kind {other:?}"
                )));
            }
        }
    }
    // A token row comes only for a digest no session is stored under (a first use).
    found.digest_names_a_token |= token_row.is_some();
    if found.session.is_none()
        && let Some(row) = token_row
    {
        found.access_token = Some(row.access_token_row()?);
    }
    Ok(found)
}

/// `$rows` bound to the rows `$sql` returns with `$values`, read on one of `$store`'s check
/// connections, then `$body`: the arms differ only in the backend's row type.
macro_rules! with_rows {
    ($store:expr, $sql:expr, $values:expr, $rows:ident => $body:expr) => {
        match &*$store.check {
            CheckConnections::Postgres(held) => {
                let $rows = held.fetch_rows($sql, $values).await.map_err(driver_error)?;
                $body
            }
            CheckConnections::MySql(held) => {
                let $rows = held.fetch_rows($sql, $values).await.map_err(driver_error)?;
                $body
            }
            CheckConnections::Sqlite(held) => {
                let $rows = held.fetch_rows($sql, $values).await.map_err(driver_error)?;
                $body
            }
            CheckConnections::Unsupported => Err(unsupported($store.db.get_database_backend())),
        }
    };
}

impl Store {
    /// What `digest` names (a session with its user and token, and a personal access token
    /// with its owner), in one round trip.
    ///
    /// The token check's miss: sent with the driver (sqlx) directly on one of the check's
    /// connections, not through SeaORM's connection, whose futures (16-18 KB each, moved at
    /// every level) made a third of a miss's instructions `memcpy` in a callgrind profile,
    /// nor through sqlx's pool, whose pings around each use cost more than the statement.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_credential_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<StoredCredential> {
        match &*self.check {
            CheckConnections::Postgres(_) | CheckConnections::Sqlite(_) => {
                self.credential_lookups
                    .find(&self.check, digest.as_str())
                    .await
            }
            CheckConnections::MySql(_) => credential_alone(&self.check, digest.as_str()).await,
            CheckConnections::Unsupported => Err(unsupported(self.db.get_database_backend())),
        }
    }

    /// A session by id with its user and token, in one round trip.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_session_with_owner(&self, id: &SessionId) -> Result<Option<StoredSession>> {
        let sql = by_session_id_sql(self.db.get_database_backend());
        // By primary key: at most one row.
        with_rows!(self, sql, &[id.as_str()], rows => {
            rows.first().map(CredentialRow::session_row).transpose()
        })
    }

    /// A personal access token by id with its owner, in one round trip on the check's
    /// connections (what revoking, disabling or enabling it must know first).
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_access_token_with_owner(
        &self,
        id: &TokenId,
    ) -> Result<Option<(UserAccessToken, User)>> {
        let sql = access_token_with_owner_sql(self.db.get_database_backend());
        // By primary key: at most one row.
        let found = with_rows!(self, sql, &[id.as_str()], rows => {
            rows.first().map(CredentialRow::access_token_row).transpose()
        })?;
        Ok(found.map(|(token, owner, _)| (token, owner)))
    }
}

/// Group lookup of credentials on PostgreSQL and SQLite: checks that miss the cache while others are
/// being read share the next statement. Up to `batches` statements (`pool.check_batches`,
/// each on one of the check connections) run at once; each takes every digest waiting when it
/// starts (at most [`CredentialLookups::MAX_DIGESTS`]), so under load a miss costs a share of
/// one round trip and of one statement instead of a whole one each, and a lone miss is read
/// at once (in a task of its own: a check that gives up waiting does not cut short the
/// others' read). Few statements at once make the batches large: the service's cost of a
/// statement (its messages, the socket writes, the wake-ups) is mostly per statement, and
/// the database's per digest.
#[derive(Debug)]
pub(super) struct CredentialLookups {
    queue: BatchQueue<Lookup>,
    batches: usize,
}

/// A waiting check: its digest, and where its answer goes.
type Lookup = (
    String,
    tokio::sync::oneshot::Sender<Result<StoredCredential>>,
);

impl CredentialLookups {
    /// The most digests one statement looks up.
    const MAX_DIGESTS: usize = 64;

    /// Lookups running at most `batches` statements at once (at least one).
    pub(super) fn new(batches: usize) -> Self {
        Self {
            queue: BatchQueue::default(),
            batches: batches.max(1),
        }
    }

    /// What `digest` names, read in the next statement on `check`'s connections.
    async fn find(
        self: &std::sync::Arc<Self>,
        check: &std::sync::Arc<CheckConnections>,
        digest: &str,
    ) -> Result<StoredCredential> {
        let connections = match &**check {
            CheckConnections::Postgres(held) => held.size(),
            CheckConnections::Sqlite(held) => held.size(),
            _ => return Err(not_batched()),
        };
        let (answer, found) = tokio::sync::oneshot::channel();
        if self
            .queue
            .push((digest.to_owned(), answer), self.batches.min(connections))
        {
            tokio::spawn(self.clone().run(check.clone()));
        }
        found.await.unwrap_or_else(|_| {
            Err(Error::internal(
                "a credential lookup ended without an answer",
            ))
        })
    }

    /// Reads batches while digests wait.
    async fn run(self: std::sync::Arc<Self>, check: std::sync::Arc<CheckConnections>) {
        let oldest = |waiting: &mut Vec<Lookup>| {
            let rest = waiting.split_off(waiting.len().min(Self::MAX_DIGESTS));
            std::mem::replace(waiting, rest)
        };
        while let Some(batch) = self.queue.next(oldest) {
            let size = batch.len();
            if caught(Self::read(&check, batch)).await.is_none() {
                warn!(checks = size, "a credential lookup panicked");
            }
        }
    }

    /// Reads `batch`'s digests in one statement and answers each.
    async fn read(check: &CheckConnections, mut batch: Vec<Lookup>) {
        /// `$held`'s rows for `$sql` with `$values`, answered by `$answer`.
        macro_rules! answered {
            ($held:expr, $sql:expr, $values:expr, $rows:ident => $answer:expr) => {
                match $held.fetch_rows($sql, $values).await {
                    Ok($rows) => $answer,
                    Err(e) => failed(e, batch),
                }
            };
        }
        if batch.len() == 1
            && let Some((digest, answer)) = batch.pop()
        {
            // One alone: the single statement, as a check without others waiting.
            let _ = answer.send(credential_alone(check, &digest).await);
            return;
        }
        // Each digest once: checks of one token that miss together (a hot token's entry
        // expiring, a restart) share its rows.
        let mut distinct: Vec<&str> = Vec::with_capacity(batch.len());
        let slots: Vec<usize> = batch
            .iter()
            .map(|(digest, _)| {
                distinct
                    .iter()
                    .position(|d| *d == digest.as_str())
                    .unwrap_or_else(|| {
                        distinct.push(digest.as_str());
                        distinct.len() - 1
                    })
            })
            .collect();
        match check {
            CheckConnections::Postgres(held) => {
                let sql = credentials_by_digests_sql(DbBackend::Postgres);
                let list = distinct.join(",");
                let count = distinct.len();
                answered!(held, sql, &[list.as_str()], rows => answer_each(&rows, count, batch, slots))
            }
            CheckConnections::Sqlite(held) => {
                let sql = credentials_by_digests_sql(DbBackend::Sqlite);
                let list = serde_json::to_string(&distinct).unwrap_or_default();
                let count = distinct.len();
                answered!(held, sql, &[list.as_str()], rows => answer_each(&rows, count, batch, slots))
            }
            _ => failed_with(&not_batched, batch),
        }
    }
}

/// What `digest` names, read with the single statement on one of `check`'s connections
/// (a miss alone, and every miss on MariaDB).
async fn credential_alone(check: &CheckConnections, digest: &str) -> Result<StoredCredential> {
    /// The rows of `$backend`'s statement on `$held`, read.
    macro_rules! read {
        ($held:expr, $backend:expr) => {{
            // PostgreSQL numbers the digest's parameter; the others bind it for each branch.
            let values: &[&str] = if $backend == DbBackend::Postgres {
                &[digest]
            } else {
                &[digest, digest]
            };
            let rows = $held
                .fetch_rows(credential_by_digest_sql($backend), values)
                .await
                .map_err(driver_error)?;
            credential_of(&rows)
        }};
    }
    match check {
        CheckConnections::Postgres(held) => read!(held, DbBackend::Postgres),
        CheckConnections::MySql(held) => read!(held, DbBackend::MySql),
        CheckConnections::Sqlite(held) => read!(held, DbBackend::Sqlite),
        CheckConnections::Unsupported => {
            Err(Error::internal("no credential query for this database"))
        }
    }
}

fn not_batched() -> Error {
    Error::internal("credential lookups are batched on PostgreSQL and SQLite only")
}

/// Answers each check of `batch` (`slots`: the position of its digest among the `distinct`
/// ones) from `rows`, the shared statement's, each of which names its digest's position.
fn answer_each<'r, R: CredentialRow<'r> + 'r>(
    rows: &'r [R],
    distinct: usize,
    batch: Vec<Lookup>,
    slots: Vec<usize>,
) where
    usize: ColumnIndex<R>,
    &'r str: CredentialColumns<'r, R::Database>,
    String: CredentialColumns<'r, R::Database>,
    Option<String>: CredentialColumns<'r, R::Database>,
    i64: CredentialColumns<'r, R::Database>,
    Option<i64>: CredentialColumns<'r, R::Database>,
    bool: CredentialColumns<'r, R::Database>,
{
    let mut rows_of = vec![Vec::new(); distinct];
    let mut misplaced = None;
    for row in rows {
        match row.try_get::<i64, _>(POSITION_AT) {
            Ok(n) if (1..=distinct as i64).contains(&n) => rows_of[(n - 1) as usize].push(row),
            Ok(n) => misplaced = Some(format!("position {n} of {distinct}")),
            Err(e) => misplaced = Some(format!("{e:?}")),
        }
    }
    if let Some(e) = misplaced {
        let e = format!("credential rows without their digest's position: {e}");
        return failed_with(&|| Error::internal(e.clone()), batch);
    }
    // Each digest's rows decoded once: its last check takes them, the others get copies.
    let mut waiting = vec![0usize; distinct];
    for slot in &slots {
        waiting[*slot] += 1;
    }
    let mut decoded: Vec<Option<StoredCredential>> = vec![None; distinct];
    for ((_, answer), slot) in batch.into_iter().zip(slots) {
        waiting[slot] -= 1;
        let found = match decoded[slot].take() {
            Some(found) => Ok(found),
            None => credential_of(rows_of[slot].iter().copied()),
        };
        let found = match found {
            Ok(found) if waiting[slot] > 0 => {
                decoded[slot] = Some(found.clone());
                Ok(found)
            }
            other => other,
        };
        let _ = answer.send(found);
    }
}

/// Answers every check of `batch` with the driver's error `e`.
fn failed(e: sea_orm::sqlx::Error, batch: Vec<Lookup>) {
    let e = std::sync::Arc::new(e);
    failed_with(
        &|| {
            Error::from(sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(
                e.clone(),
            )))
        },
        batch,
    );
}

/// Answers every check of `batch` with an error `error` makes.
fn failed_with(error: &dyn Fn() -> Error, batch: Vec<Lookup>) {
    for (_, answer) in batch {
        let _ = answer.send(Err(error()));
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, Iterable};

    use super::*;

    fn names<E: EntityTrait>() -> Vec<&'static str> {
        E::Column::iter()
            .map(|column| sea_orm::IdenStatic::as_str(&column))
            .collect()
    }

    /// The decoders read columns by position: each list (and so the statement and the
    /// decoder written in the same order) must be its entity's columns, in field order.
    #[test]
    fn the_column_lists_are_the_entities_columns_in_order() {
        assert_eq!(names::<sessions::Entity>(), SESSION_COLUMNS);
        assert_eq!(names::<users::Entity>(), USER_COLUMNS);
        assert_eq!(names::<tokens::Entity>(), TOKEN_COLUMNS);
    }
}
