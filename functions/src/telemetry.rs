//! Logging setup shared by the binaries: human-readable on a terminal, JSON lines otherwise, unless
//! `CAIRN_LOG_FORMAT` says which (config/mod.rs reads it, and `CAIRN_LOG`, the filter).

use std::io::IsTerminal;

use cairn_shared::config::LogConfig;
use tracing_subscriber::EnvFilter;

pub fn init(config: &LogConfig, default_json: bool) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|e| {
        eprintln!("CAIRN_LOG: {e}; logging at info");
        EnvFilter::new("info")
    });
    let json = config.json.unwrap_or(default_json || !std::io::stderr().is_terminal());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { b.json().flatten_event(true).try_init() } else { b.compact().try_init() };
}
