//! The query engine: key → keyspace version → shard → index piece → block (docs/ARCHITECTURE.md).
//!
//! [`Engine`] is a facade over two parts: the [`resolver`] (which version of a keyspace to answer from:
//! pointer, TTL, lineage, replicas, manifest and groups) and [`shard_reads`] (a key in a shard of that
//! version: pieces, blocks, hot shards, [`promote`]). Both read through [`fetch`], from the [`roots`].

pub(crate) mod data_cache;
pub mod engine;
pub(crate) mod fetch;
pub(crate) mod keyspace_list;
pub mod layer;
pub(crate) mod promote;
pub(crate) mod recent_keys;
pub(crate) mod resolver;
pub(crate) mod retired;
pub mod roots;
pub(crate) mod shard_reads;
pub mod telemetry;
pub mod version;

pub use crate::cost::Counters;
pub use engine::Engine;
pub use layer::Layer;
pub use promote::IN_FLIGHT as PROMOTIONS_IN_FLIGHT;
pub use roots::RootOpener;
pub use telemetry::{EngineStats, ServedKeyspace, Telemetry};
pub use version::LoadedVersion;
