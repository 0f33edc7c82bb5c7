//! Guessing is throttled (`[guess_throttle]`): failed checks of a caller's own credential
//! are counted per client address; past the limit every request from that address that
//! presents a credential is refused with 429 and `Retry-After` (valid credentials too, before
//! any cache or database work) until the cool-down passes. Successes never count. Behind a
//! trusted proxy the forwarded client is the one counted; a header from anyone else is not
//! read.

use std::time::Duration;

use reqwest::Method;

use super::{Http, HttpResponse};
use crate::common::*;

const ME: &str = "/api/v4/users/me";
const DEAD: &str = "abcdefghijklmnopqrstuvwxyz";

async fn me(http: &Http, token: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http.send(Method::GET, ME, Some(token), None, headers).await
}

fn retry_after(response: &HttpResponse) -> u64 {
    response.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn failures_past_the_limit_refuse_the_address_even_with_a_valid_token_until_the_cool_down_passes()
 {
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 5;
        c.guess_throttle.failures_per_minute = 1;
        c.guess_throttle.cool_down = token_service::config::Span(30_000);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    // Many successes count for nothing.
    for _ in 0..50 {
        me(&http, &alice.token, &[]).await.assert_ok();
    }
    for _ in 0..5 {
        me(&http, DEAD, &[])
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    assert_eq!(
        srv.counter("token_service_guess_throttle_blocks_total")
            .await,
        0
    );
    // The sixth failure empties the bucket: from now on the address is refused.
    me(&http, DEAD, &[])
        .await
        .assert_error(401, "api.context.session_expired.app_error");
    let before = srv.cache_stats();
    let refused = me(&http, &alice.token, &[]).await;
    refused.assert_error(429, "token_service.rate_limited");
    assert_eq!(refused.json["status_code"], 429, "{}", refused.raw);
    assert_eq!(retry_after(&refused), 30);
    let after = srv.cache_stats();
    assert_eq!(
        (before.hits, before.misses),
        (after.hits, after.misses),
        "refused before the cache is asked"
    );
    // The gateway endpoints and the gRPC API refuse the same address.
    let verify = http
        .send(Method::GET, "/auth/verify", Some(&alice.token), None, &[])
        .await;
    assert_eq!(verify.status, 429, "{}", verify.raw);
    assert!(verify.headers.contains_key("retry-after"));
    let introspect = crate::common::http_client()
        .post(format!("{}/oauth2/introspect", srv.http_base()))
        .bearer_auth(&alice.token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={DEAD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(introspect.status().as_u16(), 429);
    assert!(introspect.headers().contains_key("retry-after"));
    let status = srv.as_(&alice).me().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(error_id(&status), "token_service.rate_limited");
    // A request with no credential is not a guess: it is answered.
    http.send(Method::GET, "/api/v4/system/ping", None, None, &[])
        .await
        .assert_ok();
    assert_eq!(
        srv.counter("token_service_guess_throttle_blocks_total")
            .await,
        1
    );
    assert!(srv.counter("token_service_guess_throttled_total").await >= 4);
    assert!(
        srv.counter("token_service_failed_credential_checks_total")
            .await
            >= 6
    );

    // Ten seconds later: still refused, with less to wait.
    srv.advance(Duration::from_secs(10));
    let refused = me(&http, &alice.token, &[]).await;
    refused.assert_error(429, "token_service.rate_limited");
    assert_eq!(retry_after(&refused), 20);
    // The cool-down over, the address is served again.
    srv.advance(Duration::from_secs(20));
    me(&http, &alice.token, &[]).await.assert_ok();
    srv.as_(&alice).me().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_throttled_and_a_spoofed_header_is_not_read()
{
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 2;
        c.guess_throttle.failures_per_minute = 1;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let guesser = [("x-forwarded-for", "203.0.113.7")];
    for _ in 0..3 {
        me(&http, DEAD, &guesser)
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    me(&http, &alice.token, &guesser)
        .await
        .assert_error(429, "token_service.rate_limited");
    // Another client behind the same proxy, and the proxy itself, are served.
    me(&http, &alice.token, &[("x-forwarded-for", "203.0.113.8")])
        .await
        .assert_ok();
    me(&http, &alice.token, &[]).await.assert_ok();
    srv.stop().await;

    // Without trusted proxies the header is the client's own claim: the peer is counted.
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 2;
        c.guess_throttle.failures_per_minute = 1;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    for i in 0..3 {
        let spoofed = format!("198.51.100.{i}");
        me(&http, DEAD, &[("x-forwarded-for", spoofed.as_str())])
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    me(&http, &alice.token, &[("x-forwarded-for", "198.51.100.99")])
        .await
        .assert_error(429, "token_service.rate_limited");
    srv.stop().await;
}

#[tokio::test]
async fn tokens_introspected_for_others_do_not_count_against_the_introspecting_service() {
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.burst = 2;
        c.guess_throttle.failures_per_minute = 1;
    })
    .await;
    let service = srv
        .user(
            "introspector",
            &["system_user", "system_token_introspector"],
        )
        .await;
    for i in 0..20 {
        let found = srv
            .as_(&service)
            .introspect(&format!("{DEAD}{i}"))
            .await
            .unwrap();
        assert!(!found.active);
    }
    srv.as_(&service).me().await.unwrap();
    assert_eq!(
        srv.counter("token_service_guess_throttle_blocks_total")
            .await,
        0
    );
    srv.stop().await;
}

#[tokio::test]
async fn switched_off_the_throttle_refuses_nobody_but_failures_are_counted() {
    let srv = TestServer::start_with(|c| {
        c.guess_throttle.enable = false;
        c.guess_throttle.burst = 1;
        c.guess_throttle.failures_per_minute = 1;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    for _ in 0..5 {
        me(&http, DEAD, &[])
            .await
            .assert_error(401, "api.context.session_expired.app_error");
    }
    me(&http, &alice.token, &[]).await.assert_ok();
    assert_eq!(
        srv.counter("token_service_failed_credential_checks_total")
            .await,
        5
    );
    assert_eq!(srv.counter("token_service_guess_throttled_total").await, 0);
    srv.stop().await;
}
