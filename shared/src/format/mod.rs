//! The on-store format (docs/FORMAT.md is the reference): where objects live, how they are checksummed,
//! how keys are placed on shards, the manifest of a version, and the shard objects themselves.

pub mod block;
pub mod checksum;
pub mod key_filter;
pub mod layers;
pub mod layout;
pub mod manifest;
mod manifest_source;
pub mod page;
pub mod piece;
pub mod ring;
pub mod shard_entry;
pub mod shard_reader;
pub mod shard_writer;
