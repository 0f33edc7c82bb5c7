//! Scoped personal access tokens over gRPC: scopes given at creation (unknown ones refused
//! naming the field, nothing created), shown on the token and in IntrospectToken's answer,
//! never widened by the tokens a scoped or bound token creates, and enforced where
//! Mattermost asks no permission (a user's own sessions). The RPC-by-RPC table is in
//! `caller_kinds::tokens`.

use token_service::pb;
use tonic::Code;

use crate::common::*;
use crate::grpc::bound_tokens::own_tokens;
use crate::grpc::caller_kinds::scoped_pat;

async fn create(
    srv: &TestServer,
    caller: &str,
    scopes: &[&str],
    bound: &[&str],
) -> Reply<pb::CreateUserAccessTokenResponse> {
    srv.as_(caller)
        .create_token_with(pb::CreateUserAccessTokenRequest {
            user_id: "me".into(),
            description: "scoped".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            bound_cidrs: bound.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })
        .await
}

#[tokio::test]
async fn scopes_are_validated_shown_and_introspected() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let admin = srv.admin("root").await;
    for bad in [vec!["write"], vec!["read", "READ"], vec![""]] {
        assert_invalid(
            create(&srv, &alice.token, &bad, &[]).await,
            "scopes",
            "api.context.invalid_body_param.app_error",
        );
    }
    assert!(own_tokens(&srv, &alice).await.is_empty(), "nothing created");

    let created = create(&srv, &alice.token, &["tokens", "read", "read"], &[])
        .await
        .unwrap();
    let token = created.user_access_token.unwrap();
    assert_eq!(
        token.scopes,
        ["read", "tokens"],
        "the table's order, once each"
    );
    let got = srv.as_(&alice).get_token(&token.id).await.unwrap();
    assert_eq!(got.user_access_token.unwrap().scopes, ["read", "tokens"]);
    let (plain_id, plain) = srv.as_(&alice).new_token("me").await;
    let listed = own_tokens(&srv, &alice).await;
    assert!(
        listed
            .iter()
            .find(|t| t.id == plain_id)
            .unwrap()
            .scopes
            .is_empty()
    );

    let answer = srv.as_(&admin).introspect(&created.token).await.unwrap();
    assert!(answer.active);
    assert_eq!(answer.scopes, ["read", "tokens"]);
    let answer = srv.as_(&admin).introspect(&plain).await.unwrap();
    assert!(answer.active && answer.scopes.is_empty());
    let answer = srv.as_(&admin).introspect(&alice.token).await.unwrap();
    assert!(
        answer.active && answer.scopes.is_empty(),
        "a session is unscoped"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_narrowed_token_never_creates_or_rotates_a_wider_one() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let tokens = scoped_pat(&srv, &alice, &["tokens"]).await;

    // Without scopes, the new token inherits the creator's.
    let child = create(&srv, &tokens, &[], &[]).await.unwrap();
    assert_eq!(child.user_access_token.unwrap().scopes, ["tokens"]);
    assert_invalid(
        create(&srv, &tokens, &["read", "tokens"], &[]).await,
        "scopes",
        "api.context.invalid_body_param.app_error",
    );
    // Rotating an unscoped token would hand it an unscoped secret.
    let (plain_id, _) = srv.as_(&alice).new_token("me").await;
    let rotated = srv.as_(&tokens).rotate_token(&plain_id, None, None).await;
    assert_denied(rotated, "create_user_access_token");
    // A token within its scopes it may rotate.
    let child_id = own_tokens(&srv, &alice)
        .await
        .into_iter()
        .find(|t| t.scopes == ["tokens"] && t.description == "scoped")
        .unwrap()
        .id;
    srv.as_(&tokens)
        .rotate_token(&child_id, None, None)
        .await
        .expect("rotate a token as narrow as itself");

    // A bound token's children are bound within its blocks.
    let bound = create(&srv, &alice.token, &[], &["127.0.0.0/8"])
        .await
        .unwrap()
        .token;
    let child = create(&srv, &bound, &[], &[]).await.unwrap();
    assert_eq!(
        child.user_access_token.unwrap().bound_cidrs,
        ["127.0.0.0/8"]
    );
    let narrower = create(&srv, &bound, &[], &["127.0.0.1/32"]).await.unwrap();
    assert_eq!(
        narrower.user_access_token.unwrap().bound_cidrs,
        ["127.0.0.1/32"]
    );
    assert_invalid(
        create(&srv, &bound, &[], &["10.0.0.0/8"]).await,
        "bound_cidrs",
        "api.context.invalid_body_param.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_scoped_token_reads_or_revokes_its_own_sessions_only_as_its_scopes_say() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let read = scoped_pat(&srv, &alice, &["read"]).await;
    let introspect = scoped_pat(&srv, &alice, &["introspect"]).await;
    let tokens = scoped_pat(&srv, &alice, &["tokens"]).await;
    let admin = srv.admin("root").await;
    let other = srv.as_(&admin).login(&alice.id).await;
    let other_id = other.session.unwrap().id;

    // GetMe is open to every token.
    for token in [&read, &introspect, &tokens] {
        srv.as_(token).get_me().await.expect("GetMe");
    }
    srv.as_(&read)
        .get_sessions("me")
        .await
        .expect("read lists its own sessions");
    assert_denied(
        srv.as_(&introspect).get_sessions("me").await,
        "edit_other_users",
    );
    assert_denied(
        srv.as_(&read).revoke_session("me", &other_id).await,
        "edit_other_users",
    );
    assert_denied(
        srv.as_(&read).revoke_all_sessions("me").await,
        "edit_other_users",
    );
    assert!(
        srv.as_(&alice)
            .sessions_of("me")
            .await
            .iter()
            .any(|s| s.id == other_id),
        "nothing revoked"
    );
    srv.as_(&tokens)
        .revoke_session("me", &other_id)
        .await
        .expect("tokens revokes its own sessions");
    // Unscoped credentials are unaffected.
    let (_, plain) = srv.as_(&alice).new_token("me").await;
    srv.as_(&plain)
        .revoke_all_sessions("me")
        .await
        .expect("an unscoped token as in Mattermost");
    let status = srv.as_(&alice).get_me().await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "the session went too");
    srv.stop().await;
}
