//! The store conformance suite against a real PostgreSQL server: one fresh database per test,
//! created on the server named by `USHER_TEST_POSTGRES_URL` (which `.ci/run` and
//! `scripts/test.sh` start). Without it these tests fail rather than pass vacuously.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::sync::Arc;

use usher_store_postgres::PostgresStore;
use usher_store_tests::{DynStore, store_conformance};

async fn fresh() -> DynStore {
    let url = usher_store_postgres::testing::fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(PostgresStore::connect(&url).await.unwrap())
}

store_conformance!(fresh());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    use usher_store::{Record, Store};
    let url = usher_store_postgres::testing::fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().unwrap());
    }
    stores[0]
        .insert(Record::new("user", "u1", serde_json::json!({})))
        .await
        .unwrap();
    assert!(stores[5].get("user", "u1", 0).await.unwrap().is_some());
}
