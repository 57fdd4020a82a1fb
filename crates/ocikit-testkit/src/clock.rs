//! A clock a test sets and advances by hand, for code whose grace periods and TTLs read an
//! injected clock: a test moves time past a grace period instead of sleeping through it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A shared, manually advanced wall clock (clones see the same time).
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock reading the real time now (so that what the system stamps, such as file
    /// times, agrees with it until the test advances it).
    pub fn starting_now() -> ManualClock {
        ManualClock::at(SystemTime::now())
    }

    /// A clock reading `time`.
    pub fn at(time: SystemTime) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(time)))
    }

    /// What it reads.
    pub fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }

    /// Moves it forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }

    /// A closure reading it, for APIs that take `Fn() -> SystemTime`.
    pub fn reader(&self) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        let clock = self.clone();
        move || clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_time_and_it_moves_only_when_advanced() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let clock = ManualClock::at(start);
        let read = clock.reader();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(read(), start);
        clock.clone().advance(Duration::from_secs(60));
        assert_eq!(read(), start + Duration::from_secs(60));
        assert_eq!(clock.now(), start + Duration::from_secs(60));
    }
}
