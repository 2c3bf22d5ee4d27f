//! SOURCE arguments → the input files, listed once and sorted. A SOURCE is a local file, a local directory
//! (every file below it), a local glob (`data/*.parquet`), or an object-store URL: `s3://bucket/prefix/`
//! (every object under it), `s3://bucket/prefix/*.parquet` (a glob over keys; `*` stays within one `/`
//! level) or `s3://bucket/key` (that object, else the "directory" `key/`). Names starting with `.` or `_`
//! below a listed directory are skipped (Spark's `_SUCCESS`, `.crc` files), as are empty objects in an
//! object listing (folder markers; an empty object holds no records either).
//!
//! The fingerprint identifies the dataset: a local file by its name and contents (so re-serving the same
//! file reuses its version), an object by its URL, size and ETag from the listing (nothing is read twice).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_shared::stores::Store;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::error::IngestError;
use crate::input::{InputFile, InputFormat, Location};
use crate::object_read::Object;

/// What a checkpoint remembers of one input, to tell a rerun what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub name: String,
    pub size: u64,
    /// The object's ETag, or `xxh3-64:<hex>` of a local file's contents.
    pub tag: String,
}

/// The inputs every SOURCE names, sorted by name, each once. Object stores are configured from the
/// environment, as the store is (`AWS_*`).
pub async fn list_sources(sources: &[PathBuf], format: Option<InputFormat>) -> Result<Vec<InputFile>, IngestError> {
    list_sources_with(sources, format, &[]).await
}

/// As [`list_sources`], with `AWS_*`-style settings over the environment (tests, tools).
pub async fn list_sources_with(
    sources: &[PathBuf],
    format: Option<InputFormat>,
    settings: &[(String, String)],
) -> Result<Vec<InputFile>, IngestError> {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if sources.is_empty() {
        return Err(IngestError::Invalid("no input given".into()));
    }
    let mut stores: HashMap<String, Arc<dyn ObjectStore>> = HashMap::new();
    let mut files = Vec::new();
    for source in sources {
        let text = source.to_string_lossy();
        let found = if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let store = match stores.get(bucket) {
                Some(s) => s.clone(),
                None => {
                    let s = Store::open_with(&format!("s3://{bucket}"), &settings)?.inner;
                    stores.insert(bucket.to_string(), s.clone());
                    s
                }
            };
            list_objects(store, bucket, key, format).await?
        } else if let Some(path) = text.strip_prefix("file://") {
            list_local(Path::new(path), format)?
        } else if text.contains("://") {
            return Err(IngestError::Invalid(format!(
                "{text}: unsupported URL (use a local path, a glob, or s3://bucket/prefix)"
            )));
        } else {
            list_local(source, format)?
        };
        files.extend(found);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    Ok(files)
}

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn hidden(name: &str) -> bool {
    name.starts_with(['.', '_'])
}

/// The inputs one local SOURCE (file, directory or glob) names; [`list_sources`] lists any SOURCE.
pub fn list_local(path: &Path, format: Option<InputFormat>) -> Result<Vec<InputFile>, IngestError> {
    let text = path.to_string_lossy();
    let mut paths = Vec::new();
    if !path.exists() && has_wildcard(&text) {
        let matches = glob::glob(&text).map_err(|e| IngestError::Invalid(format!("{text}: bad glob: {e}")))?;
        for m in matches {
            let p = m.map_err(|e| IngestError::Invalid(format!("{text}: {e}")))?;
            paths.extend(local_files(&p)?);
        }
        if paths.is_empty() {
            return Err(IngestError::Invalid(format!("no files match {text}")));
        }
    } else {
        paths = local_files(path)?;
    }
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).map_err(IngestError::io(format!("cannot stat {}", p.display())))?;
            let mut f = InputFile::new(p.clone(), Location::Local(p.clone()), meta.len(), format)?;
            f.modified = meta.modified().ok();
            if format.is_none() && f.unnamed() {
                let mut head = [0u8; 4];
                let n = File::open(&p).and_then(|mut h| h.read(&mut head)).unwrap_or(0);
                f = f.sniffed(&head[..n]);
            }
            Ok(f)
        })
        .collect()
}

/// `path` itself, or every regular file below a directory (sorted, skipping hidden names).
fn local_files(path: &Path) -> Result<Vec<PathBuf>, IngestError> {
    let meta = std::fs::metadata(path).map_err(IngestError::io(format!("cannot read {}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut paths = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    // Directories by (device, inode): a link back up the tree (`current -> .`) is walked once, not forever.
    let mut seen = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&dir).map_err(IngestError::io(format!("cannot stat {}", dir.display())))?;
        if !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(IngestError::io(format!("cannot list {}", dir.display())))? {
            let entry = entry.map_err(IngestError::io(format!("cannot list {}", dir.display())))?;
            if hidden(&entry.file_name().to_string_lossy()) {
                continue;
            }
            // Symlinks count as what they point to (a lake assembled from links is common); a dangling one is
            // an error, not a silently smaller dataset.
            let ft = std::fs::metadata(entry.path())
                .map_err(IngestError::io(format!("cannot stat {}", entry.path().display())))?
                .file_type();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                paths.push(entry.path());
            }
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(IngestError::Invalid(format!("{} holds no input files", path.display())));
    }
    Ok(paths)
}

async fn list_objects(
    store: Arc<dyn ObjectStore>,
    bucket: &str,
    key: &str,
    format: Option<InputFormat>,
) -> Result<Vec<InputFile>, IngestError> {
    let url = format!("s3://{bucket}/{key}");
    let mut found: Vec<ObjectMeta> = Vec::new();
    if has_wildcard(key) {
        // List below the last `/` before the first wildcard, keep the keys the pattern matches.
        let first = key.find(['*', '?', '[']).expect("has a wildcard");
        let dir = key[..first].rsplit_once('/').map_or("", |(d, _)| d);
        let pattern = glob::Pattern::new(key).map_err(|e| IngestError::Invalid(format!("{url}: bad glob: {e}")))?;
        let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        let under = key_path(&url, dir)?;
        let prefix = (!under.as_ref().is_empty()).then_some(&under);
        let mut listing = store.list(prefix);
        // Only the matches are kept: a glob at the top of a big bucket does not hold its whole listing.
        while let Some(m) = listing.try_next().await? {
            if m.size > 0 && pattern.matches_with(m.location.as_ref(), opts) {
                found.push(m);
            }
        }
    } else {
        let trimmed = key_path(&url, key.trim_end_matches('/'))?;
        let single = if key.ends_with('/') || key.is_empty() {
            None
        } else {
            match store.head(&trimmed).await {
                Ok(m) => Some(m),
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(IngestError::Invalid(format!("{url}: {e}"))),
            }
        };
        match single {
            Some(m) => found.push(m),
            None => {
                for m in list_under(store.as_ref(), &trimmed).await? {
                    let shown =
                        m.location.prefix_match(&trimmed).is_some_and(|mut parts| !parts.any(|p| hidden(p.as_ref())));
                    if shown && m.size > 0 {
                        found.push(m);
                    }
                }
            }
        }
    }
    if found.is_empty() {
        return Err(IngestError::Invalid(format!("nothing to ingest at {url}")));
    }
    let files: Vec<InputFile> = found
        .into_iter()
        .map(|m| {
            let name = PathBuf::from(format!("s3://{bucket}/{}", m.location));
            let object = Object {
                store: store.clone(),
                name: name.display().to_string(),
                path: m.location,
                size: m.size,
                etag: m.e_tag,
            };
            InputFile::new(name, Location::Object(object), m.size, format)
        })
        .collect::<Result<_, _>>()?;
    // Extensionless objects (Hive's `000000_0`) are told by their first 4 bytes, 16 requests at a time.
    use futures::StreamExt;
    let sniff = |f: InputFile| async move {
        match &f.location {
            Location::Object(o) if format.is_none() && f.unnamed() => {
                let head =
                    o.fetch(0..o.size.min(4)).await.map_err(IngestError::io(format!("cannot read {}", o.name)))?;
                Ok(f.sniffed(&head))
            }
            _ => Ok(f),
        }
    };
    futures::stream::iter(files).map(sniff).buffered(16).try_collect().await
}

/// A key as the user wrote it (no percent-encoding: `ts=10%3A00` stays as S3 stores it).
fn key_path(url: &str, key: &str) -> Result<object_store::path::Path, IngestError> {
    object_store::path::Path::parse(key)
        .map_err(|e| IngestError::Invalid(format!("{url}: not a usable object key ({e})")))
}

async fn list_under(store: &dyn ObjectStore, dir: &object_store::path::Path) -> Result<Vec<ObjectMeta>, IngestError> {
    let prefix = (!dir.as_ref().is_empty()).then_some(dir);
    Ok(store.list(prefix).try_collect().await?)
}

/// One stamp per input: local files are hashed (read once), objects stamped from their listing.
pub fn stamps(files: &[InputFile]) -> Result<Vec<Stamp>, IngestError> {
    let mut buf = vec![0u8; 1 << 20];
    files
        .iter()
        .map(|f| {
            let tag = match &f.location {
                Location::Object(o) => o.etag.clone().unwrap_or_default(),
                Location::Local(p) => {
                    let mut file = File::open(p).map_err(IngestError::io(format!("cannot open {}", p.display())))?;
                    let mut one = Xxh3::new();
                    loop {
                        let n = file.read(&mut buf).map_err(IngestError::io(format!("cannot read {}", p.display())))?;
                        if n == 0 {
                            break;
                        }
                        one.update(&buf[..n]);
                    }
                    cairn_shared::format::manifest::checksum_label(one.digest())
                }
            };
            Ok(Stamp { name: f.path.display().to_string(), size: f.size, tag })
        })
        .collect()
}

/// `xxh3-64:<hex>` over the inputs in order: a local file counts by its file name and contents (whatever
/// its directory or modification time), an object by its URL, size and ETag.
pub fn fingerprint_of(files: &[InputFile], stamps: &[Stamp]) -> String {
    let mut all = Xxh3::new();
    for (f, s) in files.iter().zip(stamps) {
        match &f.location {
            Location::Local(p) => {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                all.update(name.as_bytes());
                all.update(&[0]);
                let digest = s.tag.strip_prefix("xxh3-64:").and_then(|h| u64::from_str_radix(h, 16).ok());
                all.update(&digest.unwrap_or_default().to_le_bytes());
            }
            Location::Object(_) => {
                all.update(s.name.as_bytes());
                all.update(&[0]);
                all.update(&s.size.to_le_bytes());
                all.update(s.tag.as_bytes());
                all.update(&[0]);
            }
        }
    }
    cairn_shared::format::manifest::checksum_label(all.digest())
}

/// The fingerprint of `files` (reads local files; see [`fingerprint_of`]).
pub fn fingerprint(files: &[InputFile]) -> Result<String, IngestError> {
    Ok(fingerprint_of(files, &stamps(files)?))
}

/// What changed between two listings of the same sources, for the message that refuses a resume.
pub fn changes(before: &[Stamp], now: &[Stamp]) -> Vec<String> {
    let old: HashMap<&str, &Stamp> = before.iter().map(|s| (s.name.as_str(), s)).collect();
    let new: HashMap<&str, &Stamp> = now.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = Vec::new();
    if before.is_empty() {
        return vec![format!("their fingerprint differs ({} inputs: too many to list)", now.len())];
    }
    for s in now {
        match old.get(s.name.as_str()) {
            None => out.push(format!("{} is new", s.name)),
            Some(o) if o.size != s.size => out.push(format!("{}: size {} -> {}", s.name, o.size, s.size)),
            Some(o) if o.tag != s.tag => out.push(format!("{}: {} -> {}", s.name, o.tag, s.tag)),
            Some(_) => {}
        }
    }
    out.extend(before.iter().filter(|s| !new.contains_key(s.name.as_str())).map(|s| format!("{} is gone", s.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(name: &str, size: u64, tag: &str) -> Stamp {
        Stamp { name: name.into(), size, tag: tag.into() }
    }

    #[test]
    fn changes_name_what_moved() {
        let before = [stamp("a", 1, "x"), stamp("b", 2, "y"), stamp("c", 3, "z")];
        let now = [stamp("a", 1, "x"), stamp("b", 2, "y2"), stamp("d", 4, "w"), stamp("c", 5, "z")];
        assert_eq!(changes(&before, &now), ["b: y -> y2", "d is new", "c: size 3 -> 5"]);
        assert_eq!(changes(&now[..2], &now[..1]), ["b is gone"]);
        assert!(changes(&[], &now)[0].contains("fingerprint differs"));
        assert!(changes(&before, &before).is_empty());
    }
}
