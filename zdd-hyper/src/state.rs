//! What one connection's parts (its task, its stream wrapper, its service and its response
//! bodies) tell each other about traffic each of them sees alone.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use http::Version;
use tokio::sync::Notify;
use zdd_core::{ConnectionGuard, Protocol};

/// What the connection task needs to know about traffic it does not see itself. Written by
/// the stream wrapper and the per-connection service with plain loads and stores; the only
/// read-modify-write is on the first request.
///
/// It also holds the connection's guard, so the connection counts as long as anything of it
/// lives: the stream wrapper keeps it alive through an upgrade.
///
/// The flags below are each written by one side at a time (the connection task, or the
/// response body that hyper drops in that task), so plain relaxed loads and stores suffice.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) guard: ConnectionGuard,
    first_byte: AtomicBool,
    request_seen: AtomicBool,
    /// An HTTP/1 request is being served: its head is complete, its response not yet over.
    in_request: AtomicBool,
    /// Bytes of the next HTTP/1 request's head have arrived; the head is not complete.
    head_open: AtomicBool,
    /// The connection was handed to another protocol (`101`, or a `CONNECT` tunnel): its
    /// bytes are no longer HTTP/1 request heads.
    upgraded: AtomicBool,
    /// Request heads completed, which tells one open head from the next.
    heads: AtomicU64,
    /// Coarse clock ticks of the last activity: a request's arrival, or the end of an HTTP/1
    /// response.
    last_request: AtomicU64,
    first_request: Notify,
}

impl ConnState {
    pub(crate) fn new(guard: ConnectionGuard) -> Self {
        Self {
            guard,
            first_byte: AtomicBool::new(false),
            request_seen: AtomicBool::new(false),
            in_request: AtomicBool::new(false),
            head_open: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            heads: AtomicU64::new(0),
            last_request: AtomicU64::new(0),
            first_request: Notify::new(),
        }
    }

    /// Bytes were read. Between two HTTP/1 requests, they start the next request's head.
    #[inline]
    pub(crate) fn saw_bytes(&self) {
        if !self.first_byte.load(Ordering::Relaxed) {
            self.first_byte.store(true, Ordering::Relaxed);
        }
        if self.guard.protocol() == Some(Protocol::Http1)
            && !self.in_request.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
        {
            self.head_open.store(true, Ordering::Relaxed);
        }
    }

    /// Whether any byte has arrived.
    pub(crate) fn first_byte_seen(&self) -> bool {
        self.first_byte.load(Ordering::Relaxed)
    }

    /// Completes when the first request's head is complete (its protocol is then known).
    pub(crate) fn first_request(&self) -> tokio::sync::futures::Notified<'_> {
        self.first_request.notified()
    }

    /// While a later HTTP/1 request's head is arriving, which head it is.
    #[inline]
    pub(crate) fn open_head(&self) -> Option<u64> {
        self.head_open
            .load(Ordering::Relaxed)
            .then(|| self.heads.load(Ordering::Relaxed))
    }

    /// A request's head is complete. Returns whether the connection speaks HTTP/1, whose
    /// responses are watched to their end.
    #[inline]
    pub(crate) fn saw_request(&self, version: Version) -> bool {
        let now = coarsetime::Instant::now_without_cache_update().as_ticks();
        self.last_request.store(now, Ordering::Relaxed);
        let protocol = Protocol::of(version);
        if !self.request_seen.load(Ordering::Relaxed)
            && !self.request_seen.swap(true, Ordering::AcqRel)
        {
            self.guard.set_protocol(protocol);
            self.first_request.notify_one();
        }
        if protocol == Protocol::Http2 {
            return false;
        }
        self.in_request.store(true, Ordering::Relaxed);
        self.head_open.store(false, Ordering::Relaxed);
        let heads = self.heads.load(Ordering::Relaxed);
        self.heads.store(heads.wrapping_add(1), Ordering::Relaxed);
        true
    }

    /// An HTTP/1 response is over (written, failed or dropped): the connection is idle from
    /// now on, until the next request.
    #[inline]
    pub(crate) fn response_ended(&self) {
        let now = coarsetime::Instant::now_without_cache_update().as_ticks();
        self.last_request.store(now, Ordering::Relaxed);
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// The connection now carries another protocol.
    pub(crate) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// How long an HTTP/1 connection has been idle since its last answer, when nothing of a
    /// request is on it now (no request being served, no bytes of the next head): `None` while busy, for
    /// HTTP/2, and once upgraded.
    pub(crate) fn http1_quiet_for(&self) -> Option<Duration> {
        let quiet = self.guard.protocol() == Some(Protocol::Http1)
            && !self.in_request.load(Ordering::Relaxed)
            && !self.head_open.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed);
        quiet.then(|| self.idle_for())
    }

    pub(crate) fn idle_for(&self) -> Duration {
        let last = coarsetime::Instant::from_u64(self.last_request.load(Ordering::Relaxed));
        (coarsetime::Instant::now_without_cache_update() - last).into()
    }
}
