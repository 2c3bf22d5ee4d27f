//! Readers place keys a batch at a time (`Placement::shards_of`: Parquet on its decoding thread, text per
//! buffer of lines), lookups one at a time (`Placement::shard_of`). The same rows must land on the same
//! shards from text and from Parquet, and every key be found where a lookup places it, for every kind of
//! placement; a Parquet delta's rows (deletions through `--deleted-column` included) on the shards nested in
//! its base's.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cairn_ingest::{Columns, IngestOptions, NoProgress};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_tests::{example_data, read_dataset};
use parquet::file::properties::WriterProperties;

/// `rows` as Parquet, in row groups and batches smaller than the reader's, with a `gone` column when given.
fn write_parquet(path: &Path, rows: &[(String, String)], gone: Option<&[bool]>) {
    let mut fields = vec![Field::new("key", DataType::Utf8, false), Field::new("value", DataType::Utf8, false)];
    if gone.is_some() {
        fields.push(Field::new("gone", DataType::Boolean, false));
    }
    let schema = Arc::new(Schema::new(fields));
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(1_337)).build();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema.clone(), Some(props))
        .unwrap();
    for (i, part) in rows.chunks(997).enumerate() {
        let mut columns: Vec<Arc<dyn arrow_array::Array>> = vec![
            Arc::new(StringArray::from_iter_values(part.iter().map(|(k, _)| k))),
            Arc::new(StringArray::from_iter_values(part.iter().map(|(_, v)| v))),
        ];
        if let Some(g) = gone {
            columns.push(Arc::new(BooleanArray::from(g[i * 997..i * 997 + part.len()].to_vec())));
        }
        w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
    }
    w.close().unwrap();
}

fn options(input: &Path, store: &Store, shards: u32, vnodes: Option<u32>) -> IngestOptions {
    let mut o = IngestOptions::new(input, "ks", store.clone());
    o.shards = Some(shards);
    o.ring_vnodes = vnodes;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_rows_land_on_the_shards_text_puts_them_on() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        read_dataset(&example_data()).into_iter().map(|(k, v)| (k, String::from_utf8(v).unwrap())).collect();
    let text = dir.path().join("in.txt");
    std::fs::write(&text, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    let parquet = dir.path().join("in.parquet");
    write_parquet(&parquet, &rows, None);

    for (name, shards, vnodes) in [("jump", 7, None), ("ring", 5, Some(16))] {
        let store = |s: &str| Store::open(dir.path().join(format!("{name}-{s}")).to_str().unwrap()).unwrap();
        let (from_text, from_parquet) = (store("text"), store("parquet"));
        let a = cairn_ingest::ingest(options(&text, &from_text, shards, vnodes), Arc::new(NoProgress)).await.unwrap();
        let b =
            cairn_ingest::ingest(options(&parquet, &from_parquet, shards, vnodes), Arc::new(NoProgress)).await.unwrap();
        let ma = Manifest::read(from_text.inner.as_ref(), "ks", &a.version).await.unwrap();
        let mb = Manifest::read(from_parquet.inner.as_ref(), "ks", &b.version).await.unwrap();
        // Shard objects name their version, so their bytes differ: the counts agree, and every key is found
        // (a lookup places the key itself and reads only that shard).
        let counts = |m: &Manifest| m.shards.iter().map(|s| (s.shard, s.rows)).collect::<Vec<_>>();
        assert_eq!(counts(&ma), counts(&mb), "{name}: as many rows in every shard");
        let engine = Engine::new(from_parquet.clone(), EngineConfig::default());
        for (k, v) in &rows {
            assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(v.as_bytes()), "{name}: key {k}");
        }

        // A Parquet delta nested in that placement: every third key changed, every seventh deleted.
        let changes: Vec<(String, String)> =
            rows.iter().step_by(3).map(|(k, v)| (k.clone(), format!("{v} changed"))).collect();
        let gone: Vec<bool> = (0..changes.len()).map(|i| i % 7 == 0).collect();
        let delta = dir.path().join(format!("{name}-delta.parquet"));
        write_parquet(&delta, &changes, Some(&gone));
        let mut o = IngestOptions::new(&delta, "ks", from_parquet.clone());
        o.delta = true;
        o.columns = Columns { deleted: Some("gone".into()), ..Columns::default() };
        cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap();
        // A fresh engine: the first one holds the pointer it read for its TTL.
        let engine = Engine::new(from_parquet.clone(), EngineConfig::default());
        let mut want: std::collections::HashMap<&str, Option<String>> =
            rows.iter().map(|(k, v)| (k.as_str(), Some(v.clone()))).collect();
        for ((k, v), g) in changes.iter().zip(&gone) {
            want.insert(k, (!g).then(|| v.clone()));
        }
        for (k, v) in &want {
            let got = engine.get("ks", k).await.unwrap().map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(&got, v, "{name}: key {k}");
        }
    }
}
