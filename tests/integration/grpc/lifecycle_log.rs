//! The lifecycle log's core: what a gRPC call records about itself (actor, subjects, client
//! address, user agent, the request id the caller is given), the hash chain, and the move of
//! an earlier version's revocation events into the log.

use sea_orm::{ConnectionTrait, Database};
use token_service::{
    domain::lifecycle::{Action, Actor as RecordActor, LifecycleRecord, RecordFilter},
    store::{PoolOptions, Store},
};

use token_service::pb;

use crate::common::*;

/// Every record in the log, oldest first.
async fn all_records(srv: &TestServer) -> Vec<LifecycleRecord> {
    srv.ctx
        .store()
        .records_after(0, &RecordFilter::default(), 10_000)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_grpc_change_records_its_actor_subjects_address_user_agent_and_request_id() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let mut request = authed(
        pb::CreateUserAccessTokenRequest {
            user_id: "me".into(),
            description: "ci".into(),
            expires_at: None,
            ..Default::default()
        },
        &alice.token,
    );
    request
        .metadata_mut()
        .insert("user-agent", "audit-test/1.0".parse().unwrap());
    let response = client.create_user_access_token(request).await.unwrap();
    let request_id = response
        .metadata()
        .get("x-request-id")
        .expect("gRPC answers carry the request id")
        .to_str()
        .unwrap()
        .to_owned();
    let created = response.into_inner();
    let secret = created.token;
    let token = created.user_access_token.unwrap();

    let records = all_records(&srv).await;
    let created: Vec<_> = records
        .iter()
        .filter(|r| r.record.action == Action::AccessTokenCreated)
        .collect();
    assert_eq!(created.len(), 1, "{records:#?}");
    let record = &created[0].record;
    assert_eq!(record.actor.kind(), "user");
    assert_eq!(record.actor.id(), alice.id);
    assert_eq!(record.subjects.user_id, alice.id);
    assert_eq!(record.subjects.token_id, token.id);
    assert_eq!(record.origin.request_id, request_id);
    assert_eq!(record.origin.ip, "127.0.0.1");
    assert!(
        record.origin.user_agent.starts_with("audit-test/1.0"),
        "{:?}",
        record.origin.user_agent
    );
    // The record names the token by an HMAC of its value under the audit key, never the value.
    assert_eq!(
        record.credential_hmac,
        srv.ctx.audit_key().credential_hmac(&secret)
    );
    assert!(!format!("{records:?}").contains(&secret));
    assert_eq!(created[0].to_json()["detail"]["description"], "ci");
    srv.stop().await;
}

#[tokio::test]
async fn operator_changes_are_recorded_as_the_operator_and_the_chain_links_every_record() {
    let srv = TestServer::start().await;
    // The fixtures act as the local operator (in-process, outside any request).
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (token_id, _secret) = as_alice.new_token("me").await;
    as_alice.disable_token(&token_id).await.unwrap();
    as_alice.enable_token(&token_id).await.unwrap();
    as_alice.revoke_token(&token_id).await.unwrap();

    let records = all_records(&srv).await;
    let user_created = records
        .iter()
        .find(|r| r.record.action == Action::UserCreated)
        .unwrap();
    assert_eq!(user_created.record.actor, RecordActor::Operator);
    assert_eq!(user_created.record.origin.ip, "");
    let actions: Vec<Action> = records
        .iter()
        .map(|r| r.record.action)
        .filter(|a| a.as_str().starts_with("access_token."))
        .collect();
    assert_eq!(
        actions,
        [
            Action::AccessTokenCreated,
            Action::AccessTokenDisabled,
            Action::AccessTokenEnabled,
            Action::AccessTokenRevoked,
        ]
    );
    // Only what takes something away is a revocation.
    for record in &records {
        let revokes = record.record.revocation.is_some();
        let expected = matches!(
            record.record.action,
            Action::AccessTokenDisabled | Action::AccessTokenRevoked
        );
        if record.record.action.as_str().starts_with("access_token.") {
            assert_eq!(revokes, expected, "{record:?}");
        }
    }

    // Ids are consecutive and every hash chains over the one before.
    let (start, head) = srv.ctx.store().log_chain_ends().await.unwrap();
    let mut previous = start.hash.clone();
    for (expected_id, record) in (start.id + 1..).zip(&records) {
        assert_eq!(record.id, expected_id);
        assert_eq!(
            record.hash,
            record.chained_hash(srv.ctx.audit_key(), &previous),
            "record {} does not chain",
            record.id
        );
        previous = record.hash.clone();
    }
    assert_eq!(head.id, records.last().unwrap().id);
    assert_eq!(head.hash, previous);
    srv.stop().await;
}

#[tokio::test]
async fn revocation_events_of_an_earlier_version_move_into_the_log_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or a database of its own on TEST_DATABASE_URL's server.
    let test_db = TestDb::create(dir.path()).await;
    let url = test_db.url();
    let pool = PoolOptions {
        max_connections: 2,
        min_connections: 0,
        connect_timeout: std::time::Duration::from_secs(5),
        acquire_timeout: std::time::Duration::from_secs(5),
        check_connections: 1,
        check_batches: 1,
    };
    let store = Store::connect(&url, &pool).await.unwrap();
    store.migrate_up().await.unwrap();
    // Back to the schema before the lifecycle log (everything after migration 4).
    let applied = store.migration_status().await.unwrap();
    let after_four = applied
        .iter()
        .position(|m| m.name.contains("_000004_"))
        .unwrap();
    store
        .migrate_down((applied.len() - after_four - 1) as u32)
        .await
        .unwrap();
    let db = Database::connect(&url).await.unwrap();
    for (id, kind, subject) in [
        (7, "session", "s".repeat(26)),
        (8, "access_token", "t".repeat(26)),
        (9, "user", "u".repeat(26)),
        (12, "all", String::new()),
    ] {
        db.execute_unprepared(&format!(
            "INSERT INTO revocation_events (id, kind, subject_id, create_at) \
             VALUES ({id}, '{kind}', '{subject}', 1000)"
        ))
        .await
        .unwrap();
    }
    db.execute_unprepared("UPDATE service_meta SET value = '5' WHERE name = 'revocation_log'")
        .await
        .unwrap();
    db.close().await.unwrap();

    store.migrate_up().await.unwrap();
    let events = store.revocations_after(0, 100).await.unwrap();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [7, 8, 9, 12]);
    assert_eq!(events[1].revocation.kind(), "access_token");
    assert_eq!(events[1].revocation.subject_id(), "t".repeat(26));
    assert_eq!(store.pruned_log_through().await.unwrap(), 5);
    let records = store
        .records_after(0, &RecordFilter::default(), 100)
        .await
        .unwrap();
    let actions: Vec<Action> = records.iter().map(|r| r.record.action).collect();
    assert_eq!(
        actions,
        [
            Action::SessionRevoked,
            Action::AccessTokenRevoked,
            Action::UserSessionsRevoked,
            Action::AllSessionsRevoked,
        ]
    );
    assert!(
        records
            .iter()
            .all(|r| r.record.actor == RecordActor::Unknown)
    );
    // The chain starts after the moved records; the next append continues the ids.
    let (start, head) = store.log_chain_ends().await.unwrap();
    assert_eq!((start.id, head.id), (12, 12));
    assert_eq!(store.latest_record_id().await.unwrap(), 12);
    store.close().await;
    test_db.drop_database().await;
}
