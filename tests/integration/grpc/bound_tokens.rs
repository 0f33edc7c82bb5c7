//! Bound personal access tokens over gRPC (Vault's `token_bound_cidrs`): a token created with
//! `bound_cidrs` authenticates only from an address inside them, on a cache miss and a cache
//! hit alike, over IPv4 and IPv6 loopback aliases (the client socket bound to 127.0.0.2, or
//! connecting over ::1); a refusal is the one every bad token gets and leaves a lifecycle
//! record naming the address. Bad input is refused naming the field, creating nothing.

use std::time::{Duration, Instant};

use token_service::{
    domain::lifecycle::{Action, LifecycleRecord, RecordFilter},
    pb,
};
use tonic::{Code, transport::Channel};

use crate::common::*;

/// A server listening on every address (`[::]`, dual-stack), so clients reach it over
/// 127.0.0.1 (from 127.0.0.1 or 127.0.0.2) and over ::1.
pub(crate) async fn dual_stack_server() -> TestServer {
    TestServer::start_with(|c| {
        c.grpc_addr = "[::]:0".parse().unwrap();
        c.http_addr = "[::]:0".parse().unwrap();
    })
    .await
}

/// A gRPC client of `srv` connecting to `server_ip` from `local` (the client socket's address;
/// `None`: whatever the kernel picks).
pub(crate) async fn client_from(srv: &TestServer, server_ip: &str, local: Option<&str>) -> Client {
    let host = if server_ip.contains(':') {
        format!("[{server_ip}]")
    } else {
        server_ip.to_owned()
    };
    let channel = Channel::from_shared(format!("http://{host}:{}", srv.config.grpc_addr.port()))
        .unwrap()
        .local_address(local.map(|ip| ip.parse().unwrap()))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect to the test server");
    Client::new(channel)
}

/// Creates a token for `owner` bound to `cidrs`: (token id, secret, the token as answered).
pub(crate) async fn bound_token(
    srv: &TestServer,
    owner: &Actor,
    cidrs: &[&str],
) -> (String, String, pb::UserAccessToken) {
    let created = srv
        .as_(owner)
        .create_token_with(pb::CreateUserAccessTokenRequest {
            user_id: "me".into(),
            description: "bound".into(),
            bound_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .expect("create a bound token");
    let token = created.user_access_token.unwrap();
    (token.id.clone(), created.token, token)
}

/// The `access_token.address_refused` records of `token_id`, waiting (real time) until one
/// names `ip`: they are written off the request path.
pub(crate) async fn address_refusals(
    srv: &TestServer,
    token_id: &str,
    ip: &str,
) -> Vec<LifecycleRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<LifecycleRecord> = srv
            .ctx
            .store()
            .records_after(0, &RecordFilter::default(), 10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| {
                r.record.action == Action::AccessTokenAddressRefused
                    && r.record.subjects.token_id == token_id
            })
            .collect();
        if found.iter().any(|r| r.record.origin.ip == ip) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_token_bound_to_127_0_0_1_works_from_there_and_is_refused_from_127_0_0_2() {
    let srv = dual_stack_server().await;
    let alice = srv.token_user("alice").await;
    let (id, secret, token) = bound_token(&srv, &alice, &["127.0.0.1/32"]).await;
    assert_eq!(token.bound_cidrs, ["127.0.0.1/32"], "shown on the token");

    let home = client_from(&srv, "127.0.0.1", Some("127.0.0.1")).await;
    let away = client_from(&srv, "127.0.0.1", Some("127.0.0.2")).await;

    // First use from outside: refused, exactly like an unknown token, and no session minted.
    let refused = away.as_(&secret).get_me().await.unwrap_err();
    let unknown = away
        .as_("qwertyuiopasdfghjklzxcvbnm")
        .get_me()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.message(), unknown.message(), "no oracle");
    assert_eq!(error_id(&refused), error_id(&unknown));
    assert!(
        srv.as_(&alice)
            .sessions_of("me")
            .await
            .iter()
            .all(|s| s.props.get("user_access_token_id") != Some(&id)),
        "a refused use mints nothing"
    );

    // From inside: works (a cache miss that mints the session), then again (a cache hit).
    for _ in 0..2 {
        let me = home
            .as_(&secret)
            .get_me()
            .await
            .expect("bound address works");
        assert_eq!(me.user.unwrap().id, alice.id);
    }
    let hits = srv.cache_stats().hits;
    // From outside again, now a cache hit: still refused.
    assert_unauthenticated(away.as_(&secret).get_me().await);
    assert!(srv.cache_stats().hits > hits, "the refusal was a cache hit");
    // The unbound login session of the same user is not affected.
    away.as_(&alice)
        .get_me()
        .await
        .expect("sessions are unbound");

    let records = address_refusals(&srv, &id, "127.0.0.2").await;
    assert!(!records.is_empty(), "the refusal is recorded");
    let record = &records[0].record;
    assert_eq!(record.origin.ip, "127.0.0.2");
    assert_eq!(record.subjects.user_id, alice.id);
    let detail: serde_json::Value = serde_json::from_str(&record.detail).unwrap();
    assert_eq!(detail["address"], "127.0.0.2");
    assert_eq!(detail["bound_cidrs"], serde_json::json!(["127.0.0.1/32"]));
    assert!(!record.credential_hmac.is_empty());
    let text = format!("{records:?}");
    assert!(!text.contains(&secret), "no secret in the record");
    srv.stop().await;
}

#[tokio::test]
async fn a_token_bound_to_ipv6_loopback_works_over_ipv6_only() {
    let srv = dual_stack_server().await;
    let bob = srv.token_user("bob").await;
    let (id, secret, token) = bound_token(&srv, &bob, &["::1/128"]).await;
    assert_eq!(token.bound_cidrs, ["::1/128"]);
    let v6 = client_from(&srv, "::1", None).await;
    let v4 = client_from(&srv, "127.0.0.1", None).await;
    v6.as_(&secret).get_me().await.expect("works over ::1");
    assert_unauthenticated(v4.as_(&secret).get_me().await);
    let records = address_refusals(&srv, &id, "127.0.0.1").await;
    assert_eq!(records[0].record.origin.ip, "127.0.0.1", "{records:?}");

    // A token bound to both families works over both.
    let (_, both, _) = bound_token(&srv, &bob, &["127.0.0.0/8", "::1/128"]).await;
    v6.as_(&both).get_me().await.expect("::1");
    v4.as_(&both).get_me().await.expect("127.0.0.1");
    srv.stop().await;
}

#[tokio::test]
async fn introspection_checks_a_bound_token_against_the_callers_address() {
    let srv = dual_stack_server().await;
    let alice = srv.token_user("alice").await;
    let service = srv
        .user(
            "svc",
            &[
                "system_user",
                "system_user_access_token",
                "system_token_introspector",
            ],
        )
        .await;
    let (_, secret, _) = bound_token(&srv, &alice, &["127.0.0.1/32"]).await;
    let home = client_from(&srv, "127.0.0.1", Some("127.0.0.1")).await;
    let away = client_from(&srv, "127.0.0.1", Some("127.0.0.2")).await;
    let answer = home.as_(&service).introspect(&secret).await.unwrap();
    assert!(answer.active);
    let answer = away.as_(&service).introspect(&secret).await.unwrap();
    assert!(!answer.active, "inactive for a caller outside the blocks");
    assert_eq!(answer, pb::IntrospectTokenResponse::default());

    // The caller's own bearer credential is checked against its own address.
    let svc_secret = bound_token(&srv, &service, &["127.0.0.1/32"]).await.1;
    home.as_(&svc_secret)
        .introspect(&secret)
        .await
        .expect("the caller's bound token works from inside");
    assert_unauthenticated(away.as_(&svc_secret).introspect(&secret).await);
    srv.stop().await;
}

/// `owner`'s tokens, as GetUserAccessTokensForUser lists them.
pub(crate) async fn own_tokens(srv: &TestServer, owner: &Actor) -> Vec<pb::UserAccessToken> {
    srv.as_(owner)
        .list_tokens_for("me")
        .await
        .unwrap()
        .user_access_tokens
}

#[tokio::test]
async fn bad_bound_cidrs_are_refused_naming_the_field_and_create_nothing() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let too_many: Vec<String> = (0..17).map(|n| format!("10.0.0.{n}")).collect();
    for cidrs in [
        vec!["10.0.0.0/33".to_owned()],
        vec!["not-an-address".to_owned()],
        vec!["10.1.2.3/8".to_owned()],
        vec!["::1/129".to_owned()],
        vec![String::new()],
        too_many,
    ] {
        let result = srv
            .as_(&alice)
            .create_token_with(pb::CreateUserAccessTokenRequest {
                user_id: "me".into(),
                description: "bad".into(),
                bound_cidrs: cidrs.clone(),
                ..Default::default()
            })
            .await;
        assert_invalid(
            result,
            "bound_cidrs",
            "api.context.invalid_body_param.app_error",
        );
    }
    let listed = own_tokens(&srv, &alice).await;
    assert!(listed.is_empty(), "nothing created: {listed:?}");

    // A plain token shows no blocks; listing shows a bound token's.
    let (plain_id, _) = srv.as_(&alice).new_token("me").await;
    let (bound_id, _, _) = bound_token(&srv, &alice, &["10.0.0.0/8", "2001:db8::/32"]).await;
    let listed = own_tokens(&srv, &alice).await;
    let of = |id: &str| {
        listed
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .bound_cidrs
            .clone()
    };
    assert!(of(&plain_id).is_empty());
    assert_eq!(of(&bound_id), ["10.0.0.0/8", "2001:db8::/32"]);
    let got = srv.as_(&alice).get_token(&bound_id).await.unwrap();
    assert_eq!(
        got.user_access_token.unwrap().bound_cidrs,
        ["10.0.0.0/8", "2001:db8::/32"]
    );
    srv.stop().await;
}
