//! The export side of a capability: what it calls in the component rather than what the
//! component calls in it. `skiff:sql` reads a version's migrations before the version serves;
//! `skiff:messaging` asks the active version which queues it consumes and hands it each
//! delivery. The service gives a capability instances of its versions through the two traits
//! below, and never needs to know which capability calls what.

use async_trait::async_trait;
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::InstancePre;

/// One version of a service's component, as a capability sees it from the export side.
pub trait VersionExports<T: 'static>: Send + Sync {
    /// The version's label, for logs and errors.
    fn label(&self) -> &str;

    /// The interfaces it imports, e.g. `skiff:messaging/producer@0.3.0`.
    fn imports(&self) -> &[String];

    /// The interfaces it exports, e.g. `skiff:sql/migrations@0.2.0`.
    fn exports(&self) -> &[String];

    /// Whether it imports an interface whose name starts with `prefix`.
    fn imports_interface(&self, prefix: &str) -> bool {
        self.imports().iter().any(|name| name.starts_with(prefix))
    }

    /// Whether it exports an interface whose name starts with `prefix`.
    fn exports_interface(&self, prefix: &str) -> bool {
        self.exports().iter().any(|name| name.starts_with(prefix))
    }

    /// A fresh instance of this version for a short setup call (its migrations, its
    /// subscriptions): outside the bound on request instances, with a deadline of seconds.
    fn setup_instance(&self) -> ExportInstance<T>;
}

/// The instances a capability calls for the life of the process (a consumer), always of the
/// version that serves now.
#[async_trait]
pub trait ActiveInstances<T: 'static>: Send + Sync {
    /// The version that serves now.
    fn active(&self) -> Box<dyn VersionExports<T>>;

    /// A fresh instance of the active version for one message, within the host's bound on
    /// instances and the request timeout. It counts as live until it is dropped.
    async fn for_message(&self, message_id: &str) -> anyhow::Result<ExportInstance<T>>;
}

/// A store and a component ready to instantiate in it, until `deadline`. The store traps once
/// the deadline passes; a caller waiting on a host call bounds that wait with the deadline too.
pub struct ExportInstance<T: 'static> {
    pub store: Store<T>,
    pub pre: InstancePre<T>,
    pub deadline: Instant,
    /// What the instance holds while it lives (its slot among the host's instances).
    _held: Option<Box<dyn Send>>,
}

impl<T: 'static> ExportInstance<T> {
    pub fn new(store: Store<T>, pre: InstancePre<T>, deadline: Instant) -> Self {
        Self { store, pre, deadline, _held: None }
    }

    /// The same instance, keeping `held` until it is dropped.
    pub fn holding(self, held: impl Send + 'static) -> Self {
        Self { _held: Some(Box::new(held)), ..self }
    }
}

/// Why a capability could not prepare a version to serve; the running version stays.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct VersionRefused {
    /// A short fixed word for metrics and problem types (`migrations-failed`).
    pub kind: &'static str,
    pub reason: String,
}

impl VersionRefused {
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self { kind, reason: reason.into() }
    }
}
