//! A local directory as a store root, opened without creating it. A command that only reads (`health`,
//! `versions`, `serve`, a reader opening the replica roots an old manifest names) must not leave an empty
//! directory behind where nothing was, such as a retired replica's. So until the directory exists, reads
//! find nothing (`NotFound`, empty listings) and a conditional update fails its precondition; the first
//! other write creates it, and from then on every call goes to the directory's store
//! ([`LocalConditional`] over object_store's `LocalFileSystem`).

use std::fmt;
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::stores::conditional::LocalConditional;

#[derive(Debug)]
pub struct LocalRoot {
    /// Absolute, with every existing part resolved (what [`std::fs::canonicalize`] gives once it exists),
    /// unless the path could not be examined when opened.
    path: PathBuf,
    resolved: bool,
    opened: OnceLock<Arc<dyn ObjectStore>>,
}

/// A local root's path as [`LocalRoot::resolve`] found it.
pub struct Resolved {
    pub path: PathBuf,
    /// False when a part of the path could not be examined (no permission, a link loop or one that
    /// resolves to nothing, a mount gone): the path is kept as given, absolute, and every call reports
    /// the failure, so a reader fails over past such a replica instead of failing to open its version.
    pub resolved: bool,
}

impl LocalRoot {
    /// `path` resolved as far as it exists (symbolic links, `..`), and the rest appended: the name the
    /// directory will have once a write creates it. Refused: a path that names a file, or whose missing
    /// part holds `..` (what it would name depends on directories not yet made).
    pub fn resolve(path: &FsPath) -> std::result::Result<Resolved, String> {
        let absolute = std::path::absolute(path).map_err(|e| e.to_string())?;
        let Ok(existing) = deepest_existing(&absolute) else {
            return Ok(Resolved { path: absolute, resolved: false });
        };
        let Ok(real) = existing.canonicalize() else {
            return Ok(Resolved { path: absolute, resolved: false });
        };
        if !real.is_dir() {
            return Err(format!("{} is not a directory", real.display()));
        }
        let rest = absolute.strip_prefix(existing).map_err(|e| e.to_string())?;
        let mut resolved = real;
        for part in rest.components() {
            match part {
                Component::Normal(p) => resolved.push(p),
                Component::CurDir => {}
                _ => return Err(format!("{}: `..` under a directory that does not exist", path.display())),
            }
        }
        Ok(Resolved { path: resolved, resolved: true })
    }

    /// Makes the directory at `path` and any missing parents, each new entry synced to disk (as
    /// object_store syncs the directories it makes below a root): a root made by a write that reported
    /// success is still there after a power loss.
    pub fn create(path: &FsPath) -> std::io::Result<()> {
        let path = &std::path::absolute(path)?;
        let existing = deepest_existing(path).map_err(std::io::Error::other)?.to_path_buf();
        if existing == *path {
            return match std::fs::metadata(path)?.is_dir() {
                true => Ok(()),
                false => Err(std::io::Error::other(format!("{} is not a directory", path.display()))),
            };
        }
        std::fs::create_dir_all(path)?;
        // Each directory that gained an entry: the one that existed, then every new one but `path`.
        let mut dir = existing.clone();
        std::fs::File::open(&dir)?.sync_all()?;
        let made: Vec<_> = path.strip_prefix(&existing).map_err(std::io::Error::other)?.components().collect();
        for part in &made[..made.len().saturating_sub(1)] {
            dir.push(part);
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }

    /// A root at the path [`Self::resolve`] gave.
    pub fn new(Resolved { path, resolved }: Resolved) -> LocalRoot {
        LocalRoot { path, resolved, opened: OnceLock::new() }
    }

    /// The directory's store, once the directory exists (`create`: making it first); None while it does not.
    fn store(&self, create: bool) -> Result<Option<&Arc<dyn ObjectStore>>> {
        if let Some(store) = self.opened.get() {
            return Ok(Some(store));
        }
        // Only "no such directory" means nothing is there: another failure (no permission, a link loop, a
        // mount gone) is an error, as it was when opening created the directory.
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(generic(format!("{} is not a directory", self.path.display()))),
            // Missing, unless a part of the path is what cannot be examined (a link to nothing).
            Err(e) if e.kind() == ErrorKind::NotFound && !create => {
                return match deepest_existing(&self.path) {
                    Ok(_) => Ok(None),
                    Err(why) => Err(generic(why)),
                };
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Self::create(&self.path).map_err(|e| generic(format!("creating {}: {e}", self.path.display())))?
            }
            Err(e) => return Err(generic(format!("{}: {e}", self.path.display()))),
        }
        // Made since it was resolved (a link put in place meanwhile): the URL would name another directory.
        let real = self.path.canonicalize().map_err(|e| generic(format!("{}: {e}", self.path.display())))?;
        if self.resolved && real != self.path {
            return Err(generic(format!("{} now resolves to {}", self.path.display(), real.display())));
        }
        // fsync every object and its directory entry: a pointer switch must never outlive, across a power
        // loss, the shard and manifest bytes it names (docs/FORMAT.md, "Durability").
        let fs = LocalFileSystem::new_with_prefix(&self.path)?.with_automatic_cleanup(true).with_fsync(true);
        let store: Arc<dyn ObjectStore> = Arc::new(LocalConditional::new(Arc::new(fs), self.path.clone()));
        Ok(Some(self.opened.get_or_init(|| store)))
    }

    fn not_found(&self, location: &Path) -> object_store::Error {
        let why = format!("{} does not exist", self.path.display());
        object_store::Error::NotFound { path: location.to_string(), source: why.into() }
    }
}

/// The deepest of `path` and its ancestors that exists. A link that resolves to nothing is refused: what
/// the path names would depend on what is made where it points.
fn deepest_existing(path: &FsPath) -> std::result::Result<&FsPath, String> {
    for a in path.ancestors() {
        match std::fs::symlink_metadata(a) {
            Ok(m) => {
                if m.is_symlink()
                    && let Err(e) = std::fs::metadata(a)
                {
                    return Err(format!("{} is a symbolic link that does not resolve: {e}", a.display()));
                }
                return Ok(a);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", a.display())),
        }
    }
    Ok(FsPath::new("/"))
}

fn generic(msg: String) -> object_store::Error {
    object_store::Error::Generic { store: "LocalRoot", source: msg.into() }
}

impl fmt::Display for LocalRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalRoot({})", self.path.display())
    }
}

#[async_trait]
impl ObjectStore for LocalRoot {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        // An update expects an object: with no directory there is none, and a failed update creates nothing.
        let update = matches!(opts.mode, PutMode::Update(_));
        match self.store(!update)? {
            Some(store) => store.put_opts(location, payload, opts).await,
            None => Err(object_store::Error::Precondition {
                path: location.to_string(),
                source: format!("{} does not exist", self.path.display()).into(),
            }),
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        match self.store(true)? {
            Some(store) => store.put_multipart_opts(location, opts).await,
            None => Err(generic(format!("{} was not created", self.path.display()))),
        }
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        match self.store(false)? {
            Some(store) => store.get_opts(location, options).await,
            None => Err(self.not_found(location)),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match self.store(false)? {
            Some(store) => store.get_ranges(location, ranges).await,
            None => Err(self.not_found(location)),
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        match self.store(false) {
            Ok(Some(store)) => store.delete_stream(locations),
            Ok(None) => {
                let why = format!("{} does not exist", self.path.display());
                locations
                    .map(move |l| {
                        let path = l?.to_string();
                        Err(object_store::Error::NotFound { path, source: why.clone().into() })
                    })
                    .boxed()
            }
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.store(false) {
            Ok(Some(store)) => store.list(prefix),
            Ok(None) => stream::empty().boxed(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        match self.store(false)? {
            Some(store) => store.list_with_delimiter(prefix).await,
            None => Ok(ListResult { common_prefixes: Vec::new(), objects: Vec::new(), extensions: Default::default() }),
        }
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        match self.store(false)? {
            Some(store) => store.copy_opts(from, to, options).await,
            None => Err(self.not_found(from)),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};

    use super::*;

    fn is_not_found<T: fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(object_store::Error::NotFound { .. }))
    }

    /// Every call on a root whose directory does not exist: nothing found, nothing made.
    #[tokio::test]
    async fn a_missing_root_finds_nothing_and_makes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let resolved = LocalRoot::resolve(&dir.path().join("gone/root")).unwrap();
        let path = resolved.path.clone();
        let root = LocalRoot::new(resolved);
        let (a, b) = (Path::from("a"), Path::from("b"));
        assert!(is_not_found(root.get_range(&a, 0..1).await));
        assert!(is_not_found(root.get_ranges(&a, &[0..1, 2..3]).await));
        assert!(is_not_found(root.delete(&a).await));
        assert!(is_not_found(root.copy(&a, &b).await));
        assert!(is_not_found(root.rename(&a, &b).await));
        assert!(root.list_with_offset(None, &a).try_collect::<Vec<_>>().await.unwrap().is_empty());
        assert!(!dir.path().join("gone").exists());
        root.put_multipart(&a).await.unwrap().abort().await.unwrap();
        assert!(path.is_dir(), "a multipart upload is a write: it makes the directory");
    }

    /// Failures other than "no such directory" are errors, not an empty root: a link that resolves to
    /// nothing, a link loop, a file where a directory should be. Opening such a root (a reader opening the
    /// replicas a manifest names) succeeds; its calls fail, so a reader fails over past it.
    #[tokio::test]
    async fn what_is_not_missing_is_not_read_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        std::os::unix::fs::symlink(d.join("loop"), d.join("loop")).unwrap();
        std::fs::write(d.join("file"), "x").unwrap();
        for broken in [d.join("dangling"), d.join("dangling/below"), d.join("loop/root"), d.join("file/root")] {
            let root = LocalRoot::new(LocalRoot::resolve(&broken).unwrap());
            let err = root.get(&Path::from("a")).await.expect_err("read through a broken path");
            assert!(!matches!(err, object_store::Error::NotFound { .. }), "{}: {err}", broken.display());
            assert!(root.list(None).try_collect::<Vec<_>>().await.is_err());
            assert!(root.put(&Path::from("a"), "v".into()).await.is_err());
            assert!(LocalRoot::create(&broken).is_err());
        }
        assert!(!d.join("nowhere").exists());
        assert!(LocalRoot::resolve(&d.join("file")).is_err(), "a file is not a root");
        assert!(LocalRoot::create(&d.join("file")).is_err());

        // Resolved while missing; then a file takes its place: reads fail, they do not find nothing.
        let root = LocalRoot::new(LocalRoot::resolve(&d.join("later")).unwrap());
        std::fs::write(d.join("later"), "x").unwrap();
        let err = root.get(&Path::from("a")).await.unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(root.put(&Path::from("a"), "v".into()).await.is_err());
    }

    #[test]
    fn creating_makes_every_missing_parent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c");
        LocalRoot::create(&path).unwrap();
        assert!(path.is_dir());
        LocalRoot::create(&path).unwrap();
    }
}
