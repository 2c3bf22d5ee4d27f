//! The randomized, seeded fault-and-interleaving harness (docs/simulation.md). Per seed: a store (memory or
//! a local directory, with 0-2 replica roots) behind a fault-injecting decorator (chaos.rs), and at once:
//! two ingests of the same input in lock step, a third ingesting other inputs (an empty one now and then),
//! rollback, an aggressive gc, repair, an operator who deletes the keyspace and rebuilds it, an external
//! build whose tasks report late or write after the publish or abort, an ingest whose crashed owner's pid
//! is reused, two readers (GET and MGET of present and absent keys) and a checker. Ingests, builds and
//! rollbacks are "crashed" by dropping their futures at a random point. Invariants:
//!   (a) the primary `CURRENT` always names a version whose manifest and every shard are readable from some root;
//!   (b) every answer is exactly the value the version's dataset holds, and no reader moves back a version;
//!   (c) no lookup outlives a deadline (a hang is reported, not waited for);
//!   (d) an ingest that reports success published its whole dataset;
//!   (e) an input with no keys is never published;
//!   (f) at the end, every running reader serves what the pointer names once its TTL passed;
//!   (g) a rerun is never refused by an owner whose lease ran out;
//!   (h) nothing is left in the temp dir.
//! A failure prints the seed, the configuration, the violations and the last operations; the same seed gives
//! the same datasets, options, schedule and fault plan (thread interleaving is the machine's).

mod accidents;
mod checks;
mod layers;
mod readers;
pub mod rng;
mod run;
mod world;
mod writers;

pub use run::{Outcome, run_seed};
