//! An open-loop load generator for "p99 at a fixed request rate" (what wrk cannot do): CONNS keep-alive
//! connections share RATE requests/s, each request is scheduled in advance, and one that is overdue because
//! the previous answer came late is timed from when it was *due*, so a stalled server is charged for the
//! requests that queued behind it (no coordinated omission). Random keys from KEYS_FILE, spoken as HTTP GET
//! (cairn, baseline) or RESP GET (redis-server, keys `key:<12 digits>` as scripts/bench.sh loads them).
//!
//! One thread and one epoll set, no async runtime: the client shares the 2 cores with the server it
//! measures, so every microsecond it spends per request is taken from the server at the rates where p99 is
//! measured. The previous version (tokio, plus a pacer thread because tokio's 1 ms timers released requests
//! in bursts) cost 13.6 µs of client CPU per request at 62k requests/s; this one 10.5-11 µs, ~85% of it in
//! the kernel. The thread sleeps in `epoll_pwait2` until the next request is due or an answer arrives, with
//! its timer slack cut from 50 µs to 1 µs so a due request leaves on time.
//!
//! The first second runs at the same rate but is not recorded: the first ~100 ms of every run (cairn and
//! baseline alike) had waits of 20-40 ms, a cold start of the whole setup that was not traced further. wrk2
//! skips its first 10 s for the same reason.
//!
//! RATE 0 runs closed loop instead (each connection sends its next request as soon as the answer is in): peak
//! throughput, with the same client for every server, HTTP or RESP.
//!
//! usage: cairn-load http|resp PORT KEYS_FILE RATE SECONDS [CONNS=50]
//! With CAIRN_LOAD_SLOW_MS=T, every recorded request slower than T ms is also listed on stderr as
//! "<ms since recording started> <latency ms>": whether the tail is stalls (clusters) or queueing (spread).
//! The list is written after the run: a write per slow request, during it, took client CPU and made more
//! requests late (p99 33-35 ms in 2 of 4 runs that way, measured).
//! prints one JSON line: achieved rate, errors, latency percentiles in ms (p50..p99.99 and max), the
//! client's own CPU time per request and its nice value (scripts/bench.sh runs it both at -10 and at 0).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde_json::json;

/// Seconds run before recording starts.
const WARM_UP_S: f64 = 1.0;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http,
    Resp,
}

/// One keep-alive connection with at most one request in flight.
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    /// When the request in flight is timed from (its send time, or its due time if it was overdue).
    in_flight: Option<Instant>,
    /// Due times of requests that came due while a request was in flight: sent as soon as it is answered.
    overdue: VecDeque<Instant>,
    rng: u64,
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    const USAGE: &str = "usage: cairn-load http|resp PORT KEYS_FILE RATE SECONDS [CONNS=50]";
    if a.len() < 6 || !matches!(a[1].as_str(), "http" | "resp") {
        fail(USAGE);
    }
    let proto = if a[1] == "resp" { Proto::Resp } else { Proto::Http };
    fn arg<T: std::str::FromStr>(a: &[String], i: usize, name: &str) -> T {
        a[i].parse().unwrap_or_else(|_| fail(&format!("{name}: {:?} is not valid\n{USAGE}", a[i])))
    }
    let port: u16 = arg(&a, 2, "PORT");
    let keys_file = &a[3];
    let keys: Vec<String> = std::fs::read_to_string(keys_file)
        .unwrap_or_else(|e| fail(&format!("KEYS_FILE {keys_file}: {e}")))
        .lines()
        .map(str::to_string)
        .collect();
    let (rate, secs): (f64, f64) = (arg(&a, 4, "RATE"), arg(&a, 5, "SECONDS"));
    let conns: usize = if a.len() > 6 { arg(&a, 6, "CONNS") } else { 50 };
    if keys.is_empty() || conns == 0 {
        fail(&format!("{keys_file} holds no keys, or CONNS is 0"));
    }
    let cpu0 = cpu_time();
    let (mut lat, errors, answered) = run(proto, port, &keys, rate, secs, conns);
    let cpu = cpu_time() - cpu0;
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
            "client_cpu_us_per_request": cpu.as_secs_f64() * 1e6 / answered.max(1) as f64,
            // SAFETY: getpriority reads this process's nice value.
            "client_nice": unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
        })
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("cairn-load: {msg}");
    std::process::exit(2);
}

/// Latencies and errors of the recorded requests, and how many answers came in all (warm-up included).
fn run(proto: Proto, port: u16, keys: &[String], rate: f64, secs: f64, conns: usize) -> (Vec<Duration>, u64, u64) {
    // SAFETY: plain syscalls on fds this function owns; `events` outlives every epoll_pwait2 call.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1: {}", std::io::Error::last_os_error());
    let mut cs: Vec<Conn> = (0..conns)
        .map(|c| {
            let sock = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| fail(&format!("cannot connect to 127.0.0.1:{port}: {e}")));
            sock.set_nodelay(true).unwrap();
            sock.set_nonblocking(true).unwrap();
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: c as u64 };
            let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut ev) };
            assert!(r == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
            let rng = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            Conn { sock, buf: Vec::with_capacity(64 << 10), in_flight: None, overdue: VecDeque::new(), rng }
        })
        .collect();
    let closed = rate <= 0.0;
    // Request j is due at start + j/rate on connection j % conns, so arrivals are evenly spaced overall.
    let total = if closed { 0 } else { (rate * (WARM_UP_S + secs)) as u64 };
    let start = Instant::now() + Duration::from_millis(20);
    let measured = start + Duration::from_secs_f64(WARM_UP_S);
    let stop = measured + Duration::from_secs_f64(secs);
    let due = |j: u64| start + Duration::from_secs_f64(j as f64 / rate);
    let (mut lat, mut errors) = (Vec::with_capacity(total.min(1 << 24) as usize), 0u64);
    let slow_ms: Option<f64> = std::env::var("CAIRN_LOAD_SLOW_MS").ok().and_then(|t| t.parse().ok());
    let mut slow = Vec::new();
    let mut req = Vec::with_capacity(256);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns];
    let (mut next, mut answered) = (0u64, 0u64);
    if closed {
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        for c in cs.iter_mut() {
            send(c, proto, keys, &mut req, now);
        }
    }
    loop {
        let now = Instant::now();
        while next < total && due(next) <= now {
            let c = &mut cs[(next % conns as u64) as usize];
            if c.in_flight.is_none() {
                // Sent a little after its due time by this loop's own wake-up: that slop is the client's, so
                // the request is timed from when it is sent.
                send(c, proto, keys, &mut req, now);
            } else {
                c.overdue.push_back(due(next));
            }
            next += 1;
        }
        let busy = cs.iter().any(|c| c.in_flight.is_some());
        if next >= total && !busy {
            break;
        }
        let wait = if next < total { due(next).saturating_duration_since(now) } else { Duration::from_secs(10) };
        let ts = libc::timespec { tv_sec: wait.as_secs() as libc::time_t, tv_nsec: wait.subsec_nanos() as _ };
        let n =
            unsafe { libc::epoll_pwait2(ep, events.as_mut_ptr(), events.len() as libc::c_int, &ts, std::ptr::null()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert!(e.kind() == ErrorKind::Interrupted, "epoll_pwait2: {e}");
            continue;
        }
        if n == 0 && next >= total {
            panic!(
                "no answer for 10 s with {} requests in flight",
                cs.iter().filter(|c| c.in_flight.is_some()).count()
            );
        }
        for ev in &events[..n as usize] {
            let c = &mut cs[ev.u64 as usize];
            let Some(ok) = receive(c, proto) else { continue };
            let at = Instant::now();
            let from = c.in_flight.take().expect("an answer without a request");
            answered += 1;
            if from >= measured {
                lat.push(at - from);
                if slow_ms.is_some_and(|t| (at - from).as_secs_f64() * 1e3 > t) {
                    slow.push(((from - measured).as_secs_f64() * 1e3, (at - from).as_secs_f64() * 1e3));
                }
                errors += !ok as u64;
            }
            if let Some(d) = c.overdue.pop_front() {
                // Came due while the previous answer was late: that wait is the server's.
                send(c, proto, keys, &mut req, d);
            } else if closed && at < stop {
                send(c, proto, keys, &mut req, at);
            }
        }
    }
    unsafe { libc::close(ep) };
    let mut out = std::io::BufWriter::new(std::io::stderr().lock());
    for (since, ms) in slow {
        let _ = writeln!(out, "{since:.3} {ms:.3}");
    }
    drop(out);
    (lat, errors, answered)
}

/// Sends one GET for a random key, timed from `from`.
fn send(c: &mut Conn, proto: Proto, keys: &[String], req: &mut Vec<u8>, from: Instant) {
    c.rng ^= c.rng << 13;
    c.rng ^= c.rng >> 7;
    c.rng ^= c.rng << 17;
    let k = (c.rng % keys.len() as u64) as usize;
    req.clear();
    match proto {
        Proto::Http => {
            req.extend_from_slice(b"GET /v1/keyspaces/bench/keys/");
            req.extend_from_slice(keys[k].as_bytes());
            req.extend_from_slice(b" HTTP/1.1\r\nHost: b\r\n\r\n");
        }
        Proto::Resp => write!(req, "*2\r\n$3\r\nGET\r\n$16\r\nkey:{k:012}\r\n").unwrap(),
    }
    let mut sent = 0;
    while sent < req.len() {
        match c.sock.write(&req[sent..]) {
            Ok(n) => sent += n,
            // A full socket buffer with one small request in flight: only if the server stopped reading.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => std::hint::spin_loop(),
            Err(e) => panic!("write: {e}"),
        }
    }
    c.buf.clear();
    c.in_flight = Some(from);
}

/// Reads what the socket has; Some(true/false) once a whole answer is in (true: a 200 or a non-nil bulk
/// string), None while it is incomplete.
fn receive(c: &mut Conn, proto: Proto) -> Option<bool> {
    c.buf.reserve(16 << 10);
    let len = c.buf.len();
    let spare = c.buf.spare_capacity_mut();
    // SAFETY: read only writes into the spare capacity, and only the bytes it reports are kept.
    let dst = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr() as *mut u8, spare.len()) };
    match c.sock.read(dst) {
        Ok(0) => panic!("server closed the connection"),
        Ok(n) => unsafe { c.buf.set_len(len + n) },
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return None,
        Err(e) => panic!("read: {e}"),
    }
    match proto {
        Proto::Http => http_answer(&c.buf),
        Proto::Resp => resp_answer(&c.buf),
    }
}

fn http_answer(buf: &[u8]) -> Option<bool> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = &buf[..end];
    let len = find_ci(head, b"\r\ncontent-length:").map_or(0, |at| {
        head[at + 17..]
            .iter()
            .skip_while(|b| **b == b' ')
            .take_while(|b| b.is_ascii_digit())
            .fold(0, |n, d| n * 10 + (d - b'0') as usize)
    });
    (buf.len() >= end + 4 + len).then(|| head.starts_with(b"HTTP/1.1 200"))
}

fn resp_answer(buf: &[u8]) -> Option<bool> {
    let end = find(buf, b"\r\n")?;
    if buf[0] != b'$' || buf[1] == b'-' {
        return Some(false);
    }
    let n = buf[1..end].iter().fold(0usize, |n, d| n * 10 + (d - b'0') as usize);
    (buf.len() >= end + 2 + n + 2).then_some(true)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}
