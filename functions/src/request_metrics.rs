//! Requests by route and status, and their latency, counted per thread: each thread adds to its own
//! cache-line-aligned slot (uncontended relaxed adds, no lock), and a scrape sums the slots. A shared
//! counter would bounce one cache line between the workers on every request.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use cairn_shared::histogram::{Histogram, HistogramSnapshot};

use crate::routes::ROUTES;

/// Route labels: the router's routes, then requests no route matched.
pub const ROUTE_LABELS: [&str; ROUTES.len() + 1] = {
    let mut labels = ["unmatched"; ROUTES.len() + 1];
    let mut i = 0;
    while i < ROUTES.len() {
        labels[i] = ROUTES[i];
        i += 1;
    }
    labels
};
pub const UNMATCHED: usize = ROUTES.len();

/// Statuses counted by their code; any other is counted by its class (`2xx` … `5xx`).
const CODES: [u16; 10] = [200, 400, 403, 404, 405, 413, 415, 422, 500, 503];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUSES: usize = CODES.len() + CLASSES.len();

/// More threads than this share slots (still correct: the adds are atomic).
const SLOTS: usize = 32;

#[repr(align(128))]
#[derive(Default)]
struct Slot {
    requests: [[AtomicU64; STATUSES]; ROUTE_LABELS.len()],
    latency: [Histogram; ROUTE_LABELS.len()],
}

pub struct RequestMetrics {
    slots: Box<[Slot]>,
}

/// One route's figures, summed over the threads.
#[derive(Debug, Clone, Default)]
pub struct RouteSnapshot {
    pub route: &'static str,
    /// (status label, requests), for statuses seen at least once.
    pub statuses: Vec<(String, u64)>,
    pub latency: HistogramSnapshot,
}

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_slot() -> usize {
    MY_SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1, Relaxed) % SLOTS);
        }
        s.get()
    })
}

fn status_index(status: u16) -> usize {
    match CODES.iter().position(|&c| c == status) {
        Some(i) => i,
        None => CODES.len() + (status / 100).clamp(1, 5) as usize - 1,
    }
}

fn status_label(i: usize) -> String {
    if i < CODES.len() { CODES[i].to_string() } else { CLASSES[i - CODES.len()].to_string() }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics { slots: (0..SLOTS).map(|_| Slot::default()).collect() }
    }
}

impl RequestMetrics {
    /// The index in [`ROUTE_LABELS`] of a matched route's path pattern.
    pub fn route_index(pattern: &str) -> usize {
        ROUTES.iter().position(|r| *r == pattern).unwrap_or(UNMATCHED)
    }

    #[inline]
    pub fn record(&self, route: usize, status: u16, took: Duration) {
        let slot = &self.slots[my_slot()];
        slot.requests[route][status_index(status)].fetch_add(1, Relaxed);
        slot.latency[route].observe(took);
    }

    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        ROUTE_LABELS
            .iter()
            .enumerate()
            .map(|(r, &route)| {
                let mut latency = HistogramSnapshot::default();
                let mut counts = [0u64; STATUSES];
                for slot in self.slots.iter() {
                    slot.latency[r].add_to(&mut latency);
                    for (n, c) in counts.iter_mut().zip(&slot.requests[r]) {
                        *n += c.load(Relaxed);
                    }
                }
                let statuses =
                    counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (status_label(i), *n)).collect();
                RouteSnapshot { route, statuses, latency }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_every_thread_add_up() {
        let m = std::sync::Arc::new(RequestMetrics::default());
        let get = RequestMetrics::route_index("/v1/keyspaces/{ks}/keys/{key}");
        std::thread::scope(|s| {
            for t in 0..40 {
                let m = m.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        m.record(get, if t % 2 == 0 { 200 } else { 404 }, Duration::from_micros(30));
                    }
                    m.record(UNMATCHED, 418, Duration::from_millis(2));
                });
            }
        });
        let snap = m.snapshot();
        assert_eq!(snap[get].statuses, vec![("200".to_string(), 20_000), ("404".to_string(), 20_000)]);
        assert_eq!(snap[get].latency.count(), 40_000);
        assert_eq!(snap[UNMATCHED].statuses, vec![("4xx".to_string(), 40)]);
        assert!(snap.iter().enumerate().all(|(i, r)| i == get || i == UNMATCHED || r.statuses.is_empty()));
    }
}
