//! Replica roots' copies of `CURRENT` (pointer.rs): written after the primary's switch, for readers to fall
//! back to when the primary root cannot be read. A publish's or rollback's copy never moves a copy back;
//! `cairn repair` makes each copy the primary's.

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};

use crate::error::{Error, Result};
use crate::format::layout;
use crate::format::manifest::Manifest;
use crate::stores::url::Store;
use crate::versions::pointer::{Pointer, read};

/// Refuses `root` as the primary of `manifest`'s keyspace when the manifest lists it among the version's
/// replicas and names another root as the primary, which holds the keyspace or cannot be read: a command
/// given a replica root as `--store` would take its pointer copy, which may lag, for the primary's, and
/// publish, roll back or mend the other copies from it. A replica stands in for a primary that answers
/// without the keyspace (emptied, or a local path this host does not have) or that `CAIRN_PRIMARY_LOST`
/// names; a manifest that names no primary (an older build's, which may list its primary among the
/// replicas too) refuses nothing.
pub async fn refuse_replica_root(root: &Store, manifest: &Manifest) -> Result<()> {
    let Some(primary) = manifest.primary.as_ref() else { return Ok(()) };
    if *primary == root.url || !manifest.replicas.contains(&root.url) {
        return Ok(());
    }
    let lost = crate::config::vars::PRIMARY_LOST.get().unwrap_or_default();
    // As written, or as a store URL that names the same root (a plain path for a `file://` one).
    let named = |u: &str| u == primary || Store::open(u).is_ok_and(|s| s.url == *primary);
    if lost.split(',').map(str::trim).any(named) {
        return Ok(());
    }
    let why = match Store::open(primary) {
        Ok(p) => match read(p.inner.as_ref(), &manifest.keyspace).await {
            Ok(None) => {
                tracing::warn!(replica = %root.url, %primary, "the primary does not hold the keyspace: the replica stands in for it");
                return Ok(());
            }
            Ok(Some(_)) => None,
            Err(e) => Some(format!("cannot be read ({e})")),
        },
        Err(e) => Some(format!("cannot be opened ({e})")),
    };
    let text = format!(
        "{} is a replica root of keyspace {}: its primary {primary} (named by version {}) {}; give the primary \
         as --store, or, if it is lost for good, name it in CAIRN_PRIMARY_LOST",
        root.url,
        manifest.keyspace,
        manifest.version,
        why.as_deref().unwrap_or("holds the keyspace")
    );
    // A primary that does not answer is an outage (worth a retry), not a mistake in the command.
    Err(match why {
        Some(_) => Error::Io(std::io::Error::other(text)),
        None => Error::Config(text),
    })
}

/// What [`copy`] did to a replica's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    Written,
    /// The copy there was this pointer already.
    Same,
    /// The copy there is newer ([`Pointer::supersedes`] it): left in place.
    Newer,
}

/// Writes `pointer` to a replica root, unless the copy there is newer: a copy never moves back. A writer
/// holding an older pointer (a rollback's copy landing after a later publish's) would otherwise undo the
/// newer copy. Conditional on the copy it read; when another copy lands in between, it reads again.
pub async fn copy(store: &dyn ObjectStore, ks: &str, pointer: &Pointer) -> Result<Copied> {
    let path = layout::pointer_path(ks);
    for _ in 0..COPY_TRIES {
        let tag = match read_copy(store, &path).await? {
            Some((Some(there), _)) if there == *pointer => return Ok(Copied::Same),
            Some((Some(there), _)) if !pointer.supersedes(&there) => return Ok(Copied::Newer),
            there => there.map(|(_, tag)| tag),
        };
        if put_copy(store, &path, pointer, tag).await? {
            return Ok(Copied::Written);
        }
    }
    Err(Error::Conflict { keyspace: ks.to_string(), expected: Some(pointer.version.clone()) })
}

/// `cairn repair`: makes `replica`'s copy the primary's pointer while it names `version`, whichever copy is
/// there, newer included (the primary is the commit point: a replica ahead of it, after the primary's
/// pointer was restored by hand or a keyspace rebuilt on a machine whose clock is behind, is what repair
/// mends). Written only when the primary still names the same pointer after the copy was read, and
/// conditional on that copy, so a publish landing meanwhile is never undone. Whether it wrote.
pub async fn align(primary: &dyn ObjectStore, replica: &dyn ObjectStore, ks: &str, version: &str) -> Result<bool> {
    let path = layout::pointer_path(ks);
    for _ in 0..COPY_TRIES {
        let Some(current) = read(primary, ks).await?.filter(|c| c.pointer.version == version) else {
            return Ok(false);
        };
        let there = read_copy(replica, &path).await?;
        if there.as_ref().is_some_and(|(p, _)| p.as_ref() == Some(&current.pointer)) {
            return Ok(false);
        }
        if read(primary, ks).await?.is_none_or(|again| again.tag != current.tag || again.pointer != current.pointer) {
            continue;
        }
        if put_copy(replica, &path, &current.pointer, there.map(|(_, tag)| tag)).await? {
            return Ok(true);
        }
    }
    Err(Error::Conflict { keyspace: ks.to_string(), expected: Some(version.to_string()) })
}

/// A replica's copy with the tag a conditional write needs (its pointer None when it does not parse: a torn
/// or hand-made copy, which is replaced).
async fn read_copy(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> Result<Option<(Option<Pointer>, UpdateVersion)>> {
    match store.get(path).await {
        Ok(got) => {
            let tag = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
            Ok(Some((serde_json::from_slice(&got.bytes().await?).ok(), tag)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `pointer` if the copy is still the one `read` tagged (None: there was none). False when another
/// write landed first. A store without conditional writes gets a plain one (it cannot tell a race).
async fn put_copy(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    pointer: &Pointer,
    read: Option<UpdateVersion>,
) -> Result<bool> {
    let body = PutPayload::from(serde_json::to_vec(pointer).expect("pointer serializes"));
    let mode = read.map_or(PutMode::Create, PutMode::Update);
    match store.put_opts(path, body.clone(), mode.into()).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(path, body).await?;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads and conditional writes of one replica copy before [`copy`] or [`align`] gives up (each retry means
/// another writer's copy, or a switch, landed in between).
const COPY_TRIES: usize = 8;

/// Copies `pointer` to every replica root; returns the roots whose copy failed (logged).
pub async fn copy_to_replicas(replicas: &[crate::stores::url::Store], ks: &str, pointer: &Pointer) -> Vec<String> {
    let mut failed = Vec::new();
    for r in replicas {
        match copy(r.inner.as_ref(), ks, pointer).await {
            Ok(Copied::Written | Copied::Same) => {}
            // Only after the primary's pointer went back by hand (a restore), or a concurrent later switch.
            Ok(Copied::Newer) => {
                tracing::warn!(keyspace = ks, replica = %r.url, "the replica's pointer copy is newer than this switch; left in place (`cairn repair` makes it the primary's)")
            }
            Err(e) => {
                tracing::warn!(keyspace = ks, replica = %r.url, error = %e, "could not copy the pointer to a replica");
                failed.push(r.url.clone());
            }
        }
    }
    failed
}
