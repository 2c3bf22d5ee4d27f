//! `cairn serve FILE`: whether FILE must be published (again) into keyspace `default` before serving.
//!
//! FILE is published when its content fingerprint differs from the build it was last published as: the
//! newest (by version id, which sorts by when a build began) of the builds the pointer's versions derive
//! from, each followed back through its oldest layer or what a compaction compacted. What was done to the
//! keyspace since that build (a delete or another delta, a compaction, a rollback) was meant, and a restart
//! over the same FILE keeps it. When gc has collected a version on the way back, so that a newer build may
//! be out of sight, nothing is published: the published version is served, with a warning that says how to
//! publish FILE.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cairn_ingest::IngestOptions;
use cairn_shared::Error;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;

pub const SERVE_KEYSPACE: &str = "default";

/// Versions followed from a version back to the build it derives from, at most.
const MAX_ANCESTRY: usize = 256;

/// Ingests `file` into keyspace `default` unless it has not changed since it was last published there.
pub async fn ensure_ingested(file: &Path, store: &Store, allow_empty: bool) -> Result<(), Box<dyn std::error::Error>> {
    let files = cairn_ingest::list_sources(&[file.to_path_buf()], None).await?;
    let fp = tokio::task::spawn_blocking(move || cairn_ingest::fingerprint(&files)).await??;
    if let Some(cur) = pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await? {
        let current = cur.pointer.version.clone();
        let mut ancestry = Ancestry { store, read: HashMap::new() };
        let top = ancestry.node(&current).await?;
        if top.as_ref().is_some_and(|n| n.fingerprint == fp) {
            eprintln!("{} already ingested as version {current}; reusing it", file.display());
            return Ok(());
        }
        match ancestry.last_build(&cur.pointer).await? {
            Some(built) if built.fingerprint == fp => {
                eprintln!(
                    "{} already ingested as version {}, unchanged since; serving the current version {current} (changed since by a delta, compaction or rollback)",
                    file.display(),
                    built.version,
                );
                return Ok(());
            }
            Some(_) => {}
            None => {
                eprintln!(
                    "warning: cannot tell whether {} changed since it was published: the build the current version of keyspace {SERVE_KEYSPACE} ({current}) comes from was collected by gc. Serving what is published; to publish {} again: cairn ingest {} -k {SERVE_KEYSPACE} --store {}",
                    file.display(),
                    file.display(),
                    file.display(),
                    store.url,
                );
                return Ok(());
            }
        }
    }
    let mut opts = IngestOptions::new(file, SERVE_KEYSPACE, store.clone());
    opts.allow_empty = allow_empty;
    let report = cairn_ingest::ingest(opts, Arc::new(crate::progress::Bars::new())).await?;
    crate::admin::print_report(&report);
    Ok(())
}

/// What the check needs of a version's manifest.
#[derive(Clone)]
struct Node {
    version: String,
    fingerprint: String,
    /// A build of inputs, not made from other versions.
    build: bool,
    /// The version it was made from: its oldest layer, or what it compacted.
    from: Option<String>,
}

/// Where a version's ancestry leads.
enum Origin {
    Build(Node),
    /// A version on the way is gone: the build it came from is older than this version, and unknown.
    OlderThan(String),
}

/// Manifests read while following versions back, each read once.
struct Ancestry<'a> {
    store: &'a Store,
    read: HashMap<String, Option<Node>>,
}

impl Ancestry<'_> {
    /// The version's manifest, as far as the check needs it; None when it is gone.
    async fn node(&mut self, v: &str) -> Result<Option<Node>, Error> {
        if let Some(n) = self.read.get(v) {
            return Ok(n.clone());
        }
        let node = match Manifest::read_top(self.store.inner.as_ref(), SERVE_KEYSPACE, v).await {
            Ok(m) => Some(Node {
                build: m.is_build_of_inputs(),
                from: m.layers.last().map(|l| l.version.clone()).or(m.compacted_from().map(str::to_string)),
                fingerprint: m.source.fingerprint,
                version: m.version,
            }),
            Err(Error::VersionNotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        self.read.insert(v.to_string(), node.clone());
        Ok(node)
    }

    async fn origin(&mut self, v: &str) -> Result<Origin, Error> {
        let mut at = v.to_string();
        for _ in 0..MAX_ANCESTRY {
            let Some(node) = self.node(&at).await? else { return Ok(Origin::OlderThan(at)) };
            if node.build {
                return Ok(Origin::Build(node));
            }
            match node.from {
                Some(from) => at = from,
                None => return Ok(Origin::OlderThan(at)),
            }
        }
        Ok(Origin::OlderThan(at))
    }

    /// The newest build the versions `p` names (current, previous, history) derive from; None when an
    /// ancestry that breaks at a collected version may hide a newer one.
    async fn last_build(&mut self, p: &pointer::Pointer) -> Result<Option<Node>, Error> {
        let mut named: Vec<&String> =
            std::iter::once(&p.version).chain(&p.previous).chain(p.history.iter().map(|h| &h.version)).collect();
        named.sort_unstable();
        named.dedup();
        let (mut best, mut floor): (Option<Node>, Option<String>) = (None, None);
        for v in named {
            // A named version gc collected is not what the keyspace holds now (a version it is made from would
            // have been kept, or shows as a broken ancestry below): it tells nothing.
            if self.node(v).await?.is_none() {
                continue;
            }
            match self.origin(v).await? {
                Origin::Build(b) if best.as_ref().is_none_or(|x| b.version > x.version) => best = Some(b),
                Origin::Build(_) => {}
                Origin::OlderThan(at) if floor.as_ref().is_none_or(|f| at > *f) => floor = Some(at),
                Origin::OlderThan(_) => {}
            }
        }
        Ok(match (best, floor) {
            (Some(b), Some(f)) if b.version < f => None,
            (best, _) => best,
        })
    }
}
