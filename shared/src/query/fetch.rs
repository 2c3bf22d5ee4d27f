//! Reads of a version's objects that are verified before anything uses them: from the first intact copy when
//! the version is replicated, else from the primary (a mismatch is then a corruption error, never an
//! answer). Every read is counted (process totals and the request's cost).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use object_store::GetOptions;
use object_store::path::Path;

use crate::caches::shared_tier::SharedTier;
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
    /// The cache tier engines share, tried before the store (caches/shared_tier.rs).
    shared: Option<Arc<SharedTier>>,
}

impl Fetcher {
    pub(crate) fn new(telemetry: Arc<EngineTelemetry>, shared: Option<Arc<SharedTier>>) -> Fetcher {
        Fetcher { gets: Counter::default(), bytes: Counter::default(), telemetry, shared }
    }

    pub(crate) fn shared(&self) -> Option<&Arc<SharedTier>> {
        self.shared.as_ref()
    }

    /// [`Self::fetch_store`], through the shared tier when there is one: an entry is used only if `valid`
    /// accepts it (one that does not is counted, and replaced by the store's bytes); what the store answers
    /// is put in the tier.
    pub(crate) async fn fetch(
        &self,
        v: &Layer,
        path: &Path,
        opts: GetOptions,
        valid: Validator<'_>,
        kind: ReadKind,
    ) -> Result<Bytes> {
        let Some(tier) = &self.shared else { return self.fetch_store(v, path, opts, valid, kind).await };
        let key = SharedTier::key(path.as_ref(), &range_name(opts.range.as_ref()));
        if let Some(bytes) = tier.get(&key).await {
            if valid(&bytes) {
                return Ok(bytes);
            }
            tier.poisoned();
            tracing::warn!(%path, "a shared-cache entry did not verify: read from the store instead");
        }
        let bytes = self.fetch_store(v, path, opts, valid, kind).await?;
        tier.put(key, bytes.clone());
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

/// A range as the shared tier's keys name it.
fn range_name(range: Option<&object_store::GetRange>) -> String {
    match range {
        None => "all".into(),
        Some(object_store::GetRange::Bounded(r)) => format!("{}-{}", r.start, r.end),
        Some(object_store::GetRange::Offset(o)) => format!("{o}-"),
        Some(object_store::GetRange::Suffix(n)) => format!("-{n}"),
    }
}
