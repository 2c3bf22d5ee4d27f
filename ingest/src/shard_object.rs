//! One shard object of a version, written from its sorted rows: into memory first, or past
//! [`SPOOL_BYTES`] a local temporary file (the writer needs to know every block's bytes before the object is
//! complete), then sent to every root. `cairn
//! ingest` and external writers (Spark executors through the Python package) both write shards here, so
//! their objects are byte for byte the same for the same rows.

use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_shared::format::layers::{DELETED, LIVE};
use cairn_shared::format::layout;
use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::format::shard_writer::{ShardFormat, ShardWriter};
use cairn_shared::stores::Store;
use object_store::ObjectStoreExt;
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};
use tempfile::{SpooledData, SpooledTempFile};
use tokio::io::AsyncWriteExt;
use xxhash_rust::xxh3::Xxh3;

use crate::error::IngestError;

/// What every shard object of one version shares: where it goes and how keys were placed. Serializable, so
/// a driver can hand it to writers on other machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionTarget {
    pub keyspace: String,
    pub version: String,
    pub placement: PlacementSpec,
    /// Store URLs, primary first: every shard object goes to each.
    pub roots: Vec<String>,
    /// A delta layer: values arrive tagged (layers.rs) and every shard carries a key filter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
}

impl VersionTarget {
    /// The footer metadata every shard of this version carries.
    fn metadata(&self, format: &ShardFormat, shard: u32) -> Vec<KeyValue> {
        let kv = |k: &str, v: String| KeyValue::new(format!("cairn.{k}"), v);
        vec![
            kv("format", format.version().to_string()),
            kv("keyspace", self.keyspace.clone()),
            kv("version", self.version.clone()),
            kv("shard", shard.to_string()),
            kv("placement", serde_json::to_string(&self.placement).expect("spec serializes")),
        ]
    }
}

/// Bytes of a shard object held in memory while it is written; a larger one goes on to a local temporary
/// file. Most shards are far smaller (docs/FORMAT.md, shard sizes): they never touch the local disk.
pub const SPOOL_BYTES: usize = 8 << 20;

/// A shard object being written: append rows in ascending key order, then [`ShardObject::finish`].
pub struct ShardObject {
    shard: u32,
    writer: ShardWriter<Spool>,
    /// The same buffer as the writer's, read back once it is done (a temporary file is unnamed: a failed or
    /// abandoned shard leaves nothing behind locally).
    spool: Spool,
    dest: object_store::path::Path,
    /// A delta layer's shard: its tombstones, counted as rows arrive.
    delta: bool,
    tombstones: u64,
}

/// The written bytes, shared between the writer and the upload that follows it.
#[derive(Clone)]
struct Spool(Arc<Mutex<SpooledTempFile>>);

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("spool").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().expect("spool").flush()
    }
}

/// A finished shard object's bytes.
enum Body {
    Memory(bytes::Bytes),
    File(std::fs::File),
}

impl Spool {
    /// The bytes, once the writer (the other holder) is gone.
    fn into_body(self) -> std::io::Result<Body> {
        let spooled = Arc::try_unwrap(self.0).map_err(|_| std::io::Error::other("the shard writer is still open"))?;
        Ok(match spooled.into_inner().expect("spool").into_inner() {
            SpooledData::InMemory(cursor) => Body::Memory(bytes::Bytes::from(cursor.into_inner())),
            SpooledData::OnDisk(mut file) => {
                file.rewind()?;
                Body::File(file)
            }
        })
    }
}

impl ShardObject {
    pub fn create(target: &VersionTarget, format: &ShardFormat, shard: u32, dir: &Path) -> Result<Self, IngestError> {
        let spool = Spool(Arc::new(Mutex::new(tempfile::spooled_tempfile_in(SPOOL_BYTES, dir))));
        let format = &ShardFormat { key_filter: format.key_filter || target.delta, ..format.clone() };
        let writer = ShardWriter::new(spool.clone(), format, target.metadata(format, shard))?;
        let dest = layout::shard_path(&target.keyspace, shard, &target.version);
        Ok(ShardObject { shard, writer, spool, dest, delta: target.delta, tombstones: 0 })
    }

    /// Keys must arrive strictly ascending (bytewise); the writer refuses anything else.
    #[inline]
    pub fn append(&mut self, key: &str, value: &[u8]) -> Result<(), cairn_shared::Error> {
        if self.delta {
            match value.first() {
                Some(&DELETED) if value.len() == 1 => self.tombstones += 1,
                Some(&LIVE) => {}
                _ => {
                    return Err(cairn_shared::Error::Config(format!(
                        "key {key:?}: a delta layer's value must be tagged (a first byte of 0 for a value, \
                         a lone 1 for a deletion)"
                    )));
                }
            }
        }
        self.writer.append(key, value)
    }

    /// Completes the object, sends it to every root and returns the shard's manifest entry.
    pub async fn finish(self, roots: &[Store]) -> Result<ShardEntry, IngestError> {
        let summary = self.writer.finish()?;
        let body = self.spool.into_body().map_err(IngestError::io(format!("cannot read back {}", self.dest)))?;
        let checksum = upload(body, roots, &self.dest).await?;
        Ok(ShardEntry { tombstones: self.tombstones, ..summary.entry(self.shard, self.dest.to_string(), checksum) })
    }
}

/// Largest object [`ShardObject::finish_exclusive`] uploads as one conditional PUT (held in memory once);
/// larger ones are staged and then copied into place conditionally.
pub const EXCLUSIVE_MAX: u64 = 64 << 20;
/// Largest object the conditional copy creates: S3 copies a part of at most 5 GiB, and the copy is one part.
pub const STAGED_MAX: u64 = 5 << 30;

impl ShardObject {
    /// As [`ShardObject::finish`], for writers that may run twice at once (a Spark task and its retry or
    /// speculative copy): the first complete upload of the path wins (a conditional create), and a later
    /// one is accepted only if its bytes are the same. Different bytes mean the rows differed between
    /// attempts: refused, so a published entry never describes another attempt's object, whatever its size.
    pub async fn finish_exclusive(self, roots: &[Store]) -> Result<ShardEntry, IngestError> {
        let summary = self.writer.finish()?;
        let body = self.spool.into_body().map_err(IngestError::io(format!("cannot read back {}", self.dest)))?;
        let checksum = if summary.bytes > STAGED_MAX {
            return Err(IngestError::Invalid(format!(
                "shard {} is {} MiB: a shard written by several attempts can be protected from being replaced up \
                 to {} MiB; use more shards",
                self.shard,
                summary.bytes >> 20,
                STAGED_MAX >> 20
            )));
        } else if summary.bytes > EXCLUSIVE_MAX {
            staged_create(self.shard, body, roots, &self.dest).await?
        } else {
            let bytes = match body {
                Body::Memory(b) => b,
                Body::File(mut f) => {
                    let mut v = Vec::with_capacity(summary.bytes as usize);
                    f.read_to_end(&mut v)
                        .map_err(IngestError::io(format!("cannot read the local copy of {}", self.dest)))?;
                    bytes::Bytes::from(v)
                }
            };
            let checksum = cairn_shared::format::manifest::checksum_of(&bytes);
            let payload = object_store::PutPayload::from(bytes);
            for root in roots {
                let create = |root: &Store| {
                    let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
                    let (inner, dest, payload) = (root.inner.clone(), self.dest.clone(), payload.clone());
                    async move { inner.put_opts(&dest, payload, opts).await.map(drop) }
                };
                create_or_match(self.shard, &self.dest, root, &checksum, create).await?;
            }
            checksum
        };
        Ok(ShardEntry { tombstones: self.tombstones, ..summary.entry(self.shard, self.dest.to_string(), checksum) })
    }
}

/// A shard too large for one conditional PUT: uploaded (multipart) to a staging object of this attempt's
/// own beside it, then created at its path from that with a conditional copy (S3: a multipart copy whose
/// completion carries `If-None-Match`; a local directory: a hard link), then the staging object deleted.
async fn staged_create(
    shard: u32,
    local: Body,
    roots: &[Store],
    dest: &object_store::path::Path,
) -> Result<String, IngestError> {
    let staging = object_store::path::Path::from(format!("{dest}.staging-{}", layout::new_version()));
    let result = async {
        let checksum = upload(local, roots, &staging).await?;
        for root in roots {
            let create = |root: &Store| {
                let (inner, staging, dest) = (root.inner.clone(), staging.clone(), dest.clone());
                async move { inner.copy_if_not_exists(&staging, &dest).await }
            };
            create_or_match(shard, dest, root, &checksum, create).await.map_err(|e| match e {
                IngestError::Store(
                    e @ object_store::Error::NotSupported { .. } | e @ object_store::Error::NotImplemented { .. },
                ) => IngestError::Invalid(format!(
                    "{} cannot create {dest} conditionally from a staged copy ({e}); the store needs S3's \
                         conditional CompleteMultipartUpload (or hard links): use shards of at most {} MiB",
                    root.url,
                    EXCLUSIVE_MAX >> 20
                )),
                e => e,
            })?;
        }
        Ok(checksum)
    }
    .await;
    // Whatever happened (a refusal, an upload failed part-way): the staging object goes (gc collects one a
    // crash left, with its version).
    for root in roots {
        match root.inner.delete(&staging).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(object = %staging, root = %root.url, error = %e, "could not delete a staged shard (gc removes it)")
            }
        }
    }
    result
}

/// Creates `dest` under `root` with `create` (which must fail with `AlreadyExists` when it exists) unless it
/// exists; if it does, its bytes must be `checksum`'s.
async fn create_or_match<F, Fut>(
    shard: u32,
    dest: &object_store::path::Path,
    root: &Store,
    checksum: &str,
    create: F,
) -> Result<(), IngestError>
where
    F: Fn(&Store) -> Fut,
    Fut: std::future::Future<Output = object_store::Result<()>>,
{
    let differs = || {
        IngestError::Invalid(format!(
            "shard {} was already written under {} with other rows (by another attempt of this task): the \
             job's input is not deterministic. Cache or checkpoint the input and rerun",
            shard, root.url
        ))
    };
    // S3 answers a create racing another with a conflict that reads as "exists"; the winner's object
    // may not be readable yet, so a few rounds.
    for _ in 0..4 {
        match create(root).await {
            Ok(()) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match stored_checksum(root, dest).await {
            Ok(Some(existing)) => return if existing == checksum { Ok(()) } else { Err(differs()) },
            Ok(None) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(IngestError::OutcomeUnknown(format!(
        "shard {}: {} under {} could neither be created nor read back",
        shard, dest, root.url
    )))
}

/// The checksum of the object at `path` (streamed, never held whole), or None if there is none.
async fn stored_checksum(root: &Store, path: &object_store::path::Path) -> object_store::Result<Option<String>> {
    use futures::StreamExt;
    let got = match root.inner.get(path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hash = Xxh3::new();
    let mut body = got.into_stream();
    while let Some(chunk) = body.next().await {
        hash.update(&chunk?);
    }
    Ok(Some(cairn_shared::format::manifest::checksum_label(hash.digest())))
}

/// Sends a shard object's bytes to `dest` under every root (a file streamed, multipart beyond 8 MiB),
/// hashing them on the way. An upload is all or nothing: a reader never sees part of an object.
async fn upload(body: Body, roots: &[Store], dest: &object_store::path::Path) -> Result<String, IngestError> {
    let io_err = |what: &str| IngestError::io(format!("{what} {dest}"));
    let mut file = match body {
        Body::Memory(bytes) => {
            let checksum = cairn_shared::format::manifest::checksum_of(&bytes);
            let payload = object_store::PutPayload::from(bytes);
            for r in roots {
                r.inner.put(dest, payload.clone()).await?;
            }
            return Ok(checksum);
        }
        Body::File(f) => f,
    };
    let mut writers: Vec<_> = roots
        .iter()
        .map(|r| {
            // Two parts in flight per root at most: memory per writer thread stays a few parts.
            object_store::buffered::BufWriter::with_capacity(r.inner.clone(), dest.clone(), 8 << 20)
                .with_max_concurrency(2)
        })
        .collect();
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = Xxh3::new();
    loop {
        // A local read of a few MiB: as the rest of a shard's writing, on the writer's thread.
        let n = file.read(&mut buf).map_err(io_err("cannot read the local copy of"))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        for w in &mut writers {
            w.write_all(&buf[..n]).await.map_err(io_err("cannot upload"))?;
        }
    }
    for w in &mut writers {
        w.shutdown().await.map_err(io_err("cannot upload"))?;
    }
    Ok(cairn_shared::format::manifest::checksum_label(hash.digest()))
}
