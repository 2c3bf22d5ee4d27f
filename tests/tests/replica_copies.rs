//! A replica's pointer copy never moves back. Copies were unconditional puts: a writer holding an older
//! pointer (`cairn repair` that read the primary before a publish, a rollback whose copy lands after a later
//! publish's) wrote it over a newer copy, and failover readers starting on that replica served the older
//! version until the next repair. A command given a replica root as its `--store` is refused: it took that
//! root's copy for the primary's pointer, and published, rolled back or mended the others from it.

use std::sync::Arc;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::{pointer, repair::repair, replica_pointer};
use cairn_tests::hooked::{Hooked, When};
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;

async fn publish(dir: &std::path::Path, roots: &[Store], body: &str) -> String {
    let input = dir.join(format!("{}.data", body.len()));
    std::fs::write(&input, body).unwrap();
    let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap().version
}

async fn copy_of(root: &Store) -> pointer::Pointer {
    pointer::read(root.inner.as_ref(), "ks").await.unwrap().unwrap().pointer
}

fn roots(dir: &std::path::Path) -> Vec<Store> {
    ["primary", "replica"].iter().map(|n| Store::open(dir.join(n).to_str().unwrap()).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_that_read_the_pointer_before_a_publish_leaves_the_newer_copy() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let old = publish(dir.path(), &roots, "a 1\n").await;
    // The replica's copy differs from the primary's (as a torn or hand-made one would): repair has a copy to
    // write.
    let mut differs = copy_of(&roots[1]).await;
    differs.updated_at = "2020-01-01T00:00:00Z".into();
    replica_pointer::copy(roots[1].inner.as_ref(), "ks", &differs).await.unwrap();

    // A publish lands right after repair read the replica's (missing) copy.
    let (d, publisher) = (dir.path().to_path_buf(), roots.clone());
    let hook: BoxFuture<'static, ()> = Box::pin(async move {
        publish(&d, &publisher, "a 2 newer\n").await;
    });
    let replica = Store {
        url: roots[1].url.clone(),
        inner: Arc::new(Hooked::new(roots[1].inner.clone(), When::PointerRead, hook)),
    };
    let manifest = Manifest::read(roots[0].inner.as_ref(), "ks", &old).await.unwrap();
    repair(&[roots[0].clone(), replica], &manifest).await.unwrap();

    let (primary, copy) = (copy_of(&roots[0]).await, copy_of(&roots[1]).await);
    assert_ne!(primary.version, old, "the publish happened");
    assert_eq!(copy, primary, "the replica keeps the newer copy the publish wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_copy_of_an_older_pointer_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    publish(dir.path(), &roots, "a 1\n").await;
    let older = copy_of(&roots[0]).await;
    publish(dir.path(), &roots, "a 2 newer\n").await;
    let newer = copy_of(&roots[1]).await;
    replica_pointer::copy(roots[1].inner.as_ref(), "ks", &older).await.unwrap();
    assert_eq!(copy_of(&roots[1]).await, newer);
    // A copy of the same switch that differs (gc's marks) still lands, as does a newer one.
    let mut marked = newer.clone();
    marked.collecting.push("20200101T000000000Z-00000000".into());
    replica_pointer::copy(roots[1].inner.as_ref(), "ks", &marked).await.unwrap();
    assert_eq!(copy_of(&roots[1]).await, marked);
}

/// Found by review of the first fix: a replica copy ahead of the primary (the primary's pointer restored
/// from a backup) was left in place by repair, which still reported it as mended. Repair makes the copy the
/// primary's, and says so only when it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_brings_a_copy_ahead_of_the_primary_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let old = publish(dir.path(), &roots, "a 1\n").await;
    let path = cairn_shared::format::layout::pointer_path("ks");
    let backup = serde_json::to_vec(&copy_of(&roots[0]).await).unwrap();
    publish(dir.path(), &roots, "a 2 newer\n").await;
    roots[0].inner.put(&path, backup.into()).await.unwrap();
    assert_ne!(copy_of(&roots[1]).await, copy_of(&roots[0]).await);

    let manifest = Manifest::read(roots[0].inner.as_ref(), "ks", &old).await.unwrap();
    let first = repair(&roots, &manifest).await.unwrap();
    assert_eq!(first.metadata_copied, 1, "{first:?}");
    assert_eq!(copy_of(&roots[1]).await, copy_of(&roots[0]).await);
    let second = repair(&roots, &manifest).await.unwrap();
    assert_eq!(second.metadata_copied, 0, "nothing left to mend: {second:?}");
}

/// Found by review: every command that writes or judges a keyspace's pointer took a replica root given as
/// `--store` for the primary. An ingest, compaction, bulk-load build or rollback there switched the
/// replica's copy alone (readers of the primary never saw it), `repair` made the other replicas' copies
/// equal to it, and `--replicas` naming the primary again wrote one copy where the manifest promises two.
/// Each is refused while the primary holds the keyspace, and changes nothing; once it does not (lost), the
/// replica is used as the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_root_given_as_the_primary_is_refused_while_the_primary_holds_the_keyspace() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let first = publish(dir.path(), &roots, "a 1\n").await;
    publish(dir.path(), &roots, "a 2 newer\n").await;
    let input = dir.path().join("more.data");
    std::fs::write(&input, "b 3\n").unwrap();
    let mut delta = IngestOptions::new(&input, "ks", roots[0].clone());
    delta.delta = true;
    let layered = cairn_ingest::ingest(delta, Arc::new(NoProgress)).await.unwrap().version;
    let copy = copy_of(&roots[1]).await;
    assert_eq!(copy.version, layered);
    let refused = |e: String| assert!(e.contains("is a replica root of keyspace ks"), "{e}");

    for delta in [false, true] {
        let mut opts = IngestOptions::new(&input, "ks", roots[1].clone());
        opts.delta = delta;
        refused(cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap_err().to_string());
    }
    let build = cairn_ingest::Build::begin(
        "ks",
        vec![roots[1].clone()],
        cairn_shared::format::ring::PlacementSpec::jump(1),
        std::time::Duration::from_secs(30),
    );
    refused(build.await.err().expect("a build on a replica root is refused").to_string());
    let mut twice = IngestOptions::new(&input, "ks", roots[0].clone());
    twice.replicas = vec![roots[1].clone(), roots[0].clone()];
    let e = cairn_ingest::ingest(twice, Arc::new(NoProgress)).await.unwrap_err().to_string();
    assert!(e.contains("is named twice among the roots"), "{e}");
    // The target's manifest on the replica as an older build wrote it (no primary named): the current
    // version's judges the rollback too.
    let mut older = Manifest::read(roots[1].inner.as_ref(), "ks", &first).await.unwrap();
    older.primary = None;
    older.write(roots[1].inner.as_ref()).await.unwrap();
    let open = |url: &str| Store::open(url);
    let e = cairn_shared::versions::rollback::rollback(&roots[1], "ks", Some(&first), &open).await.unwrap_err();
    refused(e.to_string());

    let replica = roots[1].url.as_str();
    for args in [
        vec!["compact", "--store", replica, "-k", "ks"],
        vec!["repair", "--store", replica, "-k", "ks"],
        vec!["health", "--store", replica, "-k", "ks"],
        vec!["gc", "--store", replica, "-k", "ks", "--dry-run"],
    ] {
        let out = cairn_tests::process::cairn(&args, None, &[]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        refused(err);
    }
    assert_eq!(copy_of(&roots[1]).await, copy, "the replica's copy is unchanged");
    assert_eq!(copy_of(&roots[0]).await, copy, "the primary's too");

    // The primary cannot be read (a file where its directory was): refused until the operator says it is
    // lost; then the replica stands in for it, and its next publish names it the primary.
    std::fs::remove_dir_all(dir.path().join("primary")).unwrap();
    std::fs::write(dir.path().join("primary"), b"not a store").unwrap();
    let ingest = ["ingest", input.to_str().unwrap(), "--store", replica, "-k", "ks"];
    let out = cairn_tests::process::cairn(&ingest, None, &[]);
    assert_ne!(out.status.code(), Some(0));
    refused(String::from_utf8_lossy(&out.stderr).to_string());
    let lost = [("CAIRN_PRIMARY_LOST", roots[0].url.clone())];
    let out = cairn_tests::process::cairn(&["health", "--store", replica, "-k", "ks"], None, &lost);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cairn_tests::process::cairn(&ingest, None, &lost);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let now = copy_of(&roots[1]).await.version;
    assert_ne!(now, layered);
    let m = Manifest::read(roots[1].inner.as_ref(), "ks", &now).await.unwrap();
    assert_eq!((m.primary.as_deref(), m.replicas.len()), (Some(replica), 0), "the replica is the primary now");
    // Found by review: a rollback to a version from before the failover, whose manifest names the lost
    // primary, was judged by that manifest and refused. The current version says which root is primary.
    let out = cairn_tests::process::cairn(&["rollback", "--store", replica, "-k", "ks", "--to", &layered], None, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(copy_of(&roots[1]).await.version, layered);
}

/// A manifest an older build wrote names no primary, and may list its primary among the replicas too (that
/// build let `--replicas` name `--store`): nothing is refused on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_names_no_primary_refuses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let roots = roots(dir.path());
    let v = publish(dir.path(), &roots, "a 1\n").await;
    let mut m = Manifest::read(roots[0].inner.as_ref(), "ks", &v).await.unwrap();
    assert_eq!(m.primary.as_deref(), Some(roots[0].url.as_str()), "a new manifest names its primary");
    replica_pointer::refuse_replica_root(&roots[1], &m).await.unwrap_err();
    m.primary = None;
    m.replicas = vec![roots[0].url.clone(), roots[1].url.clone()];
    for root in &roots {
        replica_pointer::refuse_replica_root(root, &m).await.unwrap();
    }
}
