//! Waiting in tests. Something that should happen is awaited with a deadline (`eventually`);
//! something that should not is watched for a while, failing the moment it happens
//! (`assert_stays`). No test sleeps and then looks.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it gives `Ok`, and returns that value; fails the test with the last
/// `Err` (what is still missing) once `within` has passed.
pub async fn eventually<T, Fut>(within: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(missing) => assert!(Instant::now() < deadline, "after {within:?}: {missing}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Checks `holds` throughout `period` (at its start, every few milliseconds, and at its end),
/// failing the test with `holds`' `Err` as soon as it stops holding.
pub async fn assert_stays<Fut>(period: Duration, mut holds: impl FnMut() -> Fut)
where
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + period;
    loop {
        let looked_at = Instant::now();
        if let Err(broken) = holds().await {
            panic!("within {period:?}: {broken}");
        }
        if looked_at >= deadline {
            return;
        }
        tokio::time::sleep(POLL.min(deadline - looked_at)).await;
    }
}

/// `Ok(())` when `condition` is true, else `Err(message)`: for the closures above.
pub fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "after 100ms: still missing")]
    async fn eventually_fails_once_its_deadline_has_passed() {
        eventually(Duration::from_millis(100), || async { Err::<(), _>("still missing".to_owned()) }).await;
    }

    #[tokio::test]
    async fn eventually_returns_what_came() {
        let started = Instant::now();
        let waited = eventually(Duration::from_secs(5), || async {
            let elapsed = started.elapsed();
            if elapsed > Duration::from_millis(50) { Ok(elapsed) } else { Err("not yet".into()) }
        })
        .await;
        assert!(waited < Duration::from_secs(1), "{waited:?}");
    }

    #[tokio::test]
    #[should_panic(expected = "broke after")]
    async fn assert_stays_fails_when_the_condition_breaks_within_its_period() {
        let started = Instant::now();
        assert_stays(Duration::from_millis(300), || async {
            let elapsed = started.elapsed();
            check(elapsed < Duration::from_millis(100), || format!("broke after {elapsed:?}"))
        })
        .await;
    }
}
