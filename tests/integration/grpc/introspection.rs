//! IntrospectToken: who may ask, what it answers, and that it does not write per call.

use sea_orm::{ConnectionTrait, Database, Statement};
use token_service::pb;

use crate::common::*;

/// A personal access token of `owner`'s, made by `owner`.
async fn create_pat(srv: &TestServer, owner: &Actor) -> pb::CreateUserAccessTokenResponse {
    srv.as_(owner)
        .create_token("me", "introspection test")
        .await
        .unwrap()
}

async fn session_rows(srv: &TestServer, user_id: &str) -> i64 {
    let db = Database::connect(srv.config.database_url.as_ref().unwrap().expose())
        .await
        .unwrap();
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => {
                    "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1"
                }
                _ => "SELECT COUNT(*) AS n FROM sessions WHERE user_id = ?",
            },
            [user_id.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    db.close().await.ok();
    n
}

#[tokio::test]
async fn ordinary_users_may_not_introspect() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    assert_denied(
        srv.as_(&alice).introspect(&alice.token).await,
        "introspect_token",
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_introspector_role_describes_a_session_token() {
    let srv = TestServer::start().await;
    let svc = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let alice = srv.basic_user("alice").await;
    let answer = srv.as_(&svc).introspect(&alice.token).await.unwrap();
    assert!(answer.active);
    assert_eq!(answer.user_id, alice.id);
    assert_eq!(answer.username, "alice");
    assert_eq!(answer.kind, pb::TokenKind::Session as i32);
    assert!(answer.token_id.is_empty());
    assert_eq!(answer.session_id.len(), 26);
    assert_eq!(answer.roles, vec!["system_user"]);
    assert!(answer.expires_at.is_some(), "fixture sessions last an hour");
    assert!(!answer.is_bot);
    srv.stop().await;
}

#[tokio::test]
async fn a_personal_access_token_is_minted_a_session_once_then_only_read() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let pat = create_pat(&srv, &tina).await;
    let token_id = pat.user_access_token.as_ref().unwrap().id.clone();
    assert_eq!(
        session_rows(&srv, &tina.id).await,
        1,
        "only the login session"
    );

    let first = srv.as_(&admin).introspect(&pat.token).await.unwrap();
    assert!(first.active);
    assert_eq!(first.kind, pb::TokenKind::PersonalAccessToken as i32);
    assert_eq!(first.token_id, token_id);
    assert_eq!(first.user_id, tina.id);
    assert!(first.expires_at.is_none(), "the token never expires");
    assert_eq!(session_rows(&srv, &tina.id).await, 2, "one session minted");

    for _ in 0..5 {
        let again = srv.as_(&admin).introspect(&pat.token).await.unwrap();
        assert_eq!(again.session_id, first.session_id);
    }
    // Using the PAT as a credential reads the same session too.
    let me = srv.as_(&pat.token).me().await.unwrap();
    assert_eq!(me.id, tina.id);
    assert_eq!(session_rows(&srv, &tina.id).await, 2, "no further writes");
    srv.stop().await;
}

#[tokio::test]
async fn unknown_revoked_disabled_and_garbage_tokens_are_inactive_not_errors() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let revoked = create_pat(&srv, &tina).await;
    let disabled = create_pat(&srv, &tina).await;
    let as_tina = srv.as_(&tina);
    as_tina
        .revoke_token(&revoked.user_access_token.unwrap().id)
        .await
        .unwrap();
    as_tina
        .disable_token(&disabled.user_access_token.unwrap().id)
        .await
        .unwrap();
    let unknown = token_service::domain::ids::new_id();
    for token in [
        revoked.token.as_str(),
        disabled.token.as_str(),
        unknown.as_str(),
        "garbage",
        "x'; DROP TABLE users; --",
        &"a".repeat(10_000),
    ] {
        let answer = srv.as_(&admin).introspect(token).await.unwrap();
        assert_eq!(
            answer,
            pb::IntrospectTokenResponse::default(),
            "token {token:.30}"
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn an_empty_token_is_an_invalid_argument() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    assert_invalid(
        srv.as_(&admin).introspect("").await,
        "token",
        "api.context.invalid_body_param.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn deactivation_and_role_changes_show_at_once() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    srv.as_(&admin)
        .update_user_roles(&alice.id, &["system_user", "system_user_access_token"])
        .await
        .unwrap();
    let answer = srv.as_(&admin).introspect(&alice.token).await.unwrap();
    assert_eq!(
        answer.roles,
        vec!["system_user", "system_user_access_token"]
    );

    srv.as_(&admin)
        .update_user_active(&alice.id, false)
        .await
        .unwrap();
    let answer = srv.as_(&admin).introspect(&alice.token).await.unwrap();
    assert!(!answer.active);
    srv.stop().await;
}

#[tokio::test]
async fn a_bot_token_reports_the_bot() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let owner = srv.basic_user("owner").await;
    let bot = srv.bot("helper-bot", Some(&owner)).await;
    let pat = srv.as_(&admin).create_token(&bot.id, "bot").await.unwrap();
    let answer = srv.as_(&admin).introspect(&pat.token).await.unwrap();
    assert!(answer.active && answer.is_bot);
    assert_eq!(answer.user_id, bot.id);
    srv.stop().await;
}

#[tokio::test]
async fn repeated_checks_are_answered_from_the_cache() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (_, secret) = srv.as_(&alice).new_token("me").await;
    let as_admin = srv.as_(&admin);
    // Wait until the revocation feed has started and the cache is trusted.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while !srv.cache_stats().trusted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache never trusted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(as_admin.introspect(&secret).await.unwrap().active);
    let before = srv.cache_stats();
    for _ in 0..10 {
        assert!(as_admin.introspect(&secret).await.unwrap().active);
    }
    let after = srv.cache_stats();
    // Each call checks two tokens (the caller's and the introspected one): all hits.
    assert_eq!(after.hits - before.hits, 20, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
    srv.stop().await;
}

/// A cached check lives `cache.ttl_ms` by the server's clock: moving the clock past it sends
/// the next check to the database, without waiting.
#[tokio::test]
async fn a_cached_check_ages_out_when_the_clock_passes_the_cache_ttl() {
    let srv = TestServer::start_with(|c| c.cache.ttl_ms = 1_000).await;
    let alice = srv.basic_user("alice").await;
    let as_alice = srv.as_(&alice);
    as_alice.get_me().await.unwrap();
    let check = async || {
        let before = srv.cache_stats();
        as_alice.get_me().await.unwrap();
        let after = srv.cache_stats();
        (after.hits - before.hits, after.misses - before.misses)
    };
    assert_eq!(check().await, (1, 0), "cached");
    srv.advance(std::time::Duration::from_millis(999));
    assert_eq!(
        check().await,
        (1, 0),
        "still fresh a millisecond before the TTL"
    );
    srv.advance(std::time::Duration::from_millis(1));
    assert_eq!(check().await, (0, 1), "aged out at the TTL");
    assert_eq!(check().await, (1, 0), "and cached again");
    srv.stop().await;
}

/// A full cache makes room by evicting (counted), never by growing past `cache.capacity`:
/// with room for one credential, two users alternating miss every time.
#[tokio::test]
async fn a_full_cache_evicts_and_stays_within_its_capacity() {
    let srv = TestServer::start_with(|c| c.cache.capacity = 1).await;
    let alice = srv.basic_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let (as_alice, as_bob) = (srv.as_(&alice), srv.as_(&bob));
    as_alice.get_me().await.unwrap();
    as_bob.get_me().await.unwrap();
    let before = srv.cache_stats();
    as_alice.get_me().await.unwrap();
    as_bob.get_me().await.unwrap();
    as_alice.get_me().await.unwrap();
    let after = srv.cache_stats();
    assert_eq!(after.hits - before.hits, 0, "{before:?} -> {after:?}");
    assert_eq!(after.misses - before.misses, 3, "{before:?} -> {after:?}");
    assert_eq!(
        after.evictions - before.evictions,
        3,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.entries, 1);
    as_alice.get_me().await.unwrap();
    assert_eq!(
        srv.cache_stats().hits - after.hits,
        1,
        "the last one read is kept"
    );
    srv.stop().await;
}
