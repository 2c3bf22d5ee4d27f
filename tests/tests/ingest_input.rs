//! Input handling: awkward bytes round-trip exactly, other formats load, bad input is reported with
//! file:line and publishes nothing.

use std::io::Write;
use std::path::Path;

use cairn_ingest::IngestError;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::layout, versions::pointer};
use cairn_tests::ingest;
use futures::TryStreamExt;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

fn awkward_values() -> Vec<(String, Vec<u8>)> {
    let big: Vec<u8> = (0..60_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let vals: Vec<Vec<u8>> = vec![
        b"  leading and trailing  ".to_vec(),
        b"multiple   inner    spaces".to_vec(),
        b"\ttabs\tinside\t".to_vec(),
        b"carriage return at end\r".to_vec(),
        Vec::new(),
        b" ".to_vec(),
        "non-ASCII: żółć 日本語 🪨".as_bytes().to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, b'x'],
        big,
        b"{\"json\": [1, 2]}, \"quotes\" 'and' \\backslashes\\".to_vec(),
    ];
    vals.into_iter().map(|v| (uuid::Uuid::new_v4().to_string(), v)).collect()
}

#[tokio::test]
async fn awkward_values_round_trip_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let rows = awkward_values();
    let mut file = Vec::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        file.extend_from_slice(k.as_bytes());
        file.push(b' ');
        file.extend_from_slice(v);
        if i + 1 < rows.len() {
            file.push(b'\n'); // the last line has no newline: still a record
        }
    }
    let input = dir.path().join("awkward.data");
    write(&input, &file);
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let report = ingest(&input, "awk", &store, Some(3)).await.unwrap();
    assert_eq!(report.rows, rows.len() as u64);
    let engine = Engine::new(store, EngineConfig::default());
    for (k, v) in &rows {
        assert_eq!(engine.get("awk", k).await.unwrap().as_deref(), Some(v.as_slice()), "key {k}");
    }
}

#[tokio::test]
async fn json_lines_and_csv_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        (0..500).map(|i| (uuid::Uuid::new_v4().to_string(), format!("value, \"{i}\" ü"))).collect();
    let jsonl: String =
        rows.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v}).to_string() + "\n").collect();
    write(&dir.path().join("in.jsonl"), jsonl.as_bytes());
    let mut csv = String::from("value,key\n"); // column order comes from the header
    for (k, v) in &rows {
        csv.push_str(&format!("\"{}\",{k}\n", v.replace('"', "\"\"")));
    }
    write(&dir.path().join("in.csv"), csv.as_bytes());
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    ingest(&dir.path().join("in.jsonl"), "j", &store, Some(2)).await.unwrap();
    ingest(&dir.path().join("in.csv"), "c", &store, Some(2)).await.unwrap();
    let engine = Engine::new(store, EngineConfig::default());
    for (k, v) in &rows {
        assert_eq!(engine.get("j", k).await.unwrap().as_deref(), Some(v.as_bytes()));
        assert_eq!(engine.get("c", k).await.unwrap().as_deref(), Some(v.as_bytes()));
    }
}

/// A UTF-8 byte-order mark (what editors on Windows and spreadsheets save files with) is not part of the
/// first key. Found by review: text input kept it, so the first key answered only with the mark in front;
/// CSV already dropped it. Plain and gzip text, JSON Lines and CSV, each with a mark.
#[tokio::test]
async fn a_byte_order_mark_is_not_part_of_the_first_key() {
    let dir = tempfile::tempdir().unwrap();
    let bom = "\u{feff}";
    let text = format!("{bom}first 1\nsecond 2\n");
    write(&dir.path().join("plain.txt"), text.as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    write(&dir.path().join("packed.txt.gz"), &gz.finish().unwrap());
    let jsonl = format!("{bom}{{\"key\": \"first\", \"value\": \"1\"}}\n{{\"key\": \"second\", \"value\": \"2\"}}\n");
    write(&dir.path().join("lines.jsonl"), jsonl.as_bytes());
    write(&dir.path().join("sheet.csv"), format!("{bom}key,value\nfirst,1\nsecond,2\n").as_bytes());
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (i, name) in ["plain.txt", "packed.txt.gz", "lines.jsonl", "sheet.csv"].iter().enumerate() {
        let ks = format!("bom{i}");
        ingest(&dir.path().join(name), &ks, &store, Some(1)).await.unwrap();
        assert_eq!(engine.get(&ks, "first").await.unwrap().as_deref(), Some(&b"1"[..]), "{name}");
        assert_eq!(engine.get(&ks, &format!("{bom}first")).await.unwrap(), None, "{name}");
    }
}

/// Runs an ingest expected to fail on bad input; returns the messages and checks nothing was published.
async fn expect_bad_input(input: &Path, store: &Store) -> Vec<String> {
    let err = ingest(input, "bad", store, Some(2)).await.unwrap_err();
    let IngestError::BadInput(errors) = &err else { panic!("expected bad input, got {err}") };
    assert!(pointer::read(store.inner.as_ref(), "bad").await.unwrap().is_none(), "a pointer was published");
    let left: Vec<_> = store.inner.list(Some(&layout::keyspace_dir("bad"))).try_collect().await.unwrap();
    assert!(left.is_empty(), "objects left behind: {left:?}");
    errors.iter().map(|e| e.to_string()).collect()
}

#[tokio::test]
async fn bad_input_is_reported_with_file_and_line_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let good = "6f9619ff-8b86-d011-b42d-00cf4fc964ff ok\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("nospace.data", format!("{good}justakey\n"), ":2: no space between key and value"),
        ("emptykey.data", format!("{good} value without key\n"), ":2: empty key"),
        ("emptyline.data", format!("{good}\n{good}"), ":2: empty line"),
        ("tabkey.data", format!("{good}a\tb value\n"), ":2: invalid key: key contains a tab"),
        ("longkey.data", format!("{} v\n", "k".repeat(1025)), ":1: invalid key: key is 1025 bytes"),
        (
            "dup.data",
            format!("{good}other x\n{good}"),
            ":3: duplicate key \"6f9619ff-8b86-d011-b42d-00cf4fc964ff\" (first seen at ",
        ),
    ];
    for (name, body, expected) in cases {
        let path = dir.path().join(name);
        write(&path, body.as_bytes());
        let errors = expect_bad_input(&path, &store).await;
        assert!(
            errors.iter().any(|e| e.contains(name) && e.contains(expected)),
            "{name}: expected {expected:?} in {errors:?}"
        );
    }
    let mut bad_key = good.as_bytes().to_vec();
    bad_key.extend_from_slice(b"\xff\xfe v\n");
    write(&dir.path().join("utf8.data"), &bad_key);
    let errors = expect_bad_input(&dir.path().join("utf8.data"), &store).await;
    assert!(errors[0].contains("utf8.data:2: invalid key: key is not valid UTF-8"), "{errors:?}");
}

#[tokio::test]
async fn duplicates_across_files_of_a_directory_and_many_errors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    write(&inputs.join("a.data"), b"k1 v1\nk2 v2\n");
    write(&inputs.join("b.data"), b"k3 v3\nk1 again\n");
    let errors = expect_bad_input(&inputs, &store).await;
    assert!(
        errors[0].contains("b.data:2: duplicate key \"k1\" (first seen at ") && errors[0].contains("a.data:1"),
        "{errors:?}"
    );

    let many: String = (0..50).map(|i| format!("line{i}\n")).collect();
    write(&dir.path().join("many.data"), many.as_bytes());
    let errors = expect_bad_input(&dir.path().join("many.data"), &store).await;
    assert_eq!(errors.len(), 20, "reports are capped, and more than the first is shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_larger_than_the_memory_budget_spills_sorted_runs_and_merges() {
    use cairn_ingest::{IngestOptions, NoProgress};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        (0..250_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("value {i} {}", "x".repeat(i % 90)))).collect();
    let mut body: String = rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    std::fs::write(dir.path().join("big.data"), &body).unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let mut opts = IngestOptions::new(dir.path().join("big.data"), "big", store.clone());
    opts.shards = Some(3);
    opts.memory_budget = 16 << 20; // ~8 MiB chunks for ~27 MB of input
    opts.tmp_dir = Some(dir.path().to_path_buf());
    let report = cairn_ingest::ingest(opts.clone(), Arc::new(NoProgress)).await.unwrap();
    assert!(report.runs_spilled >= 2, "expected spilled runs, got {}", report.runs_spilled);
    assert_eq!(report.rows, rows.len() as u64);
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (k, v) in rows.iter().step_by(7) {
        assert_eq!(engine.get("big", k).await.unwrap().as_deref(), Some(v.as_bytes()));
    }
    // The spill directory is cleaned up.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("cairn-ingest-"))
        .collect();
    assert!(leftovers.is_empty());

    // A duplicate whose two copies land in different spilled runs is still caught.
    body.push_str(&format!("{} again\n", rows[0].0));
    std::fs::write(dir.path().join("big.data"), &body).unwrap();
    opts.keyspace = "big2".into();
    let err = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap_err();
    assert!(err.to_string().contains(&format!("big.data:{}: duplicate key", rows.len() + 1)), "{err}");
    assert!(err.to_string().contains("(first seen at ") && err.to_string().contains("big.data:1)"), "{err}");
}
