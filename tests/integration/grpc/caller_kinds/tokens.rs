//! Every personal access token RPC, and IntrospectToken, for every kind of caller: one table
//! per kind. [`answers`] calls all ten RPCs with one credential against one target user
//! (fresh tokens of that user for the calls that change one) and returns what each answered;
//! it also checks that an accepted call took effect and a refused one changed nothing.
//!
//! Outcomes read: `ok`; `unauthenticated`; `denied: <permission named>`;
//! `<code>: <error id>` for anything else; IntrospectToken's answer is `active` or `inactive`.

use token_service::domain::{
    access_tokens::{self, TokenRef},
    audit::{self, AuditRequest},
    caller::Caller,
};

use super::{OK, UNAUTHENTICATED, describe, outcome};
use crate::common::*;

/// The RPCs, in the order [`answers`] calls them.
const RPCS: [&str; 10] = [
    "CreateUserAccessToken",
    "GetUserAccessTokensForUser",
    "GetUserAccessTokens",
    "SearchUserAccessTokens",
    "GetUserAccessToken",
    "DisableUserAccessToken",
    "EnableUserAccessToken",
    "RevokeUserAccessToken",
    "RotateUserAccessToken",
    "IntrospectToken",
];

const ACTIVE: &str = "active";
const INACTIVE: &str = "inactive";
const DENIED_EDIT_OTHER_USERS: &str = "denied: edit_other_users";
const DENIED_MANAGE_SYSTEM: &str = "denied: manage_system";
const DENIED_INTROSPECT: &str = "denied: introspect_token";
const SWITCHED_OFF: &str = "Unimplemented: app.user_access_token.disabled";

/// What a caller may do on the token RPCs, in [`RPCS`] order.
type Row = [&'static str; 10];

/// Refused before anything else: the credential does not authenticate.
const NOBODY: Row = [UNAUTHENTICATED; 10];
/// An ordinary token user on their own tokens (or a delegated manager on someone else's):
/// everything but the system-wide list and search, and introspection.
const OWNER: Row = [
    OK,
    OK,
    DENIED_MANAGE_SYSTEM,
    DENIED_MANAGE_SYSTEM,
    OK,
    OK,
    OK,
    OK,
    OK,
    DENIED_INTROSPECT,
];
/// A token user on someone else's tokens, without the right to act on that user.
const STRANGER: Row = [
    DENIED_EDIT_OTHER_USERS,
    DENIED_EDIT_OTHER_USERS,
    DENIED_MANAGE_SYSTEM,
    DENIED_MANAGE_SYSTEM,
    DENIED_EDIT_OTHER_USERS,
    DENIED_EDIT_OTHER_USERS,
    DENIED_EDIT_OTHER_USERS,
    DENIED_EDIT_OTHER_USERS,
    DENIED_EDIT_OTHER_USERS,
    DENIED_INTROSPECT,
];
/// A system admin: everything.
const ADMIN: Row = [OK, OK, OK, OK, OK, OK, OK, OK, OK, ACTIVE];

/// A token of `owner`'s, made by the operator; disabled when asked.
async fn fresh_token(srv: &TestServer, owner: &Actor, disabled: bool) -> String {
    let (id, _) = srv.existing_pat(owner, false).await;
    if disabled {
        access_tokens::disable_user_access_token(
            &srv.ctx,
            &Caller::Local,
            TokenRef::parse(&id).unwrap(),
        )
        .await
        .unwrap();
    }
    id
}

/// The token as the operator sees it (`None` once revoked).
async fn stored(srv: &TestServer, id: &str) -> Option<bool> {
    access_tokens::get_user_access_token(&srv.ctx, &Caller::Local, id)
        .await
        .ok()
        .map(|t| t.is_active)
}

/// How many rotations of token `id` the lifecycle log holds.
async fn rotations_of(srv: &TestServer, id: &str) -> usize {
    let request = AuditRequest {
        actions: vec!["access_token.rotated".into()],
        token_id: id.to_owned(),
        ..AuditRequest::default()
    };
    audit::list_audit_records(&srv.ctx, &Caller::Local, &request)
        .await
        .unwrap()
        .records
        .len()
}

async fn token_count(srv: &TestServer, owner: &Actor) -> usize {
    srv.ctx
        .store()
        .search_access_tokens(&owner.id)
        .await
        .unwrap()
        .len()
}

/// Calls every RPC with `credential` on `target`'s tokens, and IntrospectToken on
/// `introspected`; returns (rpc, outcome) pairs and checks each call's effect.
async fn answers(
    srv: &TestServer,
    credential: Option<&str>,
    target: &Actor,
    introspected: &str,
) -> Vec<(&'static str, String)> {
    let caller = ActorClient::new(srv.shared_client(), credential);
    let mut out = Vec::new();

    let before = token_count(srv, target).await;
    let created = caller.create_token(&target.id, "caller kinds").await;
    let expected_count = before + usize::from(created.is_ok());
    if let Ok(created) = &created {
        let token = created.user_access_token.as_ref().unwrap();
        assert_eq!(token.user_id, target.id, "created for the target");
    }
    assert_eq!(
        token_count(srv, target).await,
        expected_count,
        "create wrote a token exactly when it succeeded"
    );
    out.push(outcome(&created));

    let listed = caller.list_tokens_for(&target.id).await;
    if let Ok(listed) = &listed {
        let tokens = &listed.user_access_tokens;
        assert_eq!(tokens.len(), expected_count);
        assert!(tokens.iter().all(|t| t.user_id == target.id));
    }
    out.push(outcome(&listed));

    out.push(outcome(&caller.list_all_tokens(None, None).await));

    let found = caller.search_tokens(&target.id).await;
    if let Ok(found) = &found {
        assert_eq!(found.user_access_tokens.len(), expected_count);
    }
    out.push(outcome(&found));

    let id = fresh_token(srv, target, false).await;
    let got = caller.get_token(&id).await;
    if let Ok(got) = &got {
        assert_eq!(got.user_access_token.as_ref().unwrap().id, id);
    }
    out.push(outcome(&got));

    // Each change on a fresh token (a disabled one to enable); the stored token says whether
    // the change happened.
    for what in [
        TokenChange::Disable,
        TokenChange::Enable,
        TokenChange::Revoke,
    ] {
        let id = fresh_token(srv, target, what == TokenChange::Enable).await;
        let changed = caller.change_token(what, &id).await;
        let ok = changed.is_ok();
        let after = stored(srv, &id).await;
        match what {
            TokenChange::Disable => {
                assert_eq!(after, Some(!ok), "disabled exactly when the call succeeded");
            }
            TokenChange::Enable => {
                assert_eq!(after, Some(ok), "enabled exactly when the call succeeded");
            }
            TokenChange::Revoke => {
                assert_eq!(after.is_none(), ok, "gone exactly when the call succeeded");
            }
        }
        out.push(outcome(&changed));
    }

    // Rotation on a fresh token: the rotation is recorded exactly when the call succeeded,
    // and the answer is the same token with a new secret.
    let id = fresh_token(srv, target, false).await;
    let rotated = caller.rotate_token(&id, None, None).await;
    if let Ok(rotated) = &rotated {
        assert_eq!(rotated.user_access_token.as_ref().unwrap().id, id);
        assert_eq!(rotated.token.len(), 26);
    }
    assert_eq!(
        rotations_of(srv, &id).await,
        usize::from(rotated.is_ok()),
        "rotated exactly when the call succeeded"
    );
    out.push(outcome(&rotated));

    out.push(match &caller.introspect(introspected).await {
        Ok(answer) if answer.active => ACTIVE.to_owned(),
        Ok(_) => INACTIVE.to_owned(),
        Err(status) => describe(status),
    });

    RPCS.into_iter().zip(out).collect()
}

/// Asserts that `kind` answers as `expected`.
async fn check(
    srv: &TestServer,
    kind: &str,
    credential: Option<&str>,
    target: &Actor,
    introspected: &str,
    expected: Row,
) {
    let got = answers(srv, credential, target, introspected).await;
    let want: Vec<(&str, String)> = RPCS.into_iter().zip(expected.map(str::to_owned)).collect();
    assert_eq!(got, want, "caller kind: {kind}");
}

/// A server whose role table adds a delegated user manager and a bot keeper.
async fn server(enable_user_access_tokens: bool) -> TestServer {
    let token_permissions = || {
        vec![
            "create_user_access_token".to_owned(),
            "read_user_access_token".to_owned(),
            "revoke_user_access_token".to_owned(),
        ]
    };
    TestServer::start_with(|c| {
        c.enable_user_access_tokens = enable_user_access_tokens;
        let mut manager = token_permissions();
        manager.push("edit_other_users".into());
        c.roles.insert("user_manager".into(), manager);
        let mut keeper = token_permissions();
        keeper.push("manage_bots".into());
        c.roles.insert("bot_keeper".into(), keeper);
    })
    .await
}

#[tokio::test]
async fn credentials_that_do_not_authenticate_are_refused_by_every_rpc() {
    let srv = server(true).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let carol = srv.token_user("carol").await;

    let (revoked_id, revoked) = srv.existing_pat(&alice, true).await;
    access_tokens::revoke_user_access_token(
        &srv.ctx,
        &Caller::Local,
        TokenRef::parse(&revoked_id).unwrap(),
    )
    .await
    .unwrap();
    let (disabled_id, disabled) = srv.existing_pat(&alice, true).await;
    access_tokens::disable_user_access_token(
        &srv.ctx,
        &Caller::Local,
        TokenRef::parse(&disabled_id).unwrap(),
    )
    .await
    .unwrap();
    let (_, carols_pat) = srv.existing_pat(&carol, true).await;
    srv.as_(&admin).set_active(&carol.id, false).await;

    let kinds = [
        ("no token", None),
        ("a garbage token", Some("garbage")),
        (
            "a well-formed unknown token",
            Some("abcdefghijkmnopqrstuwxyz12"),
        ),
        ("a revoked personal access token", Some(revoked.as_str())),
        ("a disabled personal access token", Some(disabled.as_str())),
        (
            "the session of a deactivated user",
            Some(carol.token.as_str()),
        ),
        (
            "the personal access token of a deactivated user",
            Some(carols_pat.as_str()),
        ),
    ];
    for (kind, credential) in kinds {
        check(&srv, kind, credential, &alice, &alice.token, NOBODY).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn users_manage_their_own_tokens_with_a_session_or_a_token_and_need_the_token_role() {
    let srv = server(true).await;
    let alice = srv.token_user("alice").await;
    let plain = srv.basic_user("plain").await;
    let (_, alices_pat) = srv.existing_pat(&alice, false).await;

    check(
        &srv,
        "self, by session",
        Some(&alice.token),
        &alice,
        &alice.token,
        OWNER,
    )
    .await;
    check(
        &srv,
        "self, by token",
        Some(&alices_pat),
        &alice,
        &alice.token,
        OWNER,
    )
    .await;
    // Without system_user_access_token, each RPC names the permission it is gated by.
    check(
        &srv,
        "self without the token role",
        Some(&plain.token),
        &plain,
        &plain.token,
        [
            "denied: create_user_access_token",
            "denied: read_user_access_token",
            DENIED_MANAGE_SYSTEM,
            DENIED_MANAGE_SYSTEM,
            "denied: read_user_access_token",
            "denied: revoke_user_access_token",
            "denied: create_user_access_token",
            "denied: revoke_user_access_token",
            "denied: create_user_access_token",
            DENIED_INTROSPECT,
        ],
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn another_user_needs_edit_other_users_which_never_reaches_a_system_admin() {
    let srv = server(true).await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let manager = srv.user("manager", &["system_user", "user_manager"]).await;
    let admin = srv.admin("root").await;

    check(
        &srv,
        "another user without edit_other_users",
        Some(&bob.token),
        &alice,
        &alice.token,
        STRANGER,
    )
    .await;
    check(
        &srv,
        "another user with edit_other_users",
        Some(&manager.token),
        &alice,
        &alice.token,
        OWNER,
    )
    .await;
    check(
        &srv,
        "edit_other_users on a system admin",
        Some(&manager.token),
        &admin,
        &admin.token,
        STRANGER,
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_system_admin_may_call_everything_on_anyone() {
    let srv = server(true).await;
    let admin = srv.admin("root").await;
    let other_admin = srv.admin("root2").await;
    let alice = srv.token_user("alice").await;
    let bot = srv.bot("ownerless", None).await;
    let (_, admins_pat) = srv.existing_pat(&admin, false).await;

    check(
        &srv,
        "admin on a user",
        Some(&admin.token),
        &alice,
        &alice.token,
        ADMIN,
    )
    .await;
    check(
        &srv,
        "admin on another admin",
        Some(&admin.token),
        &other_admin,
        &other_admin.token,
        ADMIN,
    )
    .await;
    check(
        &srv,
        "admin on a bot",
        Some(&admin.token),
        &bot,
        &bot.token,
        ADMIN,
    )
    .await;
    check(
        &srv,
        "admin by token",
        Some(&admins_pat),
        &alice,
        &alice.token,
        ADMIN,
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_bot_owner_needs_manage_bots_and_reaches_only_their_own_bots() {
    let srv = server(true).await;
    let keeper = srv.user("keeper", &["system_user", "bot_keeper"]).await;
    let alice = srv.token_user("alice").await;
    let keepers_bot = srv.bot("keepers-bot", Some(&keeper)).await;
    let alices_bot = srv.bot("alices-bot", Some(&alice)).await;

    check(
        &srv,
        "bot owner with manage_bots",
        Some(&keeper.token),
        &keepers_bot,
        &keepers_bot.token,
        OWNER,
    )
    .await;
    // Bots never fall back to edit_other_users: owning one is not enough without manage_bots,
    // and manage_bots does not reach somebody else's.
    check(
        &srv,
        "bot owner without manage_bots",
        Some(&alice.token),
        &alices_bot,
        &alices_bot.token,
        STRANGER,
    )
    .await;
    check(
        &srv,
        "manage_bots on another owner's bot",
        Some(&keeper.token),
        &alices_bot,
        &alices_bot.token,
        STRANGER,
    )
    .await;
    srv.stop().await;
}

/// With `enable_user_access_tokens` off, only creating and rotating a user's token answer
/// UNIMPLEMENTED;
/// every other RPC works for whoever still authenticates, user tokens no longer do, bot
/// tokens still do, and introspection reports a user's token inactive.
#[tokio::test]
async fn with_tokens_switched_off_only_create_and_rotate_are_unimplemented() {
    let srv = server(false).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let keeper = srv.user("keeper", &["system_user", "bot_keeper"]).await;
    let bot = srv.bot("keepers-bot", Some(&keeper)).await;
    let (_, alices_pat) = srv.existing_pat(&alice, true).await;
    let (_, bots_pat) = srv.existing_pat(&bot, true).await;

    let mut self_off = OWNER;
    self_off[0] = SWITCHED_OFF;
    self_off[8] = SWITCHED_OFF;
    check(
        &srv,
        "self, switched off",
        Some(&alice.token),
        &alice,
        &alice.token,
        self_off,
    )
    .await;
    let mut admin_off = ADMIN;
    admin_off[0] = SWITCHED_OFF;
    admin_off[8] = SWITCHED_OFF;
    admin_off[9] = INACTIVE;
    check(
        &srv,
        "admin, switched off, introspecting a user's token",
        Some(&admin.token),
        &alice,
        &alices_pat,
        admin_off,
    )
    .await;
    // Bots are exempt: their tokens are created, and authenticate, as before.
    check(
        &srv,
        "admin on a bot, switched off",
        Some(&admin.token),
        &bot,
        &bots_pat,
        ADMIN,
    )
    .await;
    check(
        &srv,
        "bot owner, switched off",
        Some(&keeper.token),
        &bot,
        &bot.token,
        OWNER,
    )
    .await;
    check(
        &srv,
        "a user's token, switched off",
        Some(&alices_pat),
        &alice,
        &alice.token,
        NOBODY,
    )
    .await;
    // The bot's own token still authenticates it (system_user grants the bot no token
    // permissions of its own, so it is refused for want of them, not for its credential).
    check(
        &srv,
        "a bot's token, switched off",
        Some(&bots_pat),
        &bot,
        &bot.token,
        [
            "denied: create_user_access_token",
            "denied: read_user_access_token",
            DENIED_MANAGE_SYSTEM,
            DENIED_MANAGE_SYSTEM,
            "denied: read_user_access_token",
            "denied: revoke_user_access_token",
            "denied: create_user_access_token",
            "denied: revoke_user_access_token",
            "denied: create_user_access_token",
            DENIED_INTROSPECT,
        ],
    )
    .await;
    srv.stop().await;
}

/// A personal access token of `owner`'s narrowed to `scopes`, made with `owner`'s session.
pub(crate) async fn scoped_pat(srv: &TestServer, owner: &Actor, scopes: &[&str]) -> String {
    srv.as_(owner)
        .create_token_with(token_service::pb::CreateUserAccessTokenRequest {
            user_id: "me".into(),
            description: "scoped".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .expect("create a scoped token")
        .token
}

const DENIED_CREATE: &str = "denied: create_user_access_token";
const DENIED_READ: &str = "denied: read_user_access_token";
const DENIED_REVOKE: &str = "denied: revoke_user_access_token";

#[tokio::test]
async fn a_scoped_token_does_only_what_its_scopes_and_its_owner_allow() {
    let srv = server(true).await;
    let alice = srv.token_user("alice").await;
    let admin = srv.admin("root").await;
    let other_admin = srv.admin("root2").await;

    // Read-only: list and read, nothing that changes or reveals a secret.
    let read: Row = [
        DENIED_CREATE,
        OK,
        DENIED_MANAGE_SYSTEM,
        DENIED_MANAGE_SYSTEM,
        OK,
        DENIED_REVOKE,
        DENIED_CREATE,
        DENIED_REVOKE,
        DENIED_CREATE,
        DENIED_INTROSPECT,
    ];
    // The token operations: all of them, except rotating a token wider than itself (an
    // unscoped token: the rotation would hand it an unscoped secret).
    let tokens: Row = [
        OK,
        OK,
        DENIED_MANAGE_SYSTEM,
        DENIED_MANAGE_SYSTEM,
        OK,
        OK,
        OK,
        OK,
        DENIED_CREATE,
        DENIED_INTROSPECT,
    ];
    // A scope the owner's roles do not back grants nothing.
    let nothing: Row = [
        DENIED_CREATE,
        DENIED_READ,
        DENIED_MANAGE_SYSTEM,
        DENIED_MANAGE_SYSTEM,
        DENIED_READ,
        DENIED_REVOKE,
        DENIED_CREATE,
        DENIED_REVOKE,
        DENIED_CREATE,
        DENIED_INTROSPECT,
    ];
    let mut introspect_only = nothing;
    introspect_only[9] = ACTIVE;
    // Reading another user's tokens is acting on that user (edit_other_users, which only
    // `tokens` lists), so `read` reads the owner's own.
    let mut read_and_introspect_on_another = read;
    read_and_introspect_on_another[1] = DENIED_EDIT_OTHER_USERS;
    read_and_introspect_on_another[4] = DENIED_EDIT_OTHER_USERS;
    read_and_introspect_on_another[9] = ACTIVE;

    let cases: [(&str, &Actor, &[&str], &Actor, Row); 7] = [
        ("self, read scope", &alice, &["read"], &alice, read),
        ("self, tokens scope", &alice, &["tokens"], &alice, tokens),
        (
            "self, introspect without the permission",
            &alice,
            &["introspect"],
            &alice,
            nothing,
        ),
        (
            "admin, introspect scope",
            &admin,
            &["introspect"],
            &alice,
            introspect_only,
        ),
        (
            "admin, tokens scope, on a user",
            &admin,
            &["tokens"],
            &alice,
            tokens,
        ),
        // manage_system is in no scope: another admin is out of reach.
        (
            "admin, tokens scope, on an admin",
            &admin,
            &["tokens"],
            &other_admin,
            STRANGER,
        ),
        (
            "admin, read and introspect",
            &admin,
            &["read", "introspect"],
            &alice,
            read_and_introspect_on_another,
        ),
    ];
    for (kind, owner, scopes, target, row) in cases {
        let pat = scoped_pat(&srv, owner, scopes).await;
        check(&srv, kind, Some(&pat), target, &target.token, row).await;
    }
    srv.stop().await;
}
