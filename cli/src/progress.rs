//! indicatif bars for ingest (drawn on stderr only when it is a terminal).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
    /// Keys read, and when reading began: the reading bar shows keys/s beside bytes/s.
    keys: AtomicU64,
    since: Mutex<Instant>,
}

impl Bars {
    pub fn new() -> Self {
        Bars {
            bar: Mutex::new(None),
            visible: std::io::stderr().is_terminal(),
            keys: AtomicU64::new(0),
            since: Mutex::new(Instant::now()),
        }
    }
}

impl cairn_ingest::Progress for Bars {
    fn phase(&self, name: &str, total: u64) {
        let mut slot = self.bar.lock().expect("bar");
        if let Some(old) = slot.take() {
            old.finish_and_clear();
        }
        if !self.visible {
            return;
        }
        let bar = ProgressBar::new(total);
        let tmpl = if name == "reading" {
            "{prefix:>14} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}"
        } else {
            "{msg:>14} [{bar:40}] {pos}/{len} ({eta})"
        };
        bar.set_style(ProgressStyle::with_template(tmpl).expect("template").progress_chars("=> "));
        if name == "reading" {
            bar.set_prefix(name.to_string());
            self.keys.store(0, Ordering::Relaxed);
            *self.since.lock().expect("clock") = Instant::now();
        } else {
            bar.set_message(name.to_string());
        }
        *slot = Some(bar);
    }

    fn advance(&self, units: u64) {
        if let Some(b) = self.bar.lock().expect("bar").as_ref() {
            b.inc(units);
        }
    }

    fn keys(&self, n: u64) {
        let keys = self.keys.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = self.bar.lock().expect("bar").as_ref() {
            let secs = self.since.lock().expect("clock").elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!("{keys} keys, {:.0} keys/s", keys as f64 / secs));
        }
    }

    fn note(&self, message: &str) {
        match self.bar.lock().expect("bar").as_ref() {
            Some(b) => b.println(message),
            None => eprintln!("{message}"),
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(b) = self.bar.lock().expect("bar").take() {
            b.finish_and_clear();
        }
    }
}
