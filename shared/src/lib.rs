//! cairn's shared core, in layers (docs/ARCHITECTURE.md draws how a key flows through them), each
//! importing only from the layers listed after it and the leaves (`error`, `key`, `cost`, `counter`,
//! `histogram`):
//!
//! - [`query`]: the engine `cairn serve`, the Lambda and the Python reader run: resolve a keyspace's version,
//!   read a key from its shard.
//! - [`versions`]: a keyspace's versions — the pointer, rollback, gc, health and repair.
//! - [`config`]: every `CAIRN_*` variable, parsed and validated in one place.
//! - [`format`]: what is on the object store — paths, checksums, placement, manifests, shard objects
//!   (writer, reader, index pieces, blocks, pages). Knows nothing of stores; a decoded block may live in
//!   the hot-shard arena (the one thing it takes from [`caches`]).
//! - [`stores`]: where objects are read from — store URLs, conditional local writes, metering, replica
//!   failover and hedging.
//! - [`caches`]: byte-bounded caches, the hot-shard arena, the promotion rule.
//!
//! Every I/O goes through an [`object_store::ObjectStore`], so the local directory, memory and S3 are
//! configuration, not code paths.

pub mod caches;
pub mod config;
pub mod cost;
pub mod counter;
pub mod error;
pub mod format;
pub mod histogram;
pub mod key;
pub mod query;
pub mod stores;
pub mod versions;

pub use error::{Error, ErrorKind, Result};
pub use query::Engine;
pub use stores::Store;
