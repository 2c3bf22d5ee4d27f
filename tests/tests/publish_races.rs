//! A publish that loses its pointer race on a keyspace switched more often than the pointer's history
//! holds. Found by review: once the history had been cut (past 64 switches, for good), every lost race was
//! reported as "could not tell whether the version was published", which left the loser's version in place
//! and told the user to rerun: a rerun publishes over the winner.

use std::sync::Arc;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::stores::Store;
use cairn_shared::versions::{pointer, rollback::rollback};
use cairn_tests::hooked::{Hooked, When};
use futures::future::BoxFuture;
use object_store::{ObjectStoreExt, PutPayload};

fn options(dir: &std::path::Path, name: &str, body: &str, store: &Store) -> IngestOptions {
    let input = dir.join(name);
    std::fs::write(&input, body).unwrap();
    IngestOptions::new(&input, "ks", store.clone())
}

/// Rewrites the pointer's history as if its switches, and its cut, had been a day ago (what a keyspace
/// switched often, long ago, carries for ever).
async fn backdate_history(store: &Store) {
    let path = cairn_shared::format::layout::pointer_path("ks");
    let bytes = store.inner.get(&path).await.unwrap().bytes().await.unwrap();
    let mut p: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    let at = |ms: u64| humantime::format_rfc3339_millis(day_ago + std::time::Duration::from_millis(ms)).to_string();
    let history = p["history"].as_array_mut().unwrap();
    let n = history.len() as u64;
    for (i, h) in history.iter_mut().enumerate() {
        h["replaced_at"] = at(n + 1 - i as u64).into();
    }
    p["history_from"] = at(0).into();
    store.inner.put(&path, PutPayload::from(serde_json::to_vec(&p).unwrap())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_is_told_as_lost_though_the_history_was_cut_long_ago() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    cairn_ingest::ingest(options(dir.path(), "one.data", "a 1\n", &plain), Arc::new(NoProgress)).await.unwrap();
    cairn_ingest::ingest(options(dir.path(), "two.data", "a 2\n", &plain), Arc::new(NoProgress)).await.unwrap();
    // 65 switches cut the history; they are then dated a day back.
    let open = |u: &str| Store::open(u);
    for _ in 0..65 {
        rollback(&plain, "ks", None, &open).await.unwrap();
    }
    let p = pointer::read(plain.inner.as_ref(), "ks").await.unwrap().unwrap().pointer;
    assert!(p.history_from.is_some(), "65 switches cut the history");
    backdate_history(&plain).await;

    // A rival switches the pointer right before this ingest's conditional write.
    let rival = plain.clone();
    let hook: BoxFuture<'static, ()> = Box::pin(async move {
        rollback(&rival, "ks", None, &|u: &str| Store::open(u)).await.unwrap();
    });
    let hooked =
        Store { url: plain.url.clone(), inner: Arc::new(Hooked::new(plain.inner.clone(), When::PointerUpdate, hook)) };
    let lost = cairn_ingest::ingest(options(dir.path(), "three.data", "a 3\n", &hooked), Arc::new(NoProgress)).await;
    let err = lost.expect_err("the rival switched first").to_string();
    assert!(err.contains("published by someone else meanwhile"), "{err}");
    // The loser's version is gone (discarded), the rival's stands.
    let after = pointer::read(plain.inner.as_ref(), "ks").await.unwrap().unwrap().pointer;
    assert_eq!(after.seq, p.seq + 1, "only the rival switched");
    let manifests: Vec<_> = std::fs::read_dir(dir.path().join("store/keyspace=ks/manifests")).unwrap().collect();
    assert_eq!(manifests.len(), 2, "the lost version's manifest was left: {manifests:?}");
}
