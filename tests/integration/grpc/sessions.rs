//! Sessions: CreateSession, GetSessions, RevokeSession, RevokeAllSessions,
//! RevokeSessionsFromAllUsers, the per-user cap, and extension on activity (Mattermost's
//! TestGetSessions, TestRevokeSessions, TestRevokeAllSessions, TestRevokeSessionsFromAllUsers).

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use token_service::{
    domain::{
        caller::Caller,
        ids::new_id,
        sessions::{self, NewSession},
    },
    pb,
};

use crate::common::*;

#[tokio::test]
async fn a_user_lists_their_own_sessions_without_tokens() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let sessions = srv.as_(&alice).sessions_of("me").await;
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
    assert_denied(
        srv.as_(&alice).get_sessions(&bob.id).await,
        "edit_other_users",
    );
    assert_denied(
        srv.as_(&alice).get_sessions(&new_id()).await,
        "edit_other_users",
    );
    assert_eq!(srv.as_(&admin).sessions_of(&bob.id).await.len(), 1);
    assert_eq!(srv.as_(&admin).sessions_of(&admin.id).await.len(), 1);
    assert!(srv.as_(&admin).sessions_of(&new_id()).await.is_empty());
    assert_invalid(
        srv.as_(&alice).get_sessions("junk").await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_unauthenticated(srv.anonymous().get_sessions("me").await);
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
    assert_eq!(srv.as_(&manager).sessions_of(&alice.id).await.len(), 1);
    assert_denied(
        srv.as_(&manager).get_sessions(&admin.id).await,
        "edit_other_users",
    );
    srv.stop().await;
}

#[tokio::test]
async fn personal_access_token_sessions_are_listed_with_their_props() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let pat = srv
        .as_(&tina)
        .create_token("me", "sessions test")
        .await
        .unwrap();
    srv.as_(&pat.token).get_me().await.unwrap();
    let sessions = srv.as_(&tina).sessions_of("me").await;
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
    let older = srv.as_(&admin).login(&alice.id).await;
    srv.advance(Duration::from_millis(30));
    let newer = srv.as_(&admin).login(&alice.id).await;
    let ids = |s: &[pb::Session]| s.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    let first = srv.as_(&admin).sessions_of(&alice.id).await;
    assert_eq!(
        first[0].id,
        newer.session.as_ref().unwrap().id,
        "{:?}",
        ids(&first)
    );

    // Using the older session makes it the most recent (written off the request path).
    srv.advance(Duration::from_millis(30));
    srv.as_(&older.token).get_me().await.unwrap();
    let older_id = older.session.unwrap().id;
    let mut reordered = false;
    for _ in 0..50 {
        let now = srv.as_(&admin).sessions_of(&alice.id).await;
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
    let admin_session = srv.as_(&admin).sessions_of("me").await[0].id.clone();

    assert_error(
        srv.as_(&alice).revoke_session("me", &new_id()).await,
        tonic::Code::NotFound,
        "app.session.get.app_error",
    );
    assert_denied(
        srv.as_(&alice).revoke_session(&bob.id, &new_id()).await,
        "edit_other_users",
    );
    assert_invalid(
        srv.as_(&alice).revoke_session("junk", &new_id()).await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_invalid(
        srv.as_(&alice).revoke_session("me", "").await,
        "session_id",
        "api.context.invalid_body_param.app_error",
    );
    // Another user's session through one's own path: 400 naming user_id.
    assert_invalid(
        srv.as_(&alice).revoke_session("me", &admin_session).await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        srv.as_(&admin).revoke_session(&alice.id, &new_id()).await,
        tonic::Code::NotFound,
        "app.session.get.app_error",
    );
    // The admin's session is untouched by all that.
    srv.as_(&admin).get_me().await.unwrap();

    let own = srv.as_(&alice).sessions_of("me").await[0].id.clone();
    srv.as_(&alice).revoke_session("me", &own).await.unwrap();
    assert_unauthenticated(srv.as_(&alice).get_me().await);
    srv.stop().await;
}

#[tokio::test]
async fn an_admin_revokes_another_users_session_by_id_or_by_token() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let second = srv.as_(&admin).login(&alice.id).await;
    srv.as_(&admin)
        .revoke_session(&alice.id, &second.token)
        .await
        .unwrap();
    assert_unauthenticated(srv.as_(&second.token).get_me().await);
    srv.as_(&alice).get_me().await.unwrap();
    let first = srv.as_(&admin).sessions_of(&alice.id).await;
    assert_eq!(first.len(), 1);
    srv.as_(&admin)
        .revoke_session(&alice.id, &first[0].id)
        .await
        .unwrap();
    assert_unauthenticated(srv.as_(&alice).get_me().await);
    srv.stop().await;
}

#[tokio::test]
async fn revoking_a_token_session_does_not_revoke_the_token() {
    let srv = TestServer::start().await;
    let tina = srv.token_user("tina").await;
    let pat = srv
        .as_(&tina)
        .create_token("me", "sessions test")
        .await
        .unwrap();
    srv.as_(&pat.token).get_me().await.unwrap();
    let minted = srv
        .as_(&tina)
        .sessions_of("me")
        .await
        .into_iter()
        .find(|s| s.props.contains_key("user_access_token_id"))
        .unwrap();
    srv.as_(&tina)
        .revoke_session("me", &minted.id)
        .await
        .unwrap();
    srv.as_(&pat.token).get_me().await.unwrap();
    let again = srv
        .as_(&tina)
        .sessions_of("me")
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
    let pat = srv
        .as_(&tina)
        .create_token("me", "sessions test")
        .await
        .unwrap();
    srv.as_(&pat.token).get_me().await.unwrap();
    let other = srv.as_(&admin).login(&tina.id).await;
    assert_denied(
        srv.as_(&bob).revoke_all_sessions(&tina.id).await,
        "edit_other_users",
    );
    assert_invalid(
        srv.as_(&tina).revoke_all_sessions("junk").await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    srv.as_(&tina).revoke_all_sessions("me").await.unwrap();
    assert_unauthenticated(srv.as_(&tina).get_me().await);
    assert_unauthenticated(srv.as_(&other.token).get_me().await);
    assert!(srv.as_(&admin).sessions_of(&tina.id).await.is_empty());
    // The PAT still works and mints a fresh session.
    srv.as_(&pat.token).get_me().await.unwrap();
    assert_eq!(srv.as_(&admin).sessions_of(&tina.id).await.len(), 1);
    // An admin may do it for someone else; an unknown user is fine.
    srv.as_(&admin).revoke_all_sessions(&bob.id).await.unwrap();
    assert_unauthenticated(srv.as_(&bob).get_me().await);
    srv.as_(&admin)
        .revoke_all_sessions(&new_id())
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn revoke_sessions_from_all_users_needs_manage_system_and_spares_tokens() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let pat = srv
        .as_(&tina)
        .create_token("me", "sessions test")
        .await
        .unwrap();
    assert_denied(
        srv.as_(&tina).revoke_sessions_from_all_users().await,
        "manage_system",
    );
    srv.as_(&admin)
        .revoke_sessions_from_all_users()
        .await
        .unwrap();
    assert_unauthenticated(srv.as_(&admin).revoke_sessions_from_all_users().await);
    assert_unauthenticated(srv.as_(&tina).get_me().await);
    srv.as_(&pat.token).get_me().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn create_session_is_for_system_managers_and_returns_a_working_token_once() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    assert_denied(
        srv.as_(&alice)
            .create_session(pb::CreateSessionRequest {
                user_id: "me".into(),
                ..Default::default()
            })
            .await,
        "manage_system",
    );
    let mut props = std::collections::HashMap::new();
    props.insert("platform".to_owned(), "Linux".to_owned());
    let created = srv
        .as_(&admin)
        .create_session(pb::CreateSessionRequest {
            user_id: alice.id.clone(),
            device_id: "apple_rn-v2:abc".into(),
            props,
            ..Default::default()
        })
        .await
        .unwrap();
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
    let me_user = srv.as_(&created.token).me().await.unwrap();
    assert_eq!(me_user.id, alice.id);
    let listed = srv.as_(&admin).sessions_of(&alice.id).await;
    assert!(!format!("{listed:?}").contains(&created.token));
    srv.stop().await;
}

#[tokio::test]
async fn create_session_validates_its_input_and_writes_nothing_on_error() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let as_admin = srv.as_(&admin);
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
            as_admin.create_session(request).await,
            field,
            "api.context.invalid_body_param.app_error",
        );
    }
    assert_invalid(
        as_admin
            .create_session(pb::CreateSessionRequest {
                user_id: "junk".into(),
                ..Default::default()
            })
            .await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        as_admin
            .create_session(pb::CreateSessionRequest {
                user_id: new_id(),
                ..Default::default()
            })
            .await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    assert_eq!(as_admin.sessions_of(&alice.id).await.len(), 1);

    as_admin.set_active(&alice.id, false).await;
    assert_invalid(
        as_admin.create_session(base()).await,
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
    let as_admin = srv.as_(&admin);
    let short = as_admin
        .create_session(pb::CreateSessionRequest {
            user_id: alice.id.clone(),
            lifetime: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let endless = as_admin
        .create_session(pb::CreateSessionRequest {
            user_id: alice.id.clone(),
            lifetime: Some(prost_types::Duration::default()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(endless.session.unwrap().expires_at.is_none());
    srv.as_(&short.token).get_me().await.unwrap();
    srv.advance(Duration::from_millis(1200));
    assert_unauthenticated(srv.as_(&short.token).get_me().await);
    srv.as_(&endless.token).get_me().await.unwrap();
    srv.stop().await;
}

fn millis(ts: Option<&prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("a timestamp");
    ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000)
}

/// Polls `alice`'s listed sessions until `session_id`'s recorded activity is later than
/// `after` (activity is written off the request path); returns that session.
async fn session_active_after(
    srv: &TestServer,
    admin: &Actor,
    user_id: &str,
    session_id: &str,
    after: i64,
) -> pb::Session {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let session = srv
            .as_(admin)
            .sessions_of(user_id)
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
        let created = srv
            .as_(&admin)
            .create_session(pb::CreateSessionRequest {
                user_id: alice.id.clone(),
                lifetime: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let session = created.session.unwrap();
        let created_at = millis(session.create_at.as_ref());
        let granted = millis(session.expires_at.as_ref());

        srv.advance(Duration::from_millis(100));
        srv.as_(&created.token).get_me().await.unwrap();
        let used = session_active_after(&srv, &admin, &alice.id, &session.id, created_at).await;
        let expires_at = millis(used.expires_at.as_ref());
        if extend {
            assert!(
                expires_at >= created_at + 2100,
                "on: the use pushed the expiry ({granted} -> {expires_at})"
            );
            // Kept in use for twice its lifetime, it never expires.
            for _ in 0..16 {
                srv.advance(Duration::from_millis(250));
                srv.as_(&created.token)
                    .get_me()
                    .await
                    .expect("an active session keeps being extended");
            }
        } else {
            assert_eq!(expires_at, granted, "off: the use must not move the expiry");
            // Used all along, it still stops at the granted expiry.
            let now = || srv.now();
            loop {
                srv.advance(Duration::from_millis(250));
                let sent = now();
                let answer = srv.as_(&created.token).get_me().await;
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
    srv.advance(Duration::from_millis(5));
    // The second oldest, never used: once alice's first session is used, the least recently
    // active one.
    let idle = sessions::create_session(&srv.ctx, &Caller::Local, new())
        .await
        .unwrap();
    srv.advance(Duration::from_millis(5));
    let mut last = None;
    for _ in 0..498 {
        last = Some(
            sessions::create_session(&srv.ctx, &Caller::Local, new())
                .await
                .unwrap(),
        );
    }
    let last = last.unwrap();
    let oldest_id = srv
        .as_(&admin)
        .introspect(&alice.token)
        .await
        .unwrap()
        .session_id;
    assert_eq!(srv.as_(&admin).sessions_of(&alice.id).await.len(), 500);

    srv.advance(Duration::from_millis(5));
    srv.as_(&alice).get_me().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while srv.as_(&admin).sessions_of(&alice.id).await[0].id != oldest_id {
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
    while srv.as_(idle.token.expose()).get_me().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trimmed session still authenticates after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_unauthenticated(srv.as_(idle.token.expose()).get_me().await);
    // The oldest created, but recently active, session stays.
    srv.as_(&alice)
        .get_me()
        .await
        .expect("the recently used oldest session is kept");
    let listed: Vec<String> = srv
        .as_(&admin)
        .sessions_of(&alice.id)
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
    let created = srv.as_(&admin).login(&alice.id).await;
    // Use it, so its activity is written too.
    srv.as_(&created.token).get_me().await.unwrap();
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
