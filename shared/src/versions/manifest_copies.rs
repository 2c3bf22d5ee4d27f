//! A version's manifest as several roots hold it: its top level and every object that lists (groups of
//! shard entries, the input listing, a delta's key filter), which readers fetch one by one from whichever
//! root holds each intact. Reading the whole of it across roots (older layers, the admin tools), and checking
//! each root's copy (health, repair).

use futures::StreamExt;
use object_store::GetOptions;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::error::{ErrorKind, Result};
use crate::format::checksum::ObjectRef;
use crate::format::layers::LayerRef;
use crate::format::layout;
use crate::format::manifest::{Manifest, checksum_of};
use crate::stores::replicated::{FailoverConfig, ReplicatedStore, is_corrupt};
use crate::stores::url::Store;
use crate::versions::copies::{CopyHealth, CopyState, check_object};
use crate::versions::pointer;

/// The whole manifest of every older layer `manifest` stacks on, newest first, each from the first root
/// holding a copy that matches what `manifest` records of it.
pub async fn older_layers(roots: &[Store], manifest: &Manifest) -> Result<Vec<Manifest>> {
    let mut out = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        out.push(older_layer(roots, &manifest.keyspace, layer).await.map_err(|(_, e)| e)?);
    }
    Ok(out)
}

/// An older layer's whole manifest from the first root holding a copy that matches what the version
/// records of it; or, when no root does, what each root holds instead and the last root's error.
pub async fn older_layer(
    roots: &[Store],
    keyspace: &str,
    layer: &LayerRef,
) -> std::result::Result<Manifest, (Vec<CopyHealth>, crate::Error)> {
    let path = layout::manifest_path(keyspace, &layer.version);
    let mut copies = Vec::with_capacity(roots.len());
    let mut last_error = None;
    for root in roots {
        let (state, error) = match Manifest::read_with_ref(root.inner.as_ref(), keyspace, &layer.version).await {
            Ok((m, top)) if top == layer.manifest => return Ok(m),
            Ok((_, top)) => {
                (CopyState::Corrupt { checksum: top.checksum }, crate::Error::corrupt(&path, "not the layer listed"))
            }
            Err(e) => {
                // Only an absent top level is "missing"; a lost group or listing, or bytes that do not parse,
                // are told by the error itself.
                let state = match e.kind() {
                    ErrorKind::NotFound => CopyState::Missing,
                    _ => CopyState::Unreachable { error: e.to_string() },
                };
                (state, e)
            }
        };
        copies.push(CopyHealth { root: root.url.clone(), state, part: None });
        // A store that failed says nothing of the data: its error is the one returned.
        if !last_error.as_ref().is_some_and(|e: &crate::Error| e.kind() == ErrorKind::Unavailable) {
            last_error = Some(error);
        }
    }
    let want = layer.manifest.clone();
    match read_across(roots, keyspace, &layer.version, Box::new(move |b| want.matches(b)), true).await {
        Ok(m) => Ok(m),
        // A store that failed now says nothing of the data either.
        Err(e) if e.kind() == ErrorKind::Unavailable => Err((copies, e)),
        Err(_) => Err((copies, last_error.expect("at least one root"))),
    }
}

/// Whether a copy's bytes are the ones expected.
type Check = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A version's manifest with every shard entry, as readers read it: from the primary when its copy is whole
/// and the one expected, otherwise part by part from whichever root holds each intact (the top level: the
/// one `vouched` names, or without it one that parses as this version). The input listing, which no reader
/// needs, is not read (`source.files` keeps the top level's first files). What the admin tools check and
/// repair from, so a primary that lost a group can still be mended.
pub async fn read_whole(
    roots: &[Store],
    keyspace: &str,
    version: &str,
    vouched: Option<&ObjectRef>,
) -> Result<Manifest> {
    match Manifest::read_parts(roots[0].inner.as_ref(), keyspace, version, false).await {
        Ok((m, top)) if vouched.is_none_or(|v| *v == top) => return Ok(m),
        Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
        _ => {}
    }
    let top_valid: Check = match vouched.cloned() {
        Some(want) => Box::new(move |b| want.matches(b)),
        None => {
            let (path, ks, v) = (layout::manifest_path(keyspace, version), keyspace.to_string(), version.to_string());
            Box::new(move |b| Manifest::parse(&path, b).is_ok_and(|m| m.keyspace == ks && m.version == v))
        }
    };
    read_across(roots, keyspace, version, top_valid, false).await
}

/// No root holds the whole of a version's manifest: read as readers read it, each part (top level, input
/// listing if `listing`, groups) from the first root whose copy is the one expected (the top level:
/// `top_valid`; the others: what the top level lists).
async fn read_across(
    roots: &[Store],
    keyspace: &str,
    version: &str,
    top_valid: Check,
    listing: bool,
) -> Result<Manifest> {
    let across = ReplicatedStore::new(
        roots.iter().map(|r| r.inner.clone()).collect(),
        FailoverConfig { hedging: false, ..Default::default() },
    );
    let get = |path: Path, valid: Check| {
        let across = &across;
        async move {
            across.get_verified(&path, GetOptions::default(), &*valid).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => crate::Error::Missing { path },
                e if is_corrupt(&e) => crate::Error::corrupt(&path, format!("no copy is the one expected: {e}")),
                e => crate::Error::Store(e),
            })
        }
    };
    let path = layout::manifest_path(keyspace, version);
    let top = get(path.clone(), top_valid).await?;
    let mut m = Manifest::parse(&path, &top)?;
    let expected = |bytes: u64, checksum: String| -> Check {
        Box::new(move |b| b.len() as u64 == bytes && checksum_of(b) == checksum)
    };
    if let Some(listing) = m.source.listing.take_if(|_| listing) {
        let bytes =
            get(layout::sources_path(keyspace, version), expected(listing.bytes, listing.checksum.clone())).await?;
        m.source.files = m.parse_sources(&listing, &bytes)?;
    }
    if !m.groups.is_empty() {
        let mut shards = Vec::with_capacity(m.shards.len());
        for (g, want) in m.groups.iter().enumerate() {
            let bytes = get(m.group_path(g), expected(want.bytes, want.checksum.clone())).await?;
            shards.extend(m.parse_group(g, &bytes)?);
        }
        // Whole now, as `Manifest::read` leaves it.
        m.shards = shards;
        m.groups.clear();
    }
    Ok(m)
}

/// What the pointer of `manifest`'s keyspace vouches for its top level, when it names this version.
pub(crate) async fn vouched_top(roots: &[Store], manifest: &Manifest) -> Option<ObjectRef> {
    let current = pointer::read(roots[0].inner.as_ref(), &manifest.keyspace).await.ok().flatten()?;
    (current.pointer.version == manifest.version).then_some(current.pointer.manifest).flatten()
}

/// Whether `bytes` are an intact copy of `manifest`'s top level: the bytes `vouched` names, or without it,
/// a manifest of this keyspace and version.
pub(crate) fn intact_top(manifest: &Manifest, vouched: Option<&ObjectRef>, bytes: &[u8]) -> bool {
    match vouched {
        Some(r) => r.matches(bytes),
        None => Manifest::parse(&manifest.path(), bytes)
            .is_ok_and(|m| m.keyspace == manifest.keyspace && m.version == manifest.version),
    }
}

/// An object a manifest's top level lists (a group, the input listing, a delta's key filter), as it lists it.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub path: Path,
    pub bytes: u64,
    pub checksum: String,
    /// Whether a lookup needs it: a group does; without the listing or a delta's filter lookups still
    /// answer (a layer whose filter is lost is read without one).
    pub needed: bool,
}

/// Every object besides itself that the top level `listed` names: readers fetch each one from the first
/// root whose copy is intact.
pub(crate) fn manifest_parts(listed: &Manifest) -> Vec<Part> {
    let (ks, v) = (&listed.keyspace, &listed.version);
    let part = |path: Path, bytes: u64, checksum: &str, needed: bool| Part {
        path,
        bytes,
        checksum: checksum.to_string(),
        needed,
    };
    let groups = listed.groups.iter().enumerate();
    let mut parts: Vec<Part> =
        groups.map(|(g, r)| part(layout::group_path(ks, v, g as u32), r.bytes, &r.checksum, true)).collect();
    if let Some(l) = &listed.source.listing {
        parts.push(part(layout::sources_path(ks, v), l.bytes, &l.checksum, false));
    }
    if let Some(d) = &listed.delta {
        parts.push(part(layout::filter_path(ks, v), d.filter.bytes, &d.filter.checksum, false));
    }
    parts
}

async fn check_part(root: Store, part: Part, deep: bool) -> CopyState {
    check_object(&root, &part.path, part.bytes, &part.checksum, deep).await
}

/// Each root's copy of the manifest: its top level, then every object that lists (a root's copy is named by
/// the first it lacks). Also whether lookups can read it: the top level and every part they need intact on
/// some root.
pub(crate) async fn check_manifest(
    roots: &[Store],
    manifest: &Manifest,
    vouched: Option<&ObjectRef>,
    deep: bool,
) -> (Vec<CopyHealth>, bool) {
    let path = manifest.path();
    let mut tops = Vec::with_capacity(roots.len());
    let mut listed = None;
    for root in roots {
        tops.push(match root.inner.get(&path).await {
            Ok(got) => match got.bytes().await {
                Ok(b) if intact_top(manifest, vouched, &b) => {
                    listed = listed.or_else(|| Manifest::parse(&path, &b).ok());
                    CopyState::Ok
                }
                Ok(b) => CopyState::Corrupt { checksum: checksum_of(&b) },
                Err(e) => CopyState::Unreachable { error: e.to_string() },
            },
            Err(object_store::Error::NotFound { .. }) => CopyState::Missing,
            Err(e) => CopyState::Unreachable { error: e.to_string() },
        });
    }
    let Some(listed) = listed else {
        let copies = roots.iter().zip(tops).map(|(r, state)| CopyHealth { root: r.url.clone(), state, part: None });
        return (copies.collect(), false);
    };
    // Every root's copy of every part, 16 at a time (a root without an intact top level may still hold the
    // part a reader fetches); owned inputs per task, as for shards.
    let parts = manifest_parts(&listed);
    let pairs: Vec<(Store, Part)> =
        roots.iter().flat_map(|r| parts.iter().map(move |p| (r.clone(), p.clone()))).collect();
    let states: Vec<CopyState> =
        futures::stream::iter(pairs).map(|(r, p)| check_part(r, p, deep)).buffered(16).collect().await;
    let row = |r: usize| &states[r * parts.len()..(r + 1) * parts.len()];
    let somewhere = |i: usize| (0..roots.len()).any(|r| row(r)[i] == CopyState::Ok);
    let readable = (0..parts.len()).all(|i| !parts[i].needed || somewhere(i));
    let copies = roots.iter().zip(tops).enumerate().map(|(r, (root, top))| {
        let first_bad = row(r).iter().zip(&parts).find(|(s, _)| **s != CopyState::Ok);
        let (state, part) = match first_bad {
            Some((s, p)) if top == CopyState::Ok => (s.clone(), Some(p.path.to_string())),
            _ => (top, None),
        };
        CopyHealth { root: root.url.clone(), state, part }
    });
    (copies.collect(), readable)
}
