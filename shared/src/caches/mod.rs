//! What the query engine keeps in memory: byte-bounded caches, the pointer map with its TTL, the arena hot
//! shards live in, and the rule that decides when a shard is read whole; and the cache tiers below them (the
//! local disk, a Redis-protocol server engines share).

pub mod arena;
pub mod counted;
pub(crate) mod disk_layout;
mod disk_lock;
pub mod disk_tier;
pub mod promotion;
pub mod shared_tier;
pub mod single_flight;
pub mod tier;
pub mod ttl_map;
