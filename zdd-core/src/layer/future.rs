use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;

use super::{ResponseBody, close_if_shutting_down, forced::Forced};
use crate::{LifecycleHandle, Probe, connection::RequestEnd, guard::RequestGuard, health::respond};

type ProbeFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

pin_project! {
    /// The response future of [`Zdd`](super::Zdd).
    ///
    /// The request's guard moves from this future into the [`ResponseBody`], so the request
    /// stays in flight until the body is finished or dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Served {
            #[pin] future: F,
            guard: Option<RequestGuard>,
            http1: bool,
        },
        // A request the layer ends at forcing: a variant of its own, so that every other
        // request's future carries, drops and tests nothing of it.
        Forced {
            #[pin] future: F,
            guard: Option<RequestGuard>,
            http1: bool,
            end: Option<Box<Forced>>,
        },
        Probe { future: ProbeFuture, end: Option<RequestEnd> },
        // What to answer with, not the answer: a `Response` would make every request's
        // future twice as large to move.
        Rejected { retry_after: u64, http1: bool, end: Option<RequestEnd>, answered: bool },
    }
}

impl<F> ResponseFuture<F> {
    /// A request the inner service serves: counted by `guard`, or exempt (an uncounted
    /// guard, which reads the phase and tells a connection when the request is over).
    #[inline(always)]
    pub(crate) fn served(future: F, guard: RequestGuard, http1: bool) -> Self {
        Self {
            inner: Inner::Served {
                future,
                guard: Some(guard),
                http1,
            },
        }
    }

    /// A request served, and ended at forcing by `end` if still open then
    /// ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).
    pub(crate) fn forced(
        future: F,
        guard: RequestGuard,
        http1: bool,
        end: Option<Box<Forced>>,
    ) -> Self {
        Self {
            inner: Inner::Forced {
                future,
                guard: Some(guard),
                http1,
                end,
            },
        }
    }

    pub(crate) fn probe(
        handle: LifecycleHandle,
        probe: Probe,
        verbose: bool,
        http1: bool,
        end: Option<RequestEnd>,
    ) -> Self {
        let future = Box::pin(async move {
            let mut response = respond(handle.clone(), probe, verbose).await;
            close_if_shutting_down(&mut response, http1, handle.phase());
            response
        });
        Self {
            inner: Inner::Probe { future, end },
        }
    }

    pub(crate) fn rejected(retry_after: Duration, http1: bool, end: Option<RequestEnd>) -> Self {
        let retry_after = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            inner: Inner::Rejected {
                retry_after,
                http1,
                end,
                answered: false,
            },
        }
    }
}

/// `503 Service Unavailable` with `Retry-After` (whole seconds), and `Connection: close` on
/// HTTP/1.
#[cold]
fn rejection(retry_after: u64, http1: bool) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    if http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            InnerProj::Served {
                future,
                guard,
                http1,
            } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(result.map(|response| answered(response, guard, *http1, None)))
            }
            // Kept out of line, so that the common answer's path is small enough to be
            // inlined where the future is polled.
            other => poll_rare(other, cx),
        }
    }
}

/// The service's answer: the guard moves into the body, or ends here with an empty one.
/// `forced`: what ends the body at forcing, for a request the layer ends so.
#[inline(always)]
fn answered<B: Body>(
    mut response: Response<B>,
    guard: &mut Option<RequestGuard>,
    http1: bool,
    forced: Option<Box<Forced>>,
) -> Response<ResponseBody<B>> {
    let Some(in_flight) = guard.as_ref() else {
        unreachable!("ResponseFuture polled after completion")
    };
    in_flight.responded(response.status());
    close_if_shutting_down(&mut response, http1, in_flight.phase());
    // An empty body may never be polled: the request is complete already. The guard is
    // released where it lies, or moved once, into the body.
    if response.body().is_end_stream() {
        RequestGuard::finish_in_place(guard);
        return response.map(|body| ResponseBody::tracked(body, None, None));
    }
    let guard = guard.take();
    response.map(|body| ResponseBody::tracked(body, guard, forced))
}

/// A request the layer ends at forcing ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)),
/// a probe, or a late request rejected.
#[inline(never)]
fn poll_rare<F, B, E>(
    inner: InnerProj<'_, F>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResponseBody<B>>, E>>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    match inner {
        InnerProj::Forced {
            future,
            guard,
            http1,
            end,
        } => {
            let answer = ready!(Forced::poll_unless_forced(end.as_deref_mut(), cx, |cx| {
                future.poll(cx)
            }));
            let Some(result) = answer else {
                // Not answered at forcing: answered the protocol's way, and counted (and
                // logged) as aborted when its guard goes.
                let Some(end) = end.take() else {
                    unreachable!("only a request that ends at forcing is answered so")
                };
                let response = end.answer();
                drop(guard.take());
                return Poll::Ready(Ok(response.map(|()| ResponseBody::full(Bytes::new(), None))));
            };
            let end = end.take();
            Poll::Ready(result.map(|response| answered(response, guard, *http1, end)))
        }
        InnerProj::Served { .. } => unreachable!("polled by ResponseFuture::poll"),
        InnerProj::Probe { future, end } => {
            let response = ready!(future.as_mut().poll(cx));
            let end = end.take();
            Poll::Ready(Ok(response.map(|data| ResponseBody::full(data, end))))
        }
        InnerProj::Rejected {
            retry_after,
            http1,
            end,
            answered,
        } => {
            if std::mem::replace(answered, true) {
                unreachable!("ResponseFuture polled after completion")
            }
            let response = rejection(*retry_after, *http1);
            let end = end.take();
            Poll::Ready(Ok(response.map(|data| ResponseBody::full(data, end))))
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Served { .. } => "served",
            Inner::Forced { .. } => "ended at forcing",
            Inner::Probe { .. } => "probe",
            Inner::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, future::Pending, mem::size_of};

    use http::Response;

    use super::ResponseFuture;
    use crate::guard::RequestGuard;

    /// Every request's future moves (into the server's task, between its states): beside
    /// the service's own future it carries the guard and a few words, not the layer's
    /// rarer answers (a 503 would double it).
    #[test]
    fn the_response_future_carries_the_guard_and_little_else() {
        type Served = ResponseFuture<Pending<Result<Response<()>, Infallible>>>;
        assert!(
            size_of::<Served>() <= size_of::<RequestGuard>() + 24,
            "{} bytes",
            size_of::<Served>()
        );
    }
}
