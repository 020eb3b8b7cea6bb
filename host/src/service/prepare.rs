//! Preparing a service to serve: the capabilities prepare its active version through its
//! exports (the sql capability applies its migrations), then prepare what they hold for the
//! service (the outbox table). At start this is retried with back-off until it succeeds (the
//! database may start after the host, as pods do); until then the service is not ready.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::service_core::ServiceCore;
use super::slot::Slot;
use crate::retry::retry_forever;

pub struct Preparation {
    pub(super) core: Arc<ServiceCore>,
    pub(super) slot: Arc<Slot>,
    prepared: AtomicBool,
    /// Why the last attempt failed, for the readiness answer.
    failure: Mutex<Option<String>>,
}

impl Preparation {
    pub(super) fn new(core: Arc<ServiceCore>, slot: Arc<Slot>) -> Self {
        Self { core, slot, prepared: AtomicBool::new(false), failure: Mutex::new(None) }
    }

    /// Prepares the active version, then the capabilities' own state for the service.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        let core = &self.core;
        let version = core.exports_of(self.slot.active());
        core.capabilities.prepare_version(&core.states, &version).await?;
        core.capabilities.prepare(&core.states).await?;
        self.prepared.store(true, Ordering::Release);
        Ok(())
    }

    /// Retries [`Preparation::prepare`] with back-off until it succeeds.
    pub async fn until_done(&self) {
        retry_forever(
            || self.prepare(),
            |error: &anyhow::Error, retry_in| {
                let error = format!("{error:#}");
                tracing::warn!(service = %self.core.name, %error, ?retry_in, "not prepared to serve; retrying");
                *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
            },
        )
        .await;
        tracing::info!(service = %self.core.name, "prepared to serve");
    }

    pub fn is_done(&self) -> bool {
        self.prepared.load(Ordering::Acquire)
    }

    /// Why the service is not prepared yet; `None` once it is.
    pub fn missing(&self) -> Option<String> {
        if self.is_done() {
            return None;
        }
        let failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Some(match failure {
            Some(failure) => format!("not prepared to serve yet (migrations): {failure}"),
            None => "not prepared to serve yet (migrations)".into(),
        })
    }
}
