//! Tracking in-flight requests and open connections.
//!
//! A [`RequestGuard`] or [`ConnectionGuard`] counts as one unit of work from the moment it
//! is created until it is dropped; the drain ends when every count is back to zero. Counting
//! is lock-free: acquiring and releasing a guard are a few atomic operations, and the drain's
//! waiter (a tokio `Notify`) is only woken when a count reaches zero after draining started,
//! never on the request path before it. Background tasks are tracked with tokio-util's
//! [`TaskTracker`](tokio_util::task::TaskTracker).
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
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::Method;
use tokio::sync::Notify;

use crate::{Phase, lifecycle::Shared};

/// How many requests aborted by forcing are logged one by one. Forcing a thousand streams
/// must not write a thousand lines: the rest are counted, and the sequence logs one line
/// with the total (the report has it too).
pub(crate) const ABORTS_LOGGED: u64 = 10;

/// Counters for the report. Relaxed ordering is enough: they are only read after the drain,
/// and the counters' own synchronisation orders every release before the drain ends.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) requests_completed: AtomicU64,
    pub(crate) requests_aborted: AtomicU64,
    pub(crate) requests_rejected: AtomicU64,
    pub(crate) connections_graceful: AtomicU64,
    pub(crate) connections_forced: AtomicU64,
    /// Open connections whose protocol is known, by [`Protocol`] index.
    open_by_protocol: [AtomicUsize; 2],
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
        crate::metrics::late_request_rejected();
    }

    /// Open HTTP/1 and HTTP/2 connections.
    pub(crate) fn open_by_protocol(&self) -> (usize, usize) {
        let [http1, http2] = &self.open_by_protocol;
        (http1.load(Ordering::Relaxed), http2.load(Ordering::Relaxed))
    }
}

/// A count of live guards that the drain can wait on.
///
/// This is the scheme of tokio-util's `TaskTracker`, kept inline so a guard costs one
/// reference-count increment and one counter increment (a `TaskTracker` token would add a
/// second reference count on top of the guard's own handle to the lifecycle).
///
/// # Invariants
///
/// `count` is the number of live guards. `closed` is set once, when draining starts, and
/// never cleared. The waiter is woken only by a release that takes `count` to zero while
/// `closed` is set, so before the drain the request path never touches the `Notify`.
///
/// # Why no wake-up is lost
///
/// The waiter registers with `Notified::enable` and then reads `count`; a releaser
/// decrements `count` and then reads `closed`. Both pairs are `SeqCst`, so in their single
/// total order either the releaser sees `closed` (and `notify_waiters` reaches the already
/// registered waiter, or the waiter's later read of `count` sees zero), or the decrement
/// comes before the waiter's read of `count`, which then sees zero.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    count: AtomicUsize,
    closed: AtomicBool,
    zero: Notify,
}

impl Counter {
    #[inline]
    fn acquire(&self) {
        // Relaxed, as in `Arc::clone`: the count only has to be exact, and releases order
        // themselves with the waiter below.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    fn release(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 && self.closed.load(Ordering::SeqCst) {
            self.zero.notify_waiters();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Lets [`Counter::wait`] complete once the count is zero.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Completes once closed and the count is zero.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.zero.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) && self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The start of a request's path, copied inline so naming a request costs no allocation and
/// no reference count. Long paths are cut at a character boundary.
#[derive(Clone, Copy)]
struct PathSnippet {
    len: u8,
    bytes: [u8; 63],
}

impl PathSnippet {
    const EMPTY: Self = Self {
        len: 0,
        bytes: [0; 63],
    };

    #[inline]
    fn new(path: &str) -> Self {
        let mut end = path.len().min(63);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; 63];
        bytes[..end].copy_from_slice(&path.as_bytes()[..end]);
        Self {
            len: end as u8,
            bytes,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
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
    shared: Arc<Shared>,
    started: coarsetime::Instant,
    method: Option<Method>,
    path: PathSnippet,
    finished: bool,
}

impl RequestGuard {
    #[inline]
    pub(crate) fn new(shared: Arc<Shared>, request: Option<(&Method, &str)>) -> Self {
        shared.requests.acquire();
        let (method, path) = match request {
            Some((method, path)) => (Some(method.clone()), PathSnippet::new(path)),
            None => (None, PathSnippet::EMPTY),
        };
        Self {
            shared,
            // Not `now()`, which also writes a process-wide cache line on every call.
            started: coarsetime::Instant::now_without_cache_update(),
            method,
            path,
            finished: false,
        }
    }

    /// Names the request for the log line written if it is forced closed. The path is kept
    /// up to 63 bytes.
    #[must_use]
    pub fn describe(mut self, method: &Method, path: &str) -> Self {
        self.method = Some(method.clone());
        self.path = PathSnippet::new(path);
        self
    }

    /// How long the request has been in flight, from a coarse clock (a few milliseconds'
    /// resolution, which is what a log line needs and a tenth of the cost of a precise one).
    #[must_use]
    pub fn age(&self) -> Duration {
        (coarsetime::Instant::now_without_cache_update() - self.started).into()
    }

    /// The current phase, read with one atomic load.
    #[must_use]
    #[inline]
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }

    /// Marks the request complete and releases it.
    #[inline]
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for RequestGuard {
    /// Releases the request; the drain ends when the last one is released.
    #[inline]
    fn drop(&mut self) {
        let phase = self.shared.phase();
        if phase.is_shutting_down() {
            self.record_end(phase);
        }
        self.shared.requests.release();
    }
}

impl RequestGuard {
    /// Counts (and, when forced, logs) a request that ends during shutdown.
    #[cold]
    fn record_end(&self, phase: Phase) {
        if self.finished {
            Stats::bump(&self.shared.stats.requests_completed);
        } else if phase >= Phase::Forcing {
            let aborted = self
                .shared
                .stats
                .requests_aborted
                .fetch_add(1, Ordering::Relaxed);
            crate::metrics::forced_close("request");
            if aborted < ABORTS_LOGGED {
                warn!(
                    method = self.method.as_ref().map_or("", Method::as_str),
                    path = self.path.as_str(),
                    age_ms = self.age().as_millis() as u64,
                    "request aborted by forced shutdown"
                );
            }
        }
    }
}

impl fmt::Debug for RequestGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            shared: _,
            started: _,
            method,
            path,
            finished,
        } = self;
        f.debug_struct("RequestGuard")
            .field("age", &self.age())
            .field("method", method)
            .field("path", &path.as_str())
            .field("finished", finished)
            .finish()
    }
}

/// The HTTP version a connection turned out to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 (h2c or over TLS).
    Http2,
}

impl Protocol {
    const NONE: u8 = u8::MAX;

    fn index(self) -> usize {
        match self {
            Self::Http1 => 0,
            Self::Http2 => 1,
        }
    }
}

/// One open connection. Counts until dropped.
///
/// A connection dropped before [`Phase::Forcing`] counts as closed gracefully in the report,
/// one dropped during or after it as closed forcibly.
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    /// Set once by [`ConnectionGuard::set_protocol`]; `Protocol::NONE` until then.
    protocol: AtomicU8,
}

impl ConnectionGuard {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.connections.acquire();
        Self {
            shared,
            protocol: AtomicU8::new(Protocol::NONE),
        }
    }

    /// Records the protocol the connection speaks, for the open-connections gauge by
    /// protocol. Only the first call counts.
    pub fn set_protocol(&self, protocol: Protocol) {
        let index = protocol.index() as u8;
        if self
            .protocol
            .compare_exchange(Protocol::NONE, index, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.shared.stats.open_by_protocol[usize::from(index)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current phase, read with one atomic load.
    #[must_use]
    #[inline]
    pub fn phase(&self) -> Phase {
        self.shared.phase()
    }
}

impl Drop for ConnectionGuard {
    /// Releases the connection; the drain ends when the last one is released.
    fn drop(&mut self) {
        let protocol = *self.protocol.get_mut();
        if protocol != Protocol::NONE {
            self.shared.stats.open_by_protocol[usize::from(protocol)]
                .fetch_sub(1, Ordering::Relaxed);
        }
        let phase = self.shared.phase();
        if phase >= Phase::Forcing {
            Stats::bump(&self.shared.stats.connections_forced);
            crate::metrics::forced_close("connection");
        } else if phase.is_shutting_down() {
            Stats::bump(&self.shared.stats.connections_graceful);
        }
        self.shared.connections.release();
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

    #[tokio::test]
    async fn the_counter_wait_completes_only_when_closed_and_empty() {
        use tokio_test::{assert_pending, assert_ready, task};
        let counter = super::Counter::default();
        counter.acquire();
        let mut wait = task::spawn(counter.wait());
        assert_pending!(wait.poll());
        counter.release();
        assert_pending!(wait.poll(), "not closed yet");
        counter.acquire();
        counter.close();
        assert!(!wait.is_woken(), "closing alone does not wake");
        assert_pending!(wait.poll());
        counter.release();
        assert!(wait.is_woken(), "the release to zero wakes the waiter");
        assert_ready!(wait.poll());
    }

    #[test]
    fn the_counter_loses_no_wakeup_across_threads() {
        // Many rounds of a release racing the waiter's registration, on real threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        for _ in 0..2_000 {
            let counter = std::sync::Arc::new(super::Counter::default());
            counter.acquire();
            counter.close();
            let releaser = {
                let counter = std::sync::Arc::clone(&counter);
                std::thread::spawn(move || counter.release())
            };
            let waited = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), counter.wait()).await
            });
            assert!(waited.is_ok(), "a wake-up was lost");
            releaser.join().unwrap();
        }
    }

    #[test]
    fn long_and_multibyte_paths_are_cut_at_a_character_boundary() {
        let long = format!("/{}", "é".repeat(40));
        let snippet = super::PathSnippet::new(&long);
        assert!(long.starts_with(snippet.as_str()));
        assert!(snippet.as_str().len() <= 63);
        assert_eq!(super::PathSnippet::new("/short").as_str(), "/short");
    }

    #[test]
    fn a_connection_counts_once_under_its_protocol_until_dropped() {
        use crate::Protocol;
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        let h1 = handle.track_connection();
        let h2 = handle.track_connection();
        let unknown = handle.track_connection();
        h1.set_protocol(Protocol::Http1);
        h2.set_protocol(Protocol::Http2);
        h2.set_protocol(Protocol::Http1); // only the first call counts
        assert_eq!(handle.open_connections_speaking(Protocol::Http1), 1);
        assert_eq!(handle.open_connections_speaking(Protocol::Http2), 1);
        assert_eq!(handle.open_connections(), 3);
        drop((h1, h2, unknown));
        assert_eq!(handle.open_connections_speaking(Protocol::Http1), 0);
        assert_eq!(handle.open_connections_speaking(Protocol::Http2), 0);
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
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = inner.track_request();
            panic!("handler failed");
        }));
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
