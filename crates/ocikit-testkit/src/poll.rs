//! Waiting for something to become true, with a deadline: tests poll instead of sleeping a
//! guessed time, so they are as fast as the thing they wait for and fail with a message when
//! it never happens.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long between two looks.
const INTERVAL: Duration = Duration::from_millis(20);

/// Calls `ready` until it returns `Some`, for at most `timeout`; panics naming `what` if it
/// never does.
pub fn wait_until<T>(what: &str, timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not the case after {timeout:?}"
        );
        std::thread::sleep(INTERVAL);
    }
}

/// [`wait_until`] for async conditions, inside a tokio runtime.
pub async fn eventually<T, F>(what: &str, timeout: Duration, mut ready: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not the case after {timeout:?}"
        );
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_ready_and_fails_past_the_deadline() {
        let mut calls = 0;
        let value = wait_until("third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(value, 3);
        let never = std::panic::catch_unwind(|| {
            wait_until("never", Duration::from_millis(50), || None::<()>)
        });
        let message = never.expect_err("a condition that never holds must fail");
        let message = message.downcast_ref::<String>().expect("a formatted panic");
        assert!(
            message.starts_with("never: still not the case"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn eventually_polls_async_conditions() {
        let start = Instant::now();
        let value = eventually("100 ms passed", Duration::from_secs(5), || async {
            (start.elapsed() >= Duration::from_millis(100)).then_some(7)
        })
        .await;
        assert_eq!(value, 7);
    }
}
