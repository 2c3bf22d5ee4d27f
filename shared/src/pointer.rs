//! The `CURRENT` pointer: the only mutable object of a keyspace. Publishing a version is one conditional
//! write (`PutMode::Create` for the first version, `PutMode::Update` with the ETag read before otherwise),
//! so of two concurrent publishers exactly one wins and readers never see a half-published dataset.
//! Replica roots hold copies of it, written after the primary's switch: what a reader falls back to when
//! the primary root cannot be read. A copy may lag the primary (a publish or rollback whose copy failed, or
//! two copies landing out of order), never point at a version that is not whole.

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub version: String,
    /// The version this one replaced, for `cairn rollback` without arguments.
    pub previous: Option<String>,
    pub updated_at: String,
}

/// The pointer as read, with what a conditional update needs.
#[derive(Debug, Clone)]
pub struct Current {
    pub pointer: Pointer,
    pub tag: UpdateVersion,
}

pub async fn read(store: &dyn ObjectStore, ks: &str) -> Result<Option<Current>> {
    let path = layout::pointer_path(ks);
    let got = match store.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let tag = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
    let bytes = got.bytes().await?;
    let pointer = serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })?;
    Ok(Some(Current { pointer, tag }))
}

/// Points the keyspace at `version` if the pointer is still what `expected` says (None: no pointer yet).
pub async fn switch(store: &dyn ObjectStore, ks: &str, version: &str, expected: Option<&Current>) -> Result<Pointer> {
    let pointer = Pointer {
        version: version.to_string(),
        previous: expected.map(|c| c.pointer.version.clone()),
        updated_at: layout::now_rfc3339(),
    };
    let body = serde_json::to_vec(&pointer).expect("pointer serializes");
    let mode = match expected {
        None => PutMode::Create,
        Some(c) => PutMode::Update(c.tag.clone()),
    };
    match store.put_opts(&layout::pointer_path(ks), PutPayload::from(body), mode.into()).await {
        Ok(_) => Ok(pointer),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            Err(Error::Conflict { keyspace: ks.into(), expected: expected.map(|c| c.pointer.version.clone()) })
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes `pointer` to a replica root. Unconditional: the primary's conditional switch already decided.
pub async fn copy(store: &dyn ObjectStore, ks: &str, pointer: &Pointer) -> Result<()> {
    let body = serde_json::to_vec(pointer).expect("pointer serializes");
    store.put(&layout::pointer_path(ks), PutPayload::from(body)).await?;
    Ok(())
}

/// Copies `pointer` to every replica root; returns the roots whose copy failed (logged).
pub async fn copy_to_replicas(replicas: &[crate::store::Store], ks: &str, pointer: &Pointer) -> Vec<String> {
    let mut failed = Vec::new();
    for r in replicas {
        if let Err(e) = copy(r.inner.as_ref(), ks, pointer).await {
            tracing::warn!(keyspace = ks, replica = %r.url, error = %e, "could not copy the pointer to a replica");
            failed.push(r.url.clone());
        }
    }
    failed
}

/// Keyspaces that have a published pointer.
pub async fn list_keyspaces(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let listing = store.list_with_delimiter(None).await?;
    let mut out = Vec::new();
    for prefix in listing.common_prefixes {
        if let Some(ks) = prefix.filename().and_then(layout::keyspace_of_segment)
            && store.head(&layout::pointer_path(ks)).await.is_ok()
        {
            out.push(ks.to_string());
        }
    }
    out.sort();
    Ok(out)
}
