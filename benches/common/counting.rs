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
//!
//! With the [`Layered`] duty as well (zdd-core's `one_request/duties_floor`), the service
//! also does, at their least, what `ZddLayer` does on every request with the settings its
//! benchmark gives it: a request to the exempt path is not counted, and once shutdown has
//! begun an answer carries `Connection: close`.

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

use http::{HeaderValue, Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// A service counted in flight from its call to its response body's drop; each request's
/// guard carries its label `L`, and the service does its duty `D` besides.
pub(crate) struct Counting<S, L = Unnamed, D = Counts> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    label: PhantomData<fn() -> (L, D)>,
}

impl<S, L, D> Counting<S, L, D> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            in_flight: Arc::new(AtomicUsize::new(0)),
            label: PhantomData,
        }
    }
}

impl<S: Clone, L, D> Clone for Counting<S, L, D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            in_flight: Arc::clone(&self.in_flight),
            label: PhantomData,
        }
    }
}

/// What the service does besides counting.
pub(crate) trait Duty {
    /// Whether `request` is counted.
    fn counts<B>(_request: &Request<B>) -> bool {
        true
    }

    /// Marks an answer.
    fn answered<B>(_response: &mut Response<B>) {}
}

/// Nothing besides counting.
pub(crate) struct Counts;

impl Duty for Counts {}

/// `ZddLayer`'s duties on every request with the settings its benchmark gives it, at their
/// least: a request to the exempt path (`/metrics`) is not counted, and once shutdown has
/// begun (one load an answer) the answer carries `Connection: close` (zdd's layer adds it
/// on HTTP/1 only, and leaves 101 alone).
#[allow(dead_code)] // only zdd-core's micro benchmark uses it
pub(crate) struct Layered;

/// Set when shutdown begins: never, here.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

impl Duty for Layered {
    #[inline]
    fn counts<B>(request: &Request<B>) -> bool {
        request.uri().path() != "/metrics"
    }

    #[inline]
    fn answered<B>(response: &mut Response<B>) {
        if SHUTTING_DOWN.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
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

impl<S, B, ResB, L, D> tower::Service<Request<B>> for Counting<S, L, D>
where
    S: tower::Service<Request<B>, Response = Response<ResB>>,
    L: Label,
    D: Duty,
{
    type Response = Response<CountedBody<ResB, L>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future, L, D>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let counted = D::counts(&request).then(|| {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            Counted(Arc::clone(&self.in_flight), L::of(&request))
        });
        CountedFuture {
            inner: self.inner.call(request),
            counted,
            duty: PhantomData,
        }
    }
}

pin_project! {
    pub(crate) struct CountedFuture<F, L: Label, D> {
        #[pin]
        inner: F,
        counted: Option<Counted<L>>,
        duty: PhantomData<fn() -> D>,
    }
}

impl<F, B, E, L: Label, D: Duty> Future for CountedFuture<F, L, D>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CountedBody<B, L>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        D::answered(&mut response);
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
