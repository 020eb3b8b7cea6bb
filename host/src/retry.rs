//! Waiting for something that will come back — a database that starts after the host, a broker
//! that went away — with one back-off policy for every such wait in the host (the `backon`
//! crate). Redelivering a message its consumer failed is another matter, with limits an
//! operator sets: `capability::messaging::RetryPolicy` (so many attempts, then a dead letter).

use backon::{ExponentialBuilder, Retryable};
use std::future::Future;
use std::time::Duration;

/// The first wait after a failure.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Waits double up to this, so a dependency that comes back is noticed within seconds.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Doubling waits from [`FIRST_DELAY`] to [`MAX_DELAY`], with jitter so that replicas that lost
/// the same dependency do not all come back at the same instant; never gives up.
fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// Runs `attempt` until it succeeds, waiting with back-off in between; `on_failure` sees each
/// error and the wait that follows it (to log it, or to mark something not ready).
pub async fn retry_forever<T, E, Fut>(mut attempt: impl FnMut() -> Fut, mut on_failure: impl FnMut(&E, Duration)) -> T
where
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        // The policy has no limit on attempts; should it ever stop, start it over.
        if let Ok(value) = (&mut attempt).retry(policy()).notify(&mut on_failure).await {
            return value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn retries_until_success_with_growing_waits() {
        let calls = Cell::new(0);
        let mut waits = Vec::new();
        let value = retry_forever(
            || {
                calls.set(calls.get() + 1);
                let n = calls.get();
                async move { if n < 4 { Err(n) } else { Ok(n * 10) } }
            },
            |_: &u32, wait| waits.push(wait),
        )
        .await;
        assert_eq!(value, 40);
        assert_eq!(waits.len(), 3);
        // Jitter adds up to the base delay: each wait is within [base, 2 * base].
        for (n, wait) in waits.iter().enumerate() {
            let base = (FIRST_DELAY * 2u32.pow(n as u32)).min(MAX_DELAY);
            assert!(*wait >= base && *wait <= base * 2, "wait {n} was {wait:?}, base {base:?}");
        }
    }
}
