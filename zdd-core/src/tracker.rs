//! Counting the work a drain waits for: requests in flight, open connections and tracked
//! background tasks.
//!
//! The counts know nothing of phases. The guards that move them ([`RequestGuard`],
//! [`ConnectionGuard`], in `guard.rs`) are handed the phase; `Work` holds the counts, the
//! report's tallies and the background tasks' token, and knows when all of it is done.
//! Counting is lock-free: acquiring and releasing are a few atomic operations, and the
//! drain's waiter (a tokio `Notify`) is only woken when a count reaches zero after draining
//! started, never on the request path before it. Background tasks are tracked with
//! tokio-util's [`TaskTracker`].
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
//!
//! [`RequestGuard`]: crate::RequestGuard
//! [`ConnectionGuard`]: crate::ConnectionGuard

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

// The counter's primitives, which loom's models replace under `--cfg zdd_loom`.
use crate::loom::sync;

/// The work a drain waits for, and the tallies the report gives of it.
#[derive(Debug)]
pub(crate) struct Work {
    /// Each count on its own cache line, away from the phase and from the reference count
    /// of the `Arc` that holds this (with a 128-byte aligned field, the data starts on a
    /// line after the `Arc`'s counts).
    requests: CachePadded<Counter>,
    /// Requests counted on a connection ([`Zdd::for_connection`](crate::layer::Zdd)): a
    /// statistic only, as their connection is counted until they end.
    connection_requests: Shards,
    connections: CachePadded<Counter>,
    tasks: TaskTracker,
    /// Handed to background tasks; cancelled when draining starts.
    cancel: CancellationToken,
    stats: Stats,
}

impl Work {
    pub(crate) fn new() -> Self {
        Self {
            requests: CachePadded::default(),
            connection_requests: Shards::default(),
            connections: CachePadded::default(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
            stats: Stats::default(),
        }
    }

    #[inline]
    pub(crate) fn requests(&self) -> &Counter {
        &self.requests
    }

    /// The count of requests on connections; see [`Shards`].
    #[inline]
    pub(crate) fn connection_requests(&self) -> &Shards {
        &self.connection_requests
    }

    /// Requests in flight: those counted on their own and those counted on a connection.
    pub(crate) fn in_flight_requests(&self) -> usize {
        self.requests.len() + self.connection_requests.sum()
    }

    #[inline]
    pub(crate) fn connections(&self) -> &Counter {
        &self.connections
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The background tasks' token.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.cancel
    }

    #[inline]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Draining starts: background tasks are told to stop, and waiting for the counts to
    /// reach zero can end.
    pub(crate) fn close(&self) {
        self.cancel.cancel();
        self.requests.close();
        self.connections.close();
        self.tasks.close();
    }

    /// Completes once no request, connection or tracked task is left. Call [`Work::close`]
    /// first; late arrivals (a request on a live connection) are waited for too.
    pub(crate) async fn drained(&self) {
        loop {
            self.requests.wait().await;
            self.connections.wait().await;
            self.tasks.wait().await;
            if self.is_drained() {
                return;
            }
        }
    }

    /// Whether nothing is left, read producers first. Tasks open connections (an accept
    /// loop is a tracked task) and connections open requests, so each count is read only
    /// after everything that could still add to it is gone: a task that counted a
    /// connection and then ended is seen either as a running task or, through the task
    /// count's acquire/release pair, with its connection counted. Read the other way round,
    /// the drain could read zero connections, then see the accept loop end with a
    /// connection it had just counted. Requests counted on a connection keep their
    /// connection counted until they end, so the connection count covers them.
    pub(crate) fn is_drained(&self) -> bool {
        self.tasks.is_empty() && self.connections.len() == 0 && self.requests.len() == 0
    }

    /// Requests and connections still open (tasks are counted apart).
    pub(crate) fn left_open(&self) -> usize {
        self.in_flight_requests() + self.connections.len()
    }
}

/// The report's tallies of work that ended during shutdown. Relaxed ordering is enough:
/// they are only read after the drain, and the counters' own synchronisation orders every
/// release before the drain ends.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    requests_completed: AtomicU64,
    requests_aborted: AtomicU64,
    requests_rejected: AtomicU64,
    connections_graceful: AtomicU64,
    connections_forced: AtomicU64,
    /// Open connections whose protocol is known, by [`Protocol`] index.
    open_by_protocol: [AtomicUsize; 2],
    /// The listeners servers registered, in order.
    listeners: std::sync::Mutex<Vec<std::sync::Arc<ListenerStats>>>,
}

/// One listener's connection counts (see [`ListenerTag`](crate::ListenerTag)).
#[derive(Debug, Default)]
pub(crate) struct ListenerStats {
    pub(crate) name: String,
    accepted: AtomicU64,
    graceful: AtomicU64,
    forced: AtomicU64,
}

impl ListenerStats {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, forced: bool) {
        let counter = if forced { &self.forced } else { &self.graceful };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The tallies at one moment, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) requests_completed: u64,
    pub(crate) requests_aborted: u64,
    pub(crate) requests_rejected: u64,
    pub(crate) connections_graceful: u64,
    pub(crate) connections_forced: u64,
}

impl Stats {
    pub(crate) fn request_completed(&self) {
        self.requests_completed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an aborted request; how many were counted before it.
    pub(crate) fn request_aborted(&self) -> u64 {
        self.requests_aborted.fetch_add(1, Ordering::Relaxed)
    }

    #[cfg(feature = "tower")]
    pub(crate) fn request_rejected(&self) {
        self.requests_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self, forced: bool) {
        let counter = match forced {
            true => &self.connections_forced,
            false => &self.connections_graceful,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a listener named `name`; its connections are counted apart too.
    pub(crate) fn listener(&self, name: String) -> std::sync::Arc<ListenerStats> {
        let stats = std::sync::Arc::new(ListenerStats {
            name,
            ..ListenerStats::default()
        });
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::sync::Arc::clone(&stats));
        stats
    }

    /// Each registered listener's counts, in registration order.
    pub(crate) fn listener_tallies(&self) -> Vec<crate::report::ListenerReport> {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|stats| crate::report::ListenerReport {
                name: stats.name.clone(),
                accepted: get(&stats.accepted),
                connections_graceful: get(&stats.graceful),
                connections_forced: get(&stats.forced),
            })
            .collect()
    }

    pub(crate) fn protocol_opened(&self, protocol: Protocol) {
        self.open_by_protocol[protocol.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn protocol_closed(&self, protocol: Protocol) {
        self.open_by_protocol[protocol.index()].fetch_sub(1, Ordering::Relaxed);
    }

    /// Open HTTP/1 and HTTP/2 connections.
    pub(crate) fn open_by_protocol(&self) -> (usize, usize) {
        let [http1, http2] = &self.open_by_protocol;
        (http1.load(Ordering::Relaxed), http2.load(Ordering::Relaxed))
    }

    pub(crate) fn tally(&self) -> Tally {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Tally {
            requests_completed: get(&self.requests_completed),
            requests_aborted: get(&self.requests_aborted),
            requests_rejected: get(&self.requests_rejected),
            connections_graceful: get(&self.connections_graceful),
            connections_forced: get(&self.connections_forced),
        }
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
/// `state` is the number of live guards times two, plus one once closed. The closed bit is
/// set once, when draining starts, and never cleared. The waiter is woken by the release
/// that takes a closed count to zero, or by the close itself when the count is already
/// zero; before the drain the request path never touches the `Notify`.
///
/// # Why no wake-up is lost
///
/// The last release and the close are read-modify-writes of the same word, so one of them
/// comes second in its modification order and sees the other's write: whichever it is
/// sees "closed and zero" and notifies. Each does so after its write (release ordering),
/// and the waiter creates and enables its `Notified` before it reads the word (acquire): a
/// waiter that read the word before the final write is already registered when the
/// notification comes, and one that registered after it reads "closed and zero" and
/// returns. Loom checks this in `src/tests/loom_counter.rs`.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    state: sync::AtomicUsize,
    zero: sync::Notify,
}

/// The closed bit of [`Counter::state`].
const CLOSED: usize = 1;
/// One live guard in [`Counter::state`].
const ONE: usize = 2;

impl Counter {
    #[inline]
    pub(crate) fn acquire(&self) {
        // Relaxed, as in `Arc::clone`: the count only has to be exact, and releases order
        // themselves with the waiter.
        self.state.fetch_add(ONE, sync::Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn release(&self) {
        // Release: what the guard's holder did is visible to the waiter that sees zero.
        if self.state.fetch_sub(ONE, sync::Ordering::Release) == ONE | CLOSED {
            self.zero.notify_waiters();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.load(sync::Ordering::Acquire) / ONE
    }

    /// Lets [`Counter::wait`] complete once the count is zero, waking a waiter at once when
    /// it already is.
    pub(crate) fn close(&self) {
        if self.state.fetch_or(CLOSED, sync::Ordering::AcqRel) == 0 {
            self.zero.notify_waiters();
        }
    }

    /// Completes once closed and the count is zero.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.zero.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.state.load(sync::Ordering::Acquire) == CLOSED {
                return;
            }
            notified.await;
        }
    }
}

/// How many shards [`Shards`] has: more than the worker threads of most services, so
/// threads seldom share one.
const SHARDS: usize = 16;

/// A count spread over cache lines by thread, for requests counted on a connection: each
/// worker thread adds to and takes from a shard of its own, so serving requests on two
/// cores moves no cache line between them. The count is the sum of the shards (read by
/// metrics and at shutdown, never per request). A request may end on another thread than
/// it began on: the shards wrap, and only their sum is meaningful.
///
/// No one waits for it to reach zero: a request counted here keeps its connection counted
/// (the connection's [`Counter`]) until it ends.
#[derive(Debug, Default)]
pub(crate) struct Shards {
    shards: [CachePadded<AtomicUsize>; SHARDS],
}

impl Shards {
    /// Counts one more on this thread's shard; returns the shard, for [`Shards::sub`].
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn add(&self) -> u8 {
        let shard = this_threads_shard();
        self.shards[usize::from(shard)].fetch_add(1, Ordering::Relaxed);
        shard
    }

    /// Counts one less, on the shard [`Shards::add`] returned.
    #[inline]
    pub(crate) fn sub(&self, shard: u8) {
        self.shards[usize::from(shard) % SHARDS].fetch_sub(1, Ordering::Relaxed);
    }

    /// The count now.
    pub(crate) fn sum(&self) -> usize {
        self.shards.iter().fold(0_usize, |sum, shard| {
            sum.wrapping_add(shard.load(Ordering::Relaxed))
        })
    }
}

/// This thread's shard of every [`Shards`] (and of the phase milestones' waiter lists):
/// threads take shards in turn as they first count.
#[inline]
pub(crate) fn this_threads_shard() -> u8 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // SHARDS is 16: the index fits a byte.
        static SHARD: u8 = (NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS) as u8;
    }
    SHARD.with(|shard| *shard)
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
    pub(crate) const NONE: u8 = u8::MAX;

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Http1 => 0,
            Self::Http2 => 1,
        }
    }

    /// The protocol of a request's HTTP version: the one place versions are classified.
    #[must_use]
    pub fn of(version: http::Version) -> Self {
        if version == http::Version::HTTP_2 {
            Self::Http2
        } else {
            Self::Http1
        }
    }

    /// The protocol stored as `index() as u8`, or `None` for [`Protocol::NONE`].
    pub(crate) fn from_index(index: u8) -> Option<Self> {
        match index {
            0 => Some(Self::Http1),
            1 => Some(Self::Http2),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn closing_an_empty_counter_wakes_a_wait_begun_before() {
        // This wait used to hang: nothing was released after `close`, and `close` woke no one.
        use tokio_test::{assert_pending, assert_ready, task};
        let counter = super::Counter::default();
        let mut wait = task::spawn(counter.wait());
        assert_pending!(wait.poll(), "not closed yet");
        counter.close();
        assert!(wait.is_woken(), "closing an empty counter wakes the waiter");
        assert_ready!(wait.poll());
    }

    #[cfg(feature = "tower")]
    #[test]
    fn shards_sum_what_threads_added_wherever_they_took_it_back() {
        let shards = std::sync::Arc::new(super::Shards::default());
        let taken: Vec<u8> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..100).map(|_| shards.add()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert_eq!(shards.sum(), 400);
        assert!(
            taken.iter().any(|&s| s != taken[0]),
            "threads count on shards of their own"
        );
        // Taken back on this thread, whatever shard each was added to.
        for shard in taken.into_iter().skip(150) {
            shards.sub(shard);
        }
        assert_eq!(shards.sum(), 150);
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
}
