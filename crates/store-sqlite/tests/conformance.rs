//! The store conformance suite against SQLite, one fresh database file per test.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::sync::Arc;

use usher_store_sqlite::SqliteStore;
use usher_store_tests::{DynStore, store_conformance};

async fn fresh() -> DynStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("usher.db")).await.unwrap();
    // The directory must outlive the test; leak it (tests are short-lived processes).
    std::mem::forget(dir);
    Arc::new(store)
}

store_conformance!(fresh());

#[tokio::test]
async fn reopening_keeps_data_and_does_not_rerun_migrations() {
    use usher_store::{Record, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usher.db");
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.insert(Record::new("user", "u1", serde_json::json!({"a": 1})))
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(s.get("user", "u1", 0).await.unwrap().unwrap().data["a"], 1);
}
