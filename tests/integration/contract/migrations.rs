//! Migrations run up, down and up again on the backend under test.

use token_service::store::{PoolOptions, Store};

use crate::common::TestDb;

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(dir.path()).await;
    let pool = PoolOptions {
        max_connections: 2,
        min_connections: 0,
        connect_timeout: std::time::Duration::from_secs(5),
        acquire_timeout: std::time::Duration::from_secs(5),
        check_connections: 1,
        check_batches: 1,
    };
    let store = Store::connect(&db.url(), &pool).await.unwrap();
    let status = store.migration_status().await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|m| !m.applied));

    store.migrate_up().await.unwrap();
    let applied = store.migration_status().await.unwrap();
    assert!(applied.iter().all(|m| m.applied), "{applied:?}");
    store.ping().await.unwrap();

    store.migrate_down(applied.len() as u32).await.unwrap();
    assert!(
        store
            .migration_status()
            .await
            .unwrap()
            .iter()
            .all(|m| !m.applied)
    );

    store.migrate_up().await.unwrap();
    store.migrate_up().await.unwrap(); // idempotent
    assert!(
        store
            .migration_status()
            .await
            .unwrap()
            .iter()
            .all(|m| m.applied)
    );
    store.close().await;
    db.drop_database().await;
}
