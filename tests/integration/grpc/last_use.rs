//! Last use of personal access tokens over gRPC: uses are written in batches (many checks,
//! at most one write per token per flush), shown on the token messages, filtered on, and
//! attributed to the right client address behind trusted proxies.

use std::time::{Duration, Instant};

use prost_types::Timestamp;
use token_service::pb;
use tonic::Code;

use crate::common::*;

/// A counter from the server's `/metrics`.
async fn counter(srv: &TestServer, name: &str) -> u64 {
    srv.counter(name).await
}

/// Waits (real time) until `name` reaches `at_least`.
async fn wait_for_counter(srv: &TestServer, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = counter(srv, name).await;
        if value >= at_least {
            return value;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const WRITES: &str = "token_service_last_use_token_writes_total";

/// GetMe with a raw token and optional extra metadata.
async fn get_me(srv: &TestServer, token: &str, metadata: &[(&'static str, &str)]) {
    let mut request = authed(pb::GetMeRequest {}, token);
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    srv.shared_client()
        .get_me(request)
        .await
        .expect("the token authenticates");
}

fn millis(ts: &Option<Timestamp>) -> i64 {
    ts.as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

fn at(ms: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

#[tokio::test]
async fn many_checks_make_at_most_one_write_per_token_per_flush() {
    const INTERVAL_MS: u64 = 400;
    let srv = TestServer::start_with(|c| {
        c.last_use.flush_interval = token_service::config::Span(INTERVAL_MS);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (first_id, first) = as_alice.new_token("me").await;
    let (second_id, second) = as_alice.new_token("me").await;
    let (unused_id, _) = as_alice.new_token("me").await;
    let before = counter(&srv, WRITES).await;
    assert_eq!(before, 0, "nothing used yet, nothing written");

    // 150 checks of two tokens: GetMe (the caller's check), IntrospectToken (the token
    // checked for someone else), cache misses and hits alike.
    let started = Instant::now();
    let admin_token = {
        let admin = srv.admin("root").await;
        srv.as_(&admin).new_token("me").await.1
    };
    for i in 0..50 {
        get_me(&srv, &first, &[("user-agent", "deploy-bot/1.0")]).await;
        get_me(&srv, &second, &[]).await;
        if i % 2 == 0 {
            let mut request = authed(
                pb::IntrospectTokenRequest {
                    token: first.clone(),
                },
                &admin_token,
            );
            request
                .metadata_mut()
                .insert("user-agent", "deploy-bot/1.0".parse().unwrap());
            let answer = srv.shared_client().introspect_token(request).await.unwrap();
            assert!(answer.into_inner().active);
        }
    }
    let elapsed = started.elapsed();
    // Flushes that could have run while the checks ran, and the one after them.
    let flushes = elapsed.as_millis() as u64 / INTERVAL_MS + 2;
    wait_for_counter(&srv, WRITES, 3).await;
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL_MS)).await;
    let writes = counter(&srv, WRITES).await;
    // More intervals with no use write nothing more.
    tokio::time::sleep(Duration::from_millis(3 * INTERVAL_MS)).await;
    let writes_after = counter(&srv, WRITES).await;
    assert_eq!(writes_after, writes, "no use, no write");
    // Three tokens were used (the admin's own included) in 150 checks.
    assert!(
        writes <= 3 * flushes,
        "{writes} writes for 3 tokens over at most {flushes} flushes"
    );
    assert!(counter(&srv, "token_service_last_use_flush_batches_total").await >= 1);

    let now = srv.now();
    let shown = as_alice.get_token(&first_id).await.unwrap();
    let token = shown.user_access_token.unwrap();
    assert_eq!(millis(&token.last_used_at), now);
    // tonic appends its own agent to the one a call sets.
    assert!(
        token.last_user_agent.starts_with("deploy-bot/1.0 tonic/"),
        "{:?}",
        token.last_user_agent
    );
    assert_eq!(token.recent_addresses.len(), 1, "{token:?}");
    assert_eq!(token.recent_addresses[0].ip, "127.0.0.1");
    assert_eq!(millis(&token.recent_addresses[0].last_seen_at), now);
    let listed = as_alice.list_tokens_for("me").await.unwrap();
    let by_id = |id: &str| {
        listed
            .user_access_tokens
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .clone()
    };
    let second_token = by_id(&second_id);
    assert_eq!(millis(&second_token.last_used_at), now);
    assert!(
        second_token.last_user_agent.starts_with("tonic/"),
        "the client's own agent: {:?}",
        second_token.last_user_agent
    );
    let unused = by_id(&unused_id);
    assert_eq!(unused.last_used_at, None, "never used: unset");
    assert!(unused.recent_addresses.is_empty());
    assert_eq!(unused.last_user_agent, "");

    // A later use moves it forward with the next flush; an address only moves forward too.
    srv.advance(Duration::from_secs(1800));
    get_me(&srv, &first, &[("user-agent", "deploy-bot/2.0")]).await;
    wait_for_counter(&srv, WRITES, writes + 1).await;
    let token = as_alice
        .get_token(&first_id)
        .await
        .unwrap()
        .user_access_token
        .unwrap();
    assert_eq!(millis(&token.last_used_at), now + 1_800_000);
    assert!(
        token.last_user_agent.starts_with("deploy-bot/2.0 "),
        "{:?}",
        token.last_user_agent
    );
    assert_eq!(
        millis(&token.recent_addresses[0].last_seen_at),
        now + 1_800_000
    );
    srv.stop().await;
}

#[tokio::test]
async fn session_tokens_are_not_tracked_and_shutdown_flushes_what_is_left() {
    let srv = TestServer::start_with(|c| {
        // Never within the test: only the flush at shutdown writes.
        c.last_use.flush_interval = token_service::config::Span(86_400_000);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    get_me(&srv, &alice.token, &[]).await;
    get_me(&srv, &secret, &[]).await;
    assert_eq!(counter(&srv, WRITES).await, 0);
    let fixture = srv.ctx.clone();
    let started = srv.now();
    srv.stop_then(async move {
        // The server has stopped: its last flush wrote the token's use.
        let token = fixture
            .store()
            .find_access_token(
                &token_service::domain::ids::TokenId::parse(
                    &token_id,
                    "token_id",
                    token_service::domain::error::Reason::InvalidUrlParam,
                )
                .unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(token.last_use.last_used_at, started);
    })
    .await;
}

#[tokio::test]
async fn the_list_filters_select_by_last_use_expiry_and_state() {
    let srv = TestServer::start_with(|c| {
        c.last_use.flush_interval = token_service::config::Span(50);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let as_admin = srv.as_(&admin);
    let t0 = srv.now();
    let (used_early, early_secret) = as_alice.new_token("me").await;
    let (used_late, late_secret) = as_alice.new_token("me").await;
    let expiring = as_alice
        .create_token_expiring("me", "soon", at(t0 + 1_200_000))
        .await
        .unwrap()
        .user_access_token
        .unwrap()
        .id;
    let (disabled, _) = as_alice.new_token("me").await;
    as_alice.disable_token(&disabled).await.unwrap();
    get_me(&srv, &early_secret, &[]).await;
    srv.advance(Duration::from_secs(600));
    get_me(&srv, &late_secret, &[]).await;
    let t_late = srv.now();
    wait_for_counter(&srv, WRITES, 2).await;

    let client = srv.shared_client();
    let list = |filter: pb::GetUserAccessTokensForUserRequest| {
        let request = as_alice.request(pb::GetUserAccessTokensForUserRequest {
            user_id: "me".into(),
            ..filter
        });
        let mut client = client.clone();
        async move {
            let mut ids: Vec<String> = client
                .get_user_access_tokens_for_user(request)
                .await
                .map(|r| r.into_inner().user_access_tokens)?
                .into_iter()
                .map(|t| t.id)
                .collect();
            ids.sort();
            Ok::<_, tonic::Status>(ids)
        }
    };
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<_>>()
    };
    let f = pb::GetUserAccessTokensForUserRequest::default;
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            last_used_before: at(t_late),
            ..f()
        })
        .await
        .unwrap(),
        vec![used_early.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            last_used_after: at(t_late),
            ..f()
        })
        .await
        .unwrap(),
        vec![used_late.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            last_used_after: at(t0),
            ..f()
        })
        .await
        .unwrap(),
        sorted(vec![&used_early, &used_late])
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            expires_before: at(t0 + 7_200_000),
            ..f()
        })
        .await
        .unwrap(),
        vec![expiring.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Disabled as i32,
            ..f()
        })
        .await
        .unwrap(),
        vec![disabled.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Active as i32,
            ..f()
        })
        .await
        .unwrap(),
        sorted(vec![&used_early, &used_late, &expiring])
    );
    assert!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Expired as i32,
            ..f()
        })
        .await
        .unwrap()
        .is_empty()
    );
    // Twenty minutes on, the expiring token has expired: no longer active.
    srv.advance(Duration::from_secs(1200));
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Expired as i32,
            ..f()
        })
        .await
        .unwrap(),
        vec![expiring.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Active as i32,
            ..f()
        })
        .await
        .unwrap(),
        sorted(vec![&used_early, &used_late])
    );
    // Filters combine, and paging applies to the filtered list.
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Active as i32,
            last_used_before: at(t_late),
            ..f()
        })
        .await
        .unwrap(),
        vec![used_early.clone()]
    );
    assert_eq!(
        list(pb::GetUserAccessTokensForUserRequest {
            state: pb::TokenState::Active as i32,
            page: Some(1),
            per_page: Some(1),
            ..f()
        })
        .await
        .unwrap()
        .len(),
        1
    );
    // The same filters on every user's tokens.
    let all = srv
        .shared_client()
        .get_user_access_tokens(as_admin.request(pb::GetUserAccessTokensRequest {
            state: pb::TokenState::Disabled as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .user_access_tokens;
    assert_eq!(
        all.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        vec![disabled.clone()]
    );

    // Bad values name the field and change nothing.
    let bad = list(pb::GetUserAccessTokensForUserRequest { state: 42, ..f() }).await;
    let status = bad.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("state"), "{status:?}");
    for (field, request) in [
        (
            "last_used_before",
            pb::GetUserAccessTokensForUserRequest {
                last_used_before: Some(Timestamp {
                    seconds: 1,
                    nanos: -5,
                }),
                ..f()
            },
        ),
        (
            "expires_before",
            pb::GetUserAccessTokensForUserRequest {
                expires_before: Some(Timestamp {
                    seconds: -10,
                    nanos: 0,
                }),
                ..f()
            },
        ),
    ] {
        let status = list(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().contains(field), "{field}: {status:?}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_is_recorded_and_a_spoofed_header_is_not() {
    for proxies in [
        vec!["10.255.0.0/16".to_owned()],
        vec!["127.0.0.1".to_owned()],
    ] {
        let trusted = proxies[0] == "127.0.0.1";
        let srv = TestServer::start_with(|c| {
            c.trusted_proxies = proxies.clone();
            c.last_use.flush_interval = token_service::config::Span(50);
            // Superseded by trusted_proxies: its header is not read.
            c.trusted_proxy_ip_header = vec!["X-Real-IP".into()];
        })
        .await;
        let admin = srv.admin("root").await;
        let alice = srv.token_user("alice").await;
        let (token_id, secret) = srv.as_(&alice).new_token("me").await;
        // The chain a client behind two proxies would present: the client's address, then
        // a proxy we trust... only if the peer (the test, 127.0.0.1) is trusted.
        get_me(
            &srv,
            &secret,
            &[
                ("x-forwarded-for", "198.51.100.7, 127.0.0.1"),
                ("x-real-ip", "192.0.2.99"),
            ],
        )
        .await;
        let mut request = srv.as_(&alice).request(pb::CreateUserAccessTokenRequest {
            user_id: "me".into(),
            description: "via proxy".into(),
            ..Default::default()
        });
        request.metadata_mut().insert(
            "forwarded",
            r#"for="[2001:db8::7]:4711";proto=https"#.parse().unwrap(),
        );
        let answer = srv
            .shared_client()
            .create_user_access_token(request)
            .await
            .unwrap();
        let request_id = answer
            .metadata()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        wait_for_counter(&srv, WRITES, 1).await;
        let token = srv
            .as_(&alice)
            .get_token(&token_id)
            .await
            .unwrap()
            .user_access_token
            .unwrap();
        let addresses: Vec<&str> = token
            .recent_addresses
            .iter()
            .map(|a| a.ip.as_str())
            .collect();
        let want = if trusted { "198.51.100.7" } else { "127.0.0.1" };
        assert_eq!(addresses, vec![want], "trusted = {trusted}");
        // Lifecycle records get the same address.
        let records = srv
            .as_(&admin)
            .audit_records(pb::ListAuditRecordsRequest {
                request_id,
                ..Default::default()
            })
            .await;
        assert_eq!(records.len(), 1, "{records:#?}");
        let want = if trusted { "2001:db8::7" } else { "127.0.0.1" };
        assert_eq!(records[0].ip, want, "trusted = {trusted}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_token_revoked_before_the_flush_is_skipped_and_addresses_are_trimmed_to_five() {
    let srv = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.last_use.flush_interval = token_service::config::Span(100);
    })
    .await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let (kept_id, kept) = as_alice.new_token("me").await;
    let (gone_id, gone) = as_alice.new_token("me").await;
    let mut written = 0;
    for i in 1..=7 {
        if i % 3 == 1 {
            written = counter(&srv, WRITES).await;
        }
        srv.advance(Duration::from_secs(1));
        let address = format!("192.0.2.{i}");
        get_me(&srv, &kept, &[("x-forwarded-for", address.as_str())]).await;
        if i == 7 {
            get_me(&srv, &gone, &[("x-forwarded-for", address.as_str())]).await;
            as_alice.revoke_token(&gone_id).await.unwrap();
        }
        // Flush between uses, so the trim works on stored addresses too.
        if i % 3 == 0 {
            wait_for_counter(&srv, WRITES, written + 1).await;
        }
    }
    wait_for_counter(&srv, WRITES, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        counter(&srv, "token_service_last_use_flush_failures_total").await,
        0,
        "the revoked token did not fail the batch"
    );
    let token = as_alice
        .get_token(&kept_id)
        .await
        .unwrap()
        .user_access_token
        .unwrap();
    let addresses: Vec<&str> = token
        .recent_addresses
        .iter()
        .map(|a| a.ip.as_str())
        .collect();
    assert_eq!(
        addresses,
        vec![
            "192.0.2.7",
            "192.0.2.6",
            "192.0.2.5",
            "192.0.2.4",
            "192.0.2.3"
        ],
        "the five most recent, newest first"
    );
    let code = as_alice.get_token(&gone_id).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);
    srv.stop().await;
}

#[tokio::test]
async fn a_use_from_an_address_not_among_the_recent_ones_is_recorded_by_the_flush() {
    let srv = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".into()];
        c.last_use.flush_interval = token_service::config::Span(50);
    })
    .await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let (token_id, secret) = srv.as_(&alice).new_token("me").await;
    let new_address_records = || async {
        srv.as_(&admin)
            .audit_records(pb::ListAuditRecordsRequest {
                actions: vec!["access_token.used_from_new_address".into()],
                token_id: token_id.clone(),
                ..Default::default()
            })
            .await
    };
    let mut flushed = counter(&srv, WRITES).await;
    let use_from = |address: &'static str| {
        let srv = &srv;
        let secret = secret.clone();
        async move {
            get_me(
                srv,
                &secret,
                &[
                    ("x-forwarded-for", address),
                    ("user-agent", "deploy-bot/2.0"),
                ],
            )
            .await;
        }
    };

    // The first address of a token is not news.
    use_from("192.0.2.1").await;
    flushed = wait_for_counter(&srv, WRITES, flushed + 1).await;
    assert!(new_address_records().await.is_empty());

    // A second address is, once (its next uses are not), and a known one is not.
    srv.advance(Duration::from_secs(1));
    use_from("198.51.100.9").await;
    flushed = wait_for_counter(&srv, WRITES, flushed + 1).await;
    srv.advance(Duration::from_secs(1));
    use_from("198.51.100.9").await;
    use_from("192.0.2.1").await;
    wait_for_counter(&srv, WRITES, flushed + 1).await;
    let records = new_address_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record.ip, "198.51.100.9");
    assert_eq!(record.user_id, alice.id);
    assert_eq!(record.actor_id, alice.id);
    assert!(
        record.user_agent.starts_with("deploy-bot/2.0"),
        "{record:?}"
    );
    let detail: serde_json::Value = serde_json::from_str(&record.detail).unwrap();
    assert_eq!(detail["ip"], "198.51.100.9");
    assert!(!record.detail.contains(&secret));
    srv.stop().await;
}
