//! Bound personal access tokens on the REST shim and its gateway endpoints: `bound_cidrs` in
//! the create body and on the token JSON (absent when unbound), 400 naming the field, 401
//! from another address with the body any bad token gets, and the address a gateway request
//! is judged by (the client address behind a trusted proxy for `auth_request`, the caller's
//! for RFC 7662 introspection).

use reqwest::Method;
use serde_json::{Value, json};

use super::{Http, HttpResponse};
use crate::common::*;

/// The shim of `srv` reached at 127.0.0.1 from `local`.
fn http_from(srv: &TestServer, local: &str) -> Http {
    Http::from_address(
        format!("http://127.0.0.1:{}", srv.config.http_addr.port()),
        local,
    )
}

/// The error body without its request id (which differs per request).
fn without_request_id(answer: &HttpResponse) -> Value {
    let mut json = answer.json.clone();
    json["request_id"] = Value::Null;
    json
}

/// GET /auth/verify with `secret` (and `X-Forwarded-For`): the status.
async fn verify(http: &Http, secret: &str, forwarded_for: Option<&str>) -> u16 {
    let auth = format!("Bearer {secret}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ip) = forwarded_for {
        headers.push(("X-Forwarded-For", ip));
    }
    http.send(Method::GET, "/auth/verify", None, None, &headers)
        .await
        .status
        .as_u16()
}

/// POST /oauth2/introspect of `secret` as the bearer `caller`: `active`.
async fn introspect(http: &Http, caller: &str, secret: &str) -> bool {
    let form = format!("token={secret}");
    let auth = format!("Bearer {caller}");
    let answer = http
        .send(
            Method::POST,
            "/oauth2/introspect",
            None,
            Some(&form),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        )
        .await;
    answer.assert_ok()["active"].as_bool().unwrap()
}

#[tokio::test]
async fn a_bound_token_over_rest_and_its_gateways() {
    // 127.0.0.3 plays nginx: a trusted proxy whose X-Forwarded-For is believed.
    let srv = TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.3".to_owned()]).await;
    let alice = srv.token_user("alice").await;
    let svc = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let home = http_from(&srv, "127.0.0.1");
    let away = http_from(&srv, "127.0.0.2");
    let proxy = http_from(&srv, "127.0.0.3");

    // Bad input: 400 naming the field, nothing created.
    let bad = home
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "ci", "bound_cidrs": ["10.1.2.3/8"]}),
        )
        .await;
    bad.assert_error(400, "api.context.invalid_body_param.app_error");
    assert!(
        bad.json["message"]
            .as_str()
            .unwrap()
            .contains("bound_cidrs"),
        "{bad:?}"
    );
    let listed = home.get("/api/v4/users/me/tokens", &alice.token).await;
    assert_eq!(listed.assert_ok(), &json!([]));

    let created = home
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "ci", "bound_cidrs": ["127.0.0.1/32"]}),
        )
        .await;
    let body = created.assert_ok().clone();
    assert_eq!(body["bound_cidrs"], json!(["127.0.0.1/32"]));
    let secret = body["token"].as_str().unwrap().to_owned();
    let id = body["id"].as_str().unwrap().to_owned();
    let shown = home
        .get(&format!("/api/v4/users/tokens/{id}"), &alice.token)
        .await;
    assert_eq!(shown.assert_ok()["bound_cidrs"], json!(["127.0.0.1/32"]));
    // An unbound token's JSON has no such key (Mattermost's body, byte for byte).
    let plain = home
        .post(
            "/api/v4/users/me/tokens",
            &alice.token,
            json!({"description": "plain"}),
        )
        .await;
    assert!(
        plain.assert_ok().get("bound_cidrs").is_none(),
        "{}",
        plain.raw
    );

    // The token itself: from 127.0.0.1 yes, from 127.0.0.2 401 like an unknown token.
    home.get("/api/v4/users/me", &secret).await.assert_ok();
    let refused = away.get("/api/v4/users/me", &secret).await;
    refused.assert_error(401, "api.context.session_expired.app_error");
    let unknown = away
        .get("/api/v4/users/me", "qwertyuiopasdfghjklzxcvbnm")
        .await;
    assert_eq!(without_request_id(&refused), without_request_id(&unknown));

    // nginx auth_request: the address is the client's behind the trusted proxy.
    assert_eq!(verify(&proxy, &secret, Some("127.0.0.1")).await, 200);
    assert_eq!(verify(&proxy, &secret, Some("198.51.100.4")).await, 401);
    assert_eq!(
        verify(&proxy, &secret, None).await,
        401,
        "the proxy's own address"
    );
    assert_eq!(verify(&home, &secret, None).await, 200);
    assert_eq!(
        verify(&away, &secret, Some("127.0.0.1")).await,
        401,
        "an untrusted peer cannot name its address"
    );

    // RFC 7662: the inspected token is judged by the caller's address.
    assert!(introspect(&home, &svc.token, &secret).await);
    assert!(!introspect(&away, &svc.token, &secret).await);
    srv.stop().await;
}
