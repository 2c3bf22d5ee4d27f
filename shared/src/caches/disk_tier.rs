//! The local-disk cache tier (`CAIRN_DISK_CACHE`): object ranges kept as files on a node's SSD or the
//! Lambda's `/tmp`, under a byte budget, reused after a restart.
//!
//! One file per entry, named by the 128-bit hash of its key and holding the key itself (a collision is a
//! miss, never another object's bytes). A write goes to a temporary file renamed into place, so a crash
//! leaves a whole entry or none; no fsync, since a damaged entry only costs a refetch: the fetcher verifies
//! every entry with the checksum it already has. The budget is kept by an in-memory index of the files
//! (moka, least recently used first; evicting an entry deletes its file), rebuilt at start by listing the
//! directory in the background; until then, files not yet listed are still read.
//!
//! Hand-written over files rather than foyer's hybrid cache: entries are whole verified ranges read on a
//! memory miss (tens of KiB to MiB), so a file each costs one open per read, and the layout survives any
//! upgrade of a crate's on-disk format. A lock file keeps a second process from sharing the directory (two
//! indexes would each evict the other's files).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use moka::notification::RemovalCause;

use crate::caches::tier::{CacheTier, TierStats};
use crate::config::DiskCacheConfig;
use crate::counter::Counter;

/// First bytes of every entry file: the layout's revision.
const MAGIC: &[u8; 8] = b"cairnDT1";
/// The directory below the configured path that holds this layout.
const LAYOUT: &str = "cairn-disk-1";
/// Writes in flight at once; more are skipped (a cache write never queues behind the disk).
const MAX_WRITES: u64 = 32;

pub struct DiskTier {
    me: Weak<DiskTier>,
    dir: PathBuf,
    /// hash of key → file size: what the budget counts.
    index: moka::sync::Cache<u128, u64>,
    capacity: u64,
    max_entry: u64,
    /// Held for the tier's life: the directory's lock.
    _lock: File,
    writing: AtomicU64,
    next_temp: AtomicU64,
    hits: Counter,
    misses: Counter,
    errors: Counter,
    poisoned: Counter,
    stored: Counter,
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
        if !try_lock(&lock) {
            return Err(format!("CAIRN_DISK_CACHE {}: in use by another process", config.path.display()));
        }
        // Temporary files are writes a crash interrupted.
        for e in std::fs::read_dir(dir.join("tmp")).map_err(|e| fail("cannot list it", e))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let capacity = config.size.unwrap_or_else(|| default_size(&config.path));
        let files = dir.clone();
        let index = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, size: &u64| crate::caches::counted::weight(*size as usize))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(move |hash: Arc<u128>, _, cause| {
                if cause != RemovalCause::Replaced {
                    let _ = std::fs::remove_file(entry_path(&files, *hash));
                }
            })
            .build();
        let tier = Arc::new_cyclic(|me| DiskTier {
            me: me.clone(),
            dir,
            index,
            capacity,
            max_entry: (capacity / 8).max(1),
            _lock: lock,
            writing: AtomicU64::new(0),
            next_temp: AtomicU64::new(0),
            hits: Counter::default(),
            misses: Counter::default(),
            errors: Counter::default(),
            poisoned: Counter::default(),
            stored: Counter::default(),
        });
        let (dir, index) = (tier.dir.clone(), tier.index.clone());
        std::thread::Builder::new()
            .name("cairn-disk-cache-scan".into())
            .spawn(move || scan(&dir, &index))
            .map_err(|e| fail("cannot start listing it", e))?;
        Ok(tier)
    }

    fn path(&self, hash: u128) -> PathBuf {
        entry_path(&self.dir, hash)
    }

    /// Drops an entry and its file.
    fn forget(&self, hash: u128) {
        self.index.invalidate(&hash);
        let _ = std::fs::remove_file(self.path(hash));
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
            Ok((MAGIC.len() + 4 + key.len() + bytes.len()) as u64)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }
}

#[async_trait::async_trait]
impl CacheTier for DiskTier {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        let hash = hash(key);
        let read = match tokio::fs::read(self.path(hash)).await {
            Ok(read) => read,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    self.errors.add(1);
                }
                self.misses.add(1);
                self.index.invalidate(&hash);
                return None;
            }
        };
        match payload(&read, key) {
            Some(start) => {
                // Marks it used (its eviction order); a file the start-up listing has not reached yet is
                // counted now.
                if self.index.get(&hash).is_none() {
                    self.index.insert(hash, read.len() as u64);
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
        if bytes.len() as u64 > self.max_entry || self.writing.load(Relaxed) >= MAX_WRITES {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let key = key.to_string();
        self.writing.fetch_add(1, Relaxed);
        runtime.spawn_blocking(move || {
            let hash = hash(&key);
            match me.write(hash, &key, &bytes) {
                Ok(size) => {
                    me.index.insert(hash, size);
                    me.stored.add(1);
                }
                Err(e) => {
                    me.errors.add(1);
                    tracing::debug!(error = %e, "disk cache write failed");
                }
            }
            me.writing.fetch_sub(1, Relaxed);
        });
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
            connected: true,
            entries: self.index.entry_count(),
            bytes: self.index.weighted_size(),
            capacity_bytes: self.capacity,
        }
    }

    fn sync(&self) {
        self.index.run_pending_tasks();
    }
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
                Some(h) if meta.is_file() => {
                    found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), h, meta.len()))
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
