//! Logging: human-readable lines by default, JSON with
//! `SLUICE_LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`); and the
//! per-request access line.

mod access;

pub use access::AccessLog;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
