//! `cairn serve FILE`: whether FILE must be published (again) into keyspace `default` before serving.
//!
//! Each time serve publishes FILE, or finds it published, it records FILE's fingerprint beside the
//! keyspace (`keyspace=default/_serve.json`, which gc leaves alone). A restart publishes FILE only when its
//! fingerprint differs from that record: what was done to the keyspace since (a delete or another delta, a
//! compaction, a rollback, another build) was meant, and a restart over the same FILE keeps it.
//!
//! Without a record of the keyspace's lineage (a store written before the record existed, or a keyspace
//! made by other means), FILE counts as published when the current version is a build of it or was made
//! from one (its oldest layer, or what a compaction compacted, followed back). When gc has collected a
//! version on that way, whether FILE changed cannot be told: nothing is published, and a warning says how to
//! publish FILE.

use std::path::Path;
use std::sync::Arc;

use cairn_ingest::IngestOptions;
use cairn_shared::Error;
use cairn_shared::format::{layout, manifest::Manifest};
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

pub const SERVE_KEYSPACE: &str = "default";

/// Versions followed from a version back to the build it derives from, at most.
const MAX_ANCESTRY: usize = 256;

/// What serve last published as FILE, or found published.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// FILE's content fingerprint then.
    fingerprint: String,
    /// The version that holds it; None while serve publishes it (written before the publish, so a serve
    /// stopped before it could write the version leaves a record that says "not known to be published").
    version: Option<String>,
    /// The keyspace's lineage (pointer.rs), so a keyspace deleted and made anew does not inherit the record;
    /// None from a pointer older than lineages, which matches whatever lineage its next switch gives it.
    lineage: Option<String>,
}

impl Record {
    fn of(&self, lineage: &Option<String>) -> bool {
        self.lineage.is_none() || self.lineage == *lineage
    }
}

/// Ingests `file` into keyspace `default` unless it has not changed since serve last published it there.
pub async fn ensure_ingested(file: &Path, store: &Store, allow_empty: bool) -> Result<(), Box<dyn std::error::Error>> {
    let files = cairn_ingest::list_sources(&[file.to_path_buf()], None).await?;
    let fp = tokio::task::spawn_blocking(move || cairn_ingest::fingerprint(&files)).await??;
    if let Some(cur) = pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await? {
        let (current, lineage) = (cur.pointer.version.clone(), cur.pointer.lineage.clone());
        let record = read_record(store).await.filter(|r| r.of(&lineage));
        if let Some(Record { fingerprint, version: Some(version), .. }) = &record
            && *fingerprint == fp
        {
            if *version == current {
                eprintln!("{} already ingested as version {current}; reusing it", file.display());
            } else {
                eprintln!(
                    "{} already ingested as version {version}, unchanged since; serving the current version {current} (changed since by a delta, compaction, rollback or another build)",
                    file.display(),
                );
            }
            return Ok(());
        }
        // No record, or one that FILE differs from or whose publish was not seen to end: what the current
        // version is made of decides (FILE published by other means, or by a serve stopped before its record).
        match origin(store, &current).await? {
            Origin::Build(version, built) if built == fp => {
                eprintln!(
                    "{} already ingested as version {version}; serving the current version {current}",
                    file.display()
                );
                write_record(store, &Record { fingerprint: fp, version: Some(version), lineage }).await;
                return Ok(());
            }
            Origin::Unknown if record.is_none() => {
                eprintln!(
                    "warning: cannot tell whether {} changed since it was published: the current version of keyspace {SERVE_KEYSPACE} ({current}) was made from versions gc has collected. Serving what is published; to publish {} again: cairn ingest {} -k {SERVE_KEYSPACE} --store {}",
                    file.display(),
                    file.display(),
                    file.display(),
                    store.url,
                );
                return Ok(());
            }
            _ => {}
        }
    }
    let lineage = |c: Option<pointer::Current>| c.and_then(|c| c.pointer.lineage);
    let before = lineage(pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await?);
    write_record(store, &Record { fingerprint: fp, version: None, lineage: before }).await;
    let mut opts = IngestOptions::new(file, SERVE_KEYSPACE, store.clone());
    opts.allow_empty = allow_empty;
    let report = cairn_ingest::ingest(opts, Arc::new(crate::progress::Bars::new())).await?;
    crate::admin::print_report(&report);
    let after = lineage(pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await.ok().flatten());
    // The fingerprint of what the ingest read, which FILE may have changed to since it was first taken.
    let done =
        Record { fingerprint: report.fingerprint.clone(), version: Some(report.version.clone()), lineage: after };
    write_record(store, &done).await;
    Ok(())
}

/// The record, if there is a readable one (one that is not is reported and ignored).
async fn read_record(store: &Store) -> Option<Record> {
    let path = layout::serve_record_path(SERVE_KEYSPACE);
    let bytes = match store.inner.get(&path).await {
        Ok(got) => got.bytes().await,
        Err(e) => Err(e),
    };
    match bytes {
        Ok(b) => serde_json::from_slice(&b)
            .inspect_err(|e| eprintln!("warning: {path} is not serve's record ({e}); ignoring it"))
            .ok(),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => {
            eprintln!("warning: could not read {path} ({e}); deciding without it");
            None
        }
    }
}

/// Writes the record. A failure is reported: a record left behind by it names an older publish, which a
/// restart checks against the current version before trusting it, or one not seen to end.
async fn write_record(store: &Store, record: &Record) {
    let path = layout::serve_record_path(SERVE_KEYSPACE);
    let body = serde_json::to_vec(record).expect("the record serializes");
    if let Err(e) = store.inner.put(&path, PutPayload::from(body)).await {
        eprintln!("warning: could not write {path} ({e}); the next start decides without it");
    }
}

/// What the current version was made of.
enum Origin {
    /// A build of inputs (its version and fingerprint): the version itself, or what it was made from.
    Build(String, String),
    /// A version on the way back was collected.
    Unknown,
}

/// The build of inputs `version` is, or was made from (its oldest layer, or what a compaction compacted,
/// followed back).
async fn origin(store: &Store, version: &str) -> Result<Origin, Error> {
    let mut at = version.to_string();
    for _ in 0..MAX_ANCESTRY {
        let m = match Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, &at).await {
            Ok(m) => m,
            Err(Error::VersionNotFound { .. }) => return Ok(Origin::Unknown),
            Err(e) => return Err(e),
        };
        if m.is_build_of_inputs() {
            return Ok(Origin::Build(m.version, m.source.fingerprint));
        }
        at = match (m.layers.last(), m.compacted_from()) {
            (Some(base), _) => base.version.clone(),
            (None, Some(from)) => from.to_string(),
            (None, None) => return Ok(Origin::Unknown),
        };
    }
    Ok(Origin::Unknown)
}
