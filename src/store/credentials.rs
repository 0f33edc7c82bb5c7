//! The token check's read: everything a presented credential's check needs (its session, the
//! session's user and personal access token, or, before a PAT's first use, the token and its
//! owner) in one indexed query, one round trip.
//!
//! The statement is plain SQL built once per backend from the entities' columns and sent as
//! a raw statement, so the query builder's cost is paid once per process and the driver's
//! statement cache prepares it once per connection. Its two branches are each served by a
//! unique index on `token_hash` (checked on PostgreSQL by `contract::query_plans`).

use std::sync::OnceLock;

use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Iterable, QueryResult, Statement,
};

use super::Store;
use super::entities::{sessions, user_access_tokens as tokens, users};
use crate::domain::{
    error::{Error, Result},
    ids::SessionId,
    model::{Session, StoredCredential, StoredSession, User, UserAccessToken},
    secret::TokenDigest,
};

/// Column-name prefixes of the joined row.
const SESSION: &str = "s_";
const USER: &str = "u_";
const TOKEN: &str = "t_";

/// Which branch of the union a row comes from (`kind` column).
const BY_SESSION: &str = "s";
const BY_ACCESS_TOKEN: &str = "t";

/// The column list `alias.col AS <prefix>col, ...` of entity `E` (or NULLs, when `present`
/// is false: the other branch of the union).
fn columns<E: EntityTrait>(alias: &str, prefix: &str, present: bool) -> String {
    E::Column::iter()
        .map(|column| {
            let name = sea_orm::IdenStatic::as_str(&column);
            if present {
                format!("{alias}.{name} AS {prefix}{name}")
            } else {
                format!("NULL AS {prefix}{name}")
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

/// The session branch: sessions matching `condition` with their user and token.
fn session_select(condition: &str) -> String {
    format!(
        "SELECT '{BY_SESSION}' AS kind, {s}, {u}, {t} \
         FROM sessions s \
         LEFT JOIN users u ON u.id = s.user_id \
         LEFT JOIN user_access_tokens t ON t.id = s.user_access_token_id \
         WHERE {condition}",
        s = columns::<sessions::Entity>("s", SESSION, true),
        u = columns::<users::Entity>("u", USER, true),
        t = columns::<tokens::Entity>("t", TOKEN, true),
    )
}

/// The statement for `backend`: the session branch by digest, and the access token branch
/// (a token and its owner) by the same digest.
fn by_digest_sql(backend: DbBackend) -> String {
    let param = parameter(backend);
    format!(
        "{sessions} \
         UNION ALL \
         SELECT '{BY_ACCESS_TOKEN}' AS kind, {no_s}, {u}, {t} \
         FROM user_access_tokens t \
         JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = {param}",
        sessions = session_select(&format!("s.token_hash = {param}")),
        u = columns::<users::Entity>("u", USER, true),
        t = columns::<tokens::Entity>("t", TOKEN, true),
        no_s = columns::<sessions::Entity>("s", SESSION, false),
    )
}

/// The statement text for `backend`, built once.
pub fn credential_by_digest_sql(backend: DbBackend) -> &'static str {
    static POSTGRES: OnceLock<String> = OnceLock::new();
    static OTHERS: OnceLock<String> = OnceLock::new();
    match backend {
        DbBackend::Postgres => POSTGRES.get_or_init(|| by_digest_sql(backend)),
        _ => OTHERS.get_or_init(|| by_digest_sql(backend)),
    }
}

/// The statement that reads one session by id with its user and token (a stream
/// subscriber's recheck): the session branch of [`credential_by_digest_sql`] by primary key.
fn by_session_id_sql(backend: DbBackend) -> &'static str {
    static POSTGRES: OnceLock<String> = OnceLock::new();
    static OTHERS: OnceLock<String> = OnceLock::new();
    let build = || session_select(&format!("s.id = {}", parameter(backend)));
    match backend {
        DbBackend::Postgres => POSTGRES.get_or_init(build),
        _ => OTHERS.get_or_init(build),
    }
}

/// Whether the row's columns under `prefix` are present (the id is not NULL).
fn has(row: &QueryResult, prefix: &str) -> Result<bool> {
    Ok(row.try_get::<Option<String>>(prefix, "id")?.is_some())
}

fn session_row(row: &QueryResult) -> Result<StoredSession> {
    let model = sessions::Model::from_query_result(row, SESSION)?;
    let stored_digest = TokenDigest::from_stored(model.token_hash.clone());
    let user = if has(row, USER)? {
        Some(User::from(users::Model::from_query_result(row, USER)?))
    } else {
        None
    };
    let access_token = if has(row, TOKEN)? {
        Some(UserAccessToken::from(tokens::Model::from_query_result(
            row, TOKEN,
        )?))
    } else {
        None
    };
    Ok(StoredSession {
        session: Session::try_from(model)?,
        stored_digest,
        user,
        access_token,
    })
}

fn access_token_row(row: &QueryResult) -> Result<(UserAccessToken, User, TokenDigest)> {
    let token = tokens::Model::from_query_result(row, TOKEN)?;
    let stored = TokenDigest::from_stored(token.token_hash.clone());
    let user = users::Model::from_query_result(row, USER)?;
    Ok((UserAccessToken::from(token), User::from(user), stored))
}

impl Store {
    /// What `digest` names (a session with its user and token, and a personal access token
    /// with its owner), in one round trip.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_credential_by_digest(
        &self,
        digest: &TokenDigest,
    ) -> Result<StoredCredential> {
        let backend = self.db.get_database_backend();
        let values: Vec<sea_orm::Value> = match backend {
            DbBackend::Postgres => vec![digest.as_str().into()],
            _ => vec![digest.as_str().into(), digest.as_str().into()],
        };
        let statement =
            Statement::from_sql_and_values(backend, credential_by_digest_sql(backend), values);
        let mut found = StoredCredential::default();
        let mut token_row = None;
        for row in self.db.query_all_raw(statement).await? {
            let kind: String = row.try_get("", "kind")?;
            match kind.as_str() {
                BY_SESSION => found.session = Some(session_row(&row)?),
                BY_ACCESS_TOKEN => token_row = Some(row),
                other => {
                    return Err(Error::internal(format!(
                        "credential query returned kind {other:?}"
                    )));
                }
            }
        }
        // With a session the check needs only whether a token has this digest: the token
        // row (a second user and token) is decoded for a first use only.
        found.digest_names_a_token = token_row.is_some();
        if found.session.is_none()
            && let Some(row) = token_row
        {
            found.access_token = Some(access_token_row(&row)?);
        }
        Ok(found)
    }

    /// A session by id with its user and token, in one round trip.
    #[tracing::instrument(level = "debug", skip_all, fields(db.system = self.backend_name()))]
    pub async fn find_session_with_owner(&self, id: &SessionId) -> Result<Option<StoredSession>> {
        let backend = self.db.get_database_backend();
        let statement = Statement::from_sql_and_values(
            backend,
            by_session_id_sql(backend),
            [id.as_str().into()],
        );
        match self.db.query_one_raw(statement).await? {
            Some(row) => Ok(Some(session_row(&row)?)),
            None => Ok(None),
        }
    }
}
