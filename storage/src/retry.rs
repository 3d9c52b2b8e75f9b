//! Bounded retrying of transient failures: exponential backoff with jitter, within a total time budget.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The first wait; doubles per attempt up to [`MAX_DELAY`].
const BASE_DELAY: Duration = Duration::from_millis(100);
/// The longest single wait, so a store that comes back is noticed within a few seconds.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// One failed attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong, for the final error and the retry log.
    pub message: String,
    /// Whether another attempt may succeed.
    pub transient: bool,
}

/// The final outcome of a retried operation that did not succeed.
#[derive(Debug)]
pub(crate) struct GaveUp {
    pub failure: Failure,
    pub attempts: u32,
}

/// Runs `attempt` until it succeeds, fails non-transiently, or `budget` has passed since the first try.
/// The last wait is cut short so one final attempt happens at the deadline.
pub(crate) async fn retry<T, Fut>(
    budget: Duration,
    what: impl Fn() -> String,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, GaveUp>
where
    Fut: Future<Output = Result<T, Failure>>,
{
    let deadline = Instant::now() + budget;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let now = Instant::now();
        if !failure.transient || now >= deadline {
            return Err(GaveUp { failure, attempts });
        }
        let delay = backoff(attempts).min(deadline - now);
        tracing::warn!(
            operation = %what(),
            attempt = attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = %failure.message,
            "transient storage failure, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// The wait after the `attempt`-th failure: uniform in [d/2, d] with d = 100 ms * 2^(attempt-1), at
/// most 5 s. The jitter spreads many workers' retries after a shared outage.
fn backoff(attempt: u32) -> Duration {
    let exp = BASE_DELAY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_DELAY);
    let half = exp / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            let exp = BASE_DELAY
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_DELAY);
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
        assert!(backoff(30) <= MAX_DELAY);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let out: Result<(), _> = retry(
            Duration::from_secs(1),
            || "test".into(),
            || {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(Failure {
                        message: "refused".into(),
                        transient: true,
                    })
                }
            },
        )
        .await;
        let gave_up = out.unwrap_err();
        assert_eq!(gave_up.attempts, calls.load(Ordering::SeqCst));
        // 100, 200, 400 ms waits at most before the wait cut short by the deadline
        assert!(gave_up.attempts >= 4, "{}", gave_up.attempts);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1500),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let out: Result<(), _> = retry(
            Duration::from_secs(10),
            || "test".into(),
            || async {
                Err(Failure {
                    message: "forbidden".into(),
                    transient: false,
                })
            },
        )
        .await;
        assert_eq!(out.unwrap_err().attempts, 1);
    }

    #[tokio::test]
    async fn recovers_after_transient_failures() {
        let calls = AtomicU32::new(0);
        let out = retry(
            Duration::from_secs(10),
            || "test".into(),
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 3 {
                        Err(Failure {
                            message: "refused".into(),
                            transient: true,
                        })
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await;
        assert_eq!(out.unwrap(), 3);
    }
}
