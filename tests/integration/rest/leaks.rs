//! `POST /api/v4/tokens/leaked` (ReportLeakedTokens on the REST shim): anonymous, 202 with
//! the same body whatever the tokens were, 400 naming the field, 429 with `Retry-After`.

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;

const PATH: &str = "/api/v4/tokens/leaked";

async fn report(http: &Http, body: serde_json::Value) -> super::HttpResponse {
    http.send(Method::POST, PATH, None, Some(&body.to_string()), &[])
        .await
}

#[tokio::test]
async fn anyone_may_report_and_the_answer_never_tells_which_tokens_were_live() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let pat = srv
        .as_(&alice)
        .create_token("me", "leaked")
        .await
        .unwrap()
        .token;
    let http = Http::new(&srv);
    let dead = report(
        &http,
        json!({"tokens": ["abcdefghijklmnopqrstuvwxyz", "x"]}),
    )
    .await;
    let live = report(
        &http,
        json!({"tokens": [pat, "x"], "url": "https://github.com/acme/app/blob/main/.env"}),
    )
    .await;
    assert_eq!(live.status, 202);
    assert_eq!(live.raw, r#"{"received":2}"#);
    assert_eq!((dead.status, dead.raw), (live.status, live.raw.clone()));
    assert_unauthenticated(srv.as_(&pat).me().await);
    // A credential that does not authenticate is ignored, not refused.
    let with_bad_credential = http
        .send(
            Method::POST,
            PATH,
            Some("abcdefghijklmnopqrstuvwxyz"),
            Some(r#"{"tokens":["x"]}"#),
            &[],
        )
        .await;
    assert_eq!(with_bad_credential.status, 202);
    srv.stop().await;
}

#[tokio::test]
async fn bad_reports_are_400_naming_the_field_and_too_many_are_429() {
    let srv = TestServer::start_with(|c| {
        c.leak_reports.requests_per_minute = 1;
        // The two refused reports count; the undecodable body never reaches the limiter.
        c.leak_reports.burst = 2;
    })
    .await;
    let http = Http::new(&srv);
    let empty = report(&http, json!({"tokens": []})).await;
    empty.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(empty.json["message"].as_str().unwrap().contains("tokens"));
    let bad_url = report(
        &http,
        json!({"tokens": ["x"], "url": "javascript:alert(1)"}),
    )
    .await;
    bad_url.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(bad_url.json["message"].as_str().unwrap().contains("url"));
    let not_json = http
        .send(Method::POST, PATH, None, Some("tokens=x"), &[])
        .await;
    not_json.assert_error(400, "api.context.invalid_body_param.app_error");

    let limited = report(&http, json!({"tokens": ["x"]})).await;
    limited.assert_error(429, "token_service.rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    srv.stop().await;
}

#[tokio::test]
async fn switched_off_reports_are_501() {
    let srv = TestServer::start_with(|c| c.leak_reports.enable = false).await;
    let http = Http::new(&srv);
    report(&http, json!({"tokens": ["x"]}))
        .await
        .assert_error(501, "token_service.leak_reports.disabled");
    srv.stop().await;
}
