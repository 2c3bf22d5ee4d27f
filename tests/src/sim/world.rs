//! What every actor of a seed shares: the stores (with and without faults), the datasets (the oracle), the
//! trace and the verdicts.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_ingest::IngestOptions;
use cairn_shared::Engine;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use object_store::ObjectStore;

use super::rng::Rng;
use crate::chaos::{ChaosStore, FaultCounts, FaultRates};
use crate::pointer_log::PointerLog;

pub const KS: &str = "sim";

pub struct Dataset {
    pub file: PathBuf,
    pub fingerprint: String,
    pub rows: HashMap<String, Vec<u8>>,
    pub keys: Vec<String>,
}

/// A dataset of 1 to ~2,500 rows (`rows: Some(0)`: none, an empty input), values of 1 byte to 3 KB.
pub fn make_dataset(dir: &Path, i: usize, rng: &mut Rng, rows: Option<u64>) -> Dataset {
    let n = rows.unwrap_or_else(|| *rng.pick(&[1u64, 3, 12, 60, 400, 2500]) + rng.below(5));
    let max_value = *rng.pick(&[8u64, 60, 300, 3000]);
    let mut map = HashMap::new();
    let mut body = Vec::new();
    while map.len() < n as usize {
        let key = uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
        let len = 1 + rng.below(max_value) as usize;
        let value: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
        body.extend_from_slice(format!("{key} ").as_bytes());
        body.extend_from_slice(&value);
        body.push(b'\n');
        map.insert(key, value);
    }
    let file = dir.join(format!("dataset-{i}.data"));
    std::fs::write(&file, body).unwrap();
    let files = cairn_ingest::list_local(&file, None).unwrap();
    let fingerprint = cairn_ingest::fingerprint(&files).unwrap();
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    Dataset { file, fingerprint, rows: map, keys }
}

pub struct World {
    pub seed: u64,
    pub started: Instant,
    pub deadline: Instant,
    /// Roots as the actors see them: faults injected.
    pub roots: Vec<Store>,
    pub chaos: Vec<Arc<ChaosStore>>,
    /// The same roots without faults, for the checker, the operator's deletes and the final checks.
    pub clean: Vec<Store>,
    pub pointer_log: Arc<Mutex<Vec<String>>>,
    pub pointer_writes_pending: Arc<AtomicUsize>,
    /// Per reader, the versions it served in order.
    pub served: Mutex<Vec<(u64, Vec<String>)>>,
    /// The readers' engines, kept past the run: the final check asks them what they serve.
    pub reader_engines: Mutex<Vec<(u64, Arc<Engine>)>>,
    /// The readers' disk cache tiers (removed with the World).
    pub disk_caches: Mutex<Vec<tempfile::TempDir>>,
    /// Disk cache entries the readers damaged (bytes flipped, truncated, deleted).
    pub disk_rot: AtomicU64,
    /// Datasets; the last one is empty (0 rows): an input that must never replace the keyspace.
    pub datasets: Vec<Dataset>,
    /// Versions published by external builds (the builder), by dataset: their fingerprint is the shards'.
    pub built: Mutex<HashMap<String, usize>>,
    /// Delta and compacted versions, by the dataset they answer as (that of the base they stack on or
    /// compacted): resolved through their layers (`resolve`).
    pub answers_as: Mutex<HashMap<String, usize>>,
    /// Keys no dataset holds that deltas delete (tombstones) and readers look up.
    pub phantoms: Vec<String>,
    /// Writers (ingests, builds, rollback, gc, repair) hold it shared per operation; the operator who
    /// deletes the keyspace holds it alone, so the deletion is "between" writes, as a careful operator's is.
    pub writers: tokio::sync::RwLock<()>,
    pub tmp: PathBuf,
    pub ttl: Duration,
    pub page_cache: u64,
    pub gc_min_age: Duration,
    pub trace: Mutex<VecDeque<String>>,
    pub violations: Mutex<Vec<String>>,
    /// Lookups in flight: start time per id (the watchdog reads it).
    pub in_flight: Mutex<HashMap<u64, (Instant, String)>>,
    pub next_op: AtomicU64,
    pub ops: AtomicU64,
    pub published: AtomicU64,
    /// Deltas and compactions published.
    pub layer_ops: AtomicU64,
    pub answers: AtomicU64,
    pub rebuilt: AtomicU64,
    /// Versions whose objects the operator deleted.
    pub demolished: Mutex<std::collections::HashSet<String>>,
    pub stop: AtomicBool,
    pub twins_stop: AtomicBool,
    pub counts: Arc<FaultCounts>,
}

impl World {
    pub fn log(&self, actor: &str, what: String) {
        let mut t = self.trace.lock().unwrap();
        if t.len() == 400 {
            t.pop_front();
        }
        t.push_back(format!("{:>6} ms {actor:<9} {what}", self.started.elapsed().as_millis()));
    }

    pub fn violation(&self, what: String) {
        self.log("VIOLATION", what.clone());
        self.violations.lock().unwrap().push(what);
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.deadline && !self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The dataset a version holds: by its input's fingerprint, or as an external build registered it.
    pub fn dataset_of(&self, m: &Manifest) -> Option<&Dataset> {
        if let Some(&d) = self.built.lock().unwrap().get(&m.version) {
            return Some(&self.datasets[d]);
        }
        if let Some(&d) = self.answers_as.lock().unwrap().get(&m.version) {
            return Some(&self.datasets[d]);
        }
        self.datasets.iter().find(|d| d.fingerprint == m.source.fingerprint)
    }

    /// [`Self::dataset_of`], following a layered version to its base layer and a compacted one to the
    /// version it compacted (their deltas only delete phantom keys, so they answer as that dataset),
    /// reading manifests from the roots without faults.
    pub async fn resolve(&self, m: &Manifest) -> Option<&Dataset> {
        let mut at = m.clone();
        for _ in 0..64 {
            if let Some(d) = self.dataset_of(&at) {
                let i = self.datasets.iter().position(|x| std::ptr::eq(x, d)).expect("one of ours");
                self.answers_as.lock().unwrap().insert(m.version.clone(), i);
                return Some(d);
            }
            let next = match at.layers.last() {
                Some(base) => base.version.clone(),
                None => at.source.files.first()?.strip_prefix("compaction of ")?.to_string(),
            };
            // Learnt before (gc may have deleted it since: a compaction does not keep what it compacted).
            let known = self.answers_as.lock().unwrap().get(&next).copied();
            if let Some(d) = known {
                self.answers_as.lock().unwrap().insert(m.version.clone(), d);
                return Some(&self.datasets[d]);
            }
            let mut found = None;
            for root in &self.clean {
                if let Ok(n) = Manifest::read_top(root.inner.as_ref(), KS, &next).await {
                    found = Some(n);
                    break;
                }
            }
            at = found?;
        }
        None
    }

    /// The empty dataset's index.
    pub fn empty(&self) -> usize {
        self.datasets.len() - 1
    }

    /// A dataset with rows, or now and then the empty one.
    pub fn pick_dataset(&self, rng: &mut Rng) -> usize {
        if rng.chance(80) { self.empty() } else { rng.below(self.empty() as u64) as usize }
    }

    pub fn ingest_options(&self, d: usize, shards: Option<u32>) -> IngestOptions {
        let mut opts = IngestOptions::new(&self.datasets[d].file, KS, self.roots[0].clone());
        opts.replicas = self.roots[1..].to_vec();
        opts.shards = shards;
        opts.threads = 2;
        opts.memory_budget = 16 << 20;
        opts.tmp_dir = Some(self.tmp.clone());
        opts
    }
}

/// The roots of a seed: a memory store (odd seeds) or local directories (even seeds), 0-2 replicas, each
/// behind the fault injector; the primary also behind the pointer log.
pub async fn open_roots(seed: u64, dir: &Path, rng: &mut Rng, counts: &Arc<FaultCounts>) -> World {
    let on_disk = seed.is_multiple_of(2);
    let replicas = rng.below(3) as usize;
    let rates = FaultRates {
        error: *rng.pick(&[0u32, 10, 40]),
        lost_response: *rng.pick(&[0u32, 20, 60]),
        delay: *rng.pick(&[0u32, 200]),
        max_delay: Duration::from_millis(3),
    };
    let (mut roots, mut chaos, mut clean) = (Vec::new(), Vec::new(), Vec::new());
    let mut pointer_log = Arc::default();
    let mut pointer_writes_pending = Arc::default();
    for i in 0..=replicas {
        let url = if on_disk {
            dir.join(format!("root{i}")).to_str().unwrap().to_string()
        } else {
            format!("memory://sim-{seed}-{}-{i}", std::process::id())
        };
        let store = Store::open(&url).unwrap();
        let mut inner: Arc<dyn ObjectStore> = store.inner.clone();
        if i == 0 {
            let log = PointerLog::new(inner);
            pointer_log = log.versions.clone();
            pointer_writes_pending = log.pending.clone();
            inner = Arc::new(log);
        }
        let c = Arc::new(ChaosStore::new(inner.clone(), seed ^ (i as u64) << 40, rates, counts.clone()));
        chaos.push(c.clone());
        roots.push(Store { url: store.url.clone(), inner: c });
        clean.push(Store { url: store.url.clone(), inner });
    }
    let ttl = *rng.pick(&[Duration::from_millis(20), Duration::from_millis(100)]);
    World {
        seed,
        started: Instant::now(),
        deadline: Instant::now(),
        roots,
        chaos,
        clean,
        pointer_log,
        pointer_writes_pending,
        served: Mutex::default(),
        reader_engines: Mutex::default(),
        disk_caches: Mutex::default(),
        disk_rot: AtomicU64::new(0),
        datasets: Vec::new(),
        built: Mutex::default(),
        answers_as: Mutex::default(),
        phantoms: (0..16).map(|i| uuid::Uuid::from_u64_pair(seed ^ 0x5eed_f00d, i).to_string()).collect(),
        writers: tokio::sync::RwLock::new(()),
        tmp: dir.join("tmp"),
        ttl,
        page_cache: *rng.pick(&[4 << 10, 64 << 10, 16 << 20]),
        // Readers may hold a version for 2 × TTL after it was replaced.
        gc_min_age: 2 * ttl + Duration::from_millis(50),
        trace: Mutex::default(),
        violations: Mutex::default(),
        in_flight: Mutex::default(),
        next_op: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        published: AtomicU64::new(0),
        layer_ops: AtomicU64::new(0),
        answers: AtomicU64::new(0),
        rebuilt: AtomicU64::new(0),
        demolished: Mutex::default(),
        stop: AtomicBool::new(false),
        twins_stop: AtomicBool::new(false),
        counts: counts.clone(),
    }
}

pub fn one_line(s: &str) -> String {
    let s = s.replace('\n', " | ");
    if s.len() > 240 { format!("{}…", &s[..s.floor_char_boundary(240)]) } else { s }
}
