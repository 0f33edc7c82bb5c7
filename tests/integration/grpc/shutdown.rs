//! Graceful shutdown: once it begins, calls already in flight still finish (within the grace
//! period), and open revocation streams end cleanly instead of being cut.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait};
use token_service::domain::{access_tokens, caller::Caller};

use crate::common::*;

/// The grace period the test servers run with (see `TestServer::start_with`).
const GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_call_waiting_on_the_database_when_shutdown_begins_still_finishes() {
    let srv = TestServer::start().await;
    let alice = srv.token_user("alice").await;
    let as_alice = srv.client().await.as_(&alice);
    let (token_id, _) = as_alice.new_token("me").await;

    // Another database client holds a write lock on the token's row, so the server's
    // DisableUserAccessToken waits inside the database.
    let url = srv
        .config
        .database_url
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    let blocker = Database::connect(&url).await.unwrap();
    let backend = blocker.get_database_backend();
    let lock = blocker.begin().await.unwrap();
    lock.execute_raw(Statement::from_sql_and_values(
        backend,
        match backend {
            DbBackend::Postgres => {
                "UPDATE user_access_tokens SET description = description WHERE id = $1"
            }
            _ => "UPDATE user_access_tokens SET description = description WHERE id = ?",
        },
        [token_id.clone().into()],
    ))
    .await
    .unwrap();

    let call = tokio::spawn({
        let (as_alice, token_id) = (as_alice.clone(), token_id.clone());
        async move { as_alice.disable_token(&token_id).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!call.is_finished(), "the call waits for the lock");

    srv.trigger_shutdown();
    let shutdown_began = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !call.is_finished(),
        "the draining server neither answered nor dropped the call"
    );
    lock.commit().await.unwrap();
    blocker.close().await.ok();

    let answer = tokio::time::timeout(GRACE, call)
        .await
        .expect("the call finishes within the grace period")
        .unwrap();
    answer.expect("the in-flight call succeeds");
    // It really happened: the token is disabled.
    let token = access_tokens::get_user_access_token(&srv.ctx, &Caller::Local, &token_id)
        .await
        .unwrap();
    assert!(!token.is_active);
    srv.stop().await;
    assert!(
        shutdown_began.elapsed() < GRACE,
        "the server stopped as soon as the call was done, not at the end of the grace period"
    );
}

#[tokio::test]
async fn an_open_revocation_stream_ends_cleanly_when_shutdown_begins() {
    let srv = TestServer::start().await;
    let admin = srv.admin("root").await;
    let alice = srv.token_user("alice").await;
    let client = srv.client().await;
    let (token_id, _) = client.as_(&alice).new_token("me").await;
    let mut stream = client.as_(&admin).watch_revocations(None).await.unwrap();
    client.as_(&alice).revoke_token(&token_id).await.unwrap();
    let event = tokio::time::timeout(GRACE, stream.message())
        .await
        .expect("an event")
        .expect("a healthy stream")
        .expect("an open stream");
    assert!(event.event.is_some());

    srv.trigger_shutdown();
    let shutdown_began = Instant::now();
    // The stream ends with a proper status (not a reset connection) that tells the client
    // to reconnect, to another replica, and resume from the last event id it saw.
    let end = tokio::time::timeout(GRACE, stream.message())
        .await
        .expect("the stream ends within the grace period");
    let status = end.expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(error_id(&status), "token_service.shutting_down");
    srv.stop().await;
    assert!(
        shutdown_began.elapsed() < GRACE,
        "the open stream did not hold the server until the grace period ran out"
    );
}
