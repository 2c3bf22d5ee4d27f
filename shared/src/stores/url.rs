//! Store URLs → object stores. `file:///abs/path` or a plain path (the embedded default, `./.cairn`),
//! `s3://bucket/prefix` (configured the standard AWS way from the environment) and `memory://[name]`
//! (process-local, for tests: the same name gives the same store within one process).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

use crate::error::{Error, Result};
use crate::stores::local_root::LocalRoot;

/// Where the embedded store lives when no `--store`/`CAIRN_STORE` is given.
pub const DEFAULT_STORE: &str = ".cairn";

/// An opened store root together with the URL it came from (recorded in manifests, shown to users).
#[derive(Clone, Debug)]
pub struct Store {
    pub url: String,
    pub inner: Arc<dyn ObjectStore>,
}

static MEMORY: LazyLock<Mutex<HashMap<String, Arc<InMemory>>>> = LazyLock::new(Default::default);

impl Store {
    /// Opens the store a URL names (a local directory that does not exist is created by its first write).
    /// S3 is configured from the environment the standard AWS way (`AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    pub fn open(url: &str) -> Result<Store> {
        Self::open_with(url, &[])
    }

    /// As [`Store::open`], with extra `AWS_*`-style settings applied over the environment (tests, tools).
    pub fn open_with(url: &str, aws: &[(&str, &str)]) -> Result<Store> {
        let bad = |why: &str| Error::InvalidStoreUrl { url: url.to_string(), why: why.to_string() };
        if let Some(name) = url.strip_prefix("memory://") {
            let mem = MEMORY.lock().expect("memory registry").entry(name.to_string()).or_default().clone();
            return Ok(Store { url: url.to_string(), inner: mem });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name (expected s3://bucket/prefix)"));
            }
            let mut builder = AmazonS3Builder::from_env();
            for (k, v) in aws {
                let key: AmazonS3ConfigKey =
                    k.to_ascii_lowercase().parse().map_err(|e: object_store::Error| bad(&e.to_string()))?;
                builder = builder.with_config(key, *v);
            }
            // Request-path defaults instead of object_store's 10 retries over 180 s: a lookup has replicas to
            // fail over to (shared/src/failover.rs), so one copy must not hold it for minutes. Environment
            // settings (AWS_TIMEOUT, AWS_CONNECT_TIMEOUT) win.
            for (key, default) in [(ClientConfigKey::ConnectTimeout, "2s"), (ClientConfigKey::Timeout, "30s")] {
                let key = AmazonS3ConfigKey::Client(key);
                if builder.get_config_value(&key).is_none() {
                    builder = builder.with_config(key, default);
                }
            }
            builder = builder.with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(10),
                backoff: BackoffConfig::default(),
            });
            // Conditional copies (how shards too large for one conditional PUT are created, never replaced):
            // S3's multipart copy with If-None-Match on its completion, unless the environment says otherwise.
            if builder.get_config_value(&AmazonS3ConfigKey::CopyIfNotExists).is_none() {
                builder = builder.with_config(AmazonS3ConfigKey::CopyIfNotExists, "multipart");
            }
            // An endpoint the user wrote as http:// (LocalStack, MinIO) is meant to be used over HTTP.
            if builder.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            let s3 = builder.with_bucket_name(bucket).build().map_err(|e| bad(&e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let inner: Arc<dyn ObjectStore> =
                if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) };
            return Ok(Store { url: format!("s3://{bucket}/{prefix}").trim_end_matches('/').to_string(), inner });
        }
        let path = match url.strip_prefix("file://") {
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(_) => return Err(bad("file URLs need an absolute path: file:///abs/path")),
            None if url.contains("://") => {
                return Err(bad("unknown scheme (use file:///path, a plain path, s3://bucket/prefix or memory://)"));
            }
            None if url.is_empty() => return Err(bad("empty")),
            None => PathBuf::from(url),
        };
        // Resolved, not created: only a write makes the directory (local_root.rs says why).
        let resolved = LocalRoot::resolve(&path).map_err(|e| bad(&e))?;
        let path = resolved.path.clone();
        // The URL names the store to every process that opens it again (a build's writers) and to
        // `local_file`: a directory that resolves to a path it cannot spell is refused.
        if path.to_str().is_none() {
            return Err(bad(&format!("the directory resolves to {}, which is not UTF-8", path.display())));
        }
        let inner = Arc::new(LocalRoot::new(resolved));
        Ok(Store { url: format!("file://{}", path.display()), inner })
    }

    /// Makes a local root's directory now, so that a command about to write fails at once, naming the
    /// directory, when it cannot be made (its first write would otherwise be where it fails); other
    /// stores need nothing.
    pub fn prepare_for_writes(&self) -> Result<()> {
        let Some(path) = self.url.strip_prefix("file://") else { return Ok(()) };
        LocalRoot::create(std::path::Path::new(path)).map_err(|e| Error::InvalidStoreUrl {
            url: self.url.clone(),
            why: format!("cannot create directory {path}: {e}"),
        })
    }

    /// The file an object of a local store is kept in (None for other stores): for data this process
    /// reads and writes itself, where going through the store would only copy it (a bulk load's staged runs).
    pub fn local_file(&self, location: &object_store::path::Path) -> Option<PathBuf> {
        let root = self.url.strip_prefix("file://")?;
        Some(location.parts().fold(PathBuf::from(root), |p, part| p.join(part.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = Store::open(dir.path().join("a").to_str().unwrap()).unwrap();
        assert!(plain.url.starts_with("file:///"));
        assert!(Store::open(&format!("file://{}", dir.path().display())).is_ok());
        assert!(Store::open("file://relative").is_err());
        assert!(Store::open("gopher://x").is_err());
        assert!(Store::open("s3:///nobucket").is_err());
        let (a, b) = (Store::open("memory://t").unwrap(), Store::open("memory://t").unwrap());
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        plain.inner.put(&"x".into(), "x".into()).await.unwrap();
        assert!(format!("{:?}", plain.inner).contains("fsync: true"), "the embedded store syncs: {:?}", plain.inner);
    }

    /// Only a write creates a local root's directory: a command that reads (`health`, `versions`, a reader
    /// opening the replica roots an old manifest names) must not leave one behind.
    #[tokio::test]
    async fn opening_a_local_root_creates_nothing_until_the_first_write() {
        use futures::TryStreamExt;
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("retired/replica");
        let store = Store::open(missing.to_str().unwrap()).unwrap();
        assert_eq!(
            store.url,
            format!("file://{}", dir.path().canonicalize().unwrap().join("retired/replica").display())
        );
        let location = object_store::path::Path::from("keyspace=ks/_pointer");
        let err = store.inner.get(&location).await.expect_err("read from a root that does not exist");
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        assert!(matches!(store.inner.head(&location).await, Err(object_store::Error::NotFound { .. })));
        assert!(store.inner.list(None).try_collect::<Vec<_>>().await.unwrap().is_empty());
        assert!(store.inner.list_with_delimiter(None).await.unwrap().objects.is_empty());
        let update =
            object_store::PutMode::Update(object_store::UpdateVersion { e_tag: Some("x".into()), version: None });
        let err = store.inner.put_opts(&location, "v0".into(), update.into()).await.expect_err("updated nothing");
        assert!(matches!(err, object_store::Error::Precondition { .. }), "{err}");
        assert!(!dir.path().join("retired").exists(), "opening, reading or a failed update created the directory");

        store.inner.put(&location, "v1".into()).await.unwrap();
        assert!(missing.join("keyspace=ks/_pointer").is_file());
        let reopened = Store::open(missing.to_str().unwrap()).unwrap();
        assert_eq!(reopened.url, store.url);
        assert_eq!(reopened.inner.get(&location).await.unwrap().bytes().await.unwrap(), "v1");

        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let err = Store::open(file.to_str().unwrap()).expect_err("a file opened as a store root");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_directory_that_resolves_to_a_path_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::create_dir(&odd).unwrap();
        let link = dir.path().join("store");
        std::os::unix::fs::symlink(&odd, &link).unwrap();
        let err = Store::open(link.to_str().unwrap()).expect_err("opened a store it cannot name");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        let store = Store::open(dir.path().join("fine").to_str().unwrap()).unwrap();
        let file =
            store.local_file(&object_store::path::Path::from("keyspace=ks/groups/v/runs/p00001-t2.run")).unwrap();
        assert_eq!(file, dir.path().canonicalize().unwrap().join("fine/keyspace=ks/groups/v/runs/p00001-t2.run"));
    }
}
