//! `cairn serve`'s connections start here. Their single-key GETs, the request nearly every client sends and
//! the one measured against a bare hash map, are parsed with httparse and answered by this loop: the
//! pipelined requests a read brings answered into one buffer and written with one call, and none of
//! hyper's per-request work (a header map, a timer, a body channel, a service future). The first request
//! that is anything else (another method or route, a body, a `Connection`, `Expect` or `Upgrade` header,
//! HTTP/1.0, a key or keyspace with anything but unreserved URI characters, a head that is malformed or
//! large) hands the connection, that request's bytes included, to hyper and the router for the rest of its
//! life. So this file only ever answers what it recognises exactly, through the same
//! [`get_value`](crate::api::get_value) as the router, with the same bytes hyper writes.
//!
//! The limits are hyper's: a request head must arrive within `CAIRN_HEADER_TIMEOUT` of the server starting
//! to wait for it (an idle keep-alive connection included; the reads that bring it piecemeal do not extend
//! it; a head still arriving past 16 KiB goes to hyper with what is left of that time), responses are
//! written through the write deadline (deadline_io.rs), and a drain closes an idle connection at once and a
//! busy one after its answer, which says `connection: close`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Response};
use bytes::{Buf, Bytes, BytesMut};
use cairn_shared::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::prefixed_io::PrefixedIo;
use crate::request_metrics::RequestMetrics;
use crate::routes::{GET_ROUTE, VERSION_HEADER};

/// A head not complete within this many bytes is hyper's to judge (its own limits are larger).
const MAX_HEAD: usize = 16 << 10;
/// Answers gathered before they are written, when a read brought many pipelined requests.
const MAX_BATCH: usize = 64 << 10;
/// A value at least this large is written from where it lies instead of copied behind its head.
const COPY_LIMIT: usize = 16 << 10;

/// What the loop needs from the server.
pub(crate) struct PlainGets<'a> {
    pub engine: &'a Engine,
    pub requests: &'a RequestMetrics,
    pub header_timeout: Duration,
    /// Becomes true when the server drains.
    pub draining: watch::Receiver<bool>,
}

/// A connection this loop hands to hyper: that request's bytes in front, and when its head is still
/// arriving, the instant it must have arrived by (hyper's own header timeout would start again).
pub(crate) type Handoff<T> = (PrefixedIo<T>, Option<Instant>);

/// Serves `io` until the client closes it, it fails or times out (None), or a request arrives that this
/// loop does not serve: then the connection is returned for hyper.
pub(crate) async fn serve<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, s: PlainGets<'_>) -> Option<Handoff<T>> {
    let mut buf = BytesMut::with_capacity(8 << 10);
    let mut out = Vec::with_capacity(8 << 10);
    let mut timer = Box::pin(tokio::time::sleep(s.header_timeout));
    // One wait for the drain for the connection's life: made per request, it took two locks of the
    // channel's waiter list each time.
    let mut drained = std::pin::pin!({
        let mut draining = s.draining.clone();
        async move { draining.wait_for(|d| *d).await.is_ok() }
    });
    // When the head being waited for must have arrived: set when the wait for a new head starts, kept
    // across the reads that bring it a piece at a time (as hyper's header timeout is).
    let mut head_deadline: Option<Instant> = None;
    loop {
        let mut close = false;
        loop {
            let (len, ks, key) = match parse(&buf) {
                Head::Get { len, ks, key } => (len, ks, key),
                Head::Incomplete => break,
                Head::Other => {
                    write(&mut io, &mut out).await.ok()?;
                    return Some((PrefixedIo::new(Bytes::copy_from_slice(&buf), io), None));
                }
                Head::Unfinished => {
                    write(&mut io, &mut out).await.ok()?;
                    return Some((PrefixedIo::new(Bytes::copy_from_slice(&buf), io), head_deadline));
                }
            };
            head_deadline = None;
            let started = std::time::Instant::now();
            let answer = crate::api::get_value(s.engine, ks, key).await;
            // Read after the lookup: a stop that began while it waited on the store ends this connection too.
            close = *s.draining.borrow();
            let (status, large) = match answer {
                Ok((value, version)) => {
                    Head200 { len: value.len(), version: version.as_ref(), close }.write(&mut out);
                    if value.len() < COPY_LIMIT {
                        out.extend_from_slice(&value);
                        (200, None)
                    } else {
                        (200, Some(value))
                    }
                }
                Err(response) => (write_answer(&mut out, response, close).await, None),
            };
            // Counted before it is written, as the router counts: a slow reader is not the lookup's time.
            s.requests.record(GET_ROUTE, status, started.elapsed());
            buf.advance(len);
            if let Some(value) = large {
                write(&mut io, &mut out).await.ok()?;
                io.write_all(&value).await.ok()?;
            }
            if close {
                break;
            }
            if out.len() >= MAX_BATCH {
                write(&mut io, &mut out).await.ok()?;
            }
        }
        write(&mut io, &mut out).await.ok()?;
        if close || (buf.is_empty() && *s.draining.borrow()) {
            return None;
        }
        // The timer is moved only when it fires early, so waiting for a request costs no timer work.
        let deadline = *head_deadline.get_or_insert_with(|| Instant::now() + s.header_timeout);
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 << 10);
        }
        loop {
            tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => break,
                },
                _ = &mut timer => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    timer.as_mut().reset(deadline);
                }
                _ = &mut drained, if buf.is_empty() => return None,
            }
        }
    }
}

/// Writes and empties `out`.
async fn write<T: AsyncWrite + Unpin>(io: &mut T, out: &mut Vec<u8>) -> std::io::Result<()> {
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// What the loop makes of the start of a connection's bytes: the head's length, keyspace and key when it
/// answers that request itself. For the fuzz targets (tests/fuzz), which hold it to hyper's reading.
#[doc(hidden)]
pub fn plain_get_head(buf: &[u8]) -> Option<(usize, &str, &str)> {
    match parse(buf) {
        Head::Get { len, ks, key } => Some((len, ks, key)),
        _ => None,
    }
}

enum Head<'a> {
    /// A plain single-key GET whose head is `len` bytes.
    Get {
        len: usize,
        ks: &'a str,
        key: &'a str,
    },
    Incomplete,
    /// A head still incomplete at [`MAX_HEAD`] bytes, or with more headers than the loop parses (perhaps
    /// still arriving): hyper's to judge, by the deadline it already has.
    Unfinished,
    /// Anything hyper should answer.
    Other,
}

fn parse(buf: &[u8]) -> Head<'_> {
    if buf.is_empty() {
        return Head::Incomplete;
    }
    // Left uninitialised: httparse writes what it finds, and initialising 32 headers cost more than parsing.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; 32];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Head::Incomplete,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => return Head::Unfinished,
        Err(_) => return Head::Other,
    };
    if req.method != Some("GET") || req.version != Some(1) || !req.headers.iter().all(plain_header) {
        return Head::Other;
    }
    let target = req.path.unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !query.bytes().all(|b| CLASS[b as usize] & QUERY != 0) {
        return Head::Other; // RFC 3986's query characters only: hyper refuses some that httparse lets by
    }
    match single_key(path) {
        Some((ks, key)) => Head::Get { len, ks, key },
        None => Head::Other,
    }
}

/// A header that leaves the request plain. Not: a body, the connection's fate (`keep-alive` aside, which
/// HTTP/1.1 already means), an interim answer or another protocol.
fn plain_header(h: &httparse::Header<'_>) -> bool {
    let is = |name: &str| h.name.eq_ignore_ascii_case(name);
    if is("connection") {
        return h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
    }
    !["content-length", "transfer-encoding", "expect", "upgrade", "te"].iter().any(|n| is(n))
}

/// RFC 3986's classes of the bytes a target may hold, looked up rather than tested range by range.
const UNRESERVED: u8 = 1;
const QUERY: u8 = 2;
static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if (b as u8).is_ascii_alphanumeric() {
            class[b] = UNRESERVED | QUERY;
        }
        b += 1;
    }
    let (unreserved, query_only) = (b"-._~", b"!$&'()*+,;=:@/?%");
    let mut i = 0;
    while i < unreserved.len() {
        class[unreserved[i] as usize] = UNRESERVED | QUERY;
        i += 1;
    }
    i = 0;
    while i < query_only.len() {
        class[query_only[i] as usize] = QUERY;
        i += 1;
    }
    class
};

/// `/v1/keyspaces/{ks}/keys/{key}`, both segments non-empty and of unreserved URI characters only, which
/// no URI parser reads in two ways.
fn single_key(path: &str) -> Option<(&str, &str)> {
    let (ks, key) = crate::routes::single_key_segments(path)?;
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| CLASS[b as usize] & UNRESERVED != 0);
    (plain(ks) && plain(key)).then_some((ks, key))
}

/// A 200's head as hyper writes it for the same response.
struct Head200<'a> {
    len: usize,
    version: Option<&'a HeaderValue>,
    close: bool,
}

impl Head200<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n");
        if let Some(v) = self.version {
            header(out, VERSION_HEADER.as_bytes(), v.as_bytes());
        }
        tail(out, self.len, self.close);
    }
}

/// Any other answer of the router's (an error: a small JSON body) as hyper would write it; its status.
async fn write_answer(out: &mut Vec<u8>, response: Response<Body>, close: bool) -> u16 {
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_else(|_| Bytes::new());
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_LENGTH {
            header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    tail(out, body.len(), close);
    out.extend_from_slice(&body);
    status.as_u16()
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `connection: close` when the connection ends after this answer, the length, the date, the blank line.
fn tail(out: &mut Vec<u8>, len: usize, close: bool) {
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b"date: ");
    date(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n\r\n");
}

/// The `date` header's value (RFC 9110's IMF-fixdate), formatted once a second per thread.
fn date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        f(text.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::{CLASS, Head, QUERY, UNRESERVED, parse};

    #[test]
    fn the_byte_classes_are_rfc_3986s() {
        for b in 0..=255u8 {
            let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            let query = unreserved || b"!$&'()*+,;=:@/?%".contains(&b);
            assert_eq!(CLASS[b as usize] & UNRESERVED != 0, unreserved, "{b}");
            assert_eq!(CLASS[b as usize] & QUERY != 0, query, "{b}");
        }
    }

    fn is_get(raw: &str) -> bool {
        matches!(parse(raw.as_bytes()), Head::Get { .. })
    }

    #[test]
    fn only_plain_single_key_gets_are_served_here() {
        assert!(is_get("GET /v1/keyspaces/ks/keys/k-1.a_b~ HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(is_get("GET /v1/keyspaces/ks/keys/k?x=1&y=%20:@/? HTTP/1.1\r\n\r\n"));
        assert!(is_get("GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nConnection:  Keep-Alive \r\n\r\n"));
        for other in [
            "HEAD /v1/keyspaces/ks/keys/k HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.0\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k%41 HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/a/b HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/ HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces//keys/k HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks HTTP/1.1\r\n\r\n",
            "GET http://h/v1/keyspaces/ks/keys/k HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nConnection: keep-alive, upgrade\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k?a=<b> HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k?a=\"b\" HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k+1 HTTP/1.1\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/keyspaces/ks/keys/k\0 HTTP/1.1\r\n\r\n",
            "\r\n\r\nGARBAGE\r\n\r\n",
        ] {
            assert!(matches!(parse(other.as_bytes()), Head::Other), "{other:?} was served by the plain loop");
        }
        assert!(matches!(parse(b"GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nHost:"), Head::Incomplete));
        assert!(matches!(parse(b""), Head::Incomplete));
        let huge = format!("GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\nX: {}", "a".repeat(super::MAX_HEAD));
        assert!(matches!(parse(huge.as_bytes()), Head::Unfinished));
        // More headers than the loop parses, the head perhaps still arriving (found by review: handed over as
        // complete, it got a new header timeout from hyper, so a slow client held it up to twice as long).
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        let head = format!("GET /v1/keyspaces/ks/keys/k HTTP/1.1\r\n{many}X-Slow: ");
        assert!(matches!(parse(head.as_bytes()), Head::Unfinished));
    }
}
