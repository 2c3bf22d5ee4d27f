//! cairn's shared core: the on-store format (layout, manifest, pointer, shard files), key placement, and the
//! query engine used by both `cairn serve` and the `cairn-query` Lambda. Every I/O goes through an
//! [`object_store::ObjectStore`], so the local directory, memory and S3 are configuration, not code paths.

pub mod arena;
pub mod block;
pub mod cache;
pub mod checksum;
pub mod conditional;
pub mod config;
pub mod engine;
pub mod engine_telemetry;
pub mod error;
pub mod failover;
pub mod gc;
pub mod health;
pub mod histogram;
pub mod key;
pub mod layout;
pub mod manifest;
pub mod metered_store;
pub mod page;
pub mod piece;
pub mod pointer;
pub mod promotion;
pub mod repair;
pub mod ring;
pub mod rollback;
pub mod shard_reader;
pub mod shard_writer;
pub mod single_flight;
pub mod store;
pub mod ttl_map;

pub use engine::Engine;
pub use error::{Error, ErrorKind, Result};
