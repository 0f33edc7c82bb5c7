//! IdentifyToken: a token's value in, what it is (kind, id, owner, state) and its lifecycle
//! records out, for live, disabled, expired, rotated-away, revoked and never-issued tokens and
//! for sessions; read only; manage_system or read_audit.

use std::time::Duration;

use token_service::{
    config::{TokenFormatConfig, TokenStyle},
    pb,
};
use tonic::Code;

use crate::common::*;

fn actions(trail: &pb::IdentifyTokenResponse) -> Vec<&str> {
    trail.records.iter().map(|r| r.action.as_str()).collect()
}

fn checksummed(c: &mut token_service::config::Config) {
    c.token_format = TokenFormatConfig {
        style: TokenStyle::Checksummed,
        prefix: "mm".to_owned(),
    };
}

#[tokio::test]
async fn a_live_token_is_identified_with_its_owner_and_creation() {
    let srv = TestServer::start_with(checksummed).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let created = srv
        .as_(&alice)
        .create_token("me", "found in a gist")
        .await
        .unwrap();
    let id = created.user_access_token.unwrap().id;
    let before = srv
        .as_(&admin)
        .audit_records(Default::default())
        .await
        .len();

    let trail = srv
        .as_(&admin)
        .identify_token(&created.token)
        .await
        .unwrap();
    assert_eq!(trail.shape(), pb::TokenShape::Checksummed);
    assert_eq!(trail.kind(), pb::TokenKind::PersonalAccessToken);
    assert_eq!(trail.state(), pb::CredentialState::Active);
    let token = trail.user_access_token.as_ref().unwrap();
    assert_eq!(token.id, id);
    assert_eq!(token.description, "found in a gist");
    let owner = trail.owner.as_ref().unwrap();
    assert_eq!(
        (owner.id.as_str(), owner.username.as_str()),
        (alice.id.as_str(), "alice")
    );
    assert!(owner.email.is_empty(), "no e-mail address");
    assert_eq!(actions(&trail), ["access_token.created"]);
    assert_eq!(trail.records[0].credential_hmac, trail.credential_hmac);

    // Read only: no record appended, no session minted for the unused token.
    assert_eq!(
        srv.as_(&admin)
            .audit_records(Default::default())
            .await
            .len(),
        before
    );
    assert!(
        srv.as_(&admin)
            .sessions_of(&alice.id)
            .await
            .iter()
            .all(|s| s.props.get("type").map(String::as_str) != Some("UserAccessToken"))
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_revoked_token_keeps_its_trail() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (id, secret) = srv.as_(&alice).new_token("me").await;
    srv.as_(&secret).me().await.unwrap();
    srv.as_(&alice).revoke_token(&id).await.unwrap();

    let trail = srv.as_(&admin).identify_token(&secret).await.unwrap();
    assert_eq!(trail.shape(), pb::TokenShape::Mattermost);
    assert_eq!(trail.kind(), pb::TokenKind::Unspecified);
    assert_eq!(trail.state(), pb::CredentialState::NotFound);
    assert!(trail.user_access_token.is_none() && trail.owner.is_none());
    let found = actions(&trail);
    assert_eq!(found[0], "access_token.revoked", "{found:?}");
    assert!(found.contains(&"access_token.created"), "{found:?}");
    assert!(
        found.contains(&"session.created"),
        "the minted session: {found:?}"
    );
    assert!(
        trail
            .records
            .iter()
            .all(|r| r.token_id == id || r.token_id.is_empty())
    );
    srv.stop().await;
}

#[tokio::test]
async fn disabled_expired_and_rotated_away_secrets_say_so() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let state = async |token: &str| srv.as_(&admin).identify_token(token).await.unwrap();

    let (disabled_id, disabled) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice).disable_token(&disabled_id).await.unwrap();
    assert_eq!(
        state(&disabled).await.state(),
        pb::CredentialState::Disabled
    );

    let expiring = srv
        .as_(&alice)
        .create_token_expiring(
            "me",
            "short",
            Some(prost_types::Timestamp {
                seconds: (srv.now() + 60_000) / 1000,
                nanos: 0,
            }),
        )
        .await
        .unwrap()
        .token;
    assert_eq!(state(&expiring).await.state(), pb::CredentialState::Active);
    srv.advance(Duration::from_secs(120));
    assert_eq!(state(&expiring).await.state(), pb::CredentialState::Expired);

    let (rotated_id, old) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice)
        .rotate_token(&rotated_id, None, None)
        .await
        .unwrap();
    let trail = state(&old).await;
    assert_eq!(trail.state(), pb::CredentialState::Superseded);
    assert_eq!(trail.kind(), pb::TokenKind::PersonalAccessToken);
    assert_eq!(trail.user_access_token.as_ref().unwrap().id, rotated_id);
    assert!(trail.grace_until.is_none());
    assert_eq!(actions(&trail)[0], "access_token.rotated");

    let (_, live) = srv.as_(&alice).new_token("me").await;
    srv.as_(&admin).set_active(&alice.id, false).await;
    assert_eq!(
        state(&live).await.state(),
        pb::CredentialState::OwnerDeactivated
    );
    srv.stop().await;
}

#[tokio::test]
async fn sessions_are_identified_and_ended_ones_keep_their_trail() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let bob = srv.basic_user("bob").await;
    let login = srv.as_(&admin).login(&bob.id).await;
    let trail = srv.as_(&admin).identify_token(&login.token).await.unwrap();
    assert_eq!(trail.kind(), pb::TokenKind::Session);
    assert_eq!(trail.state(), pb::CredentialState::Active);
    let session_id = trail.session.as_ref().unwrap().id.clone();
    assert_eq!(trail.owner.as_ref().unwrap().id, bob.id);

    srv.as_(&login.token).logout().await.unwrap();
    let trail = srv.as_(&admin).identify_token(&login.token).await.unwrap();
    assert_eq!(trail.state(), pb::CredentialState::NotFound);
    assert_eq!(actions(&trail), ["session.revoked", "session.created"]);
    assert!(trail.records.iter().all(|r| r.session_id == session_id));
    srv.stop().await;
}

#[tokio::test]
async fn values_never_issued_are_told_apart_by_shape() {
    let srv = TestServer::start_with(checksummed).await;
    let auditor = srv.user("auditor", &["system_auditor"]).await;
    let alice = srv.token_user("alice").await;
    let real = srv.as_(&alice).create_token("me", "x").await.unwrap().token;
    let (head, last) = real.split_at(real.len() - 1);
    let typo = format!("{head}{}", if last == "0" { '1' } else { '0' });
    let cases = [
        (typo.as_str(), pb::TokenShape::BadChecksum),
        ("hello world", pb::TokenShape::Malformed),
        ("abcdefghijklmnopqrstuvwxyz", pb::TokenShape::Mattermost),
    ];
    for (value, shape) in cases {
        let trail = srv.as_(&auditor).identify_token(value).await.unwrap();
        assert_eq!(trail.shape(), shape, "{value}");
        assert_eq!(trail.state(), pb::CredentialState::NotFound);
        assert!(trail.records.is_empty());
        assert_eq!(trail.credential_hmac.len(), 64);
    }
    srv.stop().await;
}

#[tokio::test]
async fn only_auditors_and_admins_may_identify_and_bad_input_names_the_field() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    assert_denied(
        srv.as_(&alice).identify_token(&alice.token).await,
        "read_audit",
    );
    assert_unauthenticated(srv.anonymous().identify_token(&alice.token).await);
    assert_invalid(
        srv.as_(&admin).identify_token("   ").await,
        "token",
        "api.context.invalid_body_param.app_error",
    );
    let long = "a".repeat(1025);
    let refused = srv.as_(&admin).identify_token(&long).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        !refused.message().contains(&long[..40]),
        "the value is not echoed"
    );
    srv.stop().await;
}
