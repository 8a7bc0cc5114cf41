use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::forced::Forced;
use crate::{connection::RequestEnd, guard::RequestGuard};

pin_project! {
    /// The response body of [`Zdd`](super::Zdd): the inner body carrying the request's
    /// guard, or a body the layer wrote itself (a probe answer or a 503).
    ///
    /// The guard is released as soon as the body reports its end (or fails), or when the
    /// body is dropped, whichever comes first. Dropping it before its end during
    /// [`Phase::Forcing`](crate::Phase::Forcing) logs the request as aborted.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Tracked {
            #[pin] body: B,
            guard: Option<RequestGuard>,
            forced: Option<Box<Forced>>,
        },
        Full { data: Option<Bytes>, end: Option<RequestEnd> },
    }
}

impl<B> ResponseBody<B> {
    /// `forced`: the answer ends with trailers at forcing
    /// ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).
    pub(crate) fn tracked(
        body: B,
        guard: Option<RequestGuard>,
        forced: Option<Box<Forced>>,
    ) -> Self {
        Self {
            inner: Inner::Tracked {
                body,
                guard,
                forced,
            },
        }
    }

    /// A body the layer wrote; `end` tells a connection when it is over.
    pub(crate) fn full(data: Bytes, end: Option<RequestEnd>) -> Self {
        let data = if data.is_empty() { None } else { Some(data) };
        Self {
            inner: Inner::Full { data, end },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut inner = self.project().inner;
        match inner.as_mut().project() {
            InnerProj::Tracked {
                mut body,
                guard,
                forced,
            } => {
                // Once its answer is over, a request is not ended at forcing.
                let frame = match forced.is_some() && guard.is_some() {
                    false => ready!(body.as_mut().poll_frame(cx)),
                    true => match ready!(poll_unless_forced(body.as_mut(), forced, guard, cx)) {
                        Ok(frame) => frame,
                        Err(trailers) => {
                            inner.set(Inner::Full {
                                data: None,
                                end: None,
                            });
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                    },
                };
                match &frame {
                    None => {
                        if let Some(guard) = guard.take() {
                            guard.finish();
                        }
                    }
                    Some(Ok(_)) if body.is_end_stream() => {
                        if let Some(guard) = guard.take() {
                            guard.finish();
                        }
                    }
                    // A failed body is an abandoned request: release it unfinished.
                    Some(Err(_)) => drop(guard.take()),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
            InnerProj::Full { data, .. } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Tracked { body, .. } => body.is_end_stream(),
            Inner::Full { data, .. } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Tracked { body, .. } => body.size_hint(),
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// The body of a request the layer ends at forcing
/// ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)): its next frame, or,
/// once forcing has come, the trailers to end it with (the guard released unfinished, so
/// the request counts, and is logged, as aborted). Out of line and cold, so the path of
/// every other body stays short.
#[cold]
#[inline(never)]
#[allow(clippy::type_complexity)]
fn poll_unless_forced<B: Body>(
    body: Pin<&mut B>,
    forced: &mut Option<Box<Forced>>,
    guard: &mut Option<RequestGuard>,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<Result<Frame<B::Data>, B::Error>>, http::HeaderMap>> {
    let frame = ready!(Forced::poll_unless_forced(
        forced.as_deref_mut(),
        cx,
        |cx| body.poll_frame(cx)
    ));
    Poll::Ready(frame.ok_or_else(|| {
        let trailers = forced
            .as_ref()
            .map(|end| end.trailers())
            .unwrap_or_default();
        drop(guard.take());
        trailers
    }))
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, in_flight) = match &self.inner {
            Inner::Tracked { guard, .. } => ("tracked", guard.is_some()),
            Inner::Full { .. } => ("full", false),
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .field("in_flight", &in_flight)
            .finish()
    }
}
