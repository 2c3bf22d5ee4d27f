//! A conditional update on a local directory (stores/conditional.rs) whose caller is dropped part-way must
//! not land after a later delete of the same object: an object a deletion removed stays removed. The
//! simulation found it: a crashed rollback's pointer write landed after an operator deleted the keyspace,
//! and `CURRENT` named a version no root held.

use cairn_shared::stores::Store;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_conditional_update_never_lands_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let path = object_store::path::Path::from("keyspace=ks/CURRENT");
    let mut resurrected = 0;
    for i in 0..300u32 {
        let put = store.inner.put(&path, PutPayload::from(format!("v{i}"))).await.unwrap();
        let version = UpdateVersion { e_tag: put.e_tag, version: put.version };
        let opts = PutOptions { mode: PutMode::Update(version), ..Default::default() };
        let inner = store.inner.clone();
        let p = path.clone();
        let update = tokio::spawn(async move { inner.put_opts(&p, PutPayload::from("late"), opts).await });
        // Dropped at some point of its way (the caller crashed), then the object deleted.
        for _ in 0..(i % 7) {
            tokio::task::yield_now().await;
        }
        update.abort();
        let _ = update.await;
        store.inner.delete(&path).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        if store.inner.head(&path).await.is_ok() {
            resurrected += 1;
            store.inner.delete(&path).await.unwrap();
        }
    }
    assert_eq!(resurrected, 0, "a dropped conditional update landed after the delete {resurrected} times in 300");
}
