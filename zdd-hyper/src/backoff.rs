//! The pause between failed accepts, shared by the public and the admin accept loops.

use std::time::Duration;

const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Pauses between failed accepts: 10 ms, doubling up to [`MAX_ACCEPT_BACKOFF`]. Errors such
/// as running out of file descriptors persist for a while; retrying at once would spin.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Duration::from_millis(10))
    }
}

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = (self.0 * 2).min(MAX_ACCEPT_BACKOFF);
        pause
    }
}
