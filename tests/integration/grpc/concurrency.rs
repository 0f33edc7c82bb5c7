//! Concurrent clients against one server, with the final state checked: revoke racing use,
//! disable racing enable, many creates for one user, and the per-user session cap under
//! concurrent logins. Meant for PostgreSQL and MariaDB (`.ci/run` runs them there); they run
//! on SQLite too.

use std::collections::BTreeSet;

use token_service::domain::{
    caller::Caller,
    sessions::{self, MAX_SESSIONS_PER_USER, NewSession},
};

use crate::common::*;

#[tokio::test]
async fn revoke_racing_first_uses_leaves_no_token_and_no_session() {
    // Hundreds of uses of just-revoked tokens from one address: the guess throttle would
    // refuse the address (this test is about the race, not the throttle).
    let srv = TestServer::start_with(|c| c.guess_throttle.enable = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    for _ in 0..5 {
        let (token_id, secret) = client.as_(&alice).new_token("me").await;
        // Many first uses (each may try to mint the session) race one revoke.
        let mut users = Vec::new();
        for _ in 0..16 {
            let user = client.as_(&secret);
            users.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let _ = user.get_me().await;
                }
            }));
        }
        client.as_(&admin).revoke_token(&token_id).await.unwrap();
        // From the moment revoke returned, the secret is refused, even while uses go on.
        assert_token_refused(&client, &secret).await;
        for u in users {
            u.await.unwrap();
        }
        assert_token_refused(&client, &secret).await;
    }
    // No session minted for a revoked token survived: only the login session is left.
    let left = client.as_(&admin).sessions_of(&alice.id).await;
    assert_eq!(left.len(), 1, "{left:#?}");
    assert!(!left[0].props.contains_key("user_access_token_id"));
    srv.stop().await;
}

#[tokio::test]
async fn disable_racing_enable_ends_consistent() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let (token_id, secret) = client.as_(&alice).new_token("me").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (owner, user) = (client.as_(&alice), client.as_(&secret));
        let token_id = token_id.clone();
        tasks.push(tokio::spawn(async move {
            let what = if i % 2 == 0 {
                TokenChange::Disable
            } else {
                TokenChange::Enable
            };
            owner.change_token(what, &token_id).await.unwrap();
            let _ = user.get_me().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Whatever order they ran in, the stored state and authentication agree.
    let stored = client
        .as_(&alice)
        .get_token(&token_id)
        .await
        .unwrap()
        .user_access_token
        .unwrap();
    let works = client.as_(&secret).get_me().await.is_ok();
    assert_eq!(works, stored.is_active);
    // And a final disable holds.
    client.as_(&alice).disable_token(&token_id).await.unwrap();
    assert_token_refused(&client, &secret).await;
    srv.stop().await;
}

#[tokio::test]
async fn many_concurrent_creates_for_one_user_all_land() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let owner = client.as_(&alice);
        tasks.push(tokio::spawn(async move { owner.new_token("me").await }));
    }
    let mut ids = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for t in tasks {
        let (id, secret) = t.await.unwrap();
        ids.insert(id);
        secrets.insert(secret);
    }
    assert_eq!((ids.len(), secrets.len()), (40, 40));
    let listed: BTreeSet<String> = client
        .as_(&alice)
        .list_tokens_for_page("me", None, Some(200))
        .await
        .unwrap()
        .user_access_tokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ids);
    for secret in &secrets {
        let me = client.as_(secret).me().await.unwrap();
        assert_eq!(me.id, alice.id);
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_session_cap_holds_under_concurrent_logins() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let new = || NewSession {
        user_id: alice.id.clone(),
        lifetime_ms: Some(3_600_000),
        ..NewSession::default()
    };
    // alice's fixture session and 479 more, oldest first, with when each was last active.
    let mut old = Vec::new();
    for _ in 0..(MAX_SESSIONS_PER_USER - 21) {
        let session = sessions::create_session(&srv.ctx, &Caller::Local, new())
            .await
            .unwrap()
            .session;
        old.push((session.id.to_string(), session.last_activity_at));
    }
    let client = srv.client().await;
    let mut listed = client.as_(&admin).sessions_of(&alice.id).await;
    let fixture = listed
        .iter()
        .position(|s| old.iter().all(|(id, _)| *id != s.id))
        .expect("alice's fixture session");
    let fixture = listed.swap_remove(fixture);
    let fixture_activity = fixture.last_activity_at.unwrap();
    old.insert(
        0,
        (
            fixture.id,
            fixture_activity.seconds * 1000 + i64::from(fixture_activity.nanos / 1_000_000),
        ),
    );
    assert_eq!(old.len() as u64, MAX_SESSIONS_PER_USER - 20);
    // The logins below are strictly more recent than every existing session.
    srv.advance(std::time::Duration::from_millis(5));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (as_admin, user_id) = (client.as_(&admin), alice.id.clone());
        tasks.push(tokio::spawn(async move { as_admin.login(&user_id).await }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.push(t.await.unwrap());
    }
    let left: BTreeSet<String> = client
        .as_(&admin)
        .sessions_of(&alice.id)
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left.len() as u64, MAX_SESSIONS_PER_USER, "the cap is exact");
    // Every new login is kept; the 20 sessions that made room were the least recently active.
    for login in &created {
        let id = &login.session.as_ref().unwrap().id;
        assert!(left.contains(id), "new session {id} was revoked");
    }
    let (trimmed, kept): (Vec<_>, Vec<_>) = old.iter().partition(|(id, _)| !left.contains(id));
    assert_eq!(trimmed.len(), 20, "{trimmed:?}");
    let latest_trimmed = trimmed.iter().map(|(_, at)| *at).max().unwrap();
    let earliest_kept = kept.iter().map(|(_, at)| *at).min().unwrap();
    assert!(
        latest_trimmed <= earliest_kept,
        "a session active at {latest_trimmed} was revoked while one last active at \
         {earliest_kept} was kept"
    );
    // And the new logins work.
    for login in &created {
        client
            .as_(&login.token)
            .get_me()
            .await
            .expect("a new login authenticates");
    }
    srv.stop().await;
}
