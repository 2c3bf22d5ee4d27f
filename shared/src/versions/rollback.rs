//! `cairn rollback`: switch a keyspace's pointer back to a version it served before (default: the one the
//! current version replaced), through the same conditional write as a publish. The target must have a
//! manifest and must not be one gc is collecting (the pointer lists those, so gc and rollback cannot
//! interleave into a pointer naming deleted objects).

use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::stores::url::Store;
use crate::versions::pointer::{self, Current, Pointer};
use crate::versions::replica_pointer;

/// Tries of the conditional switch while only the pointer's metadata (gc's marks) changes under it.
const TRIES: usize = 8;

#[derive(Debug, Clone)]
pub struct RolledBack {
    pub from: String,
    pub to: String,
    pub pointer: Pointer,
    /// Replica roots whose pointer copy could not be written (they keep naming `from` until repaired).
    pub replica_failures: Vec<String>,
}

/// Switches `ks` to `to` (default: the previous version); when `to` is current already, changes nothing. `open` opens the replica roots the target's
/// manifest names, to copy the new pointer there.
pub async fn rollback(
    primary: &Store,
    ks: &str,
    to: Option<&str>,
    open: &(dyn Fn(&str) -> Result<Store> + Sync),
) -> Result<RolledBack> {
    let store = primary.inner.as_ref();
    let mut cur = read(primary, ks).await?;
    // Which root is the primary is the current version's manifest's to say; a target's (from before a
    // replica stood in for a lost primary, say) is asked only when the current one names none (an older
    // build's).
    let judged = match Manifest::read_top(store, ks, &cur.pointer.version).await {
        Ok(now) if now.primary.is_some() => {
            replica_pointer::refuse_replica_root(primary, &now).await?;
            true
        }
        _ => false,
    };
    let target = match to {
        Some(v) => v.to_string(),
        None => cur.pointer.previous.clone().ok_or_else(|| {
            Error::Config(format!("{ks} has no previous version; name one with --to (see `cairn versions`)"))
        })?,
    };
    let from = cur.pointer.version.clone();
    let mut tries = 0;
    // Already there (a rerun, say): no switch, which would make the current version its own predecessor,
    // losing the real one (and gc's protection of it); the replicas' copies are written again, in case the
    // run before could not.
    let (pointer, manifest) = if target == from {
        let manifest = Manifest::read_top(store, ks, &target).await?;
        if !judged {
            replica_pointer::refuse_replica_root(primary, &manifest).await?;
        }
        (cur.pointer.clone(), manifest)
    } else {
        loop {
            tries += 1;
            // Read after the pointer the switch is conditional on: gc marks a version in the pointer before it
            // deletes its manifest, so a manifest present now and an unchanged pointer at the switch mean whole.
            let (manifest, top) = Manifest::read_with_ref(store, ks, &target).await?;
            if !judged {
                replica_pointer::refuse_replica_root(primary, &manifest).await?;
            }
            // A layered version needs every layer it stacks on: none being deleted, each manifest present.
            if let Some(l) = manifest.layers.iter().find(|l| cur.pointer.collecting.contains(&l.version)) {
                return Err(Error::Config(format!(
                    "{target} stacks on layer {} which gc is deleting; it cannot be rolled back to",
                    l.version
                )));
            }
            for l in &manifest.layers {
                Manifest::read_top(store, ks, &l.version).await.map_err(|e| {
                    Error::Config(format!("{target} stacks on layer {}, which cannot be read ({e})", l.version))
                })?;
            }
            match pointer::switch(store, ks, &target, Some(top), Some(&cur)).await {
                Ok(p) => break (p, manifest),
                Err(e) => {
                    // A conflict, or an outcome we did not hear: the pointer as it is now tells which.
                    let now = read(primary, ks).await?;
                    if now.pointer.version == target && now.pointer.seq == cur.pointer.seq + 1 {
                        break (now.pointer, manifest); // ours: the response was lost
                    }
                    let only_marks = now.pointer.version == cur.pointer.version && now.pointer.seq == cur.pointer.seq;
                    if !only_marks || matches!(e, Error::Collecting { .. }) || tries >= TRIES {
                        return Err(e);
                    }
                    cur = now;
                }
            }
        }
    };
    let mut replica_failures = Vec::new();
    let mut replicas = Vec::new();
    for url in manifest.replicas_besides(&primary.url) {
        match open(url) {
            Ok(s) => replicas.push(s),
            Err(_) => replica_failures.push(url.clone()),
        }
    }
    replica_failures.extend(replica_pointer::copy_to_replicas(&replicas, ks, &pointer).await);
    Ok(RolledBack { from, to: target, pointer, replica_failures })
}

async fn read(primary: &Store, ks: &str) -> Result<Current> {
    pointer::read(primary.inner.as_ref(), ks).await?.ok_or_else(|| Error::KeyspaceNotFound(ks.into()))
}
