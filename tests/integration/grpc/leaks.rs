//! ReportLeakedTokens (revoke by value): anyone may report, every live personal access token
//! and login session among the reported strings stops working (here and on other replicas),
//! the owner is told through the lifecycle log, the answer never says which strings were live,
//! bad reports change nothing, and each address is rate-limited.

use std::time::{Duration, Instant};

use token_service::{
    config::{Config, TokenFormatConfig, TokenStyle},
    pb,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;

const URL: &str = "https://github.com/acme/app/blob/main/.env";

fn checksummed(c: &mut Config) {
    c.token_format = TokenFormatConfig {
        style: TokenStyle::Checksummed,
        prefix: "mm".to_owned(),
    };
}

async fn records(srv: &TestServer, admin: &Actor, action: &str) -> Vec<pb::LifecycleRecord> {
    srv.as_(admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actions: vec![action.to_owned()],
            oldest_first: true,
            ..Default::default()
        })
        .await
}

/// `token` with one character of its random part changed (a checksummed token then fails
/// its checksum; a Mattermost-format one is simply unknown).
fn typo(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[8] = if bytes[8] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn an_anonymous_report_revokes_every_live_credential_it_names() {
    let srv = TestServer::start_with(checksummed).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.basic_user("bob").await;
    let leaked_pat = srv
        .as_(&alice)
        .create_token("me", "pushed to GitHub")
        .await
        .unwrap();
    let kept_pat = srv
        .as_(&alice)
        .create_token("me", "still private")
        .await
        .unwrap()
        .token;
    // Used once, so its session is minted (and cached).
    srv.as_(&leaked_pat.token).me().await.unwrap();
    let bob_login = srv.as_(&admin).login(&bob.id).await.token;

    let receipt = srv
        .anonymous()
        .report_leaked_tokens(
            &[
                &leaked_pat.token,
                &bob_login,
                &leaked_pat.token,
                &typo(&kept_pat),
                "not a token at all",
                "k3x9f8q1m7zt2w5y6b4n0c8d1e",
            ],
            URL,
        )
        .await
        .unwrap();
    assert_eq!(receipt.received, 6);

    assert_unauthenticated(srv.as_(&leaked_pat.token).me().await);
    assert_unauthenticated(srv.as_(&bob_login).me().await);
    // What was not reported keeps working.
    srv.as_(&kept_pat).me().await.unwrap();
    srv.as_(&alice).me().await.unwrap();
    srv.as_(&bob).me().await.unwrap();
    let pat_id = leaked_pat.user_access_token.unwrap().id;
    assert_eq!(
        srv.as_(&admin).get_token(&pat_id).await.unwrap_err().code(),
        Code::NotFound,
        "the token is revoked (deleted), as RevokeUserAccessToken does"
    );

    let leaked = records(&srv, &admin, "access_token.leaked").await;
    assert_eq!(leaked.len(), 1, "one record per token, however often named");
    let record = &leaked[0];
    assert_eq!(record.user_id, alice.id);
    assert_eq!(record.token_id, pat_id);
    assert_eq!(record.actor_type(), pb::ActorType::Unspecified);
    assert_eq!(record.ip, "127.0.0.1");
    let detail: serde_json::Value = serde_json::from_str(&record.detail).unwrap();
    assert_eq!(detail["url"], URL);
    assert_eq!(detail["reason"], "reported_leaked");
    let hmac = srv
        .as_(&admin)
        .compute_audit_hash(&leaked_pat.token)
        .await
        .unwrap()
        .credential_hmac;
    assert_eq!(
        record.credential_hmac, hmac,
        "the record names the reported secret"
    );
    assert!(!record.detail.contains(&leaked_pat.token));

    let ended = records(&srv, &admin, "session.leaked").await;
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].user_id, bob.id);
    assert!(!ended[0].session_id.is_empty());
    assert_eq!(
        srv.counter("token_service_leaked_credentials_revoked_total")
            .await,
        2
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_answer_is_the_same_whatever_the_tokens_were() {
    let srv = TestServer::start_with(checksummed).await;
    let alice = srv.token_user("alice").await;
    let live = srv
        .as_(&alice)
        .create_token("me", "live")
        .await
        .unwrap()
        .token;
    let dead = typo(&live);
    let client = srv.anonymous();
    let with_live = client
        .report_leaked_tokens(&[&dead, &live, "x"], "")
        .await
        .unwrap();
    let without = client
        .report_leaked_tokens(&[&dead, &dead, "x"], "")
        .await
        .unwrap();
    let twice = client
        .report_leaked_tokens(&[&dead, &live, "x"], "")
        .await
        .unwrap();
    assert_eq!(with_live, without);
    assert_eq!(
        with_live, twice,
        "reporting a token already revoked answers the same"
    );
    assert_unauthenticated(srv.as_(&live).me().await);
    srv.stop().await;
}

#[tokio::test]
async fn legacy_tokens_can_be_reported_too() {
    // Mattermost's format: no checksum to check first, found by digest all the same.
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let pat = srv
        .as_(&alice)
        .create_token("me", "legacy")
        .await
        .unwrap()
        .token;
    assert_eq!(pat.len(), 26);
    srv.anonymous()
        .report_leaked_tokens(&[&pat, &alice.token], "")
        .await
        .unwrap();
    assert_unauthenticated(srv.as_(&pat).me().await);
    assert_unauthenticated(srv.as_(&alice).me().await);
    srv.stop().await;
}

#[tokio::test]
async fn the_revocation_reaches_another_replica() {
    let srv = TestServer::start_with(checksummed).await;
    let alice = srv.token_user("alice").await;
    let pat = srv
        .as_(&alice)
        .create_token("me", "cached elsewhere")
        .await
        .unwrap()
        .token;
    let replica = srv.start_replica(|_| {}).await;
    let there = client_of(replica.grpc_addr());
    there.as_(&pat).me().await.unwrap();
    there.as_(&pat).me().await.unwrap(); // a cache hit there

    srv.anonymous()
        .report_leaked_tokens(&[&pat], URL)
        .await
        .unwrap();
    assert_unauthenticated(srv.as_(&pat).me().await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while there.as_(&pat).me().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the replica still accepts the token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    replica.shutdown().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn bad_reports_are_refused_naming_the_field_and_change_nothing() {
    let srv = TestServer::start_with(|c| {
        checksummed(c);
        c.leak_reports.burst = 100;
        c.leak_reports.requests_per_minute = 100;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let pat = srv.as_(&alice).create_token("me", "x").await.unwrap().token;
    let client = srv.anonymous();
    assert_invalid(
        client.report_leaked_tokens(&[], "").await,
        "tokens",
        "api.context.invalid_body_param.app_error",
    );
    let many: Vec<&str> = std::iter::repeat_n(pat.as_str(), 1001).collect();
    assert_invalid(
        client.report_leaked_tokens(&many, "").await,
        "tokens",
        "api.context.invalid_body_param.app_error",
    );
    for url in ["ftp://example.com/x", "example.com", "https://a\nb"] {
        assert_invalid(
            client.report_leaked_tokens(&[&pat], url).await,
            "url",
            "api.context.invalid_body_param.app_error",
        );
    }
    srv.as_(&pat).me().await.expect("nothing was revoked");
    // Exactly 1000 is allowed.
    let thousand: Vec<&str> = std::iter::repeat_n("x", 1000).collect();
    client.report_leaked_tokens(&thousand, "").await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn each_address_is_rate_limited_and_a_refused_report_changes_nothing() {
    let srv = TestServer::start_with(|c| {
        checksummed(c);
        c.leak_reports.requests_per_minute = 1;
        c.leak_reports.burst = 2;
    })
    .await;
    let alice = srv.token_user("alice").await;
    let pat = srv.as_(&alice).create_token("me", "x").await.unwrap().token;
    let client = srv.anonymous();
    client.report_leaked_tokens(&["a"], "").await.unwrap();
    client.report_leaked_tokens(&["b"], "").await.unwrap();
    let refused = client.report_leaked_tokens(&[&pat], "").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(error_id(&refused), "token_service.rate_limited");
    let retry = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    srv.as_(&pat)
        .me()
        .await
        .expect("the refused report revoked nothing");
    // An authenticated caller is limited by address all the same; the local operator is not.
    assert_eq!(
        srv.as_(&alice)
            .report_leaked_tokens(&["c"], "")
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
    assert_eq!(
        srv.counter("token_service_leak_reports_total{outcome=\"rate_limited\"}")
            .await,
        2
    );
    // A minute later the bucket has refilled.
    srv.advance(Duration::from_secs(60));
    client.report_leaked_tokens(&[&pat], "").await.unwrap();
    assert_unauthenticated(srv.as_(&pat).me().await);
    srv.stop().await;
}

#[tokio::test]
async fn reports_can_be_switched_off() {
    let srv = TestServer::start_with(|c| c.leak_reports.enable = false).await;
    let alice = srv.token_user("alice").await;
    let refused = srv
        .anonymous()
        .report_leaked_tokens(&[&alice.token], "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
    assert_eq!(error_id(&refused), "token_service.leak_reports.disabled");
    srv.as_(&alice).me().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn the_owner_hears_of_the_leak_through_a_webhook() {
    let srv = TestServer::start_with(|c| {
        c.webhooks.allow_private_addresses = true;
        c.webhooks.poll_interval = token_service::config::Span(20);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    srv.as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.leaked", "session.leaked"])
        .await
        .unwrap();
    let pat = srv
        .as_(&alice)
        .create_token("me", "leaked")
        .await
        .unwrap()
        .token;
    srv.anonymous()
        .report_leaked_tokens(&[&pat, &alice.token], URL)
        .await
        .unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let mut actions: Vec<&str> = got.iter().map(Received::action).collect();
    actions.sort_unstable();
    assert_eq!(actions, ["access_token.leaked", "session.leaked"]);
    for message in &got {
        assert_eq!(
            message.json["data"]["user_id"],
            alice.id.as_str(),
            "{message:?}"
        );
        assert_eq!(message.json["data"]["detail"]["url"], URL, "{message:?}");
        let raw = String::from_utf8_lossy(&message.raw);
        assert!(
            !raw.contains(&pat) && !raw.contains(&alice.token),
            "no secret delivered"
        );
    }
    srv.stop().await;
}
