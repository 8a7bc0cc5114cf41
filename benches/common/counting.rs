//! The least any request tracker does, for the `hyper-util-counting` server: one shared
//! in-flight count, raised when a request comes and lowered when its response body is
//! dropped. The guard rides in the response future and then in the body, as any tracker's
//! must (the request is in flight until its body ends), so the response is larger than the
//! handler's by a pointer. What zdd costs beyond this is zdd's own.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A service counted in flight from its call to its response body's drop.
#[derive(Clone)]
pub(crate) struct Counting<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

impl<S> Counting<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One request in flight.
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl<S, Req, B> tower::Service<Req> for Counting<S>
where
    S: tower::Service<Req, Response = Response<B>>,
{
    type Response = Response<CountedBody<B>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        CountedFuture {
            inner: self.inner.call(request),
            counted: Some(Counted(Arc::clone(&self.in_flight))),
        }
    }
}

pin_project! {
    pub(crate) struct CountedFuture<F> {
        #[pin]
        inner: F,
        counted: Option<Counted>,
    }
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CountedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let counted = this.counted.take();
        Poll::Ready(Ok(response.map(|body| CountedBody { body, counted })))
    }
}

pin_project! {
    pub(crate) struct CountedBody<B> {
        #[pin]
        body: B,
        counted: Option<Counted>,
    }
}

impl<B: Body> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
