//! Database faults: while the database is out of reach, calls answer UNAVAILABLE (retryable,
//! no database text) and health reports NOT_SERVING; both recover by themselves.
//! Needs a database server (TEST_DATABASE_URL); on SQLite there is no connection to cut.

use std::time::Duration;

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::common::{proxy::server_behind_a_proxy, *};

pub(super) async fn health_status(channel: tonic::transport::Channel) -> i32 {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "token_service.v1.TokenService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn an_unreachable_database_means_unavailable_and_not_serving_until_it_returns() {
    let (proxy, srv) = server_behind_a_proxy(|c| {
        c.pool.acquire_timeout_secs = 1;
        c.pool.connect_timeout_secs = 1;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    as_alice.get_me().await.unwrap();

    proxy.cut();
    // Calls that need the database fail at once.
    let status = as_alice.list_tokens_for(&alice.id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    // The REST shim answers 503 with a Mattermost-style error body.
    let rest = crate::common::http_client()
        .get(format!("{}/api/v4/users/me/tokens", srv.http_base()))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status().as_u16(), 503);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body["id"], "token_service.database_unavailable", "{body}");
    assert_eq!(body["status_code"], 503, "{body}");
    // The token check may be answered from the cache until the revocation feed notices it
    // cannot read the log (well under a second); from then on the cache is bypassed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let status = loop {
        match as_alice.get_me().await {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cache is still trusted 3 s after the database went away"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(error_id(&status), "token_service.database_unavailable");
    assert!(
        !status.message().to_lowercase().contains("sqlx"),
        "{status:?}"
    );
    let mut not_serving = false;
    for _ in 0..50 {
        if health_status(srv.channel().await).await == ServingStatus::NotServing as i32 {
            not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        not_serving,
        "health must report NOT_SERVING while the database is away"
    );
    // Fail static is off by default: nothing was answered stale.
    assert_eq!(srv.counter("token_service_stale_answers_total").await, 0);

    proxy.restore();
    let mut recovered = false;
    for _ in 0..100 {
        if as_alice.get_me().await.is_ok()
            && health_status(srv.channel().await).await == ServingStatus::Serving as i32
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "service and health recover without a restart");
    srv.stop().await;
    drop(proxy);
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn a_database_that_stops_answering_holds_no_caller_past_the_request_timeout() {
    let (proxy, srv) = server_behind_a_proxy(|c| c.request_timeout_ms = 1_500).await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    as_alice.list_tokens_for(&alice.id).await.unwrap();

    // Packets stop; no connection closes.
    proxy.stall();
    let started = std::time::Instant::now();
    let status = as_alice.list_tokens_for(&alice.id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(error_id(&status), "token_service.database_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let rest = crate::common::http_client()
        .get(format!("{}/api/v4/users/me/tokens", srv.http_base()))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status().as_u16(), 503);
    let body: serde_json::Value = rest.json().await.unwrap();
    assert_eq!(body["id"], "token_service.database_unavailable", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Packets flow again: service resumes by itself.
    proxy.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while as_alice.list_tokens_for(&alice.id).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.stop().await;
    drop(proxy);
}
