//! `GET /metrics`: Prometheus text with request counts and latency per route and status for
//! both transports, the token cache's hits and misses, the pool's usage and the revocation
//! propagation lag; tested by scraping a real server.

use std::time::Duration;

use token_service::pb;

use crate::common::*;

async fn scrape(srv: &TestServer) -> String {
    let response = crate::common::http_get(format!("{}/metrics", srv.http_base()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_each_route_and_status_on_both_transports() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    for _ in 0..3 {
        client.as_(&alice).get_me().await.unwrap();
    }
    client
        .as_("garbage-token-xxxxxxxxxxxxxxx")
        .get_me()
        .await
        .unwrap_err();
    let http = crate::common::http_client();
    for _ in 0..2 {
        let ok = http
            .get(format!("{}/api/v4/users/me", srv.http_base()))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let missing = http
        .get(format!(
            "{}/api/v4/no/such/route/{}",
            srv.http_base(),
            "x".repeat(40)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // A gRPC path nobody serves.
    let channel = srv.channel().await;
    let mut unknown = tonic::client::Grpc::new(channel);
    unknown.ready().await.unwrap();
    let _ = unknown
        .unary::<pb::GetMeRequest, pb::GetMeResponse, _>(
            tonic::Request::new(pb::GetMeRequest {}),
            "/token_service.v1.TokenService/NoSuchMethodAtAll"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await;

    let text = scrape(&srv).await;
    let get_me = "route=\"/token_service.v1.TokenService/GetMe\"";
    assert_eq!(
        sample(
            &text,
            &format!("token_service_requests_total{{transport=\"grpc\",{get_me},status=\"OK\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "token_service_requests_total{{transport=\"grpc\",{get_me},status=\"UNAUTHENTICATED\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "token_service_request_duration_seconds_count{{transport=\"grpc\",{get_me},status=\"OK\"}}"
            )
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "token_service_requests_total{transport=\"http\",route=\"/api/v4/users/me\",status=\"200\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "token_service_requests_total{transport=\"http\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(
        !text.contains("NoSuchMethodAtAll") && !text.contains("no/such/route"),
        "arbitrary paths never become series"
    );
    assert_eq!(
        sample(
            &text,
            "token_service_requests_total{transport=\"grpc\",route=\"unknown\",status=\"UNIMPLEMENTED\"}"
        ),
        Some(1.0)
    );
    // Five checks of alice's token: the first read the database, the rest hit the cache.
    assert!(sample(&text, "token_service_cache_hits_total").unwrap() >= 4.0);
    assert!(sample(&text, "token_service_cache_misses_total").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "token_service_cache_evictions_total"),
        Some(0.0)
    );
    assert_eq!(sample(&text, "token_service_cache_trusted"), Some(1.0));
    assert_eq!(
        sample(&text, "token_service_db_pool_max_connections"),
        Some(5.0)
    );
    assert!(sample(&text, "token_service_db_pool_connections").unwrap() >= 1.0);
    // The miss read through one of the check's own connections, opened for it.
    let check = sample(&text, "token_service_db_check_connections").unwrap();
    assert!((1.0..=8.0).contains(&check), "{check}");
    srv.stop().await;
}

#[tokio::test]
async fn the_revocation_lag_is_measured_by_the_feed() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    let (token_id, _) = as_alice.new_token("me").await;
    as_alice.revoke_token(&token_id).await.unwrap();
    // The feed reads every event of the log, this replica's own included.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(&srv).await;
        if sample(&text, "token_service_revocation_propagation_seconds_count") >= Some(1.0) {
            assert!(
                sample(
                    &text,
                    "token_service_revocation_propagation_seconds_bucket{le=\"+Inf\"}"
                ) >= Some(1.0)
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    srv.stop().await;
}
