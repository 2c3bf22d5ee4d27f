//! The disk tier's directory lock: one process per directory, since two budgets would delete each other's
//! files. A process that finds it held skips the tier and tries again later (disk_tier.rs), taking the
//! directory over when the holder ends: a rolling update of a node's server on a shared directory.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

pub(crate) struct DirLock {
    path: PathBuf,
    /// The open lock file: replaced when the file at `path` is no longer it.
    file: Mutex<File>,
    held: AtomicBool,
}

impl DirLock {
    /// The lock file at `path` (made if missing), tried for about a second: a process restarting on the
    /// directory may find its predecessor's lock held a moment longer. Fails only when the file cannot be
    /// made or locked at all (a file system without locks); a lock another process holds is not an error.
    pub(crate) fn open(path: PathBuf, on_take: &dyn Fn()) -> std::io::Result<DirLock> {
        let lock = DirLock { file: Mutex::new(open_lock(&path)?), path, held: AtomicBool::new(false) };
        for tries in 0..50 {
            if tries > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            if lock.try_take(on_take)? {
                break;
            }
        }
        Ok(lock)
    }

    /// Whether this process holds the directory.
    pub(crate) fn held(&self) -> bool {
        self.held.load(Relaxed)
    }

    /// Takes the lock if no other process holds it; true once held. `on_take` runs once the lock is taken
    /// and before [`held`](Self::held) says so (what the previous holder left is cleared before the tier is
    /// used). The file locked must still be the one at the path: one removed meanwhile (a cleaner of
    /// `/tmp`) and made again is the lock another process would take, so it is opened anew and tried.
    pub(crate) fn try_take(&self, on_take: &dyn Fn()) -> std::io::Result<bool> {
        if self.held() {
            return Ok(true);
        }
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if !flock(&file)? {
                return Ok(false);
            }
            if is_at(&file, &self.path) {
                on_take();
                self.held.store(true, Relaxed);
                return Ok(true);
            }
            // Dropping the old file releases its lock.
            *file = open_lock(&self.path)?;
        }
        Ok(false)
    }
}

/// The lock file, without following a link in its place (a link would have the lock taken on, and its
/// target created or changed, somewhere else).
fn open_lock(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)?;
    }
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// An exclusive, non-blocking lock on `file` (released when it is closed): false when another holds it.
fn flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory is shared with the kernel.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => return Ok(false),
            std::io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// Whether `file` is the file at `path` (not one removed since).
fn is_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
