//! RotateUserAccessToken: same id, a new secret, the old secret and its minted session dead
//! before the call returns (here and, within the revocation bound, on another replica); and
//! rotation families: a replaced secret's reuse is refused like an unknown token, recorded
//! with where it came from, and revokes the token unless configured not to; a grace period
//! keeps the old secret working until it ends, and its use meanwhile is not reuse.

use std::time::{Duration, Instant};

use prost_types::Timestamp;
use serde_json::Value;
use token_service::{config::Span, pb};
use tonic::Code;

use crate::common::*;

const REUSE: &str = "access_token.reuse_detected";
const ROTATED: &str = "access_token.rotated";
const REVOKED: &str = "access_token.revoked";
const USER_AGENT: &str = "reuse-test/2.0";

/// The records about token `token_id` with action `action`, oldest first.
async fn records(
    srv: &TestServer,
    admin: &Actor,
    token_id: &str,
    action: &str,
) -> Vec<pb::LifecycleRecord> {
    srv.as_(admin)
        .audit_records(pb::ListAuditRecordsRequest {
            token_id: token_id.to_owned(),
            actions: vec![action.to_owned()],
            oldest_first: true,
            ..Default::default()
        })
        .await
}

/// Waits (at most 5 s) until `count` records of `action` about `token_id` exist.
async fn wait_for_records(
    srv: &TestServer,
    admin: &Actor,
    token_id: &str,
    action: &str,
    count: usize,
) -> Vec<pb::LifecycleRecord> {
    let start = Instant::now();
    loop {
        let found = records(srv, admin, token_id, action).await;
        if found.len() >= count {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{count} {action} record(s) expected, found {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Presents `token` to GET /api/v4/users/me with the test's user agent: (status, body
/// without its request id).
async fn present_over_rest(srv: &TestServer, token: &str) -> (u16, Value) {
    let response = http_client()
        .get(format!("{}/api/v4/users/me", srv.http_base()))
        .bearer_auth(token)
        .header("User-Agent", USER_AGENT)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap();
    if let Some(object) = body.as_object_mut() {
        object.remove("request_id");
    }
    (status, body)
}

/// Uses `token` on a client until it is refused; panics if still accepted after `limit`.
async fn refused_within(client: &Client, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let sent = start.elapsed();
        match client.as_(token).get_me().await {
            Err(status) if status.code() == Code::Unauthenticated => return sent,
            Err(status) => panic!("unexpected failure: {status:?}"),
            Ok(_) => {}
        }
        assert!(
            sent < limit,
            "the secret was still accepted {sent:?} after it was rotated"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn detail(record: &pb::LifecycleRecord) -> Value {
    serde_json::from_str(&record.detail).unwrap()
}

fn at(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[tokio::test]
async fn a_rotation_keeps_the_token_and_kills_the_old_secret_and_its_session_at_once() {
    // Presenting the old secret to see it refused is reuse: keep the family alive here.
    let srv = TestServer::start_with(|c| c.access_tokens.revoke_family_on_reuse = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let created = srv.as_(&alice).create_token("me", "deploys").await.unwrap();
    let token = created.user_access_token.unwrap();
    let old = created.token;
    // Used: its session is minted (and the check cached).
    srv.as_(&old).me().await.unwrap();
    srv.as_(&old).me().await.unwrap();
    let minted: Vec<String> = srv
        .as_(&alice)
        .sessions_of("me")
        .await
        .into_iter()
        .filter(|s| s.props.get("user_access_token_id") == Some(&token.id))
        .map(|s| s.id)
        .collect();
    assert_eq!(minted.len(), 1, "the first use minted a session");

    let expires_at = srv.now() + 86_400_000;
    let rotated = srv
        .as_(&alice)
        .rotate_token(&token.id, Some(at(expires_at)), None)
        .await
        .unwrap();
    let new = rotated.token;
    let after = rotated.user_access_token.unwrap();
    assert_eq!(after.id, token.id, "same id");
    assert_eq!(after.user_id, alice.id);
    assert_eq!(after.description, "deploys");
    assert!(after.is_active);
    assert_eq!(after.expires_at, Some(at(expires_at)));
    assert_eq!(new.len(), 26);
    assert_ne!(new, old);

    // Before the call returned: the old secret is refused and its session is gone.
    assert_token_refused(&srv, &old).await;
    let sessions = srv.as_(&alice).sessions_of("me").await;
    assert!(
        sessions.iter().all(|s| !minted.contains(&s.id)),
        "the old secret's session was deleted: {sessions:#?}"
    );
    assert_eq!(srv.as_(&new).me().await.unwrap().id, alice.id);
    let stored = srv.as_(&alice).get_token(&token.id).await.unwrap();
    assert_eq!(stored.user_access_token.unwrap(), after);

    // The record: by alice, about the token, naming the new secret by HMAC only, revoking
    // the token's cached checks on every replica.
    let rotations = records(&srv, &admin, &token.id, ROTATED).await;
    assert_eq!(rotations.len(), 1);
    let record = &rotations[0];
    assert_eq!(record.actor_id, alice.id);
    assert_eq!(record.user_id, alice.id);
    let new_hmac = srv
        .as_(&admin)
        .compute_audit_hash(&new)
        .await
        .unwrap()
        .credential_hmac;
    assert_eq!(record.credential_hmac, new_hmac);
    assert_eq!(
        detail(record),
        serde_json::json!({"expires_at": expires_at, "grace_period_ms": 0, "grace_until": 0})
    );
    assert_eq!(
        record.revokes_kind,
        pb::RevocationKind::AccessToken as i32,
        "{record:?}"
    );
    assert_eq!(record.revokes_id, token.id);
    let text = format!("{record:?}");
    assert!(!text.contains(&new) && !text.contains(&old), "{text}");
    srv.stop().await;
}

#[tokio::test]
async fn a_rotation_on_one_replica_reaches_the_other_within_a_second() {
    // Presenting the old secret to see it refused is reuse: keep the family alive here.
    let srv = TestServer::start_with(|c| c.access_tokens.revoke_family_on_reuse = false).await;
    let replica = ReplicaProcess::start_with_env(
        &srv,
        &[(
            "TOKEN_SERVICE_ACCESS_TOKENS__REVOKE_FAMILY_ON_REUSE",
            "false",
        )],
    );
    let alice = srv.token_user("alice").await;
    let a = srv.client().await;
    let b = replica.client().await;
    replica.wait_until_caught_up().await;

    let (token_id, old) = a.as_(&alice).new_token("me").await;
    for client in [&a, &b] {
        for _ in 0..2 {
            client.as_(&old).get_me().await.expect("works on both");
        }
    }
    let hits = replica.cache_hits().await;
    b.as_(&old).get_me().await.unwrap();
    assert!(
        replica.cache_hits().await > hits,
        "the other replica answers from its cache"
    );
    let new = a
        .as_(&alice)
        .rotate_token(&token_id, None, None)
        .await
        .unwrap()
        .token;
    assert_token_refused(&a, &old).await;
    let lag = refused_within(&b, &old, Duration::from_secs(1)).await;
    eprintln!("rotation reached the other replica after {lag:?}");
    assert_eq!(b.as_(&new).me().await.unwrap().id, alice.id);
    drop(replica);
    srv.stop().await;
}

#[tokio::test]
async fn reusing_a_rotated_secret_is_refused_recorded_and_revokes_the_family() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, old) = srv.as_(&alice).new_token("me").await;
    srv.as_(&old).me().await.unwrap();
    let new = srv
        .as_(&alice)
        .rotate_token(&token_id, None, None)
        .await
        .unwrap()
        .token;
    srv.as_(&new).me().await.unwrap();

    // Refused exactly as a token that never existed.
    let unknown = present_over_rest(&srv, "abcdefghijkmnopqrstuwxyz12").await;
    let reused = present_over_rest(&srv, &old).await;
    assert_eq!(reused, unknown);
    assert_eq!(reused.0, 401);

    let reuse = wait_for_records(&srv, &admin, &token_id, REUSE, 1).await;
    let record = &reuse[0];
    assert_eq!(
        record.actor_type,
        pb::ActorType::Unspecified as i32,
        "unknown"
    );
    assert_eq!(record.actor_id, "");
    assert_eq!(record.user_id, alice.id);
    assert_eq!(record.ip, "127.0.0.1");
    assert_eq!(record.user_agent, USER_AGENT);
    assert!(!record.request_id.is_empty());
    let old_hmac = srv
        .as_(&admin)
        .compute_audit_hash(&old)
        .await
        .unwrap()
        .credential_hmac;
    assert_eq!(record.credential_hmac, old_hmac);
    assert_eq!(detail(record)["revoke_family"], true);
    let text = format!("{record:?}");
    assert!(!text.contains(&old) && !text.contains(&new), "{text}");

    // The family is revoked: by the service, for this reason, and the new secret is dead.
    let revoked = wait_for_records(&srv, &admin, &token_id, REVOKED, 1).await;
    assert_eq!(revoked[0].actor_type, pb::ActorType::Service as i32);
    assert_eq!(detail(&revoked[0])["reason"], "reuse_detected");
    assert_eq!(revoked[0].revokes_id, token_id);
    assert!(revoked[0].id > record.id, "recorded after the reuse");
    assert_token_refused(&srv, &new).await;
    assert_error(
        srv.as_(&alice).get_token(&token_id).await,
        Code::NotFound,
        "app.user_access_token.get_by_user.app_error",
    );
    // Gone with its token (the superseded digests cascade), the old secret is now simply
    // unknown: no further record, even after the throttle's minute.
    srv.advance(Duration::from_secs(61));
    assert_token_refused(&srv, &old).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(records(&srv, &admin, &token_id, REUSE).await.len(), 1);
    srv.stop().await;
}

#[tokio::test]
async fn without_revoke_family_on_reuse_the_new_secret_survives_and_records_are_throttled() {
    let srv = TestServer::start_with(|c| c.access_tokens.revoke_family_on_reuse = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, old) = srv.as_(&alice).new_token("me").await;
    let new = srv
        .as_(&alice)
        .rotate_token(&token_id, None, None)
        .await
        .unwrap()
        .token;

    for _ in 0..5 {
        assert_token_refused(&srv, &old).await;
    }
    let reuse = wait_for_records(&srv, &admin, &token_id, REUSE, 1).await;
    assert_eq!(detail(&reuse[0])["revoke_family"], false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        records(&srv, &admin, &token_id, REUSE).await.len(),
        1,
        "replays within a minute add no record"
    );
    assert!(records(&srv, &admin, &token_id, REVOKED).await.is_empty());
    assert_eq!(srv.as_(&new).me().await.unwrap().id, alice.id);

    // A minute later the next replay is recorded again.
    srv.advance(Duration::from_secs(61));
    assert_token_refused(&srv, &old).await;
    wait_for_records(&srv, &admin, &token_id, REUSE, 2).await;
    assert_eq!(srv.as_(&new).me().await.unwrap().id, alice.id);
    srv.stop().await;
}

#[tokio::test]
async fn within_a_grace_period_the_old_secret_works_and_after_it_its_use_is_reuse() {
    let srv =
        TestServer::start_with(|c| c.access_tokens.max_rotation_grace_period = Span(600_000)).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    // One token used before the rotation (its session exists), one never used.
    let (used_id, used_old) = srv.as_(&alice).new_token("me").await;
    srv.as_(&used_old).me().await.unwrap();
    let (fresh_id, fresh_old) = srv.as_(&alice).new_token("me").await;

    let grace = Duration::from_secs(300);
    let rotated_at = srv.now();
    let grace_until = rotated_at + 300_000;
    let mut new_secrets = Vec::new();
    for id in [&used_id, &fresh_id] {
        let rotated = srv
            .as_(&alice)
            .rotate_token(id, None, Some(grace))
            .await
            .unwrap();
        new_secrets.push(rotated.token);
        let record = &records(&srv, &admin, id, ROTATED).await[0];
        assert_eq!(detail(record)["grace_period_ms"], 300_000);
        assert_eq!(detail(record)["grace_until"], grace_until);
    }

    // Old and new secrets both work during the grace, and the old secrets' sessions end
    // with it.
    for secret in [&used_old, &fresh_old, &new_secrets[0], &new_secrets[1]] {
        assert_eq!(srv.as_(secret).me().await.unwrap().id, alice.id);
    }
    srv.advance(Duration::from_secs(299));
    for secret in [&used_old, &fresh_old] {
        assert_eq!(srv.as_(secret).me().await.unwrap().id, alice.id);
    }
    let grace_ends = Some(at(grace_until));
    for id in [&used_id, &fresh_id] {
        let minted: Vec<_> = srv
            .as_(&alice)
            .sessions_of("me")
            .await
            .into_iter()
            .filter(|s| s.props.get("user_access_token_id") == Some(id))
            .collect();
        assert_eq!(minted.len(), 2, "the old and the new secret's sessions");
        assert_eq!(
            minted.iter().filter(|s| s.expires_at == grace_ends).count(),
            1,
            "the old secret's session ends with the grace: {minted:#?}"
        );
    }
    // Introspection says when the old secret stops: at the end of the grace.
    for (old, new) in [(&used_old, &new_secrets[0]), (&fresh_old, &new_secrets[1])] {
        let answer = srv.as_(&admin).introspect(old).await.unwrap();
        assert!(answer.active);
        assert_eq!(answer.expires_at, grace_ends);
        let answer = srv.as_(&admin).introspect(new).await.unwrap();
        assert_eq!(answer.expires_at, None, "the new secret never expires");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in [&used_id, &fresh_id] {
        assert!(
            records(&srv, &admin, id, REUSE).await.is_empty(),
            "use within the grace is not reuse"
        );
    }

    // After the grace: refused (the cached checks too), and it is reuse, which revokes the
    // family (the default).
    srv.advance(Duration::from_secs(1));
    for (id, old) in [(&used_id, &used_old), (&fresh_id, &fresh_old)] {
        assert_token_refused(&srv, old).await;
        let reuse = wait_for_records(&srv, &admin, id, REUSE, 1).await;
        assert_eq!(detail(&reuse[0])["grace_until"], grace_until);
        wait_for_records(&srv, &admin, id, REVOKED, 1).await;
    }
    for new in &new_secrets {
        assert_token_refused(&srv, new).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_new_rotation_ends_the_grace_of_the_secret_replaced_before() {
    let srv =
        TestServer::start_with(|c| c.access_tokens.max_rotation_grace_period = Span(600_000)).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, first) = srv.as_(&alice).new_token("me").await;
    let second = srv
        .as_(&alice)
        .rotate_token(&token_id, None, Some(Duration::from_secs(300)))
        .await
        .unwrap()
        .token;
    srv.as_(&first).me().await.unwrap();
    let third = srv
        .as_(&alice)
        .rotate_token(&token_id, None, Some(Duration::from_secs(300)))
        .await
        .unwrap()
        .token;
    // The second keeps its own grace; the first's ended with the new rotation.
    assert_eq!(srv.as_(&second).me().await.unwrap().id, alice.id);
    assert_eq!(srv.as_(&third).me().await.unwrap().id, alice.id);
    assert_token_refused(&srv, &first).await;
    wait_for_records(&srv, &admin, &token_id, REUSE, 1).await;
    srv.stop().await;
}

#[tokio::test]
async fn grace_periods_are_refused_beyond_the_configured_cap_and_change_nothing() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    // The default cap is 0: no grace at all.
    assert_invalid(
        srv.as_(&alice)
            .rotate_token(&token_id, None, Some(Duration::from_secs(1)))
            .await,
        "grace_period",
        "api.context.invalid_body_param.app_error",
    );
    srv.as_(&secret).me().await.unwrap();
    srv.stop().await;

    let srv =
        TestServer::start_with(|c| c.access_tokens.max_rotation_grace_period = Span(60_000)).await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    assert_invalid(
        srv.as_(&alice)
            .rotate_token(&token_id, None, Some(Duration::from_millis(60_001)))
            .await,
        "grace_period",
        "api.context.invalid_body_param.app_error",
    );
    let negative = alice_request(&token_id, -1);
    assert_invalid(
        srv.client()
            .await
            .rotate_user_access_token(authed(negative, &alice.token))
            .await,
        "grace_period",
        "api.context.invalid_body_param.app_error",
    );
    srv.as_(&secret).me().await.unwrap();
    // At the cap it is accepted.
    srv.as_(&alice)
        .rotate_token(&token_id, None, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    srv.as_(&secret).me().await.unwrap();
    srv.stop().await;
}

fn alice_request(token_id: &str, grace_seconds: i64) -> pb::RotateUserAccessTokenRequest {
    pb::RotateUserAccessTokenRequest {
        token_id: token_id.to_owned(),
        expires_at: None,
        grace_period: Some(prost_types::Duration {
            seconds: grace_seconds,
            nanos: 0,
        }),
    }
}

#[tokio::test]
async fn rotation_checks_follow_mattermost_over_grpc() {
    let srv = TestServer::start_with(|c| c.maximum_personal_access_token_lifetime_days = 30).await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let now = srv.now();
    let (token_id, secret) = {
        let created = srv
            .as_(&alice)
            .create_token_expiring("me", "short", Some(at(now + 1_000)))
            .await
            .unwrap();
        (created.user_access_token.unwrap().id, created.token)
    };
    assert_invalid(
        srv.as_(&alice).rotate_token("", None, None).await,
        "token_id",
        "api.context.invalid_body_param.app_error",
    );
    assert_error(
        srv.as_(&alice)
            .rotate_token(&token_service::domain::ids::new_id(), None, None)
            .await,
        Code::NotFound,
        "app.user_access_token.get_by_user.app_error",
    );
    assert_denied(
        srv.as_(&bob).rotate_token(&token_id, None, None).await,
        "edit_other_users",
    );
    // The policy applies to the new expiry.
    assert_invalid(
        srv.as_(&alice).rotate_token(&token_id, None, None).await,
        "expires_at",
        "app.user_access_token.expires_at_required.app_error",
    );
    assert_invalid(
        srv.as_(&alice)
            .rotate_token(&token_id, Some(at(now - 1)), None)
            .await,
        "expires_at",
        "app.user_access_token.expires_at_in_past.app_error",
    );
    assert_invalid(
        srv.as_(&alice)
            .rotate_token(&token_id, Some(at(now + 31 * 86_400_000)), None)
            .await,
        "expires_at",
        "app.user_access_token.expires_at_too_far.app_error",
    );
    // None of that changed the token.
    srv.as_(&secret).me().await.unwrap();

    // Expired but still active: it can be rotated back into use, as in Mattermost.
    srv.advance(Duration::from_secs(2));
    assert_token_refused(&srv, &secret).await;
    let later = srv.now() + 86_400_000;
    let new = srv
        .as_(&alice)
        .rotate_token(&token_id, Some(at(later)), None)
        .await
        .unwrap()
        .token;
    assert_eq!(srv.as_(&new).me().await.unwrap().id, alice.id);

    // A disabled token is refused (enable it first), before the expiry is looked at.
    srv.as_(&alice).disable_token(&token_id).await.unwrap();
    let refused = srv
        .as_(&alice)
        .rotate_token(&token_id, Some(at(now - 1)), None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        error_id(&refused),
        "api.user.rotate_user_access_token.disabled_token.app_error"
    );
    assert!(refused.message().contains("token_id"), "{refused:?}");
    srv.stop().await;
}
