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

#[tokio::test]
async fn each_burst_of_refusals_is_logged_once_with_the_address_and_no_secret() {
    const LINE: &str = "too many failed credential checks from this address";
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    // A process of its own, so that its log (stderr) is this test's alone.
    let replica = ReplicaProcess::start_with_env(
        &srv,
        &[
            ("TOKEN_SERVICE_GUESS_THROTTLE__BURST", "3"),
            ("TOKEN_SERVICE_GUESS_THROTTLE__FAILURES_PER_MINUTE", "1"),
            ("TOKEN_SERVICE_GUESS_THROTTLE__COOL_DOWN", "500ms"),
        ],
    );
    let client = replica.client().await;
    client.as_(&alice).me().await.expect("alice's token works");
    // Guesses shaped like real tokens (26 characters).
    let guesses: Vec<String> = (0..40).map(|i| format!("{}{i:04}", &DEAD[..22])).collect();
    for (burst, guesses) in guesses.chunks(20).enumerate() {
        let mut refused = 0;
        for guess in guesses {
            match client.as_(guess.as_str()).me().await {
                Err(status) if status.code() == tonic::Code::ResourceExhausted => refused += 1,
                Err(status) if status.code() == tonic::Code::Unauthenticated => {}
                other => panic!("a guess answered {other:?}"),
            }
        }
        assert!(refused >= 15, "burst {burst}: only {refused} of 20 refused");
        replica
            .wait_for_log_lines(LINE, burst + 1, Duration::from_secs(5))
            .await;
        // Nothing more is logged for the rest of the burst.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = replica.log_lines_with(LINE);
        assert_eq!(lines.len(), burst + 1, "one line per burst: {lines:#?}");
        let line = lines.last().unwrap();
        assert!(
            line.contains("WARN") && line.contains("client_ip=127.0.0.1"),
            "the line names the address: {line}"
        );
        // The next burst begins once the cool-down has passed.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    // No presented credential, guessed or valid, appears anywhere in the log.
    let log = replica.log_lines();
    for secret in guesses.iter().chain([&alice.token]) {
        assert!(
            !log.iter().any(|line| line.contains(secret.as_str())),
            "the log holds a presented credential"
        );
    }
    srv.stop().await;
}
