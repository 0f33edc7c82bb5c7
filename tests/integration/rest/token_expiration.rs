//! The `Token-Expiration` header: every response to a request authenticated with a personal
//! access token that expires says when (RFC 3339, UTC), on REST and as gRPC metadata; never
//! for tokens without an expiry, session tokens, or anonymous requests.

use prost_types::Timestamp;
use reqwest::Method;

use super::Http;
use crate::common::*;

const DAY_MS: i64 = 86_400_000;

/// `ms` as the header writes it.
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[tokio::test]
async fn an_expiring_access_token_learns_its_expiry_from_every_response() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let expires_at = (srv.now() / 1000) * 1000 + 3 * DAY_MS + 123;
    let expiring = srv
        .as_(&alice)
        .create_token_expiring(
            "me",
            "expires",
            Some(Timestamp {
                seconds: expires_at / 1000,
                nanos: ((expires_at % 1000) * 1_000_000) as i32,
            }),
        )
        .await
        .unwrap()
        .token;
    let (_, forever) = srv.as_(&alice).new_token("me").await;
    let http = Http::new(&srv);
    let expected = rfc3339(expires_at);
    assert!(expected.ends_with(".123Z"), "{expected}");

    // A success, twice (the second from the cache), and a refusal after authentication.
    for _ in 0..2 {
        let me = http.get("/api/v4/users/me", &expiring).await;
        me.assert_ok();
        assert_eq!(me.headers["token-expiration"], expected.as_str());
    }
    let denied = http.get("/api/v4/users/tokens", &expiring).await;
    denied.assert_error(403, "api.context.permissions.app_error");
    assert_eq!(denied.headers["token-expiration"], expected.as_str());

    // No expiry, a login session, no credential, a credential that does not authenticate.
    for token in [
        Some(forever.as_str()),
        Some(alice.token.as_str()),
        None,
        Some("nope"),
    ] {
        let response = http
            .send(Method::GET, "/api/v4/users/me", token, None, &[])
            .await;
        assert!(
            !response.headers.contains_key("token-expiration"),
            "{token:?}: {response:?}"
        );
    }

    // gRPC: the same value in the response metadata, for the caller's token only (not for
    // a token it introspects).
    let me = srv
        .client()
        .await
        .get_me(authed(token_service::pb::GetMeRequest {}, &expiring))
        .await
        .unwrap();
    assert_eq!(
        me.metadata().get("token-expiration").unwrap(),
        expected.as_str()
    );
    let admin = srv.admin("root").await;
    let introspected = srv
        .client()
        .await
        .introspect_token(authed(
            token_service::pb::IntrospectTokenRequest {
                token: expiring.clone(),
            },
            &admin.token,
        ))
        .await
        .unwrap();
    assert!(introspected.metadata().get("token-expiration").is_none());
    let answer = introspected.into_inner();
    assert!(answer.active);
    assert_eq!(
        answer.expires_at,
        Some(Timestamp {
            seconds: expires_at / 1000,
            nanos: 123_000_000,
        }),
        "IntrospectToken returns the token's expiry"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_rotated_away_secret_in_its_grace_period_is_told_when_the_grace_ends() {
    let srv = TestServer::start_with(|c| {
        c.access_tokens.max_rotation_grace_period = token_service::config::Span(600_000)
    })
    .await;
    let alice = srv.token_user("alice").await;
    let (token_id, old_secret) = srv.as_(&alice).new_token("me").await;
    let http = Http::new(&srv);
    // Never expiring: no header before the rotation.
    let before = http.get("/api/v4/users/me", &old_secret).await;
    before.assert_ok();
    assert!(!before.headers.contains_key("token-expiration"));

    let rotated = srv
        .as_(&alice)
        .rotate_token(&token_id, None, Some(std::time::Duration::from_secs(60)))
        .await
        .unwrap();
    let grace_until = srv.now() + 60_000;
    let during = http.get("/api/v4/users/me", &old_secret).await;
    during.assert_ok();
    assert_eq!(
        during.headers["token-expiration"],
        rfc3339(grace_until).as_str()
    );
    // The new secret never expires: no header.
    let current = http.get("/api/v4/users/me", &rotated.token).await;
    current.assert_ok();
    assert!(!current.headers.contains_key("token-expiration"));
    srv.stop().await;
}
