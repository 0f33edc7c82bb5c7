//! CountNonCompliantUserAccessTokens and RevokeNonCompliantUserAccessTokens: the tokens made
//! before a maximum lifetime was set (or lowered) that break it. The tokens are made on a
//! server without a policy; a replica on the same database, started with
//! `maximum_personal_access_token_lifetime_days = 30` (an administrator who set it and
//! restarted), counts and revokes them.

use std::collections::BTreeSet;

use token_service::{
    domain::{
        access_tokens::{self, NewUserAccessToken},
        caller::Caller,
    },
    pb,
};

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

/// A token of `owner` made by the local operator. Returns (token id, secret).
pub(crate) async fn pat(
    srv: &TestServer,
    owner: &Actor,
    expires_at: Option<i64>,
) -> (String, String) {
    let created = access_tokens::create_user_access_token(
        &srv.ctx,
        &Caller::Local,
        NewUserAccessToken {
            user_id: owner.id.clone(),
            description: "made before the policy".into(),
            expires_at,
            restrictions: Default::default(),
        },
    )
    .await
    .expect("create token");
    (
        created.token.id.to_string(),
        created.secret.expose().to_owned(),
    )
}

#[tokio::test]
async fn the_tokens_breaking_a_new_policy_are_counted_and_revoked_in_batches() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let now = srv.now();

    // Non-compliant: never expiring, or beyond 30 days.
    let (alice_never, _) = pat(&srv, &alice, None).await;
    let (alice_far, _) = pat(&srv, &alice, Some(now + 60 * DAY_MS)).await;
    let (bob_never, bob_secret) = pat(&srv, &bob, None).await;
    // Compliant, or not counted: within 30 days, disabled, a bot's.
    let (alice_soon, _) = pat(&srv, &alice, Some(now + 10 * DAY_MS)).await;
    let (alice_disabled, _) = pat(&srv, &alice, None).await;
    srv.as_(&admin)
        .disable_token(&alice_disabled)
        .await
        .unwrap();
    let helper = srv.bot("helper", Some(&alice)).await;
    let (bots, _) = pat(&srv, &helper, None).await;
    let orphan = srv.bot("orphan", None).await;
    let (orphans, _) = pat(&srv, &orphan, None).await;

    // bob's token is in use on the first server (its cache holds it).
    let first = srv.client().await;
    first.as_(&bob_secret).get_me().await.expect("works");

    let replica = srv
        .start_replica(|c| {
            c.maximum_personal_access_token_lifetime_days = 30;
            c.jobs.batch_size = 2;
            c.jobs.enable = false;
        })
        .await;
    let client = client_of(replica.grpc_addr());
    client.as_(&bob_secret).get_me().await.expect("works");

    assert_eq!(
        client
            .as_(&admin)
            .count_non_compliant_tokens()
            .await
            .unwrap(),
        3
    );
    // Without a policy (the first server) nothing is non-compliant.
    assert_eq!(
        srv.as_(&admin).count_non_compliant_tokens().await.unwrap(),
        0
    );
    let refused = srv
        .as_(&admin)
        .revoke_non_compliant_tokens()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        error_id(&refused),
        "app.user_access_token.revoke_non_compliant.no_policy.app_error"
    );
    assert!(
        refused
            .message()
            .contains("maximum_personal_access_token_lifetime_days"),
        "{refused:?}"
    );
    // Only manage_system.
    assert_denied(
        client.as_(&alice).revoke_non_compliant_tokens().await,
        "manage_system",
    );

    let done = client
        .as_(&admin)
        .revoke_non_compliant_tokens()
        .await
        .unwrap();
    assert_eq!(
        done,
        pb::RevokeNonCompliantUserAccessTokensResponse {
            count: 3,
            complete: true
        },
        "two batches of two"
    );
    let left: BTreeSet<String> = srv
        .as_(&admin)
        .list_all_tokens(None, None)
        .await
        .unwrap()
        .user_access_tokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([alice_soon, alice_disabled, bots, orphans])
    );
    // Refused at once where it was revoked, and through the log on the first server.
    assert_token_refused(&client, &bob_secret).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while first.as_(&bob_secret).get_me().await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first server still accepts it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // One record per token, by the admin, naming the reason.
    let records = srv
        .as_(&admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actions: vec!["access_token.revoked".into()],
            ..Default::default()
        })
        .await;
    let revoked: BTreeSet<String> = records.iter().map(|r| r.token_id.clone()).collect();
    assert_eq!(records.len(), 3);
    assert_eq!(revoked, BTreeSet::from([alice_never, alice_far, bob_never]));
    for r in &records {
        assert_eq!(r.actor_type(), pb::ActorType::User);
        assert_eq!(r.actor_id, admin.id);
        assert_eq!(r.revokes_kind(), pb::RevocationKind::AccessToken);
        let detail: serde_json::Value = serde_json::from_str(&r.detail).unwrap();
        assert_eq!(detail, serde_json::json!({"reason": "non_compliant"}));
    }

    // Nothing left to do.
    assert_eq!(
        client
            .as_(&admin)
            .count_non_compliant_tokens()
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .as_(&admin)
            .revoke_non_compliant_tokens()
            .await
            .unwrap(),
        pb::RevokeNonCompliantUserAccessTokensResponse {
            count: 0,
            complete: true
        }
    );
    replica.shutdown().await.unwrap();
    srv.stop().await;
}
