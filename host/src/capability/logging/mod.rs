//! `wasi:logging`: a component's log records become the host's own `tracing` events, inside the
//! span of the request or message the instance serves (request id, service, version), so they
//! land in the same log, as JSON in production, instead of raw on stderr.

use async_trait::async_trait;
use wasmtime::component::{HasData, Linker};

use super::{Capability, CapabilityStore, Composed, HostResources, NoFlags, ServiceSetup};

// The only place the logging world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:logging/imports",
    });
}

use bindings::wasi::logging::logging::{Host, Level};

/// The longest message kept; a longer one is cut there and says so, so one record cannot
/// flood the log.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Where one instance's records go: the span it was created in, and the service's name.
pub struct InstanceLog {
    span: tracing::Span,
    service: std::sync::Arc<str>,
}

impl InstanceLog {
    /// Records go under `span` (the request's or message's), tagged with `service`.
    pub fn new(span: tracing::Span, service: std::sync::Arc<str>) -> Self {
        Self { span, service }
    }
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = &'a InstanceLog;
}

/// Links `wasi:logging`; `get` borrows the instance's [`InstanceLog`] from the store.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> &InstanceLog) -> anyhow::Result<()> {
    bindings::wasi::logging::logging::add_to_linker::<T, HasLog>(linker, get)?;
    Ok(())
}

/// Cuts `message` at a character boundary at most [`MAX_MESSAGE_BYTES`] in.
fn bounded(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message.into();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &message[..end], message.len() - end).into()
}

impl Host for &InstanceLog {
    fn log(&mut self, level: Level, context: String, message: String) {
        let message = bounded(&message);
        let service = &*self.service;
        // `tracing` wants the level as a constant, hence one arm each.
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "skiff::component", parent: &self.span, $level, service, context, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error | Level::Critical => emit!(tracing::Level::ERROR),
        }
    }
}

/// The logging capability: every instance logs into the span it was created in.
pub struct LoggingCapability;

#[async_trait]
impl Capability for LoggingCapability {
    type Service = std::sync::Arc<str>;
    type Instance = InstanceLog;

    fn name(&self) -> &'static str {
        "logging"
    }

    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        add_to_linker(linker, |store| &*store.capability::<Self>().state)
    }

    async fn configure(&self, service: &ServiceSetup<'_>) -> anyhow::Result<std::sync::Arc<str>> {
        Ok(service.service.name.as_str().into())
    }

    fn instance(&self, service: &std::sync::Arc<str>) -> InstanceLog {
        // Instances are created inside the span of the request or message they serve.
        InstanceLog::new(tracing::Span::current(), service.clone())
    }
}

#[async_trait]
impl Composed for LoggingCapability {
    type Args = NoFlags;
    type Settings = ();

    fn settings(_args: &NoFlags) {}

    async fn build(_settings: &(), _host: &HostResources<'_>) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGE_BYTES, bounded};

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} bytes cut)", long.len() - MAX_MESSAGE_BYTES)));
    }
}
