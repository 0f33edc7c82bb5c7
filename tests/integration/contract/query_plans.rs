//! Every lookup the service makes is served by an index, checked on PostgreSQL's query plans
//! (with sequential scans disabled, so the plan shows whether an index *can* serve the query
//! even on the tiny tables of a test). Runs when TEST_DATABASE_URL names a PostgreSQL server.

use sea_orm::{ConnectionTrait, Database, Statement, TransactionTrait};

use crate::common::*;

/// The queries of the token-check path, the list/search queries and the revocation feed.
const QUERIES: &[(&str, &str)] = &[
    (
        "session by token digest (token check)",
        "SELECT * FROM sessions WHERE token_hash = 'x'",
    ),
    (
        "access token by digest (first use of a PAT)",
        "SELECT * FROM user_access_tokens WHERE token_hash = 'x'",
    ),
    (
        "superseded secret by digest (token check, after an unknown digest)",
        "SELECT * FROM access_token_superseded_secrets WHERE token_hash = 'x'",
    ),
    (
        "a token's superseded secrets (rotation)",
        "SELECT * FROM access_token_superseded_secrets WHERE token_id = 'x' AND grace_until > 5",
    ),
    ("user by id", "SELECT * FROM users WHERE id = 'x'"),
    (
        "user by username (search)",
        "SELECT * FROM users WHERE username = 'x'",
    ),
    (
        "access token by id",
        "SELECT * FROM user_access_tokens WHERE id = 'x'",
    ),
    (
        "a page of tokens by id (after their ids, see PAGES)",
        "SELECT * FROM user_access_tokens WHERE id IN ('a', 'b') ORDER BY id",
    ),
    (
        "search: tokens by id or owner (the owner's id looked up by username first)",
        "SELECT * FROM user_access_tokens WHERE id = 'x' OR user_id IN ('x', 'y') ORDER BY id",
    ),
    (
        "a user's sessions",
        "SELECT * FROM sessions WHERE user_id = 'x' ORDER BY last_activity_at DESC",
    ),
    (
        "sessions minted for a token (revoke)",
        "SELECT * FROM sessions WHERE user_access_token_id = 'x'",
    ),
    (
        "revocation log after a position",
        "SELECT id, revokes, revokes_id, create_at FROM lifecycle_log WHERE revoking = 1 AND id > 5 ORDER BY id LIMIT 1000",
    ),
    (
        "lifecycle log pruning",
        "SELECT id, hash, create_at FROM lifecycle_log ORDER BY id LIMIT 1000",
    ),
    (
        "lifecycle records after a position (WatchEvents)",
        "SELECT * FROM lifecycle_log WHERE id > 5 ORDER BY id LIMIT 1000",
    ),
    (
        "a user's lifecycle records after a position (WatchEvents by user_id)",
        "SELECT * FROM lifecycle_log WHERE id > 5 AND user_id = 'x' ORDER BY id LIMIT 1000",
    ),
    (
        "audit trail: the next page, newest first",
        "SELECT * FROM lifecycle_log WHERE id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: the next page, oldest first",
        "SELECT * FROM lifecycle_log WHERE id > 100 ORDER BY id LIMIT 61",
    ),
    (
        "audit trail: a user's records, newest first",
        "SELECT * FROM lifecycle_log WHERE user_id = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a token's records",
        "SELECT * FROM lifecycle_log WHERE token_id = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a session's records",
        "SELECT * FROM lifecycle_log WHERE session_id = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a command's records",
        "SELECT * FROM lifecycle_log WHERE command_id = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: an actor's changes",
        "SELECT * FROM lifecycle_log WHERE actor_id = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a client address",
        "SELECT * FROM lifecycle_log WHERE ip = 'x' AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a request",
        "SELECT * FROM lifecycle_log WHERE request_id = 'x' ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: a credential's records (by HMAC)",
        "SELECT * FROM lifecycle_log WHERE credential_hmac = 'x' ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit trail: some actions",
        "SELECT * FROM lifecycle_log WHERE action IN ('a', 'b') AND id < 100 ORDER BY id DESC LIMIT 61",
    ),
    (
        "audit chain check: records in id order",
        "SELECT * FROM lifecycle_log WHERE id > 5 AND id <= 100 ORDER BY id LIMIT 1000",
    ),
    (
        "every token last used in a range (list filters last_used_before/after)",
        "SELECT * FROM user_access_tokens WHERE last_used_at > 0 AND last_used_at >= 5 AND last_used_at < 9 ORDER BY id LIMIT 60",
    ),
    (
        "every token expiring before a time (list filter expires_before)",
        "SELECT * FROM user_access_tokens WHERE expires_at > 0 AND expires_at < 9 ORDER BY id LIMIT 60",
    ),
    (
        "every expired token (list filter state=expired)",
        "SELECT * FROM user_access_tokens WHERE expires_at > 0 AND expires_at <= 9 ORDER BY id LIMIT 60",
    ),
    (
        "the recent addresses of a page of tokens",
        "SELECT * FROM access_token_addresses WHERE token_id IN ('a', 'b') ORDER BY token_id, last_seen_at DESC, ip",
    ),
    ("command by id", "SELECT * FROM commands WHERE id = 'x'"),
    (
        "a user's team memberships (sessions list)",
        "SELECT * FROM team_members WHERE user_id = 'x' ORDER BY team_id",
    ),
    (
        "command by team and trigger",
        "SELECT * FROM commands WHERE team_id = 'x' AND trigger = 'y'",
    ),
    (
        "a scheduled job by name",
        "SELECT * FROM scheduled_jobs WHERE name = 'x'",
    ),
    (
        "cleanup job: expired active tokens, oldest expiry first",
        "SELECT * FROM user_access_tokens WHERE is_active = true AND expires_at > 0 \
         AND expires_at <= 100 ORDER BY expires_at, id LIMIT 1000 FOR UPDATE",
    ),
    (
        "sessions minted for a batch of tokens (cleanup, non-compliant revoke)",
        "SELECT * FROM sessions WHERE user_access_token_id IN ('x', 'y')",
    ),
    (
        "non-compliant revoke: the picked tokens, locked",
        "SELECT * FROM user_access_tokens WHERE id IN ('x', 'y') ORDER BY id FOR UPDATE",
    ),
];

/// The token lists' pages: read in id order from an index, with no sort of the rows (and,
/// by page number, the skipped entries from the index alone): (what, statement, the plan
/// node that must read them).
const PAGES: &[(&str, &str, &str)] = &[
    (
        "every token, the page after a position (keyset)",
        "SELECT * FROM user_access_tokens WHERE id > 'x' ORDER BY id LIMIT 61",
        "Index Scan using user_access_tokens_pkey",
    ),
    (
        "a user's tokens, the page after a position (keyset)",
        "SELECT * FROM user_access_tokens WHERE user_id = 'x' AND id > 'y' ORDER BY id LIMIT 61",
        "Index Scan",
    ),
    (
        "every token, a page's ids by number (then the rows by id)",
        "SELECT id FROM user_access_tokens ORDER BY id LIMIT 61 OFFSET 6000",
        "Index Only Scan using user_access_tokens_pkey",
    ),
    (
        "a user's tokens, a page's ids by number (then the rows by id)",
        "SELECT id FROM user_access_tokens WHERE user_id = 'x' ORDER BY id LIMIT 61 OFFSET 6000",
        "Index Only Scan",
    ),
];

/// Scans of a window an index bounds, whose remaining condition compares columns of each row
/// found (or asks about its owner), which no index can serve: the index must find the
/// window (no sequential scan, an index condition); a filter may then drop rows from it.
const WINDOWS: &[(&str, &str)] = &[
    (
        "notice job: tokens expiring within 7 days (threshold conditions filtered per row)",
        "SELECT * FROM user_access_tokens WHERE is_active = true AND expires_at > 100 \
         AND expires_at <= 700 AND ((expires_at <= 200 AND (last_notified_at IS NULL \
         OR last_notified_at < expires_at - 100)) OR (expires_at <= 400 AND \
         (last_notified_at IS NULL OR last_notified_at < expires_at - 300))) \
         AND (expires_at > 150 OR (expires_at = 150 AND id > 'x')) \
         ORDER BY expires_at, id LIMIT 1000",
    ),
    (
        "non-compliant count: active tokens never expiring or beyond the maximum, not bots'",
        "SELECT COUNT(*) FROM user_access_tokens WHERE is_active = true \
         AND (expires_at = 0 OR expires_at > 100) \
         AND user_id NOT IN (SELECT id FROM users WHERE is_bot = true)",
    ),
];

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL=postgres://...); .ci/run runs it"]
async fn every_lookup_is_served_by_an_index_on_postgres() {
    let srv = TestServer::start().await;
    assert_eq!(
        srv.backend(),
        "postgres",
        "this test needs TEST_DATABASE_URL=postgres://..."
    );
    let url = srv
        .config
        .database_url
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    let pool = Database::connect(url).await.unwrap();
    // One connection (a transaction), so the setting applies to every EXPLAIN.
    let db = pool.begin().await.unwrap();
    db.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let mut missing = Vec::new();
    // The token check's own statement, as the service sends it (the digest bound as $1).
    let credential_check =
        token_service::store::credential_by_digest_sql(sea_orm::DbBackend::Postgres)
            .replace("$1", "'x'");
    let token_with_owner =
        token_service::store::access_token_with_owner_sql(sea_orm::DbBackend::Postgres)
            .replace("$1", "'x'");
    let all = QUERIES
        .iter()
        .map(|(what, sql)| (*what, *sql, true))
        .chain(WINDOWS.iter().map(|(what, sql)| (*what, *sql, false)))
        .chain([
            (
                "the token check: session, user and token by digest, in one statement",
                credential_check.as_str(),
                true,
            ),
            (
                "a token change's authorization: the token and its owner by the token's id",
                token_with_owner.as_str(),
                true,
            ),
        ]);
    for (what, sql, strict) in all {
        let plan = explain(&db, sql).await;
        // An index must find the rows, not just be walked while a filter throws rows away
        // (a one-time filter, a condition on the parameters alone, throws none away).
        let filters = sql.contains(" WHERE ");
        let row_filter = plan
            .lines()
            .any(|line| line.contains("Filter:") && !line.contains("One-Time Filter:"));
        let served = !plan.contains("Seq Scan")
            && plan.contains("Index")
            && (!filters || (plan.contains("Index Cond") && (!strict || !row_filter)));
        if !served {
            missing.push(format!("{what}:\n{plan}"));
        }
    }
    // Several checks' misses at once, as the check's connections run it: a prepared
    // statement's generic plan (the digests comma-separated as $1). Each digest must be
    // looked up on its own through the unique indexes (a loop over the list), not by a
    // condition on the whole list that the generic plan evaluates row by row.
    db.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    db.execute_unprepared(&format!(
        "PREPARE credential_checks(text) AS {}",
        token_service::store::credentials_by_digests_sql(sea_orm::DbBackend::Postgres)
    ))
    .await
    .unwrap();
    let plan = explain(&db, "EXECUTE credential_checks('x,y,z')").await;
    if plan.contains("Seq Scan")
        || plan.contains("ANY (")
        || !plan.contains("Function Scan")
        || plan.matches("Index Cond").count() < 4
    {
        missing.push(format!(
            "the token checks of several misses at once, by their digests (generic plan):\n{plan}"
        ));
    }
    db.execute_unprepared("DEALLOCATE credential_checks")
        .await
        .unwrap();
    // The pages: with sorts and bitmap scans penalised too, a plan that still sorts has no
    // index giving the order (on a test's tiny table the planner would rather sort).
    db.execute_unprepared("SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off")
        .await
        .unwrap();
    for (what, sql, node) in PAGES {
        let plan = explain(&db, sql).await;
        if plan.contains("Sort") || plan.contains("Seq Scan") || !plan.contains(node) {
            missing.push(format!("{what} (needs {node}, no sort):\n{plan}"));
        }
    }
    db.rollback().await.unwrap();
    pool.close().await.unwrap();
    assert!(
        missing.is_empty(),
        "lookups without an index:\n{}",
        missing.join("\n\n")
    );
    srv.stop().await;
}

/// PostgreSQL's plan for `sql`, one line per node.
async fn explain(db: &impl ConnectionTrait, sql: &str) -> String {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("EXPLAIN {sql}"),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// SQLite's plan of the token checks' shared statement (several misses at once, the digests
/// a JSON array): the list is read first and each of its digests looked up through the
/// unique indexes, the users and tokens by primary key; no table is scanned. On a SQLite
/// database of its own, whichever backend the suite runs on.
#[tokio::test]
async fn several_misses_at_once_are_looked_up_through_the_indexes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plans.db").display()
    );
    let pool = token_service::store::PoolOptions {
        max_connections: 1,
        min_connections: 0,
        connect_timeout: std::time::Duration::from_secs(5),
        acquire_timeout: std::time::Duration::from_secs(5),
        check_connections: 1,
        check_batches: 1,
    };
    let store = token_service::store::Store::connect(&url, &pool)
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    let db = Database::connect(url).await.unwrap();
    let sql = token_service::store::credentials_by_digests_sql(sea_orm::DbBackend::Sqlite);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {sql}"),
            [r#"["x","y"]"#.into()],
        ))
        .await
        .unwrap();
    let plan: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(3).unwrap())
        .collect();
    let scans: Vec<&String> = plan
        .iter()
        .filter(|line| line.starts_with("SCAN") && !line.starts_with("SCAN d VIRTUAL TABLE"))
        .collect();
    let searches = plan
        .iter()
        .filter(|line| line.starts_with("SEARCH") && line.contains("INDEX"))
        .count();
    assert!(
        scans.is_empty() && searches >= 5,
        "each digest must be looked up through the indexes:\n{}",
        plan.join("\n")
    );
    db.close().await.unwrap();
    store.close().await;
}
