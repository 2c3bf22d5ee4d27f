//! The roots of a keyspace's published version, as the admin commands (health, repair, gc) find them: the
//! primary, then the replicas the version's manifest top level lists. That list lives in the top level
//! itself, so when the primary's copy is missing or is not the one the pointer names, the top level is read
//! from another root: one `--replicas` names, or one an earlier version's manifest names.

use cairn_shared::format::checksum::ObjectRef;
use cairn_shared::format::layout;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::{manifest_copies, pointer, replica_pointer};
use cairn_shared::{Error, ErrorKind};

/// Earlier versions whose manifests (on the primary) are asked which replica roots they named.
const EARLIER_VERSIONS: usize = 8;

pub struct Published {
    pub pointer: pointer::Pointer,
    /// The primary first.
    pub roots: Vec<Store>,
    /// Whether the primary holds the top level the pointer names (false: it was read from another root).
    pub primary_intact: bool,
}

/// The published version of `ks` and its roots. A pointer that records no checksum of the top level (an
/// older build's) leaves nothing to verify another root's copy against: the primary's is then the only one
/// read, as before. No root answering with the top level the pointer names is data loss
/// ([`ErrorKind::DataLoss`]) unless one of them failed to answer (that error, then).
pub async fn published_roots(store: &Store, ks: &str, replicas: &[String]) -> Result<Published, Error> {
    // Checked first: a root given that cannot be opened is an error whatever the primary holds.
    let given = replicas.iter().map(|url| Store::open(url)).collect::<Result<Vec<_>, _>>()?;
    let cur = pointer::read(store.inner.as_ref(), ks).await?.ok_or_else(|| Error::KeyspaceNotFound(ks.into()))?;
    let p = cur.pointer;
    let path = layout::manifest_path(ks, &p.version);
    let (top, primary_intact) = match (Manifest::read_top_ref(store.inner.as_ref(), ks, &p.version).await, &p.manifest)
    {
        (Ok((m, _)), None) => (m, true),
        (Ok((m, got)), Some(want)) if got == *want => (m, true),
        (Err(e), _) if e.kind() == ErrorKind::Unavailable => return Err(e),
        (Err(e), None) => return Err(e),
        (primary, Some(want)) => {
            let why = primary.map_or_else(|e| e.to_string(), |_| "not the copy the pointer names".into());
            eprintln!("warning: the primary's copy of {path}: {why}");
            match top_elsewhere(store, ks, &p, want, given).await? {
                Some((m, url)) => {
                    eprintln!("warning: read {url}'s copy instead");
                    (m, false)
                }
                None => return Err(Error::Missing { path }),
            }
        }
    };
    replica_pointer::refuse_replica_root(store, &top).await?;
    let mut roots = vec![store.clone()];
    for url in top.replicas_besides(&store.url) {
        roots.push(Store::open(url)?);
    }
    Ok(Published { pointer: p, roots, primary_intact })
}

/// [`published_roots`], with the version's manifest: every shard entry, read as readers read it (each part
/// from whichever root holds it intact), so health and repair work when the primary has lost a group.
pub async fn keyspace_roots(store: &Store, ks: &str, replicas: &[String]) -> Result<(Manifest, Published), Error> {
    let published = published_roots(store, ks, replicas).await?;
    let (version, vouched) = (&published.pointer.version, published.pointer.manifest.as_ref());
    let manifest = manifest_copies::read_whole(&published.roots, ks, version, vouched).await?;
    Ok((manifest, published))
}

/// The top level `want` describes, from a root other than `primary`: the `given` roots first, then those the
/// earlier versions' manifests name. None when every root asked answered without it.
async fn top_elsewhere(
    primary: &Store,
    ks: &str,
    p: &pointer::Pointer,
    want: &ObjectRef,
    given: Vec<Store>,
) -> Result<Option<(Manifest, String)>, Error> {
    let mut unavailable = None;
    let mut earlier: Vec<&String> = Vec::new();
    for v in p.previous.iter().chain(p.history.iter().map(|r| &r.version)) {
        if *v != p.version && !earlier.contains(&v) {
            earlier.push(v);
        }
    }
    let mut candidates = given;
    for v in earlier.into_iter().take(EARLIER_VERSIONS) {
        match Manifest::read_top(primary.inner.as_ref(), ks, v).await {
            Ok(m) => {
                for url in &m.replicas {
                    match Store::open(url) {
                        Ok(root) => candidates.push(root),
                        Err(e) => eprintln!("warning: {url}, named by version {v}: {e}; skipped"),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                unavailable.get_or_insert(e);
            }
            Err(_) => {}
        }
    }
    let mut asked = vec![primary.url.clone()];
    for root in candidates {
        if asked.contains(&root.url) {
            continue;
        }
        asked.push(root.url.clone());
        match Manifest::read_top_ref(root.inner.as_ref(), ks, &p.version).await {
            Ok((m, got)) if got == *want => return Ok(Some((m, root.url))),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                eprintln!("warning: {}: {e}", root.url);
                unavailable.get_or_insert(e);
            }
            _ => {}
        }
    }
    unavailable.map_or(Ok(None), Err)
}
