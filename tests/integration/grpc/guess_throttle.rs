//! The guess throttle on the gRPC API: failed checks of the `authorization` metadata count
//! per client address; past the limit every call presenting a credential answers
//! RESOURCE_EXHAUSTED with retry info (`retry_after_ms`) before the cache is asked, until the
//! cool-down passes. The REST shim and the gateways: tests/integration/rest/guess_throttle.rs.

use std::time::Duration;

use tonic_types::StatusExt;

use crate::common::*;

const DEAD: &str = "abcdefghijklmnopqrstuvwxyz";

#[tokio::test]
async fn failed_grpc_credentials_exhaust_the_address_until_the_cool_down_passes() {
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 3;
        c.guess_throttle.failures_per_minute = 1;
        c.guess_throttle.cool_down = token_service::config::Span(5_000);
    })
    .await;
    let alice = srv.token_user("alice").await;
    for _ in 0..100 {
        srv.as_(&alice).me().await.unwrap();
    }
    for _ in 0..4 {
        assert_unauthenticated(srv.as_(DEAD).me().await);
    }
    let before = srv.cache_stats();
    let status = srv.as_(&alice).me().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_id(&status), "token_service.rate_limited");
    let retry = status
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert_eq!(retry, Duration::from_secs(5));
    let after = srv.cache_stats();
    assert_eq!((before.hits, before.misses), (after.hits, after.misses));
    assert_eq!(
        srv.counter("token_service_failed_credential_checks_total")
            .await,
        4
    );
    assert_eq!(
        srv.counter("token_service_guess_throttle_blocks_total")
            .await,
        1
    );
    assert_eq!(srv.counter("token_service_guess_throttled_total").await, 1);
    srv.advance(Duration::from_secs(5));
    srv.as_(&alice).me().await.unwrap();
    srv.stop().await;
}
