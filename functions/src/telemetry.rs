//! Logging setup shared by the binaries: human-readable on a terminal, JSON lines otherwise (`CAIRN_LOG`
//! sets the filter, default `info`; `CAIRN_LOG_FORMAT=json|text` forces a format).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init(default_json: bool) {
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("CAIRN_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => default_json || !std::io::stderr().is_terminal(),
    };
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { b.json().flatten_event(true).try_init() } else { b.compact().try_init() };
}
