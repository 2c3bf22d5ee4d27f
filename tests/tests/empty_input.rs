//! An input with no keys must not replace a live keyspace (issue 28, defect 1): an empty text file, a
//! footer-only Parquet file (what Spark writes for an empty partition) or an external build whose writers
//! reported nothing published a 0-key version over the current one, exit 0, and every key then answered
//! 404. Now they are refused, nothing is published, and `--allow-empty` (or `allow_empty`) says it is meant.
//! An external build publishes only the shards its writers reported: a shard without an entry (its writer
//! has not finished, or its report was lost) is no longer written empty by the publish.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cairn_ingest::Build;
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;
use cairn_tests::process::{cairn, text};

fn write_rows(path: &Path, n: usize) -> Vec<(String, String)> {
    let rows: Vec<(String, String)> = (0..n).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}"))).collect();
    std::fs::write(path, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    rows
}

/// A Parquet file with the key and value columns and no row: a footer only.
fn footer_only_parquet(path: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
    let empty = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(Vec::<&str>::new())), Arc::new(StringArray::from(Vec::<&str>::new()))],
    )
    .unwrap();
    w.write(&empty).unwrap();
    w.close().unwrap();
}

fn current(store: &Path, ks: &str) -> Option<String> {
    let body = std::fs::read(store.join(format!("keyspace={ks}/CURRENT"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    Some(v["version"].as_str().unwrap().to_string())
}

#[test]
fn an_empty_input_is_refused_and_the_live_version_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("st");
    let st = store.to_str().unwrap();
    let rows = write_rows(&dir.path().join("a.data"), 2_000);
    let a = dir.path().join("a.data");
    let out = cairn(&["ingest", a.to_str().unwrap(), "-k", "live", "--store", st], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let live = current(&store, "live").expect("published");

    let empty = dir.path().join("empty.data");
    std::fs::write(&empty, b"").unwrap();
    let parquet = dir.path().join("part-00000.parquet");
    footer_only_parquet(&parquet);
    for input in [&empty, &parquet] {
        let out = cairn(&["ingest", input.to_str().unwrap(), "-k", "live", "--store", st], None, &[]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{}: an input with no keys was published:\n{err}", input.display());
        assert!(err.contains("no keys") && err.contains("--allow-empty"), "{}: {err}", input.display());
        assert_eq!(current(&store, "live").as_deref(), Some(live.as_str()), "{}: the pointer moved", input.display());
        let left = std::fs::read_dir(store.join("keyspace=live/_ingest")).map_or(0, |d| d.count());
        assert_eq!(left, 0, "{}: a refused ingest left its checkpoint", input.display());
    }
    // The live version still answers.
    let engine_store = Store::open(st).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine = cairn_shared::Engine::new(engine_store, Default::default());
    let got = rt.block_on(engine.get("live", &rows[7].0)).unwrap();
    assert_eq!(got.as_deref(), Some(rows[7].1.as_bytes()));

    // Said on purpose: published, with 0 keys.
    let out = cairn(&["ingest", empty.to_str().unwrap(), "-k", "live", "--store", st, "--allow-empty"], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let now = current(&store, "live").unwrap();
    assert_ne!(now, live);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join(format!("keyspace=live/manifests/{now}.json"))).unwrap())
            .unwrap();
    assert_eq!(m["rows"], 0);
}

/// The library refuses too, with the error kind a caller can act on.
#[tokio::test]
async fn the_library_refuses_an_empty_ingest_into_a_new_keyspace_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("st").to_str().unwrap()).unwrap();
    let empty = dir.path().join("empty.data");
    std::fs::write(&empty, b"").unwrap();
    let err = cairn_tests::ingest(&empty, "fresh", &store, None).await.expect_err("an empty input was published");
    assert_eq!(err.kind(), cairn_shared::ErrorKind::InvalidInput, "{err}");
    assert!(pointer::read(store.inner.as_ref(), "fresh").await.unwrap().is_none(), "a pointer was written");
}

/// `Build.publish` used to write an empty object for every shard without an entry and publish it: a writer
/// still running (or whose report was lost) had its rows replaced by nothing. Now a shard without an entry
/// fails the publish, and nothing is published.
#[tokio::test]
async fn an_external_build_does_not_publish_shards_it_has_no_entry_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("st").to_str().unwrap()).unwrap();
    let lease = std::time::Duration::from_secs(30);
    let build = Build::begin("ext", vec![store.clone()], PlacementSpec::jump(4), lease).await.unwrap();
    let target = build.target().clone();
    let mut entries = Vec::new();
    for s in [0u32, 2] {
        let tmp = tempfile::tempdir().unwrap();
        let mut obj = cairn_ingest::ShardObject::create(&target, &Default::default(), s, tmp.path()).unwrap();
        obj.append(&format!("key-{s}"), b"value").unwrap();
        entries.push(obj.finish_exclusive(std::slice::from_ref(&store)).await.unwrap());
    }
    // Shards 1 and 3 have no entry: their writers have not reported.
    let err = build.publish(entries, vec![]).await.expect_err("published shards nobody reported");
    let msg = err.to_string();
    assert!(msg.contains("shard 1") && msg.contains("no entry"), "{msg}");
    assert!(pointer::read(store.inner.as_ref(), "ext").await.unwrap().is_none(), "something was published");
    // The late writer of shard 1 can still write its rows: nothing took its path.
    let tmp = tempfile::tempdir().unwrap();
    let mut late = cairn_ingest::ShardObject::create(&target, &Default::default(), 1, tmp.path()).unwrap();
    late.append("key-1", b"late value").unwrap();
    late.finish_exclusive(std::slice::from_ref(&store)).await.expect("the late writer's rows are not refused");
    build.abort().await;
}
