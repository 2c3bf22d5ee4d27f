//! How much data the inputs hold as `<key> <value>` text, before anything is read (placement needs the shard
//! count from the first key on): plain text by its size; Parquet from the footers of a sample of the files
//! (their key and value columns' uncompressed sizes), scaled to all of them; gzip and zstd text from the
//! first MiBs of a sample of the files, decompressed. A fixed guess ([`COMPRESSED_EXPANSION`], still the
//! fallback) picked three times the shards for Parquet that snappy barely compresses (uuid keys) and twice
//! for gzip text, and every shard costs a write.

use std::fs::File;
use std::io::Read;

use tokio::runtime::Handle;

use crate::error::IngestError;
use crate::input::{Compression, InputFile, InputFormat, Location};
use crate::options::COMPRESSED_EXPANSION;
use crate::parquet_fetch::ObjectChunks;
use crate::parquet_input::{FOOTER_GUESS, metadata, read_error};
use crate::parquet_plan::Plan;
use crate::record::{Columns, Problems};

/// Files of each kind measured; the rest are assumed alike.
const SAMPLE: usize = 8;
/// Stored bytes of a compressed text file decompressed to measure it.
const PREFIX: u64 = 4 << 20;

/// The estimate. A sample that cannot be read for a reason other than its bytes (the store failing) fails the
/// ingest: guessing instead would pick another shard count than the run it might resume, which would then
/// start over.
pub(crate) async fn text_bytes(files: &[InputFile], columns: &Columns) -> Result<u64, IngestError> {
    let parquet = sample(files, |f| f.format == InputFormat::Parquet);
    let compressed = sample(files, |f| f.format != InputFormat::Parquet && f.compression != Compression::None);
    let (columns, handle) = (columns.clone(), tokio::runtime::Handle::current());
    let (parquet_ratio, text_ratio) = tokio::task::spawn_blocking(move || {
        let mut footers = Vec::new();
        for f in &parquet {
            if let Some(t) = text_size(f, &columns, &handle)? {
                footers.push((f.size, t));
            }
        }
        let mut prefixes = Vec::new();
        for f in &compressed {
            if let Some(m) = prefix_ratio(f, &handle)? {
                prefixes.push(m);
            }
        }
        Ok::<_, IngestError>((ratio(footers.into_iter()), ratio(prefixes.into_iter())))
    })
    .await
    .expect("sizing task")?;
    let fallback = COMPRESSED_EXPANSION as f64;
    Ok(files
        .iter()
        .map(|f| match f.format {
            InputFormat::Parquet => (f.size as f64 * parquet_ratio.unwrap_or(fallback)) as u64,
            _ if f.is_compressed() => (f.size as f64 * text_ratio.unwrap_or(fallback)) as u64,
            _ => f.size,
        })
        .sum())
}

/// Up to [`SAMPLE`] of the files `pick` takes, spread over the list.
fn sample(files: &[InputFile], pick: impl Fn(&InputFile) -> bool) -> Vec<InputFile> {
    let all: Vec<&InputFile> = files.iter().filter(|f| pick(f)).collect();
    let n = all.len().min(SAMPLE);
    (0..n).map(|i| all[i * all.len() / n].clone()).collect()
}

/// Text bytes per stored byte over (stored, text) measurements.
fn ratio(measured: impl Iterator<Item = (u64, u64)>) -> Option<f64> {
    let (stored, text) = measured.fold((0u64, 0u64), |(s, t), (fs, ft)| (s + fs, t + ft));
    (stored > 0 && text > 0).then(|| text as f64 / stored as f64)
}

/// (stored, decompressed) bytes of the first [`PREFIX`] of a gzip or zstd file.
fn prefix_ratio(f: &InputFile, handle: &tokio::runtime::Handle) -> Result<Option<(u64, u64)>, IngestError> {
    let len = f.size.min(PREFIX);
    let failed = IngestError::io(format!("cannot read {}", f.path.display()));
    let raw: Vec<u8> = match &f.location {
        Location::Local(p) => {
            let mut v = Vec::with_capacity(len as usize);
            std::fs::File::open(p).and_then(|file| file.take(len).read_to_end(&mut v)).map_err(failed)?;
            v
        }
        Location::Object(o) => handle.block_on(o.fetch(0..len)).map_err(failed)?.to_vec(),
    };
    let mut out = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut decoder: Box<dyn Read> = match f.compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw.as_slice())),
        Compression::Zstd => match zstd::stream::read::Decoder::new(raw.as_slice()) {
            Ok(d) => Box::new(d),
            Err(_) => return Ok(None),
        },
        Compression::None => return Ok(None),
    };
    // A prefix ends mid-stream: the decoder's complaint about that ends the count.
    while let Ok(n @ 1..) = decoder.read(&mut buf) {
        out += n as u64;
    }
    Ok((out > 0).then_some((raw.len() as u64, out)))
}

/// The bytes `file`'s key and value columns would take as `<key> <value>` text, from its footer alone (the
/// byte arrays' unencoded sizes where the writer recorded them, else the columns' uncompressed sizes): what
/// the shard count is picked from. None if the footer is not readable Parquet or lacks the columns (the
/// read reports why); an error if the file cannot be read at all.
fn text_size(file: &InputFile, columns: &Columns, handle: &Handle) -> Result<Option<u64>, IngestError> {
    let mut problems = Problems::new(1);
    let meta = match &file.location {
        Location::Local(p) => {
            let f = File::open(p).map_err(IngestError::io(format!("cannot open {}", p.display())))?;
            metadata(file, &f, &mut problems)
        }
        Location::Object(o) => {
            if o.size < 12 {
                return Ok(None);
            }
            let tail = o.size.saturating_sub(FOOTER_GUESS)..o.size;
            let chunks = vec![(tail.start, handle.block_on(o.fetch(tail)).map_err(read_error)?)];
            metadata(file, &ObjectChunks { object: o.clone(), handle: handle.clone(), chunks }, &mut problems)
        }
    };
    let Some(meta) = meta else { return Ok(None) };
    let Some(plan) = Plan::new(file, &meta, columns, 0, &mut problems) else { return Ok(None) };
    let descr = meta.parquet_schema();
    let rows: i64 = meta.metadata().row_groups().iter().map(|g| g.num_rows()).sum();
    let columns: i64 = meta
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|g| {
            (0..descr.num_columns()).filter(|&c| plan.roots.contains(&descr.get_column_root_idx(c))).map(move |c| {
                let col = g.column(c);
                // Plain byte arrays carry a 4-byte length each; text has a space or newline instead.
                col.unencoded_byte_array_data_bytes()
                    .unwrap_or_else(|| (col.uncompressed_size() - 4 * g.num_rows()).max(0))
            })
        })
        .sum();
    Ok(Some(columns.max(0) as u64 + 2 * rows as u64))
}
