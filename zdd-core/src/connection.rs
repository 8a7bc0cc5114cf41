//! One open connection: its count, the protocol it speaks, and what its requests tell the
//! server about it (when it is between HTTP/1 requests, since when it has been quiet).
//!
//! A server counts each connection with a [`ConnectionGuard`]; the requests served on it
//! through [`Zdd::for_connection`](crate::layer::Zdd::for_connection) hold the connection's
//! state too, so the connection counts until its socket and its last request are gone, and
//! a request touches nothing shared with other connections.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::Version;
use tokio::sync::{Notify, futures::Notified};

use crate::{Phase, PhaseReached, Protocol, shared::Shared, tracker::ListenerStats};

/// One open connection. Counts until dropped, and until the requests counted on it
/// ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)) end.
///
/// A connection dropped before [`Phase::Forcing`] counts as closed gracefully in the report,
/// one dropped during or after it as closed forcibly.
pub struct ConnectionGuard {
    inner: Arc<ConnectionInner>,
}

/// What a connection's guard and the requests served on it share.
///
/// The activity fields are written by the server as a request begins and by the request's
/// guard as it ends, both in the connection's task, and read there. HTTP/1 requests on one
/// connection come one after another, so plain relaxed loads and stores suffice; the only
/// read-modify-write is recording the protocol, once.
pub(crate) struct ConnectionInner {
    pub(crate) shared: Arc<Shared>,
    /// Set once, by the first request; `Protocol::NONE` until then.
    protocol: AtomicU8,
    /// The listener it came from, when the server registered one.
    listener: Option<Arc<ListenerStats>>,
    /// Woken by the first request.
    first_request: Notify,
    /// An HTTP/1 request is being served: begun, its response not over yet.
    in_request: AtomicBool,
    /// The connection was handed to another protocol (`101`, or a `CONNECT` tunnel): it
    /// carries no more HTTP/1 requests.
    upgraded: AtomicBool,
    /// HTTP/1 requests begun.
    begun: AtomicU64,
    /// Coarse clock ticks of the last activity: a request begun, or an HTTP/1 response over.
    last_active: AtomicU64,
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
                first_request: Notify::new(),
                in_request: AtomicBool::new(false),
                upgraded: AtomicBool::new(false),
                begun: AtomicU64::new(0),
                last_active: AtomicU64::new(ticks_now()),
            }),
        }
    }

    /// What the connection's requests hold to count on it
    /// ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)).
    #[cfg(feature = "tower")]
    pub(crate) fn inner(&self) -> &Arc<ConnectionInner> {
        &self.inner
    }

    /// Records the protocol the connection speaks, for the open-connections gauge by
    /// protocol. Only the first call counts.
    pub fn set_protocol(&self, protocol: Protocol) {
        self.inner.set_protocol(protocol);
    }

    /// The protocol recorded with [`ConnectionGuard::set_protocol`], or by the first
    /// [`ConnectionGuard::request_begins`], if any.
    #[must_use]
    #[inline]
    pub fn protocol(&self) -> Option<Protocol> {
        self.inner.protocol()
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
    /// For HTTP/1 it completes once the runtime has read the sockets' events after draining
    /// started: a request that reached the connection's socket as the drain began is then
    /// reported to its reader, so read the connection before deciding it is idle. The
    /// servers that said they would tell when that is
    /// ([`LifecycleHandle::event_turn`](crate::LifecycleHandle::event_turn); zdd-hyper's
    /// server does, microseconds after the drain began); with none, it is the runtime's
    /// first timer turn after draining started, about a millisecond later.
    ///
    /// Completes at once when that phase has passed. Call it again after
    /// [`ConnectionGuard::set_protocol`]: the answer depends on the protocol.
    pub fn graceful_close(&self) -> PhaseReached {
        let machine = self.inner.shared.machine();
        match self.protocol() {
            Some(Protocol::Http2) => machine.reached(Phase::Unready),
            Some(Protocol::Http1) | None => machine.idle_close(),
        }
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

    /// A request's head arrived on this connection: call it as the server reads each
    /// request, before calling the service (the service may not be called at once). It
    /// records the connection's protocol, and for HTTP/1 that the connection is serving a
    /// request until the request's guard
    /// ([`Zdd::for_connection`](crate::layer::Zdd::for_connection)) ends.
    #[inline]
    pub fn request_begins(&self, version: Version) {
        self.inner.request_begins(version);
    }

    /// Completes when the first request has begun ([`ConnectionGuard::request_begins`]):
    /// its protocol is then known.
    pub fn first_request(&self) -> Notified<'_> {
        self.inner.first_request.notified()
    }

    /// HTTP/1 requests begun on this connection: which request head comes next.
    #[must_use]
    #[inline]
    pub fn http1_requests_begun(&self) -> u64 {
        self.inner.begun.load(Ordering::Relaxed)
    }

    /// Whether the connection is between two HTTP/1 requests: it speaks HTTP/1, is not
    /// serving a request and was not upgraded. Bytes that arrive then start the next
    /// request's head.
    #[must_use]
    #[inline]
    pub fn between_http1_requests(&self) -> bool {
        self.protocol() == Some(Protocol::Http1)
            && !self.inner.in_request.load(Ordering::Relaxed)
            && !self.inner.upgraded.load(Ordering::Relaxed)
    }

    /// Whether the connection was handed to another protocol (a `101` answer, or a
    /// `CONNECT` tunnel): its stream has left the server's HTTP loop.
    #[must_use]
    #[inline]
    pub fn is_upgraded(&self) -> bool {
        self.inner.upgraded.load(Ordering::Relaxed)
    }

    /// How long the connection has been without activity: since its last request began, or
    /// since its last HTTP/1 response ended, whichever is later. Coarse (milliseconds).
    #[must_use]
    pub fn idle_for(&self) -> Duration {
        let last = coarsetime::Instant::from_u64(self.inner.last_active.load(Ordering::Relaxed));
        (coarsetime::Instant::now_without_cache_update() - last).into()
    }
}

impl ConnectionInner {
    fn protocol(&self) -> Option<Protocol> {
        Protocol::from_index(self.protocol.load(Ordering::Relaxed))
    }

    fn set_protocol(&self, protocol: Protocol) -> bool {
        let first = self
            .protocol
            .compare_exchange(
                Protocol::NONE,
                protocol.index() as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok();
        if first {
            self.shared.work().stats().protocol_opened(protocol);
        }
        first
    }

    #[inline]
    fn request_begins(&self, version: Version) {
        self.last_active.store(ticks_now(), Ordering::Relaxed);
        let protocol = Protocol::of(version);
        if self.protocol.load(Ordering::Relaxed) == Protocol::NONE && self.set_protocol(protocol) {
            self.first_request.notify_one();
        }
        if protocol == Protocol::Http1 {
            self.in_request.store(true, Ordering::Relaxed);
            let begun = self.begun.load(Ordering::Relaxed);
            self.begun.store(begun.wrapping_add(1), Ordering::Relaxed);
        }
    }

    /// When the last request began (or an HTTP/1 response ended), from the coarse clock: a
    /// request's start, for the request that just began, without a clock read of its own.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn last_active(&self) -> coarsetime::Instant {
        coarsetime::Instant::from_u64(self.last_active.load(Ordering::Relaxed))
    }

    /// Moves the last activity `by` into the past, for tests of what counts from it.
    #[cfg(all(test, feature = "tower"))]
    pub(crate) fn backdate(&self, by: Duration) {
        let then = coarsetime::Instant::from_u64(self.last_active.load(Ordering::Relaxed))
            - coarsetime::Duration::from(by);
        self.last_active.store(then.as_ticks(), Ordering::Relaxed);
    }

    /// An HTTP/1 request's response started with `status`: a `101`, or a success answering
    /// `CONNECT`, hands the connection to another protocol.
    #[cfg(feature = "tower")]
    #[inline]
    pub(crate) fn responded(&self, status: http::StatusCode, connect: bool) {
        if status == http::StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
            self.upgraded.store(true, Ordering::Relaxed);
        }
    }

    /// An HTTP/1 request is over (its response ended, failed or was dropped): the
    /// connection is between requests from now on.
    #[inline]
    pub(crate) fn request_ended(&self) {
        self.last_active.store(ticks_now(), Ordering::Relaxed);
        self.in_request.store(false, Ordering::Relaxed);
    }
}

/// Tells an HTTP/1 connection that a request the layer answered itself (a probe, a
/// rejection) is over, when dropped with its response body. Small, unlike a guard: it
/// rides in every response future of the layer.
#[cfg(feature = "tower")]
pub(crate) struct RequestEnd(Arc<ConnectionInner>);

#[cfg(feature = "tower")]
impl RequestEnd {
    /// For a request of `version` on `connection`: only HTTP/1 requests end one by one.
    pub(crate) fn of(connection: &Arc<ConnectionInner>, version: Version) -> Option<Self> {
        (Protocol::of(version) == Protocol::Http1).then(|| Self(Arc::clone(connection)))
    }
}

#[cfg(feature = "tower")]
impl Drop for RequestEnd {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The coarse clock now, as ticks. Not `now()`, which also writes a process-wide cache line
/// on every call.
#[inline]
fn ticks_now() -> u64 {
    coarsetime::Instant::now_without_cache_update().as_ticks()
}

impl Drop for ConnectionInner {
    /// Releases the connection once its guard and its requests are gone; the drain ends
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
            .field("idle_for", &self.idle_for())
            .finish_non_exhaustive()
    }
}
