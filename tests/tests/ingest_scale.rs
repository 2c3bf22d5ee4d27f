//! An ingest whose input makes hundreds of sorted runs under a small memory budget and a low open-file limit
//! (issue 30): it must succeed and serve every key. Before runs were merged with a bounded fan-in, every
//! shard's merge opened every run at once and such an ingest failed with "Too many open files".

use cairn_shared::config::EngineConfig;
use cairn_shared::{Engine, Store};
use cairn_tests::cairn_bin;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_runs_under_ulimit_64_ingest_and_serve_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        (0..150_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}-{}", "y".repeat(i % 40)))).collect();
    let body: String = rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let input = dir.path().join("many-runs.data");
    std::fs::write(&input, &body).unwrap();
    let store = dir.path().join("store");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // 64 KiB runs of ~90-byte records (with bookkeeping): ~700 records a run, over 200 runs:
    // far more than 64 descriptors can hold open at once.
    let mut sh = Command::new("sh");
    let out = cairn_tests::process::without_cairn_env(&mut sh)
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(cairn_bin())
        .args(["ingest", input.to_str().unwrap(), "-k", "many", "--store", store.to_str().unwrap()])
        .args(["--memory", "32MiB", "--run-size", "64KiB", "--threads", "2", "--shards", "16"])
        .args(["--tmp-dir", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ingest failed:\n{err}");
    let spilled: usize = err
        .split_once(" sorted runs spilled")
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no run count in:\n{err}"));
    assert!(spilled >= 100, "only {spilled} runs: the test does not exercise a bounded fan-in\n{err}");
    assert!(err.contains("merged together in"), "the runs were not merged before writing:\n{err}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "scratch space left behind");

    let engine = Engine::new(Store::open(store.to_str().unwrap()).unwrap(), EngineConfig::default());
    for (k, v) in &rows {
        assert_eq!(engine.get("many", k).await.unwrap().as_deref(), Some(v.as_bytes()), "key {k}");
    }
    assert_eq!(engine.get("many", &uuid::Uuid::new_v4().to_string()).await.unwrap(), None);
}

/// Parquet and gzip input get the shard count their rows would get as text (issue 30): the count comes from the
/// footers' uncompressed column sizes, not from the file size times a guessed expansion (which gave three
/// times the shards for uuid keys, which snappy barely compresses, and made Parquet ingest slower than text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_and_gzip_inputs_are_sharded_like_the_same_rows_as_text() {
    use arrow_array::{RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        (0..40_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("value {i} {}", "w".repeat(i % 50)))).collect();
    let text = dir.path().join("rows.data");
    std::fs::write(&text, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    let parquet = dir.path().join("rows.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>())),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let as_text = cairn_tests::ingest(&text, "t", &store, None).await.unwrap();
    let as_parquet = cairn_tests::ingest(&parquet, "p", &store, None).await.unwrap();
    // And gzip text, measured from its first MiBs decompressed (it was 3x its size: twice the shards here).
    let gz = dir.path().join("rows.data.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, &std::fs::read(&text).unwrap()).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let as_gzip = cairn_tests::ingest(&gz, "g", &store, None).await.unwrap();
    assert!(as_text.shards >= 4, "{} shards: too few to compare", as_text.shards);
    let t = as_text.shards as f64;
    for (what, n) in [("Parquet", as_parquet.shards), ("gzip", as_gzip.shards)] {
        // Counts are rounded up per 512 KiB: one shard apart is the same size.
        assert!((n as f64 - t).abs() <= (t * 0.15).max(1.0), "text: {t} shards, {what}: {n}");
    }
}
