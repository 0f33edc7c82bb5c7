//! The audit trail over gRPC: every change leaves a record naming its actor, its subjects,
//! the client's address, user agent and request id; ListAuditRecords filters and pages them
//! (a cursor stays stable while records are appended); ComputeAuditHash finds a credential's
//! records by its HMAC; VerifyAuditLog finds an edited, a deleted and a truncated log, and
//! still verifies after retention pruned the oldest records.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use token_service::{
    domain::lifecycle::{Origin, StoredRecord, Subjects},
    pb::{self, token_service_client::TokenServiceClient},
};
use tonic::{Code, transport::Endpoint};

use crate::common::*;

/// A direct connection to the test server's database (to tamper with it).
async fn database(srv: &TestServer) -> DatabaseConnection {
    let url = srv.config.database_url.as_ref().unwrap().expose();
    Database::connect(url)
        .await
        .expect("connect to the test database")
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The log's control row: (newest id, newest hash).
async fn head(db: &DatabaseConnection) -> (i64, String) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT value FROM service_meta WHERE name = 'lifecycle_log'",
        ))
        .await
        .unwrap()
        .expect("the control row");
    let value: String = row.try_get("", "value").unwrap();
    let (id, hash) = value.split_once(' ').unwrap();
    (id.parse().unwrap(), hash.to_owned())
}

/// Appends a record the way the service does (the next id, its hash chained under the
/// audit key, the control row moved), as a newer version or a job of this one would write
/// it: with an action and actor of the caller's choosing.
async fn append_raw(srv: &TestServer, db: &DatabaseConnection, action: &str, actor: &str) -> i64 {
    let (newest, newest_hash) = head(db).await;
    let mut record = StoredRecord {
        id: newest + 1,
        create_at: srv.now(),
        action: action.to_owned(),
        actor_type: actor.to_owned(),
        subjects: Subjects::default(),
        origin: Origin::default(),
        detail: r#"{"written_by":"test"}"#.to_owned(),
        ..StoredRecord::default()
    };
    record.hash = record.chained_hash(srv.ctx.audit_key(), &newest_hash);
    execute(
        db,
        &format!(
            "INSERT INTO lifecycle_log (id, create_at, action, actor_type, actor_id, user_id, \
             token_id, session_id, command_id, team_id, webhook_id, ip, user_agent, request_id, \
             detail, credential_hmac, revokes, revokes_id, hash) VALUES ({}, {}, '{}', '{}', \
             '', '', '', '', '', '', '', '', '', '', '{}', '', '', '', '{}')",
            record.id,
            record.create_at,
            record.action,
            record.actor_type,
            record.detail,
            record.hash
        ),
    )
    .await;
    execute(
        db,
        &format!(
            "UPDATE service_meta SET value = '{} {}' WHERE name = 'lifecycle_log'",
            record.id, record.hash
        ),
    )
    .await;
    record.id
}

fn filter() -> pb::ListAuditRecordsRequest {
    pb::ListAuditRecordsRequest::default()
}

fn ids(records: &[pb::LifecycleRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

/// The actor as the JSON shape names it: ("user", id), ("operator", ""), ...
fn actor(record: &pb::LifecycleRecord) -> (String, String) {
    let kind = match pb::ActorType::try_from(record.actor_type) {
        Ok(pb::ActorType::User) => "user",
        Ok(pb::ActorType::Operator) => "operator",
        Ok(pb::ActorType::Service) => "service",
        _ => "unknown",
    };
    (kind.to_owned(), record.actor_id.clone())
}

#[tokio::test]
async fn every_change_is_recorded_with_its_actor_subjects_and_origin() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let channel = Endpoint::from_shared(srv.endpoint())
        .unwrap()
        .user_agent("audit-test/1.0")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = TokenServiceClient::new(channel);
    let as_admin = client.as_(&admin);
    let before = as_admin.audit_records(filter()).await;
    // The fixtures were made by the operator (the domain, as `token-service admin` does).
    assert!(
        before.iter().all(|r| actor(r).0 == "operator"),
        "{before:#?}"
    );
    let first_new = before.iter().map(|r| r.id).max().unwrap() + 1;

    let carol = as_admin
        .create_user(pb::CreateUserRequest {
            username: "carol".into(),
            roles: vec!["system_user".into(), "system_user_access_token".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap();
    let login = as_admin.login(&carol.id).await;
    let login_session = login.session.clone().unwrap().id;
    let as_carol = client.as_(&login.token);
    let (token_id, secret) = as_carol.new_token("me").await;
    client.as_(&secret).get_me().await.unwrap();
    as_carol.disable_token(&token_id).await.unwrap();
    as_carol.enable_token(&token_id).await.unwrap();
    as_admin
        .update_user_roles(&carol.id, &["system_user"])
        .await
        .unwrap();
    let team = token_service::domain::ids::new_id();
    as_admin
        .add_team_member(&team, &carol.id, &[])
        .await
        .unwrap();
    let command = as_admin
        .create_command(pb::CreateCommandRequest {
            team_id: team.clone(),
            trigger: "deploy".into(),
            url: "https://example.com/hook".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let command_id = command.command.clone().unwrap().id;
    let regenerated = as_admin.regen_command_token(&command_id).await.unwrap();
    as_admin.set_active(&carol.id, false).await;
    as_admin.set_active(&carol.id, true).await;
    as_admin.revoke_token(&token_id).await.unwrap();
    let second = as_admin.login(&carol.id).await.session.unwrap().id;
    as_admin.revoke_session(&carol.id, &second).await.unwrap();
    as_admin.revoke_all_sessions(&carol.id).await.unwrap();
    as_admin.revoke_sessions_from_all_users().await.unwrap();

    // The admin's session is gone: read as the operator would, with a fresh admin.
    let reader = srv.admin("reader").await;
    let hash = async |value: &str| {
        srv.as_(&reader)
            .compute_audit_hash(value)
            .await
            .unwrap()
            .credential_hmac
    };
    let all = srv
        .as_(&reader)
        .audit_records(pb::ListAuditRecordsRequest {
            oldest_first: true,
            ..filter()
        })
        .await;
    let records: Vec<&pb::LifecycleRecord> = all
        .iter()
        .filter(|r| r.id >= first_new && actor(r).0 == "user")
        .collect();
    let by_admin = ("user".to_owned(), admin.id.clone());
    let by_carol = ("user".to_owned(), carol.id.clone());
    let revokes = |r: &pb::LifecycleRecord| {
        let kind = match pb::RevocationKind::try_from(r.revokes_kind) {
            Ok(pb::RevocationKind::Session) => "session",
            Ok(pb::RevocationKind::AccessToken) => "access_token",
            Ok(pb::RevocationKind::User) => "user",
            Ok(pb::RevocationKind::All) => "all",
            _ => return None,
        };
        Some((kind.to_owned(), r.revokes_id.clone()))
    };
    let expected: Vec<(&str, &(String, String))> = vec![
        ("user.created", &by_admin),
        ("session.created", &by_admin),
        ("access_token.created", &by_carol),
        ("session.created", &by_carol),
        ("access_token.disabled", &by_carol),
        ("access_token.enabled", &by_carol),
        ("user.roles_changed", &by_admin),
        ("team_member.added", &by_admin),
        ("command.created", &by_admin),
        ("command.token_regenerated", &by_admin),
        ("user.deactivated", &by_admin),
        ("user.reactivated", &by_admin),
        ("access_token.revoked", &by_admin),
        ("session.created", &by_admin),
        ("session.revoked", &by_admin),
        ("user.sessions_revoked", &by_admin),
        ("sessions.all_revoked", &by_admin),
    ];
    let got: Vec<(&str, (String, String))> = records
        .iter()
        .map(|r| (r.action.as_str(), actor(r)))
        .collect();
    let want: Vec<(&str, (String, String))> = expected
        .iter()
        .map(|(a, who)| (*a, (*who).clone()))
        .collect();
    assert_eq!(got, want);

    // Where every request came from: this client's address and user agent, its own id.
    let mut request_ids = HashSet::new();
    for r in &records {
        assert_eq!(r.ip, "127.0.0.1", "{r:?}");
        assert!(r.user_agent.contains("audit-test/1.0"), "{r:?}");
        assert!(!r.request_id.is_empty(), "{r:?}");
        request_ids.insert(r.request_id.clone());
        assert!(r.create_at.is_some() && !r.hash.is_empty(), "{r:?}");
        let _: serde_json::Value = serde_json::from_str(&r.detail).expect("detail is JSON");
    }
    assert_eq!(request_ids.len(), records.len(), "one request per change");

    // Subjects, credentials by HMAC, revocations.
    let r = |i: usize| records[i];
    assert_eq!(r(0).user_id, carol.id);
    assert_eq!(r(1).session_id, login_session);
    assert_eq!(r(1).credential_hmac, hash(&login.token).await);
    assert_eq!(
        (r(2).user_id.as_str(), r(2).token_id.as_str()),
        (carol.id.as_str(), token_id.as_str())
    );
    assert_eq!(r(2).credential_hmac, hash(&secret).await);
    assert_eq!(
        r(3).token_id,
        token_id,
        "the minted session names its token"
    );
    assert!(!r(3).session_id.is_empty());
    assert_eq!(
        revokes(r(4)),
        Some(("access_token".into(), token_id.clone()))
    );
    assert_eq!(revokes(r(5)), None);
    assert_eq!(revokes(r(6)), Some(("user".into(), carol.id.clone())));
    assert_eq!(
        (r(7).team_id.as_str(), r(7).user_id.as_str()),
        (team.as_str(), carol.id.as_str())
    );
    assert_eq!(r(8).command_id, command_id);
    assert_eq!(r(8).credential_hmac, hash(&command.token).await);
    assert_eq!(r(9).credential_hmac, hash(&regenerated.token).await);
    assert_eq!(revokes(r(10)), Some(("user".into(), carol.id.clone())));
    assert_eq!(
        revokes(r(12)),
        Some(("access_token".into(), token_id.clone()))
    );
    assert_eq!(revokes(r(14)), Some(("session".into(), second.clone())));
    assert_eq!(revokes(r(15)), Some(("user".into(), carol.id.clone())));
    assert_eq!(revokes(r(16)), Some(("all".into(), String::new())));
    srv.stop().await;
}

#[tokio::test]
async fn the_client_address_comes_from_a_proxy_header_only_when_it_is_trusted() {
    for trusted in [false, true] {
        let srv = TestServer::start_with(|c| {
            if trusted {
                c.trusted_proxy_ip_header = vec!["X-Forwarded-For".into()];
            }
        })
        .await;
        let admin = srv.admin("root").await;
        let as_admin = srv.as_(&admin);
        let mut request = as_admin.request(pb::CreateUserRequest {
            username: "dave".into(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        let answer = srv.shared_client().create_user(request).await.unwrap();
        let request_id = answer
            .metadata()
            .get("x-request-id")
            .expect("gRPC answers carry x-request-id")
            .to_str()
            .unwrap()
            .to_owned();
        let dave = answer.into_inner().user.unwrap();
        // The record of the call is found by the request id its answer carried.
        let records = as_admin
            .audit_records(pb::ListAuditRecordsRequest {
                request_id,
                ..filter()
            })
            .await;
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!(records[0].user_id, dave.id);
        let want = if trusted { "203.0.113.7" } else { "127.0.0.1" };
        assert_eq!(records[0].ip, want, "trusted = {trusted}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn filters_select_and_pages_stay_stable_while_records_are_appended() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let as_admin = srv.as_(&admin);
    let (alice_token, alice_secret) = srv.as_(&alice).new_token("me").await;
    for _ in 0..3 {
        let (id, _) = srv.as_(&bob).new_token("me").await;
        srv.as_(&bob).revoke_token(&id).await.unwrap();
    }
    let t1 = srv.now();
    srv.advance(std::time::Duration::from_secs(60));
    srv.as_(&alice).disable_token(&alice_token).await.unwrap();

    let all = as_admin.audit_records(filter()).await;
    let listed = ids(&all);
    let mut sorted = listed.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, sorted, "newest first by default");
    let oldest = as_admin
        .audit_records(pb::ListAuditRecordsRequest {
            oldest_first: true,
            ..filter()
        })
        .await;
    assert_eq!(
        ids(&oldest),
        listed.iter().rev().copied().collect::<Vec<_>>()
    );

    let select = async |request: pb::ListAuditRecordsRequest| as_admin.audit_records(request).await;
    // By action (any of several), by subject, by actor.
    let revoked = select(pb::ListAuditRecordsRequest {
        actions: vec!["access_token.revoked".into()],
        ..filter()
    })
    .await;
    assert_eq!(revoked.len(), 3);
    assert!(revoked.iter().all(|r| r.user_id == bob.id));
    let two = select(pb::ListAuditRecordsRequest {
        actions: vec![
            "access_token.revoked".into(),
            "access_token.disabled".into(),
        ],
        ..filter()
    })
    .await;
    assert_eq!(two.len(), 4);
    let about_alice_token = select(pb::ListAuditRecordsRequest {
        token_id: alice_token.clone(),
        ..filter()
    })
    .await;
    let actions: Vec<&str> = about_alice_token
        .iter()
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(actions, ["access_token.disabled", "access_token.created"]);
    let by_bob = select(pb::ListAuditRecordsRequest {
        actor_id: bob.id.clone(),
        ..filter()
    })
    .await;
    assert_eq!(by_bob.len(), 6);
    assert!(
        by_bob
            .iter()
            .all(|r| actor(r) == ("user".into(), bob.id.clone()))
    );
    let by_operator = select(pb::ListAuditRecordsRequest {
        actor_type: "operator".into(),
        ..filter()
    })
    .await;
    assert!(by_operator.iter().all(|r| actor(r).0 == "operator"));
    assert_eq!(
        by_operator.len() + by_bob.len() + 2,
        all.len(),
        "alice made two"
    );
    let alice_login = all
        .iter()
        .find(|r| r.action == "session.created" && r.user_id == alice.id)
        .unwrap();
    let her_session = select(pb::ListAuditRecordsRequest {
        session_id: alice_login.session_id.clone(),
        ..filter()
    })
    .await;
    assert_eq!(ids(&her_session), [alice_login.id]);
    let about_alice = select(pb::ListAuditRecordsRequest {
        user_id: alice.id.clone(),
        ..filter()
    })
    .await;
    assert!(about_alice.iter().all(|r| r.user_id == alice.id));
    assert_eq!(
        about_alice.len(),
        4,
        "created, login, token created, disabled"
    );
    // By the credential's HMAC: the token's creation.
    let hmac = as_admin
        .compute_audit_hash(&alice_secret)
        .await
        .unwrap()
        .credential_hmac;
    let named = select(pb::ListAuditRecordsRequest {
        credential_hmac: hmac.to_uppercase(),
        ..filter()
    })
    .await;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].token_id, alice_token);
    // By time: before and after the clock moved.
    let since = select(pb::ListAuditRecordsRequest {
        since: Some(prost_types::Timestamp {
            seconds: (t1 + 1) / 1000 + 1,
            nanos: 0,
        }),
        ..filter()
    })
    .await;
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].action, "access_token.disabled");
    let until = select(pb::ListAuditRecordsRequest {
        until: Some(prost_types::Timestamp {
            seconds: (t1 + 1) / 1000 + 1,
            nanos: 0,
        }),
        ..filter()
    })
    .await;
    assert_eq!(until.len(), all.len() - 1);
    // By address and request: every gRPC change came from 127.0.0.1, each its own request.
    let from_here = select(pb::ListAuditRecordsRequest {
        ip: "127.0.0.1".into(),
        ..filter()
    })
    .await;
    assert_eq!(from_here.len(), by_bob.len() + 2);
    let one_request = select(pb::ListAuditRecordsRequest {
        request_id: from_here[0].request_id.clone(),
        ..filter()
    })
    .await;
    assert_eq!(ids(&one_request), [from_here[0].id]);
    let nothing = select(pb::ListAuditRecordsRequest {
        ip: "192.0.2.1".into(),
        ..filter()
    })
    .await;
    assert!(nothing.is_empty());

    // Pages of 3, newest first, with records appended between pages: no record twice, none
    // skipped, and the new ones are not in this walk (they are newer than its first page).
    for oldest_first in [false, true] {
        let before = as_admin
            .audit_records(pb::ListAuditRecordsRequest {
                oldest_first,
                ..filter()
            })
            .await;
        let mut walked = Vec::new();
        let mut request = pb::ListAuditRecordsRequest {
            page_size: Some(3),
            oldest_first,
            ..filter()
        };
        let mut appended = 0;
        loop {
            let page = as_admin.list_audit(request.clone()).await.unwrap();
            assert!(page.records.len() <= 3);
            walked.extend(ids(&page.records));
            if page.next_page_token.is_empty() {
                break;
            }
            // Someone else changes something meanwhile.
            let (id, _) = srv.as_(&bob).new_token("me").await;
            srv.as_(&bob).revoke_token(&id).await.unwrap();
            appended += 2;
            request.page_token = page.next_page_token;
        }
        assert!(appended > 0);
        let unique: HashSet<i64> = walked.iter().copied().collect();
        assert_eq!(unique.len(), walked.len(), "no record twice: {walked:?}");
        if oldest_first {
            // The walk reaches the records appended while it ran, in order.
            assert_eq!(walked[..before.len()], ids(&before)[..]);
            assert_eq!(walked.len(), before.len() + appended);
            assert!(walked.windows(2).all(|w| w[0] < w[1]));
        } else {
            assert_eq!(walked, ids(&before), "exactly the records there were");
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_cursor_is_refused_when_altered_or_used_with_other_filters_or_order() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    for n in 0..3 {
        srv.basic_user(&format!("u{n}")).await;
    }
    let as_admin = srv.as_(&admin);
    let first = as_admin
        .list_audit(pb::ListAuditRecordsRequest {
            page_size: Some(2),
            actor_type: "operator".into(),
            ..filter()
        })
        .await
        .unwrap();
    assert_eq!(first.records.len(), 2);
    let token = first.next_page_token.clone();
    assert!(!token.is_empty());
    let next = |tweak: fn(&mut pb::ListAuditRecordsRequest)| {
        let mut request = pb::ListAuditRecordsRequest {
            page_size: Some(2),
            actor_type: "operator".into(),
            page_token: token.clone(),
            ..filter()
        };
        tweak(&mut request);
        as_admin.list_audit(request)
    };
    let second = next(|_| {}).await.unwrap();
    assert!(second.records[0].id < first.records[1].id);
    // Another page size is fine; other filters, another order or a changed token are not.
    next(|r| r.page_size = Some(50)).await.unwrap();
    type Tweak = fn(&mut pb::ListAuditRecordsRequest);
    let cases: [(&str, Tweak); 4] = [
        ("other filters", |r| r.actor_type = String::new()),
        ("another order", |r| r.oldest_first = true),
        ("an altered token", |r| {
            let mut bytes = r.page_token.clone().into_bytes();
            bytes[2] = if bytes[2] == b'A' { b'B' } else { b'A' };
            r.page_token = String::from_utf8(bytes).unwrap();
        }),
        ("garbage", |r| r.page_token = "%%%".into()),
    ];
    for (what, tweak) in cases {
        let refused = next(tweak).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
        assert_invalid(
            refused,
            "page_token",
            "api.context.invalid_url_param.app_error",
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let as_admin = srv.as_(&admin);
    let id = "api.context.invalid_url_param.app_error";
    let ts = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let cases: Vec<(&str, pb::ListAuditRecordsRequest)> = vec![
        (
            "actions",
            pb::ListAuditRecordsRequest {
                actions: vec!["access_token.stolen".into()],
                ..filter()
            },
        ),
        (
            "actor_type",
            pb::ListAuditRecordsRequest {
                actor_type: "robot".into(),
                ..filter()
            },
        ),
        (
            "actor_id",
            pb::ListAuditRecordsRequest {
                actor_id: "nope".into(),
                ..filter()
            },
        ),
        (
            "user_id",
            pb::ListAuditRecordsRequest {
                user_id: "nope".into(),
                ..filter()
            },
        ),
        (
            "token_id",
            pb::ListAuditRecordsRequest {
                token_id: "nope".into(),
                ..filter()
            },
        ),
        (
            "session_id",
            pb::ListAuditRecordsRequest {
                session_id: "nope".into(),
                ..filter()
            },
        ),
        (
            "command_id",
            pb::ListAuditRecordsRequest {
                command_id: "nope".into(),
                ..filter()
            },
        ),
        (
            "ip",
            pb::ListAuditRecordsRequest {
                ip: "9".repeat(65),
                ..filter()
            },
        ),
        (
            "request_id",
            pb::ListAuditRecordsRequest {
                request_id: "a\0b".into(),
                ..filter()
            },
        ),
        (
            "credential_hmac",
            pb::ListAuditRecordsRequest {
                credential_hmac: "xyz".into(),
                ..filter()
            },
        ),
        (
            "page_size",
            pb::ListAuditRecordsRequest {
                page_size: Some(-1),
                ..filter()
            },
        ),
        (
            "since",
            pb::ListAuditRecordsRequest {
                since: ts(-5),
                ..filter()
            },
        ),
        (
            "until",
            pb::ListAuditRecordsRequest {
                since: ts(100),
                until: ts(100),
                ..filter()
            },
        ),
    ];
    for (field, request) in cases {
        assert_invalid(as_admin.list_audit(request).await, field, id);
    }
    let unknown = as_admin
        .list_audit(pb::ListAuditRecordsRequest {
            actions: vec!["access_token.stolen".into()],
            ..filter()
        })
        .await
        .unwrap_err();
    assert!(
        unknown.message().contains("access_token.created"),
        "lists the known ones: {unknown:?}"
    );
    // A large page is capped, not refused.
    let capped = as_admin
        .list_audit(pb::ListAuditRecordsRequest {
            page_size: Some(100_000),
            ..filter()
        })
        .await
        .unwrap();
    assert!(!capped.records.is_empty());

    let body = "api.context.invalid_body_param.app_error";
    assert_invalid(as_admin.compute_audit_hash("").await, "credential", body);
    assert_invalid(
        as_admin.compute_audit_hash("  \n").await,
        "credential",
        body,
    );
    // The value is never repeated back, not even in an error.
    let marker = format!("leaked-{}", "x".repeat(1100));
    let refused = as_admin.compute_audit_hash(&marker).await.unwrap_err();
    assert!(!format!("{refused:?}").contains("leaked-"), "{refused:?}");
    assert_invalid(
        as_admin.verify_audit_log(Some(-1), None).await,
        "after_id",
        body,
    );
    assert_invalid(
        as_admin.verify_audit_log(None, Some(-1)).await,
        "max_records",
        body,
    );
    assert_invalid(
        as_admin.verify_audit_log(Some(1_000_000), None).await,
        "after_id",
        body,
    );
    srv.stop().await;
}

#[tokio::test]
async fn only_manage_system_and_read_audit_read_the_trail_and_only_manage_system_verifies_it() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let user = srv.token_user("plain").await;
    let auditor = srv.user("auditor", &["system_auditor"]).await;
    let (_, secret) = srv.as_(&user).new_token("me").await;

    assert_denied(srv.as_(&user).list_audit(filter()).await, "read_audit");
    assert_denied(
        srv.as_(&user).compute_audit_hash(&secret).await,
        "read_audit",
    );
    assert_denied(
        srv.as_(&user).verify_audit_log(None, None).await,
        "manage_system",
    );
    assert_unauthenticated(srv.anonymous().list_audit(filter()).await);

    let as_auditor = srv.as_(&auditor);
    let hmac = as_auditor
        .compute_audit_hash(&secret)
        .await
        .unwrap()
        .credential_hmac;
    assert_eq!(hmac.len(), 64);
    let found = as_auditor
        .audit_records(pb::ListAuditRecordsRequest {
            credential_hmac: hmac,
            ..filter()
        })
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].action, "access_token.created");
    assert_denied(
        as_auditor.verify_audit_log(None, None).await,
        "manage_system",
    );
    // The auditor reads and nothing else.
    assert_denied(
        as_auditor.list_all_tokens(None, None).await,
        "manage_system",
    );
    assert_denied(as_auditor.introspect(&secret).await, "introspect_token");

    assert!(
        srv.as_(&admin)
            .verify_audit_log(None, None)
            .await
            .unwrap()
            .ok
    );
    srv.stop().await;
}

/// A server with some history: users, tokens, a revocation. Returns it and its admin.
async fn server_with_history() -> (TestServer, Actor) {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    for _ in 0..2 {
        let (id, secret) = srv.as_(&alice).new_token("me").await;
        srv.as_(&secret).get_me().await.unwrap();
        srv.as_(&alice).revoke_token(&id).await.unwrap();
    }
    (srv, admin)
}

async fn verify(srv: &TestServer, admin: &Actor) -> pb::VerifyAuditLogResponse {
    srv.as_(admin).verify_audit_log(None, None).await.unwrap()
}

#[tokio::test]
async fn verification_names_an_edited_record_and_passes_again_once_it_is_restored() {
    let (srv, admin) = server_with_history().await;
    let db = database(&srv).await;
    let clean = verify(&srv, &admin).await;
    assert!(clean.ok, "{clean:?}");
    let (newest, newest_hash) = head(&db).await;
    assert_eq!(
        (clean.head_id, clean.head_hash.as_str()),
        (newest, newest_hash.as_str())
    );
    assert_eq!(clean.verified, newest, "every record since the first");
    assert_eq!(
        (clean.first_id, clean.last_id, clean.chain_start),
        (1, newest, 0)
    );
    assert!(clean.resume_after.is_none() && clean.broken.is_none());

    let target = srv
        .as_(&admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actions: vec!["access_token.created".into()],
            ..filter()
        })
        .await[0]
        .clone();
    for (column, tampered, original) in [
        ("ip", "'10.6.6.6'".to_owned(), format!("'{}'", target.ip)),
        (
            "detail",
            r#"'{"description":"nothing to see"}'"#.to_owned(),
            format!("'{}'", target.detail),
        ),
        (
            "hash",
            format!("'{}'", "0".repeat(64)),
            format!("'{}'", target.hash),
        ),
    ] {
        execute(
            &db,
            &format!(
                "UPDATE lifecycle_log SET {column} = {tampered} WHERE id = {}",
                target.id
            ),
        )
        .await;
        let report = verify(&srv, &admin).await;
        assert!(!report.ok, "{column}: {report:?}");
        let broken = report.broken.unwrap();
        assert_eq!(
            (broken.record_id, broken.kind.as_str()),
            (target.id, "edited"),
            "{column}"
        );
        assert_ne!(broken.expected, broken.found);
        assert!(
            broken
                .description
                .contains(&format!("record {}", target.id)),
            "{broken:?}"
        );
        assert_eq!(
            report.verified,
            target.id - 1,
            "the records before it are fine"
        );
        execute(
            &db,
            &format!(
                "UPDATE lifecycle_log SET {column} = {original} WHERE id = {}",
                target.id
            ),
        )
        .await;
        assert!(verify(&srv, &admin).await.ok, "{column} restored");
    }
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn verification_names_a_deleted_record() {
    let (srv, admin) = server_with_history().await;
    let db = database(&srv).await;
    let (newest, _) = head(&db).await;
    let middle = newest / 2;
    execute(
        &db,
        &format!("DELETE FROM lifecycle_log WHERE id = {middle}"),
    )
    .await;
    let broken = verify(&srv, &admin).await.broken.unwrap();
    assert_eq!(
        (broken.record_id, broken.kind.as_str()),
        (middle, "missing")
    );
    assert!(
        broken.found.contains(&format!("record {}", middle + 1)),
        "{broken:?}"
    );
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn verification_names_deleted_newest_records_even_after_new_ones_follow() {
    let (srv, admin) = server_with_history().await;
    let db = database(&srv).await;
    let (newest, _) = head(&db).await;
    execute(
        &db,
        &format!("DELETE FROM lifecycle_log WHERE id = {newest}"),
    )
    .await;
    let report = verify(&srv, &admin).await;
    let broken = report.broken.unwrap();
    assert_eq!(
        (broken.record_id, broken.kind.as_str()),
        (newest, "head_mismatch")
    );
    assert_eq!(report.verified, newest - 1);

    // The next change chains over the deleted record: its gap stays visible.
    srv.basic_user("later").await;
    let broken = verify(&srv, &admin).await.broken.unwrap();
    assert_eq!(
        (broken.record_id, broken.kind.as_str()),
        (newest, "missing")
    );
    db.close().await.ok();
    srv.stop().await;
}

/// Records a newer version wrote (an action this one does not know) are listed with their
/// stored name and verified like any other: counted, never reported as tampering.
#[tokio::test]
async fn records_of_actions_this_version_does_not_know_are_listed_and_verified() {
    let (srv, admin) = server_with_history().await;
    let db = database(&srv).await;
    let future = append_raw(&srv, &db, "access_token.leak_reported", "service").await;
    srv.basic_user("after").await;
    let report = verify(&srv, &admin).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.unknown_actions.get("access_token.leak_reported"),
        Some(&1)
    );
    let listed = srv
        .as_(&admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actor_type: "service".into(),
            ..filter()
        })
        .await;
    assert_eq!(ids(&listed), [future]);
    assert_eq!(listed[0].action, "access_token.leak_reported");
    // Filtering by a name this version does not know is refused (it could be a typo).
    assert_invalid(
        srv.as_(&admin)
            .list_audit(pb::ListAuditRecordsRequest {
                actions: vec!["access_token.leak_reported".into()],
                ..filter()
            })
            .await,
        "actions",
        "api.context.invalid_url_param.app_error",
    );
    // Tampering with it is found like with any other record.
    execute(
        &db,
        &format!("UPDATE lifecycle_log SET actor_type = 'user' WHERE id = {future}"),
    )
    .await;
    let broken = verify(&srv, &admin).await.broken.unwrap();
    assert_eq!((broken.record_id, broken.kind.as_str()), (future, "edited"));
    db.close().await.ok();
    srv.stop().await;
}

#[tokio::test]
async fn verification_resumes_where_the_previous_call_stopped() {
    let (srv, admin) = server_with_history().await;
    let as_admin = srv.as_(&admin);
    let mut after = None;
    let mut verified = 0;
    let mut calls = 0;
    loop {
        let r = as_admin.verify_audit_log(after, Some(3)).await.unwrap();
        assert!(r.ok, "{r:?}");
        assert!(r.verified <= 3);
        verified += r.verified;
        calls += 1;
        match r.resume_after {
            Some(id) => {
                assert_eq!(id, r.last_id);
                after = Some(id);
            }
            None => {
                assert_eq!(verified, r.head_id);
                break;
            }
        }
    }
    assert!(calls > 2, "{calls} calls");
    srv.stop().await;
}

/// Retention: pruning deletes the records older than the cut-off in batches, moves the
/// chain's start past them (the chain still verifies), and WatchRevocations cannot resume
/// from a position it deleted.
#[tokio::test]
async fn pruning_moves_the_chain_start_and_the_chain_still_verifies() {
    let (srv, admin) = server_with_history().await;
    // One more record: an odd number, so the last batch of two is not full.
    srv.as_(&admin)
        .create_user(pb::CreateUserRequest {
            username: "odd".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let store = srv.ctx.store();
    let (_, old_head) = store.log_chain_ends().await.unwrap();
    let old_revocation = srv
        .as_(&admin)
        .audit_records(pb::ListAuditRecordsRequest {
            actions: vec!["access_token.revoked".into()],
            ..filter()
        })
        .await[0]
        .id;
    srv.advance(std::time::Duration::from_secs(2 * 86_400));
    // The fixtures' sessions last an hour: a new day needs a new admin.
    let admin = srv.admin("today").await;
    let bob = srv.token_user("bob").await;
    let (id, _) = srv.as_(&bob).new_token("me").await;
    srv.as_(&bob).revoke_token(&id).await.unwrap();
    let kept_before = store.latest_record_id().await.unwrap() - old_head.id;

    // Batches of 2 over an odd number of old records: every batch is one transaction.
    assert_eq!(
        old_head.id % 2,
        1,
        "an odd number of old records: {}",
        old_head.id
    );
    let pruned = store.prune_log(srv.now() - 86_400_000, 2).await.unwrap();
    assert_eq!(pruned, old_head.id as u64, "exactly the old records");
    let (start, _) = store.log_chain_ends().await.unwrap();
    assert_eq!(
        start, old_head,
        "the chain now starts after the last pruned record"
    );
    assert_eq!(store.pruned_log_through().await.unwrap(), old_head.id);
    let left = srv.as_(&admin).audit_records(filter()).await;
    assert_eq!(left.len() as i64, kept_before);
    assert!(left.iter().all(|r| r.id > old_head.id));

    let report = verify(&srv, &admin).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.chain_start, report.verified),
        (old_head.id, kept_before)
    );
    // Nothing more to prune.
    assert_eq!(store.prune_log(srv.now() - 86_400_000, 2).await.unwrap(), 0);

    let gone = srv
        .as_(&admin)
        .watch_revocations(Some(old_revocation - 1))
        .await
        .expect_err("a position that was pruned");
    assert_eq!(gone.code(), Code::OutOfRange, "{gone:?}");
    srv.as_(&admin)
        .watch_revocations(Some(old_head.id))
        .await
        .expect("the newest pruned position loses nothing");
    srv.stop().await;
}
