//! Webhooks over gRPC: endpoint management (CRUD, validation naming the field, permission),
//! the SSRF guard (literal addresses refused at creation, host names refused when they
//! resolve), the secret (shown once, encrypted at rest, rotated with a grace period), and
//! delivery to real HTTP receivers on this machine: signed, in order, retried with backoff,
//! disabled after failing for `webhooks.disable_after`, re-enabled by UpdateWebhook.
//!
//! Records are made by revoking personal access tokens (`access_token.revoked`), and the
//! endpoints filter on that action, so other records do not interfere.

use std::time::Duration;

use token_service::{config::Span, pb};
use tonic::Code;

use crate::common::*;

/// How long a test waits for a delivery.
const WAIT: Duration = Duration::from_secs(10);

/// A server that may deliver to 127.0.0.1 and looks for due endpoints often.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.webhooks.allow_private_addresses = true;
        c.webhooks.poll_interval = Span(20);
    })
    .await
}

/// A credential of `actor` that outlives the clock moves of a test (its login session
/// lasts an hour): a personal access token's secret.
async fn lasting(srv: &TestServer, actor: &Actor) -> String {
    srv.existing_pat(actor, false).await.1
}

/// Creates and revokes one personal access token of `owner`: one `access_token.revoked`
/// record. Returns the token id.
async fn revoke_one(srv: &TestServer, owner: &Actor) -> String {
    let (token_id, _) = srv.existing_pat(owner, false).await;
    srv.as_(&lasting(srv, owner).await)
        .revoke_token(&token_id)
        .await
        .unwrap();
    token_id
}

/// The token a delivered record names.
fn token_of(received: &Received) -> String {
    let data = &received.json["data"];
    data["token_id"]
        .as_str()
        .or_else(|| data["subject_id"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Polls the endpoint until `done` holds (at most [`WAIT`]).
async fn webhook_until(
    srv: &TestServer,
    admin: &(impl Bearer + ?Sized),
    id: &str,
    what: &str,
    done: impl Fn(&pb::Webhook) -> bool,
) -> pb::Webhook {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let hook = srv.as_(admin).get_webhook(id).await.unwrap();
        if done(&hook) {
            return hook;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {hook:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sample of the server's `/metrics` (series name with labels), 0 if absent.
async fn metric(srv: &TestServer, series: &str) -> f64 {
    scrape_metric(srv.config.http_addr, series)
        .await
        .unwrap_or(0.0)
}

fn millis(ts: &Option<prost_types::Timestamp>) -> i64 {
    ts.as_ref()
        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

#[tokio::test]
async fn an_admin_creates_lists_reads_updates_and_deletes_endpoints() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let created = srv
        .as_(&admin)
        .create_webhook_with(pb::CreateWebhookRequest {
            url: "http://127.0.0.1:9/a".into(),
            description: "audit sink".into(),
            filter: Some(pb::WebhookFilter {
                actions: vec!["access_token.revoked".into(), "session.revoked".into()],
                user_id: alice.id.clone(),
            }),
        })
        .await
        .unwrap();
    let secret = created.secret.clone();
    let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap()
            .len(),
        32
    );
    let hook = created.webhook.unwrap();
    assert_eq!(hook.url, "http://127.0.0.1:9/a");
    assert_eq!(hook.description, "audit sink");
    assert!(hook.enabled);
    let filter = hook.filter.clone().unwrap();
    assert_eq!(filter.actions, ["access_token.revoked", "session.revoked"]);
    assert_eq!(filter.user_id, alice.id);
    assert_eq!(millis(&hook.create_at), srv.now());

    let list = srv.as_(&admin).list_webhooks().await.unwrap();
    assert_eq!(list, std::slice::from_ref(&hook));
    assert_eq!(srv.as_(&admin).get_webhook(&hook.id).await.unwrap(), hook);
    assert!(
        !format!("{list:?}").contains(key),
        "the secret is never returned again"
    );

    // Only the fields set change; a filter replaces the stored one whole.
    srv.advance(Duration::from_secs(5));
    let updated = srv
        .as_(&admin)
        .update_webhook(pb::UpdateWebhookRequest {
            webhook_id: hook.id.clone(),
            url: Some("https://127.0.0.1:8443/b".into()),
            filter: Some(pb::WebhookFilter::default()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.url, "https://127.0.0.1:8443/b");
    assert_eq!(updated.description, "audit sink");
    assert_eq!(updated.filter.unwrap(), pb::WebhookFilter::default());
    assert_eq!(millis(&updated.update_at), srv.now());
    let disabled = srv
        .as_(&admin)
        .set_webhook_enabled(&hook.id, false)
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.url, "https://127.0.0.1:8443/b");

    srv.as_(&admin).delete_webhook(&hook.id).await.unwrap();
    for result in [
        srv.as_(&admin).get_webhook(&hook.id).await.map(|_| ()),
        srv.as_(&admin).delete_webhook(&hook.id).await.map(|_| ()),
        srv.as_(&admin)
            .set_webhook_enabled(&hook.id, true)
            .await
            .map(|_| ()),
        srv.as_(&admin)
            .rotate_webhook_secret(&hook.id, None)
            .await
            .map(|_| ()),
        srv.as_(&admin).test_webhook(&hook.id).await.map(|_| ()),
    ] {
        assert_error(result, Code::NotFound, "token_service.webhook.not_found");
    }
    assert!(srv.as_(&admin).list_webhooks().await.unwrap().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let as_admin = srv.as_(&admin);
    let create = |url: &str, description: &str, actions: &[&str], user_id: &str| {
        as_admin.create_webhook_with(pb::CreateWebhookRequest {
            url: url.to_owned(),
            description: description.to_owned(),
            filter: Some(pb::WebhookFilter {
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                user_id: user_id.to_owned(),
            }),
        })
    };
    let long_url = format!("https://hooks.invalid/{}", "a".repeat(2048));
    for url in [
        "",
        "ftp://hooks.invalid/x",
        "hooks.invalid/x",
        "https://user:password@hooks.invalid/x",
        "https://exa mple.invalid/",
        long_url.as_str(),
    ] {
        assert_invalid(
            create(url, "", &[], "").await,
            "url",
            "token_service.webhook.invalid_url",
        );
    }
    // Literal loopback, private, link-local, unspecified and multicast addresses (also in
    // the forms a URL parser normalizes) are refused without private addresses allowed.
    for url in [
        "http://127.0.0.1/x",
        "http://[::1]:8080/x",
        "http://10.0.0.8/x",
        "http://192.168.1.20/x",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/x",
        "http://[::ffff:7f00:1]/x",
        "http://2130706433/x",
        "http://224.0.0.251/x",
    ] {
        assert_invalid(
            create(url, "", &[], "").await,
            "url",
            "token_service.webhook.address_refused",
        );
    }
    assert_invalid(
        create("https://hooks.invalid/", &"d".repeat(256), &[], "").await,
        "description",
        "token_service.webhook.invalid_description",
    );
    assert_invalid(
        create("https://hooks.invalid/", "nul\0", &[], "").await,
        "description",
        "api.context.invalid_body_param.app_error",
    );
    assert_invalid(
        create("https://hooks.invalid/", "", &["access_token.eaten"], "").await,
        "filter.actions",
        "token_service.webhook.invalid_action",
    );
    assert_invalid(
        create("https://hooks.invalid/", "", &[], "not-an-id").await,
        "filter.user_id",
        "api.context.invalid_body_param.app_error",
    );
    assert!(as_admin.list_webhooks().await.unwrap().is_empty());

    // A valid endpoint, then bad changes to it: nothing changes.
    let hook = create("https://hooks.invalid/ok", "kept", &[], "")
        .await
        .unwrap()
        .webhook
        .unwrap();
    as_admin.set_webhook_enabled(&hook.id, false).await.unwrap();
    let hook = as_admin.get_webhook(&hook.id).await.unwrap();
    assert_invalid(
        as_admin
            .update_webhook(pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                url: Some("http://127.0.0.1/".into()),
                description: Some("changed".into()),
                ..Default::default()
            })
            .await,
        "url",
        "token_service.webhook.address_refused",
    );
    assert_invalid(
        as_admin
            .update_webhook(pb::UpdateWebhookRequest {
                webhook_id: hook.id.clone(),
                filter: Some(pb::WebhookFilter {
                    actions: vec!["nope".into()],
                    user_id: String::new(),
                }),
                ..Default::default()
            })
            .await,
        "filter.actions",
        "token_service.webhook.invalid_action",
    );
    for grace in [Duration::from_secs(8 * 86_400)] {
        assert_invalid(
            as_admin.rotate_webhook_secret(&hook.id, Some(grace)).await,
            "grace_period",
            "api.context.invalid_body_param.app_error",
        );
    }
    assert_eq!(as_admin.get_webhook(&hook.id).await.unwrap(), hook);
    for id in ["", "short", "../../etc"] {
        assert_invalid(
            as_admin.get_webhook(id).await,
            "webhook_id",
            "api.context.invalid_url_param.app_error",
        );
    }
    srv.stop().await;
}

#[tokio::test]
async fn only_manage_system_may_manage_webhooks() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let introspector = srv
        .user("svc", &["system_user", "system_token_introspector"])
        .await;
    let hook = srv
        .as_(&admin)
        .create_webhook("http://127.0.0.1:9/x", &[])
        .await
        .unwrap()
        .webhook
        .unwrap();
    for who in [&alice, &introspector] {
        let as_ = srv.as_(who);
        assert_denied(
            as_.create_webhook("http://127.0.0.1:9/y", &[]).await,
            "manage_system",
        );
        assert_denied(as_.list_webhooks().await, "manage_system");
        assert_denied(as_.get_webhook(&hook.id).await, "manage_system");
        assert_denied(
            as_.set_webhook_enabled(&hook.id, false).await,
            "manage_system",
        );
        assert_denied(
            as_.rotate_webhook_secret(&hook.id, None).await,
            "manage_system",
        );
        assert_denied(as_.test_webhook(&hook.id).await, "manage_system");
        assert_denied(as_.delete_webhook(&hook.id).await, "manage_system");
    }
    assert_unauthenticated(srv.anonymous().list_webhooks().await);
    assert_unauthenticated(
        srv.anonymous()
            .create_webhook("http://127.0.0.1:9/z", &[])
            .await,
    );
    assert_eq!(
        srv.as_(&admin).list_webhooks().await.unwrap(),
        [srv.as_(&admin).get_webhook(&hook.id).await.unwrap()]
    );
    assert!(srv.as_(&admin).get_webhook(&hook.id).await.unwrap().enabled);
    srv.stop().await;
}

#[tokio::test]
async fn records_are_delivered_signed_in_order_with_stable_message_ids() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    let created = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap();
    let hook_id = created.webhook.unwrap().id;
    let mut revoked = Vec::new();
    for _ in 0..5 {
        revoked.push(revoke_one(&srv, &alice).await);
    }
    let got = receiver.wait_for(5, WAIT).await;
    assert_eq!(got.len(), 5, "each record once: {got:#?}");
    let delivered: Vec<String> = got.iter().map(token_of).collect();
    assert_eq!(delivered, revoked, "in log order");
    let ids: Vec<i64> = got.iter().map(Received::record_id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for message in &got {
        assert_eq!(message.content_type, "application/json");
        assert_eq!(message.action(), "access_token.revoked");
        assert!(message.json["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(message.json["data"].is_object());
        let seconds: i64 = message.timestamp.parse().unwrap();
        assert_eq!(
            seconds,
            srv.now() / 1000,
            "webhook-timestamp is Unix seconds"
        );
        assert!(
            verify_signature(message, &created.secret),
            "signed with the endpoint's secret: {message:?}"
        );
        assert!(!verify_signature(
            message,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        ));
        let mut tampered = message.clone();
        tampered.raw.push(b' ');
        assert!(!verify_signature(&tampered, &created.secret));
    }
    let hook = webhook_until(&srv, &admin, &hook_id, "the cursor moves", |h| {
        h.delivery.as_ref().unwrap().delivered_through >= *ids.last().unwrap()
    })
    .await;
    let delivery = hook.delivery.unwrap();
    assert_eq!(delivery.attempts, 0);
    assert_eq!(millis(&delivery.last_success_at), srv.now());
    assert_eq!(
        metric(
            &srv,
            "token_service_webhook_deliveries_total{outcome=\"delivered\"}"
        )
        .await,
        5.0
    );
    assert_eq!(
        metric(&srv, "token_service_webhook_delivery_lag_seconds_count").await,
        5.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_filter_selects_actions_and_a_subject_user() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let bob = srv.token_user("bob").await;
    let for_bob = Receiver::start().await;
    let other_action = Receiver::start().await;
    let everything = Receiver::start().await;
    srv.as_(&admin)
        .create_webhook_with(pb::CreateWebhookRequest {
            url: for_bob.url(),
            description: String::new(),
            filter: Some(pb::WebhookFilter {
                actions: vec![],
                user_id: bob.id.clone(),
            }),
        })
        .await
        .unwrap();
    srv.as_(&admin)
        .create_webhook(&other_action.url(), &["sessions.all_revoked"])
        .await
        .unwrap();
    srv.as_(&admin)
        .create_webhook(&everything.url(), &[])
        .await
        .unwrap();
    revoke_one(&srv, &alice).await;
    // Bob's sessions: a record whose subject user is Bob.
    srv.as_(&bob).revoke_all_sessions("me").await.unwrap();
    let all = everything.wait_for(2, WAIT).await;
    let bobs = for_bob.wait_for(1, WAIT).await;
    assert!(
        bobs.iter().all(|m| m.json.to_string().contains(&bob.id)),
        "{bobs:#?}"
    );
    assert!(
        !bobs.iter().any(|m| m.json.to_string().contains(&alice.id)),
        "{bobs:#?}"
    );
    assert!(all.len() >= bobs.len());
    assert!(other_action.received().is_empty());
    srv.as_(&admin)
        .revoke_sessions_from_all_users()
        .await
        .unwrap();
    let got = other_action.wait_for(1, WAIT).await;
    assert!(got.iter().all(|m| m.action() == "sessions.all_revoked"));
    srv.stop().await;
}

#[tokio::test]
async fn a_failed_message_is_retried_with_backoff_and_blocks_the_later_ones() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let admin = lasting(&srv, &admin).await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[503]);
    let hook_id = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap()
        .webhook
        .unwrap()
        .id;
    let first = revoke_one(&srv, &alice).await;
    let failed = receiver.wait_for(1, WAIT).await;
    assert_eq!(failed[0].answered, 503);
    let hook = webhook_until(&srv, &admin, &hook_id, "the failure is recorded", |h| {
        h.delivery.as_ref().unwrap().attempts == 1
    })
    .await;
    let delivery = hook.delivery.unwrap();
    let now = srv.now();
    assert_eq!(millis(&delivery.failing_since), now);
    assert_eq!(delivery.last_error, "HTTP status 503");
    let retry_at = millis(&delivery.next_attempt_at);
    assert!(
        (now + 1_000..=now + 5_000).contains(&retry_at),
        "the first retry waits 1 to 5 s: {}",
        retry_at - now
    );

    // A later record waits behind the failed one.
    let second = revoke_one(&srv, &alice).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing is sent before the retry is due"
    );

    srv.advance(Duration::from_millis(
        u64::try_from(retry_at - now).unwrap(),
    ));
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[1].id, got[0].id, "a retry keeps its webhook-id");
    assert_eq!(
        got.iter().map(token_of).collect::<Vec<_>>(),
        [first.clone(), first, second],
        "retried, then the next one, in order"
    );
    let hook = webhook_until(&srv, &admin, &hook_id, "the failure is forgotten", |h| {
        h.delivery.as_ref().unwrap().failing_since.is_none()
    })
    .await;
    let delivery = hook.delivery.unwrap();
    assert_eq!(delivery.attempts, 0);
    assert!(delivery.last_error.is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_re_enabling_resumes() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let admin = lasting(&srv, &admin).await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500; 1_000]);
    let created = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap()
        .webhook
        .unwrap();
    let hook_id = created.id;
    let start_cursor = created.delivery.unwrap().delivered_through;
    let token = revoke_one(&srv, &alice).await;
    let started = srv.now();
    // Six retries, each due time reached by moving the clock: the wait is at least 1 s and
    // at most 5 s doubled per failure (full jitter).
    let mut attempts = 0;
    for _ in 0..6 {
        attempts += 1;
        receiver.wait_for(attempts, WAIT).await;
        let hook = webhook_until(&srv, &admin, &hook_id, "the attempt is recorded", |h| {
            h.delivery.as_ref().unwrap().attempts as usize == attempts
        })
        .await;
        assert!(hook.enabled);
        let d = hook.delivery.unwrap();
        assert_eq!(millis(&d.failing_since), started);
        let wait = millis(&d.next_attempt_at) - srv.now();
        let ceiling = 5_000 * (1 << (attempts - 1));
        assert!(
            (1_000..=ceiling).contains(&wait),
            "attempt {attempts}: retry in {wait} ms, not in [1000, {ceiling}]"
        );
        srv.advance(Duration::from_millis(u64::try_from(wait).unwrap()));
    }
    // The window: the first attempt after three days of failing disables the endpoint.
    srv.advance(Duration::from_secs(3 * 86_400));
    attempts += 1;
    receiver.wait_for(attempts, WAIT).await;
    let disabled = webhook_until(&srv, &admin, &hook_id, "disabled", |h| !h.enabled).await;
    assert!(
        srv.now() - started >= 3 * 86_400_000,
        "disabled only after the window"
    );
    assert!(
        disabled.disabled_reason.contains("500"),
        "{}",
        disabled.disabled_reason
    );
    let delivery = disabled.delivery.unwrap();
    assert_eq!(delivery.attempts as usize, attempts);
    let blocked = receiver.received()[0].record_id();
    assert!(
        (start_cursor..blocked).contains(&delivery.delivered_through),
        "the failing record {blocked} was not passed: {}",
        delivery.delivered_through
    );
    assert_eq!(receiver.received().len(), attempts);
    // Counted when the worker's write returns, which (PostgreSQL, MariaDB) is after the
    // seal of its record: a moment after the disabled endpoint is visible.
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&srv, "token_service_webhooks_disabled_total").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        metric(&srv, "token_service_webhooks_disabled_total").await,
        1.0
    );
    assert_eq!(
        metric(
            &srv,
            "token_service_webhook_deliveries_total{outcome=\"http_error\"}"
        )
        .await,
        attempts as f64
    );

    // Disabled: nothing more is sent, however much time passes.
    srv.advance(Duration::from_secs(7_200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.received().len(), attempts);

    // Re-enabling clears the failure state and resumes at the blocked record.
    receiver.answer_ok();
    let enabled = srv
        .as_(&admin)
        .set_webhook_enabled(&hook_id, true)
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert!(enabled.disabled_reason.is_empty());
    let d = enabled.delivery.unwrap();
    assert_eq!(d.attempts, 0);
    assert!(d.failing_since.is_none() && d.next_attempt_at.is_none());
    let got = receiver.wait_for(attempts + 1, WAIT).await;
    let last = got.last().unwrap();
    assert_eq!(last.answered, 200);
    assert_eq!(token_of(last), token);
    srv.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_its_grace_period() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let admin = lasting(&srv, &admin).await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    let created = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap();
    let hook_id = created.webhook.unwrap().id;
    let old = created.secret;
    let rotated = srv
        .as_(&admin)
        .rotate_webhook_secret(&hook_id, Some(Duration::from_secs(3_600)))
        .await
        .unwrap();
    let new = rotated.secret;
    assert_ne!(new, old);
    assert_eq!(
        millis(&rotated.webhook.unwrap().previous_secret_expires_at),
        srv.now() + 3_600_000
    );

    revoke_one(&srv, &alice).await;
    let during = receiver.wait_for(1, WAIT).await.remove(0);
    let signatures: Vec<&str> = during.signature.split(' ').collect();
    assert_eq!(signatures.len(), 2, "{}", during.signature);
    let expected = |secret: &str| {
        expected_signature(secret, &during.id, &during.timestamp, &during.raw).unwrap()
    };
    assert_eq!(
        signatures,
        [expected(&new), expected(&old)],
        "the new one first"
    );

    srv.advance(Duration::from_secs(3_601));
    revoke_one(&srv, &alice).await;
    let after = receiver.wait_for(2, WAIT).await.remove(1);
    assert!(verify_signature(&after, &new));
    assert!(!verify_signature(&after, &old), "the grace period is over");
    assert_eq!(after.signature.split(' ').count(), 1);

    // Zero grace: the old secret stops at once.
    let again = srv
        .as_(&admin)
        .rotate_webhook_secret(&hook_id, Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(again.webhook.unwrap().previous_secret_expires_at.is_none());
    revoke_one(&srv, &alice).await;
    let last = receiver.wait_for(3, WAIT).await.remove(2);
    assert!(verify_signature(&last, &again.secret));
    assert!(!verify_signature(&last, &new));
    srv.stop().await;
}

#[tokio::test]
async fn test_webhook_sends_one_signed_message_and_reports_the_answer() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let receiver = Receiver::start().await;
    let created = srv
        .as_(&admin)
        .create_webhook(&receiver.url(), &[])
        .await
        .unwrap();
    let hook_id = created.webhook.unwrap().id;
    let answer = srv.as_(&admin).test_webhook(&hook_id).await.unwrap();
    assert!(answer.delivered);
    assert_eq!(answer.http_status, 200);
    assert!(answer.error.is_empty());
    let got = receiver.wait_for(1, WAIT).await.remove(0);
    assert_eq!(got.id, answer.message_id);
    assert!(got.id.starts_with("msg_test_"));
    assert_eq!(got.action(), "webhook.test");
    assert_eq!(got.json["data"]["webhook_id"], hook_id.as_str());
    assert!(verify_signature(&got, &created.secret));

    receiver.answer_with(&[418]);
    let answer = srv.as_(&admin).test_webhook(&hook_id).await.unwrap();
    assert!(!answer.delivered);
    assert_eq!(answer.http_status, 418);

    // A disabled endpoint is tested all the same; a stopped one reports the error.
    srv.as_(&admin)
        .set_webhook_enabled(&hook_id, false)
        .await
        .unwrap();
    receiver.stop();
    let answer = srv.as_(&admin).test_webhook(&hook_id).await.unwrap();
    assert!(!answer.delivered);
    assert_eq!(answer.http_status, 0);
    assert!(answer.error.contains("connect"), "{}", answer.error);
    let hook = srv.as_(&admin).get_webhook(&hook_id).await.unwrap();
    assert_eq!(
        hook.delivery.unwrap().attempts,
        0,
        "a test changes no state"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_host_name_resolving_to_a_private_address_is_refused_at_every_delivery() {
    // Private addresses are not allowed: `localhost` passes creation (a host name), but
    // every connection to it is refused by the resolver, so nothing reaches the receiver.
    let srv = TestServer::start_with(|c| c.webhooks.poll_interval = Span(20)).await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    let hook_id = srv
        .as_(&admin)
        .create_webhook(&receiver.localhost_url(), &["access_token.revoked"])
        .await
        .unwrap()
        .webhook
        .unwrap()
        .id;
    let answer = srv.as_(&admin).test_webhook(&hook_id).await.unwrap();
    assert!(!answer.delivered);
    assert_eq!(answer.http_status, 0);
    assert!(
        answer.error.contains("loopback, private"),
        "the resolver refused it: {}",
        answer.error
    );
    revoke_one(&srv, &alice).await;
    let hook = webhook_until(&srv, &admin, &hook_id, "the delivery fails", |h| {
        h.delivery.as_ref().unwrap().attempts >= 1
    })
    .await;
    assert!(
        hook.delivery
            .unwrap()
            .last_error
            .contains("localhost resolves to"),
        "the error names the refused resolution"
    );
    assert!(receiver.received().is_empty(), "nothing reached 127.0.0.1");
    srv.stop().await;
}

#[tokio::test]
async fn delivery_never_slows_the_change_that_caused_it() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    receiver.delay_answers(Duration::from_secs(2));
    srv.as_(&admin)
        .create_webhook(&receiver.url(), &["access_token.revoked"])
        .await
        .unwrap();
    let (token_id, _) = srv.existing_pat(&alice, false).await;
    let started = std::time::Instant::now();
    srv.as_(&alice).revoke_token(&token_id).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1_000),
        "the revoke waited for the endpoint: {elapsed:?}"
    );
    receiver.wait_for(1, WAIT).await;
    srv.stop().await;
}

/// The webhook records in the log, oldest first.
async fn webhook_records(srv: &TestServer) -> Vec<serde_json::Value> {
    srv.ctx
        .store()
        .records_after(
            0,
            &token_service::domain::lifecycle::RecordFilter::default(),
            10_000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.to_json())
        .filter(|r| r["action"].as_str().unwrap().starts_with("webhook."))
        .collect()
}

#[tokio::test]
async fn every_change_of_an_endpoint_is_in_the_lifecycle_log_without_its_secret() {
    let srv = server().await;
    let admin = srv.admin("root").await;
    let admin_pat = lasting(&srv, &admin).await;
    let alice = srv.token_user("alice").await;
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500; 100]);
    let created = srv
        .as_(&admin)
        .create_webhook(
            &format!("{}?receiver_token=hunter2", receiver.url()),
            &["access_token.revoked"],
        )
        .await
        .unwrap();
    let hook = created.webhook.unwrap();
    srv.as_(&admin)
        .set_webhook_enabled(&hook.id, false)
        .await
        .unwrap();
    let rotated = srv
        .as_(&admin)
        .rotate_webhook_secret(&hook.id, None)
        .await
        .unwrap();
    // Re-enabled, it fails until delivery disables it (a record by the service itself).
    srv.as_(&admin_pat)
        .set_webhook_enabled(&hook.id, true)
        .await
        .unwrap();
    revoke_one(&srv, &alice).await;
    receiver.wait_for(1, WAIT).await;
    webhook_until(&srv, &admin_pat, &hook.id, "the failure is recorded", |h| {
        h.delivery.as_ref().unwrap().attempts == 1
    })
    .await;
    srv.advance(Duration::from_secs(3 * 86_400 + 3_600));
    webhook_until(&srv, &admin_pat, &hook.id, "disabled", |h| !h.enabled).await;
    srv.as_(&admin_pat).delete_webhook(&hook.id).await.unwrap();

    let records = webhook_records(&srv).await;
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "webhook.created",
            "webhook.updated",
            "webhook.secret_rotated",
            "webhook.updated",
            "webhook.disabled",
            "webhook.deleted"
        ]
    );
    for record in &records {
        assert_eq!(record["webhook_id"], hook.id.as_str(), "{record}");
    }
    let by_admin = |r: &serde_json::Value| {
        r["actor"]["type"] == "user" && r["actor"]["id"] == admin.id.as_str()
    };
    assert!(
        records
            .iter()
            .filter(|r| r["action"] != "webhook.disabled")
            .all(by_admin)
    );
    assert_eq!(records[4]["actor"]["type"], "service");
    assert!(
        records[4]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{}",
        records[4]
    );
    assert_eq!(
        records[0]["detail"]["host"],
        format!(
            "127.0.0.1:{}",
            receiver
                .url()
                .split(':')
                .nth(2)
                .unwrap()
                .trim_end_matches("/hook")
        )
    );
    assert_eq!(
        records[1]["detail"]["changed"],
        serde_json::json!(["enabled"])
    );
    assert_eq!(records[3]["detail"]["failures_cleared"], true);
    // The secrets are named by their HMAC under the audit key, never by value; the URL's
    // query (a receiver's own credential) is not recorded.
    let audit = srv.ctx.audit_key();
    assert_eq!(
        records[0]["credential_hmac"],
        audit.credential_hmac(&created.secret)
    );
    assert_eq!(
        records[2]["credential_hmac"],
        audit.credential_hmac(&rotated.secret)
    );
    let text = serde_json::to_string(&records).unwrap();
    for secret in [&created.secret, &rotated.secret] {
        assert!(!text.contains(secret.strip_prefix("whsec_").unwrap()));
    }
    assert!(!text.contains("hunter2"));
    srv.stop().await;
}
