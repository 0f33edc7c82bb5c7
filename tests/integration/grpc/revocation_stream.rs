//! WatchRevocations: who may subscribe, what the stream carries, and resuming after a
//! reconnect from the last event id seen; and its REST mirror.

use token_service::pb;

use crate::common::*;

#[tokio::test]
async fn subscribers_need_the_introspection_role_or_manage_system() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let introspector = srv
        .user("gateway", &["system_user", "system_token_introspector"])
        .await;
    let denied = srv.as_(&alice).watch_revocations(None).await;
    assert_denied(denied, "introspect_token");
    srv.as_(&introspector)
        .watch_revocations(None)
        .await
        .expect("the introspection role may subscribe");
    let negative = srv.as_(&introspector).watch_revocations(Some(-1)).await;
    assert_invalid(
        negative,
        "after_event_id",
        "api.context.invalid_url_param.app_error",
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_stream_carries_each_revocation_in_order_and_resumes_after_a_reconnect() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let mut stream = srv.as_(&admin).watch_revocations(None).await.unwrap();

    let (token_id, _) = srv.as_(&alice).new_token("me").await;
    srv.as_(&alice).revoke_token(&token_id).await.unwrap();
    let first = next_revocation(&mut stream).await.expect("stream healthy");
    assert_eq!(first.kind(), pb::RevocationKind::AccessToken);
    assert_eq!(first.subject_id, token_id);
    assert!(first.create_at.is_some());

    srv.as_(&admin).set_active(&alice.id, false).await;
    let second = next_revocation(&mut stream).await.expect("stream healthy");
    assert_eq!(second.kind(), pb::RevocationKind::User);
    assert_eq!(second.subject_id, alice.id);
    assert!(second.id > first.id);

    // Disconnect; two more revocations happen meanwhile.
    drop(stream);
    srv.as_(&admin)
        .revoke_all_sessions(&alice.id)
        .await
        .unwrap();
    srv.as_(&admin)
        .revoke_sessions_from_all_users()
        .await
        .unwrap();
    // The admin's own session went with "all"; log in again through the fixtures.
    let admin = srv.admin("root2").await;
    let mut resumed = srv
        .as_(&admin)
        .watch_revocations(Some(second.id))
        .await
        .unwrap();
    let third = next_revocation(&mut resumed).await.expect("stream healthy");
    assert_eq!(
        (third.kind(), third.subject_id.as_str()),
        (pb::RevocationKind::User, alice.id.as_str())
    );
    let fourth = next_revocation(&mut resumed).await.expect("stream healthy");
    assert_eq!(fourth.kind(), pb::RevocationKind::All);
    assert!(fourth.subject_id.is_empty());
    assert!(third.id > second.id && fourth.id > third.id);

    // The REST mirror returns the same events as one array.
    let events: serde_json::Value = crate::common::http_client()
        .get(format!(
            "{}/api/v4/tokens/revocations?after_event_id={}",
            srv.http_base(),
            first.id
        ))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![second.id, third.id, fourth.id]);
    assert_eq!(events[0]["kind"], "user");
    srv.stop().await;
}
