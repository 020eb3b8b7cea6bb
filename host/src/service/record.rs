//! Per-request bookkeeping: each served request counts against the version that served it, and
//! a running canary is judged by it. Only a version's own faults count against it: a trap, its
//! deadline, a 5xx of its own. A 503 with `Retry-After` is load shed (the host's bcrypt queue
//! full, say), and 4xx (429 included) are the client's; neither counts for or against it. A
//! request whose client went away is dropped with its future and never recorded.

use http::StatusCode;

use super::canary::Judgement;
use super::invoke::RequestPath;
use super::outcome::Outcome;
use super::slot::{CanaryEnd, Picked};
use crate::metrics::VersionLabels;

/// How `outcome` bears on the version that produced it, and its `result` label.
pub(super) fn judge(outcome: &Outcome) -> (Judgement, &'static str) {
    match outcome {
        Outcome::Answered(response) => {
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE && response.headers().contains_key(http::header::RETRY_AFTER) {
                (Judgement::NotJudged, "shed")
            } else if status.is_server_error() {
                (Judgement::Failed, "error")
            } else if status.is_client_error() {
                (Judgement::NotJudged, "ok")
            } else {
                (Judgement::Succeeded, "ok")
            }
        }
        Outcome::DeadlineExceeded | Outcome::ComponentFailed => (Judgement::Failed, "error"),
        // Refused before any instance ran: the client's doing, or the host's load.
        Outcome::Overloaded => (Judgement::NotJudged, "shed"),
        Outcome::Malformed(_) | Outcome::BodyTooLarge { .. } | Outcome::BodyTimeout { .. } => {
            (Judgement::NotJudged, "ok")
        }
    }
}

impl RequestPath {
    /// Counts a served request against its version and judges a canary by it.
    pub(super) fn record(&self, picked: &Picked, outcome: &Outcome) {
        let (judgement, result) = judge(outcome);
        let labels = VersionLabels {
            route: self.core.name.clone(),
            version: picked.version().label.clone(),
            result: result.into(),
        };
        self.core.ctx.metrics.version_requests.get_or_create(&labels).inc();
        match self.slot.record(picked, judgement) {
            None => {}
            Some(CanaryEnd::RolledBack { label, evidence, served }) => {
                tracing::warn!(service = %self.core.name, version = %label, served, "canary rolled back: {}", evidence.describe());
                self.core.count_rollback("canary-errors");
            }
            Some(CanaryEnd::Promoted { label }) => {
                tracing::info!(service = %self.core.name, version = %label, "canary promoted after a clean window");
                self.core.count_swap("promoted");
            }
        }
    }
}
