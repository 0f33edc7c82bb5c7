//! Webhook delivery across replicas: two `token-service serve` processes on one PostgreSQL
//! database deliver to one endpoint; the one holding the endpoint's lease is killed
//! (SIGKILL: no shutdown, no lease given up) in the middle of the stream; the other takes
//! the endpoint over when the lease lapses and finishes. Every record arrives at least once,
//! in log order (a record in flight when the holder died may arrive twice, adjacent).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

use crate::common::*;

/// Which replica process holds the endpoint's lease now ("" if none), from the database.
async fn lease_owner(srv: &TestServer, webhook_id: &str) -> String {
    let url = srv.config.database_url.as_ref().unwrap().expose();
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT lease_owner FROM webhook_endpoints WHERE id = $1",
            [webhook_id.into()],
        ))
        .await
        .unwrap()
        .expect("the endpoint");
    let owner: String = row.try_get("", "lease_owner").unwrap();
    db.close().await.ok();
    owner
}

/// Whether a lease owner name (`<host>-<pid>-<random>`) is `pid`'s.
fn owned_by(owner: &str, pid: u32) -> bool {
    owner.contains(&format!("-{pid}-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL=postgres://...); .ci/run runs it"]
async fn killing_the_lease_holder_mid_stream_loses_nothing_and_keeps_the_order() {
    // The test server manages the endpoint but does not deliver; the two processes do.
    let srv = TestServer::start_with(|c| {
        c.webhooks.enable_delivery = false;
        c.webhooks.allow_private_addresses = true;
    })
    .await;
    assert_eq!(
        srv.backend(),
        "postgres",
        "this test needs TEST_DATABASE_URL=postgres://..."
    );
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    // Slow enough that the stream is still going when the holder is killed.
    receiver.delay_answers(Duration::from_millis(50));
    let hook_id = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap()
        .webhook
        .unwrap()
        .id;
    let settings = [
        ("TOKEN_SERVICE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true"),
        ("TOKEN_SERVICE_WEBHOOKS__LEASE", "2s"),
        ("TOKEN_SERVICE_WEBHOOKS__POLL_INTERVAL", "50ms"),
    ];
    let mut replicas = [
        ReplicaProcess::start_with_env(&srv, &settings),
        ReplicaProcess::start_with_env(&srv, &settings),
    ];

    const RECORDS: usize = 60;
    let mut revoked = Vec::new();
    for _ in 0..RECORDS {
        let (token_id, _) = srv.existing_pat(&alice, false).await;
        srv.as_(&alice).revoke_token(&token_id).await.unwrap();
        revoked.push(token_id);
    }

    // Mid-stream: some delivered, most not; kill whichever replica holds the lease.
    receiver.wait_for(10, Duration::from_secs(20)).await;
    // A replica that caught up with the log gives the lease up until its next poll takes it
    // again (the revokes above may have come slower than the deliveries): wait for a holder.
    let lease_taken_by = Instant::now() + Duration::from_secs(3);
    let holder = loop {
        let owner = lease_owner(&srv, &hook_id).await;
        if let Some(holder) = replicas.iter().position(|r| owned_by(&owner, r.pid())) {
            break holder;
        }
        assert!(
            Instant::now() < lease_taken_by,
            "a replica holds the lease mid-stream: {owner:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let delivered_before = receiver.received().len();
    replicas[holder].kill();
    assert!(
        delivered_before < RECORDS,
        "the stream was still going when the holder died ({delivered_before})"
    );
    let killed_at = Instant::now();

    // The survivor takes over after the lease lapses and delivers the rest.
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = receiver.received();
        let mut distinct: Vec<i64> = got.iter().map(Received::record_id).collect();
        distinct.dedup();
        if distinct.len() >= RECORDS {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {RECORDS} records arrived after the kill",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let survivor = &replicas[1 - holder];
    let owner = lease_owner(&srv, &hook_id).await;
    assert!(
        owner.is_empty() || owned_by(&owner, survivor.pid()),
        "the survivor holds the lease (or gave it up when done): {owner:?}"
    );
    assert!(
        survivor
            .metric("token_service_webhook_deliveries_total{outcome=\"delivered\"}")
            .await
            > 0,
        "the survivor delivered"
    );
    let after_kill = got
        .iter()
        .filter(|m| m.at > killed_at)
        .map(Received::record_id)
        .collect::<Vec<_>>();
    assert!(
        !after_kill.is_empty(),
        "deliveries continued after the kill"
    );

    // At least once, in order: the ids never go backwards (a re-sent record repeats the one
    // just before it), and every revoked token is there, in revocation order.
    let ids: Vec<i64> = got.iter().map(Received::record_id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "delivered out of order: {ids:?}"
    );
    let mut tokens: Vec<String> = got
        .iter()
        .map(|m| m.json["data"]["token_id"].as_str().unwrap().to_owned())
        .collect();
    tokens.dedup();
    assert_eq!(tokens, revoked, "every record, once or repeated, in order");
    let repeats = ids.len() - {
        let mut d = ids.clone();
        d.dedup();
        d.len()
    };
    assert!(
        repeats <= 1,
        "at most the record in flight repeats: {ids:?}"
    );
    srv.stop().await;
}
