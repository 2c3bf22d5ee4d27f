//! indicatif bars for ingest (drawn on stderr only when it is a terminal).

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bars {
    pub fn new() -> Self {
        Bars { bar: Mutex::new(None), visible: std::io::stderr().is_terminal() }
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
            "{msg:>14} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})"
        } else {
            "{msg:>14} [{bar:40}] {pos}/{len} ({eta})"
        };
        bar.set_style(ProgressStyle::with_template(tmpl).expect("template").progress_chars("=> "));
        bar.set_message(name.to_string());
        *slot = Some(bar);
    }

    fn advance(&self, units: u64) {
        if let Some(b) = self.bar.lock().expect("bar").as_ref() {
            b.inc(units);
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
