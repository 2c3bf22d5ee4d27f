//! The disk tier's files (caches/disk_tier.rs): where an entry lives, what it holds, how a directory left by
//! a previous process is listed, and the budget a tier gets when none is given.

use std::path::{Path, PathBuf};

/// First bytes of every entry file: the layout's revision.
pub(crate) const MAGIC: &[u8; 8] = b"cairnDT1";
/// The directory below the configured path that holds this layout.
pub(crate) const LAYOUT: &str = "cairn-disk-1";
/// The file-system block entries are counted in.
const BLOCK: u64 = 4096;

/// What a file of `len` bytes takes on disk: whole blocks.
pub(crate) fn on_disk(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

pub(crate) fn hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

/// Entries spread over 256 subdirectories, named by hash.
pub(crate) fn entry_path(dir: &Path, hash: u128) -> PathBuf {
    let name = format!("{hash:032x}");
    dir.join(&name[..2]).join(name)
}

/// Where `key`'s bytes start in an entry file, if the file is `key`'s entry.
pub(crate) fn payload(file: &[u8], key: &str) -> Option<usize> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let stored = rest.get(4..4 + len)?;
    (stored == key.as_bytes()).then_some(MAGIC.len() + 4 + len)
}

/// An entry file's bytes, if it is a plain file of at most `limit` bytes: opened without following a link
/// and without waiting (a named pipe there would hold the reading thread for good), its size checked before
/// it is read. Anything else is `InvalidData`.
pub(crate) fn read_entry(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let invalid =
        |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW).open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(invalid("a symbolic link")),
        // A socket, or a file this process may not read: about that file, not the disk.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::EACCES | libc::EPERM)) => {
            return Err(invalid(&e.to_string()));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid("not a plain file"));
    }
    if meta.len() > limit {
        return Err(invalid("larger than any entry"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Bounded even if the file grows after its size was read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(invalid("larger than any entry"));
    }
    Ok(bytes)
}

/// The tier's own subdirectory `dir`: a link or a file in its place (which the tier would write and delete
/// through) is removed first.
pub(crate) fn own_dir(dir: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(dir)?;
    }
    std::fs::create_dir_all(dir)
}

/// Lists the entries a previous process left, oldest first (so the newest are evicted last), into the
/// index; files that are not entries are removed. Links are never followed (one to another directory would
/// have its files removed as strangers): they are removed themselves. Stops when `alive` turns false (the
/// tier was dropped: the directory may be another's by then).
pub(crate) fn scan(dir: &Path, index: &moka::sync::Cache<u128, u64>, alive: &dyn Fn() -> bool) {
    let mut found = Vec::new();
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !alive() {
            return;
        }
        let name = sub.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(kind) = sub.file_type() else { continue };
        if name.len() == 2 && kind.is_symlink() {
            let _ = std::fs::remove_file(sub.path());
        }
        if name.len() != 2 || !kind.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            // Of the link itself, not of what it names.
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else { continue };
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
    if !alive() {
        return;
    }
    for (_, h, size) in found {
        // A newer write of the same entry since the start keeps its own size.
        if index.get(&h).is_none() {
            index.insert(h, size);
        }
    }
    index.run_pending_tasks();
}

/// The budget when none is given: 1 GiB, or half the file system when that is smaller (the Lambda's
/// `/tmp` is 512 MB unless configured larger).
pub(crate) fn default_size(path: &Path) -> u64 {
    const CAP: u64 = 1 << 30;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { return CAP };
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs writes the struct it is given; it is read only when the call succeeds.
    if unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) } != 0 {
        return CAP;
    }
    let s = unsafe { s.assume_init() };
    // u64 here; narrower on some other targets.
    #[allow(clippy::unnecessary_cast)]
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
