//! When a canary has failed enough to be rolled back, or served enough to be promoted.

use std::collections::VecDeque;

/// How a canary is judged.
#[derive(Debug, Clone)]
pub struct CanaryPolicy {
    /// Outcomes remembered: the error rate is over the last this many canary requests.
    pub window: usize,
    /// The rate's denominator is never smaller than this, so one early error out of one
    /// request is 1/min_requests, not 100%.
    pub min_requests: usize,
    /// Above this share of failed requests (5xx, traps, deadlines) the canary is rolled back.
    pub max_error_rate: f64,
    /// Promote after this many canary requests within the error budget; 0 = only on command.
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

/// What one more outcome means for the canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Too many failures: `errors` of the last `seen` requests.
    RollBack {
        errors: usize,
        seen: usize,
    },
    Promote,
}

/// The canary's recent outcomes.
#[derive(Debug, Default)]
pub struct Window {
    failed: VecDeque<bool>,
    errors: usize,
    total: u64,
}

impl Window {
    pub fn record(&mut self, failed: bool, policy: &CanaryPolicy) -> Verdict {
        self.failed.push_back(failed);
        self.errors += usize::from(failed);
        self.total += 1;
        while self.failed.len() > policy.window.max(1) {
            if self.failed.pop_front() == Some(true) {
                self.errors -= 1;
            }
        }
        // A canary that fails every request is caught after a couple of requests, not after
        // `min_requests`: the budget is a share of at least `min_requests`.
        let budget = policy.max_error_rate * self.failed.len().max(policy.min_requests) as f64;
        if self.errors as f64 > budget {
            return Verdict::RollBack { errors: self.errors, seen: self.failed.len() };
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

    fn run(policy: &CanaryPolicy, outcomes: impl IntoIterator<Item = bool>) -> Vec<Verdict> {
        let mut window = Window::default();
        outcomes.into_iter().map(|failed| window.record(failed, policy)).collect()
    }

    #[test]
    fn a_canary_failing_every_request_is_rolled_back_on_its_second_failure() {
        let verdicts = run(&CanaryPolicy::default(), [true, true, true]);
        assert_eq!(verdicts[0], Verdict::Continue);
        assert_eq!(verdicts[1], Verdict::RollBack { errors: 2, seen: 2 });
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
}
