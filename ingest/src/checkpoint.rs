//! Ingest checkpoints live in the store next to the keyspace (not on the machine), so a crashed ingest can be
//! resumed from anywhere: rerunning the same command on the same input finds it by the ingest id (a hash of
//! the input fingerprint and every option that shapes the output) and skips the shards it lists.
//!
//! A checkpoint has one owner at a time, so two runs of one ingest (a CI retry, a rerun on another machine,
//! two `cairn serve FILE` starting together) never both act on its version: a run creates it with a
//! conditional create, and every later write of it is conditional on the ETag its owner last wrote. The
//! owner renews a lease by rewriting it (the heartbeat); another run takes it over only when the owner is
//! provably gone (a process of this host that no longer exists, or a run of this process that ended) or
//! its lease ran out. A run that finds its checkpoint taken over stops without touching anything.

use std::collections::{BTreeMap, HashSet};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use cairn_shared::layout;
use cairn_shared::manifest::ShardEntry;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::listing::Stamp;

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
    /// Who may write this checkpoint and the version's objects.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// RFC 3339: past it, gc treats the checkpoint as abandoned (renewed by every save).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Shards whose objects are written under every root.
    pub done: BTreeMap<u32, ShardEntry>,
    /// The inputs' fingerprint when the version was started: a rerun over changed inputs starts over.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// The placement its shards were written with: a rerun that would place keys otherwise starts over.
    #[serde(default)]
    pub placement: Option<cairn_shared::ring::PlacementSpec>,
    /// The inputs as listed then (up to [`STAMPS_KEPT`]), to tell a rerun which of them changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Stamp>,
}

/// Inputs whose stamps a checkpoint keeps (beyond, only the fingerprint: the checkpoint is rewritten often).
pub const STAMPS_KEPT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique per run.
    pub token: String,
    /// Host name and boot id: a pid means something only on the same boot of the same host.
    pub host: String,
    pub pid: u32,
    pub heartbeat_at: String,
    pub lease_ms: u64,
}

/// Runs of this process that are still going (tokens): a checkpoint owned by this process but by no live
/// run belongs to one whose future was dropped.
static LIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Host name, boot id and pid namespace: where a pid means one process. Containers sharing a host name
/// (host networking) have their own pid namespace, so they judge each other by the lease, not by pid.
fn this_host() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|l| l.display().to_string()).unwrap_or_default();
    format!("{}/{}/{pid_ns}", read("/proc/sys/kernel/hostname"), read("/proc/sys/kernel/random/boot_id"))
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Owner {
    /// Why this owner may still be running (None: it is gone, its checkpoint may be taken over).
    fn alive(&self, now: SystemTime) -> Option<String> {
        let lease_end = parse_time(&self.heartbeat_at).map(|t| t + Duration::from_millis(self.lease_ms));
        if self.host == this_host() {
            if self.pid == std::process::id() {
                let live = LIVE.lock().expect("live runs").contains(&self.token);
                return live.then(|| "another run in this process holds it".to_string());
            }
            return process_exists(self.pid).then(|| format!("process {} on this host holds it", self.pid));
        }
        match lease_end {
            Some(end) if end > now => Some(format!(
                "pid {} on host {} holds it; its lease ends in {:.0?} unless renewed",
                self.pid,
                self.host.split('/').next().unwrap_or("?"),
                end.duration_since(now).unwrap_or_default()
            )),
            _ => None,
        }
    }
}

/// A checkpoint this run owns, with the ETag its next write must match.
#[derive(Debug)]
pub struct Owned {
    pub ckpt: Checkpoint,
    tag: UpdateVersion,
    token: String,
    lease: Duration,
    expiry: Duration,
}

/// Keeps a run's token live while its ingest future exists; dropped (a crash, a cancelled request), the
/// checkpoint can be taken over at once by another run of this process.
#[derive(Debug)]
pub struct LiveRun {
    token: String,
}

impl Drop for LiveRun {
    fn drop(&mut self) {
        LIVE.lock().expect("live runs").remove(&self.token);
    }
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
        let token = layout::new_version();
        LIVE.lock().expect("live runs").insert(token.clone());
        let live = LiveRun { token: token.clone() };
        let path = layout::checkpoint_path(ks, ingest_id);
        for _ in 0..8 {
            let (mut ckpt, mode) = match read(store, ks, ingest_id).await? {
                None => (fresh(), PutMode::Create),
                Some((existing, tag)) => {
                    let resumable = existing.filter(|c| c.ingest_id == ingest_id && c.keyspace == ks);
                    if let Some(why) =
                        resumable.as_ref().and_then(|c| c.owner.as_ref()).and_then(|o| o.alive(SystemTime::now()))
                    {
                        return Err(IngestError::Busy(format!(
                            "another run of this ingest is in progress ({why}); nothing was changed. Rerun once \
                             it ends, or after its lease expires if it crashed on another machine"
                        )));
                    }
                    // Abandoned: take it over, finished shards and all (an unreadable one: start over).
                    (resumable.unwrap_or_else(&fresh), PutMode::Update(tag))
                }
            };
            let mut owned = Owned {
                tag: UpdateVersion { e_tag: None, version: None },
                token: token.clone(),
                lease,
                expiry,
                ckpt: {
                    ckpt.owner = None;
                    ckpt
                },
            };
            let body = owned.stamp();
            match store.put_opts(&path, PutPayload::from(body), mode.into()).await {
                Ok(r) => {
                    owned.tag = UpdateVersion { e_tag: r.e_tag, version: r.version };
                    return Ok((owned, live));
                }
                // Someone else created or took it first, or our write applied and its answer was lost: the
                // stored owner tells which.
                Err(_) => {
                    if let Some((Some(c), tag)) = read(store, ks, ingest_id).await?
                        && c.owner.as_ref().is_some_and(|o| o.token == token)
                    {
                        owned.tag = tag;
                        owned.ckpt.done = c.done;
                        return Ok((owned, live));
                    }
                }
            }
        }
        Err(IngestError::Busy("the ingest's checkpoint keeps changing hands; nothing was changed".into()))
    }
}

impl Owned {
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The checkpoint's bytes with a fresh heartbeat and expiry.
    fn stamp(&mut self) -> Vec<u8> {
        let now = SystemTime::now();
        self.ckpt.owner = Some(Owner {
            token: self.token.clone(),
            host: this_host(),
            pid: std::process::id(),
            heartbeat_at: rfc3339(now),
            lease_ms: self.lease.as_millis() as u64,
        });
        self.ckpt.expires_at = Some(rfc3339(now + self.expiry));
        serde_json::to_vec_pretty(&self.ckpt).expect("checkpoint serializes")
    }

    /// Writes the checkpoint (renewing the lease) if this run still owns it; [`IngestError::LostOwnership`]
    /// if another run took it over.
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
                        Ok(Some((Some(c), tag))) if c.owner.as_ref().is_some_and(|o| o.token == self.token) => {
                            self.tag = tag;
                        }
                        Ok(_) => return Err(self.lost()),
                        Err(read_error) => {
                            tracing::warn!(error = %read_error, "could not re-read the checkpoint");
                        }
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
        self.ckpt = Checkpoint { owner: self.ckpt.owner.clone(), ..fresh };
        self.save(store).await
    }

    fn lost(&self) -> IngestError {
        IngestError::LostOwnership(format!(
            "another run took over the checkpoint of version {}; this run stopped and left everything to it",
            self.ckpt.version
        ))
    }

    /// Removes the checkpoint if this run still owns it.
    pub async fn release(&self, store: &dyn ObjectStore) -> Result<(), IngestError> {
        match read(store, &self.ckpt.keyspace, &self.ckpt.ingest_id).await? {
            Some((Some(c), _)) if c.owner.as_ref().is_some_and(|o| o.token != self.token) => Err(self.lost()),
            None => Ok(()),
            Some(_) => match store.delete(&layout::checkpoint_path(&self.ckpt.keyspace, &self.ckpt.ingest_id)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

/// The stored checkpoint (None inside: present but unreadable) and its tag.
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
