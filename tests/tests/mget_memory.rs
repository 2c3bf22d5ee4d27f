//! An MGET whose answer is over its byte limit is refused before it is built (docs/API.md). Found by
//! review: values the engine allowed (8 MiB of control bytes) were encoded to a 48 MiB JSON answer (each
//! byte `\u0001`), and only then refused. This binary counts every allocation to see the answer's peak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_tests::{TestServer, ingest};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(live, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const VALUE: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_limit_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..8).map(|i| format!("ctl-{i}")).collect();
    let value = "\u{1}".repeat(VALUE);
    let body: String = keys.iter().map(|k| format!("{k} {value}\n")).collect();
    std::fs::write(dir.path().join("ctl.data"), body).unwrap();
    ingest(&dir.path().join("ctl.data"), "ctl", &store, Some(8)).await.unwrap();
    drop(value);

    let server = TestServer::start(store, EngineConfig::default()).await;
    let http = reqwest::Client::new();
    let url = server.url("/v1/keyspaces/ctl/mget");
    // One value (6 MiB once encoded) is under the limit: answered, and the version and its metadata loaded.
    let r = http.post(&url).json(&keys[..1]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Vec<String> = r.json().await.unwrap();
    assert_eq!(answer[0].len(), VALUE);

    // All eight: 8 MiB of values (the engine's limit, not over it), 48 MiB of JSON.
    PEAK.store(LIVE.load(Relaxed), Relaxed);
    let before = LIVE.load(Relaxed);
    let r = http.post(&url).json(&keys).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-cairn-error"], "response_too_large");
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    eprintln!("refusing an MGET of 8 MiB of control bytes peaked at {:.1} MiB", peak as f64 / VALUE as f64);
    // The values themselves (8 MiB, read from the store and cached) are allowed, and twice over for the
    // blocks they come from; the 48 MiB answer is not.
    assert!(peak < 24 * VALUE, "refusing the answer took {} MiB at its peak", peak >> 20);
}
