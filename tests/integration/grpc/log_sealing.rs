//! Group commit of the lifecycle log (PostgreSQL, MariaDB): changes queue their records in
//! `lifecycle_pending` and a sealer moves them into the log. Concurrent writes keep one dense
//! chain and every call's record is in the log when the call returns; a record left waiting
//! (a replica that stopped between its commit and its seal) is sealed by a running server;
//! two servers writing at once keep one chain. On SQLite (records appended inline) the same
//! checks hold; the left-waiting case does not arise there.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use token_service::domain::{
    error::Reason,
    ids::UserId,
    lifecycle::{Action, RecordFilter},
};

use crate::common::*;

/// A connection of the test's own to the server's database.
async fn raw_db(srv: &TestServer) -> DatabaseConnection {
    let url = srv
        .config
        .database_url
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    Database::connect(url).await.unwrap()
}

/// How many records wait for a seal.
async fn waiting(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS waiting FROM lifecycle_pending",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "waiting").unwrap()
}

/// The log from its chain start to its head: ids dense and in order, every hash chained over
/// the one before, the head naming the last record, nothing left waiting, and the server's
/// own check (VerifyAuditLog) agreeing. Returns the records' count.
async fn assert_one_dense_chain(srv: &TestServer, admin: &Actor) -> usize {
    let store = srv.ctx.store();
    let (start, head) = store.log_chain_ends().await.unwrap();
    let records = store
        .stored_records_between(start.id, head.id, 100_000)
        .await
        .unwrap();
    let mut previous = start.hash.clone();
    for (expected_id, record) in (start.id + 1..).zip(&records) {
        assert_eq!(record.id, expected_id, "ids are dense");
        assert_eq!(
            record.hash,
            record.chained_hash(srv.ctx.audit_key(), &previous),
            "record {} does not chain",
            record.id
        );
        previous = record.hash.clone();
    }
    assert_eq!(records.last().map_or(start.id, |r| r.id), head.id);
    assert_eq!(head.hash, previous);
    assert_eq!(store.latest_record_id().await.unwrap(), head.id);
    assert_eq!(waiting(&raw_db(srv).await).await, 0);
    let report = srv
        .as_(admin)
        .verify_audit_log(None, Some(100_000))
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    records.len()
}

/// Creates `total` tokens from `tasks` concurrent tasks through `clients` (round robin), each
/// checking that its token's record is in the log when its call returned. The token ids.
async fn create_concurrently(
    srv: &TestServer,
    clients: &[Client],
    owner: &Actor,
    total: usize,
    tasks: usize,
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for task in 0..tasks {
        let on = clients[task % clients.len()].as_(owner);
        let next = next.clone();
        let store = srv.ctx.store().clone();
        let user_id = owner.id.clone();
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let (token_id, _) = on.new_token("me").await;
                // Read-your-writes: the record is in the log when the call has returned.
                let filter = RecordFilter {
                    actions: vec![Action::AccessTokenCreated],
                    user_id: Some(
                        UserId::parse(&user_id, "user_id", Reason::InvalidUrlParam).unwrap(),
                    ),
                };
                let records = store.records_after(0, &filter, 10_000).await.unwrap();
                assert!(
                    records
                        .iter()
                        .any(|r| r.record.subjects.token_id == token_id),
                    "token {token_id}'s record is not in the log after its call returned"
                );
                ids.push(token_id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for handle in handles {
        ids.extend(handle.await.unwrap());
    }
    ids
}

#[tokio::test]
async fn concurrent_writes_keep_one_dense_chain_and_each_call_finds_its_record_in_the_log() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let before = assert_one_dense_chain(&srv, &admin).await;
    let client = srv.client().await;
    let ids = create_concurrently(&srv, std::slice::from_ref(&client), &alice, 200, 32).await;
    assert_eq!(ids.len(), 200);
    // Revokes too, concurrently: each takes its token away and records it.
    let mut handles = Vec::new();
    for chunk in ids.chunks(25) {
        let on = client.as_(&alice);
        let chunk = chunk.to_vec();
        handles.push(tokio::spawn(async move {
            for id in chunk {
                on.revoke_token(&id).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let after = assert_one_dense_chain(&srv, &admin).await;
    assert_eq!(after - before, 400, "one record per create and per revoke");
    srv.stop().await;
}

#[tokio::test]
async fn a_record_left_waiting_by_a_stopped_replica_is_sealed_by_a_running_server() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    if srv.backend() == "sqlite" {
        eprintln!("SQLite appends inline: no record waits for a seal");
        srv.stop().await;
        return;
    }
    let db = raw_db(&srv).await;
    let newest = srv.ctx.store().latest_record_id().await.unwrap();
    // What a replica's change leaves when the replica stops between its commit and its seal.
    db.execute_unprepared(
        "INSERT INTO lifecycle_pending (create_at, action, actor_type, user_id, detail) \
         VALUES (1700000000000, 'user.created', 'service', 'leftbehind0000000000000000', '{}')",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let sealed = srv
            .ctx
            .store()
            .records_after(newest, &RecordFilter::default(), 100)
            .await
            .unwrap();
        if let Some(record) = sealed
            .iter()
            .find(|r| r.record.subjects.user_id == "leftbehind0000000000000000")
        {
            assert_eq!(record.record.action, Action::UserCreated);
            assert_eq!(record.create_at, 1_700_000_000_000);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the waiting record was not sealed within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_one_dense_chain(&srv, &admin).await;
    srv.stop().await;
}

#[tokio::test]
async fn two_servers_writing_at_once_keep_one_chain() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let replica = srv.start_replica(|_| {}).await;
    let before = assert_one_dense_chain(&srv, &admin).await;
    let clients = [srv.client().await, client_of(replica.grpc_addr())];
    let ids = create_concurrently(&srv, &clients, &alice, 120, 16).await;
    assert_eq!(ids.len(), 120);
    let after = assert_one_dense_chain(&srv, &admin).await;
    assert_eq!(after - before, 120);
    replica.shutdown().await.unwrap();
    srv.stop().await;
}

/// A trigger that makes the database refuse any token described "refused" (as a constraint
/// the domain cannot see would), for the backend of `db`.
async fn refuse_tokens_described_refused(db: &DatabaseConnection, backend: &str) {
    let statements: &[&str] = match backend {
        "postgres" => &[
            "CREATE FUNCTION refuse_token() RETURNS trigger AS $$ BEGIN \
             IF NEW.description = 'refused' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_token BEFORE INSERT ON user_access_tokens \
             FOR EACH ROW EXECUTE FUNCTION refuse_token()",
        ],
        "mysql" => &[
            "CREATE TRIGGER refuse_token BEFORE INSERT ON user_access_tokens \
             FOR EACH ROW BEGIN IF NEW.description = 'refused' THEN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; END IF; END",
        ],
        _ => &[
            "CREATE TRIGGER refuse_token BEFORE INSERT ON user_access_tokens \
             WHEN NEW.description = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.unwrap();
    }
}

/// Concurrent creations share statements on PostgreSQL (`store::token_inserts`); one the
/// database refuses must fail alone, whatever it shared: every other creation is made, with
/// its record, and nothing of the refused ones is left.
#[tokio::test]
async fn a_creation_the_database_refuses_fails_alone_and_the_others_are_made() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let db = raw_db(&srv).await;
    refuse_tokens_described_refused(&db, srv.backend()).await;
    let before = assert_one_dense_chain(&srv, &admin).await;
    let client = srv.client().await;
    let mut handles = Vec::new();
    for i in 0..96 {
        let on = client.as_(&alice);
        handles.push(tokio::spawn(async move {
            let description = if i % 4 == 0 { "refused" } else { "kept" };
            (description, on.create_token("me", description).await)
        }));
    }
    let mut made = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            ("kept", Ok(created)) => made.push(created.user_access_token.unwrap().id),
            ("refused", Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
                assert!(
                    !status.message().contains("refused by the test"),
                    "the database's text stays in the log: {status:?}"
                );
            }
            (description, outcome) => panic!("{description}: {outcome:?}"),
        }
    }
    assert_eq!(made.len(), 72);
    let listed = client
        .as_(&alice)
        .list_tokens_for_page("me", Some(0), Some(200))
        .await
        .unwrap()
        .user_access_tokens;
    let mut listed: Vec<String> = listed.into_iter().map(|t| t.id).collect();
    listed.sort();
    made.sort();
    assert_eq!(listed, made, "exactly the kept tokens exist");
    let after = assert_one_dense_chain(&srv, &admin).await;
    assert_eq!(
        after - before,
        72,
        "one record per kept token, none for a refused one"
    );
    srv.stop().await;
}

/// Revokes that arrive together share statements on PostgreSQL; several of one token by its
/// owner must still behave as one after the other: one revokes it (one record), the others
/// find nothing, as a revoke of a token already gone does. Tokens revoked alongside are
/// revoked once each.
#[tokio::test]
async fn revokes_of_one_token_at_once_revoke_it_once() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let as_alice = client.as_(&alice);
    let (target, _) = as_alice.new_token("me").await;
    let mut others = Vec::new();
    for _ in 0..24 {
        others.push(as_alice.new_token("me").await.0);
    }
    let before = assert_one_dense_chain(&srv, &admin).await;
    let mut handles = Vec::new();
    for i in 0..48 {
        let on = client.as_(&alice);
        let id = if i % 2 == 0 {
            target.clone()
        } else {
            others[i / 2].clone()
        };
        handles.push(tokio::spawn(async move {
            (id.clone(), on.revoke_token(&id).await)
        }));
    }
    let mut target_revoked = 0;
    let mut target_refused = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            (id, outcome) if id == target => match outcome {
                Ok(_) => target_revoked += 1,
                Err(status) => target_refused.push(status.code()),
            },
            (id, outcome) => assert!(outcome.is_ok(), "{id}: {outcome:?}"),
        }
    }
    assert_eq!(target_revoked, 1, "refused: {target_refused:?}");
    let gone = as_alice.revoke_token(&target).await.unwrap_err().code();
    assert_eq!(target_refused, vec![gone; 23]);
    let after = assert_one_dense_chain(&srv, &admin).await;
    assert_eq!(after - before, 25, "one record per revoked token");
    let listed = as_alice
        .list_tokens_for_page("me", Some(0), Some(200))
        .await
        .unwrap()
        .user_access_tokens;
    assert!(listed.is_empty(), "{listed:?}");
    srv.stop().await;
}
