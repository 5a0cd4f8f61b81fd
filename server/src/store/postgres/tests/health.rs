//! Write health on PostgreSQL: gRPC health and the store metrics follow
//! whether the writer's batches reach the database, as on SQLite.
use super::*;

/// A database that stops answering makes the writer's batches fail: the
/// store says its writes fail, and a probe says they go through again
/// once it answers.
#[tokio::test]
async fn write_health_follows_a_database_that_stops_answering() {
    let Some(url) = url().await else { return };
    let (proxied, freeze) = errand_testkit::pg::freezable(&url).await;
    let options = PostgresOptions {
        op_timeout: Duration::from_millis(1_000),
        lease: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect(&proxied, options).await.unwrap();
    let health = store
        .write_health()
        .expect("the PostgreSQL store tracks its writes");
    let failing = health.watch();
    insert_new(&store, &task("s1", None, at(1))).await;
    assert!(!*failing.borrow());

    freeze.send_replace(true);
    let err = store
        .insert_task(&task("s1", None, at(2)))
        .await
        .expect_err("the database does not answer");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(*failing.borrow(), "health says writes fail");
    store.probe_write().await.expect_err("still silent");
    assert!(*failing.borrow());

    freeze.send_replace(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Err(e) = store.probe_write().await {
        assert!(tokio::time::Instant::now() < deadline, "still failing: {e}");
    }
    assert!(!*failing.borrow(), "a write went through");
}

/// A probe is a real write: PostgreSQL commits a transaction that wrote
/// nothing without writing anything, so a bare BEGIN/COMMIT went through on
/// a full disk or a read-only (failed-over) database and turned health back
/// to SERVING every second.
#[tokio::test]
async fn a_probe_is_a_real_write() {
    let Some(url) = url().await else { return };
    let store = open(&url).await;
    let version_of_the_row = || async {
        let client = store.pool.get().await.unwrap();
        client
            .query_one(
                "SELECT xmin::text FROM errand_schema ORDER BY version DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let before = version_of_the_row().await;
    store.probe_write().await.unwrap();
    assert_ne!(
        version_of_the_row().await,
        before,
        "the probe wrote nothing"
    );
}
