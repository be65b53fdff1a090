//! Logging: human-readable lines by default, JSON with
//! `SLUICE_LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`); and the
//! per-request access line.

mod access;
mod line;

pub use access::AccessLog;

use line::Line;

use std::io::{BufWriter, IsTerminal};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the subscriber. Lines go to stderr from a writer thread: a
/// write per access line on the request's own thread cost about a tenth of
/// the gateway's CPU. The writer thread batches what has queued into one
/// write and never drops a line (a full queue makes the logging thread
/// wait). Keep the guard until exit: dropping it flushes what is queued.
pub fn init() -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("sluice-log")
        .finish(BufWriter::with_capacity(64 << 10, std::io::stderr()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let line = if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        Line::Json
    } else {
        Line::Text
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(line == Line::Text && std::io::stderr().is_terminal())
        .with_writer(writer)
        .event_format(line)
        .init();
    guard
}
