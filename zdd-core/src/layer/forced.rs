//! Requests still open at forcing, ended with an answer of the protocol's own instead of
//! being cut ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Response, header};

use crate::PhaseReached;

/// Waits for forcing on behalf of one request, and holds what to end it with.
pub(crate) struct Forced {
    forcing: PhaseReached,
    trailers: Arc<HeaderMap>,
}

impl Forced {
    pub(crate) fn new(forcing: PhaseReached, trailers: Arc<HeaderMap>) -> Box<Self> {
        Box::new(Self { forcing, trailers })
    }

    /// Whether forcing has come; registers `cx` to be woken when it does. Called when the
    /// request waits for something else: a request that never waits is never registered.
    pub(crate) fn poll_forcing(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.forcing).poll(cx)
    }

    /// Whether forcing has come, without registering: one atomic load.
    #[inline]
    pub(crate) fn has_come(&self) -> bool {
        self.forcing.is_reached()
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
