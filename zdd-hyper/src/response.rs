//! Watching an HTTP/1 response to its end, so the connection knows when it is between
//! requests: the next bytes that arrive then start a request head, and the head deadline
//! runs from them (see [`TrackedIo`](crate::io::TrackedIo)).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::state::ConnState;

/// The connection a response belongs to, for an HTTP/1 request; none for HTTP/2, whose
/// streams are not read one after another.
pub(crate) struct Watched {
    pub(crate) state: Arc<ConnState>,
    /// A `CONNECT` request: a success hands the connection to a tunnel.
    pub(crate) connect: bool,
}

pin_project! {
    /// The service's future, handing the response body a way to say when it ends.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        watched: Option<Watched>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before it answered: the request is over either way.
            if let Some(watched) = this.project().watched.take() {
                watched.state.response_ended();
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, watched: Option<Watched>) -> Self {
        Self { inner, watched }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx));
        let watched = this.watched.take();
        Poll::Ready(response.map(|response| {
            let state = watched.map(|Watched { state, connect }| {
                let status = response.status();
                if status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success()) {
                    state.upgraded();
                }
                state
            });
            response.map(|inner| ResponseBody { inner, state })
        }))
    }
}

pin_project! {
    /// The response body, which marks the request over when it is dropped (hyper drops it
    /// once written, or when the connection fails).
    pub(crate) struct ResponseBody<B> {
        #[pin]
        inner: B,
        state: Option<Arc<ConnState>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(state) = this.project().state.take() {
                state.response_ended();
            }
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
