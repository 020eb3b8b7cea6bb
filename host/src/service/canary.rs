//! When a canary has failed enough to be rolled back, or served enough to be promoted.
//!
//! Only a version's own faults count against it ([`Judgement`]), and a canary is judged against
//! the stable version over the same stretch of time, as Flagger and Argo Rollouts compare a
//! canary's metrics with the primary's: an overload that makes both fail is not the canary's
//! doing. No verdict before the canary has a minimum sample.

use std::collections::VecDeque;

/// How a canary is judged.
#[derive(Debug, Clone)]
pub struct CanaryPolicy {
    /// The canary's judged requests remembered: its error rate is over the last this many, the
    /// stable version's over the requests it served in the same time.
    pub window: usize,
    /// No rollback before the canary has this many judged requests in the window.
    pub min_requests: usize,
    /// Rolled back when the canary's error rate exceeds the stable version's by more than this
    /// (the stable version's counts once it has `min_requests` of its own in the window; before
    /// that, the canary's rate is held against this alone).
    pub max_error_rate: f64,
    /// Promote after this many judged canary requests within the error budget; 0 = only on
    /// command.
    pub promote_after: u64,
}

impl CanaryPolicy {
    pub const DEFAULT_WINDOW: usize = 100;
    pub const DEFAULT_MIN_REQUESTS: usize = 20;
    pub const DEFAULT_MAX_ERROR_PERCENT: f64 = 5.0;
    pub const DEFAULT_PROMOTE_AFTER: u64 = 0;
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            window: Self::DEFAULT_WINDOW,
            min_requests: Self::DEFAULT_MIN_REQUESTS,
            max_error_rate: Self::DEFAULT_MAX_ERROR_PERCENT / 100.0,
            promote_after: Self::DEFAULT_PROMOTE_AFTER,
        }
    }
}

/// How one request bears on the version that served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Succeeded,
    /// The version's own fault: a trap, its deadline, a 5xx of its own.
    Failed,
    /// Neither: load shed (503 with `Retry-After`), the client's error (4xx, 429).
    NotJudged,
}

/// What the window showed when a canary was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    pub canary_errors: usize,
    pub canary_requests: usize,
    pub stable_errors: usize,
    pub stable_requests: usize,
}

impl Evidence {
    /// For the log and the release status.
    pub fn describe(&self) -> String {
        let percent = |errors: usize, requests: usize| 100.0 * errors as f64 / requests.max(1) as f64;
        format!(
            "{} of its last {} requests failed ({:.0}%), the stable version's {} of {} ({:.0}%) in the same time",
            self.canary_errors,
            self.canary_requests,
            percent(self.canary_errors, self.canary_requests),
            self.stable_errors,
            self.stable_requests,
            percent(self.stable_errors, self.stable_requests),
        )
    }
}

/// What one more outcome means for the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The canary fails more than the stable version, past the budget.
    RollBack(Evidence),
    Promote,
}

/// Judged requests of both versions since the canary started, oldest first.
#[derive(Debug, Default)]
pub struct Window {
    /// (on the canary, failed).
    outcomes: VecDeque<(bool, bool)>,
    canary: Counts,
    stable: Counts,
    /// Judged canary requests since it started.
    total: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: usize,
    errors: usize,
}

impl Counts {
    fn add(&mut self, failed: bool) {
        self.requests += 1;
        self.errors += usize::from(failed);
    }

    fn remove(&mut self, failed: bool) {
        self.requests -= 1;
        self.errors -= usize::from(failed);
    }

    fn rate(self) -> f64 {
        self.errors as f64 / self.requests.max(1) as f64
    }
}

/// Stable requests kept per canary request at most (a 1 % canary), so the window stays bounded.
const STABLE_PER_CANARY: usize = 100;

impl Window {
    /// Records a judged request of the canary (`on_canary`) or of the stable version; only the
    /// canary's own requests can end it.
    pub fn record(&mut self, on_canary: bool, failed: bool, policy: &CanaryPolicy) -> Verdict {
        self.outcomes.push_back((on_canary, failed));
        if on_canary {
            self.canary.add(failed);
            self.total += 1;
        } else {
            self.stable.add(failed);
        }
        let window = policy.window.max(1);
        while self.canary.requests > window || self.outcomes.len() > window * STABLE_PER_CANARY {
            let Some((canary, failed)) = self.outcomes.pop_front() else { break };
            if canary { self.canary.remove(failed) } else { self.stable.remove(failed) }
        }
        if !on_canary {
            return Verdict::Continue;
        }
        if self.canary.requests >= policy.min_requests.max(1) {
            let baseline = if self.stable.requests >= policy.min_requests.max(1) { self.stable.rate() } else { 0.0 };
            if self.canary.rate() > baseline + policy.max_error_rate {
                return Verdict::RollBack(Evidence {
                    canary_errors: self.canary.errors,
                    canary_requests: self.canary.requests,
                    stable_errors: self.stable.errors,
                    stable_requests: self.stable.requests,
                });
            }
        }
        if policy.promote_after > 0 && self.total >= policy.promote_after {
            return Verdict::Promote;
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdicts on a run of canary outcomes (`true`: failed), no stable traffic.
    fn run(policy: &CanaryPolicy, outcomes: impl IntoIterator<Item = bool>) -> Vec<Verdict> {
        let mut window = Window::default();
        outcomes.into_iter().map(|failed| window.record(true, failed, policy)).collect()
    }

    #[test]
    fn a_canary_failing_every_request_is_rolled_back_once_it_has_a_sample() {
        let sample = CanaryPolicy::DEFAULT_MIN_REQUESTS;
        let verdicts = run(&CanaryPolicy::default(), std::iter::repeat_n(true, sample + 1));
        assert!(verdicts[..sample - 1].iter().all(|v| *v == Verdict::Continue), "{verdicts:?}");
        let evidence =
            Evidence { canary_errors: sample, canary_requests: sample, stable_errors: 0, stable_requests: 0 };
        assert_eq!(verdicts[sample - 1], Verdict::RollBack(evidence));
        let said = evidence.describe();
        assert!(said.starts_with(&format!("{sample} of its last {sample} requests failed (100%)")), "{said}");
    }

    #[test]
    fn rare_errors_stay_within_the_budget() {
        let outcomes = (0..1000).map(|i| i % 50 == 0);
        assert!(run(&CanaryPolicy::default(), outcomes).iter().all(|v| *v == Verdict::Continue));
    }

    #[test]
    fn old_errors_leave_the_window() {
        let policy = CanaryPolicy { window: 20, ..CanaryPolicy::default() };
        let outcomes = [true].into_iter().chain(std::iter::repeat_n(false, 30)).chain([true]);
        assert!(run(&policy, outcomes).iter().all(|v| *v == Verdict::Continue));
    }

    #[test]
    fn a_clean_canary_is_promoted_when_asked_to() {
        let policy = CanaryPolicy { promote_after: 3, ..CanaryPolicy::default() };
        assert_eq!(run(&policy, [false, false, false]), [Verdict::Continue, Verdict::Continue, Verdict::Promote]);
    }

    /// 50 % canary, both versions failing `stable_fails` and `canary_fails` of every 4 requests.
    fn side_by_side(canary_fails: usize, stable_fails: usize, rounds: usize) -> Vec<Verdict> {
        let policy = CanaryPolicy::default();
        let mut window = Window::default();
        let mut verdicts = Vec::new();
        for round in 0..rounds {
            window.record(false, round % 4 < stable_fails, &policy);
            verdicts.push(window.record(true, round % 4 < canary_fails, &policy));
        }
        verdicts
    }

    #[test]
    fn an_overload_that_fails_both_versions_is_not_the_canarys_fault() {
        // Half of every version's requests fail: the canary is no worse than the stable one.
        assert!(side_by_side(2, 2, 400).iter().all(|v| *v == Verdict::Continue));
        // The same failure rate on the canary alone is its own.
        let verdicts = side_by_side(2, 0, 400);
        let Some(Verdict::RollBack(evidence)) = verdicts.iter().find(|v| **v != Verdict::Continue) else {
            panic!("{verdicts:?}")
        };
        assert_eq!((evidence.stable_errors, evidence.canary_requests), (0, CanaryPolicy::DEFAULT_MIN_REQUESTS));
        // Worse than the stable version by more than the budget: its own too.
        assert!(side_by_side(3, 1, 400).iter().any(|v| matches!(v, Verdict::RollBack(_))));
    }
}
