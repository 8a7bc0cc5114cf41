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
        },
        // The body of a request the layer ends at forcing: a variant of its own, so that
        // every other body carries, drops and tests nothing of it.
        Forced {
            #[pin] body: B,
            guard: Option<RequestGuard>,
            end: Box<Forced>,
        },
        Full { data: Option<Bytes>, end: Option<RequestEnd> },
    }
}

impl<B> ResponseBody<B> {
    /// `forced`: the answer ends with trailers at forcing
    /// ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).
    #[inline(always)]
    pub(crate) fn tracked(
        body: B,
        guard: Option<RequestGuard>,
        forced: Option<Box<Forced>>,
    ) -> Self {
        let inner = match forced {
            None => Inner::Tracked { body, guard },
            Some(end) => Inner::Forced { body, guard, end },
        };
        Self { inner }
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
            InnerProj::Tracked { mut body, guard } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                release_at_end(guard, &frame, || body.is_end_stream());
                Poll::Ready(frame)
            }
            InnerProj::Forced { .. } => poll_forced_body(inner, cx),
            InnerProj::Full { data, .. } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Tracked { body, .. } | Inner::Forced { body, .. } => body.is_end_stream(),
            Inner::Full { data, .. } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Tracked { body, .. } | Inner::Forced { body, .. } => body.size_hint(),
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Releases a request's guard once its body has given its last frame (`ended`: whether the
/// body reports its end after this one), finished; or, when the body failed, unfinished: a
/// failed body is an abandoned request.
#[inline(always)]
fn release_at_end<D, E>(
    guard: &mut Option<RequestGuard>,
    frame: &Option<Result<Frame<D>, E>>,
    ended: impl FnOnce() -> bool,
) {
    match frame {
        None => {
            if let Some(guard) = guard.take() {
                guard.finish();
            }
        }
        Some(Ok(_)) if ended() => {
            if let Some(guard) = guard.take() {
                guard.finish();
            }
        }
        Some(Err(_)) => drop(guard.take()),
        Some(Ok(_)) => {}
    }
}

/// The body of a request the layer ends at forcing
/// ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)): its next frame, or,
/// once forcing has come while the answer is still open, the trailers that end it (the
/// guard released unfinished, so the request counts, and is logged, as aborted). Out of
/// line and cold, so the path of every other body stays short.
#[cold]
#[inline(never)]
fn poll_forced_body<B: Body<Data = Bytes>>(
    mut inner: Pin<&mut Inner<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
    let InnerProj::Forced {
        mut body,
        guard,
        end,
    } = inner.as_mut().project()
    else {
        unreachable!("polled by ResponseBody::poll_frame")
    };
    // Once its answer is over, a request is not ended at forcing.
    let forcing = guard.is_some().then_some(&mut **end);
    let Some(frame) = ready!(Forced::poll_unless_forced(forcing, cx, |cx| body
        .as_mut()
        .poll_frame(cx)))
    else {
        drop(guard.take());
        let trailers = end.trailers();
        inner.set(Inner::Full {
            data: None,
            end: None,
        });
        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
    };
    release_at_end(guard, &frame, || body.is_end_stream());
    Poll::Ready(frame)
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, in_flight) = match &self.inner {
            Inner::Tracked { guard, .. } => ("tracked", guard.is_some()),
            Inner::Forced { guard, .. } => ("ended at forcing", guard.is_some()),
            Inner::Full { .. } => ("full", false),
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .field("in_flight", &in_flight)
            .finish()
    }
}
