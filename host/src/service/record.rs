//! Per-request bookkeeping: each served request counts against the version that served it, and
//! a running canary is judged by it.

use http::StatusCode;

use super::Service;
use super::slot::{CanaryEnd, Picked};
use crate::metrics::{RollbackLabels, SwapLabels, VersionLabels};

impl Service {
    /// Counts a served request against its version and judges a canary by it.
    pub(super) fn record(&self, picked: &Picked, status: StatusCode) {
        let failed = status.is_server_error();
        let labels = VersionLabels {
            route: self.name.clone(),
            version: picked.version().label.clone(),
            result: if failed { "error" } else { "ok" }.into(),
        };
        self.ctx.metrics.version_requests.get_or_create(&labels).inc();
        match self.slot.record(picked, failed) {
            None => {}
            Some(CanaryEnd::RolledBack { label, errors, seen, served }) => {
                tracing::warn!(service = %self.name, version = %label, errors, seen, served,
                    "canary rolled back: too many failed requests");
                self.count_rollback("canary-errors");
            }
            Some(CanaryEnd::Promoted { label }) => {
                tracing::info!(service = %self.name, version = %label, "canary promoted after a clean window");
                self.count_swap("promoted");
            }
        }
    }

    pub(super) fn count_rollback(&self, reason: &str) {
        let labels = RollbackLabels { route: self.name.clone(), reason: reason.into() };
        self.ctx.metrics.rollbacks.get_or_create(&labels).inc();
    }

    pub(super) fn count_swap(&self, result: &str) {
        self.ctx.metrics.swaps.get_or_create(&SwapLabels { route: self.name.clone(), result: result.into() }).inc();
    }
}
