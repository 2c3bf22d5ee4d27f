//! How ingest reports progress; the CLI draws bars with it, tests and libraries pass [`NoProgress`].

pub trait Progress: Send + Sync {
    /// A new phase begins with `total` units of work (bytes read, shards written).
    fn phase(&self, name: &str, total: u64);
    fn advance(&self, units: u64);
    /// Keys read so far grew by `n` (the reading phase shows keys/s).
    fn keys(&self, _n: u64) {}
    /// A line for the user (e.g. the shard balance).
    fn note(&self, message: &str);
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
}
