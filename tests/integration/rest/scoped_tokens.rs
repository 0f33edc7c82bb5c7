//! Scoped personal access tokens on the REST shim and RFC 7662: `scopes` in the create body
//! and on the token JSON (absent when unscoped), 400 naming the field, 403 for what the
//! scopes do not cover, and the `scope` of an introspection answer.

use serde_json::json;

use super::Http;
use crate::common::*;

#[tokio::test]
async fn a_scoped_token_over_rest_and_rfc_7662() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let svc = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let http = Http::new(&srv);

    let bad = http
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "ci", "scopes": ["write"]}),
        )
        .await;
    bad.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(
        bad.json["message"].as_str().unwrap().contains("scopes"),
        "{bad:?}"
    );

    let created = http
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "ci", "scopes": ["read"]}),
        )
        .await;
    let body = created.assert_ok().clone();
    assert_eq!(body["scopes"], json!(["read"]));
    let read = body["token"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    let plain = http
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "plain"}),
        )
        .await;
    assert!(plain.assert_ok().get("scopes").is_none(), "{}", plain.raw);

    // Reads work; a change is 403 naming the permission the scope does not cover.
    let listed = http.get("/api/v4/users/me/tokens", &read).await;
    let listed = listed.assert_ok().as_array().unwrap().clone();
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == id && t["scopes"] == json!(["read"]))
    );
    let revoke = http
        .post(
            "/api/v4/users/tokens/revoke",
            &read,
            json!({"token_id": id}),
        )
        .await;
    revoke.assert_error(403, "api.context.permissions.app_error");
    http.get(&format!("/api/v4/users/tokens/{id}"), &alice.token)
        .await
        .assert_ok();

    // Our introspection endpoint lists the scopes.
    let admin = srv.admin("root").await;
    let ours = http
        .post(
            "/api/v4/tokens/introspect",
            &admin.token,
            json!({"token": read}),
        )
        .await;
    assert_eq!(ours.assert_ok()["scopes"], json!(["read"]));

    // RFC 7662: the roles, then the token's scopes as `scope:<id>`.
    let introspect = |token: String| {
        let http = &http;
        let auth = format!("Bearer {}", svc.token);
        async move {
            let answer = http
                .send(
                    reqwest::Method::POST,
                    "/oauth2/introspect",
                    None,
                    Some(&format!("token={token}")),
                    &[
                        ("Authorization", auth.as_str()),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ],
                )
                .await;
            answer.assert_ok()["scope"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(
        introspect(read.clone()).await,
        "system_user system_user_access_token scope:read"
    );
    let plain_secret = plain.json["token"].as_str().unwrap().to_owned();
    assert_eq!(
        introspect(plain_secret).await,
        "system_user system_user_access_token"
    );
    srv.stop().await;
}
