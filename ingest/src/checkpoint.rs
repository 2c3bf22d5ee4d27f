//! Ingest checkpoints live in the store next to the keyspace (not on the machine), so a crashed ingest can be
//! resumed from anywhere: rerunning the same command on the same input finds it by the ingest id (a hash of
//! the input fingerprint and every option that shapes the output) and skips the shards it lists.
//!
//! A checkpoint is two objects: the progress record (`_ingest/<id>.json`: the version, what it is built
//! from, every finished shard), saved after every 1% of the shards, and the lease (`_ingest/<id>.lease`,
//! lease.rs) that says which run owns it, renewed by a heartbeat. A run takes a checkpoint by taking its
//! lease (a conditional write, only when the owner is gone: owner.rs) and then rewriting the progress record
//! with its token, so a run that lost it finds its next write of either refused and stops without touching
//! anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_shared::format::layout;
use cairn_shared::format::manifest::ShardEntry;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::lease::{self, Lease, lease_path};
use crate::listing::Stamp;
use crate::owner::{LiveRun, Owner, rfc3339};

/// How long an owner's lease lasts after its last heartbeat; heartbeats come every third of it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// After this long without a heartbeat a checkpoint is abandoned: `cairn gc` deletes it and stops keeping
/// its version.
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub ingest_id: String,
    pub keyspace: String,
    /// The version this ingest writes; a resumed run keeps it so finished shards stay valid.
    pub version: String,
    /// The version that was current when the ingest started: publishing fails if someone else published
    /// meanwhile (one winner per race).
    pub base_version: Option<String>,
    pub started_at: String,
    /// The run that wrote this record (how a write whose answer was lost is recognised as its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
    /// That run, as of this write: what older builds (which know no lease) judge the owner by. Its
    /// heartbeat is only as fresh as the last save; the lease's is the one that counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// RFC 3339: past it (and past the lease's), gc treats the checkpoint as abandoned.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Shards whose objects are written under every root.
    pub done: BTreeMap<u32, ShardEntry>,
    /// The inputs' fingerprint when the version was started: a rerun over changed inputs starts over.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The placement its shards were written with: a rerun that would place keys otherwise starts over.
    #[serde(default)]
    pub placement: Option<cairn_shared::format::ring::PlacementSpec>,
    /// The inputs as listed then (up to [`STAMPS_KEPT`]), to tell a rerun which of them changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Stamp>,
}

/// Inputs whose stamps a checkpoint keeps (beyond, only the fingerprint: the checkpoint is rewritten often).
pub const STAMPS_KEPT: usize = 1000;

/// A checkpoint this run owns: the progress record with the ETag its next write must match, and the lease.
#[derive(Debug)]
pub struct Owned {
    pub ckpt: Checkpoint,
    tag: UpdateVersion,
    token: String,
    expiry: Duration,
    lease: Arc<Lease>,
}

impl Checkpoint {
    /// Reads a checkpoint without taking it (gc, tests).
    pub async fn load(store: &dyn ObjectStore, ks: &str, ingest_id: &str) -> Result<Option<Checkpoint>, IngestError> {
        Ok(read(store, ks, ingest_id).await?.and_then(|(c, _)| c))
    }

    /// Takes the ingest's checkpoint: the existing one if its owner is gone, or a new one made by `fresh`.
    /// Fails with [`IngestError::Busy`] while another run owns it.
    pub async fn acquire(
        store: &dyn ObjectStore,
        ks: &str,
        ingest_id: &str,
        fresh: impl Fn() -> Checkpoint,
        lease: Duration,
        expiry: Duration,
    ) -> Result<(Owned, LiveRun), IngestError> {
        let live = LiveRun::start();
        let lpath = lease_path(ks, ingest_id);
        // Lease writes the store failed (not a rival's): a few, then the store's error.
        let mut failed: Option<object_store::Error> = None;
        let mut failures = 0;
        for _ in 0..8 {
            let held = lease::read(store, &lpath).await?;
            let progress = read(store, ks, ingest_id).await?;
            let resumable =
                progress.as_ref().and_then(|(c, _)| c.clone()).filter(|c| c.ingest_id == ingest_id && c.keyspace == ks);
            // The lease names the owner; the progress record names one too (for older builds, which know
            // no lease): held while either is alive.
            let holders = [
                held.as_ref().and_then(|(r, _)| r.as_ref()).map(|r| &r.owner),
                resumable.as_ref().and_then(|c| c.owner.as_ref()),
            ];
            if let Some(why) = holders.into_iter().flatten().find_map(|o| o.alive(SystemTime::now())) {
                return Err(IngestError::Busy(format!(
                    "another run of this ingest is in progress ({why}); nothing was changed. Rerun once it \
                     ends, or once its lease runs out if it crashed"
                )));
            }
            // Abandoned: take it over, finished shards and all (an unreadable one, or a lease left without its
            // record: start over).
            let ckpt = resumable.unwrap_or_else(&fresh);
            let record = Lease::record(ingest_id, &ckpt.version, &live.token, lease, expiry);
            let body = serde_json::to_vec(&record).expect("lease serializes");
            let mode = held.as_ref().map_or(PutMode::Create, |(_, tag)| PutMode::Update(tag.clone()));
            let lease_tag = match store.put_opts(&lpath, PutPayload::from(body), mode.into()).await {
                Ok(r) => UpdateVersion { e_tag: r.e_tag, version: r.version },
                // Someone else took it first, or our write applied and its answer was lost: the stored owner
                // tells which.
                Err(e) => {
                    let failure = store_failure(e);
                    match lease::read(store, &lpath).await? {
                        Some((Some(r), tag)) if r.owner.token == live.token => tag,
                        // The lease is as it was before the write (none, or the abandoned one): the write did not
                        // land and nobody else acted, so the store failed it. Looping on that reported a race
                        // ("keeps changing hands") that never was.
                        now if failure.is_some() && now.as_ref().map(|(_, t)| t) == held.as_ref().map(|(_, t)| t) => {
                            failures += 1;
                            if failures == STORE_TRIES {
                                return Err(failure.map_or_else(changing_hands, IngestError::from));
                            }
                            failed = failure;
                            tokio::time::sleep(Duration::from_millis(100 << failures)).await;
                            continue;
                        }
                        _ => continue,
                    }
                }
            };
            let lease = Arc::new(Lease::held(lpath.clone(), record, lease_tag, lease, expiry));
            let tag = progress.map(|(_, tag)| tag);
            let mut owned = Owned { ckpt, tag: no_tag(), token: live.token.clone(), expiry, lease };
            if let Err(e) = owned.take_progress(store, tag).await {
                // The lease names a run that will never write: let the next run have it at once.
                let _ = owned.lease.release(store).await;
                return Err(e);
            }
            return Ok((owned, live));
        }
        Err(failed.map_or_else(changing_hands, IngestError::from))
    }
}

/// Lease writes a store fails before an acquire gives up with its error.
const STORE_TRIES: u32 = 3;

/// What a run that kept losing the checkpoint to rivals' writes reports.
fn changing_hands() -> IngestError {
    IngestError::Busy("the ingest's checkpoint keeps changing hands; nothing was changed".into())
}

/// `e` unless it is a conditional write's refusal (a rival's write came first).
fn store_failure(e: object_store::Error) -> Option<object_store::Error> {
    match e {
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => None,
        e => Some(e),
    }
}

fn no_tag() -> UpdateVersion {
    UpdateVersion { e_tag: None, version: None }
}

impl Owned {
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The lease this run holds (what the heartbeat renews).
    pub fn lease(&self) -> Arc<Lease> {
        self.lease.clone()
    }

    /// The progress record's bytes, as this run writes them now (its owner too: older builds read only it).
    fn stamp(&mut self) -> Vec<u8> {
        self.ckpt.writer = Some(self.token.clone());
        self.ckpt.owner = Some(Owner::me(&self.token, self.lease.duration()));
        self.ckpt.expires_at = Some(rfc3339(SystemTime::now() + self.expiry));
        // Compact: with many shards this record is most of what a checkpoint writes.
        serde_json::to_vec(&self.ckpt).expect("checkpoint serializes")
    }

    /// Writes the progress record over the one found when the lease was taken (`found`: its tag; None: there
    /// was none), so a run that lost the checkpoint cannot save over it. A save of that run in between is
    /// taken in (its shards are of this version) and written over.
    async fn take_progress(
        &mut self,
        store: &dyn ObjectStore,
        found: Option<UpdateVersion>,
    ) -> Result<(), IngestError> {
        let path = layout::checkpoint_path(&self.ckpt.keyspace, &self.ckpt.ingest_id);
        let mut mode = found.map_or(PutMode::Create, PutMode::Update);
        let mut failed = None;
        for _ in 0..4 {
            let body = self.stamp();
            match store.put_opts(&path, PutPayload::from(body), mode.clone().into()).await {
                Ok(r) => {
                    self.tag = UpdateVersion { e_tag: r.e_tag, version: r.version };
                    return Ok(());
                }
                Err(e) => match read(store, &self.ckpt.keyspace, &self.ckpt.ingest_id).await? {
                    Some((Some(c), tag)) if c.writer.as_deref() == Some(self.token.as_str()) => {
                        self.tag = tag;
                        return Ok(());
                    }
                    Some((c, tag)) => {
                        if let Some(c) = c.filter(|c| c.version == self.ckpt.version) {
                            self.ckpt.done.extend(c.done);
                        }
                        failed = store_failure(e);
                        mode = PutMode::Update(tag);
                    }
                    None => {
                        failed = store_failure(e);
                        mode = PutMode::Create;
                    }
                },
            }
        }
        // The last write failed in the store (a full disk, a refusal), not to a rival: that is the error.
        Err(failed.map_or_else(changing_hands, IngestError::from))
    }

    /// Writes the progress record (and renews its expiry) if this run still owns it;
    /// [`IngestError::LostOwnership`] if another run took it over.
    pub async fn save(&mut self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        let path = layout::checkpoint_path(&self.ckpt.keyspace, &self.ckpt.ingest_id);
        let mut last = None;
        for _ in 0..4 {
            let body = self.stamp();
            let mode = PutMode::Update(self.tag.clone());
            match store.put_opts(&path, PutPayload::from(body), mode.into()).await {
                Ok(r) => {
                    self.tag = UpdateVersion { e_tag: r.e_tag, version: r.version };
                    return Ok(());
                }
                Err(e) => {
                    // Refused, or unanswered: only the owner writes its token, so finding it means the
                    // checkpoint is still ours (an earlier write of ours applied); write again over it.
                    match read(store, &self.ckpt.keyspace, &self.ckpt.ingest_id).await {
                        Ok(Some((Some(c), tag))) if c.writer.as_deref() == Some(self.token.as_str()) => self.tag = tag,
                        Ok(_) => return Err(self.lost()),
                        Err(read_error) => tracing::warn!(error = %read_error, "could not re-read the checkpoint"),
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.map_or_else(|| self.lost(), IngestError::from))
    }

    /// Replaces the checkpoint with a new run's (`fresh`, a new version), keeping this run's ownership. The
    /// interrupted version is never published; gc collects its objects.
    pub async fn start_over(&mut self, fresh: Checkpoint, store: &dyn ObjectStore) -> Result<(), IngestError> {
        self.ckpt = fresh;
        self.lease.set_version(store, &self.ckpt.version).await?;
        self.save(store).await
    }

    fn lost(&self) -> IngestError {
        IngestError::LostOwnership(format!(
            "another run took over the checkpoint of version {}; this run stopped and left everything to it",
            self.ckpt.version
        ))
    }

    /// Removes the checkpoint (its progress record, then its lease) if this run still owns it.
    pub async fn release(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        match read(store, &self.ckpt.keyspace, &self.ckpt.ingest_id).await? {
            Some((Some(c), _)) if c.writer.as_deref() != Some(self.token.as_str()) => return Err(self.lost()),
            None => {}
            Some(_) => match store.delete(&layout::checkpoint_path(&self.ckpt.keyspace, &self.ckpt.ingest_id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        self.lease.release(store).await
    }
}

/// The stored progress record (None inside: present but unreadable) and its tag.
async fn read(
    store: &dyn ObjectStore,
    ks: &str,
    ingest_id: &str,
) -> Result<Option<(Option<Checkpoint>, UpdateVersion)>, IngestError> {
    let path = layout::checkpoint_path(ks, ingest_id);
    match store.get(&path).await {
        Ok(got) => {
            let tag = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
            let bytes = got.bytes().await?;
            Ok(Some((serde_json::from_slice(&bytes).ok(), tag)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
