//! The scheduled jobs: `cleanup_expired_access_tokens` deletes expired tokens (and their
//! sessions) with one `access_token.expired` record each, which revokes them on every
//! replica; `notify_expiring_access_tokens` records one `access_token.expiring` notice per
//! token and threshold (7, 3, 1 days), which webhooks deliver. Time moves with the test clock
//! (`srv.advance`); only the scheduler's poll (20 ms here) is waited for.
//!
//! Replicas: two in-process servers on one database share the test clock, so a job run is
//! due for both at once and the lease decides; a restarted server continues from the state
//! in the database. The takeover of a killed lease holder uses two `token-service serve`
//! processes (SIGKILL: no shutdown, no lease given up), both on the wall clock.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use token_service::{
    config::{Config, Span},
    domain::{
        access_tokens::{self, NewUserAccessToken},
        caller::Caller,
        jobs::JobState,
        users::{self, NewUser},
    },
    pb,
};

use crate::common::*;

const HOUR: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;
const CLEANUP: &str = "cleanup_expired_access_tokens";
const NOTIFY: &str = "notify_expiring_access_tokens";
const EXPIRED: &str = "access_token.expired";
const EXPIRING: &str = "access_token.expiring";

/// Jobs on (the test harness turns them off), looking for due work every 20 ms.
fn fast_jobs(c: &mut Config) {
    c.jobs.enable = true;
    c.jobs.poll_interval = Span(20);
}

/// A token of `owner` expiring at `expires_at` (ms; `None`: never), made by the local
/// operator. Returns (token id, secret).
async fn pat(srv: &TestServer, owner: &Actor, expires_at: Option<i64>) -> (String, String) {
    let created = access_tokens::create_user_access_token(
        &srv.ctx,
        &Caller::Local,
        NewUserAccessToken {
            user_id: owner.id.clone(),
            description: format!("token of {}", owner.username),
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

/// An administrator whose credential outlives the hours and days the tests move the clock
/// by (login sessions last an hour): a personal access token without expiry, of a bot, so it
/// works even where users' tokens are switched off.
async fn lasting_admin(srv: &TestServer) -> String {
    let admin = users::create_user(
        &srv.ctx,
        &Caller::Local,
        NewUser {
            username: "root-bot".into(),
            roles: vec!["system_user".into(), "system_admin".into()],
            is_bot: true,
            ..NewUser::default()
        },
    )
    .await
    .expect("create the admin bot");
    let created = access_tokens::create_user_access_token(
        &srv.ctx,
        &Caller::Local,
        NewUserAccessToken {
            user_id: admin.id.to_string(),
            description: "admin".into(),
            expires_at: None,
            restrictions: Default::default(),
        },
    )
    .await
    .expect("create the admin's token");
    created.secret.expose().to_owned()
}

/// Every record of `action`, oldest first.
async fn records(srv: &TestServer, admin: &str, action: &str) -> Vec<pb::LifecycleRecord> {
    srv.as_(admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actions: vec![action.to_owned()],
            oldest_first: true,
            ..Default::default()
        })
        .await
}

fn detail(record: &pb::LifecycleRecord) -> serde_json::Value {
    serde_json::from_str(&record.detail).expect("detail is JSON")
}

/// The job's row.
async fn job(srv: &TestServer, name: &str) -> JobState {
    srv.ctx
        .store()
        .job_states()
        .await
        .expect("read the jobs")
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no row for {name}"))
}

/// Waits until job `name` has finished a run started at or after `since` (test clock).
/// Generous: a run of hundreds of one-token batches (each a transaction, and on PostgreSQL
/// and MariaDB a seal of its record) on a loaded machine.
async fn wait_for_run(srv: &TestServer, name: &str, since: i64) -> JobState {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(states) = srv.ctx.store().job_states().await
            && let Some(state) = states.into_iter().find(|j| j.name == name)
            && state.last_started_at >= since
            && state.last_finished_at >= state.last_started_at
            && state.lease_owner.is_empty()
        {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not run after {since}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the runs a server with jobs makes as it starts (every job is due then), so that
/// no run happens while the test sets up what the next one should find.
async fn settle(srv: &TestServer) {
    for name in [CLEANUP, NOTIFY] {
        wait_for_run(srv, name, srv.now()).await;
    }
}

/// Moves the clock by `by` and waits for a run of `name` due after it.
async fn advance_and_run(srv: &TestServer, name: &str, by: Duration) {
    srv.advance(by);
    wait_for_run(srv, name, srv.now()).await;
}

/// A counter of the `/metrics` at `http_addr`.
async fn metric(http_addr: impl std::fmt::Display, name: &str) -> u64 {
    counter_at(http_addr, name).await
}

/// Token id to the `days` of each of its notices, in order.
fn notices_by_token(records: &[pb::LifecycleRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut by_token: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        by_token
            .entry(r.token_id.clone())
            .or_default()
            .push(detail(r)["days"].as_i64().expect("days"));
    }
    by_token
}

#[tokio::test]
async fn cleanup_deletes_expired_tokens_and_their_sessions_and_revokes_them_everywhere() {
    let srv = TestServer::start_with(|c| {
        fast_jobs(c);
        c.jobs.batch_size = 2;
    })
    .await;
    settle(&srv).await;
    let admin = lasting_admin(&srv).await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let in_an_hour = srv.now() + 3_600_000;

    // Five that expire in an hour, used once (each has a minted session).
    let mut expiring = BTreeMap::new();
    for _ in 0..5 {
        let (id, secret) = pat(&srv, &alice, Some(in_an_hour)).await;
        client.as_(&secret).get_me().await.expect("the token works");
        expiring.insert(id, secret);
    }
    let (never, _) = pat(&srv, &alice, None).await;
    let (later, _) = pat(&srv, &alice, Some(srv.now() + 3 * 3_600_000)).await;
    // Disabled and then expired: Mattermost's cleanup leaves it.
    let (disabled, _) = pat(&srv, &alice, Some(in_an_hour)).await;
    srv.as_(&admin).disable_token(&disabled).await.unwrap();

    // Another replica has the tokens cached, and watches revocations.
    let replica = srv.start_replica(|c| c.jobs.enable = false).await;
    let other = Client::new(
        tonic::transport::Channel::from_shared(format!("http://{}", replica.grpc_addr()))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    for secret in expiring.values() {
        other
            .as_(secret)
            .get_me()
            .await
            .expect("works on the replica");
    }
    let mut stream = other.as_(&admin).subscribe().await;

    advance_and_run(&srv, CLEANUP, 2 * HOUR).await;
    let expired = records(&srv, &admin, EXPIRED).await;
    let ids: BTreeSet<String> = expired.iter().map(|r| r.token_id.clone()).collect();
    assert_eq!(expired.len(), 5, "one record per token: {expired:?}");
    assert_eq!(ids, expiring.keys().cloned().collect::<BTreeSet<_>>());
    for r in &expired {
        assert_eq!(r.actor_type(), pb::ActorType::Service);
        assert_eq!(r.user_id, alice.id);
        assert_eq!(r.revokes_kind(), pb::RevocationKind::AccessToken);
        assert_eq!(r.revokes_id, r.token_id);
        assert_eq!(detail(r)["expires_at"], in_an_hour);
    }

    // The tokens are gone with their sessions; the others stay.
    let left: BTreeSet<String> = srv
        .as_(&admin)
        .list_tokens_for(&alice.id)
        .await
        .unwrap()
        .user_access_tokens
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, BTreeSet::from([never, later, disabled]));
    for session in srv.as_(&admin).sessions_of(&alice.id).await {
        let minted_for = session
            .props
            .get("user_access_token_id")
            .cloned()
            .unwrap_or_default();
        assert!(
            !expiring.contains_key(&minted_for),
            "a session of a deleted token is left: {session:?}"
        );
    }

    // The other replica was told, and refuses the secrets.
    let mut revoked = BTreeSet::new();
    for _ in 0..5 {
        let event = next_revocation(&mut stream).await.expect("an event");
        assert_eq!(event.kind(), pb::RevocationKind::AccessToken);
        revoked.insert(event.subject_id);
    }
    assert_eq!(revoked, ids);
    for secret in expiring.values() {
        assert_token_refused(&other, secret).await;
    }
    assert_eq!(
        metric(
            srv.config.http_addr,
            "token_service_expired_access_tokens_deleted_total"
        )
        .await,
        5
    );
    replica.shutdown().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn two_replicas_delete_each_expired_token_once() {
    let srv = TestServer::start_with(|c| {
        fast_jobs(c);
        c.jobs.batch_size = 4;
    })
    .await;
    settle(&srv).await;
    let admin = lasting_admin(&srv).await;
    let alice = srv.token_user("alice").await;
    let replica = srv.start_replica(|c| c.jobs.enable = true).await;
    let mut tokens = BTreeSet::new();
    for round in 0..3 {
        for _ in 0..15 {
            let (id, _) = pat(&srv, &alice, Some(srv.now() + 3_600_000)).await;
            tokens.insert(id);
        }
        // Both replicas find the job due at the same moment; one takes it.
        advance_and_run(&srv, CLEANUP, 2 * HOUR).await;
        let expired = records(&srv, &admin, EXPIRED).await;
        let ids: BTreeSet<String> = expired.iter().map(|r| r.token_id.clone()).collect();
        assert_eq!(
            expired.len(),
            tokens.len(),
            "round {round}: one record per token"
        );
        assert_eq!(ids, tokens, "round {round}");
    }
    let here = metric(
        srv.config.http_addr,
        "token_service_expired_access_tokens_deleted_total",
    )
    .await;
    let there = metric(
        replica.http_addr(),
        "token_service_expired_access_tokens_deleted_total",
    )
    .await;
    assert_eq!(here + there, 45, "each token deleted by one replica");
    replica.shutdown().await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn notices_go_to_the_owner_once_per_threshold_and_out_through_webhooks() {
    let srv = TestServer::start_with(|c| {
        fast_jobs(c);
        c.webhooks.allow_private_addresses = true;
        c.webhooks.poll_interval = Span(20);
    })
    .await;
    settle(&srv).await;
    let admin = lasting_admin(&srv).await;
    let receiver = Receiver::start().await;
    srv.as_(&admin)
        .create_webhook(&receiver.url(), &[EXPIRING])
        .await
        .unwrap();
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let carol = srv.token_user("carol").await;
    let now = srv.now();

    let (in_ten_days, _) = pat(&srv, &alice, Some(now + 10 * DAY_MS)).await;
    let (in_two_days, _) = pat(&srv, &alice, Some(now + 2 * DAY_MS)).await;
    pat(&srv, &alice, None).await;
    let (disabled, _) = pat(&srv, &alice, Some(now + 2 * DAY_MS)).await;
    srv.as_(&admin).disable_token(&disabled).await.unwrap();
    // A bot's token: its owner is warned.
    let helper = srv.bot("helper", Some(&alice)).await;
    let (bots, _) = pat(&srv, &helper, Some(now + 5 * DAY_MS)).await;
    // Nobody to warn: an ownerless bot, a deactivated owner, a bot of a deactivated owner.
    let orphan = srv.bot("orphan", None).await;
    pat(&srv, &orphan, Some(now + 5 * DAY_MS)).await;
    pat(&srv, &bob, Some(now + 5 * DAY_MS)).await;
    let carols = srv.bot("carols", Some(&carol)).await;
    pat(&srv, &carols, Some(now + 5 * DAY_MS)).await;
    srv.as_(&admin).set_active(&bob.id, false).await;
    srv.as_(&admin).set_active(&carol.id, false).await;

    advance_and_run(&srv, NOTIFY, HOUR).await;
    let notices = records(&srv, &admin, EXPIRING).await;
    assert_eq!(
        notices_by_token(&notices),
        BTreeMap::from([(in_two_days.clone(), vec![3]), (bots.clone(), vec![7])]),
        "two days left is the 3-day threshold only (no catch-up); the bot's in the 7-day one"
    );
    let to_alice = notices.iter().find(|r| r.token_id == in_two_days).unwrap();
    assert_eq!(to_alice.actor_type(), pb::ActorType::Service);
    assert_eq!(to_alice.user_id, alice.id);
    assert_eq!(
        detail(to_alice),
        serde_json::json!({
            "days": 3,
            "expires_at": now + 2 * DAY_MS,
            "description": "token of alice",
            "recipient_user_id": alice.id,
            "owner_is_bot": false,
        })
    );
    let to_owner = notices.iter().find(|r| r.token_id == bots).unwrap();
    assert_eq!(
        to_owner.user_id, helper.id,
        "the record is about the bot's token"
    );
    assert_eq!(detail(to_owner)["recipient_user_id"], alice.id.as_str());
    assert_eq!(detail(to_owner)["owner_is_bot"], true);

    // Later runs in the same thresholds add nothing.
    advance_and_run(&srv, NOTIFY, HOUR).await;
    advance_and_run(&srv, NOTIFY, HOUR).await;
    assert_eq!(records(&srv, &admin, EXPIRING).await.len(), 2);

    // Three days on: the ten-day token enters the 7-day threshold, the bot's the 3-day one;
    // the two-day token has expired (no notice).
    advance_and_run(&srv, NOTIFY, Duration::from_secs(3 * 86_400)).await;
    let notices = records(&srv, &admin, EXPIRING).await;
    assert_eq!(
        notices_by_token(&notices),
        BTreeMap::from([
            (in_two_days.clone(), vec![3]),
            (bots.clone(), vec![7, 3]),
            (in_ten_days.clone(), vec![7]),
        ])
    );

    // The webhook delivered each notice, as the record.
    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    let mut delivered: Vec<(String, i64)> = got
        .iter()
        .map(|m| {
            assert_eq!(m.action(), EXPIRING);
            (
                m.json["data"]["token_id"].as_str().unwrap().to_owned(),
                m.json["data"]["detail"]["days"].as_i64().unwrap(),
            )
        })
        .collect();
    delivered.sort();
    let mut expected = vec![
        (in_two_days, 3),
        (bots.clone(), 7),
        (bots, 3),
        (in_ten_days, 7),
    ];
    expected.sort();
    assert_eq!(delivered, expected);
    assert_eq!(
        got[0].json["data"]["detail"]["recipient_user_id"],
        alice.id.as_str()
    );
    srv.stop().await;
}

#[tokio::test]
async fn with_user_tokens_switched_off_only_bot_tokens_are_noticed() {
    let srv = TestServer::start_with(|c| {
        fast_jobs(c);
        c.enable_user_access_tokens = false;
    })
    .await;
    settle(&srv).await;
    let admin = lasting_admin(&srv).await;
    let alice = srv.token_user("alice").await;
    let helper = srv.bot("helper", Some(&alice)).await;
    let now = srv.now();
    pat(&srv, &alice, Some(now + 2 * DAY_MS)).await;
    let (bots, _) = pat(&srv, &helper, Some(now + 2 * DAY_MS)).await;
    advance_and_run(&srv, NOTIFY, HOUR).await;
    let notices = records(&srv, &admin, EXPIRING).await;
    assert_eq!(
        notices_by_token(&notices),
        BTreeMap::from([(bots, vec![3])]),
        "a user's token does not authenticate while user tokens are off; a bot's does"
    );
    srv.stop().await;
}

#[tokio::test]
async fn notices_are_recorded_once_across_replicas_and_restarts() {
    // Only the replicas run jobs; the test server serves the fixtures and the clock.
    let srv = TestServer::start_with(|c| {
        fast_jobs(c);
        c.jobs.enable = false;
        c.jobs.batch_size = 3;
    })
    .await;
    let admin = lasting_admin(&srv).await;
    let alice = srv.token_user("alice").await;
    let now = srv.now();
    let mut tokens = BTreeSet::new();
    for i in 0..10 {
        let (id, _) = pat(&srv, &alice, Some(now + 6 * DAY_MS + i * 60_000)).await;
        tokens.insert(id);
    }
    let first = srv.start_replica(|c| c.jobs.enable = true).await;
    let second = srv.start_replica(|c| c.jobs.enable = true).await;
    let once_at_7 = |records: &[pb::LifecycleRecord], expected: Vec<i64>| {
        let by_token = notices_by_token(records);
        assert_eq!(
            by_token.keys().cloned().collect::<BTreeSet<_>>(),
            tokens,
            "every token noticed"
        );
        for (token, days) in by_token {
            assert_eq!(days, expected, "token {token}");
        }
    };
    for _ in 0..3 {
        advance_and_run(&srv, NOTIFY, HOUR).await;
        once_at_7(&records(&srv, &admin, EXPIRING).await, vec![7]);
    }

    // A restart: the replicas stop, a new one starts on the same database.
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    let restarted = srv.start_replica(|c| c.jobs.enable = true).await;
    advance_and_run(&srv, NOTIFY, HOUR).await;
    once_at_7(&records(&srv, &admin, EXPIRING).await, vec![7]);
    advance_and_run(&srv, NOTIFY, Duration::from_secs(3 * 86_400)).await;
    advance_and_run(&srv, NOTIFY, HOUR).await;
    once_at_7(&records(&srv, &admin, EXPIRING).await, vec![7, 3]);
    assert_eq!(
        metric(
            srv.config.http_addr,
            "token_service_job_runs_total{job=\"notify_expiring_access_tokens\"}"
        )
        .await,
        0,
        "jobs.enable = false runs nothing"
    );
    restarted.shutdown().await.unwrap();
    srv.stop().await;
}

/// Whether a lease owner name (`<host>-<pid>-<random>`) is `pid`'s.
fn owned_by(owner: &str, pid: u32) -> bool {
    owner.contains(&format!("-{pid}-"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holders_run_is_taken_over_and_no_token_is_recorded_twice() {
    let srv = TestServer::start_with(|c| c.jobs.enable = false).await;
    let admin = lasting_admin(&srv).await;
    // An ownerless bot is exempt from the expiry rules, so its tokens may have expired
    // already (the processes run on the wall clock).
    let bot = srv.bot("reaper-food", None).await;
    const TOKENS: usize = 400;
    let mut tokens = BTreeSet::new();
    for _ in 0..TOKENS {
        let (id, _) = pat(&srv, &bot, Some(srv.now() - 1_000)).await;
        tokens.insert(id);
    }
    let settings = [
        ("TOKEN_SERVICE_JOBS__POLL_INTERVAL", "20ms"),
        ("TOKEN_SERVICE_JOBS__BATCH_SIZE", "1"),
        ("TOKEN_SERVICE_JOBS__LEASE", "2s"),
    ];
    let mut replicas = [
        ReplicaProcess::start_with_env(&srv, &settings),
        ReplicaProcess::start_with_env(&srv, &settings),
    ];

    // Mid-run: kill whichever replica holds the lease.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = srv
            .as_(&admin)
            .list_audit(pb::ListAuditRecordsRequest {
                actions: vec![EXPIRED.to_owned()],
                page_size: Some(20),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.records.len() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the cleanup never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let owner = job(&srv, CLEANUP).await.lease_owner;
    let holder = replicas
        .iter()
        .position(|r| owned_by(&owner, r.pid()))
        .unwrap_or_else(|| panic!("a replica holds the lease mid-run: {owner:?}"));
    replicas[holder].kill();
    let done_before = records(&srv, &admin, EXPIRED).await.len();
    assert!(
        done_before < TOKENS,
        "the run was still going when its holder died"
    );

    // The survivor takes the unfinished run over once the lease lapses, and finishes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let expired = loop {
        let expired = records(&srv, &admin, EXPIRED).await;
        if expired.len() >= TOKENS {
            break expired;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {TOKENS} tokens were deleted after the kill",
            expired.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ids: BTreeSet<String> = expired.iter().map(|r| r.token_id.clone()).collect();
    assert_eq!(expired.len(), TOKENS, "no token recorded twice");
    assert_eq!(ids, tokens);
    let survivor = &replicas[1 - holder];
    assert!(
        survivor
            .metric("token_service_expired_access_tokens_deleted_total")
            .await
            > 0,
        "the survivor deleted the rest"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = job(&srv, CLEANUP).await;
        if state.lease_owner.is_empty() && state.last_finished_at >= state.last_started_at {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run never finished: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing is left of the bot's tokens.
    let left = srv
        .as_(&admin)
        .list_tokens_for(&bot.id)
        .await
        .unwrap()
        .user_access_tokens;
    assert!(left.is_empty(), "{left:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_replica_shutting_down_mid_run_hands_the_rest_over_at_once() {
    // The clock stands still: a lease could only lapse if the test moved it, so the second
    // replica can take the run over only because the first one handed it over.
    let srv = TestServer::start_with(|c| c.jobs.enable = false).await;
    let admin = lasting_admin(&srv).await;
    let bot = srv.bot("reaper-food", None).await;
    const TOKENS: usize = 600;
    let mut tokens = BTreeSet::new();
    for _ in 0..TOKENS {
        let (id, _) = pat(&srv, &bot, Some(srv.now() - 1_000)).await;
        tokens.insert(id);
    }
    let settings = |c: &mut Config| {
        c.jobs.enable = true;
        c.jobs.batch_size = 1;
        c.jobs.poll_interval = Span(20);
    };
    let first = srv.start_replica(settings).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while records(&srv, &admin, EXPIRED).await.len() < 10 {
        assert!(Instant::now() < deadline, "the cleanup never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = srv.start_replica(settings).await;
    first.shutdown().await.unwrap();
    let handed_over = job(&srv, CLEANUP).await;
    assert!(
        !handed_over.lease_owner.is_empty() && handed_over.last_finished_at == 0,
        "the first replica left an unfinished run: {handed_over:?}"
    );
    assert!(
        records(&srv, &admin, EXPIRED).await.len() < TOKENS,
        "the run was still going when the first replica stopped"
    );

    let state = wait_for_run(&srv, CLEANUP, handed_over.last_started_at).await;
    assert!(state.last_finished_at > 0, "{state:?}");
    let expired = records(&srv, &admin, EXPIRED).await;
    let ids: BTreeSet<String> = expired.iter().map(|r| r.token_id.clone()).collect();
    assert_eq!(expired.len(), TOKENS, "no token recorded twice");
    assert_eq!(ids, tokens);
    assert!(
        metric(
            second.http_addr(),
            "token_service_expired_access_tokens_deleted_total"
        )
        .await
            > 0,
        "the second replica deleted the rest"
    );
    second.shutdown().await.unwrap();
    srv.stop().await;
}
