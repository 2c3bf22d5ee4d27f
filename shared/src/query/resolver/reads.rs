//! Reading a keyspace's pointer and a version's manifest top level from the roots: the primary, or a replica
//! root when the primary fails or is slow, each copy verified (the resolver's I/O, apart from its rules).

use std::time::Duration;

use object_store::{GetOptions, ObjectStoreExt};

use super::Resolver;
use crate::error::{Error, Result};
use crate::format::checksum::ObjectRef;
use crate::format::manifest::Manifest;
use crate::query::fetch::Fetcher;
use crate::query::roots::Roots;
use crate::stores::Store;
use crate::stores::replicated::{FailoverConfig, ReplicatedStore, is_corrupt};
use crate::versions::pointer::{self, Current};

impl Resolver {
    /// The manifest top level of `version`, verified against the size and checksum the pointer (or the
    /// version stacking on it) carries (a pointer of an older build: by its content), read like shard data: from the root the pointer came
    /// from or another root known for the keyspace (the primary, `CAIRN_REPLICAS`, the replicas its last
    /// manifest named), failing over on a missing, corrupt or slow copy. The pointer names it: missing
    /// everywhere is lost data, not an unknown version.
    pub(super) async fn read_manifest_top(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        version: &str,
        expected: Option<&ObjectRef>,
        root: &Store,
    ) -> Result<Manifest> {
        let path = crate::format::layout::manifest_path(ks, version);
        let mut stores = vec![root.clone()];
        for url in std::iter::once(roots.primary().url.clone()).chain(roots.fallbacks(ks)) {
            if !stores.iter().any(|r| r.url == url) {
                stores.extend(roots.replica(&url).ok());
            }
        }
        let valid = |b: &[u8]| match expected {
            Some(top) => top.matches(b),
            None => Manifest::parse(&path, b).is_ok_and(|m| m.keyspace == ks && m.version == version),
        };
        let missing = || Error::Missing { path: path.clone() };
        let bytes = if stores.len() == 1 {
            let bytes = match root.inner.get(&path).await {
                Ok(got) => got.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => return Err(missing()),
                Err(e) => return Err(e.into()),
            };
            if !valid(&bytes) {
                self.telemetry.checksum_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::cost::checksum_failure();
                return Err(Error::corrupt(&path, "not the manifest the pointer names (checksum mismatch)"));
            }
            bytes
        } else {
            // No hedging: a new store has no latency history to hedge by, and a version loads once.
            let config = FailoverConfig { hedging: false, ..self.failover.clone() };
            let stores = stores.iter().map(|r| r.inner.clone()).collect();
            let replicated = ReplicatedStore::new(stores, config).with_totals(self.telemetry.replicas.clone());
            replicated.get_verified(&path, GetOptions::default(), &valid).await.map_err(|e| match e {
                e if is_corrupt(&e) => Error::corrupt(&path, format!("no copy is the manifest the pointer names: {e}")),
                object_store::Error::NotFound { .. } => missing(),
                e => Error::Store(e),
            })?
        };
        fetcher.count(bytes.len() as u64);
        let m = Manifest::parse(&path, &bytes)?;
        if m.keyspace != ks || m.version != version {
            return Err(Error::corrupt(&path, format!("it is the manifest of {}/{}", m.keyspace, m.version)));
        }
        Ok(m)
    }

    /// The keyspace's pointer and the root it was read from: the primary, or, when the primary fails or does
    /// not answer within the attempt timeout, the first replica root with a copy. A replica's copy may lag
    /// the primary by a publish: stale, never partial. "No such keyspace" comes from the primary only.
    pub(super) async fn read_pointer(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
    ) -> Result<Option<(Current, Store)>> {
        let fallbacks = roots.fallbacks(ks);
        // With nowhere to fail over to, a slow primary is waited for.
        let attempt = if fallbacks.is_empty() { Duration::MAX } else { self.failover.attempt_timeout };
        let read = |root: Store| async move {
            fetcher.count(0);
            match tokio::time::timeout(attempt, pointer::read(root.inner.as_ref(), ks)).await {
                Ok(r) => r.map(|c| c.map(|c| (c, root))),
                Err(_) => Err(Error::Store(object_store::Error::Generic {
                    store: "pointer",
                    source: format!("{}: no answer within {attempt:?}", root.url).into(),
                })),
            }
        };
        let primary_error = match read(roots.primary().clone()).await {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        for url in fallbacks {
            let Ok(root) = roots.replica(&url) else { continue };
            if let Ok(Some(found)) = read(root).await {
                tracing::warn!(keyspace = ks, replica = %url, error = %primary_error, "primary root unreadable; using a replica's pointer");
                return Ok(Some(found));
            }
        }
        Err(primary_error)
    }
}
