//! Logging: human-readable locally, JSON lines in production. `RUST_LOG` sets the filter.
//!
//! Lines are formatted on the thread that logs (the JSON ones by [`json::JsonLines`], into the
//! subscriber's reused buffer) and handed to a writer thread, which writes them to stderr in
//! order, several to a `write` when they come faster than one at a time. A request never waits
//! for stderr. Nothing is dropped: if 128 000 lines are waiting, the next one waits for room.
//! The lines still waiting when the process ends are written when the [`LogGuard`] drops.

mod json;

use std::io::BufWriter;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

pub use json::{JsonFields, JsonLines};

/// Keep it until the process ends: dropping it writes the lines still waiting.
#[must_use = "the log lines still waiting are written when this guard drops"]
pub struct LogGuard(#[allow(dead_code)] WorkerGuard);

pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,wasmtime=warn"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("skiff-log")
        .finish(BufWriter::with_capacity(64 << 10, std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.fmt_fields(JsonFields).event_format(JsonLines).init(),
    }
    LogGuard(guard)
}
