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
