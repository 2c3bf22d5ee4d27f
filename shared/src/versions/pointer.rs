//! The `CURRENT` pointer: the only mutable object of a keyspace. Publishing a version is one conditional
//! write (`PutMode::Create` for the first version, `PutMode::Update` with the ETag read before otherwise),
//! so of two concurrent publishers exactly one wins and readers never see a half-published dataset.
//! Replica roots hold copies of it, written after the primary's switch: what a reader falls back to when
//! the primary root cannot be read. A copy may lag the primary (a publish or rollback whose copy failed),
//! never move back, and never point at a version that is not whole.
//!
//! A keyspace's identity across deletions is its *lineage*: an id given when its first pointer is created
//! and kept by every switch. Within one lineage `seq` only grows, so a reader never moves back; a keyspace
//! deleted and created anew has a newer lineage, which readers follow ([`Pointer::supersedes`]).

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::format::checksum::ObjectRef;
use crate::format::layout;

/// Versions kept in a pointer's history (newest first); older ones are summarised by its `history_from`.
pub const HISTORY_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pointer {
    pub version: String,
    /// The version this one replaced, for `cairn rollback` without arguments.
    pub previous: Option<String>,
    pub updated_at: String,
    /// Switches so far (0 in pointers written before it existed): a reader never takes a lower one than it
    /// holds, whichever root it read it from.
    #[serde(default)]
    pub seq: u64,
    /// Versions that were current, newest first, with when each stopped being current: how gc measures
    /// `--min-age` from a version's replacement, and how an ingest tells a lost response from a lost race.
    #[serde(default)]
    pub history: Vec<Replaced>,
    /// Every version replaced before this time is not in `history` (it was cut at [`HISTORY_MAX`], or the
    /// keyspace was published by a build without history). None: `history` is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_from: Option<String>,
    /// Versions gc is deleting: no switch may name them (gc adds them with a conditional write before it
    /// deletes anything, and removes them after).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collecting: Vec<String>,
    /// Given when the keyspace's first pointer is created, kept by every switch: ids sort by creation time
    /// (as versions do), so a keyspace deleted and created anew has a greater one. None in pointers written
    /// before it existed (a switch by this build gives them one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// The size and checksum of `version`'s manifest top level: a reader verifies the copy it reads, from
    /// whichever root (None in pointers written before it existed: the manifest is then checked by its
    /// content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ObjectRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub version: String,
    /// RFC 3339 UTC.
    pub replaced_at: String,
}

impl Pointer {
    /// Whether `version` is or ever was current, as far as this pointer knows.
    pub fn was_current(&self, version: &str) -> bool {
        self.version == version
            || self.previous.as_deref() == Some(version)
            || self.history.iter().any(|h| h.version == version)
    }

    /// `was_current`, for versions gc must not touch: current, previous, or in the history and replaced less
    /// recently than anything gc may collect (the caller's age rule decides that part).
    fn was_current_or_next(&self, version: &str) -> bool {
        self.version == version || self.previous.as_deref() == Some(version)
    }

    /// When `version` stopped being current: Some(exact) from the history, or None if it is not in it.
    pub fn replaced_at(&self, version: &str) -> Option<&str> {
        self.history.iter().find(|h| h.version == version).map(|h| h.replaced_at.as_str())
    }

    /// Whether a reader that serves `held` takes this pointer: within one lineage, when it is not older
    /// (`seq`); across lineages, when its lineage is newer. Where a pointer of an older build (no lineage)
    /// is involved, a higher `seq` is taken as before, and a lower one by what it names: a version the held
    /// pointer's history lists is a lagging copy (not taken); a version it never had, created after the
    /// one it serves, is a keyspace created anew (taken).
    pub fn supersedes(&self, held: &Pointer) -> bool {
        match (&self.lineage, &held.lineage) {
            (Some(a), Some(b)) if a == b => self.seq >= held.seq,
            (Some(a), Some(b)) => a > b,
            _ if self.seq >= held.seq => true,
            _ => !held.was_current(&self.version) && self.version > held.version,
        }
    }

    /// The pointer that replaces this one with `version` as current.
    fn next(&self, version: &str, manifest: Option<ObjectRef>) -> Pointer {
        let now = layout::now_rfc3339();
        let mut history = Vec::with_capacity(HISTORY_MAX);
        history.push(Replaced { version: self.version.clone(), replaced_at: now.clone() });
        history.extend(self.history.iter().cloned());
        // A pointer from before histories existed: every version it replaced left at or before it was written.
        let mut history_from = if self.seq == 0 && self.history.is_empty() && self.previous.is_some() {
            Some(self.updated_at.clone())
        } else {
            self.history_from.clone()
        };
        if history.len() > HISTORY_MAX {
            let cut = history.split_off(HISTORY_MAX);
            history_from = cut.first().map(|h| h.replaced_at.clone()).or(history_from);
        }
        Pointer {
            version: version.to_string(),
            previous: Some(self.version.clone()),
            updated_at: now,
            seq: self.seq + 1,
            history,
            history_from,
            collecting: self.collecting.clone(),
            lineage: Some(self.lineage.clone().unwrap_or_else(layout::new_version)),
            manifest,
        }
    }
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

/// Points the keyspace at `version` (whose manifest top level is `manifest`) if the pointer is still what
/// `expected` says (None: no pointer yet, and this one starts a lineage). Refused (conflict) when gc is
/// collecting `version`.
pub async fn switch(
    store: &dyn ObjectStore,
    ks: &str,
    version: &str,
    manifest: Option<ObjectRef>,
    expected: Option<&Current>,
) -> Result<Pointer> {
    let pointer = match expected {
        None => Pointer {
            version: version.to_string(),
            previous: None,
            updated_at: layout::now_rfc3339(),
            seq: 1,
            history: Vec::new(),
            history_from: None,
            collecting: Vec::new(),
            lineage: Some(layout::new_version()),
            manifest,
        },
        Some(c) if c.pointer.collecting.iter().any(|v| v == version) => {
            return Err(Error::Collecting { keyspace: ks.into(), version: version.into() });
        }
        Some(c) => c.pointer.next(version, manifest),
    };
    update(store, ks, &pointer, expected).await?;
    Ok(pointer)
}

/// Writes `pointer` if the stored one is still `expected` (None: there is none). The one conditional write
/// every change of a keyspace's pointer goes through.
pub async fn update(store: &dyn ObjectStore, ks: &str, pointer: &Pointer, expected: Option<&Current>) -> Result<()> {
    let body = serde_json::to_vec(pointer).expect("pointer serializes");
    let mode = match expected {
        None => PutMode::Create,
        Some(c) => PutMode::Update(c.tag.clone()),
    };
    match store.put_opts(&layout::pointer_path(ks), PutPayload::from(body), mode.into()).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            Err(Error::Conflict { keyspace: ks.into(), expected: expected.map(|c| c.pointer.version.clone()) })
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks versions as being collected, with a conditional write: `candidates` picks them from the pointer
/// as it is at that write (so a version that became current or previous meanwhile is never marked). Returns
/// the versions marked; none when there is no pointer (nothing could switch to them).
pub async fn mark_collecting(
    store: &dyn ObjectStore,
    ks: &str,
    candidates: impl Fn(&Pointer) -> Vec<String>,
) -> Result<Vec<String>> {
    change_marks(store, ks, |p| {
        let picked: Vec<String> = candidates(p).into_iter().filter(|v| !p.was_current_or_next(v)).collect();
        let mut next = p.clone();
        next.collecting.extend(picked.iter().filter(|v| !p.collecting.contains(v)).cloned());
        (next, picked)
    })
    .await
}

/// Removes versions from the pointer's collecting list (gc or a discarded ingest finished deleting them).
pub async fn unmark_collecting(store: &dyn ObjectStore, ks: &str, versions: &[String]) -> Result<()> {
    change_marks(store, ks, |p| {
        let mut next = p.clone();
        next.collecting.retain(|v| !versions.contains(v));
        (next, Vec::new())
    })
    .await
    .map(drop)
}

async fn change_marks(
    store: &dyn ObjectStore,
    ks: &str,
    change: impl Fn(&Pointer) -> (Pointer, Vec<String>),
) -> Result<Vec<String>> {
    let mut last = None;
    for _ in 0..16 {
        let Some(cur) = read(store, ks).await? else { return Ok(Vec::new()) };
        let (next, picked) = change(&cur.pointer);
        if next == cur.pointer {
            return Ok(picked);
        }
        match update(store, ks, &next, Some(&cur)).await {
            Ok(()) => return Ok(picked),
            // Changed under us, or unanswered: the next read shows what is there.
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("an error"))
}

/// Pointers checked at once when keyspaces are listed.
const HEADS_AT_ONCE: usize = 16;

/// Keyspaces that have a published pointer, sorted. A pointer the store cannot be asked about is an error,
/// not a keyspace left out.
pub async fn list_keyspaces(store: &dyn ObjectStore) -> Result<Vec<String>> {
    let listing = store.list_with_delimiter(None).await?;
    let names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(layout::keyspace_of_segment).map(str::to_string))
        .collect();
    let checks = names.into_iter().map(|ks| async move {
        {
            match store.head(&layout::pointer_path(&ks)).await {
                Ok(_) => Ok(Some(ks)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
    });
    let found: Vec<Option<String>> =
        futures::stream::iter(checks).buffer_unordered(HEADS_AT_ONCE).try_collect().await?;
    let mut out: Vec<String> = found.into_iter().flatten().collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(version: &str, seq: u64, lineage: Option<&str>, history: &[&str]) -> Pointer {
        Pointer {
            version: version.into(),
            previous: history.first().map(|v| v.to_string()),
            updated_at: String::new(),
            seq,
            history: history.iter().map(|v| Replaced { version: v.to_string(), replaced_at: String::new() }).collect(),
            history_from: None,
            collecting: Vec::new(),
            lineage: lineage.map(String::from),
            manifest: None,
        }
    }

    #[test]
    fn within_a_lineage_never_back_across_lineages_to_the_newer() {
        let held = p("v3", 7, Some("L1"), &["v2", "v1"]);
        assert!(p("v4", 8, Some("L1"), &["v3"]).supersedes(&held));
        assert!(p("v3", 7, Some("L1"), &["v2"]).supersedes(&held), "the same pointer (or only gc's marks moved)");
        // A lagging copy, even of a version created later and no longer in the history.
        assert!(!p("v9", 6, Some("L1"), &[]).supersedes(&held));
        // Deleted and created anew: a newer lineage, whatever its seq; an older one never.
        assert!(p("v5", 1, Some("L2"), &[]).supersedes(&held));
        assert!(!p("v0", 9, Some("L0"), &[]).supersedes(&held));
    }

    #[test]
    fn pointers_of_older_builds_are_judged_by_what_they_name() {
        let held = p("v3", 7, None, &["v2", "v1"]);
        assert!(p("v4", 8, None, &["v3"]).supersedes(&held));
        assert!(!p("v2", 6, None, &["v1"]).supersedes(&held), "a lagging copy");
        assert!(p("v5", 1, None, &[]).supersedes(&held), "rebuilt by an older build");
        assert!(!p("v0", 1, None, &[]).supersedes(&held), "older than what is served");
        // This build switching over an older build's pointer (a rollback included) gives it a lineage.
        assert!(p("v1", 8, Some("L1"), &["v3"]).supersedes(&held));
        // An older build writing over a lineage: a higher seq is taken, a lagging copy is not.
        let held = p("v3", 7, Some("L1"), &["v2", "v1"]);
        assert!(p("v2", 8, None, &["v3"]).supersedes(&held));
        assert!(!p("v2", 6, None, &[]).supersedes(&held));
    }

    #[test]
    fn a_switch_keeps_the_lineage_and_gives_one_to_an_older_pointer() {
        let old = p("v1", 3, None, &[]);
        let next = old.next("v2", None);
        assert!(next.lineage.is_some() && next.seq == 4);
        assert_eq!(next.next("v3", None).lineage, next.lineage);
    }
}
