//! The store roots the engine reads: the primary and every replica root a manifest or `CAIRN_REPLICAS` names,
//! each opened once, metered (per-root `/metrics` figures) and behind its own limit of requests in flight
//! (object_store's `LimitStore`: a GET holds its permit until its body is read or dropped).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::limit::LimitStore;

use crate::error::Result;
use crate::query::layer::Layer;
use crate::query::telemetry::EngineTelemetry;
use crate::stores::Store;

/// Opens a replica root named in a manifest (default: [`Store::open`]; tests wrap stores in faults).
pub type RootOpener = Arc<dyn Fn(&str) -> Result<Store> + Send + Sync>;

pub(crate) struct Roots {
    primary: Store,
    opener: RootOpener,
    opened: Mutex<HashMap<String, Store>>,
    /// keyspace → the replica roots its last loaded manifest named: where its pointer and manifest are read
    /// when the primary fails, besides the configured ones.
    known: Mutex<HashMap<String, Vec<String>>>,
    /// `CAIRN_REPLICAS`.
    configured: Vec<String>,
    max_in_flight: usize,
    telemetry: Arc<EngineTelemetry>,
}

impl Roots {
    pub(crate) fn new(
        primary: Store,
        configured: Vec<String>,
        max_in_flight: usize,
        telemetry: Arc<EngineTelemetry>,
    ) -> Roots {
        let mut roots = Roots {
            primary: primary.clone(),
            opener: Arc::new(|url: &str| Store::open(url)),
            opened: Mutex::default(),
            known: Mutex::default(),
            configured,
            max_in_flight: max_in_flight.max(1),
            telemetry,
        };
        roots.primary = roots.wrap(primary);
        roots
    }

    pub(crate) fn set_opener(&mut self, opener: RootOpener) {
        self.opener = opener;
    }

    /// `store` as the engine reads it: metered, then limited.
    fn wrap(&self, store: Store) -> Store {
        let metered = self.telemetry.metered(store);
        Store { url: metered.url, inner: Arc::new(LimitStore::new(metered.inner, self.max_in_flight)) }
    }

    pub(crate) fn primary(&self) -> &Store {
        &self.primary
    }

    /// The root at `url`, opened on first use.
    pub(crate) fn replica(&self, url: &str) -> Result<Store> {
        if url == self.primary.url {
            return Ok(self.primary.clone());
        }
        let mut opened = self.opened.lock().expect("opened roots");
        if let Some(s) = opened.get(url) {
            return Ok(s.clone());
        }
        let s = self.wrap((self.opener)(url)?);
        opened.insert(url.to_string(), s.clone());
        Ok(s)
    }

    /// Where `ks`'s pointer and manifest are read when the primary fails: the configured replica roots, then
    /// those its last manifest named.
    pub(crate) fn fallbacks(&self, ks: &str) -> Vec<String> {
        let known = self.known.lock().expect("known replicas").get(ks).cloned().unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        for url in self.configured.iter().chain(&known) {
            if !out.contains(url) && *url != self.primary.url {
                out.push(url.clone());
            }
        }
        out
    }

    /// Remembers the replica roots `ks`'s manifest names.
    pub(crate) fn remember(&self, ks: &str, replicas: &[String]) {
        let mut known = self.known.lock().expect("known replicas");
        if known.get(ks).map(Vec::as_slice) != Some(replicas) {
            known.insert(ks.to_string(), replicas.to_vec());
        }
    }

    /// Every root holding a copy of `v`'s objects, primary first.
    pub(crate) fn of_version(&self, v: &Layer) -> Result<Vec<Store>> {
        let mut roots = vec![self.primary.clone()];
        for url in &v.manifest.replicas {
            roots.push(self.replica(url)?);
        }
        Ok(roots)
    }
}
