//! An MGET's memory is bounded by what it is allowed, not by what it is sent. Found by review: an answer
//! over its byte limit was refused only once built (values the engine allowed, 8 MiB of control bytes, made
//! 48 MiB of JSON, each byte `\u0001`), though docs/API.md says it is not built; and a request body was
//! parsed into a tree of its own first (12-19 MB for 1 MiB of JSON). This binary counts every allocation
//! to see a request's peak; its tests take turns.

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

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The most memory held at once while `f` ran, beyond what was held when it began.
async fn peak_of<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let out = f.await;
    (out, PEAK.load(Relaxed).saturating_sub(before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_limit_is_refused_before_it_is_built() {
    let _turn = SERIAL.lock().await;
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
    let (r, peak) = peak_of(http.post(&url).json(&keys).send()).await;
    let r = r.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-cairn-error"], "response_too_large");
    eprintln!("refusing an MGET of 8 MiB of control bytes peaked at {:.1} MiB", peak as f64 / VALUE as f64);
    // The values themselves (8 MiB, read from the store and cached) are allowed, and twice over for the
    // blocks they come from; the 48 MiB answer is not.
    assert!(peak < 24 * VALUE, "refusing the answer took {} MiB at its peak", peak >> 20);
}

/// Bodies of 1 MiB: 150k keys (at most 1,000 are asked for), and a list of numbers. Each is refused with
/// what was wrong, holding little more than the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_read_without_a_copy_of_its_own() {
    let _turn = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let server = TestServer::start(store, EngineConfig::default()).await;
    let http = reqwest::Client::new();
    let url = server.url("/v1/keyspaces/ks/mget");
    let many_keys = format!("[{}\"k\"]", "\"k\",".repeat(150_000));
    let numbers = format!("[{}0]", "0,".repeat(500_000));
    let in_an_object = format!("{{\"keys\": {many_keys}}}");
    for (body, status, code, says) in [
        (many_keys.clone(), 413, "too_many_keys", "150001 keys"),
        (in_an_object, 413, "too_many_keys", "150001 keys"),
        (numbers, 400, "invalid_body", "expected a string"),
    ] {
        let size = body.len();
        let (r, peak) = peak_of(http.post(&url).body(body).send()).await;
        let r = r.unwrap();
        assert_eq!(r.status(), status);
        assert_eq!(r.headers()["x-cairn-error"], code);
        let text = r.text().await.unwrap();
        assert!(text.contains(says), "{text}");
        eprintln!("a {size}-byte body refused ({code}) peaked at {:.1} MiB", peak as f64 / VALUE as f64);
        // The body as the client sends it, as the server reads and collects it, and the keys kept: a few
        // copies, where a tree of its elements took 26 times its size.
        assert!(peak < 5 * size + (2 << 20), "{code}: {} KiB at the peak for a {size}-byte body", peak >> 10);
    }
}
