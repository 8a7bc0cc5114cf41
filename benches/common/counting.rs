//! The least any request tracker does, for the `hyper-util-counting` server: one shared
//! in-flight count, raised when a request comes and lowered when its response body is
//! dropped. The guard rides in the response future and then in the body, as any tracker's
//! must (the request is in flight until its body ends), so the response is larger than the
//! handler's by a pointer. What zdd costs beyond this is zdd's own.
//!
//! With the [`Name`] label (the `hyper-util-named` and `hyper-util-duties` servers), the
//! guard also carries what a log line about a request aborted at forcing must give, as
//! zdd's design asks: its method, the start of its path and its age. It is copied inline
//! at the call (no allocation), so the guard is as large as zdd's.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A service counted in flight from its call to its response body's drop; each request's
/// guard carries its label `L`.
pub(crate) struct Counting<S, L = Unnamed> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    label: PhantomData<fn() -> L>,
}

impl<S, L> Counting<S, L> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            in_flight: Arc::new(AtomicUsize::new(0)),
            label: PhantomData,
        }
    }
}

impl<S: Clone, L> Clone for Counting<S, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            in_flight: Arc::clone(&self.in_flight),
            label: PhantomData,
        }
    }
}

/// What a request's guard carries besides the count.
pub(crate) trait Label: Sized {
    fn of<B>(request: &Request<B>) -> Self;

    /// Written when a request is aborted at forcing (which these servers never do: the
    /// check is what every request pays).
    fn log_aborted(&self) {}
}

/// Nothing: the guard is one pointer.
pub(crate) struct Unnamed;

impl Label for Unnamed {
    fn of<B>(_: &Request<B>) -> Self {
        Self
    }
}

/// How many bytes of a path a [`Name`] keeps, as zdd's guard does.
const PATH_BYTES: usize = 39;

/// A request's method (a one-byte code), the start of its path, and when it began (coarse
/// clock ticks).
pub(crate) struct Name {
    method: u8,
    len: u8,
    path: [u8; PATH_BYTES],
    started: u64,
}

impl Label for Name {
    #[inline]
    fn of<B>(request: &Request<B>) -> Self {
        let method = match *request.method() {
            Method::GET => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::HEAD => 5,
            _ => 0,
        };
        let from = request.uri().path();
        let mut len = from.len().min(PATH_BYTES);
        while !from.is_char_boundary(len) {
            len -= 1;
        }
        let mut path = [0; PATH_BYTES];
        path[..len].copy_from_slice(&from.as_bytes()[..len]);
        Self {
            method,
            len: len as u8,
            path,
            started: coarsetime::Instant::now_without_cache_update().as_ticks(),
        }
    }

    #[cold]
    fn log_aborted(&self) {
        let path = std::str::from_utf8(&self.path[..usize::from(self.len)]).unwrap_or_default();
        let started = coarsetime::Instant::from_u64(self.started);
        let age = coarsetime::Instant::now_without_cache_update() - started;
        eprintln!(
            "aborted: method {} {path}, {} ms",
            self.method,
            age.as_millis()
        );
    }
}

/// Set when the requests in flight are aborted: never, here.
static FORCING: AtomicBool = AtomicBool::new(false);

/// One request in flight.
pub(crate) struct Counted<L: Label>(Arc<AtomicUsize>, L);

impl<L: Label> Drop for Counted<L> {
    fn drop(&mut self) {
        if FORCING.load(Ordering::Relaxed) {
            self.1.log_aborted();
        }
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl<S, B, ResB, L> tower::Service<Request<B>> for Counting<S, L>
where
    S: tower::Service<Request<B>, Response = Response<ResB>>,
    L: Label,
{
    type Response = Response<CountedBody<ResB, L>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let counted = Counted(Arc::clone(&self.in_flight), L::of(&request));
        CountedFuture {
            inner: self.inner.call(request),
            counted: Some(counted),
        }
    }
}

pin_project! {
    pub(crate) struct CountedFuture<F, L: Label> {
        #[pin]
        inner: F,
        counted: Option<Counted<L>>,
    }
}

impl<F, B, E, L: Label> Future for CountedFuture<F, L>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CountedBody<B, L>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let counted = this.counted.take();
        Poll::Ready(Ok(response.map(|body| CountedBody { body, counted })))
    }
}

pin_project! {
    pub(crate) struct CountedBody<B, L: Label> {
        #[pin]
        body: B,
        counted: Option<Counted<L>>,
    }
}

impl<B: Body, L: Label> Body for CountedBody<B, L> {
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
