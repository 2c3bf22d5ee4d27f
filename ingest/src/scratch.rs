//! Scratch space on local disk: a directory of an ingest's spilled runs and shard files (`cairn-ingest-*`),
//! or of an external writer's shard files (`cairn-partition-*`), removed when dropped. Each holds an
//! exclusive `flock` on a lock file inside it for as long as it exists, which the kernel lets go of when its
//! process ends however it ends: creating one first sweeps the scratch directories in the same place whose
//! lock nobody holds (what a killed process left), so a crash costs disk space only until the next run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOCK: &str = ".lock";
/// Scratch kinds swept; each is a name prefix.
const KINDS: [&str; 2] = ["cairn-ingest-", "cairn-partition-"];
/// A scratch directory with no lock file may be one being created right now; older than this it is one an
/// older build left (they had no lock file).
const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    /// A new scratch directory named `<prefix><random>` in `base` (which is created if needed), after
    /// sweeping what dead runs left in `base`.
    pub fn create(base: &Path, prefix: &str) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(base)?;
        sweep(base);
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(base)?;
        let lock = File::create(dir.path().join(LOCK))?;
        lock.try_lock().map_err(|e| std::io::Error::other(format!("locking {}: {e}", dir.path().display())))?;
        Ok(Scratch { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes the scratch directories in `base` whose owner is gone. Best effort: what cannot be removed now is
/// tried again by the next run.
pub fn sweep(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(base) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !KINDS.iter().any(|k| name.starts_with(k)) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let abandoned = match File::open(path.join(LOCK)) {
            // Whoever holds the lock is alive; taking it means nobody does (dropped when `f` is).
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > UNLOCKED_GRACE)),
        };
        if abandoned && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(dir = %path.display(), "removed the scratch space of an ingest that ended without cleaning up");
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_scratch_dir_is_kept_a_dead_one_swept() {
        let base = tempfile::tempdir().unwrap();
        let live = Scratch::create(base.path(), "cairn-ingest-").unwrap();
        // What a killed process leaves: the directory and its lock file, the lock released by the kernel.
        let dead = base.path().join("cairn-partition-dead");
        std::fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK)).unwrap();
        std::fs::write(dead.join("run-00000.bin"), b"spilled").unwrap();
        // Not ours: left alone.
        std::fs::create_dir(base.path().join("someone-else")).unwrap();
        let removed = sweep(base.path());
        assert_eq!(removed, vec![dead.clone()]);
        assert!(live.path().exists() && base.path().join("someone-else").exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "a dropped scratch dir is removed");
    }
}
