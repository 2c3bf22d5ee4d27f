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
//! speed, not lookups.
//!
//! Hand-written over files rather than foyer's hybrid cache: entries are whole verified ranges read on a
//! memory miss (tens of KiB to MiB), so a file each costs one open per read, and the layout survives any
//! upgrade of a crate's on-disk format. A lock file keeps a second process from sharing the directory (two
//! indexes would each evict the other's files).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::caches::tier::{CacheTier, TierStats};
use crate::config::DiskCacheConfig;
use crate::counter::Counter;

/// First bytes of every entry file: the layout's revision.
const MAGIC: &[u8; 8] = b"cairnDT1";
/// The directory below the configured path that holds this layout.
const LAYOUT: &str = "cairn-disk-1";
/// Writes queued at once, and their bytes (one larger entry is let through alone); more are skipped: a
/// cache write never waits, and what waits is bounded.
const MAX_WRITES: u64 = 32;
const MAX_QUEUED_BYTES: u64 = 64 << 20;
/// A read not answered within this is given up (then the next tier or the store answers).
const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the tier is skipped after a read timed out.
const REST: Duration = Duration::from_secs(1);
/// The file-system block entries are counted in.
const BLOCK: u64 = 4096;

pub struct DiskTier {
    dir: PathBuf,
    /// hash of key → file size: what the budget counts.
    index: moka::sync::Cache<u128, u64>,
    capacity: u64,
    max_entry: u64,
    /// Held for the tier's life: the directory's lock.
    _lock: File,
    /// Writes and deletes, in order, for the tier's thread.
    ops: std::sync::mpsc::Sender<DiskOp>,
    /// Whether the start-up listing has finished (until then, files not listed yet are outside the budget).
    listed: Arc<AtomicBool>,
    /// The tier is skipped until then (ms since `epoch`), after a read that timed out.
    down_until: AtomicU64,
    epoch: Instant,
    writing: AtomicU64,
    queued_bytes: AtomicU64,
    next_temp: AtomicU64,
    hits: Counter,
    misses: Counter,
    errors: Counter,
    poisoned: Counter,
    stored: Counter,
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
    /// The tier in `config.path` (created if missing), its existing entries listed in the background.
    /// Fails when the directory cannot be made or another process uses it.
    pub fn open(config: &DiskCacheConfig) -> Result<Arc<DiskTier>, String> {
        let dir = config.path.join(LAYOUT);
        let fail = |what: &str, e: std::io::Error| format!("CAIRN_DISK_CACHE {}: {what}: {e}", config.path.display());
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| fail("cannot create it", e))?;
        let lock = File::create(dir.join("lock")).map_err(|e| fail("cannot create its lock file", e))?;
        // A process restarting on the directory may find its predecessor's lock held a moment longer.
        let mut tries = 0;
        while !try_lock(&lock) {
            tries += 1;
            if tries == 50 {
                return Err(format!("CAIRN_DISK_CACHE {}: in use by another process", config.path.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Temporary files are writes a crash interrupted.
        for e in std::fs::read_dir(dir.join("tmp")).map_err(|e| fail("cannot list it", e))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let capacity = config.size.unwrap_or_else(|| default_size(&config.path));
        // Deletes go to the tier's thread, not run on whichever thread moka's housekeeping happens on.
        let (ops, queue) = std::sync::mpsc::channel::<DiskOp>();
        let (files, evicted) = (dir.clone(), ops.clone());
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, size: &u64| crate::caches::counted::weight(*size as usize))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |hash: Arc<u128>, _, cause| {
                if cause != RemovalCause::Replaced {
                    let _ = evicted.send(DiskOp::Delete(entry_path(&files, *hash)));
                }
            })
            .build();
        let tier = Arc::new(DiskTier {
            dir,
            index,
            capacity,
            max_entry: (capacity / 8).max(1),
            _lock: lock,
            ops,
            listed: Arc::new(AtomicBool::new(false)),
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
            writing: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            next_temp: AtomicU64::new(0),
            hits: Counter::default(),
            misses: Counter::default(),
            errors: Counter::default(),
            poisoned: Counter::default(),
            stored: Counter::default(),
        });
        let me = Arc::downgrade(&tier);
        std::thread::Builder::new()
            .name("cairn-disk-cache".into())
            .spawn(move || {
                // Ends when the tier is gone (its senders, the index's listener's included, with it).
                for op in queue {
                    match op {
                        DiskOp::Delete(path) => {
                            let _ = std::fs::remove_file(path);
                        }
                        DiskOp::Write { hash, key, bytes } => {
                            let Some(me) = me.upgrade() else { continue };
                            me.write_entry(hash, &key, &bytes);
                        }
                    }
                }
            })
            .map_err(|e| fail("cannot start its thread", e))?;
        let (dir, index, listed) = (tier.dir.clone(), tier.index.clone(), tier.listed.clone());
        std::thread::Builder::new()
            .name("cairn-disk-cache-scan".into())
            .spawn(move || {
                scan(&dir, &index);
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

    fn resting(&self) -> bool {
        (self.epoch.elapsed().as_millis() as u64) < self.down_until.load(Relaxed)
    }

    /// A read that failed or timed out: counted, and the tier skipped for [`REST`].
    fn failed(&self) {
        self.errors.add(1);
        self.down_until.store((self.epoch.elapsed() + REST).as_millis() as u64, Relaxed);
    }

    /// Writes `bytes` as `key`'s entry: a temporary file, renamed into place, then counted in the budget.
    fn write(&self, hash: u128, key: &str, bytes: &[u8]) -> std::io::Result<u64> {
        let temp =
            self.dir.join("tmp").join(format!("{}-{}", std::process::id(), self.next_temp.fetch_add(1, Relaxed)));
        let written = (|| {
            let mut f = File::create(&temp)?;
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
                self.stored.add(1);
            }
            Err(e) => {
                self.errors.add(1);
                // A full or read-only disk fails every write: said once, then counted.
                if self.errors.get() == 1 {
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
        if self.resting() {
            return None;
        }
        let hash = hash(key);
        let read = match tokio::time::timeout(READ_TIMEOUT, tokio::fs::read(self.path(hash))).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.failed();
                }
                self.misses.add(1);
                self.index.invalidate(&hash);
                return None;
            }
            Err(_) => {
                tracing::warn!(dir = %self.dir.display(), "disk cache read timed out: skipping the disk tier for a second");
                self.failed();
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
                self.hits.add(1);
                Some(Bytes::from(read).slice(start..))
            }
            None => {
                // Not this key's entry (a hash collision) or a damaged header: a miss either way.
                self.misses.add(1);
                self.forget(hash);
                None
            }
        }
    }

    fn put(&self, key: &str, bytes: Bytes) {
        let (len, queued) = (bytes.len() as u64, self.queued_bytes.load(Relaxed));
        if len > self.max_entry
            || self.writing.load(Relaxed) >= MAX_WRITES
            || (queued > 0 && queued + len > MAX_QUEUED_BYTES)
            || self.resting()
        {
            return;
        }
        self.writing.fetch_add(1, Relaxed);
        self.queued_bytes.fetch_add(len, Relaxed);
        if self.ops.send(DiskOp::Write { hash: hash(key), key: key.to_string(), bytes }).is_err() {
            self.queued_bytes.fetch_sub(len, Relaxed);
            self.writing.fetch_sub(1, Relaxed);
        }
    }

    fn poisoned(&self, key: &str) {
        self.poisoned.add(1);
        self.forget(hash(key));
    }

    fn stats(&self) -> TierStats {
        TierStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            errors: self.errors.get(),
            poisoned: self.poisoned.get(),
            stored: self.stored.get(),
            writing: self.writing.load(Relaxed),
            connected: self.listed.load(Relaxed) && !self.resting(),
            entries: self.index.entry_count(),
            bytes: self.index.weighted_size(),
            capacity_bytes: self.capacity,
        }
    }

    fn sync(&self) {
        self.index.run_pending_tasks();
    }
}

/// What a file of `len` bytes takes on disk: whole blocks.
fn on_disk(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

fn hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// Entries spread over 256 subdirectories, named by hash.
fn entry_path(dir: &Path, hash: u128) -> PathBuf {
    let name = format!("{hash:032x}");
    dir.join(&name[..2]).join(name)
}

/// Where `key`'s bytes start in an entry file, if the file is `key`'s entry.
fn payload(file: &[u8], key: &str) -> Option<usize> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let stored = rest.get(4..4 + len)?;
    (stored == key.as_bytes()).then_some(MAGIC.len() + 4 + len)
}

/// Lists the entries a previous process left, oldest first (so the newest are evicted last), into the
/// index; files that are not entries are removed.
fn scan(dir: &Path, index: &moka::sync::Cache<u128, u64>) {
    let mut found = Vec::new();
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = sub.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != 2 || !sub.path().is_dir() {
            continue;
        }
        for e in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            let Ok(meta) = e.metadata() else { continue };
            let hash = e.file_name().to_str().filter(|n| n.len() == 32).and_then(|n| u128::from_str_radix(n, 16).ok());
            match hash {
                // The canonical name only: one written by this layout.
                Some(h) if meta.is_file() && e.path() == entry_path(dir, h) => {
                    found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), h, on_disk(meta.len())))
                }
                _ => {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    found.sort_unstable();
    for (_, h, size) in found {
        // A newer write of the same entry since the start keeps its own size.
        if index.get(&h).is_none() {
            index.insert(h, size);
        }
    }
    index.run_pending_tasks();
}

/// An exclusive, non-blocking lock on `file` (released when it is closed).
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is shared with the kernel.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The budget when none is given: 1 GiB, or half the file system when that is smaller (the Lambda's
/// `/tmp` is 512 MB unless configured larger).
fn default_size(path: &Path) -> u64 {
    const CAP: u64 = 1 << 30;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return CAP };
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs writes the struct it is given; it is read only when the call succeeds.
    if unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) } != 0 {
        return CAP;
    }
    let s = unsafe { s.assume_init() };
    let total = (s.f_blocks as u64).saturating_mul(s.f_frsize as u64);
    CAP.min(total / 2).max(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_read_only_under_its_own_key() {
        let mut file = MAGIC.to_vec();
        file.extend(3u32.to_le_bytes());
        file.extend(b"abcPAYLOAD");
        assert_eq!(payload(&file, "abc"), Some(15));
        assert_eq!(&file[15..], b"PAYLOAD");
        assert_eq!(payload(&file, "abd"), None, "another key's entry");
        assert_eq!(payload(&file[..10], "abc"), None, "a torn header");
        assert_eq!(payload(b"garbage!garbage", "abc"), None);
    }
}
