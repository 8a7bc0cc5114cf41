//! The guard that counts one request, from the moment it is created until it is dropped.
//! See the [tracker module](crate::tracker) for what it counts, and
//! [`ConnectionGuard`](crate::ConnectionGuard) for connections.
//!
//! Guards are panic-safe: a handler that panics unwinds through its future, which drops the
//! guard and releases the count.

use std::{fmt, sync::Arc, time::Duration};

use http::Method;

use crate::{Phase, connection::ConnectionInner, shared::Shared};

/// How many requests aborted by forcing are logged one by one. Forcing a thousand streams
/// must not write a thousand lines: the rest are counted, and the sequence logs one line
/// with the total (the report has it too).
pub(crate) const ABORTS_LOGGED: u64 = 10;

/// How many bytes of a request's name (an extension method, then its path) a guard keeps
/// inline. With the rest of the guard this makes 72 bytes: the guard moves with the
/// response future and body, and small moves are a few register copies where large ones
/// are calls to `memcpy`.
const NAME_BYTES: usize = 39;

/// A request's method and the start of its path, copied inline so naming a request costs
/// no allocation and no reference count. The standard methods are a one-byte code; an
/// extension method is kept as text before the path. Long names are cut at a character
/// boundary.
#[derive(Clone, Copy)]
struct RequestName {
    /// `0` unnamed, `1..=9` a standard method, [`RequestName::EXTENSION`] an extension
    /// method written before the path, separated by a space.
    method: u8,
    len: u8,
    bytes: [u8; NAME_BYTES],
}

impl RequestName {
    const UNNAMED: Self = Self {
        method: 0,
        len: 0,
        bytes: [0; NAME_BYTES],
    };
    const EXTENSION: u8 = u8::MAX;
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];

    // Always inlined: the method is a reference into the request, and handing it to a call
    // kept out of line would make the compiler copy the whole request on every request's
    // path (see `extension`).
    #[inline(always)]
    fn new(method: &Method, path: &str) -> Self {
        let code = match *method {
            Method::GET => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::HEAD => 5,
            Method::OPTIONS => 6,
            Method::PATCH => 7,
            Method::CONNECT => 8,
            Method::TRACE => 9,
            // Of a copy: the method's text is read by calls kept out of line, and a
            // reference into the request escaping into them would make the compiler copy
            // the whole request (264 bytes) on every request's path before handing it on.
            _ => return Self::extension(&method.clone(), path),
        };
        let mut name = Self {
            method: code,
            ..Self::UNNAMED
        };
        name.push(path);
        name
    }

    /// The name of `request`, if named. Callers name a request before counting it: the
    /// count's atomic operations then wait for the name's bytes to be written, and the
    /// guard's moves read them back from the cache instead of stalling on stores still in
    /// flight.
    #[inline(always)]
    fn of(request: Option<(&Method, &str)>) -> Self {
        match request {
            Some((method, path)) => Self::new(method, path),
            None => Self::UNNAMED,
        }
    }

    #[cold]
    #[inline(never)]
    fn extension(method: &Method, path: &str) -> Self {
        let mut name = Self {
            method: Self::EXTENSION,
            ..Self::UNNAMED
        };
        name.push(method.as_str());
        name.push(" ");
        name.push(path);
        name
    }

    /// Appends as much of `text` as fits, cut at a character boundary.
    #[inline]
    fn push(&mut self, text: &str) {
        let start = usize::from(self.len);
        let mut end = text.len().min(NAME_BYTES - start);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[start..start + end].copy_from_slice(&text.as_bytes()[..end]);
        self.len += end as u8;
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The method and the (start of the) path; both empty when unnamed.
    fn parts(&self) -> (&str, &str) {
        match self.method {
            0 => ("", ""),
            Self::EXTENSION => self.text().split_once(' ').unwrap_or((self.text(), "")),
            code => (Self::STANDARD[usize::from(code - 1)].as_str(), self.text()),
        }
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
    count: Count,
    started: coarsetime::Instant,
    name: RequestName,
    finished: bool,
}

/// What a request reaches the lifecycle through.
// Without the `tower` feature there is no layer, and so no request on a connection.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
enum Owner {
    /// The lifecycle itself.
    Lifecycle(Arc<Shared>),
    /// The connection it came on ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)),
    /// which it keeps counted until it ends. No reference to the lifecycle of its own:
    /// nothing that every request shares changes per request.
    Connection {
        connection: Arc<ConnectionInner>,
        /// An HTTP/1 request, whose end the connection is told of.
        http1: bool,
        /// A `CONNECT` request, which a success turns into a tunnel.
        connect: bool,
    },
}

/// Where a request is counted as in flight. One byte, so the guard stays small: it moves
/// with the response future and body.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
enum Count {
    /// Nowhere: an exempt request (a probe, `/metrics`).
    Not,
    /// On the lifecycle's count, which the drain waits for.
    Lifecycle,
    /// On a thread's shard ([`Shards`](crate::tracker::Shards)): a statistic, as the
    /// connection it holds is what the drain waits for.
    Shard(u8),
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
    pub(crate) fn new(shared: &Arc<Shared>, request: Option<(&Method, &str)>) -> Self {
        let name = RequestName::of(request);
        let shared = Arc::clone(shared);
        shared.work().requests().acquire();
        Self::with_owner(Owner::Lifecycle(shared), Count::Lifecycle, name, None)
    }

    /// An exempt request, not counted: it only reads the phase.
    #[cfg(feature = "tower")]
    pub(crate) fn exempt(shared: Arc<Shared>) -> Self {
        Self::with_owner(
            Owner::Lifecycle(shared),
            Count::Not,
            RequestName::UNNAMED,
            None,
        )
    }

    /// A request on `connection` (whose server told it the request began,
    /// [`ConnectionGuard::request_begins`](crate::ConnectionGuard::request_begins)), which
    /// stays counted until the request ends; an HTTP/1 request's end tells the connection
    /// it is between requests. Counted as in flight, and named for the forced-close log,
    /// when `counted` (an exempt request is not). Its age counts from when the server told
    /// the connection it began: the clock is read once per request.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn on_connection(
        connection: &Arc<ConnectionInner>,
        method: &Method,
        path: &str,
        version: http::Version,
        counted: bool,
    ) -> Self {
        let name = RequestName::of(counted.then_some((method, path)));
        let count = match counted {
            true => Count::Shard(connection.shared.work().connection_requests().add()),
            false => Count::Not,
        };
        let started = connection.last_active();
        let owner = Owner::Connection {
            connection: Arc::clone(connection),
            http1: crate::Protocol::of(version) == crate::Protocol::Http1,
            connect: method == Method::CONNECT,
        };
        Self::with_owner(owner, count, name, Some(started))
    }

    /// Whether the request is counted as in flight (an exempt one is not).
    #[inline]
    fn is_counted(&self) -> bool {
        !matches!(self.count, Count::Not)
    }

    /// The response begins with `status`; tells the connection when it becomes a tunnel
    /// or another protocol.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn responded(&self, status: http::StatusCode) {
        if let Owner::Connection {
            connection,
            http1: true,
            connect,
        } = &self.owner
        {
            connection.responded(status, *connect);
        }
    }

    // Always inlined: returned by value from a call, the guard (72 bytes) is copied once
    // more; inlined into the layer's call, it is built where it stays. `started`: when the
    // request began, if known (`None`: now).
    #[inline(always)]
    fn with_owner(
        owner: Owner,
        count: Count,
        name: RequestName,
        started: Option<coarsetime::Instant>,
    ) -> Self {
        Self {
            owner,
            count,
            started: started.unwrap_or_else(now),
            name,
            finished: false,
        }
    }

    /// Names the request for the log line written if it is forced closed. The path is kept
    /// up to 39 bytes (less the length of an extension method and a space).
    #[must_use]
    pub fn describe(mut self, method: &Method, path: &str) -> Self {
        self.name = RequestName::new(method, path);
        self
    }

    /// How long the request has been in flight, from a coarse clock (a few milliseconds'
    /// resolution, which is what a log line needs and a tenth of the cost of a precise one).
    #[must_use]
    pub fn age(&self) -> Duration {
        (now() - self.started).into()
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

    /// Marks the request complete and releases it where it lies: the guard is not moved
    /// out first (it is 72 bytes, and copying what was just written stalls the CPU).
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn finish_in_place(guard: &mut Option<Self>) {
        if let Some(guard) = guard {
            guard.finished = true;
        }
        *guard = None;
    }
}

/// The coarse clock now. Not `coarsetime::Instant::now()`, which also writes a
/// process-wide cache line on every call.
#[inline(always)]
fn now() -> coarsetime::Instant {
    coarsetime::Instant::now_without_cache_update()
}

impl Drop for RequestGuard {
    /// Releases the request; the drain ends when the last one is released.
    #[inline]
    fn drop(&mut self) {
        let shared = self.owner.shared();
        let phase = shared.machine().phase();
        if phase.is_shutting_down() && self.is_counted() {
            self.record_end(shared, phase);
        }
        match self.count {
            Count::Not => {}
            Count::Lifecycle => shared.work().requests().release(),
            Count::Shard(shard) => shared.work().connection_requests().sub(shard),
        }
        if let Owner::Connection {
            connection,
            http1: true,
            ..
        } = &self.owner
        {
            connection.request_ended();
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
                let (method, path) = self.name.parts();
                warn!(
                    method,
                    path,
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
            count,
            started: _,
            name,
            finished,
        } = self;
        let (method, path) = name.parts();
        f.debug_struct("RequestGuard")
            .field("age", &self.age())
            .field("method", &method)
            .field("path", &path)
            .field("finished", finished)
            .field("count", count)
            .finish()
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
        use super::{NAME_BYTES, RequestName};
        use http::Method;
        let long = format!("/a{}", "é".repeat(40));
        let name = RequestName::new(&Method::GET, &long);
        let (method, path) = name.parts();
        assert_eq!(method, "GET");
        assert!(long.starts_with(path), "{path}");
        assert_eq!(path.len(), NAME_BYTES - 1, "cut before a 2-byte character");
        assert_eq!(
            RequestName::new(&Method::DELETE, "/short").parts(),
            ("DELETE", "/short")
        );
    }

    #[test]
    fn every_method_is_named_back_as_it_came() {
        use super::RequestName;
        use http::Method;
        for method in RequestName::STANDARD {
            assert_eq!(
                RequestName::new(&method, "/p").parts(),
                (method.as_str(), "/p")
            );
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(
            RequestName::new(&purge, "/cache/a").parts(),
            ("PURGE", "/cache/a")
        );
        let long = Method::from_bytes("X".repeat(60).as_bytes()).unwrap();
        let name = RequestName::new(&long, "/p");
        let (method, path) = name.parts();
        assert!(long.as_str().starts_with(method) && path.is_empty());
        assert_eq!(RequestName::UNNAMED.parts(), ("", ""));
    }

    /// A request on a connection takes its start from the connection, which read the
    /// clock when the server told it the request began: one clock read per request, and
    /// the age the forced-close log gives counts from the request's beginning.
    #[cfg(feature = "tower")]
    #[test]
    fn a_request_on_a_connection_is_as_old_as_its_beginning() {
        use std::time::Duration;

        use http::{Request, Version};

        let lifecycle = Lifecycle::new(Config::default());
        let connection = lifecycle.handle().track_connection();
        connection.request_begins(Version::HTTP_2);
        connection.inner().backdate(Duration::from_secs(5));
        let request = Request::get("/slow")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let guard = super::RequestGuard::on_connection(
            connection.inner(),
            request.method(),
            request.uri().path(),
            request.version(),
            true,
        );
        let age = guard.age();
        assert!(
            (Duration::from_secs(5)..Duration::from_secs(60)).contains(&age),
            "{age:?}"
        );
    }

    #[test]
    fn a_guard_stays_small_enough_to_move_without_memcpy() {
        assert_eq!(std::mem::size_of::<super::RequestGuard>(), 72);
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
