//! A seeded fault-injecting store decorator for the simulation (tests/tests/simulation.rs): every operation
//! may be delayed, fail before it reaches the store, or (writes and deletes) reach the store and then fail
//! as if its response were lost. A lost conditional write answers either a timeout or the 412/409 a client's
//! retry would get. Each decision is a hash of (seed, operation, path, how many times that operation on that
//! path was asked), so one seed gives one fault plan whatever else runs at the same time.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// How often each fault happens, in parts per 1,000 operations.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Fail before the store sees the operation.
    pub error: u32,
    /// Writes and deletes: applied, then answered with an error.
    pub lost_response: u32,
    /// Wait up to `max_delay` first.
    pub delay: u32,
    pub max_delay: Duration,
}

impl FaultRates {
    pub const NONE: FaultRates = FaultRates { error: 0, lost_response: 0, delay: 0, max_delay: Duration::ZERO };
}

#[derive(Debug, Default)]
pub struct FaultCounts {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    pub lost_responses: AtomicU64,
    pub delays: AtomicU64,
}

impl FaultCounts {
    pub fn injected(&self) -> u64 {
        self.errors.load(Relaxed) + self.lost_responses.load(Relaxed)
    }
}

pub struct ChaosStore {
    inner: Arc<dyn ObjectStore>,
    plan: Arc<Plan>,
}

/// The fault plan, shared with delete streams (which outlive the borrow of the store).
struct Plan {
    seed: u64,
    rates: FaultRates,
    enabled: AtomicBool,
    asked: Mutex<HashMap<(u8, String), u64>>,
    counts: Arc<FaultCounts>,
}

#[derive(Debug, PartialEq)]
enum Fault {
    None,
    Error,
    LostResponse,
}

impl ChaosStore {
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64, rates: FaultRates, counts: Arc<FaultCounts>) -> Self {
        let plan = Plan { seed, rates, enabled: AtomicBool::new(true), asked: Mutex::default(), counts };
        ChaosStore { inner, plan: Arc::new(plan) }
    }

    /// Turns faults on or off (off: a plain pass-through, for the simulation's final checks).
    pub fn set_enabled(&self, on: bool) {
        self.plan.enabled.store(on, Relaxed);
    }

    async fn plan(&self, op: u8, path: &str, can_lose: bool) -> Fault {
        self.plan.decide(op, path, can_lose).await
    }
}

impl Plan {
    /// Decides this operation's fault and sleeps its delay.
    async fn decide(&self, op: u8, path: &str, can_lose: bool) -> Fault {
        self.counts.ops.fetch_add(1, Relaxed);
        if !self.enabled.load(Relaxed) {
            return Fault::None;
        }
        let n = {
            let mut asked = self.asked.lock().expect("fault plan");
            let n = asked.entry((op, path.to_string())).or_default();
            *n += 1;
            *n
        };
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), self.seed ^ (op as u64) << 56 ^ n);
        // Independent draws from one hash: each fault looks at its own bits.
        let roll = |salt: u32, per_mille: u32| {
            (h.rotate_left(salt).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 1000 < per_mille as u64
        };
        if roll(0, self.rates.delay) && !self.rates.max_delay.is_zero() {
            self.counts.delays.fetch_add(1, Relaxed);
            let us = (h >> 20) % self.rates.max_delay.as_micros().max(1) as u64;
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if roll(21, self.rates.error) {
            self.counts.errors.fetch_add(1, Relaxed);
            return Fault::Error;
        }
        if can_lose && roll(43, self.rates.lost_response) {
            self.counts.lost_responses.fetch_add(1, Relaxed);
            return Fault::LostResponse;
        }
        Fault::None
    }
}

fn injected(what: &str, location: &str) -> object_store::Error {
    object_store::Error::Generic { store: "ChaosStore", source: format!("injected fault: {what} at {location}").into() }
}

impl fmt::Debug for ChaosStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChaosStore({})", self.inner)
    }
}

impl fmt::Display for ChaosStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChaosStore({})", self.inner)
    }
}

const GET: u8 = 1;
const PUT: u8 = 2;
const MULTIPART: u8 = 3;
const DELETE: u8 = 4;
const LIST: u8 = 5;
const COPY: u8 = 6;

#[async_trait]
impl ObjectStore for ChaosStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let conditional = !matches!(opts.mode, PutMode::Overwrite);
        let create = matches!(opts.mode, PutMode::Create);
        match self.plan(PUT, location.as_ref(), true).await {
            Fault::Error => Err(injected("write refused", location.as_ref())),
            Fault::None => self.inner.put_opts(location, payload, opts).await,
            Fault::LostResponse => {
                self.inner.put_opts(location, payload, opts).await?;
                // Half the lost conditional writes come back as the retry would see them.
                if conditional && self.plan.counts.lost_responses.load(Relaxed).is_multiple_of(2) {
                    let path = location.to_string();
                    let source = "injected fault: response lost, the retry found the write applied".into();
                    return Err(if create {
                        object_store::Error::AlreadyExists { path, source }
                    } else {
                        object_store::Error::Precondition { path, source }
                    });
                }
                Err(injected("response lost after the write applied", location.as_ref()))
            }
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        if self.plan(MULTIPART, location.as_ref(), false).await == Fault::Error {
            return Err(injected("multipart refused", location.as_ref()));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if self.plan(GET, location.as_ref(), false).await == Fault::Error {
            return Err(injected("read failed", location.as_ref()));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.plan(GET, location.as_ref(), false).await == Fault::Error {
            return Err(injected("read failed", location.as_ref()));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        // Faults are decided per path, so the stream is taken one path at a time.
        let (inner, plan) = (self.inner.clone(), self.plan.clone());
        locations
            .then(move |path| {
                let (inner, plan) = (inner.clone(), plan.clone());
                async move {
                    let path = path?;
                    match plan.decide(DELETE, path.as_ref(), true).await {
                        Fault::Error => return Err(injected("delete refused", path.as_ref())),
                        Fault::None => {
                            return inner
                                .delete_stream(futures::stream::once(async { Ok(path) }).boxed())
                                .next()
                                .await
                                .unwrap_or_else(|| Err(injected("delete gave no answer", "?")));
                        }
                        Fault::LostResponse => {}
                    }
                    let one = futures::stream::once({
                        let path = path.clone();
                        async { Ok(path) }
                    });
                    inner.delete_stream(one.boxed()).next().await.transpose()?;
                    Err(injected("response lost after the delete applied", path.as_ref()))
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let p = prefix.map(|p| p.to_string()).unwrap_or_default();
        if self.plan(LIST, &p, false).await == Fault::Error {
            return Err(injected("list failed", &p));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.plan(COPY, to.as_ref(), false).await == Fault::Error {
            return Err(injected("copy refused", to.as_ref()));
        }
        self.inner.copy_opts(from, to, options).await
    }
}
