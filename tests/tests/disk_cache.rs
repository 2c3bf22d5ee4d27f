//! The local-disk cache tier (`CAIRN_DISK_CACHE`): an engine restarted on the same directory answers the keys
//! it had read with no store read but its pointer and manifest; an entry damaged on disk is caught by its
//! checksum, never served, and rewritten; the byte budget holds however much is read; a second process
//! cannot share the directory (it skips the tier, and still answers) but takes it over when the first ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::{DiskCacheConfig, EngineConfig};
use cairn_shared::stores::Store;
use cairn_tests::{example_data, ingest, read_dataset};

fn engine(store: &Store, dir: &Path, size: Option<u64>) -> Engine {
    let config = EngineConfig {
        disk_cache: Some(DiskCacheConfig { path: dir.to_path_buf(), size }),
        // Smaller than the data: memory misses reach the disk tier.
        data_cache_bytes: 64 << 10,
        metadata_cache_bytes: 1 << 20,
        ..Default::default()
    };
    Engine::new(store.clone(), config)
}

/// Looks every key up (each must answer its value) and returns the store GETs it cost.
async fn read_all(e: &Engine, rows: &[(String, Vec<u8>)]) -> u64 {
    let before = e.counters().object_gets;
    for (k, v) in rows {
        assert_eq!(e.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()), "{k}");
    }
    e.counters().object_gets - before
}

/// Waits (bounded) for the tier's background writes and the engine's promotions (they hold the tier, so its
/// directory's lock), then applies its evictions.
async fn settle(e: &Engine) {
    cairn_tests::promotions_settled(e).await;
    for _ in 0..600 {
        if e.stats().disk_tier.expect("the disk tier is on").writing == 0 {
            e.sync_caches().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the disk tier's writes did not finish in 30 s: {:?}", e.stats().disk_tier);
}

/// Fresh engines on `cache`, each reading every row and settling, until one reads nothing but the pointer
/// and the manifest from the store (at most 5): the GETs of each pass. The tier's writes are best effort (a
/// full queue or a resting tier drops them, as on a loaded machine), so one pass may leave entries unwritten
/// that the next writes; an entry that is never written, or never rewritten once damaged, fails every pass.
async fn until_warm(store: &Store, cache: &Path, rows: &[(String, Vec<u8>)]) -> Vec<u64> {
    let mut passes = Vec::new();
    while passes.len() < 5 && passes.last().is_none_or(|g| *g > 2) {
        let e = engine(store, cache, None);
        passes.push(read_all(&e, rows).await);
        assert!(e.stats().disk_tier.unwrap().hits > 0, "the tier answered nothing: {passes:?}");
        settle(&e).await;
    }
    passes
}

/// Entry files under the tier's directory, and their total size in 4 KiB blocks (as the budget counts).
fn entries(dir: &Path) -> (Vec<PathBuf>, u64) {
    let mut files = Vec::new();
    for sub in std::fs::read_dir(dir.join("cairn-disk-1")).unwrap().flatten() {
        if sub.file_name().len() == 2 {
            files.extend(std::fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()));
        }
    }
    let bytes =
        files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len().div_ceil(4096).max(1) * 4096).sum();
    (files, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_disk_tier_a_damaged_entry_is_refetched_and_the_budget_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(8)).await.unwrap();
    let rows: Vec<(String, Vec<u8>)> = read_dataset(&example_data()).into_iter().step_by(5).collect();
    let cache = tmp.path().join("cache");

    // First run: everything comes from the store and lands on disk.
    let first = engine(&store, &cache, None);
    let cold = read_all(&first, &rows).await;
    settle(&first).await;
    let stats = first.stats().disk_tier.unwrap();
    assert!(cold > 20 && stats.stored > 0, "{cold} GETs, {stats:?}");
    // A second process (here: a second tier on the same directory) skips the tier while the first holds the
    // directory, and still answers; once the first ends, it takes the directory over (a rolling update).
    // Before, it was refused the directory for its whole life.
    let second = engine(&store, &cache, None);
    let waiting = second.stats().disk_tier.expect("the tier waits for the directory");
    assert!(!waiting.connected, "the directory is locked by the first: {waiting:?}");
    read_all(&second, &rows).await;
    let waiting = second.stats().disk_tier.unwrap();
    assert_eq!((waiting.hits, waiting.stored, waiting.writing), (0, 0, 0), "{waiting:?}");
    drop(first);
    for _ in 0..600 {
        if second.stats().disk_tier.unwrap().connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(second.stats().disk_tier.unwrap().connected, "the second took the directory over");
    read_all(&second, &rows).await;
    assert!(second.stats().disk_tier.unwrap().hits > 0, "{:?}", second.stats().disk_tier);
    settle(&second).await;
    drop(second);

    // Restart: only the pointer and the manifest are read from the store.
    let warm = until_warm(&store, &cache, &rows).await;
    assert!(
        warm.last() <= Some(&2),
        "restarts on the same directory read {warm:?} objects from the store (first run: {cold})"
    );

    // Damage every entry's last byte: each is caught by its checksum, read from the store, and rewritten.
    let (files, _) = entries(&cache);
    for f in &files {
        let mut bytes = std::fs::read(f).unwrap();
        *bytes.last_mut().unwrap() ^= 0x5a;
        std::fs::write(f, bytes).unwrap();
    }
    let damaged = engine(&store, &cache, None);
    let refetched = read_all(&damaged, &rows).await;
    let stats = damaged.stats().disk_tier.unwrap();
    assert!(stats.poisoned > 0 && refetched > 2, "{refetched} GETs, {stats:?}");
    settle(&damaged).await;
    drop(damaged);
    let healed = until_warm(&store, &cache, &rows).await;
    assert!(
        healed.last() <= Some(&2),
        "the damaged entries were not rewritten with the store's bytes: {healed:?} GETs"
    );

    // A restart with a budget below what is on disk: the start-up listing counts the old files, and evicts
    // down to the budget.
    let (_, before) = entries(&cache);
    let shrunk = before / 3;
    let relisted = engine(&store, &cache, Some(shrunk));
    for _ in 0..600 {
        if relisted.stats().disk_tier.unwrap().connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(relisted.stats().disk_tier.unwrap().connected, "the listing finished");
    settle(&relisted).await;
    let deleted_by = std::time::Instant::now() + Duration::from_secs(30);
    while entries(&cache).1 > shrunk && std::time::Instant::now() < deleted_by {
        tokio::time::sleep(Duration::from_millis(20)).await; // deletes run on the tier's own thread
    }
    let (_, after) = entries(&cache);
    assert!(after <= shrunk && after > 0, "{before} bytes on disk, budget {shrunk}: {after} left");
    drop(relisted);

    // A budget far below what is read: the files on disk stay within it.
    let small = tmp.path().join("small");
    let budget = 96 << 10;
    let tight = engine(&store, &small, Some(budget));
    read_all(&tight, &rows).await;
    settle(&tight).await;
    let deleted_by = std::time::Instant::now() + Duration::from_secs(30);
    while entries(&small).1 > budget && std::time::Instant::now() < deleted_by {
        tokio::time::sleep(Duration::from_millis(20)).await; // deletes run on the tier's own thread
    }
    let (files, bytes) = entries(&small);
    assert!(
        !files.is_empty() && bytes <= budget,
        "{} files, {bytes} bytes on disk over a {budget}-byte budget",
        files.len()
    );
    assert!(tight.stats().disk_tier.unwrap().bytes <= budget);
}
