//! The user directory RPCs, GetMe, authentication forms, and the RPCs not implemented yet.

use token_service::pb;

use crate::common::*;

fn new_user(username: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.to_owned(),
        ..Default::default()
    }
}

#[tokio::test]
async fn get_me_returns_the_caller() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let me = srv.as_(&alice).me().await.unwrap();
    assert_eq!(me.id, alice.id);
    assert_eq!(me.username, "alice");
    assert_eq!(me.roles, vec!["system_user"]);
    assert!(me.delete_at.is_none() && me.create_at.is_some());
    srv.stop().await;
}

#[tokio::test]
async fn authorization_schemes_are_parsed_like_mattermost() {
    let srv = TestServer::start().await;
    let alice = srv.basic_user("alice").await;
    let mut client = srv.client().await;
    for header in [
        format!("Bearer {}", alice.token),
        format!("bearer {}", alice.token),
        format!("BEARER {}", alice.token),
        format!("Token {}", alice.token),
        format!("token {}", alice.token),
    ] {
        client
            .get_me(with_header(pb::GetMeRequest {}, &header))
            .await
            .unwrap_or_else(|e| panic!("{header:.12}: {e:?}"));
    }
    for header in [
        format!("Basic {}", alice.token),
        format!("Bearer  {}", alice.token),
        "Bearer ".to_owned(),
        "Bearer garbage".to_owned(),
    ] {
        assert_unauthenticated(
            client
                .get_me(with_header(pb::GetMeRequest {}, &header))
                .await,
        );
    }
    assert_unauthenticated(srv.anonymous().get_me().await);
    srv.stop().await;
}

#[tokio::test]
async fn only_system_managers_create_users() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    assert_denied(
        srv.as_(&alice).create_user(new_user("bob")).await,
        "manage_system",
    );
    let bob = srv
        .as_(&admin)
        .create_user(pb::CreateUserRequest {
            username: "Bob".into(),
            email: "Bob@Example.com".into(),
            roles: vec!["system_user".into(), "system_user_access_token".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(bob.username, "bob");
    assert_eq!(bob.email, "bob@example.com");
    assert_eq!(bob.id.len(), 26);
    assert_eq!(bob.roles, vec!["system_user", "system_user_access_token"]);
    srv.stop().await;
}

#[tokio::test]
async fn create_user_mirrors_a_given_id_and_refuses_duplicates() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let as_admin = srv.as_(&admin);
    let id = token_service::domain::ids::new_id();
    let created = as_admin
        .create_user(pb::CreateUserRequest {
            id: id.clone(),
            username: "carol".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(created.id, id);
    assert_eq!(created.roles, vec!["system_user"]);
    assert_error(
        as_admin.create_user(new_user("carol")).await,
        tonic::Code::AlreadyExists,
        "app.user.save.username_exists.app_error",
    );
    assert_error(
        as_admin
            .create_user(pb::CreateUserRequest {
                id,
                username: "carol2".into(),
                ..Default::default()
            })
            .await,
        tonic::Code::AlreadyExists,
        "store.sql_user.save.existing.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn create_user_validates_every_field() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let as_admin = srv.as_(&admin);
    let cases = [
        (
            new_user(""),
            "username",
            "model.user.is_valid.username.app_error",
        ),
        (
            new_user("9lives"),
            "username",
            "model.user.is_valid.username.app_error",
        ),
        (
            new_user("has space"),
            "username",
            "model.user.is_valid.username.app_error",
        ),
        (
            pb::CreateUserRequest {
                id: "short".into(),
                ..new_user("dave")
            },
            "id",
            "api.context.invalid_body_param.app_error",
        ),
        (
            pb::CreateUserRequest {
                email: "not-an-address".into(),
                ..new_user("dave")
            },
            "email",
            "model.user.is_valid.email.app_error",
        ),
        (
            pb::CreateUserRequest {
                roles: vec!["system_wizard".into()],
                ..new_user("dave")
            },
            "roles",
            "model.user.is_valid.roles.app_error",
        ),
        (
            pb::CreateUserRequest {
                bot_owner_id: admin.id.clone(),
                ..new_user("dave")
            },
            "bot_owner_id",
            "model.bot.is_valid.creator_id.app_error",
        ),
        (
            pb::CreateUserRequest {
                is_bot: true,
                bot_owner_id: token_service::domain::ids::new_id(),
                ..new_user("dave-bot")
            },
            "bot_owner_id",
            "model.bot.is_valid.creator_id.app_error",
        ),
    ];
    for (request, field, id) in cases {
        assert_invalid(as_admin.create_user(request).await, field, id);
    }
    // Nothing was written: "dave" is still free.
    as_admin.create_user(new_user("dave")).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn role_changes_apply_to_existing_sessions_at_once() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    assert_denied(
        srv.as_(&alice).create_token("me", "d").await,
        "create_user_access_token",
    );
    let updated = srv
        .as_(&admin)
        .update_user_roles(&alice.id, &["system_user", "system_user_access_token"])
        .await
        .unwrap()
        .user
        .unwrap();
    assert_eq!(
        updated.roles,
        vec!["system_user", "system_user_access_token"]
    );
    srv.as_(&alice).create_token("me", "d").await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn update_user_roles_checks_permission_user_and_roles() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let as_admin = srv.as_(&admin);
    assert_denied(
        srv.as_(&alice)
            .update_user_roles(&alice.id, &["system_admin"])
            .await,
        "manage_system",
    );
    assert_error(
        as_admin
            .update_user_roles(&token_service::domain::ids::new_id(), &["system_user"])
            .await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    assert_invalid(
        as_admin.update_user_roles(&alice.id, &[]).await,
        "roles",
        "model.user.is_valid.roles.app_error",
    );
    assert_invalid(
        as_admin.update_user_roles(&alice.id, &["nope"]).await,
        "roles",
        "model.user.is_valid.roles.app_error",
    );
    assert_invalid(
        as_admin.update_user_roles("junk", &["system_user"]).await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn deactivation_stops_sessions_and_tokens_until_reactivation() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let tina = srv.token_user("tina").await;
    let (as_admin, as_tina) = (srv.as_(&admin), srv.as_(&tina));
    let pat = as_tina.create_token("me", "d").await.unwrap();
    srv.as_(&pat.token).get_me().await.unwrap();
    assert_denied(
        as_tina.update_user_active(&tina.id, false).await,
        "manage_system",
    );
    let user = as_admin
        .update_user_active(&tina.id, false)
        .await
        .unwrap()
        .user
        .unwrap();
    assert!(user.delete_at.is_some());
    assert_unauthenticated(srv.as_(&pat.token).get_me().await);
    assert_unauthenticated(as_tina.get_me().await);

    let user = as_admin
        .update_user_active(&tina.id, true)
        .await
        .unwrap()
        .user
        .unwrap();
    assert!(user.delete_at.is_none());
    // The PAT works again (a new session is minted); the login session was deleted.
    srv.as_(&pat.token).get_me().await.unwrap();
    assert_unauthenticated(as_tina.get_me().await);
    srv.stop().await;
}

#[tokio::test]
async fn get_user_shows_the_directory_with_the_email_only_to_those_who_may_see_it() {
    let srv = TestServer::start_with(|c| c.show_email_address = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let carol = srv
        .as_(&admin)
        .create_user(pb::CreateUserRequest {
            username: "carol".into(),
            email: "Carol@Example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();

    // Another ordinary user (system_user holds view_members) sees Carol, without her e-mail.
    let seen = srv.as_(&alice).get_user(&carol.id).await.unwrap();
    assert_eq!(seen.id, carol.id);
    assert_eq!(seen.username, "carol");
    assert_eq!(seen.roles, vec!["system_user"]);
    assert_eq!(seen.email, "", "hidden from other users");
    // manage_system sees it.
    let seen = srv.as_(&admin).get_user(&carol.id).await.unwrap();
    assert_eq!(seen.email, "carol@example.com");
    // By username, case-insensitively, the same sanitisation.
    let seen = srv.as_(&alice).get_user_by_username("Carol").await.unwrap();
    assert_eq!(
        (seen.id.as_str(), seen.email.as_str()),
        (carol.id.as_str(), "")
    );
    let seen = srv.as_(&admin).get_user_by_username("carol").await.unwrap();
    assert_eq!(seen.email, "carol@example.com");

    // "me" is the caller, in full.
    let me = srv.as_(&alice).get_user("me").await.unwrap();
    assert_eq!(me.id, alice.id);
    assert_eq!(me, srv.as_(&alice).me().await.unwrap());

    // A deactivated user is still in the directory, with delete_at set.
    srv.as_(&admin).set_active(&carol.id, false).await;
    let gone = srv.as_(&alice).get_user(&carol.id).await.unwrap();
    assert!(gone.delete_at.is_some());

    // Checks: the id, then existence.
    assert_invalid(
        srv.as_(&alice).get_user("nope").await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    assert_error(
        srv.as_(&alice)
            .get_user(&token_service::domain::ids::new_id())
            .await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    assert_error(
        srv.as_(&alice).get_user_by_username("nobody").await,
        tonic::Code::NotFound,
        "app.user.missing_account.const",
    );
    for bad in ["", "9lives", "a b", "x/y", &"a".repeat(65)] {
        assert_invalid(
            srv.as_(&alice).get_user_by_username(bad).await,
            "username",
            "api.context.invalid_url_param.app_error",
        );
    }
    assert_unauthenticated(srv.anonymous().get_user(&alice.id).await);
    assert_unauthenticated(srv.anonymous().get_user_by_username("alice").await);
    srv.stop().await;
}

#[tokio::test]
async fn show_email_address_shows_the_email_to_every_caller_who_may_see_the_user() {
    let srv = TestServer::start_with(|c| c.show_email_address = true).await;
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let carol = srv
        .as_(&admin)
        .create_user(pb::CreateUserRequest {
            username: "carol".into(),
            email: "carol@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();
    let seen = srv.as_(&alice).get_user(&carol.id).await.unwrap();
    assert_eq!(seen.email, "carol@example.com");
    srv.stop().await;
}

#[tokio::test]
async fn without_view_members_a_caller_sees_itself_and_teammates_only() {
    // Guests hold no view_members; a team role that grants it opens that team's members.
    let srv = TestServer::start_with(|c| {
        c.roles
            .insert("team_user".into(), vec!["view_members".into()]);
    })
    .await;
    let admin = srv.admin("root").await;
    let guest = srv.user("guest", &["system_guest"]).await;
    let teammate = srv.basic_user("teammate").await;
    let stranger = srv.basic_user("stranger").await;
    let other_team_guest = srv.user("otherguest", &["system_guest"]).await;

    // Alone, a guest sees only itself; an unknown user is the same 403 (no existence oracle).
    assert_eq!(srv.as_(&guest).get_user("me").await.unwrap().id, guest.id);
    assert_denied(srv.as_(&guest).get_user(&teammate.id).await, "view_members");
    assert_denied(
        srv.as_(&guest)
            .get_user(&token_service::domain::ids::new_id())
            .await,
        "view_members",
    );
    assert_denied(
        srv.as_(&guest).get_user_by_username("teammate").await,
        "view_members",
    );
    assert_denied(
        srv.as_(&guest).get_user_by_username("nobody").await,
        "view_members",
    );

    // Sharing a team where the guest's team role grants view_members.
    let team = token_service::domain::ids::new_id();
    let other_team = token_service::domain::ids::new_id();
    for (t, who) in [
        (&team, &guest),
        (&team, &teammate),
        (&other_team, &stranger),
        (&other_team, &other_team_guest),
    ] {
        srv.as_(&admin)
            .add_team_member(t, &who.id, &["team_user"])
            .await
            .unwrap();
    }
    assert_eq!(
        srv.as_(&guest).get_user(&teammate.id).await.unwrap().id,
        teammate.id
    );
    assert_eq!(
        srv.as_(&guest)
            .get_user_by_username("teammate")
            .await
            .unwrap()
            .email,
        ""
    );
    assert_denied(srv.as_(&guest).get_user(&stranger.id).await, "view_members");
    assert_denied(
        srv.as_(&other_team_guest).get_user(&guest.id).await,
        "view_members",
    );
    srv.stop().await;
}

#[tokio::test]
async fn logout_ends_the_calling_session_on_every_replica_at_once() {
    let srv = TestServer::start().await;
    let replica = ReplicaProcess::start(&srv);
    let admin = srv.admin("root").await;
    let alice = srv.basic_user("alice").await;
    let other = srv.as_(&admin).login(&alice.id).await;
    let a = srv.client().await;
    let b = replica.client().await;
    replica.wait_until_caught_up().await;
    let mut events = a.as_(&admin).subscribe().await;
    // Both replicas have the session cached.
    for client in [&a, &b] {
        client.as_(&alice).get_me().await.unwrap();
        client.as_(&alice).get_me().await.unwrap();
    }
    let sessions = a.as_(&alice).sessions_of("me").await;
    let mine = sessions
        .iter()
        .find(|s| s.id != other.session.as_ref().unwrap().id)
        .unwrap()
        .id
        .clone();

    a.as_(&alice).logout().await.unwrap();
    // Through the revocation log: one session event.
    let event = next_revocation(&mut events).await.unwrap();
    assert_eq!(event.kind(), pb::RevocationKind::Session);
    assert_eq!(event.subject_id, mine);
    assert_token_refused(&a, &alice.token).await;
    let start = std::time::Instant::now();
    while b.as_(&alice).get_me().await.is_ok() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "the other replica still accepts the logged-out session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Only that session: Alice's other login still works.
    let remaining = srv.as_(&other.token).sessions_of("me").await;
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].id, other.session.unwrap().id);
    // A second logout with the ended session: nothing to end.
    assert_unauthenticated(a.as_(&alice).logout().await);
    assert_unauthenticated(a.anonymous().logout().await);
    drop(replica);
    srv.stop().await;
}

#[tokio::test]
async fn logout_with_a_personal_access_token_ends_its_session_not_the_token() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    srv.as_(&secret).get_me().await.unwrap();
    let minted = |sessions: &[pb::Session]| {
        sessions
            .iter()
            .find(|s| s.props.get("user_access_token_id") == Some(&token_id))
            .map(|s| s.id.clone())
    };
    let first = minted(&srv.as_(&alice).sessions_of("me").await).expect("minted session");

    srv.as_(&secret).logout().await.unwrap();
    assert_eq!(minted(&srv.as_(&alice).sessions_of("me").await), None);
    // As in Mattermost, the token itself still authenticates: its next use mints anew.
    assert_eq!(srv.as_(&secret).me().await.unwrap().id, alice.id);
    let second = minted(&srv.as_(&alice).sessions_of("me").await).expect("a new session");
    assert_ne!(first, second);
    // The login session was not touched.
    srv.as_(&alice).get_me().await.unwrap();
    srv.stop().await;
}
