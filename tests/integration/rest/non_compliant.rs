//! Mattermost's non-compliant token routes over the REST shim:
//! `GET /api/v4/users/tokens/non_compliant/count` and
//! `POST /api/v4/users/tokens/non_compliant/revoke`, both `{"count": N}` without a trailing
//! newline, `manage_system` only; 400 `no_policy` without a policy; 500 `partial` when the
//! batch limit (1000 batches) or the time budget (two thirds of the request timeout) is
//! reached. The static path wins over
//! `/users/tokens/{token_id}`. Tokens are made on a server without a policy; a replica with
//! `maximum_personal_access_token_lifetime_days = 30` serves the routes.

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;
use crate::grpc::non_compliant::pat;

const COUNT: &str = "/api/v4/users/tokens/non_compliant/count";
const REVOKE: &str = "/api/v4/users/tokens/non_compliant/revoke";

#[tokio::test]
async fn the_non_compliant_routes_answer_as_mattermost_does() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    pat(&srv, &alice, None).await;
    pat(&srv, &alice, None).await;

    // Without a policy: count 0, revoke refused.
    let http = Http::new(&srv);
    let count = http.get(COUNT, &admin.token).await;
    assert_eq!(count.raw, r#"{"count":0}"#, "no trailing newline");
    let refused = http.post(REVOKE, &admin.token, json!({})).await;
    refused.assert_error(
        400,
        "app.user_access_token.revoke_non_compliant.no_policy.app_error",
    );

    let replica = srv
        .start_replica(|c| {
            c.maximum_personal_access_token_lifetime_days = 30;
            c.jobs.enable = false;
        })
        .await;
    let http = Http::at(format!("http://{}", replica.http_addr()));
    // The static segments win over /users/tokens/{token_id}.
    let count = http.get(COUNT, &admin.token).await;
    assert_eq!(count.raw, r#"{"count":2}"#);
    // manage_system only; no other verb.
    http.get(COUNT, &alice.token)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    http.post(REVOKE, &alice.token, json!({}))
        .await
        .assert_error(403, "api.context.permissions.app_error");
    http.send(Method::POST, COUNT, Some(&admin.token), None, &[])
        .await
        .assert_error(404, "api.context.404.app_error");
    http.send(Method::GET, COUNT, None, None, &[])
        .await
        .assert_error(401, "api.context.session_expired.app_error");

    let revoked = http
        .send(Method::POST, REVOKE, Some(&admin.token), None, &[])
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.raw, r#"{"count":2}"#);
    assert_eq!(http.get(COUNT, &admin.token).await.raw, r#"{"count":0}"#);
    replica.shutdown().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn a_revoke_stopped_by_the_batch_limit_is_mattermosts_partial_error_and_resumes() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    // One token per batch: 1000 batches leave two tokens.
    for _ in 0..1002 {
        pat(&srv, &alice, None).await;
    }
    // A call stops after two thirds of the request timeout: a short one cuts it early.
    let hurried = srv
        .start_replica(|c| {
            c.maximum_personal_access_token_lifetime_days = 30;
            c.jobs.enable = false;
            c.jobs.batch_size = 1;
            c.request_timeout_ms = 1500;
        })
        .await;
    let http = Http::at(format!("http://{}", hurried.http_addr()));
    let partial = http.post(REVOKE, &admin.token, json!({})).await;
    partial.assert_error(
        500,
        "app.user_access_token.revoke_non_compliant.partial.app_error",
    );
    let left: u64 = http.get(COUNT, &admin.token).await.json["count"]
        .as_u64()
        .unwrap();
    assert!((2..1002).contains(&left), "some were revoked: {left} left");
    hurried.shutdown().await.unwrap();

    // Without a request timeout, the 1000-batch limit stops it.
    let replica = srv
        .start_replica(|c| {
            c.maximum_personal_access_token_lifetime_days = 30;
            c.jobs.enable = false;
            c.jobs.batch_size = 1;
            c.request_timeout_ms = 0;
        })
        .await;
    let http = Http::at(format!("http://{}", replica.http_addr()));
    let missing = 1002 - left;
    for _ in 0..missing {
        pat(&srv, &alice, None).await;
    }
    assert_eq!(http.get(COUNT, &admin.token).await.raw, r#"{"count":1002}"#);
    let partial = http.post(REVOKE, &admin.token, json!({})).await;
    partial.assert_error(
        500,
        "app.user_access_token.revoke_non_compliant.partial.app_error",
    );
    assert_eq!(http.get(COUNT, &admin.token).await.raw, r#"{"count":2}"#);
    let rest = http.post(REVOKE, &admin.token, json!({})).await;
    assert_eq!(rest.raw, r#"{"count":2}"#);
    replica.shutdown().await.unwrap();
    srv.stop().await;
}
