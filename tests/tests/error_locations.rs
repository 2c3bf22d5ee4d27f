//! Bad input is reported at the exact line (text, JSON Lines, CSV; compressed or not) or row (Parquet) of
//! the first bad record, at positions that are not batch boundaries, and a truncated compressed file is bad
//! input at its last good line: nothing published, no checkpoint left (issue 30).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cairn_ingest::{IngestError, InputError};
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;
use cairn_tests::ingest;

const N: usize = 10_000;
/// 1-based record number of the bad record: inside the second 4,096-record batch, not at its start.
const BAD: usize = 5_001;

fn key(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i, i * 7919)
}

fn compress(path: &Path, body: &[u8], how: &str) -> PathBuf {
    let out = PathBuf::from(format!("{}.{how}", path.display()));
    let bytes = match how {
        "gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        "zst" => zstd::encode_all(body, 3).unwrap(),
        _ => unreachable!(),
    };
    std::fs::write(&out, bytes).unwrap();
    out
}

/// Ingests `input` and returns the first problem; checks nothing was published and no checkpoint is left.
async fn first_problem(input: &Path, store_dir: &Path) -> InputError {
    let store = Store::open(store_dir.to_str().unwrap()).unwrap();
    let err = ingest(input, "bad", &store, Some(2)).await.unwrap_err();
    let IngestError::BadInput(errors) = err else { panic!("{}: expected bad input, got {err}", input.display()) };
    assert!(pointer::read(store.inner.as_ref(), "bad").await.unwrap().is_none(), "{}: published", input.display());
    let left = std::fs::read_dir(store_dir.join("keyspace=bad/_ingest")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "{}: its checkpoint was left behind", input.display());
    errors.into_iter().next().unwrap()
}

/// Writes `body` plain, gzip and zstd, and checks each reports `line` with a message containing `what`.
async fn check_all(dir: &Path, name: &str, body: &str, line: u64, what: &str) {
    let plain = dir.join(name);
    std::fs::write(&plain, body).unwrap();
    for input in [plain.clone(), compress(&plain, body.as_bytes(), "gz"), compress(&plain, body.as_bytes(), "zst")] {
        let e = first_problem(&input, &dir.join(format!("store-{}", input.display().to_string().len()))).await;
        assert_eq!((e.line, e.row), (line, false), "{}: reported at {e}", input.display());
        assert!(e.message.contains(what), "{}: {e}", input.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_reports_the_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    let body: String =
        (1..=N).map(|i| if i == BAD { "no-space-here\n".into() } else { format!("{} v{i}\n", key(i)) }).collect();
    check_all(dir.path(), "in.data", &body, BAD as u64, "no space").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_report_the_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    // A blank line early on (skipped, but counted), then a record whose value is not a string.
    let mut body = String::new();
    for i in 1..=N {
        match i {
            100 => body.push('\n'),
            BAD => body.push_str(&format!("{{\"key\": \"{}\", \"value\": 17}}\n", key(i))),
            _ => body.push_str(&format!("{{\"key\": \"{}\", \"value\": \"v{i}\", \"other\": [1]}}\n", key(i))),
        }
    }
    check_all(dir.path(), "in.jsonl", &body, BAD as u64, "value").await;
    // Malformed JSON, at another line.
    let body: String = (1..=N)
        .map(|i| {
            if i == 7_777 {
                format!("{{\"key\": \"{}\", \n", key(i))
            } else {
                format!("{{\"key\": \"{}\", \"value\": \"v\"}}\n", key(i))
            }
        })
        .collect();
    check_all(dir.path(), "broken.jsonl", &body, 7_777, "JSON").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_reports_the_exact_line_even_after_a_quoted_newline() {
    let dir = tempfile::tempdir().unwrap();
    // Header on line 1; record 200's value holds a newline, so records after it are one line further down.
    let mut body = String::from("key,value\n");
    let mut line = 1;
    let mut bad_line = 0;
    for i in 1..=N {
        line += 1;
        if i == 200 {
            body.push_str(&format!("{},\"two\nlines\"\n", key(i)));
            line += 1;
        } else if i == BAD {
            body.push_str(&format!("{},v,extra field\n", key(i)));
            bad_line = line;
        } else {
            body.push_str(&format!("{},v{i}\n", key(i)));
        }
    }
    check_all(dir.path(), "in.csv", &body, bad_line, "field").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_reports_the_exact_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.parquet");
    let schema =
        Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true), Field::new("value", DataType::Utf8, true)]));
    let keys: Vec<Option<String>> = (1..=N).map(|i| (i != 9_000).then(|| key(i))).collect();
    let values: Vec<String> = (1..=N).map(|i| format!("v{i}")).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(keys)), Arc::new(StringArray::from(values))],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = first_problem(&path, &dir.path().join("store")).await;
    assert_eq!((e.line, e.row), (9_000, true), "reported at {e}");
    assert!(e.message.contains("null key"), "{e}");
}

/// The complete lines a decoder yields from `bytes` before it fails, as the ingest should count them.
fn good_lines(mut r: impl Read) -> u64 {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out.iter().filter(|&&b| b == b'\n').count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_compressed_file_is_bad_input_at_its_last_good_line() {
    let dir = tempfile::tempdir().unwrap();
    let body: String = (1..=N).map(|i| format!("{} value number {i}\n", key(i))).collect();
    let plain = dir.path().join("t.data");
    for how in ["gz", "zst"] {
        let full = std::fs::read(compress(&plain, body.as_bytes(), how)).unwrap();
        let cut = &full[..full.len() / 2];
        let input = dir.path().join(format!("cut.data.{how}"));
        std::fs::write(&input, cut).unwrap();
        let good = match how {
            "gz" => good_lines(flate2::read::MultiGzDecoder::new(cut)),
            _ => good_lines(zstd::stream::read::Decoder::new(cut).unwrap()),
        };
        assert!(good > 100 && good < N as u64, "{how}: {good} good lines");
        let e = first_problem(&input, &dir.path().join(format!("store-{how}"))).await;
        assert_eq!((e.line, e.row), (good, false), "{how}: reported at {e}");
        assert!(e.message.contains("truncated"), "{how}: {e}");
    }
}

/// A CSV header written with a UTF-8 byte-order mark (as spreadsheets write it) names its columns all the
/// same: it was read as part of the first column's name, and every such file was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_header_with_a_byte_order_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bom.csv");
    std::fs::write(&input, format!("\u{feff}key,value\n{},one\n{},two\n", key(1), key(2))).unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    assert_eq!(ingest(&input, "bom", &store, Some(1)).await.unwrap().rows, 2);
}

/// A quote that is never closed makes the rest of a CSV file one record: it is refused at that record's
/// line once it outgrows any record cairn could store, instead of being read whole into memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclosed_csv_quote_is_bad_input_at_its_line_not_a_whole_file_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("quote.csv");
    let mut body = format!("key,value\n{},one\n{},\"never closed\n", key(1), key(2));
    let filler = format!("{},more\n", key(3));
    while body.len() < 24 << 20 {
        body.push_str(&filler);
    }
    std::fs::write(&input, body).unwrap();
    let e = first_problem(&input, &dir.path().join("store")).await;
    assert_eq!((e.line, e.row), (3, false), "reported at {e}");
    assert!(e.message.contains("longer than"), "{e}");
}
