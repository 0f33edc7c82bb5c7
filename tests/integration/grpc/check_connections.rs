//! The token check's own connections (`pool.check_connections`, outside the request pool):
//! one is enough for checks one at a time; many concurrent misses share a few connections
//! and each gets its own answer (a token repeated in one shared read, or naming nothing,
//! too); a check
//! cancelled mid-read leaves nothing for the next one to read; a connection the database
//! ended is replaced without failing the check that finds it gone, nor a later write (the
//! request pool pings a connection unused for a second before handing it out).

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

use crate::common::*;

/// A server whose every token check reads the database, through `connections` connections.
async fn uncached(connections: u32) -> TestServer {
    TestServer::start_with(|c| {
        c.cache.enable = false;
        c.pool.check_connections = connections;
    })
    .await
}

/// Runs `checks` (a caller and the user it must be answered with) all at once; each must be
/// answered, for its own token.
async fn all_at_once(checks: impl IntoIterator<Item = (ActorClient, String)>) {
    let mut running = tokio::task::JoinSet::new();
    for (as_user, expected) in checks {
        running.spawn(async move { (expected, as_user.me().await) });
    }
    while let Some(done) = running.join_next().await {
        let (expected, me) = done.unwrap();
        let me = me.expect("every check is answered");
        assert_eq!(
            me.id, expected,
            "a check was answered with another token's user"
        );
    }
}

#[tokio::test]
async fn many_concurrent_misses_share_two_connections_and_each_is_answered_for_its_own_token() {
    let srv = uncached(2).await;
    let mut users = Vec::new();
    for i in 0..8 {
        users.push(srv.token_user(&format!("user{i}")).await);
    }
    let client = srv.client().await;
    all_at_once((0..96).map(|i| {
        let user = &users[i % users.len()];
        (client.as_(user), user.id.clone())
    }))
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn misses_read_together_answer_repeated_unknown_and_revoked_tokens_each_for_itself() {
    // One statement at a time on one connection: the waiting checks pile up and share it,
    // with the same token several times in a batch and digests that name nothing.
    let srv = TestServer::start_with(|c| {
        c.cache.enable = false;
        c.pool.check_connections = 1;
        c.pool.check_batches = Some(1);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let gone = srv.token_user("gone").await;
    let admin = srv.admin("root").await;
    srv.as_(&admin).revoke_all_sessions(&gone.id).await.unwrap();
    let client = srv.client().await;
    // Well formed (26 lowercase letters and digits), never issued.
    let unknown = ActorClient::new(client.clone(), Some("q7w8e9r0t1y2u3i4o5p6a7s8d9"));
    let mut running = tokio::task::JoinSet::new();
    for i in 0..150 {
        let (caller, expected) = match i % 6 {
            0..=2 => (client.as_(&alice), Some(alice.id.clone())),
            3 => (client.as_(&bob), Some(bob.id.clone())),
            4 => (unknown.clone(), None),
            _ => (client.as_(&gone), None),
        };
        running.spawn(async move { (i, expected, caller.me().await) });
    }
    while let Some(done) = running.join_next().await {
        let (i, expected, me) = done.unwrap();
        match (expected, me) {
            (Some(id), Ok(me)) => assert_eq!(me.id, id, "check {i}: another token's user"),
            (None, Err(status)) => assert_eq!(
                status.code(),
                tonic::Code::Unauthenticated,
                "check {i}: {status:?}"
            ),
            (expected, got) => panic!("check {i}: expected {expected:?}, got {got:?}"),
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn checks_one_at_a_time_read_through_one_connection_and_more_open_only_for_concurrency() {
    let srv = uncached(4).await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    for _ in 0..5 {
        assert_eq!(as_alice.me().await.unwrap().id, alice.id);
    }
    assert_eq!(srv.counter("token_service_db_check_connections").await, 1);
    all_at_once((0..32).map(|_| (as_alice.clone(), alice.id.clone()))).await;
    let open = srv.counter("token_service_db_check_connections").await;
    assert!(
        (1..=4).contains(&open),
        "at most pool.check_connections: {open}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_check_cancelled_mid_read_leaves_no_reply_for_the_next_check_on_its_connection() {
    // One connection: every check after a cancelled one reads on the very same connection.
    let srv = uncached(1).await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let mut client = srv.client().await;
    let mut cancelled = 0;
    for i in 0..60u64 {
        // Deadlines from 50 µs up: some end before the read, some during it, some after.
        let mut request = authed(token_service::pb::GetMeRequest {}, &alice.token);
        request.set_timeout(Duration::from_micros(50 + 40 * i));
        if client.get_me(request).await.is_err() {
            cancelled += 1;
        }
        let me = client
            .get_me(authed(token_service::pb::GetMeRequest {}, &bob.token))
            .await
            .expect("the check after a cancelled one is answered")
            .into_inner()
            .user
            .expect("user");
        assert_eq!(
            me.id, bob.id,
            "round {i}: read a reply meant for another check"
        );
    }
    assert!(
        cancelled > 0,
        "no check was cancelled: the test tested nothing"
    );
    srv.stop().await;
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn a_lost_connection_is_replaced_without_failing_the_check_a_write_or_its_seal() {
    let srv = uncached(1).await;
    let alice = srv.token_user("alice").await;
    let admin = srv.admin("root").await;
    let as_alice = srv.client().await.as_(&alice);
    assert_eq!(as_alice.me().await.unwrap().id, alice.id);
    // A write first, so the seal's own connection is open too.
    srv.as_(&admin)
        .create_token(&alice.id, "before the restart")
        .await
        .unwrap();

    // The database ends every connection to the service's database but this one (as a
    // restart or a failover would), without the service hearing of it.
    let url = srv.config.database_url.as_ref().unwrap().expose();
    let db = Database::connect(url)
        .await
        .expect("connect to the test database");
    let backend = db.get_database_backend();
    let (list, end): (&str, fn(i64) -> String) = match backend {
        DbBackend::Postgres => (
            "SELECT pid::BIGINT AS id FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            |id| format!("SELECT pg_terminate_backend({id})"),
        ),
        _ => (
            "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
             WHERE db = DATABASE() AND id <> CONNECTION_ID()",
            |id| format!("KILL CONNECTION {id}"),
        ),
    };
    let ids: Vec<i64> = db
        .query_all_raw(Statement::from_string(backend, list))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<i64>("", "id").unwrap())
        .collect();
    assert!(!ids.is_empty(), "the service holds connections to end");
    for id in ids {
        // A connection may be gone already (one of the service's own reconnecting).
        let _ = db.execute_unprepared(&end(id)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The first check after it finds its connection gone and reads on a fresh one.
    assert_eq!(
        as_alice
            .me()
            .await
            .expect("answered on a fresh connection")
            .id,
        alice.id
    );

    // A write: the pooled connections have been unused longer than the pool's ping-after-
    // idle (`store::POOL_PING_AFTER_IDLE`, 1 s), so the pool pings the one it hands out,
    // finds it gone, and hands out a fresh one.
    // The write's lifecycle record is sealed on a fresh connection too (the seal's own
    // connection, idle for less than its ping interval, fails its first statement and the
    // seal is sent again): it is in the log when the call returns, nothing waits.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    srv.as_(&admin)
        .create_token(&alice.id, "after the restart")
        .await
        .expect("written on a fresh connection");
    let waiting = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS waiting FROM lifecycle_pending",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "waiting")
        .unwrap();
    assert_eq!(
        waiting, 0,
        "the write's record was sealed before its call returned"
    );
    srv.stop().await;
}
