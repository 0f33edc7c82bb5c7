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
