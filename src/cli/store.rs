//! The host for `mcp-policy eval`: Envoy's shared data in memory and a real
//! clock, so a request is decided exactly as the filter decides it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::host::Clock;

pub use crate::memory::MemorySharedData;

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_time(&self) -> Duration {
        // A clock set before 1970 reads as the epoch rather than failing.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_after_2020() {
        assert!(SystemClock.unix_time().as_secs() > 1_577_836_800);
    }
}
