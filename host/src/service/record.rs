//! Per-request bookkeeping: each served request counts against the version that served it, and
//! a running canary is judged by it.

use http::StatusCode;

use super::invoke::RequestPath;
use super::slot::{CanaryEnd, Picked};
use crate::metrics::VersionLabels;

impl RequestPath {
    /// Counts a served request against its version and judges a canary by it.
    pub(super) fn record(&self, picked: &Picked, status: StatusCode) {
        let failed = status.is_server_error();
        let labels = VersionLabels {
            route: self.core.name.clone(),
            version: picked.version().label.clone(),
            result: if failed { "error" } else { "ok" }.into(),
        };
        self.core.ctx.metrics.version_requests.get_or_create(&labels).inc();
        match self.slot.record(picked, failed) {
            None => {}
            Some(CanaryEnd::RolledBack { label, errors, seen, served }) => {
                tracing::warn!(service = %self.core.name, version = %label, errors, seen, served,
                    "canary rolled back: too many failed requests");
                self.core.count_rollback("canary-errors");
            }
            Some(CanaryEnd::Promoted { label }) => {
                tracing::info!(service = %self.core.name, version = %label, "canary promoted after a clean window");
                self.core.count_swap("promoted");
            }
        }
    }
}
