//! A write to a local root killed part-way leaves object_store's staging file behind (`LocalFileSystem`
//! writes `<object>#<n>`, then renames it into place), and no listing shows it: gc removes those under the
//! keyspace that no write has touched for a while, so crashes do not fill the disk for good.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::format::layout;
use crate::stores::url::Store;

/// A live write touches its staging file as data reaches it: one untouched this long is a dead process's,
/// whatever `--min-age` says (`gc --min-age 0s` beside an ingest must not fail that ingest's upload). Long,
/// since an upload feeds every root in turn and a stalled replica (or a paused process) stalls the local
/// file too; a dead write's file costs only disk meanwhile.
pub const IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
pub struct Swept {
    pub files: usize,
    pub bytes: u64,
}

/// Deletes (or, dry, counts) the staging files under `ks` in every local root among `roots` that were last
/// written more than `min_age` (at least [`IDLE`]) ago. What it cannot delete it says in the log.
pub async fn sweep(roots: &[Store], ks: &str, min_age: Duration, dry_run: bool) -> Swept {
    let dirs: Vec<PathBuf> = roots.iter().filter_map(|r| r.local_file(&layout::keyspace_dir(ks))).collect();
    let idle = min_age.max(IDLE);
    tokio::task::spawn_blocking(move || {
        let mut swept = Swept::default();
        let cutoff = SystemTime::now().checked_sub(idle).unwrap_or(SystemTime::UNIX_EPOCH);
        for dir in dirs {
            walk(&dir, cutoff, dry_run, &mut swept);
        }
        swept
    })
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the sweep of staging files stopped");
        Swept::default()
    })
}

fn walk(dir: &Path, cutoff: SystemTime, dry_run: bool, swept: &mut Swept) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return cannot(dir, &e),
    };
    for entry in entries.flatten() {
        // Symbolic links are not followed: a staging file is always a plain file.
        let Ok(kind) = entry.file_type() else { continue };
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, cutoff, dry_run, swept);
            continue;
        }
        if !kind.is_file() || !is_staging_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.modified().map_or(true, |m| m > cutoff) {
            continue;
        }
        match if dry_run { Ok(()) } else { std::fs::remove_file(&path) } {
            Ok(()) => {
                swept.files += 1;
                swept.bytes += meta.len();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => cannot(&path, &e),
        }
    }
}

/// Said, not failed: these are files of dead writes, which cost only disk (and the next run tries again).
fn cannot(path: &Path, e: &std::io::Error) {
    tracing::warn!(path = %path.display(), error = %e, "gc could not remove a staging file of a killed write");
}

/// object_store's own rule: a name whose part after its first `#` is all digits is a staging file (anything
/// else with a `#` is an object of its own).
fn is_staging_name(name: &str) -> bool {
    name.split_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_object_stores() {
        assert!(is_staging_name("v1.parquet#3"));
        assert!(is_staging_name("_pointer.json#12"));
        assert!(!is_staging_name("v1.parquet"));
        assert!(!is_staging_name("notes#draft"));
        assert!(!is_staging_name("trailing#"));
        assert!(!is_staging_name("a#1b"));
    }
}
