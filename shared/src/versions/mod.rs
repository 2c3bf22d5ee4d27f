//! A keyspace's versions: the pointer that names the published one, and what changes or checks them —
//! rollback, gc, health and repair.

pub mod copies;
pub mod gc;
mod gc_layers;
pub mod health;
mod local_staging;
pub mod manifest_copies;
mod object_kind;
pub mod pointer;
pub mod repair;
pub mod replica_pointer;
pub mod rollback;
