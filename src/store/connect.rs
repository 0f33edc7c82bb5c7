//! Connecting, and saying why a database server cannot be reached in the operator's terms:
//! the host and port, and "connection refused", "the host name does not resolve",
//! "authentication failed" or "database does not exist", never a driver's type or a
//! server's source line. One direct connection is tried before the pool is built, because
//! the pool retries refused connections until its timeout and then reports only that it
//! timed out.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use sea_orm::sqlx::{self, ConnectOptions as _, Connection as _, error::DatabaseError};

use crate::domain::error::Error;

/// The server a URL names, for messages.
struct Target {
    /// "PostgreSQL" or "MariaDB/MySQL".
    kind: &'static str,
    /// `host:port`, or the Unix socket path.
    address: String,
    /// The host to resolve (none for a Unix socket).
    resolve: Option<(String, u16)>,
    user: String,
    database: String,
}

/// A connection failure, described for the operator.
fn failure(text: String) -> Error {
    Error::Unavailable(text.into())
}

/// Connects once to the server `url` names (PostgreSQL or MariaDB/MySQL) and closes the
/// connection; a refused connection is retried until `timeout` (a server still starting
/// up), any other failure is reported at once. SQLite URLs are not probed.
pub(super) async fn probe_server(url: &str, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        // No statement logging, as for the pool: a log record checked but not written
        // would leave the per-layer log filters' state stale for the next event.
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| failure(format!("invalid PostgreSQL URL: {}", plain(&e))))?
            .disable_statement_logging();
        let target = Target {
            kind: "PostgreSQL",
            address: match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            },
            resolve: options
                .get_socket()
                .is_none()
                .then(|| (options.get_host().to_owned(), options.get_port())),
            user: options.get_username().to_owned(),
            database: options.get_database().unwrap_or_default().to_owned(),
        };
        probe(&options, &target, deadline, timeout).await
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let options = sqlx::mysql::MySqlConnectOptions::from_str(url)
            .map_err(|e| failure(format!("invalid MariaDB/MySQL URL: {}", plain(&e))))?
            .disable_statement_logging();
        let target = Target {
            kind: "MariaDB/MySQL",
            address: match options.get_socket() {
                Some(socket) => socket.display().to_string(),
                None => format!("{}:{}", options.get_host(), options.get_port()),
            },
            resolve: options
                .get_socket()
                .is_none()
                .then(|| (options.get_host().to_owned(), options.get_port())),
            user: options.get_username().to_owned(),
            database: options.get_database().unwrap_or_default().to_owned(),
        };
        probe(&options, &target, deadline, timeout).await
    } else {
        Ok(())
    }
}

async fn probe<O>(
    options: &O,
    target: &Target,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), Error>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    let at = format!("{} at {}", target.kind, target.address);
    let timed_out = || {
        failure(format!(
            "{at}: no answer within the connect timeout (pool.connect_timeout_secs = {} s)",
            timeout.as_secs()
        ))
    };
    if let Some((host, port)) = &target.resolve {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, tokio::net::lookup_host((host.as_str(), *port))).await
        {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => {
                return Err(failure(format!(
                    "{at}: the host name {host:?} does not resolve (name does not resolve)"
                )));
            }
            Ok(Ok(addrs)) => {
                if addrs.count() == 0 {
                    return Err(failure(format!(
                        "{at}: the host name {host:?} resolves to no address"
                    )));
                }
            }
        }
    }
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(remaining, options.connect()).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return Ok(());
            }
            Ok(Err(error)) => error,
        };
        let refused = matches!(&error, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
        let pause = Duration::from_millis(250);
        if refused && deadline.saturating_duration_since(Instant::now()) > pause {
            tokio::time::sleep(pause).await;
            continue;
        }
        return Err(failure(describe(&at, target, &error, refused)));
    }
}

fn describe(at: &str, target: &Target, error: &sqlx::Error, refused: bool) -> String {
    if refused {
        return format!(
            "{at}: connection refused (nothing listens there: is the server running, and is \
             the host and port in database_url right?)"
        );
    }
    match error {
        sqlx::Error::Io(io) => format!("{at}: network error: {io}"),
        sqlx::Error::Tls(tls) => format!("{at}: TLS failed: {tls}"),
        sqlx::Error::Database(db) => describe_database_error(at, target, db.as_ref()),
        other => format!("{at}: {}", plain(other)),
    }
}

/// A refusal by the server itself, by its error code.
fn describe_database_error(at: &str, target: &Target, db: &dyn DatabaseError) -> String {
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let number = db
        .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number());
    let user = &target.user;
    let database = &target.database;
    let message = db.message();
    match (code.as_str(), number) {
        // PostgreSQL: invalid_password, invalid_authorization_specification (no such role,
        // pg_hba refusal); MySQL: access denied (1045).
        ("28P01" | "28000", None) | (_, Some(1045 | 1698)) => {
            format!("{at}: authentication failed for user {user:?} ({message})")
        }
        ("3D000", None) | (_, Some(1049)) => format!(
            "{at}: database {database:?} does not exist (create it first; the service creates \
             its tables, not the database)"
        ),
        (_, Some(1044)) => {
            format!("{at}: user {user:?} may not use database {database:?} ({message})")
        }
        ("", _) => format!("{at}: the server refused the connection: {message}"),
        (code, _) => format!("{at}: the server refused the connection: {message} (code {code})"),
    }
}

/// A driver error's text without the driver's own prefixes.
fn plain(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(e) => e.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// An SQLite failure to open its file, in SQLite's own words without the driver's prefix
/// (the caller names the file and the directory).
pub(super) fn sqlite_open_failure(error: &sea_orm::DbErr) -> Option<String> {
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(inner)) => Some(plain(inner)),
        _ => None,
    }
}

/// Checks that `url` is a database URL the store can use (scheme and syntax), without
/// connecting; the message never repeats the URL (it may hold a password).
pub fn check_database_url(url: &str) -> Result<(), String> {
    let parsed = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        sqlx::postgres::PgConnectOptions::from_str(url).map(drop)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        sqlx::mysql::MySqlConnectOptions::from_str(url).map(drop)
    } else if url.starts_with("sqlite:") {
        sqlx::sqlite::SqliteConnectOptions::from_str(url).map(drop)
    } else {
        return Err("must start with sqlite:, postgres:// or mysql:// (e.g. \
             postgres://user:password@host:5432/database)"
            .to_owned());
    };
    parsed.map_err(|e| format!("not a valid URL: {}", plain(&e)))
}
