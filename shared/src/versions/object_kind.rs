//! What an object under `keyspace=<ks>/` is, for collection (gc.rs): a version's manifest, one of the objects
//! that go with it (shards, manifest groups, a delta's key filter, an interrupted staged copy), a run a
//! bulk load staged, or something gc never touches.

use object_store::path::Path;

/// What an object under `keyspace=<ks>/` is, for collection.
pub(crate) enum Kind {
    Manifest(String),
    Shard(String),
    /// A run a bulk load staged: it goes with its version, and before, once the version has a manifest
    /// (its shards are written; a late map task's run is never read).
    Staged(String),
    Other,
}

pub(crate) fn kind(ks_dir: &str, path: &Path) -> Kind {
    let rel = path.as_ref().strip_prefix(ks_dir).and_then(|r| r.strip_prefix('/')).unwrap_or("");
    let mut parts = rel.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("manifests"), Some(f), None) => f.strip_suffix(".json").map_or(Kind::Other, |v| Kind::Manifest(v.into())),
        // A manifest's groups go with its shards: deleted after the manifest, so no listed version lacks them.
        // So does a delta layer's key filter.
        (Some("groups"), Some(v), Some(f)) if (f.ends_with(".json") || f == "filter.bin") && parts.next().is_none() => {
            Kind::Shard(v.into())
        }
        // A run a bulk load staged for its reducers (left by one that stopped before deleting them).
        (Some("groups"), Some(v), Some("runs"))
            if parts.next().is_some_and(|f| f.ends_with(".run")) && parts.next().is_none() =>
        {
            Kind::Staged(v.into())
        }
        // A shard object, or one staged for a conditional copy into place (`<version>.parquet.staging-<id>`,
        // left by a writer that crashed between the two): it goes with its version.
        (Some(dir), Some(f), None) if dir.starts_with("shard=") => match f.split_once(".parquet.staging-") {
            Some((v, _)) => Kind::Shard(v.into()),
            None => f.strip_suffix(".parquet").map_or(Kind::Other, |v| Kind::Shard(v.into())),
        },
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_manifests_and_shard_objects_are_recognised() {
        let dir = "keyspace=ks";
        let v = |p: &str| match kind(dir, &Path::from(p)) {
            Kind::Manifest(v) => format!("m:{v}"),
            Kind::Shard(v) => format!("s:{v}"),
            Kind::Staged(v) => format!("r:{v}"),
            Kind::Other => "other".into(),
        };
        assert_eq!(v("keyspace=ks/manifests/v1.json"), "m:v1");
        assert_eq!(v("keyspace=ks/_serve.json"), "other");
        assert_eq!(v("keyspace=ks/shard=00003/v1.parquet"), "s:v1");
        assert_eq!(v("keyspace=ks/shard=00003/v1.parquet.staging-x"), "s:v1");
        assert_eq!(v("keyspace=ks/groups/v1/filter.bin"), "s:v1");
        assert_eq!(v("keyspace=ks/groups/v1/runs/p00003-t17-00000.run"), "r:v1");
        assert_eq!(v("keyspace=ks/groups/v1/00001.json"), "s:v1");
        for other in [
            "keyspace=ks/CURRENT",
            "keyspace=ks/_ingest/x.json",
            "keyspace=ks/shard=00003/v1.tmp",
            "keyspace=ks/notes/a/b",
        ] {
            assert_eq!(v(other), "other", "{other}");
        }
    }
}
