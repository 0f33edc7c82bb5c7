//! WatchEvents: every record of the lifecycle log as a stream. What each kind of change
//! sends and in which order, the filters, resuming after a record id (and from a pruned
//! position), who may subscribe, how a stream ends (shutdown, the subscriber's own credential
//! revoked, the permission lost), a subscriber that does not read, and two replicas (by
//! polling, and on PostgreSQL by notification); and the REST mirror.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::Value;
use token_service::{
    domain::{access_tokens, caller::Caller, ids::new_id, sessions},
    pb,
};
use tonic::{Code, Streaming};

use crate::common::*;

/// The grace period the test servers run with (see `TestServer::start_with`).
const GRACE: Duration = Duration::from_secs(5);

fn query(after_event_id: Option<i64>, actions: &[&str], user_id: &str) -> pb::WatchEventsRequest {
    pb::WatchEventsRequest {
        after_event_id,
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        user_id: user_id.to_owned(),
    }
}

/// The next `n` records of `stream`.
async fn next_events(
    stream: &mut Streaming<pb::WatchEventsResponse>,
    n: usize,
) -> Vec<pb::LifecycleRecord> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let record = next_event(stream)
            .await
            .unwrap_or_else(|e| panic!("record {i} of {n} (after {out:#?}): {e:?}"));
        out.push(record);
    }
    out
}

fn actions(records: &[pb::LifecycleRecord]) -> Vec<&str> {
    records.iter().map(|r| r.action.as_str()).collect()
}

fn ids(records: &[pb::LifecycleRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

/// `GET /api/v4/tokens/events?<query>` as `token`: the status and the JSON body.
async fn rest_events(srv: &TestServer, token: &str, query: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v4/tokens/events?{query}", srv.http_base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn every_kind_of_change_arrives_in_order_with_its_fields() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut stream = srv.as_(&admin).subscribe_events().await;
    let as_admin = srv.as_(&admin);
    let as_alice = srv.as_(&alice);

    let erin = as_admin
        .create_user(pb::CreateUserRequest {
            username: "erin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();
    as_admin
        .update_user_roles(&erin.id, &["system_user", "system_user_access_token"])
        .await
        .unwrap();
    let (token_id, secret) = as_alice.new_token("me").await;
    as_alice.disable_token(&token_id).await.unwrap();
    as_alice.enable_token(&token_id).await.unwrap();
    as_alice.revoke_token(&token_id).await.unwrap();
    let login = as_admin.login(&erin.id).await;
    let session_id = login.session.unwrap().id;
    as_admin
        .revoke_session(&erin.id, &session_id)
        .await
        .unwrap();
    as_admin.revoke_all_sessions(&erin.id).await.unwrap();
    as_admin.set_active(&erin.id, false).await;
    as_admin.set_active(&erin.id, true).await;
    let team = new_id();
    as_admin
        .add_team_member(&team, &alice.id, &[])
        .await
        .unwrap();
    let command = as_admin
        .create_command(pb::CreateCommandRequest {
            team_id: team.clone(),
            trigger: "deploy".into(),
            url: "https://hooks.example.com/deploy".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let command_id = command.command.unwrap().id;
    as_admin.regen_command_token(&command_id).await.unwrap();

    let records = next_events(&mut stream, 14).await;
    assert_eq!(
        actions(&records),
        [
            "user.created",
            "user.roles_changed",
            "access_token.created",
            "access_token.disabled",
            "access_token.enabled",
            "access_token.revoked",
            "session.created",
            "session.revoked",
            "user.sessions_revoked",
            "user.deactivated",
            "user.reactivated",
            "team_member.added",
            "command.created",
            "command.token_regenerated",
        ],
        "{records:#?}"
    );
    let mut sorted = ids(&records);
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids(&records), "ids increase");

    // Every field, on the records that carry it.
    for record in &records {
        assert!(record.create_at.is_some(), "{record:?}");
        assert_eq!(record.actor_type(), pb::ActorType::User, "{record:?}");
        assert_eq!(record.ip, "127.0.0.1", "{record:?}");
        assert!(!record.user_agent.is_empty(), "{record:?}");
        assert!(!record.request_id.is_empty(), "{record:?}");
        let detail: Value = serde_json::from_str(&record.detail).expect("detail is JSON");
        assert!(detail.is_object(), "{record:?}");
    }
    let by_alice = [2, 3, 4, 5];
    for (i, record) in records.iter().enumerate() {
        let actor = if by_alice.contains(&i) {
            &alice.id
        } else {
            &admin.id
        };
        assert_eq!(&record.actor_id, actor, "{record:?}");
    }
    assert_eq!(records[0].user_id, erin.id);
    assert_eq!(
        serde_json::from_str::<Value>(&records[0].detail).unwrap()["username"],
        "erin"
    );
    let created = &records[2];
    assert_eq!(
        (created.user_id.as_str(), created.token_id.as_str()),
        (alice.id.as_str(), token_id.as_str())
    );
    assert_eq!(
        created.credential_hmac,
        srv.ctx.audit_key().credential_hmac(&secret),
        "the created token is named by its HMAC under the audit key"
    );
    assert!(!records[2].detail.contains(&secret), "never the secret");
    assert_eq!(
        created.revokes_kind(),
        pb::RevocationKind::Unspecified,
        "creating takes nothing away"
    );
    for i in [3, 5] {
        assert_eq!(
            (records[i].revokes_kind(), records[i].revokes_id.as_str()),
            (pb::RevocationKind::AccessToken, token_id.as_str())
        );
    }
    assert_eq!(
        records[4].revokes_kind(),
        pb::RevocationKind::Unspecified,
        "enabling takes nothing away"
    );
    assert_eq!(records[6].session_id, session_id);
    assert!(!records[6].credential_hmac.is_empty());
    assert_eq!(
        (records[7].revokes_kind(), records[7].revokes_id.as_str()),
        (pb::RevocationKind::Session, session_id.as_str())
    );
    for i in [1, 8, 9] {
        assert_eq!(
            (records[i].revokes_kind(), records[i].revokes_id.as_str()),
            (pb::RevocationKind::User, erin.id.as_str()),
            "{:?}",
            records[i]
        );
    }
    assert_eq!(
        (records[11].user_id.as_str(), records[11].team_id.as_str()),
        (alice.id.as_str(), team.as_str())
    );
    for record in &records[12..14] {
        assert_eq!(
            (record.command_id.as_str(), record.team_id.as_str()),
            (command_id.as_str(), team.as_str())
        );
        assert!(!record.credential_hmac.is_empty());
    }

    // Nothing else was sent: the next record is one made now, by the operator.
    let bob = srv.basic_user("bob").await;
    let fixture = next_event(&mut stream).await.unwrap();
    assert_eq!(
        (fixture.action.as_str(), fixture.user_id.as_str()),
        ("user.created", bob.id.as_str())
    );
    assert_eq!(fixture.actor_type(), pb::ActorType::Operator);
    assert!(fixture.actor_id.is_empty() && fixture.ip.is_empty());

    // The REST mirror returns the same records, every field in the public JSON shape.
    let (status, json) = rest_events(
        &srv,
        &admin.token,
        &format!("after_event_id={}", records[0].id - 1),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let listed = json.as_array().unwrap();
    let listed_ids: Vec<i64> = listed.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    let mut expected = ids(&records);
    expected.push(fixture.id);
    // The fixture's login session of bob follows.
    assert_eq!(listed_ids[..expected.len()], expected[..]);
    let rest_created = &listed[2];
    assert_eq!(rest_created["action"], "access_token.created");
    assert_eq!(rest_created["token_id"], token_id.as_str());
    assert_eq!(rest_created["actor"]["type"], "user");
    assert_eq!(rest_created["actor"]["id"], alice.id.as_str());
    assert_eq!(rest_created["credential_hmac"], created.credential_hmac);
    assert_eq!(rest_created["request_id"], created.request_id);
    assert_eq!(listed[3]["revokes"]["kind"], "access_token");
    assert!(rest_created["detail"].is_object());
    srv.stop().await;
}

#[tokio::test]
async fn the_stream_filters_by_action_and_by_user() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let as_admin = srv.as_(&admin);
    let mut created_or_revoked = as_admin
        .watch_events(query(
            None,
            &["access_token.created", "access_token.revoked"],
            "",
        ))
        .await
        .unwrap();
    let mut about_bob = as_admin
        .watch_events(query(None, &[], &bob.id))
        .await
        .unwrap();
    let mut bobs_revocations = as_admin
        .watch_events(query(None, &["access_token.revoked"], &bob.id))
        .await
        .unwrap();

    let (alices, _) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice).disable_token(&alices).await.unwrap();
    srv.as_(&alice).revoke_token(&alices).await.unwrap();
    let (bobs, _) = srv.as_(&bob).new_token("me").await;
    srv.as_(&bob).disable_token(&bobs).await.unwrap();
    srv.as_(&bob).revoke_token(&bobs).await.unwrap();
    // Last records the streams show, so whatever a stream skipped would have come first.
    let team = new_id();
    as_admin.add_team_member(&team, &bob.id, &[]).await.unwrap();
    let (last, _) = srv.as_(&alice).new_token("me").await;

    let got = next_events(&mut created_or_revoked, 5).await;
    assert_eq!(
        got.iter()
            .map(|r| (r.action.as_str(), r.token_id.as_str()))
            .collect::<Vec<_>>(),
        [
            ("access_token.created", alices.as_str()),
            ("access_token.revoked", alices.as_str()),
            ("access_token.created", bobs.as_str()),
            ("access_token.revoked", bobs.as_str()),
            ("access_token.created", last.as_str()),
        ]
    );
    let got = next_events(&mut about_bob, 4).await;
    assert_eq!(
        actions(&got),
        [
            "access_token.created",
            "access_token.disabled",
            "access_token.revoked",
            "team_member.added"
        ]
    );
    assert!(got.iter().all(|r| r.user_id == bob.id), "{got:#?}");
    let only = next_event(&mut bobs_revocations).await.unwrap();
    assert_eq!(
        (only.action.as_str(), only.token_id.as_str()),
        ("access_token.revoked", bobs.as_str())
    );
    // What the filter hides is skipped: the next record sent is Bob's next revocation.
    srv.as_(&bob).new_token("me").await;
    let (bobs_second, _) = srv.as_(&bob).new_token("me").await;
    srv.as_(&bob).revoke_token(&bobs_second).await.unwrap();
    assert_eq!(
        next_event(&mut bobs_revocations).await.unwrap().token_id,
        bobs_second
    );

    // The REST mirror applies the same filters, repeated or comma-separated.
    let (status, json) = rest_events(
        &srv,
        &admin.token,
        &format!(
            "actions=access_token.disabled&actions=team_member.added,access_token.enabled&user_id={}",
            bob.id
        ),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let listed: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["access_token.disabled", "team_member.added"]);
    srv.stop().await;
}

#[tokio::test]
async fn resuming_after_an_id_replays_exactly_what_followed() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.as_(&alice);
    let mut stream = srv.as_(&admin).subscribe_events().await;
    let (first_token, _) = as_alice.new_token("me").await;
    let first = next_event(&mut stream).await.unwrap();
    assert_eq!(first.token_id, first_token);
    drop(stream);

    // Changes while no one watches.
    as_alice.disable_token(&first_token).await.unwrap();
    let (second_token, _) = as_alice.new_token("me").await;
    as_alice.revoke_token(&first_token).await.unwrap();

    let mut resumed = srv
        .as_(&admin)
        .watch_events(query(Some(first.id), &[], ""))
        .await
        .unwrap();
    let missed = next_events(&mut resumed, 3).await;
    assert_eq!(
        missed
            .iter()
            .map(|r| (r.action.as_str(), r.token_id.as_str()))
            .collect::<Vec<_>>(),
        [
            ("access_token.disabled", first_token.as_str()),
            ("access_token.created", second_token.as_str()),
            ("access_token.revoked", first_token.as_str()),
        ]
    );
    assert!(missed[0].id > first.id);
    // Then the stream goes on with what happens next, nothing twice.
    as_alice.revoke_token(&second_token).await.unwrap();
    let next = next_event(&mut resumed).await.unwrap();
    assert_eq!(
        (next.action.as_str(), next.token_id.as_str()),
        ("access_token.revoked", second_token.as_str())
    );
    assert!(next.id > missed[2].id);

    // Resuming from the newest record sends only what comes after it.
    let mut at_the_end = srv
        .as_(&admin)
        .watch_events(query(Some(next.id), &[], ""))
        .await
        .unwrap();
    let (third_token, _) = as_alice.new_token("me").await;
    assert_eq!(
        next_event(&mut at_the_end).await.unwrap().token_id,
        third_token
    );

    // The REST mirror from the same position: the same records.
    let (status, json) =
        rest_events(&srv, &admin.token, &format!("after_event_id={}", first.id)).await;
    assert_eq!(status, 200, "{json}");
    let listed: Vec<i64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        listed[..4],
        [missed[0].id, missed[1].id, missed[2].id, next.id]
    );
    srv.stop().await;
}

#[tokio::test]
async fn subscribers_need_the_permission_and_a_valid_request() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let gateway = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let admin = srv.admin("root").await;
    assert_denied(
        srv.as_(&alice).watch_events(query(None, &[], "")).await,
        "introspect_token",
    );
    let (status, json) = rest_events(&srv, &alice.token, "").await;
    assert_eq!(status, 403, "{json}");
    srv.as_(&gateway)
        .watch_events(query(None, &[], ""))
        .await
        .expect("the introspection role may subscribe");
    srv.as_(&admin)
        .watch_events(query(None, &[], ""))
        .await
        .expect("manage_system may subscribe");

    let as_gateway = srv.as_(&gateway);
    assert_invalid(
        as_gateway.watch_events(query(Some(-1), &[], "")).await,
        "after_event_id",
        "api.context.invalid_url_param.app_error",
    );
    let unknown = as_gateway
        .watch_events(query(None, &["access_token.created", "token.stolen"], ""))
        .await;
    assert_invalid(
        unknown,
        "actions",
        "api.context.invalid_url_param.app_error",
    );
    let unknown = as_gateway
        .watch_events(query(None, &["token.stolen"], ""))
        .await
        .unwrap_err();
    assert!(
        unknown.message().contains("token.stolen"),
        "the error names the action: {unknown:?}"
    );
    assert_invalid(
        as_gateway.watch_events(query(None, &[], "me")).await,
        "user_id",
        "api.context.invalid_url_param.app_error",
    );
    for bad in [
        "after_event_id=-1",
        "after_event_id=x",
        "actions=nope",
        "user_id=short",
    ] {
        let (status, json) = rest_events(&srv, &gateway.token, bad).await;
        assert_eq!(status, 400, "{bad}: {json}");
        assert_eq!(json["id"], "api.context.invalid_url_param.app_error");
    }
    srv.stop().await;
}

#[tokio::test]
async fn resuming_from_a_pruned_position_is_out_of_range() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let as_admin = srv.as_(&admin);
    let mut stream = as_admin.subscribe_events().await;
    for _ in 0..3 {
        srv.as_(&alice).new_token("me").await;
    }
    let records = next_events(&mut stream, 3).await;
    drop(stream);

    let pruned = srv
        .ctx
        .store()
        .prune_log(srv.now() + 1, 1_000)
        .await
        .unwrap();
    assert!(pruned >= 3, "pruned {pruned}");
    let gone = as_admin
        .watch_events(query(Some(records[0].id), &[], ""))
        .await
        .expect_err("records after it are gone");
    assert_eq!(gone.code(), Code::OutOfRange, "{gone:?}");
    assert_eq!(error_id(&gone), "token_service.revocation_log.pruned");
    let mut resumed = as_admin
        .watch_events(query(Some(records[2].id), &[], ""))
        .await
        .expect("resuming from the newest pruned record loses nothing");
    let (token_id, _) = srv.as_(&alice).new_token("me").await;
    assert_eq!(next_event(&mut resumed).await.unwrap().token_id, token_id);

    let (status, json) = rest_events(
        &srv,
        &admin.token,
        &format!("after_event_id={}", records[0].id),
    )
    .await;
    assert_eq!(status, 410, "{json}");
    assert_eq!(json["id"], "token_service.revocation_log.pruned");
    // Without a position (or with 0) the mirror lists from the oldest record kept.
    for position in ["", "after_event_id=0"] {
        let (status, json) = rest_events(&srv, &admin.token, position).await;
        assert_eq!(status, 200, "{position}: {json}");
        let listed: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["token_id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, [token_id.as_str()], "{position}: {json}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn an_open_stream_ends_with_unavailable_when_the_log_cannot_be_read() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let mut stream = srv.as_(&admin).subscribe_events().await;
    let url = srv.config.database_url.as_ref().unwrap().expose();
    let db = sea_orm::Database::connect(url).await.unwrap();
    db.execute_unprepared("ALTER TABLE lifecycle_log RENAME TO lifecycle_log_away")
        .await
        .unwrap();
    let ended = tokio::time::timeout(GRACE, stream.message())
        .await
        .expect("the stream ends when the replica's feed cannot read the log")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert_eq!(error_id(&ended), "token_service.database_unavailable");
    db.execute_unprepared("ALTER TABLE lifecycle_log_away RENAME TO lifecycle_log")
        .await
        .unwrap();
    // With the log back, a new subscription works and sees what happens next.
    let deadline = Instant::now() + GRACE;
    let mut stream = loop {
        match srv.as_(&admin).watch_events(query(None, &[], "")).await {
            Ok(stream) => break stream,
            Err(e) => assert!(Instant::now() < deadline, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let bob = srv.basic_user("bob").await;
    assert_eq!(next_event(&mut stream).await.unwrap().user_id, bob.id);
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn an_open_stream_ends_with_unavailable_when_shutdown_begins() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let mut stream = client.as_(&admin).subscribe_events().await;
    client.as_(&alice).new_token("me").await;
    next_event(&mut stream).await.expect("a record");

    srv.trigger_shutdown();
    let shutdown_began = Instant::now();
    let end = tokio::time::timeout(GRACE, stream.message())
        .await
        .expect("the stream ends within the grace period");
    let status = end.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_id(&status), "token_service.shutting_down");
    srv.stop().await;
    assert!(
        shutdown_began.elapsed() < GRACE,
        "the open stream did not hold the server until the grace period ran out"
    );
}

#[tokio::test]
async fn a_subscriber_whose_own_credential_is_revoked_gets_that_record_then_the_stream_ends() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let gateway = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    // One stream sees every record; the other's filter hides the revocation.
    let mut everything = srv.as_(&gateway).subscribe_events().await;
    let mut only_creations = srv
        .as_(&gateway)
        .watch_events(query(None, &["access_token.created"], ""))
        .await
        .unwrap();
    srv.as_(&admin)
        .revoke_all_sessions(&gateway.id)
        .await
        .unwrap();
    let record = next_event(&mut everything)
        .await
        .expect("the record comes first");
    assert_eq!(
        (record.action.as_str(), record.user_id.as_str()),
        ("user.sessions_revoked", gateway.id.as_str())
    );
    for stream in [&mut everything, &mut only_creations] {
        let ended = next_event(stream).await.expect_err("then the stream ends");
        assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    }

    // A personal access token of the subscriber, revoked.
    let service = srv.token_user("service").await;
    srv.as_(&admin)
        .update_user_roles(
            &service.id,
            &[
                "system_user",
                "system_user_access_token",
                "system_token_introspector",
            ],
        )
        .await
        .unwrap();
    let (token_id, secret) = srv.as_(&service).new_token("me").await;
    let mut by_token = srv.as_(&secret).subscribe_events().await;
    srv.as_(&service).revoke_token(&token_id).await.unwrap();
    let record = next_event(&mut by_token).await.unwrap();
    assert_eq!(
        (record.action.as_str(), record.token_id.as_str()),
        ("access_token.revoked", token_id.as_str())
    );
    let ended = next_event(&mut by_token)
        .await
        .expect_err("the stream ends");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_loses_the_permission_is_cut_off_but_not_for_other_changes() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let gateway = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let mut stream = srv.as_(&gateway).subscribe_events().await;
    let set_roles = async |roles: &[&str]| {
        srv.as_(&admin)
            .update_user_roles(&gateway.id, roles)
            .await
            .unwrap()
    };
    set_roles(&[
        "system_user",
        "system_token_introspector",
        "system_user_access_token",
    ])
    .await;
    let kept = next_event(&mut stream).await.unwrap();
    assert_eq!(kept.action, "user.roles_changed");
    set_roles(&["system_user"]).await;
    let lost = next_event(&mut stream).await.unwrap();
    assert_eq!(
        (lost.action.as_str(), lost.user_id.as_str()),
        ("user.roles_changed", gateway.id.as_str())
    );
    let ended = next_event(&mut stream).await.expect_err("the stream ends");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    srv.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_does_not_read_holds_up_no_one() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    // On connections of their own (HTTP/2 flow control is per connection as well); the
    // stalled one with tiny windows, so the server soon cannot send it anything more.
    let stalled_channel = tonic::transport::Channel::from_shared(srv.endpoint())
        .unwrap()
        .initial_stream_window_size(Some(1_024))
        .initial_connection_window_size(Some(1_024))
        .connect()
        .await
        .unwrap();
    let mut stalled = Client::new(stalled_channel)
        .as_(&admin)
        .subscribe_events()
        .await;
    let mut reader = srv.client().await.as_(&admin).subscribe_events().await;
    // More than the stalled stream's buffers hold (its channel of 256 records, one encoded
    // chunk of at most 32 KiB, the 1 KiB windows), so its task waits to send.
    let n = 600;
    let mut made = Vec::with_capacity(n);
    for _ in 0..n {
        let created = access_tokens::create_user_access_token(
            &srv.ctx,
            &Caller::Local,
            access_tokens::NewUserAccessToken {
                user_id: alice.id.clone(),
                description: "bulk".into(),
                expires_at: None,
                restrictions: Default::default(),
            },
        )
        .await
        .unwrap();
        made.push(created.token.id.to_string());
    }
    let got = next_events(&mut reader, n).await;
    assert_eq!(
        got.iter().map(|r| r.token_id.clone()).collect::<Vec<_>>(),
        made
    );
    // The feed went on as well: a revocation by another writer (the fixture context, like
    // another replica) still reaches the reader and the server's cache.
    for _ in 0..2 {
        srv.as_(&alice).get_me().await.expect("cached");
    }
    sessions::revoke_all_sessions(&srv.ctx, &Caller::Local, &alice.id)
        .await
        .unwrap();
    let record = next_event(&mut reader).await.unwrap();
    assert_eq!(
        (record.action.as_str(), record.user_id.as_str()),
        ("user.sessions_revoked", alice.id.as_str())
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.as_(&alice).get_me().await.is_ok() {
        assert!(Instant::now() < deadline, "the feed applied the revocation");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stalled subscriber lost nothing either: it reads everything, in order, late.
    let late = next_events(&mut stalled, n).await;
    assert_eq!(
        late.iter().map(|r| r.token_id.clone()).collect::<Vec<_>>(),
        made
    );
    srv.stop().await;
}

/// Creates a token on `on` as `who` and waits until `stream` (on another replica) shows its
/// record; returns the time that took.
async fn created_and_seen(
    on: &Client,
    who: &Actor,
    stream: &mut Streaming<pb::WatchEventsResponse>,
) -> Duration {
    let (token_id, _) = on.as_(who).new_token("me").await;
    let start = Instant::now();
    let record = next_event(stream).await.expect("the record arrives");
    assert_eq!(
        (record.action.as_str(), record.token_id.as_str()),
        ("access_token.created", token_id.as_str())
    );
    start.elapsed()
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_a_subscriber_on_the_other() {
    let srv = TestServer::start().await;
    let replica = ReplicaProcess::start(&srv);
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let a = srv.client().await;
    let b = replica.client().await;
    replica.wait_until_caught_up().await;

    let mut on_b = b.as_(&admin).subscribe_events().await;
    let mut on_a = a.as_(&admin).subscribe_events().await;
    let lag = created_and_seen(&a, &alice, &mut on_b).await;
    eprintln!("a record made on A reached a subscriber on B after {lag:?}");
    next_event(&mut on_a).await.unwrap();
    created_and_seen(&b, &alice, &mut on_a).await;
    next_event(&mut on_b).await.unwrap();
    // A revoking change too, in order with the rest.
    let (token_id, _) = a.as_(&alice).new_token("me").await;
    b.as_(&alice).revoke_token(&token_id).await.unwrap();
    for stream in [&mut on_a, &mut on_b] {
        let got = next_events(stream, 2).await;
        assert_eq!(
            actions(&got),
            ["access_token.created", "access_token.revoked"]
        );
        assert!(got.iter().all(|r| r.token_id == token_id));
    }
    drop(replica);
    srv.stop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL (TEST_DATABASE_URL=postgres://...); .ci/run runs it"]
async fn a_record_that_revokes_nothing_reaches_another_replica_by_notification() {
    let srv = TestServer::start().await;
    assert_eq!(
        srv.backend(),
        "postgres",
        "this test needs TEST_DATABASE_URL=postgres://..."
    );
    // The subscriber's replica reads the log every minute at most, unless notified.
    let replica = ReplicaProcess::start_with_env(
        &srv,
        &[("TOKEN_SERVICE_REVOCATION_POLL_INTERVAL_MS", "60000")],
    );
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let a = srv.client().await;
    let b = replica.client().await;
    replica.wait_until_caught_up().await;
    let mut on_b = b.as_(&admin).subscribe_events().await;
    // The first may be read with the subscriber's backlog; the second only on a wakeup.
    created_and_seen(&a, &alice, &mut on_b).await;
    let lag = created_and_seen(&a, &alice, &mut on_b).await;
    eprintln!("a token.created record reached the other replica after {lag:?}");
    assert!(
        lag < Duration::from_secs(5),
        "only a notification can wake the other replica this soon: {lag:?}"
    );
    drop(replica);
    srv.stop().await;
}
