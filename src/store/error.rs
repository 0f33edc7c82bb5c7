//! `DbErr` to domain error, once, as a `From` so queries convert with `?`: connection trouble
//! is `Unavailable` (retryable), anything else `Internal`. The database's own text is kept as
//! the source, for the log only.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::domain::error::Error;

/// Maps a database error.
impl From<DbErr> for Error {
    fn from(e: DbErr) -> Self {
        if is_connection_error(&e) {
            Error::Unavailable(Box::new(e))
        } else {
            Error::Internal(Box::new(e))
        }
    }
}

pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

pub(crate) fn is_foreign_key_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_)))
}

fn is_connection_error(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        DbErr::ConnectionAcquire(_) => true,
        DbErr::Conn(RuntimeErr::SqlxError(inner))
        | DbErr::Exec(RuntimeErr::SqlxError(inner))
        | DbErr::Query(RuntimeErr::SqlxError(inner)) => match inner.as_ref() {
            Sqlx::Io(_)
            | Sqlx::Tls(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed
            | Sqlx::Protocol(_) => true,
            Sqlx::Database(db) => db.code().is_some_and(|code| is_unavailable_code(&code)),
            _ => false,
        },
        DbErr::Conn(_) => true,
        _ => false,
    }
}

/// A driver error as the store's other errors are (through SeaORM's error type, whose
/// classification, such as "the database is unavailable", applies).
pub(crate) fn driver_error(e: sea_orm::sqlx::Error) -> Error {
    Error::from(DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e))))
}

/// Whether `e` means the connection itself is gone (not an answer to the statement): it
/// broke, or the server ended it (PostgreSQL's connection exceptions, class 08, and
/// administrator or crash shutdowns, 57P01 and 57P02; MySQL/MariaDB's shutdown, 1053). The
/// statement may be sent again on a fresh connection.
pub(crate) fn means_connection_lost(e: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match e {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::Protocol(_) | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "1053")
        }),
        _ => false,
    }
}

/// Server error codes that mean "the database cannot serve now; retry": PostgreSQL's
/// connection exceptions (class 08), shutdowns and start-up (57P01-57P03), too many
/// connections (53300), serialization failures and deadlocks (40001, 40P01); MySQL/MariaDB's
/// too many connections (1040), server shutdown (1053), deadlock victim (1213) and read-only
/// mode during a failover (1290). A transaction chosen as a deadlock victim was rolled back
/// whole, so retrying it is safe.
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01"
                | "57P02"
                | "57P03"
                | "53300"
                | "40001"
                | "40P01"
                | "1040"
                | "1053"
                | "1213"
                | "1290"
        )
}

#[cfg(test)]
mod tests {
    use super::{is_unavailable_code, means_connection_lost};
    use sea_orm::sqlx::Error as Sqlx;

    #[test]
    fn a_broken_connection_is_lost_an_answer_or_a_timeout_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(means_connection_lost(&Sqlx::Io(io)));
        assert!(means_connection_lost(&Sqlx::Protocol(
            "unexpected message".into()
        )));
        assert!(means_connection_lost(&Sqlx::WorkerCrashed));
        assert!(!means_connection_lost(&Sqlx::RowNotFound));
        assert!(!means_connection_lost(&Sqlx::PoolTimedOut));
        assert!(!means_connection_lost(&Sqlx::ColumnNotFound("kind".into())));
    }

    #[test]
    fn shutdowns_and_connection_limits_are_unavailable_other_codes_are_not() {
        for code in [
            "57P01", "57P03", "08006", "53300", "40P01", "1040", "1053", "1213",
        ] {
            assert!(is_unavailable_code(code), "{code}");
        }
        for code in ["23505", "42P01", "1062", "22021"] {
            assert!(!is_unavailable_code(code), "{code}");
        }
    }
}
