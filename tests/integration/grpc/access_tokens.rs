//! Personal access tokens over gRPC: every PAT RPC against every kind of caller, the
//! validation rules, paging, search semantics, and what revoke/disable/enable do to a token
//! that is in use (Mattermost's TestCreateUserAccessToken, TestGetUserAccessToken,
//! TestGetUserAccessTokensForUser, TestSearchUserAccessToken, TestRevokeUserAccessToken,
//! TestDisableUserAccessToken, TestEnableUserAccessToken).

use prost_types::Timestamp;
use token_service::pb;
use tonic::Code;

use crate::common::*;

const NOT_FOUND_TOKEN: &str = "app.user_access_token.get_by_user.app_error";
const NOT_FOUND_USER: &str = "app.user.missing_account.const";
const INVALID_URL: &str = "api.context.invalid_url_param.app_error";
const INVALID_BODY: &str = "api.context.invalid_body_param.app_error";
const DAY_SECS: i64 = 86_400;

fn create_request(user_id: &str, description: &str) -> pb::CreateUserAccessTokenRequest {
    pb::CreateUserAccessTokenRequest {
        user_id: user_id.to_owned(),
        description: description.to_owned(),
        expires_at: None,
    }
}

fn in_days(days: i64) -> Option<Timestamp> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Some(Timestamp {
        seconds: now + days * DAY_SECS,
        nanos: 0,
    })
}

/// Creates a token for `user_id` as `caller`, returning (token id, secret).
async fn create(client: &mut Client, caller: &Actor, user_id: &str) -> (String, String) {
    let created = client
        .create_user_access_token(authed(create_request(user_id, "test token"), &caller.token))
        .await
        .expect("create token")
        .into_inner();
    let token = created.user_access_token.expect("token metadata");
    (token.id, created.token)
}

async fn get_me(client: &mut Client, token: &str) -> Result<pb::User, tonic::Status> {
    client
        .get_me(authed(pb::GetMeRequest {}, token))
        .await
        .map(|r| r.into_inner().user.expect("user"))
}

async fn list_for(
    client: &mut Client,
    caller: &Actor,
    user_id: &str,
    page: Option<i32>,
    per_page: Option<i32>,
) -> Result<Vec<pb::UserAccessToken>, tonic::Status> {
    client
        .get_user_access_tokens_for_user(authed(
            pb::GetUserAccessTokensForUserRequest {
                user_id: user_id.to_owned(),
                page,
                per_page,
            },
            &caller.token,
        ))
        .await
        .map(|r| r.into_inner().user_access_tokens)
}

async fn list_all(
    client: &mut Client,
    caller: &Actor,
    page: Option<i32>,
    per_page: Option<i32>,
) -> Result<Vec<pb::UserAccessToken>, tonic::Status> {
    client
        .get_user_access_tokens(authed(
            pb::GetUserAccessTokensRequest { page, per_page },
            &caller.token,
        ))
        .await
        .map(|r| r.into_inner().user_access_tokens)
}

async fn search(
    client: &mut Client,
    caller: &Actor,
    term: &str,
) -> Result<Vec<String>, tonic::Status> {
    client
        .search_user_access_tokens(authed(
            pb::SearchUserAccessTokensRequest {
                term: term.to_owned(),
            },
            &caller.token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .user_access_tokens
                .into_iter()
                .map(|t| t.id)
                .collect()
        })
}

async fn get(
    client: &mut Client,
    caller: &Actor,
    token_id: &str,
) -> Result<tonic::Response<pb::GetUserAccessTokenResponse>, tonic::Status> {
    client
        .get_user_access_token(authed(
            pb::GetUserAccessTokenRequest {
                token_id: token_id.to_owned(),
            },
            &caller.token,
        ))
        .await
}

/// The sessions `actor` can see of their own (login and minted ones), by id.
async fn own_session_ids(client: &mut Client, actor: &Actor) -> Vec<String> {
    let mut ids: Vec<String> = client
        .get_sessions(authed(
            pb::GetSessionsRequest {
                user_id: "me".into(),
            },
            &actor.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    ids
}

/// Which of revoke, disable, enable to call.
#[derive(Debug, Clone, Copy)]
enum Change {
    Revoke,
    Disable,
    Enable,
}

async fn change(
    client: &mut Client,
    caller: &Actor,
    what: Change,
    token_id: &str,
) -> Result<tonic::Response<()>, tonic::Status> {
    let token_id = token_id.to_owned();
    match what {
        Change::Revoke => client
            .revoke_user_access_token(authed(
                pb::RevokeUserAccessTokenRequest { token_id },
                &caller.token,
            ))
            .await
            .map(|r| r.map(|_| ())),
        Change::Disable => client
            .disable_user_access_token(authed(
                pb::DisableUserAccessTokenRequest { token_id },
                &caller.token,
            ))
            .await
            .map(|r| r.map(|_| ())),
        Change::Enable => client
            .enable_user_access_token(authed(
                pb::EnableUserAccessTokenRequest { token_id },
                &caller.token,
            ))
            .await
            .map(|r| r.map(|_| ())),
    }
}

/// A server whose role table adds a delegated user manager and a bot manager.
async fn server_with_managers() -> TestServer {
    TestServer::start_with(|c| {
        c.roles.insert(
            "system_user_manager".into(),
            vec![
                "create_user_access_token".into(),
                "read_user_access_token".into(),
                "revoke_user_access_token".into(),
                "edit_other_users".into(),
            ],
        );
        c.roles.insert(
            "bot_keeper".into(),
            vec![
                "create_user_access_token".into(),
                "read_user_access_token".into(),
                "revoke_user_access_token".into(),
                "manage_bots".into(),
            ],
        );
        c.roles.insert(
            "bot_master".into(),
            vec![
                "create_user_access_token".into(),
                "read_user_access_token".into(),
                "revoke_user_access_token".into(),
                "manage_others_bots".into(),
            ],
        );
    })
    .await
}

/// The usual callers: two token users, a plain user, a delegated user manager, an admin.
struct Cast {
    alice: Actor,
    bob: Actor,
    plain: Actor,
    manager: Actor,
    admin: Actor,
}

async fn server_with_cast() -> (TestServer, Cast) {
    let srv = server_with_managers().await;
    let cast = Cast {
        alice: srv.token_user("alice").await,
        bob: srv.token_user("bob").await,
        plain: srv.basic_user("plain").await,
        manager: srv
            .user("manager", &["system_user", "system_user_manager"])
            .await,
        admin: srv.admin("root").await,
    };
    (srv, cast)
}

#[tokio::test]
async fn create_returns_the_secret_once_and_it_authenticates_as_the_owner() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;

    let created = client
        .create_user_access_token(authed(create_request("me", "ci deploys"), &alice.token))
        .await
        .unwrap()
        .into_inner();
    let meta = created.user_access_token.clone().unwrap();
    assert_eq!(created.token.len(), 26, "a Mattermost-shaped secret");
    assert_eq!(meta.id.len(), 26);
    assert_ne!(meta.id, created.token, "the id is not the secret");
    assert_eq!(meta.user_id, alice.id);
    assert_eq!(meta.description, "ci deploys");
    assert!(meta.is_active);
    assert!(meta.expires_at.is_none(), "no expiry was asked for");
    assert!(meta.create_at.is_some());

    let me = get_me(&mut client, &created.token).await.unwrap();
    assert_eq!(me.id, alice.id);
    assert_eq!(me.username, "alice");

    // Reads carry metadata only: the proto has no field that could hold the secret, and
    // nothing the server returns afterwards contains it.
    let read = get(&mut client, &alice, &meta.id)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.user_access_token.as_ref(), Some(&meta));
    assert!(!format!("{read:?}").contains(&created.token));
    let listed = list_for(&mut client, &alice, "me", None, None)
        .await
        .unwrap();
    assert_eq!(listed, vec![meta.clone()]);
    assert!(!format!("{listed:?}").contains(&created.token));

    // Two tokens never share a secret or an id.
    let (id2, secret2) = create(&mut client, &alice, &alice.id).await;
    assert_ne!(id2, meta.id);
    assert_ne!(secret2, created.token);
    srv.stop().await;
}

#[tokio::test]
async fn create_checks_the_caller_in_mattermosts_order() {
    let (srv, cast) = server_with_cast().await;
    let Cast {
        alice,
        bob,
        plain,
        manager,
        admin,
    } = cast;
    let other_admin = srv.admin("root2").await;
    let mut client = srv.client().await;
    let mut create_as = async |caller: &Actor, user_id: &str| {
        client
            .create_user_access_token(authed(create_request(user_id, "x"), &caller.token))
            .await
    };

    // Without system_user_access_token a user may not even create their own.
    assert_denied(create_as(&plain, "me").await, "create_user_access_token");
    // Another user's needs edit_other_users.
    assert_denied(create_as(&alice, &bob.id).await, "edit_other_users");
    // A delegated manager may, except for a system admin: edit_other_users never reaches
    // one without manage_system, and Mattermost reports that as edit_other_users.
    create_as(&manager, &bob.id).await.unwrap();
    assert_denied(create_as(&manager, &admin.id).await, "edit_other_users");
    // A system admin may create for anyone, other admins included.
    create_as(&admin, &bob.id).await.unwrap();
    create_as(&admin, &other_admin.id).await.unwrap();

    // The target is loaded first: an unknown user is NOT_FOUND even for a caller that could
    // not have created anything; a malformed id is INVALID_ARGUMENT naming user_id.
    let unknown = "abcdefghijkmnopqrstuwxyz12";
    assert_error(
        create_as(&plain, unknown).await,
        Code::NotFound,
        NOT_FOUND_USER,
    );
    assert_invalid(create_as(&admin, "not-an-id").await, "user_id", INVALID_URL);

    // No, garbage or a revoked credential: UNAUTHENTICATED.
    let anonymous = client
        .create_user_access_token(tonic::Request::new(create_request("me", "x")))
        .await;
    assert_unauthenticated(anonymous);
    let garbage = client
        .create_user_access_token(authed(create_request("me", "x"), "garbage"))
        .await;
    assert_unauthenticated(garbage);

    // Refused calls wrote nothing.
    let plain_tokens = list_for(&mut client, &admin, &plain.id, None, None)
        .await
        .unwrap();
    assert!(plain_tokens.is_empty());
    let admin_tokens = list_for(&mut client, &admin, &admin.id, None, None)
        .await
        .unwrap();
    assert!(admin_tokens.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn bot_tokens_follow_the_bot_permissions() {
    let srv = server_with_managers().await;
    let keeper = srv.user("keeper", &["system_user", "bot_keeper"]).await;
    let master = srv.user("master", &["system_user", "bot_master"]).await;
    let alice = srv.token_user("alice").await;
    let own_bot = srv.bot("keepers-bot", Some(&keeper)).await;
    let alices_bot = srv.bot("alices-bot", Some(&alice)).await;
    let mut client = srv.client().await;

    // manage_bots reaches the caller's own bots only.
    let (own_token, own_secret) = create(&mut client, &keeper, &own_bot.id).await;
    let denied = client
        .create_user_access_token(authed(create_request(&alices_bot.id, "x"), &keeper.token))
        .await;
    assert_denied(denied, "edit_other_users");
    // manage_others_bots reaches bots owned by someone else.
    let (others_token, _) = create(&mut client, &master, &alices_bot.id).await;
    // An owner without manage_bots cannot manage their own bot's tokens.
    let denied = client
        .create_user_access_token(authed(create_request(&alices_bot.id, "x"), &alice.token))
        .await;
    assert_denied(denied, "edit_other_users");
    assert_denied(
        get(&mut client, &alice, &others_token).await,
        "edit_other_users",
    );

    // The bot token authenticates as the bot.
    let me = get_me(&mut client, &own_secret).await.unwrap();
    assert_eq!(me.id, own_bot.id);
    assert!(me.is_bot);

    // The same rule gates reads and changes.
    get(&mut client, &keeper, &own_token).await.unwrap();
    assert_denied(
        get(&mut client, &keeper, &others_token).await,
        "edit_other_users",
    );
    change(&mut client, &master, Change::Disable, &others_token)
        .await
        .unwrap();
    assert_denied(
        change(&mut client, &keeper, Change::Enable, &others_token).await,
        "edit_other_users",
    );
    change(&mut client, &keeper, Change::Revoke, &own_token)
        .await
        .unwrap();
    assert_token_refused(&mut client, &own_secret).await;
    srv.stop().await;
}

#[tokio::test]
async fn descriptions_are_required_and_at_most_255_bytes() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let mut create_with = async |description: String| {
        client
            .create_user_access_token(authed(create_request("me", &description), &alice.token))
            .await
    };

    assert_invalid(
        create_with(String::new()).await,
        "description",
        INVALID_BODY,
    );
    assert_invalid(
        create_with("a".repeat(256)).await,
        "description",
        "model.user_access_token.is_valid.description.app_error",
    );
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    assert_invalid(
        create_with("é".repeat(128)).await,
        "description",
        "model.user_access_token.is_valid.description.app_error",
    );
    let mut reader = srv.client().await;
    let listed = list_for(&mut reader, &alice, "me", None, None)
        .await
        .unwrap();
    assert!(listed.is_empty(), "refused creates wrote nothing");

    let created = create_with("a".repeat(255)).await.unwrap().into_inner();
    assert_eq!(
        created.user_access_token.unwrap().description.len(),
        255,
        "255 bytes is the limit, inclusive"
    );
    create_with("é".repeat(127)).await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn expiry_follows_the_maximum_lifetime_policy() {
    let srv = TestServer::start_with(|c| c.maximum_personal_access_token_lifetime_days = 30).await;
    let alice = srv.token_user("alice").await;
    let admin = srv.admin("root").await;
    let ownerless_bot = srv.bot("ownerless", None).await;
    let mut client = srv.client().await;
    let mut create_expiring = async |caller: &Actor, user_id: &str, expires_at| {
        client
            .create_user_access_token(authed(
                pb::CreateUserAccessTokenRequest {
                    user_id: user_id.to_owned(),
                    description: "expiring".into(),
                    expires_at,
                },
                &caller.token,
            ))
            .await
    };

    assert_invalid(
        create_expiring(&alice, "me", None).await,
        "expires_at",
        "app.user_access_token.expires_at_required.app_error",
    );
    assert_invalid(
        create_expiring(&alice, "me", in_days(-1)).await,
        "expires_at",
        "app.user_access_token.expires_at_in_past.app_error",
    );
    assert_invalid(
        create_expiring(&alice, "me", in_days(31)).await,
        "expires_at",
        "app.user_access_token.expires_at_too_far.app_error",
    );
    let ok = create_expiring(&alice, "me", in_days(29))
        .await
        .unwrap()
        .into_inner();
    let expires = ok.user_access_token.unwrap().expires_at.unwrap();
    assert_eq!(
        expires.seconds,
        in_days(29).unwrap().seconds,
        "kept as given"
    );

    // A bot without an owner is exempt from the policy, past dates included; only the token
    // model's own rule (not negative) still applies to it.
    create_expiring(&admin, &ownerless_bot.id, None)
        .await
        .unwrap();
    create_expiring(&admin, &ownerless_bot.id, in_days(365))
        .await
        .unwrap();
    create_expiring(&admin, &ownerless_bot.id, in_days(-1))
        .await
        .unwrap();
    let before_1970 = Some(Timestamp {
        seconds: -5,
        nanos: 0,
    });
    assert_invalid(
        create_expiring(&admin, &ownerless_bot.id, before_1970).await,
        "expires_at",
        "model.user_access_token.is_valid.expires_at.app_error",
    );
    // Everyone else meets the policy first, which calls a negative value "in the past": a
    // user, and a bot that has an owner.
    let owned_bot = srv.bot("owned", Some(&admin)).await;
    for target in [alice.id.as_str(), owned_bot.id.as_str()] {
        assert_invalid(
            create_expiring(&admin, target, before_1970).await,
            "expires_at",
            "app.user_access_token.expires_at_in_past.app_error",
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn an_ownerless_bot_meets_the_token_models_checks_in_mattermosts_order() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let ownerless_bot = srv.bot("ownerless", None).await;
    let mut client = srv.client().await;
    let mut create_with = async |description: String, seconds: i64| {
        client
            .create_user_access_token(authed(
                pb::CreateUserAccessTokenRequest {
                    user_id: ownerless_bot.id.clone(),
                    description,
                    expires_at: Some(Timestamp { seconds, nanos: 0 }),
                },
                &admin.token,
            ))
            .await
    };
    // Without a lifetime policy too, a negative expiry is the model's error for an exempt bot.
    assert_invalid(
        create_with("x".into(), -1).await,
        "expires_at",
        "model.user_access_token.is_valid.expires_at.app_error",
    );
    // The model checks the description before the expiry.
    assert_invalid(
        create_with("x".repeat(256), -1).await,
        "description",
        "model.user_access_token.is_valid.description.app_error",
    );
    let listed = list_for(&mut client, &admin, &ownerless_bot.id, None, None)
        .await
        .unwrap();
    assert!(listed.is_empty(), "refused creates wrote nothing");
    srv.stop().await;
}

#[tokio::test]
async fn an_expired_token_stops_authenticating() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires_ms = now_ms + 1_500;
    let created = client
        .create_user_access_token(authed(
            pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "short-lived".into(),
                expires_at: Some(Timestamp {
                    seconds: expires_ms / 1000,
                    nanos: ((expires_ms % 1000) * 1_000_000) as i32,
                }),
            },
            &alice.token,
        ))
        .await
        .unwrap()
        .into_inner();
    get_me(&mut client, &created.token).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    assert_unauthenticated(
        client
            .get_me(authed(pb::GetMeRequest {}, &created.token))
            .await,
    );
    srv.stop().await;
}

#[tokio::test]
async fn switched_off_tokens_are_unimplemented_except_for_bots() {
    let srv = TestServer::start_with(|c| c.enable_user_access_tokens = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bot = srv.bot("helper", Some(&admin)).await;
    let mut client = srv.client().await;

    let off = client
        .create_user_access_token(authed(create_request(&alice.id, "x"), &admin.token))
        .await;
    assert_error(off, Code::Unimplemented, "app.user_access_token.disabled");
    let off = client
        .create_user_access_token(authed(create_request("me", "x"), &alice.token))
        .await;
    assert_error(off, Code::Unimplemented, "app.user_access_token.disabled");

    let (_, bot_secret) = create(&mut client, &admin, &bot.id).await;
    let me = get_me(&mut client, &bot_secret).await.unwrap();
    assert_eq!(me.id, bot.id, "bot tokens keep working with the switch off");
    srv.stop().await;
}

/// Mattermost's TestUserAccessTokenDisableConfig: switching tokens off stops the user tokens
/// that already exist, used or not, while the same user's login session and bot tokens keep
/// working; introspection agrees.
#[tokio::test]
async fn switching_tokens_off_stops_existing_user_tokens_but_not_sessions_or_bot_tokens() {
    let srv = TestServer::start_with(|c| c.enable_user_access_tokens = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bot = srv.bot("helper", Some(&admin)).await;
    let (_, used) = srv.existing_pat(&alice, true).await;
    let (_, unused) = srv.existing_pat(&alice, false).await;
    let (_, bot_pat) = srv.existing_pat(&bot, true).await;
    let (_, unused_bot_pat) = srv.existing_pat(&bot, false).await;
    let mut client = srv.client().await;

    for secret in [&used, &unused] {
        assert_token_refused(&mut client, secret).await;
    }
    // Refusing a token does not revoke it: still refused on a second try (not a cache miss
    // that happened to pass).
    assert_token_refused(&mut client, &used).await;
    assert_eq!(
        get_me(&mut client, &alice.token).await.unwrap().id,
        alice.id
    );
    for secret in [&bot_pat, &unused_bot_pat] {
        assert_eq!(get_me(&mut client, secret).await.unwrap().id, bot.id);
    }

    let introspect = async |client: &mut Client, token: &str| {
        client
            .introspect_token(authed(
                pb::IntrospectTokenRequest {
                    token: token.to_owned(),
                },
                &admin.token,
            ))
            .await
            .unwrap()
            .into_inner()
    };
    for secret in [&used, &unused] {
        let answer = introspect(&mut client, secret).await;
        assert_eq!(answer, pb::IntrospectTokenResponse::default(), "inactive");
    }
    let answer = introspect(&mut client, &bot_pat).await;
    assert!(answer.active);
    assert_eq!(answer.user_id, bot.id);
    assert!(introspect(&mut client, &alice.token).await.active);
    srv.stop().await;
}

#[tokio::test]
async fn listing_pages_by_id_with_mattermosts_defaults_and_cap() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let mut ids = Vec::new();
    for _ in 0..201 {
        ids.push(create(&mut client, &admin, &alice.id).await.0);
    }
    ids.sort();
    let page_ids = |tokens: Vec<pb::UserAccessToken>| -> Vec<String> {
        tokens.into_iter().map(|t| t.id).collect()
    };

    // Default page: the first 60 by id.
    let first = list_for(&mut client, &alice, "me", None, None)
        .await
        .unwrap();
    assert_eq!(page_ids(first), ids[..60]);
    // Pages are disjoint and stable.
    let page1 = list_for(&mut client, &alice, "me", Some(1), Some(60))
        .await
        .unwrap();
    assert_eq!(page_ids(page1), ids[60..120]);
    // per_page above 200 is capped at 200.
    let capped = list_all(&mut client, &admin, Some(0), Some(1000))
        .await
        .unwrap();
    assert_eq!(page_ids(capped), ids[..200]);
    let last = list_all(&mut client, &admin, Some(1), Some(200))
        .await
        .unwrap();
    assert_eq!(page_ids(last), ids[200..]);
    // Past the end and per_page 0 are empty pages, not errors.
    let beyond = list_all(&mut client, &admin, Some(7), Some(200))
        .await
        .unwrap();
    assert!(beyond.is_empty());
    let zero = list_for(&mut client, &alice, "me", Some(0), Some(0))
        .await
        .unwrap();
    assert!(zero.is_empty());

    // Negative values are refused, naming the field.
    assert_invalid(
        list_for(&mut client, &alice, "me", Some(-1), None)
            .await
            .map(tonic::Response::new),
        "page",
        INVALID_URL,
    );
    assert_invalid(
        list_all(&mut client, &admin, None, Some(-5))
            .await
            .map(tonic::Response::new),
        "per_page",
        INVALID_URL,
    );
    srv.stop().await;
}

#[tokio::test]
async fn listing_checks_permissions() {
    let (srv, cast) = server_with_cast().await;
    let Cast {
        alice,
        bob,
        plain,
        manager,
        admin,
    } = cast;
    let mut client = srv.client().await;
    create(&mut client, &bob, "me").await;
    create(&mut client, &admin, "me").await;

    let denied = list_for(&mut client, &plain, "me", None, None).await;
    assert_denied(denied.map(tonic::Response::new), "read_user_access_token");
    let denied = list_for(&mut client, &alice, &bob.id, None, None).await;
    assert_denied(denied.map(tonic::Response::new), "edit_other_users");
    assert_eq!(
        list_for(&mut client, &manager, &bob.id, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
    let denied = list_for(&mut client, &manager, &admin.id, None, None).await;
    assert_denied(denied.map(tonic::Response::new), "edit_other_users");
    assert_eq!(
        list_for(&mut client, &admin, &bob.id, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
    // An unknown user simply has no tokens.
    let unknown = list_for(
        &mut client,
        &admin,
        "abcdefghijkmnopqrstuwxyz12",
        None,
        None,
    )
    .await
    .unwrap();
    assert!(unknown.is_empty());
    let malformed = list_for(&mut client, &admin, "bob", None, None).await;
    assert_invalid(malformed.map(tonic::Response::new), "user_id", INVALID_URL);

    // The system-wide list and search need manage_system.
    let denied = list_all(&mut client, &manager, None, None).await;
    assert_denied(denied.map(tonic::Response::new), "manage_system");
    let denied = search(&mut client, &alice, &alice.username).await;
    assert_denied(denied.map(tonic::Response::new), "manage_system");
    assert_eq!(
        list_all(&mut client, &admin, None, None)
            .await
            .unwrap()
            .len(),
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn search_matches_token_id_user_id_or_username_exactly() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let alicia = srv.token_user("alicia").await;
    let mut client = srv.client().await;
    let (a1, _) = create(&mut client, &alice, "me").await;
    let (a2, _) = create(&mut client, &alice, "me").await;
    let (b1, _) = create(&mut client, &alicia, "me").await;
    let mut alices = vec![a1.clone(), a2.clone()];
    alices.sort();

    assert_eq!(
        search(&mut client, &admin, &a1).await.unwrap(),
        vec![a1.clone()]
    );
    assert_eq!(
        search(&mut client, &admin, &alice.id).await.unwrap(),
        alices
    );
    assert_eq!(search(&mut client, &admin, "alice").await.unwrap(), alices);
    assert_eq!(
        search(&mut client, &admin, "alicia").await.unwrap(),
        vec![b1]
    );
    // Exact matching: no prefixes, no case folding, no wildcards.
    for term in ["ali", "ALICE", "ali%", "%", "_lice", &a1[..10]] {
        assert!(
            search(&mut client, &admin, term).await.unwrap().is_empty(),
            "{term:?} must not match"
        );
    }
    // Backslashes are stripped before matching, as in Mattermost.
    assert_eq!(
        search(&mut client, &admin, "al\\ice").await.unwrap(),
        alices
    );
    let empty = search(&mut client, &admin, "").await;
    assert_invalid(empty.map(tonic::Response::new), "term", INVALID_BODY);
    srv.stop().await;
}

#[tokio::test]
async fn get_checks_read_permission_before_the_lookup_and_ownership_after() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let plain = srv.basic_user("plain").await;
    let admin = srv.admin("root").await;
    let mut client = srv.client().await;
    let (token_id, _) = create(&mut client, &bob, "me").await;
    let unknown = "abcdefghijkmnopqrstuwxyz12";

    assert_denied(
        get(&mut client, &plain, unknown).await,
        "read_user_access_token",
    );
    assert_error(
        get(&mut client, &alice, unknown).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    assert_denied(
        get(&mut client, &alice, &token_id).await,
        "edit_other_users",
    );
    assert_eq!(
        get(&mut client, &admin, &token_id)
            .await
            .unwrap()
            .into_inner()
            .user_access_token
            .unwrap()
            .user_id,
        bob.id
    );
    assert_invalid(
        get(&mut client, &admin, "short").await,
        "token_id",
        INVALID_URL,
    );
    srv.stop().await;
}

#[tokio::test]
async fn revoke_ends_the_token_and_its_session_before_the_call_returns() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let (token_id, secret) = create(&mut client, &alice, "me").await;
    get_me(&mut client, &secret).await.unwrap();
    let sessions = client
        .get_sessions(authed(
            pb::GetSessionsRequest {
                user_id: "me".into(),
            },
            &alice.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(
        sessions.len(),
        2,
        "login plus the session minted for the token"
    );

    change(&mut client, &alice, Change::Revoke, &token_id)
        .await
        .unwrap();
    assert_token_refused(&mut client, &secret).await;
    assert_error(
        get(&mut client, &alice, &token_id).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    let sessions = client
        .get_sessions(authed(
            pb::GetSessionsRequest {
                user_id: "me".into(),
            },
            &alice.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1, "the minted session went with the token");
    // A second revoke finds nothing.
    assert_error(
        change(&mut client, &alice, Change::Revoke, &token_id).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    srv.stop().await;
}

#[tokio::test]
async fn disable_and_enable_toggle_the_same_secret() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let (token_id, secret) = create(&mut client, &alice, "me").await;
    let login_only = own_session_ids(&mut client, &alice).await;
    assert_eq!(login_only.len(), 1);
    get_me(&mut client, &secret).await.unwrap();
    let with_minted = own_session_ids(&mut client, &alice).await;
    assert_eq!(
        with_minted.len(),
        2,
        "login plus the session minted for the token"
    );

    change(&mut client, &alice, Change::Disable, &token_id)
        .await
        .unwrap();
    assert_eq!(
        own_session_ids(&mut client, &alice).await,
        login_only,
        "disable deleted the minted session, and only that one"
    );
    assert_token_refused(&mut client, &secret).await;
    let read = get(&mut client, &alice, &token_id)
        .await
        .unwrap()
        .into_inner();
    assert!(!read.user_access_token.unwrap().is_active);
    // Idempotent.
    change(&mut client, &alice, Change::Disable, &token_id)
        .await
        .unwrap();

    change(&mut client, &alice, Change::Enable, &token_id)
        .await
        .unwrap();
    assert_eq!(
        own_session_ids(&mut client, &alice).await,
        login_only,
        "enable mints nothing by itself"
    );
    assert_eq!(get_me(&mut client, &secret).await.unwrap().id, alice.id);
    let reminted = own_session_ids(&mut client, &alice).await;
    assert_eq!(reminted.len(), 2, "the next use mints a new session");
    assert!(
        reminted
            .iter()
            .all(|id| !with_minted.contains(id) || login_only.contains(id)),
        "not the deleted one"
    );
    let read = get(&mut client, &alice, &token_id)
        .await
        .unwrap()
        .into_inner();
    assert!(read.user_access_token.unwrap().is_active);
    change(&mut client, &alice, Change::Enable, &token_id)
        .await
        .unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn changes_check_ids_permissions_and_owners() {
    let (srv, cast) = server_with_cast().await;
    let Cast {
        alice,
        bob,
        plain,
        manager,
        admin,
    } = cast;
    let mut client = srv.client().await;
    let (bobs, bobs_secret) = create(&mut client, &bob, "me").await;
    let (admins, _) = create(&mut client, &admin, "me").await;

    for what in [Change::Revoke, Change::Disable, Change::Enable] {
        assert_invalid(
            change(&mut client, &alice, what, "").await,
            "token_id",
            INVALID_BODY,
        );
        assert_invalid(
            change(&mut client, &alice, what, "not a token id").await,
            "token_id",
            INVALID_BODY,
        );
        assert_error(
            change(&mut client, &alice, what, "abcdefghijkmnopqrstuwxyz12").await,
            Code::NotFound,
            NOT_FOUND_TOKEN,
        );
        assert_denied(
            change(&mut client, &alice, what, &bobs).await,
            "edit_other_users",
        );
        assert_denied(
            change(&mut client, &manager, what, &admins).await,
            "edit_other_users",
        );
    }
    // Revoke and disable need revoke_user_access_token; enable needs create_user_access_token.
    assert_denied(
        change(&mut client, &plain, Change::Revoke, &bobs).await,
        "revoke_user_access_token",
    );
    assert_denied(
        change(&mut client, &plain, Change::Disable, &bobs).await,
        "revoke_user_access_token",
    );
    assert_denied(
        change(&mut client, &plain, Change::Enable, &bobs).await,
        "create_user_access_token",
    );
    // Nothing above touched Bob's token.
    assert_eq!(get_me(&mut client, &bobs_secret).await.unwrap().id, bob.id);

    // A manager acts on other users' tokens, an admin on anyone's.
    change(&mut client, &manager, Change::Disable, &bobs)
        .await
        .unwrap();
    change(&mut client, &admin, Change::Enable, &bobs)
        .await
        .unwrap();
    change(&mut client, &admin, Change::Revoke, &bobs)
        .await
        .unwrap();
    assert_token_refused(&mut client, &bobs_secret).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_deactivated_owner_cannot_use_or_manage_tokens() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let (token_id, secret) = create(&mut client, &alice, "me").await;
    get_me(&mut client, &secret).await.unwrap();

    set_user_active(&mut client, &admin, &alice.id, false).await;
    assert_token_refused(&mut client, &secret).await;
    assert_unauthenticated(get(&mut client, &alice, &token_id).await);
    // The token itself is still there for an admin to see or revoke.
    get(&mut client, &admin, &token_id).await.unwrap();
    srv.stop().await;
}

/// On every backend, no column of any table holds a secret (a token's or a login session's);
/// on SQLite, no byte of any file in the data directory either (WAL and journal included).
#[tokio::test]
async fn the_secret_is_never_written_to_disk_in_plaintext() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let mut client = srv.client().await;
    let (token_id, secret) = create(&mut client, &alice, "me").await;
    // Use it, so the minted session is written too.
    get_me(&mut client, &secret).await.unwrap();

    let url = srv
        .config
        .database_url
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    // The scan finds what is stored in plaintext: the token id, in the token row and in the
    // minted session.
    let (holding_id, columns) = db::columns_containing(&url, &token_id).await;
    assert!(columns > 10, "every column was read ({columns})");
    for table in ["user_access_tokens", "sessions"] {
        assert!(
            holding_id.iter().any(|(t, _)| t == table),
            "the scan sees {table}: {holding_id:?}"
        );
    }
    for plaintext in [&secret, &alice.token] {
        let (holding, _) = db::columns_containing(&url, plaintext).await;
        assert!(holding.is_empty(), "a secret is stored in {holding:?}");
    }

    if srv.backend() == "sqlite" {
        let mut files = vec![srv.dir().to_path_buf()];
        let mut scanned = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap() {
                    files.push(entry.unwrap().path());
                }
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += 1;
            for plaintext in [&secret, &alice.token] {
                assert!(
                    !bytes
                        .windows(plaintext.len())
                        .any(|w| w == plaintext.as_bytes()),
                    "a secret found in {}",
                    path.display()
                );
            }
        }
        assert!(scanned > 0, "the database files were scanned");
    }
    srv.stop().await;
}
