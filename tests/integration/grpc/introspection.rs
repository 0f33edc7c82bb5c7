//! IntrospectToken: who may ask, what it answers, and that it does not write per call.

use sea_orm::{ConnectionTrait, Database, Statement};
use token_service::pb;

use crate::common::*;

fn introspect(token: &str) -> pb::IntrospectTokenRequest {
    pb::IntrospectTokenRequest {
        token: token.to_owned(),
    }
}

async fn create_pat(client: &mut Client, owner: &Actor) -> pb::CreateUserAccessTokenResponse {
    client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "introspection test".into(),
                expires_at: None,
            },
            &owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
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
    let mut client = srv.client().await;
    assert_denied(
        client
            .introspect_token(authed(introspect(&alice.token), &alice.token))
            .await,
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
    let mut client = srv.client().await;
    let answer = client
        .introspect_token(authed(introspect(&alice.token), &svc.token))
        .await
        .unwrap()
        .into_inner();
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
    let mut client = srv.client().await;
    let pat = create_pat(&mut client, &tina).await;
    let token_id = pat.user_access_token.as_ref().unwrap().id.clone();
    assert_eq!(
        session_rows(&srv, &tina.id).await,
        1,
        "only the login session"
    );

    let first = client
        .introspect_token(authed(introspect(&pat.token), &admin.token))
        .await
        .unwrap()
        .into_inner();
    assert!(first.active);
    assert_eq!(first.kind, pb::TokenKind::PersonalAccessToken as i32);
    assert_eq!(first.token_id, token_id);
    assert_eq!(first.user_id, tina.id);
    assert!(first.expires_at.is_none(), "the token never expires");
    assert_eq!(session_rows(&srv, &tina.id).await, 2, "one session minted");

    for _ in 0..5 {
        let again = client
            .introspect_token(authed(introspect(&pat.token), &admin.token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.session_id, first.session_id);
    }
    // Using the PAT as a credential reads the same session too.
    let me = client
        .get_me(authed(pb::GetMeRequest {}, &pat.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.user.unwrap().id, tina.id);
    assert_eq!(session_rows(&srv, &tina.id).await, 2, "no further writes");
    srv.stop().await;
}

#[tokio::test]
async fn unknown_revoked_disabled_and_garbage_tokens_are_inactive_not_errors() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let mut client = srv.client().await;
    let revoked = create_pat(&mut client, &tina).await;
    let disabled = create_pat(&mut client, &tina).await;
    client
        .revoke_user_access_token(authed(
            pb::RevokeUserAccessTokenRequest {
                token_id: revoked.user_access_token.unwrap().id,
            },
            &tina.token,
        ))
        .await
        .unwrap();
    client
        .disable_user_access_token(authed(
            pb::DisableUserAccessTokenRequest {
                token_id: disabled.user_access_token.unwrap().id,
            },
            &tina.token,
        ))
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
        let answer = client
            .introspect_token(authed(introspect(token), &admin.token))
            .await
            .unwrap()
            .into_inner();
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
    let mut client = srv.client().await;
    assert_invalid(
        client
            .introspect_token(authed(introspect(""), &admin.token))
            .await,
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
    let mut client = srv.client().await;
    client
        .update_user_roles(authed(
            pb::UpdateUserRolesRequest {
                user_id: alice.id.clone(),
                roles: vec!["system_user".into(), "system_user_access_token".into()],
            },
            &admin.token,
        ))
        .await
        .unwrap();
    let answer = client
        .introspect_token(authed(introspect(&alice.token), &admin.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.roles,
        vec!["system_user", "system_user_access_token"]
    );

    client
        .update_user_active(authed(
            pb::UpdateUserActiveRequest {
                user_id: alice.id.clone(),
                active: false,
            },
            &admin.token,
        ))
        .await
        .unwrap();
    let answer = client
        .introspect_token(authed(introspect(&alice.token), &admin.token))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.active);
    srv.stop().await;
}

#[tokio::test]
async fn a_bot_token_reports_the_bot() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let owner = srv.basic_user("owner").await;
    let bot = srv.bot("helper-bot", Some(&owner)).await;
    let mut client = srv.client().await;
    let pat = client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: bot.id.clone(),
                description: "bot".into(),
                expires_at: None,
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let answer = client
        .introspect_token(authed(introspect(&pat.token), &admin.token))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.active && answer.is_bot);
    assert_eq!(answer.user_id, bot.id);
    srv.stop().await;
}

#[tokio::test]
async fn repeated_checks_are_answered_from_the_cache() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let (_, secret) = client.as_(&alice).new_token("me").await;
    let introspect = || {
        authed(
            pb::IntrospectTokenRequest {
                token: secret.clone(),
            },
            &admin.token,
        )
    };
    // Wait until the revocation feed has started and the cache is trusted.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while !srv.cache_stats().trusted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cache never trusted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        client
            .introspect_token(introspect())
            .await
            .unwrap()
            .into_inner()
            .active
    );
    let before = srv.cache_stats();
    for _ in 0..10 {
        assert!(
            client
                .introspect_token(introspect())
                .await
                .unwrap()
                .into_inner()
                .active
        );
    }
    let after = srv.cache_stats();
    // Each call checks two tokens (the caller's and the introspected one): all hits.
    assert_eq!(after.hits - before.hits, 20, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
    srv.stop().await;
}
