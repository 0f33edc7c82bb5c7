//! Fail static (`cache.stale_if_unavailable`): while the database is out of reach, credentials
//! this replica cached before the outage keep authenticating for at most the window from the
//! outage's start (expiry still enforced), one never seen fails, writes fail cleanly, and
//! readiness says degraded; after the window every check fails closed again. Needs a database
//! server (TEST_DATABASE_URL); on SQLite there is no connection to cut.

use std::time::Duration;

use prost_types::Timestamp;
use tonic_health::pb::health_check_response::ServingStatus;

use super::faults::health_status;
use crate::common::{proxy::server_behind_a_proxy, *};

async fn readyz(srv: &TestServer) -> (u16, serde_json::Value) {
    let response = http_client()
        .get(format!("{}/readyz", srv.http_base()))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn unavailable<T: std::fmt::Debug>(reply: Result<T, tonic::Status>) {
    let status = reply.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(error_id(&status), "token_service.database_unavailable");
}

#[tokio::test]
#[ignore = "needs a database server (TEST_DATABASE_URL, PostgreSQL or MariaDB); .ci/run runs it"]
async fn cached_credentials_outlive_a_database_outage_for_the_window_only() {
    let (proxy, srv) = server_behind_a_proxy(|c| {
        c.pool.acquire_timeout_secs = 1;
        c.pool.connect_timeout_secs = 1;
        c.cache.stale_if_unavailable = token_service::config::Span(60_000);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let as_alice = srv.client().await.as_(&alice);
    as_alice.get_me().await.unwrap();
    // A personal access token that expires 30 s from now, used (so cached) before the outage.
    let expires = srv.now() / 1000 + 30;
    let pat = as_alice
        .create_token_expiring(
            "me",
            "short",
            Some(Timestamp {
                seconds: expires,
                nanos: 0,
            }),
        )
        .await
        .unwrap();
    let pat_id = pat.user_access_token.as_ref().unwrap().id.clone();
    let as_pat = srv.client().await.as_(&pat.token);
    as_pat.get_me().await.unwrap();

    proxy.cut();
    // The revocation feed notices within a second: readiness turns degraded, still ready.
    // The database check says so at its next run (a run at the very moment of the cut can
    // still see the ping answered and only the migrations query fail).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = readyz(&srv).await;
        if body["status"] == "degraded" {
            assert_eq!(status, 200, "{body}");
            if body["checks"]["database"] != "ok" {
                break body;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never degraded with the database check failing: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("stale_if_unavailable"),
        "{body}"
    );
    assert_eq!(
        health_status(srv.channel().await).await,
        ServingStatus::Serving as i32
    );

    // Cached credentials keep working (gRPC and REST), answered without the database.
    let stale_before = srv.counter("token_service_stale_answers_total").await;
    as_alice.get_me().await.unwrap();
    as_pat.get_me().await.unwrap();
    let rest = http_client()
        .get(format!("{}/api/v4/users/me", srv.http_base()))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status().as_u16(), 200);
    assert!(srv.counter("token_service_stale_answers_total").await >= stale_before + 3);
    // A credential never seen here fails closed.
    unavailable(srv.client().await.as_(&bob).get_me().await);
    // A write fails cleanly: the revocation is refused, nothing changes.
    unavailable(as_alice.revoke_token(&pat_id).await);
    let rest = http_client()
        .post(format!("{}/api/v4/users/tokens/revoke", srv.http_base()))
        .bearer_auth(&alice.token)
        .header("X-Requested-With", "XMLHttpRequest")
        .body(serde_json::json!({ "token_id": pat_id }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status().as_u16(), 503);

    // Expiry is still enforced: 31 s later the short token no longer authenticates.
    srv.advance(Duration::from_secs(31));
    assert!(as_pat.get_me().await.is_err());
    as_alice.get_me().await.unwrap();

    // The window (60 s from the outage's start) passes: every check fails closed, not ready.
    srv.advance(Duration::from_secs(30));
    unavailable(as_alice.get_me().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = readyz(&srv).await;
        if status == 503 {
            assert_eq!(body["status"], "not_ready", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        health_status(srv.channel().await).await,
        ServingStatus::NotServing as i32
    );

    // The database returns: nothing was revoked during the outage.
    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while as_alice.get_me().await.is_err() || readyz(&srv).await.1["status"] != "ready" {
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tokens = as_alice.list_tokens_for(&alice.id).await.unwrap();
    assert!(
        tokens.user_access_tokens.iter().any(|t| t.id == pat_id),
        "the revoke changed nothing"
    );
    srv.stop().await;
    drop(proxy);
}
