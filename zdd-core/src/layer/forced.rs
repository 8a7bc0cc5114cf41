//! Requests still open at forcing, ended with an answer of the protocol's own instead of
//! being cut ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Response, header};

use crate::{LifecycleHandle, Phase, PhaseReached};

/// Waits for forcing on behalf of one request, and holds what to end it with.
pub(crate) struct Forced {
    forcing: PhaseReached,
    trailers: Arc<HeaderMap>,
}

impl Forced {
    /// What ends a request at forcing with `trailers`. Out of line and cold: only a layer
    /// with `end_forced_with` builds one, and code for it beside every request's would
    /// take room in the instruction cache on every request's path.
    #[cold]
    #[inline(never)]
    pub(crate) fn new(handle: &LifecycleHandle, trailers: &Arc<HeaderMap>) -> Box<Self> {
        Box::new(Self {
            forcing: handle.reached(Phase::Forcing),
            trailers: Arc::clone(trailers),
        })
    }

    /// Polls `inner` (the service's future, or the body) unless forcing has come for this
    /// request: `Ready(None)` when it has. Forcing is checked first, with one load, so what
    /// is always ready still ends; it is waited for (registered) only while `inner` is
    /// pending, so a request that never waits is never registered.
    #[inline]
    pub(crate) fn poll_unless_forced<T>(
        forced: Option<&mut Self>,
        cx: &mut Context<'_>,
        inner: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<Option<T>> {
        if forced.as_ref().is_some_and(|end| end.forcing.is_reached()) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(value) = inner(cx) {
            return Poll::Ready(Some(value));
        }
        match forced.is_some_and(|end| Pin::new(&mut end.forcing).poll(cx).is_ready()) {
            true => Poll::Ready(None),
            false => Poll::Pending,
        }
    }

    /// The answer to a request not answered yet: `200 OK` with the headers (gRPC's
    /// trailers-only form).
    pub(crate) fn answer(&self) -> Response<()> {
        let mut response = Response::new(());
        *response.headers_mut() = HeaderMap::clone(&self.trailers);
        response
    }

    /// The trailers that end an answer whose body is still open: the headers, without
    /// `Content-Type`, which belongs to the head.
    pub(crate) fn trailers(&self) -> HeaderMap {
        let mut trailers = HeaderMap::clone(&self.trailers);
        trailers.remove(header::CONTENT_TYPE);
        trailers
    }
}

impl std::fmt::Debug for Forced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forced")
            .field("trailers", &self.trailers)
            .finish_non_exhaustive()
    }
}
