//! What a connection's stream wrapper and its task tell each other about the bytes each of
//! them sees: whether any byte came, and whether the next HTTP/1 request's head has begun.
//! What its requests tell the server (between requests or not, quiet since when) is the
//! core's [`ConnectionGuard`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use zdd_core::ConnectionGuard;

/// A connection's shared state. Written by the stream wrapper (in the connection's task, or
/// an upgrade's) with plain relaxed loads and stores.
///
/// It also holds the connection's guard, so the connection counts as long as anything of it
/// lives: the stream wrapper keeps it alive through an upgrade.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) guard: ConnectionGuard,
    first_byte: AtomicBool,
    /// `n + 1` once bytes of the head after the `n`th HTTP/1 request arrived while the
    /// connection was between requests; 0 before. It stops naming an open head as soon as
    /// that request begins (the count of requests begun moves past `n`).
    head_mark: AtomicU64,
}

impl ConnState {
    pub(crate) fn new(guard: ConnectionGuard) -> Self {
        Self {
            guard,
            first_byte: AtomicBool::new(false),
            head_mark: AtomicU64::new(0),
        }
    }

    /// Bytes were read. Between two HTTP/1 requests, they start the next request's head.
    #[inline]
    pub(crate) fn saw_bytes(&self) {
        if !self.first_byte.load(Ordering::Relaxed) {
            self.first_byte.store(true, Ordering::Relaxed);
        }
        if self.guard.between_http1_requests() {
            let next = self.guard.http1_requests_begun().wrapping_add(1);
            if self.head_mark.load(Ordering::Relaxed) != next {
                self.head_mark.store(next, Ordering::Relaxed);
            }
        }
    }

    /// Whether any byte has arrived.
    pub(crate) fn first_byte_seen(&self) -> bool {
        self.first_byte.load(Ordering::Relaxed)
    }

    /// While a later HTTP/1 request's head is arriving, which head it is.
    #[inline]
    pub(crate) fn open_head(&self) -> Option<u64> {
        let mark = self.head_mark.load(Ordering::Relaxed);
        (mark != 0 && mark == self.guard.http1_requests_begun().wrapping_add(1)).then_some(mark)
    }

    /// How long an HTTP/1 connection has been idle since its last answer, when nothing of a
    /// request is on it now (no request being served, no bytes of the next head): `None`
    /// while busy, for HTTP/2, and once upgraded.
    pub(crate) fn http1_quiet_for(&self) -> Option<std::time::Duration> {
        let quiet = self.guard.between_http1_requests() && self.open_head().is_none();
        quiet.then(|| self.guard.idle_for())
    }
}
