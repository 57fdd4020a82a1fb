//! The wall clock that ages are judged by (garbage collection's grace periods in layouts
//! and registries, a registry's upload TTLs): the system's, or one a test controls, so that
//! it moves past a grace period or a TTL without waiting for it. What is judged (write
//! times of the store, stamps recorded by its users) is always recorded in system time; an
//! injected clock decides only what "now" is.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the time now (cheap to clone).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use ocikit_store::Clock;
///
/// let frozen = Clock::from_fn(|| UNIX_EPOCH + Duration::from_secs(90));
/// assert_eq!(frozen.now_unix_ms(), 90_000);
/// assert!(Clock::system().now() > UNIX_EPOCH);
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime::now))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }

    /// The time now, by this clock.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }

    /// Milliseconds since the Unix epoch, by this clock (0 before the epoch, `u64::MAX`
    /// past what 64 bits hold).
    pub fn now_unix_ms(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}
