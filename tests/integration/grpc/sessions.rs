//! Sessions: CreateSession, GetSessions, RevokeSession, RevokeAllSessions,
//! RevokeSessionsFromAllUsers, the per-user cap, and extension on activity (Mattermost's
//! TestGetSessions, TestRevokeSessions, TestRevokeAllSessions, TestRevokeSessionsFromAllUsers).

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use token_service::{
    domain::{
        auth::Caller,
        ids::new_id,
        sessions::{self, NewSession},
    },
    pb,
};

use crate::common::*;

fn get_sessions(user_id: &str) -> pb::GetSessionsRequest {
    pb::GetSessionsRequest {
        user_id: user_id.to_owned(),
    }
}

fn revoke(user_id: &str, session_id: &str) -> pb::RevokeSessionRequest {
    pb::RevokeSessionRequest {
        user_id: user_id.to_owned(),
        session_id: session_id.to_owned(),
    }
}

fn me() -> pb::GetMeRequest {
    pb::GetMeRequest {}
}

async fn list(client: &mut Client, user_id: &str, token: &str) -> Vec<pb::Session> {
    client
        .get_sessions(authed(get_sessions(user_id), token))
        .await
        .unwrap()
        .into_inner()
        .sessions
}

async fn create_pat(client: &mut Client, owner: &Actor) -> pb::CreateUserAccessTokenResponse {
    client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "sessions test".into(),
                expires_at: None,
            },
            &owner.token,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn login(client: &mut Client, admin: &Actor, user_id: &str) -> pb::CreateSessionResponse {
    client
        .create_session(authed(
            pb::CreateSessionRequest {
                user_id: user_id.to_owned(),
                ..Default::default()
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_user_lists_their_own_sessions_without_tokens() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let sessions = list(&mut client, "me", &alice.token).await;
    assert_eq!(sessions.len(), 1);
    assert!(sessions.iter().all(|s| s.user_id == alice.id));
    assert!(!format!("{sessions:?}").contains(&alice.token));
    srv.stop().await;
}

#[tokio::test]
async fn other_users_sessions_need_edit_other_users_and_admins_see_any() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let mut client = srv.client().await;
    assert_denied(
        client
            .get_sessions(authed(get_sessions(&bob.id), &alice.token))
            .await,
        "edit_other_users",
    );
    assert_denied(
        client
            .get_sessions(authed(get_sessions(&new_id()), &alice.token))
            .await,
        "edit_other_users",
    );
    assert_eq!(list(&mut client, &bob.id, &admin.token).await.len(), 1);
    assert_eq!(list(&mut client, &admin.id, &admin.token).await.len(), 1);
    assert!(list(&mut client, &new_id(), &admin.token).await.is_empty());
    assert_invalid(
        client
            .get_sessions(authed(get_sessions("junk"), &alice.token))
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_unauthenticated(
        client
            .get_sessions(tonic::Request::new(get_sessions("me")))
            .await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_user_manager_lists_sessions_of_ordinary_users_but_not_of_admins() {
    let srv = TestServer::start_with(|c| {
        c.roles
            .insert("user_manager".into(), vec!["edit_other_users".into()]);
    })
    .await;
    let admin = srv.admin("root").await;
    let manager = srv.user("manager", &["system_user", "user_manager"]).await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    assert_eq!(list(&mut client, &alice.id, &manager.token).await.len(), 1);
    assert_denied(
        client
            .get_sessions(authed(get_sessions(&admin.id), &manager.token))
            .await,
        "edit_other_users",
    );
    srv.stop().await;
}

#[tokio::test]
async fn personal_access_token_sessions_are_listed_with_their_props() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let mut client = srv.client().await;
    let pat = create_pat(&mut client, &tina).await;
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    let sessions = list(&mut client, "me", &tina.token).await;
    assert_eq!(sessions.len(), 2);
    let minted = sessions
        .iter()
        .find(|s| s.props.get("type").map(String::as_str) == Some("UserAccessToken"))
        .expect("a PAT session");
    assert_eq!(
        minted.props.get("user_access_token_id"),
        Some(&pat.user_access_token.unwrap().id)
    );
    assert_eq!(
        minted.props.get("is_guest").map(String::as_str),
        Some("false")
    );
    assert!(!format!("{sessions:?}").contains(&pat.token));
    srv.stop().await;
}

#[tokio::test]
async fn sessions_are_ordered_by_last_activity_newest_first() {
    let srv = TestServer::start_with(|c| c.session_activity_interval_ms = 20).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let older = login(&mut client, &admin, &alice.id).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let newer = login(&mut client, &admin, &alice.id).await;
    let ids = |s: &[pb::Session]| s.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let first = list(&mut client, &alice.id, &admin.token).await;
    assert_eq!(
        first[0].id,
        newer.session.as_ref().unwrap().id,
        "{:?}",
        ids(&first)
    );

    // Using the older session makes it the most recent (written off the request path).
    tokio::time::sleep(Duration::from_millis(30)).await;
    client.get_me(authed(me(), &older.token)).await.unwrap();
    let older_id = older.session.unwrap().id;
    let mut reordered = false;
    for _ in 0..50 {
        let now = list(&mut client, &alice.id, &admin.token).await;
        if now[0].id == older_id {
            reordered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reordered,
        "last activity should move the used session first"
    );
    srv.stop().await;
}

#[tokio::test]
async fn revoking_a_session_follows_mattermost_rules() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let mut client = srv.client().await;
    let admin_session = list(&mut client, "me", &admin.token).await[0].id.clone();

    assert_error(
        client
            .revoke_session(authed(revoke("me", &new_id()), &alice.token))
            .await,
        tonic::Code::NotFound,
        "app.session.get.app_error",
    );
    assert_denied(
        client
            .revoke_session(authed(revoke(&bob.id, &new_id()), &alice.token))
            .await,
        "edit_other_users",
    );
    assert_invalid(
        client
            .revoke_session(authed(revoke("junk", &new_id()), &alice.token))
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_invalid(
        client
            .revoke_session(authed(revoke("me", ""), &alice.token))
            .await,
        "session_id",
        "api.context.invalid_body_param.app_error",
    );
    // Another user's session through one's own path: 400 naming user_id.
    assert_invalid(
        client
            .revoke_session(authed(revoke("me", &admin_session), &alice.token))
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        client
            .revoke_session(authed(revoke(&alice.id, &new_id()), &admin.token))
            .await,
        tonic::Code::NotFound,
        "app.session.get.app_error",
    );
    // The admin's session is untouched by all that.
    client.get_me(authed(me(), &admin.token)).await.unwrap();

    let own = list(&mut client, "me", &alice.token).await[0].id.clone();
    client
        .revoke_session(authed(revoke("me", &own), &alice.token))
        .await
        .unwrap();
    assert_unauthenticated(client.get_me(authed(me(), &alice.token)).await);
    srv.stop().await;
}

#[tokio::test]
async fn an_admin_revokes_another_users_session_by_id_or_by_token() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let second = login(&mut client, &admin, &alice.id).await;
    client
        .revoke_session(authed(revoke(&alice.id, &second.token), &admin.token))
        .await
        .unwrap();
    assert_unauthenticated(client.get_me(authed(me(), &second.token)).await);
    client.get_me(authed(me(), &alice.token)).await.unwrap();
    let first = list(&mut client, &alice.id, &admin.token).await;
    assert_eq!(first.len(), 1);
    client
        .revoke_session(authed(revoke(&alice.id, &first[0].id), &admin.token))
        .await
        .unwrap();
    assert_unauthenticated(client.get_me(authed(me(), &alice.token)).await);
    srv.stop().await;
}

#[tokio::test]
async fn revoking_a_token_session_does_not_revoke_the_token() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let mut client = srv.client().await;
    let pat = create_pat(&mut client, &tina).await;
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    let minted = list(&mut client, "me", &tina.token)
        .await
        .into_iter()
        .find(|s| s.props.contains_key("user_access_token_id"))
        .unwrap();
    client
        .revoke_session(authed(revoke("me", &minted.id), &tina.token))
        .await
        .unwrap();
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    let again = list(&mut client, "me", &tina.token)
        .await
        .into_iter()
        .find(|s| s.props.contains_key("user_access_token_id"))
        .unwrap();
    assert_ne!(again.id, minted.id, "a new session is minted");
    srv.stop().await;
}

#[tokio::test]
async fn revoke_all_sessions_logs_the_user_out_everywhere_but_keeps_tokens() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let bob = srv.basic_user("bob").await;
    let mut client = srv.client().await;
    let pat = create_pat(&mut client, &tina).await;
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    let other = login(&mut client, &admin, &tina.id).await;
    let all = |user_id: &str| pb::RevokeAllSessionsRequest {
        user_id: user_id.to_owned(),
    };
    assert_denied(
        client
            .revoke_all_sessions(authed(all(&tina.id), &bob.token))
            .await,
        "edit_other_users",
    );
    assert_invalid(
        client
            .revoke_all_sessions(authed(all("junk"), &tina.token))
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    client
        .revoke_all_sessions(authed(all("me"), &tina.token))
        .await
        .unwrap();
    assert_unauthenticated(client.get_me(authed(me(), &tina.token)).await);
    assert_unauthenticated(client.get_me(authed(me(), &other.token)).await);
    assert!(list(&mut client, &tina.id, &admin.token).await.is_empty());
    // The PAT still works and mints a fresh session.
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    assert_eq!(list(&mut client, &tina.id, &admin.token).await.len(), 1);
    // An admin may do it for someone else; an unknown user is fine.
    client
        .revoke_all_sessions(authed(all(&bob.id), &admin.token))
        .await
        .unwrap();
    assert_unauthenticated(client.get_me(authed(me(), &bob.token)).await);
    client
        .revoke_all_sessions(authed(all(&new_id()), &admin.token))
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn revoke_sessions_from_all_users_needs_manage_system_and_spares_tokens() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let mut client = srv.client().await;
    let pat = create_pat(&mut client, &tina).await;
    assert_denied(
        client
            .revoke_sessions_from_all_users(authed(
                pb::RevokeSessionsFromAllUsersRequest {},
                &tina.token,
            ))
            .await,
        "manage_system",
    );
    client
        .revoke_sessions_from_all_users(authed(
            pb::RevokeSessionsFromAllUsersRequest {},
            &admin.token,
        ))
        .await
        .unwrap();
    assert_unauthenticated(
        client
            .revoke_sessions_from_all_users(authed(
                pb::RevokeSessionsFromAllUsersRequest {},
                &admin.token,
            ))
            .await,
    );
    assert_unauthenticated(client.get_me(authed(me(), &tina.token)).await);
    client.get_me(authed(me(), &pat.token)).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn create_session_is_for_system_managers_and_returns_a_working_token_once() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    assert_denied(
        client
            .create_session(authed(
                pb::CreateSessionRequest {
                    user_id: "me".into(),
                    ..Default::default()
                },
                &alice.token,
            ))
            .await,
        "manage_system",
    );
    let mut props = std::collections::HashMap::new();
    props.insert("platform".to_owned(), "Linux".to_owned());
    let created = client
        .create_session(authed(
            pb::CreateSessionRequest {
                user_id: alice.id.clone(),
                device_id: "apple_rn-v2:abc".into(),
                props,
                ..Default::default()
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.token.len(), 26);
    let session = created.session.unwrap();
    assert_eq!(session.user_id, alice.id);
    assert_eq!(session.device_id, "apple_rn-v2:abc");
    assert_eq!(session.props["platform"], "Linux");
    assert_eq!(session.roles, vec!["system_user"]);
    let lifetime = session.expires_at.unwrap().seconds - session.create_at.unwrap().seconds;
    assert!(
        (lifetime - 720 * 3600).abs() <= 1,
        "default 720 hours, got {lifetime}s"
    );
    let me_user = client
        .get_me(authed(me(), &created.token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(me_user.id, alice.id);
    let listed = list(&mut client, &alice.id, &admin.token).await;
    assert!(!format!("{listed:?}").contains(&created.token));
    srv.stop().await;
}

#[tokio::test]
async fn create_session_validates_its_input_and_writes_nothing_on_error() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let base = || pb::CreateSessionRequest {
        user_id: alice.id.clone(),
        ..Default::default()
    };
    let mut reserved = std::collections::HashMap::new();
    reserved.insert("type".to_owned(), "UserAccessToken".to_owned());
    let cases = [
        (
            pb::CreateSessionRequest {
                lifetime: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..base()
            },
            "lifetime",
        ),
        (
            pb::CreateSessionRequest {
                device_id: "d".repeat(513),
                ..base()
            },
            "device_id",
        ),
        (
            pb::CreateSessionRequest {
                props: reserved,
                ..base()
            },
            "props",
        ),
    ];
    for (request, field) in cases {
        assert_invalid(
            client.create_session(authed(request, &admin.token)).await,
            field,
            "api.context.invalid_body_param.app_error",
        );
    }
    assert_invalid(
        client
            .create_session(authed(
                pb::CreateSessionRequest {
                    user_id: "junk".into(),
                    ..Default::default()
                },
                &admin.token,
            ))
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        client
            .create_session(authed(
                pb::CreateSessionRequest {
                    user_id: new_id(),
                    ..Default::default()
                },
                &admin.token,
            ))
            .await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    assert_eq!(list(&mut client, &alice.id, &admin.token).await.len(), 1);

    client.as_(&admin).set_active(&alice.id, false).await;
    assert_invalid(
        client.create_session(authed(base(), &admin.token)).await,
        "user_id",
        "api.user.login.inactive.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_session_expires_at_its_lifetime_and_zero_means_never() {
    let srv = TestServer::start_with(|c| c.extend_session_length_with_activity = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let short = client
        .create_session(authed(
            pb::CreateSessionRequest {
                user_id: alice.id.clone(),
                lifetime: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let endless = client
        .create_session(authed(
            pb::CreateSessionRequest {
                user_id: alice.id.clone(),
                lifetime: Some(prost_types::Duration::default()),
                ..Default::default()
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(endless.session.unwrap().expires_at.is_none());
    client.get_me(authed(me(), &short.token)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_unauthenticated(client.get_me(authed(me(), &short.token)).await);
    client.get_me(authed(me(), &endless.token)).await.unwrap();
    srv.stop().await;
}

fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("a timestamp");
    ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000)
}

/// Polls `alice`'s listed sessions until `session_id`'s recorded activity is later than
/// `after` (activity is written off the request path); returns that session.
async fn session_active_after(
    client: &mut Client,
    admin: &Actor,
    user_id: &str,
    session_id: &str,
    after: i64,
) -> pb::Session {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let session = list(client, user_id, &admin.token)
            .await
            .into_iter()
            .find(|s| s.id == session_id)
            .expect("the session is listed");
        if millis(session.last_activity_at.as_ref()) > after {
            return session;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session's activity was not recorded within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn activity_extends_a_session_only_when_extend_session_length_with_activity_is_on() {
    for extend in [false, true] {
        let srv = TestServer::start_with(move |c| {
            c.extend_session_length_with_activity = extend;
            // Activity is recorded on every use: only the switch decides about the expiry.
            c.session_activity_interval_ms = 1;
        })
        .await;
        let admin = srv.admin("root").await;
        let alice = srv.basic_user("alice").await;
        let mut client = srv.client().await;
        let created = client
            .create_session(authed(
                pb::CreateSessionRequest {
                    user_id: alice.id.clone(),
                    lifetime: Some(prost_types::Duration {
                        seconds: 2,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                &admin.token,
            ))
            .await
            .unwrap()
            .into_inner();
        let session = created.session.unwrap();
        let created_at = millis(session.create_at.as_ref());
        let granted = millis(session.expires_at.as_ref());

        tokio::time::sleep(Duration::from_millis(100)).await;
        client.get_me(authed(me(), &created.token)).await.unwrap();
        let used =
            session_active_after(&mut client, &admin, &alice.id, &session.id, created_at).await;
        let expires_at = millis(used.expires_at.as_ref());
        if extend {
            assert!(
                expires_at >= created_at + 2100,
                "on: the use pushed the expiry ({granted} -> {expires_at})"
            );
            // Kept in use for twice its lifetime, it never expires.
            for _ in 0..16 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                client
                    .get_me(authed(me(), &created.token))
                    .await
                    .expect("an active session keeps being extended");
            }
        } else {
            assert_eq!(expires_at, granted, "off: the use must not move the expiry");
            // Used all along, it still stops at the granted expiry.
            let now = || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
            };
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let sent = now();
                let answer = client.get_me(authed(me(), &created.token)).await;
                let answered = now();
                if answered < granted {
                    answer.expect("the session works until its granted expiry");
                } else if sent >= granted {
                    assert_unauthenticated(answer);
                    break;
                }
            }
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_user_keeps_at_most_500_sessions_the_least_recently_active_go_first() {
    // Every use is recorded, so using a session makes it the most recently active.
    let srv = TestServer::start_with(|c| c.session_activity_interval_ms = 1).await;
    let admin = srv.admin("root").await;
    // alice's fixture session is the oldest created.
    let alice = srv.basic_user("alice").await;
    let new = || NewSession {
        user_id: alice.id.clone(),
        lifetime_ms: Some(3_600_000),
        ..NewSession::default()
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The second oldest, never used: once alice's first session is used, the least recently
    // active one.
    let idle = sessions::create_session(&srv.ctx, &Caller::Local, new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut last = None;
    for _ in 0..498 {
        last = Some(
            sessions::create_session(&srv.ctx, &Caller::Local, new())
                .await
                .unwrap(),
        );
    }
    let last = last.unwrap();
    let mut client = srv.client().await;
    let oldest_id = client
        .introspect_token(authed(
            pb::IntrospectTokenRequest {
                token: alice.token.clone(),
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .session_id;
    assert_eq!(list(&mut client, &alice.id, &admin.token).await.len(), 500);

    tokio::time::sleep(Duration::from_millis(5)).await;
    client.get_me(authed(me(), &alice.token)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while list(&mut client, &alice.id, &admin.token).await[0].id != oldest_id {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the use of the oldest session was not recorded within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let newest = sessions::create_session(&srv.ctx, &Caller::Local, new())
        .await
        .unwrap();
    // The fixture context is another process as far as the server is concerned: it learns
    // of the trimmed session from the revocation log within its poll interval.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while client
        .get_me(authed(me(), idle.token.expose()))
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trimmed session still authenticates after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_unauthenticated(client.get_me(authed(me(), idle.token.expose())).await);
    // The oldest created, but recently active, session stays.
    client
        .get_me(authed(me(), &alice.token))
        .await
        .expect("the recently used oldest session is kept");
    let listed: Vec<String> = list(&mut client, &alice.id, &admin.token)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed.len(), 500);
    assert!(!listed.contains(&idle.session.id.to_string()));
    for kept in [
        &oldest_id,
        &newest.session.id.to_string(),
        &last.session.id.to_string(),
    ] {
        assert!(listed.contains(kept), "{kept} was revoked");
    }
    srv.stop().await;
}

async fn session_text_columns(srv: &TestServer) -> Vec<String> {
    let db = Database::connect(srv.config.database_url.as_ref().unwrap().expose())
        .await
        .unwrap();
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, token_hash, user_id, user_access_token_id, device_id, roles, props \
             FROM sessions",
        ))
        .await
        .unwrap();
    let mut values = Vec::new();
    for row in rows {
        for column in [
            "id",
            "token_hash",
            "user_id",
            "user_access_token_id",
            "device_id",
            "roles",
            "props",
        ] {
            let value: Option<String> = row.try_get("", column).unwrap();
            values.extend(value);
        }
    }
    db.close().await.ok();
    values
}

#[tokio::test]
async fn a_created_session_token_is_never_stored_in_plaintext() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    let created = login(&mut client, &admin, &alice.id).await;
    // Use it, so its activity is written too.
    client.get_me(authed(me(), &created.token)).await.unwrap();
    let session_id = created.session.unwrap().id;

    let columns = session_text_columns(&srv).await;
    assert!(columns.contains(&session_id), "the sessions table was read");
    for value in &columns {
        assert!(
            !value.contains(&created.token),
            "plaintext session token in the sessions table: {value}"
        );
    }
    if srv.backend() == "sqlite" {
        // The database file and its write-ahead log.
        let mut haystack = Vec::new();
        for entry in std::fs::read_dir(srv.dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                haystack.extend(std::fs::read(path).unwrap());
            }
        }
        let contains = |needle: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        assert!(
            contains(session_id.as_bytes()),
            "the database files were read"
        );
        assert!(
            !contains(created.token.as_bytes()),
            "plaintext session token on disk"
        );
    }
    srv.stop().await;
}
