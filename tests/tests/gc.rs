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

/// A write to a local root killed part-way leaves object_store's staging file (`<object>#<n>`) beside where
/// the object would have been, and no listing shows it: crashes filled the disk of the embedded default for
/// good. gc deletes those idle for long enough under every root it is given, and keeps one a live write is
/// still filling; a dry run only counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_the_staging_files_of_killed_local_writes() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..2).map(|i| dir.path().join(format!("root{i}"))).collect();
    let roots: Vec<Store> = paths.iter().map(|p| Store::open(p.to_str().unwrap()).unwrap()).collect();
    let input = dir.path().join("in.data");
    std::fs::write(&input, "a 1\nb 2\n").unwrap();
    let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
    let stale = [
        paths[0].join("keyspace=ks/shard=00000/20200101T000000000Z-00000000.parquet#3"),
        paths[1].join("keyspace=ks/manifests/20200101T000000000Z-00000000.json#17"),
        paths[0].join("keyspace=ks/_ingest/abc.lease#2"),
    ];
    let live = paths[0].join("keyspace=ks/shard=00000/20200101T000000001Z-00000001.parquet#4");
    // Not staging files: a name with non-digits after '#' is an object of its own, and another keyspace's.
    let others = [paths[0].join("keyspace=ks/notes#draft"), paths[0].join("keyspace=other/shard=00000/x.parquet#1")];
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for f in stale.iter().chain(&others).chain([&live]) {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"partial").unwrap();
        if f != &live {
            std::fs::File::options().write(true).open(f).unwrap().set_modified(two_hours_ago).unwrap();
        }
    }
    let gc = |dry_run| GcOptions { keep: 1, min_age: Duration::ZERO, dry_run };
    let dry = collect(&roots, "ks", &gc(true)).await.unwrap();
    assert_eq!(dry.staging_files_deleted, stale.len(), "{dry:?}");
    assert!(stale.iter().all(|f| f.exists()), "a dry run deletes nothing");
    let report = collect(&roots, "ks", &gc(false)).await.unwrap();
    assert_eq!(report.staging_files_deleted, stale.len(), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    for f in &stale {
        assert!(!f.exists(), "{} is left", f.display());
    }
    assert!(live.exists(), "a staging file written to just now belongs to a write in flight");
    assert!(others.iter().all(|f| f.exists()), "gc touches only the keyspace's staging files");

    // A keyspace whose first ingest was killed has no pointer: gc says so, and still removes what it left.
    let first = paths[0].join("keyspace=new/shard=00000/20200101T000000000Z-00000000.parquet#1");
    std::fs::create_dir_all(first.parent().unwrap()).unwrap();
    std::fs::write(&first, b"partial").unwrap();
    std::fs::File::options().write(true).open(&first).unwrap().set_modified(two_hours_ago).unwrap();
    assert!(collect(&roots, "new", &gc(false)).await.is_err(), "no such keyspace");
    assert!(!first.exists(), "the staging file of the killed first ingest is left");
    // The same through `cairn gc`, which reads the keyspace's roots first.
    std::fs::write(&first, b"partial").unwrap();
    std::fs::File::options().write(true).open(&first).unwrap().set_modified(two_hours_ago).unwrap();
    let p0 = paths[0].to_str().unwrap();
    let out = cairn(&["gc", "-k", "new", "--store", p0, "--min-age", "0s"], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 staging files"), "{}", text(&out.stdout));
    assert!(!first.exists());
    let none = cairn(&["gc", "-k", "nothing-here", "--store", p0], None, &[]);
    assert!(!none.status.success() && text(&none.stderr).contains("not found"), "{}", text(&none.stderr));
    // A primary that lost its pointer while a replica has one is not a keyspace without versions: refused.
    std::fs::remove_file(paths[0].join("keyspace=ks/CURRENT")).unwrap();
    std::fs::write(&stale[0], b"partial").unwrap();
    std::fs::File::options().write(true).open(&stale[0]).unwrap().set_modified(two_hours_ago).unwrap();
    let p1 = paths[1].to_str().unwrap();
    let lost = cairn(&["gc", "-k", "ks", "--store", p0, "--replicas", p1, "--min-age", "0s"], None, &[]);
    assert!(!lost.status.success() && text(&lost.stderr).contains("has one in"), "{}", text(&lost.stderr));
    assert!(stale[0].exists(), "nothing was deleted");
}
