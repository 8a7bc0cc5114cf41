//! The guards that count one request or one connection, from the moment they are created
//! until they are dropped. See the [tracker module](crate::tracker) for what they count.
//!
//! Guards are panic-safe: a handler that panics unwinds through its future, which drops the
//! guard and releases the count.

use std::{fmt, sync::Arc, sync::atomic::AtomicU8, sync::atomic::Ordering, time::Duration};

use http::Method;

use crate::{Phase, PhaseReached, Protocol, shared::Shared, tracker::ListenerStats};

/// How many requests aborted by forcing are logged one by one. Forcing a thousand streams
/// must not write a thousand lines: the rest are counted, and the sequence logs one line
/// with the total (the report has it too).
pub(crate) const ABORTS_LOGGED: u64 = 10;

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
    owner: Owner,
    started: coarsetime::Instant,
    method: Option<Method>,
    path: PathSnippet,
    finished: bool,
}

/// Who counts a request: the lifecycle, or the connection it came on.
enum Owner {
    /// Counted on the lifecycle's count, which the drain waits for.
    Lifecycle(Arc<Shared>),
    /// Counted on a thread's shard ([`Shards`](crate::tracker::Shards)); the connection,
    /// which it keeps open, is what the drain waits for. Holds no reference to the
    /// lifecycle of its own: nothing shared by every request changes per request.
    Connection {
        connection: Arc<ConnectionInner>,
        shard: usize,
    },
}

impl Owner {
    #[inline]
    fn shared(&self) -> &Shared {
        match self {
            Self::Lifecycle(shared) => shared,
            Self::Connection { connection, .. } => &connection.shared,
        }
    }
}

impl RequestGuard {
    #[inline]
    pub(crate) fn new(shared: Arc<Shared>, request: Option<(&Method, &str)>) -> Self {
        shared.work().requests().acquire();
        Self::with_owner(Owner::Lifecycle(shared), request)
    }

    /// A request counted on `connection`, which stays counted until the request ends.
    #[inline]
    pub(crate) fn on_connection(
        connection: Arc<ConnectionInner>,
        request: Option<(&Method, &str)>,
    ) -> Self {
        let shard = connection.shared.work().connection_requests().add();
        Self::with_owner(Owner::Connection { connection, shard }, request)
    }

    #[inline]
    fn with_owner(owner: Owner, request: Option<(&Method, &str)>) -> Self {
        let (method, path) = match request {
            Some((method, path)) => (Some(method.clone()), PathSnippet::new(path)),
            None => (None, PathSnippet::EMPTY),
        };
        Self {
            owner,
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
        self.owner.shared().machine().phase()
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
        let shared = self.owner.shared();
        let phase = shared.machine().phase();
        if phase.is_shutting_down() {
            self.record_end(shared, phase);
        }
        match &self.owner {
            Owner::Lifecycle(shared) => shared.work().requests().release(),
            Owner::Connection { connection, shard } => {
                connection.shared.work().connection_requests().sub(*shard);
            }
        }
    }
}

impl RequestGuard {
    /// Counts (and, when forced, logs) a request that ends during shutdown.
    #[cold]
    fn record_end(&self, shared: &Shared, phase: Phase) {
        let stats = shared.work().stats();
        if self.finished {
            stats.request_completed();
        } else if phase >= Phase::Forcing {
            let aborted = stats.request_aborted();
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
            owner: _,
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

/// One open connection. Counts until dropped, and until the requests counted on it
/// ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)) end.
///
/// A connection dropped before [`Phase::Forcing`] counts as closed gracefully in the report,
/// one dropped during or after it as closed forcibly.
pub struct ConnectionGuard {
    inner: Arc<ConnectionInner>,
}

/// What a connection's guard and the requests counted on it share.
pub(crate) struct ConnectionInner {
    shared: Arc<Shared>,
    /// Set once by [`ConnectionGuard::set_protocol`]; `Protocol::NONE` until then.
    protocol: AtomicU8,
    /// The listener it came from, when the server registered one.
    listener: Option<Arc<ListenerStats>>,
}

impl ConnectionGuard {
    pub(crate) fn new(shared: Arc<Shared>, listener: Option<Arc<ListenerStats>>) -> Self {
        shared.work().connections().acquire();
        if let Some(listener) = &listener {
            listener.accepted();
            crate::metrics::connection_accepted(&listener.name);
        }
        Self {
            inner: Arc::new(ConnectionInner {
                shared,
                protocol: AtomicU8::new(Protocol::NONE),
                listener,
            }),
        }
    }

    /// What the connection's requests hold to count on it
    /// ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)).
    pub(crate) fn inner(&self) -> &Arc<ConnectionInner> {
        &self.inner
    }

    /// Records the protocol the connection speaks, for the open-connections gauge by
    /// protocol. Only the first call counts.
    pub fn set_protocol(&self, protocol: Protocol) {
        let index = protocol.index() as u8;
        if self
            .inner
            .protocol
            .compare_exchange(Protocol::NONE, index, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.inner.shared.work().stats().protocol_opened(protocol);
        }
    }

    /// The protocol recorded with [`ConnectionGuard::set_protocol`], if any.
    #[must_use]
    #[inline]
    pub fn protocol(&self) -> Option<Protocol> {
        Protocol::from_index(self.inner.protocol.load(Ordering::Relaxed))
    }

    /// The current phase, read with one atomic load.
    #[must_use]
    #[inline]
    pub fn phase(&self) -> Phase {
        self.inner.shared.machine().phase()
    }

    /// Completes when this connection should start its graceful close, by the protocol it
    /// speaks: HTTP/2 when shutdown starts ([`Phase::Unready`]), so its GOAWAY sends
    /// clients' next streams elsewhere while the listener still accepts; HTTP/1 (and a
    /// connection whose protocol is not known yet) when draining starts
    /// ([`Phase::Draining`]): until then each response carries `Connection: close`, and
    /// closing an idle HTTP/1 connection earlier would race a request already on its way.
    ///
    /// Completes at once when that phase has passed. Call it again after
    /// [`ConnectionGuard::set_protocol`]: the answer depends on the protocol.
    pub fn graceful_close(&self) -> PhaseReached {
        let phase = match self.protocol() {
            Some(Protocol::Http2) => Phase::Unready,
            Some(Protocol::Http1) | None => Phase::Draining,
        };
        self.inner.shared.machine().reached(phase)
    }

    /// Whether the connection's I/O must fail now: forcing closes every connection still
    /// open, upgraded ones too. One atomic load.
    #[must_use]
    #[inline]
    pub fn must_fail_io(&self) -> bool {
        self.phase() >= Phase::Forcing
    }

    /// Completes when the connection's I/O must fail ([`ConnectionGuard::must_fail_io`]), so a
    /// task parked on the connection can be woken to close it.
    pub fn io_fails(&self) -> PhaseReached {
        self.inner.shared.machine().reached(Phase::Forcing)
    }
}

impl Drop for ConnectionInner {
    /// Releases the connection once its guards and its requests are gone; the drain ends
    /// when the last one is released.
    fn drop(&mut self) {
        let work = self.shared.work();
        if let Some(protocol) = Protocol::from_index(*self.protocol.get_mut()) {
            work.stats().protocol_closed(protocol);
        }
        let phase = self.shared.machine().phase();
        let closed = if phase >= Phase::Forcing {
            crate::metrics::forced_close("connection");
            Some(true)
        } else {
            phase.is_shutting_down().then_some(false)
        };
        if let Some(forced) = closed {
            work.stats().connection_closed(forced);
            if let Some(listener) = &self.listener {
                listener.closed(forced);
            }
        }
        work.connections().release();
    }
}

impl fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionGuard")
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
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

        let tally = handle.shared.work().stats().tally();
        assert_eq!(tally.requests_completed, 1);
        assert_eq!(tally.requests_aborted, 1);
        assert_eq!(tally.connections_graceful, 1);
        assert_eq!(tally.connections_forced, 1);
    }
}
