//! Warm version switches (`CAIRN_WARM_SWITCH`): what a pointer refresh does before readers move to a newly
//! published version, so a publish under load causes no miss storm (docs/OPERATIONS.md).

use std::sync::Arc;

use crate::query::engine::Engine;
use crate::query::layer::Layer;
use crate::query::version::LoadedVersion;

/// Lookups a switch's warming keeps in flight.
const WARM_CONCURRENCY: usize = 32;

impl Engine {
    /// Before readers move from `old` to `new`: the new layers' manifest groups `old` had loaded, then a
    /// lookup in `new` of each key recently asked of `old` (its group, piece list, index piece and block),
    /// within `CAIRN_WARM_SWITCH` bytes and its timeout, and ended a tenth of a TTL before `until`, when
    /// other readers would stop answering from `old` and wait for this. Errors are left to the lookups that
    /// follow.
    pub(super) async fn warm_switch(
        &self,
        old: Arc<LoadedVersion>,
        new: Arc<LoadedVersion>,
        until: std::time::Instant,
    ) {
        use futures::StreamExt;
        let budget = self.config.warm_switch_bytes;
        let left =
            until.saturating_duration_since(std::time::Instant::now()).saturating_sub(self.config.pointer_ttl / 10);
        let limit = self.config.warm_switch_timeout.min(self.config.pointer_ttl / 2).min(left);
        if budget == 0 || limit.is_zero() {
            return;
        }
        let (started, before) = (std::time::Instant::now(), self.fetcher.totals().1);
        let spent = || self.fetcher.totals().1.saturating_sub(before);
        let keys = old.recent.keys();
        let warmed = std::sync::atomic::AtomicU64::new(0);
        let work = async {
            let fresh = new.layers.iter().filter(|l| !old.layers.iter().any(|o| Arc::ptr_eq(o, l)));
            let groups: Vec<(&Arc<Layer>, usize)> = fresh
                .flat_map(|l| {
                    let had = |g: &usize| old.top().groups.get(*g).is_some_and(|c| c.get().is_some());
                    (0..l.groups.len()).filter(had).map(move |g| (l, g))
                })
                .collect();
            futures::stream::iter(groups)
                .for_each_concurrent(WARM_CONCURRENCY, |(l, g)| async move {
                    if spent() < budget {
                        let _ = self.resolver.group(&self.fetcher, l, g).await;
                    }
                })
                .await;
            futures::stream::iter(&keys)
                .for_each_concurrent(WARM_CONCURRENCY, |k| {
                    let (new, warmed) = (&new, &warmed);
                    async move {
                        if spent() < budget && self.get_in(new, k).await.is_ok() {
                            warmed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
                .await;
        };
        let finished = tokio::time::timeout(limit, work).await.is_ok();
        let warmed = warmed.into_inner();
        self.telemetry.switched(warmed, spent(), finished);
        tracing::info!(
            keyspace = %new.manifest().keyspace, from = %old.manifest().version, to = %new.manifest().version,
            keys = warmed, bytes = spent(), ms = started.elapsed().as_millis() as u64, finished,
            "warmed a version switch"
        );
    }
}
