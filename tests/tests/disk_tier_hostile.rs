//! The disk cache tier meets files it did not write (found by review): a named pipe at an entry's path held
//! a blocking thread for good (enough of them and every lookup of the process hung), an entry file of any
//! size was read whole into memory, and symbolic links in the directory made the start-up listing delete,
//! and the lock truncate, files elsewhere. Each now costs a miss at most. A lock file removed and made
//! again is not taken over by a tier that was waiting for the old one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_shared::caches::disk_tier::DiskTier;
use cairn_shared::caches::tier::CacheTier;
use cairn_shared::config::DiskCacheConfig;

fn open(dir: &Path) -> Arc<DiskTier> {
    DiskTier::open(&DiskCacheConfig { path: dir.to_path_buf(), size: Some(1 << 20) }).unwrap()
}

/// Writes `key`'s entry and returns its file once the tier's thread has written it.
async fn written(tier: &DiskTier, dir: &Path, key: &str) -> PathBuf {
    tier.put(key, Bytes::from_static(b"the entry's payload"));
    for _ in 0..600 {
        if tier.stats().stored > 0 && tier.stats().writing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut files = Vec::new();
    for sub in std::fs::read_dir(dir.join("cairn-disk-1")).unwrap().flatten() {
        if sub.file_name().len() == 2 {
            files.extend(std::fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()));
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

fn mkfifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the path it is given.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_named_pipe_at_an_entry_is_a_miss_that_holds_no_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (reads, still) = rt.block_on(async {
        let tier = open(dir.path());
        let entry = written(&tier, dir.path(), "k").await;
        mkfifo(&entry);
        // Lookups at once, more than the blocking threads: each used to wait on the pipe's open for ever.
        let reads = futures::future::join_all((0..16).map(|_| tier.get("k"))).await;
        let still = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(|| 7)).await;
        (reads, still.ok().and_then(Result::ok))
    });
    // Before judging: threads stuck on the pipe (the old code) would keep a dropped runtime waiting.
    rt.shutdown_timeout(Duration::from_secs(1));
    assert!(reads.iter().all(Option::is_none), "a pipe is no entry");
    assert_eq!(still, Some(7), "the blocking threads are all stuck on the pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_larger_than_any_the_tier_writes_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let tier = open(dir.path());
    let entry = written(&tier, dir.path(), "k").await;
    // Its own header, then 4 MiB: four times the whole budget, which no entry can be.
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes.resize(bytes.len() + (4 << 20), b'x');
    std::fs::write(&entry, bytes).unwrap();
    assert_eq!(tier.get("k").await, None, "an entry past the tier's size limit is a miss, not read whole");
    gone(&entry).await;
}

/// Waits (bounded) until the tier's thread has deleted `file`: what it found there was not an entry of its.
async fn gone(file: &Path) {
    for _ in 0..3000 {
        if std::fs::symlink_metadata(file).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} was not removed", file.display());
}

/// Writes `bytes` as `key`'s entry and asks until the tier answers it, writing it again after each miss (a
/// read that came late on a loaded machine rests the tier a second, which skips writes too).
async fn until_read(tier: &DiskTier, key: &str, bytes: &'static [u8]) -> Option<Bytes> {
    for _ in 0..60 {
        tier.put(key, Bytes::from_static(bytes));
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(v) = tier.get(key).await {
            return Some(v);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_at_an_entry_is_removed_and_the_tier_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let tier = open(dir.path());
    let entry = written(&tier, dir.path(), "k").await;
    std::fs::remove_file(&entry).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(&entry).unwrap();
    assert_eq!(tier.get("k").await, None);
    gone(&entry).await;
    // The tier goes on: the next entry is written and read.
    assert_eq!(until_read(&tier, "other", b"another payload").await.as_deref(), Some(&b"another payload"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_the_cache_directory_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let layout = cache.join("cairn-disk-1");
    std::fs::create_dir_all(&layout).unwrap();
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious.txt"), b"keep me").unwrap();
    std::fs::write(dir.path().join("lock-victim.txt"), b"keep me too").unwrap();
    std::os::unix::fs::symlink(&victim, layout.join("ab")).unwrap();
    std::os::unix::fs::symlink(&victim, layout.join("tmp")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("lock-victim.txt"), layout.join("lock")).unwrap();
    let tier = open(&cache);
    for _ in 0..600 {
        if tier.stats().connected {
            break; // the start-up listing has finished
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(tier.stats().connected);
    assert_eq!(std::fs::read(victim.join("precious.txt")).unwrap(), b"keep me");
    assert_eq!(std::fs::read(dir.path().join("lock-victim.txt")).unwrap(), b"keep me too");
    // And the tier works: its entries go to directories of its own.
    written(&tier, &cache, "k").await;
    assert_eq!(until_read(&tier, "k", b"the entry's payload").await.as_deref(), Some(&b"the entry's payload"[..]));
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1, "nothing written through a link");
}

/// Found by review: the cache directory removed under a running tier (by hand, or a cleaner of `/tmp`) made
/// every later write fail, for good. The tier makes its directories again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_directory_removed_under_the_tier_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let tier = open(dir.path());
    written(&tier, dir.path(), "k").await;
    std::fs::remove_dir_all(dir.path().join("cairn-disk-1")).unwrap();
    assert_eq!(until_read(&tier, "again", b"written again").await.as_deref(), Some(&b"written again"[..]));
}

/// Waits (bounded) until `tier` holds its directory and has listed it.
async fn connected(tier: &DiskTier) -> bool {
    for _ in 0..3000 {
        if tier.stats().connected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A tier holding `dir`, and a second one waiting for it.
async fn holder_and_waiting(dir: &Path) -> (Arc<DiskTier>, Arc<DiskTier>) {
    let holder = open(dir);
    assert!(connected(&holder).await);
    let waiting = open(dir);
    assert!(!waiting.stats().connected);
    (holder, waiting)
}

/// Found by review of the handover: a tier waiting for the directory's lock file took it over when its
/// holder ended even if the file had been removed and made again meanwhile (a cleaner of `/tmp`), and
/// another process held the new one: two tiers then shared the directory. The waiting tier now takes
/// only the lock of the file at the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_tier_does_not_take_over_a_lock_file_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (holder, waiting) = holder_and_waiting(dir.path()).await;
    std::fs::remove_file(dir.path().join("cairn-disk-1/lock")).unwrap();
    let newcomer = open(dir.path());
    assert!(connected(&newcomer).await, "the lock file made again is free: the newcomer takes it");
    drop(holder);
    // Longer than a few of the waiting tier's tries (one a second), which took the removed file's lock.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!waiting.stats().connected, "two tiers in one directory");
    drop(newcomer);
    assert!(connected(&waiting).await, "the waiting tier takes the directory once its holder ends");
}

/// Found by review of the handover: a tier waiting for the directory gave up for good when the directory
/// was removed meanwhile (its lock file could not be opened again), so the process ran on without the
/// tier after its holder ended. It makes the directory again and takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_tier_takes_over_a_directory_removed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (holder, waiting) = holder_and_waiting(dir.path()).await;
    std::fs::remove_dir_all(dir.path().join("cairn-disk-1")).unwrap();
    drop(holder);
    assert!(connected(&waiting).await, "the waiting tier takes the directory once its holder ends");
    assert_eq!(until_read(&waiting, "k", b"after the takeover").await.as_deref(), Some(&b"after the takeover"[..]));
}
