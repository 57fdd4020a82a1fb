//! Retries: exponential backoff, `Retry-After`, and which failures may go away by
//! themselves.

use std::time::Duration;

use reqwest::header::{self};

use crate::{Client, tls_failure};

impl Client {
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let s = &self.inner.settings;
        s.backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(s.max_backoff)
    }
}

/// Whether a request error may go away by itself; TLS failures (a certificate that does not
/// verify, a server that does not speak TLS) do not.
pub(crate) fn retryable(e: &reqwest::Error) -> bool {
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()) && tls_failure(e).is_none()
}

/// `Retry-After` in seconds (an HTTP date is treated as "soon": one second).
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    Some(match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => Duration::from_secs(1),
    })
}
