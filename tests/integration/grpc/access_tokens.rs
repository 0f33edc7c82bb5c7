//! Personal access tokens over gRPC: every PAT RPC against every kind of caller, the
//! validation rules, paging, search semantics, and what revoke/disable/enable do to a token
//! that is in use (Mattermost's TestCreateUserAccessToken, TestGetUserAccessToken,
//! TestGetUserAccessTokensForUser, TestSearchUserAccessToken, TestRevokeUserAccessToken,
//! TestDisableUserAccessToken, TestEnableUserAccessToken).

use std::time::Duration;

use prost_types::Timestamp;
use token_service::pb;
use tonic::Code;

use crate::common::*;

const NOT_FOUND_TOKEN: &str = "app.user_access_token.get_by_user.app_error";
const NOT_FOUND_USER: &str = "app.user.missing_account.const";
const INVALID_URL: &str = "api.context.invalid_url_param.app_error";
const INVALID_BODY: &str = "api.context.invalid_body_param.app_error";
const DAY_SECS: i64 = 86_400;

/// `days` from the server's now, in whole seconds.
fn in_days(srv: &TestServer, days: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: srv.now() / 1000 + days * DAY_SECS,
        nanos: 0,
    })
}

/// A timestamp at `millis` (Unix milliseconds).
fn at(millis: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: millis / 1000,
        nanos: ((millis % 1000) * 1_000_000) as i32,
    })
}

/// The sessions `actor` can see of their own (login and minted ones), by id.
async fn own_session_ids(srv: &TestServer, actor: &Actor) -> Vec<String> {
    let mut ids: Vec<String> = srv
        .as_(actor)
        .sessions_of("me")
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    ids
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
    let as_alice = srv.as_(&alice);

    let created = as_alice.create_token("me", "ci deploys").await.unwrap();
    let meta = created.user_access_token.clone().unwrap();
    assert_eq!(created.token.len(), 26, "a Mattermost-shaped secret");
    assert_eq!(meta.id.len(), 26);
    assert_ne!(meta.id, created.token, "the id is not the secret");
    assert_eq!(meta.user_id, alice.id);
    assert_eq!(meta.description, "ci deploys");
    assert!(meta.is_active);
    assert!(meta.expires_at.is_none(), "no expiry was asked for");
    assert!(meta.create_at.is_some());

    let me = srv.as_(&created.token).me().await.unwrap();
    assert_eq!(me.id, alice.id);
    assert_eq!(me.username, "alice");

    // Reads carry metadata only: the proto has no field that could hold the secret, and
    // nothing the server returns afterwards contains it.
    let read = as_alice.get_token(&meta.id).await.unwrap();
    assert_eq!(read.user_access_token.as_ref(), Some(&meta));
    assert!(!format!("{read:?}").contains(&created.token));
    let listed = as_alice
        .list_tokens_for("me")
        .await
        .unwrap()
        .user_access_tokens;
    assert_eq!(listed, vec![meta.clone()]);
    assert!(!format!("{listed:?}").contains(&created.token));

    // Two tokens never share a secret or an id.
    let (id2, secret2) = as_alice.new_token(&alice.id).await;
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
    let create_as =
        async |caller: &Actor, user_id: &str| srv.as_(caller).create_token(user_id, "x").await;

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
    let anonymous = srv.anonymous().create_token("me", "x").await;
    assert_unauthenticated(anonymous);
    let garbage = srv.as_("garbage").create_token("me", "x").await;
    assert_unauthenticated(garbage);

    // Refused calls wrote nothing.
    let as_admin = srv.as_(&admin);
    let plain_tokens = as_admin.list_tokens_for(&plain.id).await.unwrap();
    assert!(plain_tokens.user_access_tokens.is_empty());
    let admin_tokens = as_admin.list_tokens_for(&admin.id).await.unwrap();
    assert!(admin_tokens.user_access_tokens.is_empty());
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
    let (as_keeper, as_master, as_alice) = (srv.as_(&keeper), srv.as_(&master), srv.as_(&alice));

    // manage_bots reaches the caller's own bots only.
    let (own_token, own_secret) = as_keeper.new_token(&own_bot.id).await;
    let denied = as_keeper.create_token(&alices_bot.id, "x").await;
    assert_denied(denied, "edit_other_users");
    // manage_others_bots reaches bots owned by someone else.
    let (others_token, _) = as_master.new_token(&alices_bot.id).await;
    // An owner without manage_bots cannot manage their own bot's tokens.
    let denied = as_alice.create_token(&alices_bot.id, "x").await;
    assert_denied(denied, "edit_other_users");
    assert_denied(as_alice.get_token(&others_token).await, "edit_other_users");

    // The bot token authenticates as the bot.
    let me = srv.as_(&own_secret).me().await.unwrap();
    assert_eq!(me.id, own_bot.id);
    assert!(me.is_bot);

    // The same rule gates reads and changes.
    as_keeper.get_token(&own_token).await.unwrap();
    assert_denied(as_keeper.get_token(&others_token).await, "edit_other_users");
    as_master.disable_token(&others_token).await.unwrap();
    assert_denied(
        as_keeper.enable_token(&others_token).await,
        "edit_other_users",
    );
    as_keeper.revoke_token(&own_token).await.unwrap();
    assert_token_refused(&srv, &own_secret).await;
    srv.stop().await;
}

#[tokio::test]
async fn descriptions_are_required_and_at_most_255_bytes() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let create_with = async |description: String| as_alice.create_token("me", &description).await;

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
    let listed = as_alice.list_tokens_for("me").await.unwrap();
    assert!(
        listed.user_access_tokens.is_empty(),
        "refused creates wrote nothing"
    );

    let created = create_with("a".repeat(255)).await.unwrap();
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
    let create_expiring = async |caller: &Actor, user_id: &str, expires_at| {
        srv.as_(caller)
            .create_token_expiring(user_id, "expiring", expires_at)
            .await
    };

    assert_invalid(
        create_expiring(&alice, "me", None).await,
        "expires_at",
        "app.user_access_token.expires_at_required.app_error",
    );
    assert_invalid(
        create_expiring(&alice, "me", in_days(&srv, -1)).await,
        "expires_at",
        "app.user_access_token.expires_at_in_past.app_error",
    );
    assert_invalid(
        create_expiring(&alice, "me", in_days(&srv, 31)).await,
        "expires_at",
        "app.user_access_token.expires_at_too_far.app_error",
    );
    let ok = create_expiring(&alice, "me", in_days(&srv, 29))
        .await
        .unwrap();
    let expires = ok.user_access_token.unwrap().expires_at.unwrap();
    assert_eq!(
        expires.seconds,
        in_days(&srv, 29).unwrap().seconds,
        "kept as given"
    );

    // A bot without an owner is exempt from the policy, past dates included; only the token
    // model's own rule (not negative) still applies to it.
    create_expiring(&admin, &ownerless_bot.id, None)
        .await
        .unwrap();
    create_expiring(&admin, &ownerless_bot.id, in_days(&srv, 365))
        .await
        .unwrap();
    create_expiring(&admin, &ownerless_bot.id, in_days(&srv, -1))
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
    let as_admin = srv.as_(&admin);
    let create_with = async |description: String, seconds: i64| {
        let expires_at = Some(Timestamp { seconds, nanos: 0 });
        as_admin
            .create_token_expiring(&ownerless_bot.id, &description, expires_at)
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
    let listed = as_admin.list_tokens_for(&ownerless_bot.id).await.unwrap();
    assert!(
        listed.user_access_tokens.is_empty(),
        "refused creates wrote nothing"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_expired_token_stops_authenticating() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let created = srv
        .as_(&alice)
        .create_token_expiring("me", "short-lived", at(srv.now() + 1_500))
        .await
        .unwrap();
    srv.as_(&created.token).me().await.unwrap();
    srv.advance(Duration::from_millis(2_000));
    assert_unauthenticated(srv.as_(&created.token).get_me().await);
    srv.stop().await;
}

/// Expiry is judged by the server's clock, not by the wall clock: a token expiring a minute
/// from now works (from the cache too) until the clock passes that minute, and no sooner.
#[tokio::test]
async fn a_token_expires_when_the_servers_clock_passes_its_expiry() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let admin = srv.admin("root").await;
    let expires_at = srv.now() + 60_000;
    let created = srv
        .as_(&alice)
        .create_token_expiring("me", "a minute", at(expires_at))
        .await
        .unwrap();
    let as_token = srv.as_(&created.token);
    for _ in 0..2 {
        assert_eq!(as_token.me().await.unwrap().id, alice.id);
    }
    srv.advance(Duration::from_secs(59));
    assert_eq!(
        as_token.me().await.unwrap().id,
        alice.id,
        "a second before its expiry"
    );
    assert!(
        srv.as_(&admin)
            .introspect(&created.token)
            .await
            .unwrap()
            .active
    );

    srv.advance(Duration::from_secs(2));
    assert!(srv.now() > expires_at);
    assert_unauthenticated(as_token.get_me().await);
    let answer = srv.as_(&admin).introspect(&created.token).await.unwrap();
    assert_eq!(answer, pb::IntrospectTokenResponse::default(), "inactive");
    srv.stop().await;
}

#[tokio::test]
async fn switched_off_tokens_are_unimplemented_except_for_bots() {
    let srv = TestServer::start_with(|c| c.enable_user_access_tokens = false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bot = srv.bot("helper", Some(&admin)).await;

    let off = srv.as_(&admin).create_token(&alice.id, "x").await;
    assert_error(off, Code::Unimplemented, "app.user_access_token.disabled");
    let off = srv.as_(&alice).create_token("me", "x").await;
    assert_error(off, Code::Unimplemented, "app.user_access_token.disabled");

    let (_, bot_secret) = srv.as_(&admin).new_token(&bot.id).await;
    let me = srv.as_(&bot_secret).me().await.unwrap();
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

    for secret in [&used, &unused] {
        assert_token_refused(&srv, secret).await;
    }
    // Refusing a token does not revoke it: still refused on a second try (not a cache miss
    // that happened to pass).
    assert_token_refused(&srv, &used).await;
    assert_eq!(srv.as_(&alice).me().await.unwrap().id, alice.id);
    for secret in [&bot_pat, &unused_bot_pat] {
        assert_eq!(srv.as_(secret).me().await.unwrap().id, bot.id);
    }

    let introspect = async |token: &str| srv.as_(&admin).introspect(token).await.unwrap();
    for secret in [&used, &unused] {
        let answer = introspect(secret).await;
        assert_eq!(answer, pb::IntrospectTokenResponse::default(), "inactive");
    }
    let answer = introspect(&bot_pat).await;
    assert!(answer.active);
    assert_eq!(answer.user_id, bot.id);
    assert!(introspect(&alice.token).await.active);
    srv.stop().await;
}

#[tokio::test]
async fn listing_pages_by_id_with_mattermosts_defaults_and_cap() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (as_admin, as_alice) = (srv.as_(&admin), srv.as_(&alice));
    let mut ids = Vec::new();
    for _ in 0..201 {
        ids.push(as_admin.new_token(&alice.id).await.0);
    }
    ids.sort();
    let page_ids = |tokens: Vec<pb::UserAccessToken>| -> Vec<String> {
        tokens.into_iter().map(|t| t.id).collect()
    };
    let alices_page = async |page, per_page| {
        as_alice
            .list_tokens_for_page("me", page, per_page)
            .await
            .map(|r| r.user_access_tokens)
    };
    let all_page = async |page, per_page| {
        as_admin
            .list_all_tokens(page, per_page)
            .await
            .map(|r| r.user_access_tokens)
    };

    // Default page: the first 60 by id.
    let first = alices_page(None, None).await.unwrap();
    assert_eq!(page_ids(first), ids[..60]);
    // Pages are disjoint and stable.
    let page1 = alices_page(Some(1), Some(60)).await.unwrap();
    assert_eq!(page_ids(page1), ids[60..120]);
    // per_page above 200 is capped at 200.
    let capped = all_page(Some(0), Some(1000)).await.unwrap();
    assert_eq!(page_ids(capped), ids[..200]);
    let last = all_page(Some(1), Some(200)).await.unwrap();
    assert_eq!(page_ids(last), ids[200..]);
    // Past the end and per_page 0 are empty pages, not errors.
    let beyond = all_page(Some(7), Some(200)).await.unwrap();
    assert!(beyond.is_empty());
    let zero = alices_page(Some(0), Some(0)).await.unwrap();
    assert!(zero.is_empty());

    // Negative values are refused, naming the field.
    assert_invalid(alices_page(Some(-1), None).await, "page", INVALID_URL);
    assert_invalid(all_page(None, Some(-5)).await, "per_page", INVALID_URL);
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
    srv.as_(&bob).new_token("me").await;
    srv.as_(&admin).new_token("me").await;
    let list_for = async |caller: &Actor, user_id: &str| {
        srv.as_(caller)
            .list_tokens_for(user_id)
            .await
            .map(|r| r.user_access_tokens)
    };

    let denied = list_for(&plain, "me").await;
    assert_denied(denied, "read_user_access_token");
    let denied = list_for(&alice, &bob.id).await;
    assert_denied(denied, "edit_other_users");
    assert_eq!(list_for(&manager, &bob.id).await.unwrap().len(), 1);
    let denied = list_for(&manager, &admin.id).await;
    assert_denied(denied, "edit_other_users");
    assert_eq!(list_for(&admin, &bob.id).await.unwrap().len(), 1);
    // An unknown user simply has no tokens.
    let unknown = list_for(&admin, "abcdefghijkmnopqrstuwxyz12")
        .await
        .unwrap();
    assert!(unknown.is_empty());
    let malformed = list_for(&admin, "bob").await;
    assert_invalid(malformed, "user_id", INVALID_URL);

    // The system-wide list and search need manage_system.
    let denied = srv.as_(&manager).list_all_tokens(None, None).await;
    assert_denied(denied, "manage_system");
    let denied = srv.as_(&alice).search_tokens(&alice.username).await;
    assert_denied(denied, "manage_system");
    let all = srv.as_(&admin).list_all_tokens(None, None).await.unwrap();
    assert_eq!(all.user_access_tokens.len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn search_matches_token_id_user_id_or_username_exactly() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let alicia = srv.token_user("alicia").await;
    let (a1, _) = srv.as_(&alice).new_token("me").await;
    let (a2, _) = srv.as_(&alice).new_token("me").await;
    let (b1, _) = srv.as_(&alicia).new_token("me").await;
    let mut alices = vec![a1.clone(), a2.clone()];
    alices.sort();
    let search = async |term: &str| {
        srv.as_(&admin).search_tokens(term).await.map(|r| {
            r.user_access_tokens
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        })
    };

    assert_eq!(search(&a1).await.unwrap(), vec![a1.clone()]);
    assert_eq!(search(&alice.id).await.unwrap(), alices);
    assert_eq!(search("alice").await.unwrap(), alices);
    assert_eq!(search("alicia").await.unwrap(), vec![b1]);
    // Exact matching: no prefixes, no case folding, no wildcards.
    for term in ["ali", "ALICE", "ali%", "%", "_lice", &a1[..10]] {
        assert!(
            search(term).await.unwrap().is_empty(),
            "{term:?} must not match"
        );
    }
    // Backslashes are stripped before matching, as in Mattermost.
    assert_eq!(search("al\\ice").await.unwrap(), alices);
    let empty = search("").await;
    assert_invalid(empty, "term", INVALID_BODY);
    srv.stop().await;
}

#[tokio::test]
async fn get_checks_read_permission_before_the_lookup_and_ownership_after() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let plain = srv.basic_user("plain").await;
    let admin = srv.admin("root").await;
    let (token_id, _) = srv.as_(&bob).new_token("me").await;
    let unknown = "abcdefghijkmnopqrstuwxyz12";

    assert_denied(
        srv.as_(&plain).get_token(unknown).await,
        "read_user_access_token",
    );
    assert_error(
        srv.as_(&alice).get_token(unknown).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    assert_denied(
        srv.as_(&alice).get_token(&token_id).await,
        "edit_other_users",
    );
    let read = srv.as_(&admin).get_token(&token_id).await.unwrap();
    assert_eq!(read.user_access_token.unwrap().user_id, bob.id);
    assert_invalid(
        srv.as_(&admin).get_token("short").await,
        "token_id",
        INVALID_URL,
    );
    srv.stop().await;
}

#[tokio::test]
async fn revoke_ends_the_token_and_its_session_before_the_call_returns() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (token_id, secret) = as_alice.new_token("me").await;
    srv.as_(&secret).me().await.unwrap();
    let sessions = as_alice.sessions_of("me").await;
    assert_eq!(
        sessions.len(),
        2,
        "login plus the session minted for the token"
    );

    as_alice.revoke_token(&token_id).await.unwrap();
    assert_token_refused(&srv, &secret).await;
    assert_error(
        as_alice.get_token(&token_id).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    let sessions = as_alice.sessions_of("me").await;
    assert_eq!(sessions.len(), 1, "the minted session went with the token");
    // A second revoke finds nothing.
    assert_error(
        as_alice.revoke_token(&token_id).await,
        Code::NotFound,
        NOT_FOUND_TOKEN,
    );
    srv.stop().await;
}

#[tokio::test]
async fn disable_and_enable_toggle_the_same_secret() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (token_id, secret) = as_alice.new_token("me").await;
    let login_only = own_session_ids(&srv, &alice).await;
    assert_eq!(login_only.len(), 1);
    srv.as_(&secret).me().await.unwrap();
    let with_minted = own_session_ids(&srv, &alice).await;
    assert_eq!(
        with_minted.len(),
        2,
        "login plus the session minted for the token"
    );

    as_alice.disable_token(&token_id).await.unwrap();
    assert_eq!(
        own_session_ids(&srv, &alice).await,
        login_only,
        "disable deleted the minted session, and only that one"
    );
    assert_token_refused(&srv, &secret).await;
    let read = as_alice.get_token(&token_id).await.unwrap();
    assert!(!read.user_access_token.unwrap().is_active);
    // Idempotent.
    as_alice.disable_token(&token_id).await.unwrap();

    as_alice.enable_token(&token_id).await.unwrap();
    assert_eq!(
        own_session_ids(&srv, &alice).await,
        login_only,
        "enable mints nothing by itself"
    );
    assert_eq!(srv.as_(&secret).me().await.unwrap().id, alice.id);
    let reminted = own_session_ids(&srv, &alice).await;
    assert_eq!(reminted.len(), 2, "the next use mints a new session");
    assert!(
        reminted
            .iter()
            .all(|id| !with_minted.contains(id) || login_only.contains(id)),
        "not the deleted one"
    );
    let read = as_alice.get_token(&token_id).await.unwrap();
    assert!(read.user_access_token.unwrap().is_active);
    as_alice.enable_token(&token_id).await.unwrap();
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
    let (bobs, bobs_secret) = srv.as_(&bob).new_token("me").await;
    let (admins, _) = srv.as_(&admin).new_token("me").await;
    let (as_alice, as_plain) = (srv.as_(&alice), srv.as_(&plain));
    // Bob's token in use: a session is minted from it.
    srv.as_(&bobs_secret).me().await.unwrap();
    let bobs_sessions = own_session_ids(&srv, &bob).await;
    assert_eq!(bobs_sessions.len(), 2, "login plus the minted session");

    for what in [
        TokenChange::Revoke,
        TokenChange::Disable,
        TokenChange::Enable,
    ] {
        assert_invalid(
            as_alice.change_token(what, "").await,
            "token_id",
            INVALID_BODY,
        );
        assert_invalid(
            as_alice.change_token(what, "not a token id").await,
            "token_id",
            INVALID_BODY,
        );
        assert_error(
            as_alice
                .change_token(what, "abcdefghijkmnopqrstuwxyz12")
                .await,
            Code::NotFound,
            NOT_FOUND_TOKEN,
        );
        assert_denied(as_alice.change_token(what, &bobs).await, "edit_other_users");
        assert_denied(
            srv.as_(&manager).change_token(what, &admins).await,
            "edit_other_users",
        );
    }
    // Revoke and disable need revoke_user_access_token; enable needs create_user_access_token.
    assert_denied(
        as_plain.revoke_token(&bobs).await,
        "revoke_user_access_token",
    );
    assert_denied(
        as_plain.disable_token(&bobs).await,
        "revoke_user_access_token",
    );
    assert_denied(
        as_plain.enable_token(&bobs).await,
        "create_user_access_token",
    );
    // Nothing above touched Bob's token or the session minted from it.
    assert_eq!(own_session_ids(&srv, &bob).await, bobs_sessions);
    assert_eq!(srv.as_(&bobs_secret).me().await.unwrap().id, bob.id);
    assert!(
        srv.as_(&bob)
            .get_token(&bobs)
            .await
            .unwrap()
            .user_access_token
            .unwrap()
            .is_active
    );

    // A manager acts on other users' tokens, an admin on anyone's.
    srv.as_(&manager).disable_token(&bobs).await.unwrap();
    srv.as_(&admin).enable_token(&bobs).await.unwrap();
    srv.as_(&admin).revoke_token(&bobs).await.unwrap();
    assert_token_refused(&srv, &bobs_secret).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_deactivated_owner_cannot_use_or_manage_tokens() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    srv.as_(&secret).me().await.unwrap();

    srv.as_(&admin).set_active(&alice.id, false).await;
    assert_token_refused(&srv, &secret).await;
    assert_unauthenticated(srv.as_(&alice).get_token(&token_id).await);
    // The token itself is still there for an admin to see or revoke.
    srv.as_(&admin).get_token(&token_id).await.unwrap();
    srv.stop().await;
}

/// On every backend, no column of any table holds a secret (a token's, before and after its
/// rotation, a login session's, a slash command's), the lifecycle log included, which names them by HMAC only; on SQLite,
/// no byte of any file in the data directory either (WAL and journal included).
#[tokio::test]
async fn the_secret_is_never_written_to_disk_in_plaintext() {
    let srv = TestServer::start_with(|c| {
        c.webhooks.allow_private_addresses = true;
        c.access_tokens.max_rotation_grace_period = token_service::config::Span(60_000);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    // Use it, so the minted session is written too.
    srv.as_(&secret).me().await.unwrap();
    // Rotate it with a grace period: the replaced secret is kept (by digest) and its session
    // stays; the new secret's first use mints another.
    let new_secret = srv
        .as_(&alice)
        .rotate_token(&token_id, None, Some(std::time::Duration::from_secs(60)))
        .await
        .unwrap()
        .token;
    srv.as_(&new_secret).me().await.unwrap();
    // A session and a slash command made over gRPC: their records name their tokens.
    let login = srv.as_(&admin).login(&alice.id).await.token;
    let team = token_service::domain::ids::new_id();
    let command_token = srv
        .as_(&admin)
        .create_command(token_service::pb::CreateCommandRequest {
            team_id: team,
            trigger: "deploy".into(),
            url: "https://example.com/hook".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .token;
    // A webhook signing secret, and the one that replaces it (the first kept for the
    // rotation's grace period): stored encrypted. Both the whole secret and its key part
    // (the base64 after whsec_) must be absent.
    let receiver = Receiver::start().await;
    let hook = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap();
    let hook_id = hook.webhook.unwrap().id;
    let rotated = srv
        .as_(&admin)
        .rotate_webhook_secret(&hook_id, None)
        .await
        .unwrap();
    let mut webhook_secrets = Vec::new();
    for whsec in [hook.secret, rotated.secret] {
        let key = whsec.strip_prefix("whsec_").unwrap().to_owned();
        webhook_secrets.push(whsec);
        webhook_secrets.push(key);
    }

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
    for table in [
        "user_access_tokens",
        "sessions",
        "lifecycle_log",
        "access_token_superseded_secrets",
    ] {
        assert!(
            holding_id.iter().any(|(t, _)| t == table),
            "the scan sees {table}: {holding_id:?}"
        );
    }
    let (holding_hook, _) = db::columns_containing(&url, &hook_id).await;
    assert!(
        holding_hook.iter().any(|(t, _)| t == "webhook_endpoints"),
        "the scan sees webhook_endpoints: {holding_hook:?}"
    );
    let plaintexts: Vec<&String> = [&secret, &new_secret, &alice.token, &login, &command_token]
        .into_iter()
        .chain(&webhook_secrets)
        .collect();
    for plaintext in &plaintexts {
        let (holding, _) = db::columns_containing(&url, plaintext).await;
        assert!(holding.is_empty(), "a secret is stored in {holding:?}");
    }
    // The lifecycle log names the token, the session and the command by their HMACs, and
    // only there (the fixtures' sessions too: they were made by the operator).
    for plaintext in [&secret, &new_secret, &login, &command_token, &alice.token] {
        let hmac = srv
            .as_(&admin)
            .compute_audit_hash(plaintext)
            .await
            .unwrap()
            .credential_hmac;
        let (holding, _) = db::columns_containing(&url, &hmac).await;
        assert_eq!(
            holding,
            [("lifecycle_log".to_owned(), "credential_hmac".to_owned())]
        );
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
            if !path.is_file() {
                // The local operator socket: no content to read.
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            scanned += 1;
            for plaintext in &plaintexts {
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
