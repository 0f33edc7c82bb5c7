//! The webhook routes of the shim (token-service's own paths under /api/v4/tokens/webhooks,
//! with its own JSON): the same domain as gRPC, with REST statuses: 201 with the secret once,
//! 400 naming the field, 403, 404, and delivery of a record to a real receiver.

use reqwest::Method;
use serde_json::json;

use super::Http;
use crate::common::*;

#[tokio::test]
async fn webhooks_are_managed_over_rest_and_deliver() {
    let srv = TestServer::start_with(|c| {
        c.webhooks.allow_private_addresses = true;
        c.webhooks.poll_interval = token_service::config::Span(20);
        c.enable_developer = true;
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let http = Http::new(&srv);
    let receiver = Receiver::start().await;

    let created = http
        .post(
            "/api/v4/tokens/webhooks",
            &admin.token,
            json!({"url": receiver.url(), "description": "rest", "filter": {"actions": ["access_token.revoked"]}}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201, "{created:?}");
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json["enabled"], true);
    assert_eq!(
        created.json["filter"],
        json!({"actions": ["access_token.revoked"], "user_id": ""})
    );

    let got = http
        .get(&format!("/api/v4/tokens/webhooks/{id}"), &admin.token)
        .await;
    let got = got.assert_ok();
    assert!(got.get("secret").is_none(), "the secret is shown once");
    let listed = http.get("/api/v4/tokens/webhooks", &admin.token).await;
    assert_eq!(listed.assert_ok()[0]["id"], id.as_str());

    // Delivery of a record caused over REST.
    let (token_id, _) = srv.existing_pat(&alice, false).await;
    http.post(
        "/api/v4/users/tokens/revoke",
        &alice.token,
        json!({"token_id": token_id}),
    )
    .await
    .assert_ok();
    let message = receiver
        .wait_for(1, std::time::Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(message.json["data"]["token_id"], token_id.as_str());
    assert!(verify_signature(&message, &secret));

    // Changes, with absent fields kept.
    let updated = http
        .put(
            &format!("/api/v4/tokens/webhooks/{id}"),
            &admin.token,
            json!({"enabled": false, "description": null}),
        )
        .await;
    let updated = updated.assert_ok();
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["description"], "rest");
    let rotated = http
        .post(
            &format!("/api/v4/tokens/webhooks/{id}/rotate_secret"),
            &admin.token,
            json!({"grace_period_ms": 0}),
        )
        .await;
    let rotated = rotated.assert_ok();
    assert_ne!(rotated["secret"], secret.as_str());
    assert_eq!(rotated["previous_secret_expires_at"], 0);
    let tested = http
        .send(
            Method::POST,
            &format!("/api/v4/tokens/webhooks/{id}/test"),
            Some(&admin.token),
            None,
            &[],
        )
        .await;
    let tested = tested.assert_ok();
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["http_status"], 200);

    // Errors: the field named, the REST status.
    let bad = http
        .post(
            "/api/v4/tokens/webhooks",
            &admin.token,
            json!({"url": "https://user:pw@hooks.invalid/"}),
        )
        .await;
    let body = bad.assert_error(400, "token_service.webhook.invalid_url");
    assert!(
        body["message"].as_str().unwrap().starts_with("url: "),
        "{body}"
    );
    let bad = http
        .put(
            &format!("/api/v4/tokens/webhooks/{id}"),
            &admin.token,
            json!({"filter": {"actions": ["nope.nope"]}}),
        )
        .await;
    bad.assert_error(400, "token_service.webhook.invalid_action");
    let bad = http
        .post("/api/v4/tokens/webhooks", &admin.token, json!({"url": 42}))
        .await;
    bad.assert_error(400, "api.context.invalid_body_param.app_error");
    http.get("/api/v4/tokens/webhooks", &alice.token)
        .await
        .assert_error(403, "api.context.permissions.app_error");
    let unknown = token_service::domain::ids::new_id();
    http.get(&format!("/api/v4/tokens/webhooks/{unknown}"), &admin.token)
        .await
        .assert_error(404, "token_service.webhook.not_found");
    http.get("/api/v4/tokens/webhooks/short", &admin.token)
        .await
        .assert_error(400, "api.context.invalid_url_param.app_error");

    let deleted = http
        .send(
            Method::DELETE,
            &format!("/api/v4/tokens/webhooks/{id}"),
            Some(&admin.token),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.assert_ok()["status"], "OK");
    http.get(&format!("/api/v4/tokens/webhooks/{id}"), &admin.token)
        .await
        .assert_error(404, "token_service.webhook.not_found");
    srv.stop().await;
}
