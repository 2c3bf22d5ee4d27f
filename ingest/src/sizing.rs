//! How much data the inputs hold as `<key> <value>` text, before anything is read (placement needs the shard
//! count from the first key on): plain text by its size; Parquet from the footers of a sample of the files
//! (their key and value columns' uncompressed sizes), scaled to all of them; gzip and zstd text by
//! [`COMPRESSED_EXPANSION`]. Guessing Parquet at that factor too picked three times the shards for a file
//! that snappy barely compresses (uuid keys), and every shard costs a write.

use crate::input::{InputFile, InputFormat};
use crate::options::COMPRESSED_EXPANSION;
use crate::record::Columns;

/// Parquet files whose footers are read; the rest are assumed alike.
const SAMPLE: usize = 8;

pub(crate) async fn text_bytes(files: &[InputFile], columns: &Columns) -> u64 {
    let parquet: Vec<&InputFile> = files.iter().filter(|f| f.format == InputFormat::Parquet).collect();
    let n = parquet.len().min(SAMPLE);
    let sample: Vec<InputFile> = (0..n).map(|i| parquet[i * parquet.len() / n].clone()).collect();
    let (columns, handle) = (columns.clone(), tokio::runtime::Handle::current());
    let measured: Vec<(u64, u64)> = tokio::task::spawn_blocking(move || {
        sample
            .iter()
            .filter_map(|f| crate::parquet_input::text_size(f, &columns, &handle).map(|t| (f.size, t)))
            .collect()
    })
    .await
    .unwrap_or_default();
    let (stored, text) = measured.iter().fold((0u64, 0u64), |(s, t), (fs, ft)| (s + fs, t + ft));
    let ratio = if stored > 0 { text as f64 / stored as f64 } else { COMPRESSED_EXPANSION as f64 };
    files
        .iter()
        .map(|f| match f.format {
            InputFormat::Parquet => (f.size as f64 * ratio) as u64,
            _ if f.is_compressed() => f.size * COMPRESSED_EXPANSION,
            _ => f.size,
        })
        .sum()
}
