//! Where objects are read from and written to: store URLs opened into `object_store` clients, and the
//! decorators cairn wraps them in (each honours the whole `ObjectStore` trait).

pub mod conditional;
pub mod local_root;
pub mod metered;
pub mod replica_stats;
pub mod replicated;
pub mod url;

pub use url::{DEFAULT_STORE, Store};
