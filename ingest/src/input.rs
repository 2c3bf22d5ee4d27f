//! One input file: where its bytes are, what format they hold and how they are compressed. The format comes
//! from `--format` or the name (`.parquet`/`.pq`, `.jsonl`/`.ndjson`/`.json`, `.csv`, anything else is
//! text), after a `.gz`/`.zst` compression suffix is taken off.

use crate::error::IngestError;
use crate::object_read::Object;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Text,
    /// One key per line, each a deletion (`cairn delete --keys-from`).
    Keys,
    JsonLines,
    Csv,
    Parquet,
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" => Ok(InputFormat::Text),
            "keys" => Ok(InputFormat::Keys),
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::JsonLines),
            "csv" => Ok(InputFormat::Csv),
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            _ => Err(format!("unknown format {s:?} (text, jsonl, csv, parquet or keys)")),
        }
    }
}

/// Compression around a text file, decompressed on the fly while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Where an input's bytes are.
#[derive(Clone)]
pub enum Location {
    Local(PathBuf),
    Object(Object),
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "Local({})", p.display()),
            Location::Object(o) => write!(f, "Object({}, {:?})", o.name, o.etag),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputFile {
    /// As users see it and the manifest records it: a local path or `s3://bucket/key`.
    pub path: PathBuf,
    pub location: Location,
    pub format: InputFormat,
    pub compression: Compression,
    /// Bytes as stored (compressed).
    pub size: u64,
    /// A local file's modification time when listed: one changed before it was read to the end (the
    /// fingerprint would not describe what was read) fails the run.
    pub modified: Option<std::time::SystemTime>,
}

impl InputFile {
    /// An input named `name`, its format from `format` or the name.
    pub fn new(
        name: PathBuf,
        location: Location,
        size: u64,
        format: Option<InputFormat>,
    ) -> Result<InputFile, IngestError> {
        let (compression, inner) = compression_of(&name);
        let format = format.unwrap_or_else(|| format_of(inner));
        if format == InputFormat::Parquet && compression != Compression::None {
            return Err(IngestError::Invalid(format!(
                "{}: Parquet compresses its pages itself; a gzip/zstd file around it is not read (unpack it, or \
                 write it with the codec inside)",
                name.display()
            )));
        }
        Ok(InputFile { path: name, location, format, compression, size, modified: None })
    }

    /// Fails if a local file is not as it was listed (size, modification time).
    pub fn check_unchanged(&self) -> Result<(), IngestError> {
        let Location::Local(p) = &self.location else { return Ok(()) };
        let meta = std::fs::metadata(p).map_err(IngestError::io(format!("cannot stat {}", p.display())))?;
        if meta.len() != self.size || meta.modified().ok() != self.modified {
            return Err(IngestError::Invalid(format!(
                "{} changed while it was being ingested; nothing was published. Rerun once it is complete",
                p.display()
            )));
        }
        Ok(())
    }

    /// A name without an extension (Hive's `000000_0`): its format is told by its first bytes instead.
    pub fn unnamed(&self) -> bool {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        !name.trim_start_matches('.').contains('.')
    }

    /// Takes the format its first bytes say: Parquet's `PAR1` magic, else text as before.
    pub fn sniffed(mut self, head: &[u8]) -> InputFile {
        if head.starts_with(b"PAR1") {
            self.format = InputFormat::Parquet;
        }
        self
    }

    /// Stored smaller than its data (Parquet, gzip, zstd).
    pub fn is_compressed(&self) -> bool {
        self.format == InputFormat::Parquet || self.compression != Compression::None
    }
}

/// The compression a name's suffix says, and the name without it.
fn compression_of(name: &Path) -> (Compression, &str) {
    let s = name.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let lower = s.to_ascii_lowercase();
    for (suffix, c) in [(".gz", Compression::Gzip), (".gzip", Compression::Gzip)]
        .into_iter()
        .chain([(".zst", Compression::Zstd), (".zstd", Compression::Zstd)])
    {
        if lower.ends_with(suffix) {
            return (c, &s[..s.len() - suffix.len()]);
        }
    }
    (Compression::None, s)
}

fn format_of(name: &str) -> InputFormat {
    match name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("parquet" | "pq") => InputFormat::Parquet,
        Some("jsonl" | "ndjson" | "json") => InputFormat::JsonLines,
        Some("csv") => InputFormat::Csv,
        _ => InputFormat::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(name: &str) -> (InputFormat, Compression) {
        let f = InputFile::new(name.into(), Location::Local(name.into()), 0, None).unwrap();
        (f.format, f.compression)
    }

    #[test]
    fn names() {
        use {Compression as C, InputFormat as F};
        assert_eq!(of("a.data"), (F::Text, C::None));
        assert_eq!(of("a.data.gz"), (F::Text, C::Gzip));
        assert_eq!(of("part-0.snappy.parquet"), (F::Parquet, C::None));
        assert_eq!(of("x.PQ"), (F::Parquet, C::None));
        assert_eq!(of("x.jsonl.zst"), (F::JsonLines, C::Zstd));
        assert_eq!(of("x.csv.gz"), (F::Csv, C::Gzip));
        assert_eq!(of("X.CSV.GZ"), (F::Csv, C::Gzip));
        assert_eq!(of("noext"), (F::Text, C::None));
        assert!(InputFile::new("a.parquet.gz".into(), Location::Local("a".into()), 0, None).is_err());
    }
}
