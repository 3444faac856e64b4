//! The conformance suite every store backend must pass. Each backend's tests invoke
//! [`store_conformance!`] with an async expression that yields a fresh, empty store.
#![warn(missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::sync::Arc;

use serde_json::json;
use usher_store::{Record, Store, StoreError};

/// A store under test.
pub type DynStore = Arc<dyn Store>;

const NOW: i64 = 1_800_000_000;

/// Inserted records read back identically, by id and by key.
pub async fn insert_and_read_back(s: DynStore) {
    let data =
        json!({"displayName": "Ann Ötzi ✓", "nested": {"list": [1, 2, 3]}, "big": "x".repeat(100_000)});
    let r = s
        .insert(Record::new("user", "u1", data.clone()).with_key("ann@contoso.test"))
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let got = s.get("user", "u1", NOW).await.unwrap().unwrap();
    assert_eq!(got.data, data);
    assert_eq!(got.key.as_deref(), Some("ann@contoso.test"));
    assert_eq!(got.version, 1);
    let by_key = s
        .get_by_key("user", "ann@contoso.test", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_key.id, "u1");
    assert!(s.get("user", "nope", NOW).await.unwrap().is_none());
    assert!(
        s.get("group", "u1", NOW).await.unwrap().is_none(),
        "kinds are separate namespaces"
    );
}

/// A taken id or key is a conflict and the first record is untouched.
pub async fn duplicates_conflict_and_lose_nothing(s: DynStore) {
    s.insert(Record::new("user", "u1", json!({"n": 1})).with_key("k1"))
        .await
        .unwrap();
    let e = s
        .insert(Record::new("user", "u1", json!({"n": 2})))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    let e = s
        .insert(Record::new("user", "u2", json!({"n": 3})).with_key("k1"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    assert_eq!(
        s.get("user", "u1", NOW).await.unwrap().unwrap().data,
        json!({"n": 1})
    );
    assert!(s.get("user", "u2", NOW).await.unwrap().is_none());
    // The same key in another kind is fine.
    s.insert(Record::new("group", "g1", json!({})).with_key("k1"))
        .await
        .unwrap();
}

/// Updates are compare-and-swap on the version.
pub async fn update_is_compare_and_swap(s: DynStore) {
    let r = s
        .insert(Record::new("user", "u1", json!({"n": 1})))
        .await
        .unwrap();
    let mut a = r.clone();
    a.data = json!({"n": 2});
    let a = s.update(a).await.unwrap();
    assert_eq!(a.version, 2);
    let mut stale = r.clone();
    stale.data = json!({"n": 99});
    let e = s.update(stale).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    assert_eq!(
        s.get("user", "u1", NOW).await.unwrap().unwrap().data,
        json!({"n": 2})
    );
    let mut gone = Record::new("user", "missing", json!({}));
    gone.version = 1;
    assert!(matches!(
        s.update(gone).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

/// An update cannot take another record's key.
pub async fn update_key_conflict(s: DynStore) {
    s.insert(Record::new("user", "u1", json!({})).with_key("a"))
        .await
        .unwrap();
    let b = s
        .insert(Record::new("user", "u2", json!({})).with_key("b"))
        .await
        .unwrap();
    let e = s.update(b.clone().with_key("a")).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    let moved = s.update(b.with_key("c")).await.unwrap();
    assert_eq!(moved.version, 2);
    assert!(s.get_by_key("user", "b", NOW).await.unwrap().is_none());
    assert_eq!(s.get_by_key("user", "c", NOW).await.unwrap().unwrap().id, "u2");
}

/// Concurrent read-modify-write with retry loses no increment.
pub async fn concurrent_increments_are_not_lost(s: DynStore) {
    s.insert(Record::new("counter", "c", json!({"n": 0})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let mut r = s.get("counter", "c", NOW).await.unwrap().unwrap();
                let n = r.data["n"].as_i64().unwrap();
                r.data = json!({"n": n + 1});
                match s.update(r).await {
                    Ok(_) => return,
                    Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("no progress after 200 retries");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = s.get("counter", "c", NOW).await.unwrap().unwrap();
    assert_eq!(r.data["n"], 16);
    assert_eq!(r.version, 17);
}

/// Deleting with a version only deletes an unchanged record.
pub async fn delete_with_version(s: DynStore) {
    let r = s.insert(Record::new("user", "u1", json!({}))).await.unwrap();
    let r2 = s.update(r.clone()).await.unwrap();
    assert!(!s.delete("user", "u1", Some(r.version)).await.unwrap());
    assert!(s.get("user", "u1", NOW).await.unwrap().is_some());
    assert!(s.delete("user", "u1", Some(r2.version)).await.unwrap());
    assert!(s.get("user", "u1", NOW).await.unwrap().is_none());
    assert!(!s.delete("user", "u1", None).await.unwrap());
}

/// `take` hands a record to exactly one of many concurrent callers.
pub async fn take_is_one_shot(s: DynStore) {
    s.insert(Record::new("code", "c1", json!({"v": 1})))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.take("code", "c1", NOW).await.unwrap() },
        ));
    }
    let mut winners = 0;
    for t in tasks {
        if let Some(r) = t.await.unwrap() {
            assert_eq!(r.data, json!({"v": 1}));
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    assert!(s.get("code", "c1", NOW).await.unwrap().is_none());
}

/// Expired records are invisible, cannot be taken, and are purged.
pub async fn expiry(s: DynStore) {
    s.insert(
        Record::new("code", "old", json!({}))
            .with_key("ko")
            .with_expiry(NOW - 1),
    )
    .await
    .unwrap();
    s.insert(Record::new("code", "new", json!({})).with_expiry(NOW + 60))
        .await
        .unwrap();
    assert!(s.get("code", "old", NOW).await.unwrap().is_none());
    assert!(s.get_by_key("code", "ko", NOW).await.unwrap().is_none());
    assert!(s.get("code", "new", NOW).await.unwrap().is_some());
    assert_eq!(s.list("code", None, 10, NOW).await.unwrap().len(), 1);
    assert!(s.take("code", "old", NOW).await.unwrap().is_none());
    s.insert(Record::new("code", "old2", json!({})).with_expiry(NOW - 5))
        .await
        .unwrap();
    assert_eq!(s.purge_expired(NOW).await.unwrap(), 1);
    assert!(s.get("code", "new", NOW).await.unwrap().is_some());
}

/// Lists come in id order, page by page.
pub async fn list_pages_in_id_order(s: DynStore) {
    for i in (0..25).rev() {
        s.insert(Record::new("user", format!("u{i:03}"), json!({"i": i})))
            .await
            .unwrap();
    }
    s.insert(Record::new("group", "g", json!({}))).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list("user", after.as_deref(), 10, NOW).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|r| r.id.clone());
        seen.extend(page.into_iter().map(|r| r.id));
    }
    let expected: Vec<String> = (0..25).map(|i| format!("u{i:03}")).collect();
    assert_eq!(seen, expected);
}

/// Logs append in order and read newest first, per stream.
pub async fn logs(s: DynStore) {
    let seqs = s
        .append_log(vec![
            ("signin".into(), NOW, json!({"n": 1}).to_string()),
            ("audit".into(), NOW, json!({"n": 2}).to_string()),
            ("signin".into(), NOW + 1, json!({"n": 3}).to_string()),
        ])
        .await
        .unwrap();
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let signins = s.read_log("signin", None, 10).await.unwrap();
    assert_eq!(
        signins
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 1]
    );
    assert_eq!(signins[0].at, NOW + 1);
    let older = s.read_log("signin", Some(signins[0].seq), 10).await.unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(s.read_log("audit", None, 10).await.unwrap().len(), 1);
    assert!(s.read_log("none", None, 10).await.unwrap().is_empty());
    // A batch larger than one statement keeps every entry, in order.
    let many: Vec<(String, i64, String)> = (0..700)
        .map(|i| ("bulk".to_owned(), NOW, json!({"i": i}).to_string()))
        .collect();
    let seqs = s.append_log(many).await.unwrap();
    assert_eq!(seqs.len(), 700);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let back = s.read_log("bulk", None, 1000).await.unwrap();
    assert_eq!(back.len(), 700);
    assert_eq!(back[0].data["i"], 699);
    assert_eq!(back[699].data["i"], 0);
    s.ping().await.unwrap();
}

/// Instantiates every conformance test for a backend. `$make` is an async block or expression
/// returning a fresh `Arc<dyn Store>`.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            insert_and_read_back, duplicates_conflict_and_lose_nothing, update_is_compare_and_swap,
            update_key_conflict, concurrent_increments_are_not_lost, delete_with_version,
            take_is_one_shot, expiry, list_pages_in_id_order, logs);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $make.await;
                $crate::$name(store).await;
            }
        )*
    };
}
