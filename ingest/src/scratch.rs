//! Scratch space on local disk: a directory of an ingest's spilled runs and shard files (`cairn-ingest-*`),
//! or of an external writer's shard files (`cairn-partition-*`), or of a bulk load's map or merge task
//! (`cairn-stage-*`, `cairn-merge-*`), removed when dropped. Each holds an
//! exclusive `flock` on a lock file inside it for as long as it exists, which the kernel lets go of when its
//! process ends however it ends: creating one first sweeps the scratch directories in the same place whose
//! lock nobody holds (what a killed process left), so a crash costs disk space only until the next run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LOCK: &str = ".lock";
/// Scratch kinds swept; each is a name prefix.
const KINDS: [&str; 4] = ["cairn-ingest-", "cairn-partition-", "cairn-stage-", "cairn-merge-"];
/// A scratch directory with no lock file older than this is one an older build left (they had none), or one
/// whose creator died before renaming it into place.
const UNLOCKED_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    _lock: File,
}

/// Where a scratch directory is made before it is locked and renamed into place: a name the sweep judges by
/// age only, so it never takes a directory between its creation and its lock.
const NASCENT: &str = ".cairn-scratch-";

impl Scratch {
    /// A new scratch directory named `<prefix><random>` in `base` (which is created if needed), after
    /// sweeping what dead runs left in `base`. Blocking (it may delete a dead run's files): not on an async
    /// worker.
    pub fn create(base: &Path, prefix: &str) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(base)?;
        sweep(base);
        let nascent = tempfile::Builder::new().prefix(NASCENT).tempdir_in(base)?;
        let lock = File::create(nascent.path().join(LOCK))?;
        lock.try_lock().map_err(|e| std::io::Error::other(format!("locking {}: {e}", nascent.path().display())))?;
        let suffix = nascent.path().file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(NASCENT));
        let path = base.join(format!("{prefix}{}", suffix.unwrap_or("x")));
        let nascent = nascent.keep();
        if let Err(e) = std::fs::rename(&nascent, &path) {
            let _ = std::fs::remove_dir_all(&nascent);
            return Err(e);
        }
        Ok(Scratch { path, _lock: lock })
    }

    /// [`Scratch::create`] from async code, on a blocking thread.
    pub async fn create_async(base: PathBuf, prefix: &'static str) -> std::io::Result<Scratch> {
        tokio::task::spawn_blocking(move || Scratch::create(&base, prefix)).await.map_err(std::io::Error::other)?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
        let nascent = name.starts_with(NASCENT);
        if !(nascent || KINDS.iter().any(|k| name.starts_with(k))) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let old = || {
            entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|age| age > UNLOCKED_GRACE))
        };
        let abandoned = match File::open(path.join(LOCK)) {
            // Not yet renamed into place: its creator may be between creating and locking it.
            _ if nascent => old(),
            // Whoever holds the lock is alive; taking it means nobody does (dropped when `f` is).
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => old(),
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
        assert!(live.path().file_name().unwrap().to_string_lossy().starts_with("cairn-ingest-"));
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "a dropped scratch dir is removed");
    }

    /// Runs creating and dropping scratch dirs while others sweep the same place: no creation fails and no
    /// live directory is taken (each checks its own directory is there all along).
    #[test]
    fn creations_and_sweeps_at_once_never_take_a_live_directory() {
        let base = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let scratch = Scratch::create(base.path(), "cairn-ingest-").expect("created");
                        std::fs::write(scratch.path().join("run"), b"x").expect("its directory is still there");
                        sweep(base.path());
                        assert!(scratch.path().join("run").exists(), "a live scratch dir was swept");
                    }
                });
            }
        });
        assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "everything dropped was removed");
    }
}
