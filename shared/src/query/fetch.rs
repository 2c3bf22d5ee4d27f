//! Reads of a version's objects that are verified before anything uses them: from the first intact copy when
//! the version is replicated, else from the primary (a mismatch is then a corruption error, never an
//! answer). Every read is counted (process totals and the request's cost).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use object_store::GetOptions;
use object_store::path::Path;

use crate::caches::tier::{self, CacheTier};
use crate::counter::Counter;
use crate::error::{Error, Result};
use crate::query::layer::Layer;
use crate::query::telemetry::EngineTelemetry;
use crate::stores::replicated::{Validator, is_corrupt};

/// How a read is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// A block, an index piece, a manifest group: small, on a lookup's path; hedged.
    Small,
    /// A whole shard (a promotion): not hedged, and kept out of the latency figures hedging is judged by.
    Bulk,
}

pub(crate) struct Fetcher {
    gets: Counter,
    bytes: Counter,
    telemetry: Arc<EngineTelemetry>,
    /// Cache tiers tried in order before the store: the local disk, then the tier engines share.
    tiers: Vec<Arc<dyn CacheTier>>,
}

impl Fetcher {
    pub(crate) fn new(telemetry: Arc<EngineTelemetry>, tiers: Vec<Arc<dyn CacheTier>>) -> Fetcher {
        Fetcher { gets: Counter::default(), bytes: Counter::default(), telemetry, tiers }
    }

    pub(crate) fn tiers(&self) -> &[Arc<dyn CacheTier>] {
        &self.tiers
    }

    /// [`Self::fetch_store`], through the cache tiers: an entry is used only if `valid` accepts it (one that
    /// does not is counted, dropped, and replaced by the right bytes); what a later tier or the store answers
    /// is put in the tiers before it.
    pub(crate) async fn fetch(
        &self,
        v: &Layer,
        path: &Path,
        opts: GetOptions,
        valid: Validator<'_>,
        kind: ReadKind,
    ) -> Result<Bytes> {
        if self.tiers.is_empty() {
            return self.fetch_store(v, path, opts, valid, kind).await;
        }
        let key = tier::key(path.as_ref(), &range_name(opts.range.as_ref()));
        for (i, t) in self.tiers.iter().enumerate() {
            if let Some(bytes) = t.get(&key).await {
                if valid(&bytes) {
                    self.tiers[..i].iter().for_each(|earlier| earlier.put(&key, bytes.clone()));
                    return Ok(bytes);
                }
                t.poisoned(&key);
                tracing::warn!(%path, tier = t.name(), "a cache tier's entry did not verify: read past it");
            }
        }
        let bytes = self.fetch_store(v, path, opts, valid, kind).await?;
        self.tiers.iter().for_each(|t| t.put(&key, bytes.clone()));
        Ok(bytes)
    }

    /// Counts one read of `bytes` bytes (process totals and the request's cost).
    pub(crate) fn count(&self, bytes: u64) {
        self.gets.add(1);
        self.bytes.add(bytes);
        crate::cost::get(bytes);
    }

    /// (reads, bytes) so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.gets.get(), self.bytes.get())
    }

    /// The bytes `opts` names of object `path` of version `v`, which `valid` must accept, from the store.
    async fn fetch_store(
        &self,
        v: &Layer,
        path: &Path,
        opts: GetOptions,
        valid: Validator<'_>,
        kind: ReadKind,
    ) -> Result<Bytes> {
        let missing = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Error::Missing { path: path.clone() },
            e => Error::Store(e),
        };
        let bytes = match &v.replicated {
            Some(r) => {
                let read = match kind {
                    ReadKind::Small => r.get_verified(path, opts, valid).await,
                    ReadKind::Bulk => r.get_verified_bulk(path, opts, valid).await,
                };
                read.map_err(|e| match e {
                    e if is_corrupt(&e) => Error::corrupt(path, format!("no intact copy could be read: {e}")),
                    e => missing(e),
                })?
            }
            None => {
                let bytes = v.shard_store.get_opts(path, opts).await.map_err(missing)?.bytes().await?;
                if !valid(&bytes) {
                    self.telemetry.checksum_failures.fetch_add(1, Relaxed);
                    crate::cost::checksum_failure();
                    return Err(Error::corrupt(path, "checksum mismatch"));
                }
                bytes
            }
        };
        self.count(bytes.len() as u64);
        Ok(bytes)
    }
}

/// A range as the tiers' keys name it.
fn range_name(range: Option<&object_store::GetRange>) -> String {
    match range {
        None => "all".into(),
        Some(object_store::GetRange::Bounded(r)) => format!("{}-{}", r.start, r.end),
        Some(object_store::GetRange::Offset(o)) => format!("{o}-"),
        Some(object_store::GetRange::Suffix(n)) => format!("-{n}"),
    }
}
