//! The local-disk cache tier (`CAIRN_DISK_CACHE`): object ranges kept as files on a node's SSD or the
//! Lambda's `/tmp`, under a byte budget, reused after a restart.
//!
//! One file per entry, named by the 128-bit hash of its key and holding the key itself (a collision is a
//! miss, never another object's bytes). A write goes to a temporary file renamed into place, so a crash
//! leaves a whole entry or none; no fsync, since a damaged entry only costs a refetch: the fetcher verifies
//! every entry with the checksum it already has. The budget is kept by an in-memory index of the files
//! (moka, least recently used first; evicting an entry deletes its file), rebuilt at start by listing the
//! directory in the background; until then, files not yet listed are still read. Writes and deletes run in
//! order on one thread of the tier's own, never on a lookup's: a delete asked before a rewrite of the same
//! entry (a damaged entry dropped, then refetched) cannot remove the rewritten file. Sizes are counted in whole 4 KiB file-system blocks. A read the disk does not
//! answer within [`READ_TIMEOUT`] is given up and the tier is skipped for a second: a failing disk costs
//! speed, not lookups. Files the tier did not write (a link, a pipe, an oversized file) are misses, read
//! without following or waiting on them (disk_layout.rs).
//!
//! Hand-written over files rather than foyer's hybrid cache: entries are whole verified ranges read on a
//! memory miss (tens of KiB to MiB), so a file each costs one open per read, and the layout survives any
//! upgrade of a crate's on-disk format. A lock file keeps a second process from sharing the directory (two
//! indexes would each evict the other's files); a process that finds it taken skips the tier and takes it
//! over when the holder ends (a rolling update of a node's server on a shared directory).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::caches::disk_layout::{
    LAYOUT, MAGIC, default_size, entry_path, hash, on_disk, own_dir, payload, read_entry, scan,
};
use crate::caches::disk_lock::DirLock;
use crate::caches::tier::{CacheTier, TierHealth, TierStats};
use crate::config::DiskCacheConfig;

/// Writes queued at once, and their bytes (one larger entry is let through alone); more are skipped: a
/// cache write never waits, and what waits is bounded.
const MAX_WRITES: u64 = 32;
const MAX_QUEUED_BYTES: u64 = 64 << 20;
/// A read not answered within this is given up (then the next tier or the store answers).
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a tier whose directory another process holds tries for its lock again.
const LOCK_RETRY: Duration = Duration::from_secs(1);
/// Reads in flight at once: each holds a blocking thread until the disk answers, even past [`READ_TIMEOUT`],
/// so a disk that hangs holds this many and no more (the pool is shared with the local store's reads and
/// decoding); beyond, a lookup skips the tier.
const MAX_READS: u64 = 64;

pub struct DiskTier {
    dir: PathBuf,
    /// hash of key → file size: what the budget counts.
    index: moka::sync::Cache<u128, u64>,
    capacity: u64,
    max_entry: u64,
    /// The directory's lock, held from when it is taken for the rest of the tier's life. Until then the tier
    /// is skipped: no reads, writes or deletes in a directory another process counts.
    lock: DirLock,
    /// Writes and deletes, in order, for the tier's thread.
    ops: std::sync::mpsc::Sender<DiskOp>,
    /// Whether the start-up listing has finished (until then, files not listed yet are outside the budget).
    listed: Arc<AtomicBool>,
    writing: AtomicU64,
    queued_bytes: AtomicU64,
    /// Reads in flight, up to [`MAX_READS`].
    reading: Arc<AtomicU64>,
    next_temp: AtomicU64,
    health: TierHealth,
}

/// One of the [`MAX_READS`], given back when its read ends (not when its lookup stops waiting).
struct ReadSlot(Arc<AtomicU64>);

impl ReadSlot {
    fn take(reading: &Arc<AtomicU64>) -> Option<ReadSlot> {
        if reading.fetch_add(1, Relaxed) >= MAX_READS {
            reading.fetch_sub(1, Relaxed);
            return None;
        }
        Some(ReadSlot(reading.clone()))
    }
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Removes the temporary files of writes a crash (or the directory's previous holder) left unfinished.
fn clear_temp(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir.join("tmp")).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(e.path());
    }
}

/// Waits until `tier` holds its directory's lock, trying every [`LOCK_RETRY`] (none when `open` took it),
/// and returns what listing the directory needs; None when the tier is dropped first. A directory removed
/// meanwhile (a cleaner of `/tmp`) is made again; another failure is said once and tried again.
fn take_over(tier: &std::sync::Weak<DiskTier>) -> Option<(PathBuf, moka::sync::Cache<u128, u64>, Arc<AtomicBool>)> {
    let taken_at_open = tier.upgrade()?.lock.held();
    let mut said = false;
    loop {
        let t = tier.upgrade()?;
        // The previous holder has ended: its unfinished writes are gone with it.
        match t.lock.try_take(&|| clear_temp(&t.dir)) {
            Ok(true) => {
                if !taken_at_open {
                    tracing::info!(dir = %t.dir.display(), "disk cache directory taken over: the disk tier is in use");
                }
                return Some((t.dir.clone(), t.index.clone(), t.listed.clone()));
            }
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = own_dir(&t.dir.join("tmp"));
            }
            Err(e) => {
                if !std::mem::replace(&mut said, true) {
                    tracing::warn!(dir = %t.dir.display(), error = %e, "disk cache directory cannot be locked: the disk tier is skipped until it can be");
                }
            }
        }
        drop(t);
        std::thread::sleep(LOCK_RETRY);
    }
}

/// What the tier's thread does.
enum DiskOp {
    Write { hash: u128, key: String, bytes: Bytes },
    Delete(PathBuf),
}

impl std::fmt::Debug for DiskTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskTier").field("dir", &self.dir).field("capacity", &self.capacity).finish()
    }
}

impl DiskTier {
    /// The tier in `config.path` (created if missing), its existing entries listed in the background. When
    /// another process holds the directory, the tier is skipped until that process ends, then taken over.
    /// Fails when the directory or its lock cannot be made (a file system without locks).
    pub fn open(config: &DiskCacheConfig) -> Result<Arc<DiskTier>, String> {
        let dir = config.path.join(LAYOUT);
        let fail = |what: &str, e: std::io::Error| format!("CAIRN_DISK_CACHE {}: {what}: {e}", config.path.display());
        std::fs::create_dir_all(&dir).map_err(|e| fail("cannot create it", e))?;
        own_dir(&dir.join("tmp")).map_err(|e| fail("cannot create it", e))?;
        let lock = DirLock::open(dir.join("lock"), &|| clear_temp(&dir)).map_err(|e| fail("cannot lock it", e))?;
        if !lock.held() {
            tracing::warn!(dir = %config.path.display(), "CAIRN_DISK_CACHE is in use by another process: the disk tier is skipped until that process ends, then taken over");
        }
        let capacity = config.size.unwrap_or_else(|| default_size(&config.path));
        // Deletes go to the tier's thread, not run on whichever thread moka's housekeeping happens on.
        let (ops, queue) = std::sync::mpsc::channel::<DiskOp>();
        let (files, evicted) = (dir.clone(), ops.clone());
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, size: &u64| crate::caches::counted::weight(*size as usize))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            // Only what the budget evicts: an entry dropped explicitly has its file deleted by whoever dropped
            // it (`forget`), or has none (a read that found no file must not delete one written meanwhile).
            .eviction_listener(move |hash: Arc<u128>, _, cause: RemovalCause| {
                if cause.was_evicted() {
                    let _ = evicted.send(DiskOp::Delete(entry_path(&files, *hash)));
                }
            })
            .build();
        let tier = Arc::new(DiskTier {
            dir,
            index,
            capacity,
            max_entry: (capacity / 8).max(1),
            lock,
            ops,
            listed: Arc::new(AtomicBool::new(false)),
            writing: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            reading: Arc::default(),
            next_temp: AtomicU64::new(0),
            health: TierHealth::default(),
        });
        let me = Arc::downgrade(&tier);
        std::thread::Builder::new()
            .name("cairn-disk-cache".into())
            .spawn(move || {
                // Ends when the tier is gone (its senders, the index's listener's included, with it).
                for op in queue {
                    match op {
                        // Not once the tier is gone: its directory may be another's by then.
                        DiskOp::Delete(path) => {
                            if me.strong_count() > 0 {
                                let _ = std::fs::remove_file(path);
                            }
                        }
                        DiskOp::Write { hash, key, bytes } => {
                            let Some(me) = me.upgrade() else { continue };
                            me.write_entry(hash, &key, &bytes);
                        }
                    }
                }
            })
            .map_err(|e| fail("cannot start its thread", e))?;
        let me = Arc::downgrade(&tier);
        std::thread::Builder::new()
            .name("cairn-disk-cache-scan".into())
            .spawn(move || {
                // Ends when the tier is dropped before it could take the directory.
                let Some((dir, index, listed)) = take_over(&me) else { return };
                scan(&dir, &index, &|| me.strong_count() > 0);
                listed.store(true, Relaxed);
            })
            .map_err(|e| fail("cannot start listing it", e))?;
        Ok(tier)
    }

    fn path(&self, hash: u128) -> PathBuf {
        entry_path(&self.dir, hash)
    }

    /// Drops an entry and its file (listed or not).
    fn forget(&self, hash: u128) {
        self.index.invalidate(&hash);
        let _ = self.ops.send(DiskOp::Delete(self.path(hash)));
    }

    /// Writes `bytes` as `key`'s entry: a temporary file, renamed into place, then counted in the budget.
    fn write(&self, hash: u128, key: &str, bytes: &[u8]) -> std::io::Result<u64> {
        let temp =
            self.dir.join("tmp").join(format!("{}-{}", std::process::id(), self.next_temp.fetch_add(1, Relaxed)));
        let written = (|| {
            let mut f = match File::create(&temp) {
                // The directory was removed under the tier (by hand, or a cleaner of /tmp): made again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    own_dir(&self.dir.join("tmp"))?;
                    File::create(&temp)?
                }
                f => f?,
            };
            f.write_all(MAGIC)?;
            f.write_all(&(key.len() as u32).to_le_bytes())?;
            f.write_all(key.as_bytes())?;
            f.write_all(bytes)?;
            let target = self.path(hash);
            std::fs::create_dir_all(target.parent().expect("entries live in a subdirectory"))?;
            std::fs::rename(&temp, target)?;
            Ok(on_disk((MAGIC.len() + 4 + key.len() + bytes.len()) as u64))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }
}

impl DiskTier {
    /// The tier's thread: `bytes` written as `key`'s entry and counted in the budget (evicting down to it).
    fn write_entry(&self, hash: u128, key: &str, bytes: &[u8]) {
        match self.write(hash, key, bytes) {
            Ok(size) => {
                self.index.insert(hash, size);
                self.index.run_pending_tasks();
                self.health.stored.add(1);
            }
            Err(e) => {
                self.health.errors.add(1);
                // A full or read-only disk fails every write: said once, then counted.
                if self.health.errors.get() == 1 {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "disk cache write failed (further failures are counted in cairn_cache_tier_errors_total)");
                }
            }
        }
        self.queued_bytes.fetch_sub(bytes.len() as u64, Relaxed);
        self.writing.fetch_sub(1, Relaxed);
    }
}

#[async_trait::async_trait]
impl CacheTier for DiskTier {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        if self.health.resting() || !self.lock.held() {
            return None;
        }
        let hash = hash(key);
        let Some(slot) = ReadSlot::take(&self.reading) else {
            self.health.misses.add(1);
            return None;
        };
        // No entry this tier writes is larger: a larger file is not read (nor kept).
        let (path, limit) = (self.path(hash), (MAGIC.len() + 4 + key.len()) as u64 + self.max_entry);
        let read = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            read_entry(&path, limit)
        });
        let read = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(Ok(read))) => read,
            Ok(Ok(Err(e))) => {
                match e.kind() {
                    // Left in the index (its budget evicts it in time): dropped now, a write of it landing
                    // meanwhile would be left on disk, uncounted.
                    std::io::ErrorKind::NotFound => {}
                    // Not an entry of this tier's: removed, like a damaged one.
                    std::io::ErrorKind::InvalidData => self.forget(hash),
                    // The disk failed this read (a bad sector, say): the tier rests, and the file goes, or it
                    // would be read again, and fail, at every lookup of its key.
                    _ => {
                        self.health.failed();
                        self.forget(hash);
                    }
                }
                self.health.misses.add(1);
                return None;
            }
            Ok(Err(_)) => {
                self.health.failed();
                return None;
            }
            Err(_) => {
                tracing::warn!(dir = %self.dir.display(), "disk cache read timed out: skipping the disk tier for a second");
                self.health.failed();
                return None;
            }
        };
        match payload(&read, key) {
            Some(start) => {
                // Marks it used (its eviction order); a file the start-up listing has not reached yet is
                // counted now.
                if self.index.get(&hash).is_none() {
                    self.index.insert(hash, on_disk(read.len() as u64));
                }
                self.health.hits.add(1);
                Some(Bytes::from(read).slice(start..))
            }
            None => {
                // Not this key's entry (a hash collision) or a damaged header: a miss either way.
                self.health.misses.add(1);
                self.forget(hash);
                None
            }
        }
    }

    fn put(&self, key: &str, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.max_entry || self.health.resting() || !self.lock.held() {
            return;
        }
        // Counted first, then checked (and given back when over): two lookups at once cannot both pass a
        // check of the same count.
        let (writes, queued) = (self.writing.fetch_add(1, Relaxed), self.queued_bytes.fetch_add(len, Relaxed));
        if writes >= MAX_WRITES
            || (queued > 0 && queued + len > MAX_QUEUED_BYTES)
            || self.ops.send(DiskOp::Write { hash: hash(key), key: key.to_string(), bytes }).is_err()
        {
            self.queued_bytes.fetch_sub(len, Relaxed);
            self.writing.fetch_sub(1, Relaxed);
        }
    }

    fn poisoned(&self, key: &str) {
        self.health.poisoned.add(1);
        if self.lock.held() {
            self.forget(hash(key));
        }
    }

    fn stats(&self) -> TierStats {
        TierStats {
            entries: self.index.entry_count(),
            bytes: self.index.weighted_size(),
            capacity_bytes: self.capacity,
            ..self.health.stats(self.writing.load(Relaxed), self.listed.load(Relaxed) && !self.health.resting())
        }
    }

    fn sync(&self) {
        self.index.run_pending_tasks();
    }
}
