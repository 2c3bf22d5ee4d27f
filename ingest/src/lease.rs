//! The lease of a checkpoint: a small object of its own (`_ingest/<id>.lease`) naming the run that owns the
//! checkpoint, renewed by a heartbeat every third of its length. It is kept apart from the progress record
//! (`_ingest/<id>.json`, which lists every finished shard) so that a heartbeat costs one small write
//! whatever the shard count, and never waits for the lock the shard writers use. Every write of it is
//! conditional on the ETag its owner last wrote: a run that took the lease over makes the old owner's next
//! write fail, and that owner stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use cairn_shared::format::layout;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::owner::{Owner, rfc3339};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub ingest_id: String,
    /// The version the owning run writes (so a lease left alone still names what it pinned).
    pub version: String,
    pub owner: Owner,
    /// RFC 3339: past it, gc treats the checkpoint as abandoned (renewed by every heartbeat).
    pub expires_at: String,
}

pub fn lease_path(ks: &str, ingest_id: &str) -> Path {
    Path::from(format!("{}/_ingest/{ingest_id}.lease", layout::keyspace_dir(ks)))
}

/// A lease this run holds, with the ETag its next write must match.
#[derive(Debug)]
pub struct Lease {
    path: Path,
    token: String,
    duration: Duration,
    expiry: Duration,
    state: tokio::sync::Mutex<(LeaseRecord, UpdateVersion)>,
}

impl Lease {
    pub(crate) fn held(
        path: Path,
        record: LeaseRecord,
        tag: UpdateVersion,
        duration: Duration,
        expiry: Duration,
    ) -> Lease {
        let token = record.owner.token.clone();
        Lease { path, token, duration, expiry, state: tokio::sync::Mutex::new((record, tag)) }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A record for `version` owned by run `token` now.
    pub fn record(ingest_id: &str, version: &str, token: &str, duration: Duration, expiry: Duration) -> LeaseRecord {
        LeaseRecord {
            ingest_id: ingest_id.to_string(),
            version: version.to_string(),
            owner: Owner::me(token, duration),
            expires_at: rfc3339(SystemTime::now() + expiry),
        }
    }

    /// Rewrites the lease with a fresh heartbeat if this run still holds it; [`IngestError::LostOwnership`]
    /// if another run took it over.
    pub async fn renew(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        let mut state = self.state.lock().await;
        let (record, tag) = &mut *state;
        let mut last = None;
        for _ in 0..4 {
            *record = Lease::record(&record.ingest_id, &record.version, &self.token, self.duration, self.expiry);
            let body = serde_json::to_vec(record).expect("lease serializes");
            match store.put_opts(&self.path, PutPayload::from(body), PutMode::Update(tag.clone()).into()).await {
                Ok(r) => {
                    *tag = UpdateVersion { e_tag: r.e_tag, version: r.version };
                    return Ok(());
                }
                // Refused, or unanswered: only the owner writes its token, so finding it means an earlier
                // write of ours applied; write again over it.
                Err(e) => {
                    match read(store, &self.path).await {
                        Ok(Some((Some(r), t))) if r.owner.token == self.token => *tag = t,
                        Ok(_) => return Err(self.lost(&record.version)),
                        Err(read_error) => tracing::warn!(error = %read_error, "could not re-read the lease"),
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.map_or_else(|| self.lost(&record.version), IngestError::from))
    }

    /// Names another version (the run started over), keeping the lease.
    pub async fn set_version(&self, store: &dyn ObjectStore, version: &str) -> Result<(), IngestError> {
        self.state.lock().await.0.version = version.to_string();
        self.renew(store).await
    }

    fn lost(&self, version: &str) -> IngestError {
        IngestError::LostOwnership(format!(
            "another run took over the checkpoint of version {version}; this run stopped and left everything to it"
        ))
    }

    /// Removes the lease if this run still holds it.
    pub async fn release(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        let state = self.state.lock().await;
        match read(store, &self.path).await? {
            Some((Some(r), _)) if r.owner.token != self.token => Err(self.lost(&state.0.version)),
            None => Ok(()),
            Some(_) => match store.delete(&self.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// The stored lease (None inside: present but unreadable) and its tag.
pub async fn read(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<(Option<LeaseRecord>, UpdateVersion)>, IngestError> {
    match store.get(path).await {
        Ok(got) => {
            let tag = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
            let bytes = got.bytes().await?;
            Ok(Some((serde_json::from_slice(&bytes).ok(), tag)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Set when the ingest future is dropped or done: writer threads and the heartbeat stop.
#[derive(Default)]
pub struct Stop {
    pub flag: Arc<AtomicBool>,
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
    }
}

/// Renews the lease every third of it until `stop`; aborted when dropped. A lease taken over sets `stop`.
pub fn heartbeat(lease: Arc<Lease>, primary: Arc<dyn ObjectStore>, stop: Arc<AtomicBool>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let every = lease.duration() / 3;
        loop {
            tokio::time::sleep(every).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = lease.renew(primary.as_ref()).await {
                tracing::warn!(error = %e, "checkpoint heartbeat failed");
                if matches!(e, IngestError::LostOwnership(_)) {
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }))
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
