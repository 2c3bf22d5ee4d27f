//! `cairn gc`: old versions leave every root (manifest and shard objects); the current version, its
//! predecessor, the newest ones, a version an unfinished ingest's checkpoint names and young objects stay;
//! shards of a crashed ingest go; a dry run deletes nothing; readers and rollback keep working.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_shared::{Engine, format::manifest, versions::pointer};
use cairn_tests::process::{cairn, text};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};

async fn objects(root: &Store) -> Vec<String> {
    let metas: Vec<_> = root.inner.list(None).try_collect().await.unwrap();
    let mut paths: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    paths.sort();
    paths
}

async fn put(root: &Store, path: &str, body: &str) {
    root.inner.put(&path.into(), PutPayload::from(Bytes::from(body.to_string()))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_old_versions_everywhere_and_keeps_what_readers_need() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..2).map(|i| dir.path().join(format!("root{i}"))).collect();
    let roots: Vec<Store> = paths.iter().map(|p| Store::open(p.to_str().unwrap()).unwrap()).collect();
    let mut versions = Vec::new();
    for i in 0..4 {
        let input = dir.path().join(format!("v{i}.data"));
        std::fs::write(&input, format!("a {i}\nb {i}\n")).unwrap();
        let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
        opts.replicas = roots[1..].to_vec();
        opts.shards = Some(2);
        versions.push(cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap().version);
    }
    // A crashed ingest's shard (no manifest, no checkpoint), and one an unfinished ingest's checkpoint names.
    let (crashed, resumable) = ("20200101T000000000Z-00000000", "20200101T000000001Z-00000001");
    put(&roots[0], &format!("keyspace=ks/shard=00000/{crashed}.parquet"), "x").await;
    put(&roots[0], &format!("keyspace=ks/shard=00001/{resumable}.parquet"), "y").await;
    put(&roots[0], "keyspace=ks/_ingest/abc.json", &format!(r#"{{"version":"{resumable}"}}"#)).await;
    let before: Vec<Vec<String>> = futures::future::join_all(roots.iter().map(objects)).await;

    let opts = |dry_run, min_age| GcOptions { keep: 1, min_age, dry_run };
    let young = collect(&roots, "ks", &opts(false, Duration::from_secs(3600))).await.unwrap();
    assert_eq!(young.objects_deleted, 0, "everything is younger than an hour: {young:?}");
    assert_eq!(young.young_objects_kept, 2 * 2 * 3 + 1, "{young:?}");
    let dry = collect(&roots, "ks", &opts(true, Duration::ZERO)).await.unwrap();
    let mut expected = vec![crashed.to_string(), versions[0].clone(), versions[1].clone()];
    expected.sort();
    assert_eq!(dry.deleted_versions, expected, "kept: the current, its predecessor and the checkpoint's");
    // Per root, two versions of (manifest + 2 shards), plus the crashed shard in the primary.
    assert_eq!(dry.objects_deleted, 2 * 2 * 3 + 1);
    assert_eq!(futures::future::join_all(roots.iter().map(objects)).await, before, "a dry run deletes nothing");

    let done = collect(&roots, "ks", &opts(false, Duration::ZERO)).await.unwrap();
    assert_eq!((done.deleted_versions.clone(), done.objects_deleted), (expected, dry.objects_deleted));
    for (i, root) in roots.iter().enumerate() {
        assert_eq!(manifest::list_versions(root.inner.as_ref(), "ks").await.unwrap(), versions[2..].to_vec());
        let left = objects(root).await;
        for gone in [&versions[0], &versions[1], &crashed.to_string()] {
            assert!(left.iter().all(|p| !p.contains(gone.as_str())), "root {i} still has {gone}: {left:?}");
        }
        let kept_shards = left.iter().filter(|p| p.ends_with(".parquet")).count();
        assert_eq!(kept_shards, 2 * 2 + usize::from(i == 0), "root {i}: {left:?}");
    }
    assert!(objects(&roots[0]).await.contains(&format!("keyspace=ks/shard=00001/{resumable}.parquet")));

    // Readers still answer, and the predecessor is still a whole rollback target.
    let engine = Engine::new(roots[0].clone(), EngineConfig::default());
    assert_eq!(engine.get("ks", "a").await.unwrap().as_deref(), Some(&b"3"[..]));
    let cur = pointer::read(roots[0].inner.as_ref(), "ks").await.unwrap();
    pointer::switch(roots[0].inner.as_ref(), "ks", &versions[2], None, cur.as_ref()).await.unwrap();
    let engine = Engine::new(roots[0].clone(), EngineConfig::default());
    assert_eq!(engine.get("ks", "b").await.unwrap().as_deref(), Some(&b"2"[..]));

    // The CLI: nothing more to collect (current v2, its predecessor v3; the checkpoint's version).
    let out = cairn(&["gc", "-k", "ks", "--store", paths[0].to_str().unwrap(), "--min-age", "0s"], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ks: deleted 0 versions (0 objects, 0 bytes) under 2 roots"),
        "{}",
        text(&out.stdout)
    );
    let out = cairn(&["gc", "-k", "nope", "--store", paths[0].to_str().unwrap()], None, &[]);
    assert_ne!(out.status.code(), Some(0), "an unknown keyspace is an error");
}
