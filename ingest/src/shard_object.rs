//! One shard object of a version, written from its sorted rows: a local temporary file first (the writer
//! needs to know every block's bytes before the object is complete), then streamed to every root. `cairn
//! ingest` and external writers (Spark executors through the Python package) both write shards here, so
//! their objects are byte for byte the same for the same rows.

use std::path::Path;

use cairn_shared::layout;
use cairn_shared::manifest::ShardEntry;
use cairn_shared::ring::PlacementSpec;
use cairn_shared::shard_writer::{ShardFormat, ShardWriter};
use cairn_shared::store::Store;
use object_store::ObjectStoreExt;
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A shard object being written: append rows in ascending key order, then [`ShardObject::finish`].
pub struct ShardObject {
    shard: u32,
    writer: ShardWriter<std::io::BufWriter<std::fs::File>>,
    /// Removed when dropped: a failed or abandoned shard leaves nothing behind locally.
    local: tempfile::NamedTempFile,
    dest: object_store::path::Path,
}

impl ShardObject {
    pub fn create(target: &VersionTarget, format: &ShardFormat, shard: u32, dir: &Path) -> Result<Self, IngestError> {
        let local = tempfile::Builder::new()
            .prefix(&format!("shard-{shard:05}-"))
            .suffix(".parquet")
            .tempfile_in(dir)
            .map_err(IngestError::io(format!("cannot create a temporary file in {}", dir.display())))?;
        let file = local.as_file().try_clone().map_err(IngestError::io("cannot open a temporary file"))?;
        // The writer's final sync flushes through this buffer, so the file is whole when finish uploads it.
        let writer =
            ShardWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), format, target.metadata(format, shard))?;
        Ok(ShardObject { shard, writer, local, dest: layout::shard_path(&target.keyspace, shard, &target.version) })
    }

    /// Keys must arrive strictly ascending (bytewise); the writer refuses anything else.
    #[inline]
    pub fn append(&mut self, key: &str, value: &[u8]) -> Result<(), cairn_shared::Error> {
        self.writer.append(key, value)
    }

    /// Completes the file, uploads it to every root and returns the shard's manifest entry.
    pub async fn finish(self, roots: &[Store]) -> Result<ShardEntry, IngestError> {
        let summary = self.writer.finish()?;
        let checksum = upload(self.local.path(), roots, &self.dest).await?;
        Ok(summary.entry(self.shard, self.dest.to_string(), checksum))
    }
}

/// Largest object [`ShardObject::finish_exclusive`] uploads as one conditional PUT (held in memory once).
pub const EXCLUSIVE_MAX: u64 = 64 << 20;

impl ShardObject {
    /// As [`ShardObject::finish`], for writers that may run twice at once (a Spark task and its retry or
    /// speculative copy): the first complete upload of the path wins (a conditional create), and a later
    /// one is accepted only if its bytes are the same. Different bytes mean the rows differed between
    /// attempts: refused, so a published entry never describes another attempt's object. Objects over
    /// [`EXCLUSIVE_MAX`] are uploaded as by `finish` (multipart uploads cannot be conditional here).
    pub async fn finish_exclusive(self, roots: &[Store]) -> Result<ShardEntry, IngestError> {
        let summary = self.writer.finish()?;
        if summary.bytes > EXCLUSIVE_MAX {
            let checksum = upload(self.local.path(), roots, &self.dest).await?;
            return Ok(summary.entry(self.shard, self.dest.to_string(), checksum));
        }
        let bytes = tokio::fs::read(self.local.path())
            .await
            .map_err(IngestError::io(format!("cannot read the local copy of {}", self.dest)))?;
        let checksum = cairn_shared::manifest::checksum_of(&bytes);
        let payload = object_store::PutPayload::from(bytes::Bytes::from(bytes));
        for root in roots {
            create_or_match(self.shard, &self.dest, root, &payload, &checksum).await?;
        }
        Ok(summary.entry(self.shard, self.dest.to_string(), checksum))
    }
}

/// Creates `dest` under `root` unless it exists; if it does, its bytes must be `checksum`'s.
async fn create_or_match(
    shard: u32,
    dest: &object_store::path::Path,
    root: &Store,
    payload: &object_store::PutPayload,
    checksum: &str,
) -> Result<(), IngestError> {
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
        let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
        match root.inner.put_opts(dest, payload.clone(), opts).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match root.inner.head(dest).await {
            Ok(meta) if meta.size != payload.content_length() as u64 => return Err(differs()),
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        match root.inner.get(dest).await {
            Ok(got) => {
                let existing = got.bytes().await?;
                let same = cairn_shared::manifest::checksum_of(&existing) == checksum;
                return if same { Ok(()) } else { Err(differs()) };
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(IngestError::OutcomeUnknown(format!(
        "shard {}: {} under {} could neither be created nor read back",
        shard, dest, root.url
    )))
}

/// Streams a local file to `dest` under every root (multipart beyond 8 MiB), hashing it on the way. An
/// upload is all or nothing: a reader never sees part of an object.
async fn upload(local: &Path, roots: &[Store], dest: &object_store::path::Path) -> Result<String, IngestError> {
    let io_err = |what: &str| IngestError::io(format!("{what} {dest}"));
    let mut writers: Vec<_> = roots
        .iter()
        .map(|r| object_store::buffered::BufWriter::with_capacity(r.inner.clone(), dest.clone(), 8 << 20))
        .collect();
    let mut file = tokio::fs::File::open(local).await.map_err(io_err("cannot reopen the local copy of"))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut hash = Xxh3::new();
    loop {
        let n = file.read(&mut buf).await.map_err(io_err("cannot read the local copy of"))?;
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
    Ok(cairn_shared::manifest::checksum_label(hash.digest()))
}
