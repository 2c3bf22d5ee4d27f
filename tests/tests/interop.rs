//! Shards are plain Parquet: pyarrow and DuckDB open them unchanged, see the same rows in key order, a page
//! index and a bloom filter on the key. Needs Python with pyarrow and duckdb: `CAIRN_PYTHON`, or the venv
//! `scripts/test.sh` installs (~/.cache/cairn/pyenv). Under CI=true a missing interpreter fails the test.

use std::process::Command;

use cairn_shared::stores::Store;
use cairn_tests::{ingest, python_or_skip, workspace_root};
use serde_json::json;

#[tokio::test]
async fn shards_open_unchanged_in_pyarrow_and_duckdb() {
    let Some(py) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = Store::open(store_dir.to_str().unwrap()).unwrap();
    // Awkward values, including non-UTF-8 bytes, shipped through latin-1 so JSON can carry them.
    let mut rows: Vec<(String, Vec<u8>)> =
        (0..3000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}  x\t").into_bytes())).collect();
    rows.push(("zz-binary".into(), vec![0xff, 0x00, b' ', 0x80]));
    rows.push(("aa-empty".into(), vec![]));
    let mut input = Vec::new();
    for (k, v) in &rows {
        input.extend_from_slice(k.as_bytes());
        input.push(b' ');
        input.extend_from_slice(v);
        input.push(b'\n');
    }
    std::fs::write(dir.path().join("in.data"), &input).unwrap();
    let report = ingest(&dir.path().join("in.data"), "interop", &store, Some(3)).await.unwrap();
    let m =
        cairn_shared::format::manifest::Manifest::read(store.inner.as_ref(), "interop", &report.version).await.unwrap();
    let latin1 = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    let samples: serde_json::Map<String, serde_json::Value> =
        rows.iter().step_by(37).chain(rows.iter().rev().take(2)).map(|(k, v)| (k.clone(), json!(latin1(v)))).collect();
    let expected = json!({
        "shards": m.shards.iter().map(|s| json!({"path": store_dir.join(&s.path), "rows": s.rows})).collect::<Vec<_>>(),
        "samples": samples,
    });
    let spec = dir.path().join("expected.json");
    std::fs::write(&spec, expected.to_string()).unwrap();
    let out = Command::new(py).arg(workspace_root().join("tests/interop/check_shards.py")).arg(&spec).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "interop check failed:\n{text}");
    assert!(text.contains("ok: 3 shards, 3002 rows"), "{text}");
}
