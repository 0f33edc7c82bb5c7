//! The revocation log behind the cache and WatchRevocations: a revocation and its event are
//! one transaction; the PostgreSQL listener comes back by itself; subscribers are fed from
//! one reader, cut off when their own credential goes, and told when they resume from a
//! pruned position.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use token_service::{
    domain::{caller::Caller, sessions},
    pb,
};
use tonic::Code;

use crate::common::*;

/// A direct connection to the test server's database.
async fn database(srv: &TestServer) -> DatabaseConnection {
    let url = srv.config.database_url.as_ref().unwrap().expose();
    Database::connect(url)
        .await
        .expect("connect to the test database")
}

/// Takes away the tables a change writes its records to: the log (SQLite appends to it) and
/// the queue of records waiting for a seal (PostgreSQL, MariaDB).
async fn take_the_log_away(db: &DatabaseConnection) {
    for table in ["lifecycle_log", "lifecycle_pending"] {
        db.execute_unprepared(&format!("ALTER TABLE {table} RENAME TO {table}_away"))
            .await
            .unwrap();
    }
}

async fn bring_the_log_back(db: &DatabaseConnection) {
    for table in ["lifecycle_log", "lifecycle_pending"] {
        db.execute_unprepared(&format!("ALTER TABLE {table}_away RENAME TO {table}"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_revocation_whose_event_cannot_be_recorded_changes_nothing() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (token_id, secret) = as_alice.new_token("me").await;
    srv.as_(&secret)
        .get_me()
        .await
        .expect("the token works (and its session is minted)");

    // Take the log away: the change cannot commit without its event.
    let db = database(&srv).await;
    take_the_log_away(&db).await;
    let failed = as_alice
        .revoke_token(&token_id)
        .await
        .expect_err("the revoke cannot be recorded");
    assert_eq!(failed.code(), Code::Internal, "{failed:?}");
    assert!(
        !failed.message().contains("lifecycle_"),
        "no database text reaches the client: {failed:?}"
    );
    srv.as_(&secret)
        .get_me()
        .await
        .expect("the token still works: nothing was revoked");
    let listed = as_alice
        .get_token(&token_id)
        .await
        .expect("the token is still stored");
    assert!(listed.user_access_token.unwrap().is_active);

    bring_the_log_back(&db).await;
    as_alice
        .revoke_token(&token_id)
        .await
        .expect("with the log back, the revoke goes through");
    assert_token_refused(&srv, &secret).await;
    db.close().await.ok();
    srv.stop().await;
}

/// Creations are changes too: a token, a user or a session whose lifecycle record cannot be
/// written is not created, and leaves nothing behind (no row, no record).
#[tokio::test]
async fn a_creation_whose_record_cannot_be_written_leaves_nothing_behind() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_admin = srv.as_(&admin);
    let as_alice = srv.as_(&alice);
    let tokens = async || {
        as_alice
            .list_tokens_for("me")
            .await
            .unwrap()
            .user_access_tokens
    };
    let (tokens_before, sessions_before) = (tokens().await, as_admin.sessions_of(&alice.id).await);
    let records_before = srv.ctx.store().latest_record_id().await.unwrap();
    let carol = || pb::CreateUserRequest {
        username: "carol".into(),
        ..Default::default()
    };

    let db = database(&srv).await;
    take_the_log_away(&db).await;
    let token = as_alice.create_token("me", "never").await;
    let user = as_admin.create_user(carol()).await;
    let session = as_admin
        .create_session(pb::CreateSessionRequest {
            user_id: alice.id.clone(),
            ..Default::default()
        })
        .await;
    bring_the_log_back(&db).await;
    for (what, failed) in [
        ("token", token.map(drop)),
        ("user", user.map(drop)),
        ("session", session.map(drop)),
    ] {
        let failed = failed.expect_err(what);
        assert_eq!(failed.code(), Code::Internal, "{what}: {failed:?}");
        assert!(!failed.message().contains("lifecycle_"), "{failed:?}");
    }

    assert_eq!(tokens().await, tokens_before, "no token");
    assert_eq!(
        as_admin.sessions_of(&alice.id).await,
        sessions_before,
        "no session"
    );
    assert_eq!(
        as_admin
            .get_user_by_username("carol")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound,
        "no user"
    );
    assert_eq!(
        srv.ctx.store().latest_record_id().await.unwrap(),
        records_before,
        "no record"
    );
    // With the log back, the same requests go through (no half-written row in the way).
    as_alice.create_token("me", "now").await.unwrap();
    as_admin.create_user(carol()).await.unwrap();
    as_admin.login(&alice.id).await;
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL=postgres://...); .ci/run runs it"]
async fn a_lost_notification_connection_is_replaced_and_revocations_keep_arriving() {
    let srv = TestServer::start().await;
    // LISTEN/NOTIFY is PostgreSQL's; the other backends poll the log.
    assert_eq!(
        srv.backend(),
        "postgres",
        "this test needs TEST_DATABASE_URL=postgres://..."
    );
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    let db = database(&srv).await;
    let listeners = |db: DatabaseConnection| async move {
        db.query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' \
             AND pid <> pg_backend_pid()",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<i32>("", "pid").unwrap())
        .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let old = loop {
        let pids = listeners(db.clone()).await;
        if let [pid] = pids[..] {
            break pid;
        }
        assert!(Instant::now() < deadline, "one LISTEN connection: {pids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    db.execute_unprepared(&format!("SELECT pg_terminate_backend({old})"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = listeners(db.clone()).await;
        if matches!(pids[..], [pid] if pid != old) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the listener came back: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A revocation by another writer (the fixture context, like another replica) reaches
    // this server by notification: sooner than its one-second fallback poll.
    for _ in 0..2 {
        as_alice.get_me().await.expect("cached");
    }
    sessions::revoke_all_sessions(&srv.ctx, &Caller::Local, &alice.id)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        match as_alice.get_me().await {
            Err(status) if status.code() == Code::Unauthenticated => break,
            other => {
                other.expect("accepted until the notification arrives");
            }
        }
        assert!(
            start.elapsed() < Duration::from_millis(800),
            "the revocation arrived by notification"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn many_subscribers_each_receive_every_event() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(client.as_(&admin).subscribe().await);
    }
    let as_alice = client.as_(&alice);
    let (first, _) = as_alice.new_token("me").await;
    let (second, _) = as_alice.new_token("me").await;
    for token_id in [&first, &second] {
        as_alice.revoke_token(token_id).await.unwrap();
    }
    for stream in &mut streams {
        let a = next_revocation(stream).await.unwrap();
        let b = next_revocation(stream).await.unwrap();
        assert_eq!(
            (a.subject_id.as_str(), b.subject_id.as_str()),
            (first.as_str(), second.as_str())
        );
        assert!(b.id > a.id);
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_subscriber_is_cut_off_when_its_own_credential_is_revoked() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let gateway = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let mut stream = srv.as_(&gateway).subscribe().await;
    srv.as_(&admin)
        .revoke_all_sessions(&gateway.id)
        .await
        .unwrap();
    let event = next_revocation(&mut stream)
        .await
        .expect("the event comes first");
    assert_eq!(event.subject_id, gateway.id);
    let ended = next_revocation(&mut stream)
        .await
        .expect_err("then the stream ends");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_subscriber_is_cut_off_when_it_loses_the_permission_but_not_for_other_changes() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let gateway = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let mut stream = srv.as_(&gateway).subscribe().await;
    let set_roles = async |roles: &[&str]| {
        srv.as_(&admin)
            .update_user_roles(&gateway.id, roles)
            .await
            .unwrap()
    };
    // A change that keeps the permission: the stream goes on.
    set_roles(&[
        "system_user",
        "system_token_introspector",
        "system_user_access_token",
    ])
    .await;
    assert_eq!(
        next_revocation(&mut stream).await.unwrap().subject_id,
        gateway.id
    );
    set_roles(&["system_user"]).await;
    assert_eq!(
        next_revocation(&mut stream).await.unwrap().subject_id,
        gateway.id
    );
    let ended = next_revocation(&mut stream)
        .await
        .expect_err("the stream ends");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    srv.stop().await;
}

#[tokio::test]
async fn resuming_from_a_pruned_position_is_out_of_range() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_admin = srv.as_(&admin);
    let mut stream = as_admin.subscribe().await;
    for _ in 0..3 {
        let (token_id, _) = srv.as_(&alice).new_token("me").await;
        srv.as_(&alice).revoke_token(&token_id).await.unwrap();
    }
    let first = next_revocation(&mut stream).await.unwrap();
    let _second = next_revocation(&mut stream).await.unwrap();
    let third = next_revocation(&mut stream).await.unwrap();
    drop(stream);

    // Everything recorded so far is older than the cut-off.
    let pruned = srv
        .ctx
        .store()
        .prune_log(srv.now() + 1, 1_000)
        .await
        .unwrap();
    assert!(pruned >= 3, "pruned {pruned}");
    let resume = |after: i64| as_admin.watch_revocations(Some(after));
    let gone = resume(first.id)
        .await
        .expect_err("events after it are gone");
    assert_eq!(gone.code(), Code::OutOfRange, "{gone:?}");
    assert_eq!(error_id(&gone), "token_service.revocation_log.pruned");
    resume(third.id)
        .await
        .expect("resuming from the newest pruned event loses nothing");

    let rest = crate::common::http_client()
        .get(format!(
            "{}/api/v4/tokens/revocations?after_event_id={}",
            srv.http_base(),
            first.id
        ))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 410);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body["id"], "token_service.revocation_log.pruned");
    // Without a position the mirror lists from the oldest event kept (none are left).
    let rest = reqwest::Client::new()
        .get(format!("{}/api/v4/tokens/revocations", srv.http_base()))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 200);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body, serde_json::json!([]));
    srv.stop().await;
}
