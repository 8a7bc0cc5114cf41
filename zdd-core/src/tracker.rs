//! Tracking in-flight requests and open connections.
//!
//! A [`RequestGuard`] or [`ConnectionGuard`] counts as one unit of work from the moment it
//! is created until it is dropped; the drain ends when every count is back to zero. Counting
//! is built on tokio-util's [`TaskTracker`](tokio_util::task::TaskTracker): acquiring and
//! releasing a guard are atomic operations, and the drain's waiter is only woken when a count
//! reaches zero after draining started, never on the request path before it.
//!
//! Guards are panic-safe: a handler that panics unwinds through its future, which drops the
//! guard and releases the count.
//!
//! # Examples
//!
//! ```
//! use zdd_core::{Config, Lifecycle};
//!
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//!
//! let connection = handle.track_connection();
//! let request = handle.track_request();
//! assert_eq!((handle.open_connections(), handle.in_flight_requests()), (1, 1));
//!
//! request.finish();
//! drop(connection);
//! assert_eq!((handle.open_connections(), handle.in_flight_requests()), (0, 0));
//! ```

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{Method, Uri};
use tokio::time::Instant;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::{Phase, lifecycle::Shared};

/// Counters for the report. Relaxed ordering is enough: they are only read after the drain,
/// and the trackers' own synchronisation orders every release before the drain ends.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) requests_completed: AtomicU64,
    pub(crate) requests_aborted: AtomicU64,
    pub(crate) requests_rejected: AtomicU64,
    pub(crate) connections_graceful: AtomicU64,
    pub(crate) connections_forced: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    #[cfg(feature = "tower")]
    pub(crate) fn record_rejected(&self) {
        Self::bump(&self.requests_rejected);
    }
}

/// One request in flight. Counts until [finished](RequestGuard::finish) or dropped.
///
/// Dropping a guard that was not finished means the request was abandoned (the client went
/// away, the handler panicked, or the connection was forced closed). When that happens
/// during [`Phase::Forcing`], it is logged with its method, path and age and counted as
/// aborted in the report.
///
/// Cloning is not offered: one guard is one request.
pub struct RequestGuard {
    _token: TaskTrackerToken,
    shared: Arc<Shared>,
    started: Instant,
    request: Option<(Method, Uri)>,
    finished: bool,
}

impl RequestGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            _token: shared.requests.token(),
            shared,
            started: Instant::now(),
            request: None,
            finished: false,
        }
    }

    /// Names the request for the log line written if it is forced closed.
    #[must_use]
    pub fn describe(mut self, method: Method, uri: Uri) -> Self {
        self.request = Some((method, uri));
        self
    }

    /// How long the request has been in flight.
    #[must_use]
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// The current phase, read with one atomic load.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// Marks the request complete and releases it.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for RequestGuard {
    /// Releases the request; the drain ends when the last one is released.
    fn drop(&mut self) {
        let phase = self.shared.phase();
        if !phase.is_shutting_down() {
            return;
        }
        if self.finished {
            Stats::bump(&self.shared.stats.requests_completed);
        } else if phase >= Phase::Forcing {
            Stats::bump(&self.shared.stats.requests_aborted);
            let age_ms = self.started.elapsed().as_millis() as u64;
            match &self.request {
                Some((method, uri)) => {
                    warn!(method = method.as_str(), path = uri.path(), age_ms, "request aborted by forced shutdown");
                }
                None => warn!(age_ms, "request aborted by forced shutdown"),
            }
        }
    }
}

impl fmt::Debug for RequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { _token, shared: _, started, request, finished } = self;
        f.debug_struct("RequestGuard")
            .field("age", &started.elapsed())
            .field("request", request)
            .field("finished", finished)
            .finish()
    }
}

/// One open connection. Counts until dropped.
///
/// A connection dropped before [`Phase::Forcing`] counts as closed gracefully in the report,
/// one dropped during or after it as closed forcibly.
pub struct ConnectionGuard {
    _token: TaskTrackerToken,
    shared: Arc<Shared>,
}

impl ConnectionGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { _token: shared.connections.token(), shared }
    }

    /// The current phase, read with one atomic load.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }
}

impl Drop for ConnectionGuard {
    /// Releases the connection; the drain ends when the last one is released.
    fn drop(&mut self) {
        let phase = self.shared.phase();
        if phase >= Phase::Forcing {
            Stats::bump(&self.shared.stats.connections_forced);
        } else if phase.is_shutting_down() {
            Stats::bump(&self.shared.stats.connections_graceful);
        }
    }
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Lifecycle, Phase};

    #[test]
    fn counts_return_to_start_after_clone_drop_and_downgrade() {
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        let counts = |h: &crate::LifecycleHandle| (h.in_flight_requests(), h.open_connections());
        assert_eq!(counts(&handle), (0, 0));

        let clone = handle.clone();
        let weak = handle.downgrade();
        let r1 = clone.track_request();
        let c1 = clone.track_connection();
        drop(clone);
        assert_eq!(counts(&handle), (1, 1));

        let upgraded = weak.upgrade().unwrap();
        let r2 = upgraded.track_request();
        assert_eq!(counts(&handle), (2, 1));
        drop(upgraded);
        drop(r1);
        r2.finish();
        drop(c1);
        assert_eq!(counts(&handle), (0, 0));
    }

    #[test]
    fn a_weak_handle_does_not_keep_the_lifecycle_alive() {
        let lifecycle = Lifecycle::new(Config::default());
        let weak = lifecycle.handle().downgrade();
        assert!(weak.upgrade().is_some());
        drop(lifecycle);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_panicking_handler_releases_its_request() {
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        let inner = handle.clone();
        let result = std::panic::catch_unwind(move || {
            let _guard = inner.track_request();
            panic!("handler failed");
        });
        assert!(result.is_err());
        assert_eq!(handle.in_flight_requests(), 0);
    }

    #[test]
    fn releases_after_the_trigger_are_counted_by_kind() {
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        // Before the trigger nothing is counted for the report.
        handle.track_request().finish();
        let finished = handle.track_request();
        let abandoned = handle.track_request();
        let graceful = handle.track_connection();
        let forced = handle.track_connection();
        let aborted = handle.track_request();

        handle.shutdown();
        finished.finish();
        drop(abandoned); // the client went away: neither completed nor aborted
        drop(graceful);
        handle.shared.advance(Phase::Forcing);
        drop(forced);
        drop(aborted);

        let stats = &handle.shared.stats;
        let get = super::Stats::get;
        assert_eq!(get(&stats.requests_completed), 1);
        assert_eq!(get(&stats.requests_aborted), 1);
        assert_eq!(get(&stats.connections_graceful), 1);
        assert_eq!(get(&stats.connections_forced), 1);
    }
}
