//! Where every object lives under a store root (docs/FORMAT.md is the reference):
//!
//! ```text
//! keyspace=<ks>/CURRENT                                 pointer to the published version (conditional writes)
//! keyspace=<ks>/manifests/<version>.json                one immutable manifest per version
//! keyspace=<ks>/groups/<version>/<nnnnn>.json           its shard entries, 128 to an object (over 1,024 shards)
//! keyspace=<ks>/groups/<version>/runs/<name>.run        sorted runs a Spark bulk load exchanges (while it runs)
//! keyspace=<ks>/shard=<nnnnn>/<version>.parquet         one sorted Parquet object per shard and version
//! keyspace=<ks>/_ingest/<ingest-id>.json                checkpoint of an unfinished ingest
//! keyspace=<ks>/_serve.json                             the fingerprint `cairn serve FILE` last published
//! ```

use object_store::path::Path;

pub const POINTER: &str = "CURRENT";

pub fn keyspace_dir(ks: &str) -> Path {
    Path::from(format!("keyspace={ks}"))
}

pub fn pointer_path(ks: &str) -> Path {
    Path::from(format!("keyspace={ks}/{POINTER}"))
}

pub fn manifests_dir(ks: &str) -> Path {
    Path::from(format!("keyspace={ks}/manifests"))
}

pub fn manifest_path(ks: &str, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/manifests/{version}.json"))
}

/// Group `g` of a manifest with more shards than one group holds.
pub fn group_path(ks: &str, version: &str, g: u32) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}/{g:05}.json"))
}

/// Where a version's manifest groups are.
/// The whole list of a version's input files (beside its groups: gc and discard take it with them).
pub fn sources_path(ks: &str, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}/sources.json"))
}

/// A delta layer's key filter (beside its groups: gc and discard take it with them).
pub fn filter_path(ks: &str, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}/filter.bin"))
}

/// The sorted runs a bulk load's map tasks stage for its reducers (beside its groups: gc and discard take
/// them with them; the load deletes them once published).
pub fn runs_dir(ks: &str, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}/runs"))
}

pub fn staged_run_path(ks: &str, version: &str, name: &str) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}/runs/{name}.run"))
}

pub fn groups_dir(ks: &str, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/groups/{version}"))
}

pub fn shard_path(ks: &str, shard: u32, version: &str) -> Path {
    Path::from(format!("keyspace={ks}/shard={shard:05}/{version}.parquet"))
}

/// What `cairn serve FILE` last published into `ks` (gc leaves it alone).
pub fn serve_record_path(ks: &str) -> Path {
    Path::from(format!("keyspace={ks}/_serve.json"))
}

pub fn checkpoint_path(ks: &str, ingest_id: &str) -> Path {
    Path::from(format!("keyspace={ks}/_ingest/{ingest_id}.json"))
}

/// The keyspace name in a `keyspace=<ks>` path segment.
pub fn keyspace_of_segment(segment: &str) -> Option<&str> {
    segment.strip_prefix("keyspace=")
}

/// Current UTC time, RFC 3339 with milliseconds (manifests, pointers, checkpoints).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A new version id: UTC time to the millisecond, then random bits, so ids sort by creation time and two
/// ingests started in the same millisecond still differ. Example: `20261124T052300123Z-3f9a0c1e`.
pub fn new_version() -> String {
    let now = std::time::SystemTime::now();
    let stamp: String =
        humantime::format_rfc3339_millis(now).to_string().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let nanos = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let salt = xxhash_rust::xxh3::xxh3_64(format!("{nanos}/{}/{:p}", std::process::id(), &now).as_bytes());
    format!("{stamp}-{:08x}", salt as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(shard_path("default", 7, "v1").as_ref(), "keyspace=default/shard=00007/v1.parquet");
        assert_eq!(pointer_path("ks").as_ref(), "keyspace=ks/CURRENT");
        let v = new_version();
        assert_eq!(v.len(), "20261124T052300123Z-3f9a0c1e".len(), "{v}");
        assert!(new_version() != v || new_version() != v);
    }
}
