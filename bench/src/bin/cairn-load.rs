//! An open-loop load generator for "p99 at a fixed request rate" (what wrk cannot do): CONNS keep-alive
//! connections share RATE requests/s, each request is scheduled in advance, and one that is overdue because
//! the previous answer came late is timed from when it was *due*, so a stalled server is charged for the
//! requests that queued behind it (no coordinated omission). Random keys from KEYS_FILE, spoken as HTTP GET (cairn, baseline)
//! or RESP GET (redis-server, keys `key:<12 digits>` as scripts/bench.sh loads them).
//!
//! Requests are released by a pacer thread that ticks every ~50 µs, not by tokio timers: those have 1 ms
//! resolution, so at 60k requests/s they let ~60 requests go at once on each tick, and the burst's queueing
//! (client and server share 2 cores) showed up as server latency (p50 0.7 ms, p99 4 ms for every server).
//!
//! RATE 0 runs closed loop instead (each connection sends its next request as soon as the answer is in): peak
//! throughput, with the same client for every server, HTTP or RESP.
//!
//! usage: cairn-load http|resp PORT KEYS_FILE RATE SECONDS [CONNS=50]
//! prints one JSON line: achieved rate, errors, and latency percentiles in ms (p50..p99.99 and max).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// When a connection's next request is due (ns after the pacer's epoch; u64::MAX: not waiting), and how to
/// wake it.
struct Slot {
    due_ns: AtomicU64,
    wake: Notify,
}

/// Wakes each connection whose request is due, checking every ~50 µs (`thread::sleep` is a high-resolution
/// timer). Not free: its cross-thread wakes raised the client's CPU from ~10.5 to ~15.5 µs per request
/// (measured at 50k requests/s), which the server loses on shared cores; docs/benchmark-notes.md says so.
fn pace(epoch: Instant, slots: Arc<Vec<Slot>>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        let now = epoch.elapsed().as_nanos() as u64;
        for s in slots.iter() {
            let due = s.due_ns.load(Ordering::Acquire);
            // A connection may have moved on to its next due time since the load: then leave it.
            if due <= now && s.due_ns.compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                s.wake.notify_one();
            }
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http,
    Resp,
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: cairn-load http|resp PORT KEYS_FILE RATE SECONDS [CONNS=50]");
        std::process::exit(2);
    }
    let proto = if a[1] == "resp" { Proto::Resp } else { Proto::Http };
    let port: u16 = a[2].parse().expect("PORT");
    let keys: Vec<String> = std::fs::read_to_string(&a[3]).expect("KEYS_FILE").lines().map(str::to_string).collect();
    let rate: f64 = a[4].parse().expect("RATE");
    let secs: f64 = a[5].parse().expect("SECONDS");
    let conns: usize = a.get(6).map_or(50, |c| c.parse().expect("CONNS"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (lat, errors) = rt.block_on(run(proto, port, keys, rate, secs, conns));
    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p / 100.0) as usize).min(lat.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let spectrum: Vec<(f64, f64)> =
        [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99].iter().map(|&p| (p, ms(pct(p)))).collect();
    println!(
        "{}",
        json!({
            "target_rate": rate, "achieved_rate": lat.len() as f64 / secs, "requests": lat.len(), "errors": errors,
            "p50_ms": ms(pct(50.0)), "p99_ms": ms(pct(99.0)), "p999_ms": ms(pct(99.9)), "max_ms": ms(lat.last()),
            "spectrum": spectrum,
        })
    );
}

async fn run(proto: Proto, port: u16, keys: Vec<String>, rate: f64, secs: f64, conns: usize) -> (Vec<Duration>, u64) {
    let keys = Arc::new(keys);
    let epoch = Instant::now();
    let start = epoch + Duration::from_millis(100);
    let slots: Arc<Vec<Slot>> =
        Arc::new((0..conns).map(|_| Slot { due_ns: AtomicU64::new(u64::MAX), wake: Notify::new() }).collect());
    let done = Arc::new(AtomicBool::new(false));
    let closed = rate <= 0.0;
    let pacer = (!closed).then(|| {
        let (slots, done) = (slots.clone(), done.clone());
        std::thread::spawn(move || pace(epoch, slots, done))
    });
    let interval = if closed { Duration::ZERO } else { Duration::from_secs_f64(conns as f64 / rate) };
    let per_conn = if closed { u64::MAX } else { (rate * secs / conns as f64) as u64 };
    let stop = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (keys, slots) = (keys.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            s.set_nodelay(true).unwrap();
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let (mut lat, mut errors) = (Vec::with_capacity(per_conn.min(1 << 20) as usize), 0u64);
            let mut buf = Vec::with_capacity(64 << 10);
            let mut req = Vec::with_capacity(256);
            // Connections start staggered across one interval, so requests arrive evenly.
            let offset = interval.mul_f64(c as f64 / conns as f64);
            if closed {
                // The closed loop starts when every connection is open.
                tokio::time::sleep_until(start.into()).await;
            }
            for i in 0..per_conn {
                let due = if closed { Instant::now() } else { start + offset + interval.mul_f64(i as f64) };
                if closed && due >= stop {
                    break;
                }
                // Waiting for a due time in the future oversleeps by up to a pacer tick: that slop is the
                // client's, so such a request is timed from when it is sent. A request already overdue (the
                // previous answer came late) is timed from its due time: that wait is the server's.
                let from = if due > Instant::now() {
                    let slot = &slots[c];
                    slot.due_ns.store((due - epoch).as_nanos() as u64, Ordering::Release);
                    while Instant::now() < due {
                        slot.wake.notified().await;
                    }
                    Instant::now()
                } else {
                    due
                };
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = (rng % keys.len() as u64) as usize;
                req.clear();
                match proto {
                    Proto::Http => {
                        req.extend_from_slice(b"GET /v1/keyspaces/bench/keys/");
                        req.extend_from_slice(keys[k].as_bytes());
                        req.extend_from_slice(b" HTTP/1.1\r\nHost: b\r\n\r\n");
                    }
                    Proto::Resp => {
                        use std::io::Write;
                        write!(req, "*2\r\n$3\r\nGET\r\n$16\r\nkey:{k:012}\r\n").unwrap();
                    }
                }
                s.write_all(&req).await.expect("write");
                let ok = match proto {
                    Proto::Http => read_http(&mut s, &mut buf).await,
                    Proto::Resp => read_resp(&mut s, &mut buf).await,
                };
                lat.push(from.elapsed());
                errors += !ok as u64;
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = pacer {
        p.join().unwrap();
    }
    (all, errors)
}

/// Reads one response; true if 200.
async fn read_http(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = &buf[..end];
            let len = find_ci(head, b"\r\ncontent-length:").map_or(0, |at| {
                head[at + 17..]
                    .iter()
                    .skip_while(|b| **b == b' ')
                    .take_while(|b| b.is_ascii_digit())
                    .fold(0, |n, d| n * 10 + (d - b'0') as usize)
            });
            let ok = head.starts_with(b"HTTP/1.1 200");
            while buf.len() < end + 4 + len {
                fill(s, buf).await;
            }
            return ok;
        }
        fill(s, buf).await;
    }
}

/// Reads one bulk-string reply; true unless it is nil or an error.
async fn read_resp(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    loop {
        if let Some(end) = find(buf, b"\r\n") {
            if buf[0] != b'$' || buf[1] == b'-' {
                return false;
            }
            let n = buf[1..end].iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize);
            while buf.len() < end + 2 + n + 2 {
                fill(s, buf).await;
            }
            return true;
        }
        fill(s, buf).await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) {
    buf.reserve(16 << 10);
    let n = s.read_buf(buf).await.expect("read");
    assert!(n > 0, "server closed the connection");
}
