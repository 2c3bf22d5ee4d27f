//! No object a published manifest lists may ever be replaced, whatever its size (issue 28, defect 3).
//! External writers (Spark tasks, their retries and speculative copies) finish shards "exclusively": the
//! first complete upload of a path wins and a later one must be byte for byte the same. Shards over 64 MiB
//! used to be uploaded without that check, so a zombie task with other rows overwrote a published shard
//! and every read of it then failed its checksum. Two writers of one 80 MiB shard, on a local directory and
//! on S3 (LocalStack).

use cairn_ingest::{ShardObject, VersionTarget};
use cairn_shared::format::layout;
use cairn_shared::format::manifest::checksum_of;
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::stores::Store;
use object_store::ObjectStoreExt;

/// Rows of about `bytes` in all, sorted, with incompressible values that depend on which writer wrote them.
fn rows(bytes: usize, writer: &str) -> Vec<(String, Vec<u8>)> {
    let value = 8 << 10;
    (0..bytes / value)
        .map(|i| {
            let seed = xxhash_rust::xxh3::xxh3_64(format!("{writer}-{i}").as_bytes());
            let v = (0..value as u64 / 8)
                .flat_map(|j| xxhash_rust::xxh3::xxh3_64_with_seed(&j.to_le_bytes(), seed).to_le_bytes());
            (format!("key-{i:08}"), v.collect())
        })
        .collect()
}

async fn write(target: &VersionTarget, store: &Store, rows: &[(String, Vec<u8>)]) -> Result<String, String> {
    let tmp = tempfile::tempdir().unwrap();
    let mut obj = ShardObject::create(target, &Default::default(), 0, tmp.path()).unwrap();
    for (k, v) in rows {
        obj.append(k, v).unwrap();
    }
    obj.finish_exclusive(std::slice::from_ref(store)).await.map(|e| e.checksum).map_err(|e| e.to_string())
}

async fn two_writers_of_one_large_shard(store: Store) {
    let target = VersionTarget {
        delta: false,
        keyspace: "big".into(),
        version: layout::new_version(),
        placement: PlacementSpec::jump(1),
        roots: vec![store.url.clone()],
    };
    let first = rows(80 << 20, "first");
    let zombie = rows(80 << 20, "zombie");
    let won = write(&target, &store, &first).await.expect("the first writer");
    let path = layout::shard_path("big", 0, &target.version);
    let stored = store.inner.get(&path).await.unwrap().bytes().await.unwrap();
    assert!(stored.len() > 64 << 20, "the shard is {} bytes: not past the old 64 MiB limit", stored.len());
    assert_eq!(checksum_of(&stored), won);

    // A retry with the same rows is accepted (the same bytes); a zombie with other rows is refused.
    assert_eq!(write(&target, &store, &first).await.expect("a retry with the same rows"), won);
    let refused = write(&target, &store, &zombie).await.expect_err("a writer with other rows replaced the shard");
    assert!(refused.contains("other rows"), "{refused}");
    let after = store.inner.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(checksum_of(&after), won, "the shard's bytes changed");
    // Nothing left behind by the refused writer (its staged upload).
    let mut listed = Vec::new();
    let mut it = store.inner.list(Some(&layout::keyspace_dir("big")));
    while let Some(m) = futures::StreamExt::next(&mut it).await {
        listed.push(m.unwrap().location.to_string());
    }
    assert_eq!(listed, vec![path.to_string()], "objects besides the shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_shard_is_never_replaced_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    two_writers_of_one_large_shard(Store::open(dir.path().to_str().unwrap()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_shard_is_never_replaced_on_s3() {
    let bucket = cairn_tests::s3::bucket("exclusive").await;
    two_writers_of_one_large_shard(cairn_tests::s3::store(&format!("s3://{bucket}/p"))).await;
}
