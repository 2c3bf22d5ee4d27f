//! Ingest from where data lives: Parquet written by pyarrow and DuckDB, gzip and zstd text, local and on S3
//! (LocalStack), `--value-columns` JSON, bad rows named by file and row, resume and its refusal when an
//! object was replaced. Needs Python with pyarrow and duckdb (scripts/test.sh installs it; under CI=true a
//! missing one fails).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use cairn_ingest::{IngestError, IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, versions::pointer};
use cairn_tests::{TestServer, encode, python_or_skip, s3, workspace_root};
use object_store::{ObjectStoreExt, PutPayload};

fn make_lake(py: &Path, mode: &str, dest: &Path) -> Vec<u8> {
    let out =
        Command::new(py).arg(workspace_root().join("tests/interop/make_lake.py")).arg(mode).arg(dest).output().unwrap();
    assert!(out.status.success(), "make_lake.py {mode}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

async fn ingest_sources(sources: &[&str], ks: &str, store: &Store) -> Result<cairn_ingest::IngestReport, IngestError> {
    let mut opts = IngestOptions::new("", ks, store.clone());
    opts.inputs = sources.iter().map(PathBuf::from).collect();
    opts.shards = Some(3);
    opts.source_settings = s3::aws_settings().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await
}

/// Every key answers its exact bytes over HTTP.
async fn answers_over_http(store: &Store, ks: &str, expected: &BTreeMap<String, Vec<u8>>) {
    let server = TestServer::start(store.clone(), EngineConfig::default()).await;
    let http = reqwest::Client::new();
    for (k, v) in expected {
        let r = http.get(server.url(&format!("/v1/keyspaces/{ks}/keys/{}", encode(k)))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{ks} {k}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), v.as_slice(), "{ks} {k}");
    }
}

async fn upload_dir(bucket: &str, prefix: &str, dir: &Path) {
    let store = s3::store(&format!("s3://{bucket}"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        // The key as written (`Path::from` would percent-encode the `%` of `10%3A00`).
        let key = object_store::path::Path::parse(format!("{prefix}/{name}")).unwrap();
        store.inner.put(&key, PutPayload::from(bytes)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_from_pyarrow_and_duckdb_local_and_on_s3_answers_every_key_byte_exactly() {
    let Some(py) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let expected: BTreeMap<String, String> = serde_json::from_slice(&make_lake(&py, "lake", &lake)).unwrap();
    let expected: BTreeMap<String, Vec<u8>> = expected.into_iter().map(|(k, v)| (k, unhex(&v))).collect();
    assert_eq!(expected.len(), 2000 + 1500 + 1200);
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();

    // A directory (Spark's _SUCCESS and .crc skipped) and a glob give the same keyspace.
    let r = ingest_sources(&[lake.to_str().unwrap()], "dir", &store).await.unwrap();
    assert_eq!(r.rows, expected.len() as u64);
    let glob = format!("{}/part-*.parquet", lake.display());
    assert_eq!(ingest_sources(&[&glob], "glob", &store).await.unwrap().fingerprint, r.fingerprint);
    answers_over_http(&store, "dir", &expected).await;

    // The same files on S3, as a prefix and as a glob over keys.
    // Beside them: a folder marker (the console's "Create folder"), a sibling prefix `features-old/` that
    // `features/` must not take in, and a key with `%` as Hive escapes partition values.
    let bucket = s3::bucket("lake").await;
    let part = "features/dt=2026-12-01 10%3A00";
    upload_dir(&bucket, part, &lake).await;
    let client = s3::client();
    client.put_object().bucket(&bucket).key("features/").send().await.unwrap();
    let raw = s3::store(&format!("s3://{bucket}"));
    raw.inner.put(&"features-old/part-9.parquet".into(), PutPayload::from(&b"not parquet"[..])).await.unwrap();
    let prefix = format!("s3://{bucket}/features/");
    let on_s3 = ingest_sources(&[&prefix], "s3dir", &store).await.unwrap();
    assert_eq!(on_s3.rows, expected.len() as u64);
    answers_over_http(&store, "s3dir", &expected).await;
    let pattern = format!("s3://{bucket}/{part}/*.parquet");
    assert_eq!(ingest_sources(&[&pattern], "s3glob", &store).await.unwrap().rows, expected.len() as u64);
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let ks = engine.keyspace("s3glob").await.unwrap();
    assert_eq!(
        ks.manifest().source.files,
        (0..3).map(|i| format!("s3://{bucket}/{part}/part-0000{i}.parquet")).collect::<Vec<_>>(),
        "inputs are listed sorted and recorded in the manifest"
    );
    // One object by its key.
    let one = format!("s3://{bucket}/{part}/part-00001.parquet");
    assert_eq!(ingest_sources(&[&one], "s3one", &store).await.unwrap().rows, 1500);
    // Hive names its files without an extension (`000000_0`): Parquet is told by its magic, here and locally.
    let hive = std::fs::read(lake.join("part-00001.parquet")).unwrap();
    raw.inner.put(&"hive/t/000000_0".into(), PutPayload::from(hive.clone())).await.unwrap();
    let hive_s3 = format!("s3://{bucket}/hive/t/");
    assert_eq!(ingest_sources(&[&hive_s3], "hive", &store).await.unwrap().rows, 1500);
    let hive_dir = dir.path().join("hive");
    std::fs::create_dir(&hive_dir).unwrap();
    std::fs::write(hive_dir.join("000000_0"), &hive).unwrap();
    assert_eq!(ingest_sources(&[hive_dir.to_str().unwrap()], "hivelocal", &store).await.unwrap().rows, 1500);
    // A glob's `*` stays within one level; a prefix with nothing under it is an error, not an empty keyspace.
    let none = ingest_sources(&[&format!("s3://{bucket}/features/*.parquet")], "none", &store).await.unwrap_err();
    assert!(none.to_string().contains("nothing to ingest"), "{none}");
}

#[tokio::test]
async fn value_columns_store_the_documented_json() {
    let Some(py) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("features.parquet");
    make_lake(&py, "features", &file);
    let store_dir = dir.path().join("store");
    let out = cairn(&[
        "ingest",
        file.to_str().unwrap(),
        "-k",
        "feat",
        "--key-column",
        "id",
        "--value-columns",
        "s,i,f,n,l,b",
        "--store",
        store_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engine = Engine::new(Store::open(store_dir.to_str().unwrap()).unwrap(), EngineConfig::default());
    let get = |k: &'static str| {
        let engine = &engine;
        async move { String::from_utf8(engine.get("feat", k).await.unwrap().unwrap().to_vec()).unwrap() }
    };
    // The order given, integers exact, floats shortest round-trip, NaN null, nulls written, binary as hex.
    assert_eq!(get("k1").await, r#"{"s":"a \"q\"\n","i":1,"f":1.5,"n":null,"l":[1,2],"b":"00ff"}"#);
    assert_eq!(get("k2").await, r#"{"s":"ü","i":-9007199254740993,"f":0.1,"n":null,"l":[],"b":""}"#);
    assert_eq!(get("k3").await, r#"{"s":null,"i":null,"f":null,"n":null,"l":null,"b":null}"#);

    // Missing and mistyped columns are named; nothing is published.
    for (args, says) in [
        (vec!["--value-columns", "s,nope"], "no value column \"nope\""),
        (vec!["--key-column", "i"], "key column \"i\" is Int64"),
        (vec!["--key-column", "id", "--value-column", "l"], "value column \"l\" is List"),
        (vec!["--key-column", "id", "--value-columns", "s,s"], "names \"s\" twice"),
    ] {
        let mut all = vec!["ingest", file.to_str().unwrap(), "-k", "bad", "--store", store_dir.to_str().unwrap()];
        all.extend(args);
        let out = cairn(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{all:?}: {err}");
    }
    assert!(pointer::read(engine_store(&store_dir).inner.as_ref(), "bad").await.unwrap().is_none());
}

fn engine_store(dir: &Path) -> Store {
    Store::open(dir.to_str().unwrap()).unwrap()
}

fn cairn(args: &[&str]) -> Output {
    cairn_tests::process::cairn_command().args(args).envs(s3_env()).output().unwrap()
}

fn s3_env() -> Vec<(&'static str, String)> {
    s3::aws_settings()
}

#[tokio::test]
async fn gzip_and_zstd_copies_of_the_reference_data_give_the_same_keyspace() {
    let dir = tempfile::tempdir().unwrap();
    let plain = std::fs::read(cairn_tests::example_data()).unwrap();
    let gz = dir.path().join("example.data.gz");
    // Two gzip members back to back (as `cat a.gz b.gz` makes): both are read.
    let half = plain.len() / 2 + plain[plain.len() / 2..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let mut file = std::fs::File::create(&gz).unwrap();
    for part in [&plain[..half], &plain[half..]] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(part).unwrap();
        file.write_all(&e.finish().unwrap()).unwrap();
    }
    let zst = dir.path().join("example.data.zst");
    std::fs::write(&zst, zstd::encode_all(plain.as_slice(), 3).unwrap()).unwrap();

    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let example = cairn_tests::example_data();
    let base = ingest_sources(&[example.to_str().unwrap()], "plain", &store).await.unwrap();
    for (ks, f) in [("gz", &gz), ("zst", &zst)] {
        let r = ingest_sources(&[f.to_str().unwrap()], ks, &store).await.unwrap();
        assert_eq!(r.rows, base.rows, "{ks}");
    }
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (k, v) in cairn_tests::read_dataset(&example) {
        for ks in ["gz", "zst"] {
            assert_eq!(engine.get(ks, &k).await.unwrap().as_deref(), Some(v.as_slice()), "{ks} {k}");
        }
    }

    // A bad line is reported at its line of the decompressed file.
    let mut broken = plain.clone();
    let line_5000 = broken.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(4998).unwrap().0 + 1;
    broken.splice(line_5000..line_5000, b"no-space-here\n".iter().copied());
    let bad = dir.path().join("broken.data.zst");
    std::fs::write(&bad, zstd::encode_all(broken.as_slice(), 3).unwrap()).unwrap();
    let err = ingest_sources(&[bad.to_str().unwrap()], "broken", &store).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{}:5000: no space", bad.display())), "{err}");
}

#[tokio::test]
async fn a_null_key_deep_in_the_second_file_is_named_by_file_and_row_and_nothing_is_published() {
    let Some(py) = python_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("nk");
    make_lake(&py, "nullkey", &lake);
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let err = ingest_sources(&[lake.to_str().unwrap()], "nk", &store).await.unwrap_err();
    let IngestError::BadInput(list) = &err else { panic!("{err}") };
    assert_eq!(list.len(), 1, "{err}");
    let file = lake.join("file-1.parquet");
    // Row 1,234 of the third row group of 2,000 rows: row 5,234 of the file.
    assert_eq!(
        list[0].to_string(),
        format!("{}:row 5234: null key (row group 3, its row 1234; column \"key\")", file.display())
    );
    assert!(pointer::read(store.inner.as_ref(), "nk").await.unwrap().is_none());
}

// -- resume from S3 ------------------------------------------------------------------------------------------

const SHARDS: usize = 8;

fn ingest_cmd(source: &str, store: &Path) -> Command {
    let mut c = cairn_tests::process::cairn_command();
    c.args(["ingest", source, "-k", "lake", "--threads", "1", "--store", store.to_str().unwrap()]).envs(s3_env());
    if store.file_name().is_some_and(|n| n == "store") {
        c.args(["--shards", &SHARDS.to_string()]);
    }
    c
}

fn run_and_kill(source: &str, store: &Path, done: usize) -> usize {
    cairn_tests::crash::run_and_kill(ingest_cmd(source, store), store, "lake", done)
}

fn text_rows(seed: usize, n: usize) -> (String, Vec<(String, String)>) {
    let rows: Vec<(String, String)> =
        (0..n).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{seed} {i} {}", "x".repeat(i % 40)))).collect();
    (rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect(), rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_ingest_from_s3_resumes_and_refuses_to_when_an_object_was_replaced() {
    let bucket = s3::bucket("resume").await;
    let src = s3::store(&format!("s3://{bucket}"));
    let (a, rows_a) = text_rows(0, 100_000);
    let (b, rows_b) = text_rows(1, 100_000);
    src.inner.put(&"in/a.data".into(), PutPayload::from(a.into_bytes())).await.unwrap();
    src.inner.put(&"in/b.data.gz".into(), PutPayload::from(gzip(b.as_bytes()))).await.unwrap();
    let source = format!("s3://{bucket}/in/");
    let dir = tempfile::tempdir().unwrap();

    // Killed while reading from S3 (its checkpoint just made), rerun and killed after 2 shards, rerun: it
    // resumes them.
    let store_dir = dir.path().join("store");
    run_and_kill(&source, &store_dir, 0);
    assert!(pointer::read(engine_store(&store_dir).inner.as_ref(), "lake").await.unwrap().is_none());
    let killed = run_and_kill(&source, &store_dir, 2);
    let out = ingest_cmd(&source, &store_dir).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // At least the shards seen checkpointed before the kill (one more may have landed meanwhile).
    let resumed: usize = log
        .split("shards already written")
        .next()
        .and_then(|head| head.rsplit(": ").next())
        .and_then(|n| n.split(" of ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume in {log}"));
    assert!(resumed >= killed && resumed < SHARDS, "{resumed} resumed, {killed} seen: {log}");
    let engine = Engine::new(engine_store(&store_dir), EngineConfig::default());
    for (k, v) in rows_a.iter().chain(&rows_b).step_by(97) {
        assert_eq!(engine.get("lake", k).await.unwrap().as_deref(), Some(v.as_bytes()));
    }

    // Killed again (into another store, the shard count picked from the sizes), then one object replaced and
    // one added: no resume, a fresh version, and the message names both.
    let (b2, rows_b2) = text_rows(2, 100_000);
    let (c, rows_c) = text_rows(3, 1_000);
    let store2 = dir.path().join("store2");
    run_and_kill(&source, &store2, 2);
    src.inner.put(&"in/b.data.gz".into(), PutPayload::from(gzip(b2.as_bytes()))).await.unwrap();
    src.inner.put(&"in/c.data".into(), PutPayload::from(c.into_bytes())).await.unwrap();
    let out = ingest_cmd(&source, &store2).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("the inputs changed since the interrupted run")
            && log.contains(&format!("s3://{bucket}/in/b.data.gz: "))
            && log.contains(&format!("s3://{bucket}/in/c.data is new")),
        "{log}"
    );
    assert!(!log.contains("already written"), "{log}");
    let engine = Engine::new(engine_store(&store2), EngineConfig::default());
    for (k, v) in rows_a.iter().chain(&rows_b2).chain(&rows_c).step_by(97) {
        assert_eq!(engine.get("lake", k).await.unwrap().as_deref(), Some(v.as_bytes()));
    }
    for (k, _) in rows_b.iter().step_by(97) {
        assert_eq!(engine.get("lake", k).await.unwrap(), None, "the replaced object's old rows are gone");
    }

    // An object replaced after it was listed fails its read instead of mixing two versions.
    let settings: Vec<(String, String)> = s3::aws_settings().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let listed = cairn_ingest::listing::list_sources_with(&[PathBuf::from(&source)], None, &settings).await.unwrap();
    src.inner.put(&"in/a.data".into(), PutPayload::from(&b"other 1\n"[..])).await.unwrap();
    let cairn_ingest::input::Location::Object(o) = &listed[0].location else { panic!("an object") };
    let err = o.fetch(0..4).await.unwrap_err().to_string();
    assert!(err.contains("changed or disappeared since it was listed"), "{err}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn column_options_on_text_are_refused_and_symlinked_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let example = cairn_tests::example_data();
    let mut opts = IngestOptions::new(&example, "cols", store.clone());
    opts.columns.key = "id".into();
    let err = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap_err().to_string();
    assert!(err.contains("has no columns"), "{err}");
    assert!(pointer::read(store.inner.as_ref(), "cols").await.unwrap().is_none());

    // A directory of links to the data: read through them, not skipped.
    let lake = dir.path().join("links");
    std::fs::create_dir(&lake).unwrap();
    std::os::unix::fs::symlink(&example, lake.join("part-0.data")).unwrap();
    // A link back up the tree is walked once, not until the kernel refuses (or forever, with two of them).
    std::os::unix::fs::symlink(&lake, lake.join("current")).unwrap();
    std::os::unix::fs::symlink(".", lake.join("again")).unwrap();
    let r = ingest_sources(&[lake.to_str().unwrap()], "links", &store).await.unwrap();
    assert_eq!(r.rows, cairn_tests::read_dataset(&example).len() as u64);
    let mut opts = IngestOptions::new(&example, "noerrors", store.clone());
    opts.max_errors = 0;
    let err = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap_err().to_string();
    assert!(err.contains("max_errors"), "{err}");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), lake.join("part-1.data")).unwrap();
    let err = ingest_sources(&[lake.to_str().unwrap()], "dangling", &store).await.unwrap_err().to_string();
    assert!(err.contains("part-1.data"), "a dangling link is an error: {err}");
}
