//! The hyper service of one connection, over the tower service it serves: tells the
//! connection a request began, adds the connect info, and calls the tower service.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker, ready},
};

use http::{Request, Version};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::state::ConnState;

/// Adds a connection's connect info to a request's extensions.
pub(crate) type Insert = Arc<dyn Fn(&mut http::Extensions) + Send + Sync>;

/// The hyper service of one connection. The (layered) tower service it calls counts the
/// request on the connection.
#[derive(Clone)]
pub(crate) struct ConnService<S> {
    inner: S,
    state: Arc<ConnState>,
    insert: Option<Insert>,
}

impl<S> ConnService<S> {
    pub(crate) fn new(inner: S, state: Arc<ConnState>, insert: Option<Insert>) -> Self {
        Self {
            inner,
            state,
            insert,
        }
    }
}

impl<S, B> hyper::service::Service<Request<B>> for ConnService<S>
where
    S: Service<Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Call<S, Request<B>>;

    #[inline]
    fn call(&self, mut request: Request<B>) -> Self::Future {
        // Now, as hyper has read the head.
        self.state.guard.request_begins(request.version());
        if let Some(insert) = &self.insert {
            // Lent on its own: lending the request's own field to a call the compiler
            // cannot see through would make it copy the request before handing it on.
            let mut extensions = std::mem::take(request.extensions_mut());
            insert(&mut extensions);
            *request.extensions_mut() = extensions;
        }
        // HTTP/2 answers each stream in a task of its own: the service is called there, when
        // that task first polls the answer, with the rest of the stream's work (called here,
        // in the connection's task, it cost about 2 % of the rate of 32 connections of 10
        // streams each). HTTP/1's connection task polls the answer as soon as it has it.
        let at_once = request.version() != Version::HTTP_2;
        Call::new(self.inner.clone(), request, at_once)
    }
}

pin_project! {
    /// The answer to one request: the tower service's future, once it is called.
    #[project = CallProj]
    pub(crate) enum Call<S: Service<R>, R> {
        Called { #[pin] future: S::Future },
        Uncalled { service: S, request: Option<R> },
        Failed { error: Option<S::Error> },
    }
}

impl<S, R> Call<S, R>
where
    S: Service<R>,
{
    /// Calls `service` with `request` once it is ready: `at_once`, when it is ready now,
    /// else when the answer is first polled. Most services are always ready (axum's
    /// router, and zdd's layer over it): asked now, with no task to wake, such a service is
    /// called at once, and its future is all the answer holds. One that is not ready yet is
    /// asked again, with the task's waker, when the answer is polled.
    #[inline]
    pub(crate) fn new(mut service: S, request: R, at_once: bool) -> Self {
        // One construction for each state, whatever the reason for it: an answer built in
        // several places for one state is built aside and copied.
        let readiness = match at_once {
            true => service.poll_ready(&mut Context::from_waker(Waker::noop())),
            false => Poll::Pending,
        };
        match readiness {
            Poll::Ready(Ok(())) => Self::Called {
                future: service.call(request),
            },
            Poll::Ready(Err(error)) => Self::Failed { error: Some(error) },
            Poll::Pending => Self::Uncalled {
                service,
                request: Some(request),
            },
        }
    }

    /// Calls the service of an answer not called yet (every HTTP/2 stream's, and one whose
    /// service was not ready when the request came) once it is ready; or answers with the
    /// error the service was found failed with.
    #[inline(never)]
    fn poll_uncalled(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let future = match self.as_mut().project() {
            CallProj::Uncalled { service, request } => {
                ready!(service.poll_ready(cx))?;
                let Some(request) = request.take() else {
                    unreachable!("a request is called once")
                };
                service.call(request)
            }
            CallProj::Failed { error } => match error.take() {
                Some(error) => return Poll::Ready(Err(error)),
                None => unreachable!("Call polled after completion"),
            },
            CallProj::Called { .. } => unreachable!("polled by Call::poll"),
        };
        self.set(Self::Called { future });
        self.poll(cx)
    }
}

impl<S, R> Future for Call<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let CallProj::Called { future } = self.as_mut().project() {
            return future.poll(cx);
        }
        self.poll_uncalled(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        pin::pin,
        sync::{
            Arc, Mutex,
            atomic::{AtomicBool, AtomicUsize, Ordering},
        },
        task::{Context, Poll, Wake, Waker},
    };

    use http::{Request, Version};
    use zdd_core::{Config, Lifecycle};

    use super::{Call, ConnService};
    use crate::state::ConnState;

    /// A service ready once `ready` is set (waking the task that asked), failed when
    /// `failed` is; it counts its calls.
    #[derive(Clone, Default)]
    struct Gated {
        ready: Arc<AtomicBool>,
        failed: bool,
        asked: Arc<Mutex<Option<Waker>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Gated {
        fn open(&self) {
            self.ready.store(true, Ordering::SeqCst);
            if let Some(waker) = self.asked.lock().unwrap().take() {
                waker.wake();
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl<R> tower_service::Service<R> for Gated {
        type Response = &'static str;
        type Error = &'static str;
        type Future = std::future::Ready<Result<&'static str, &'static str>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.failed {
                return Poll::Ready(Err("failed"));
            }
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(Ok(()));
            }
            *self.asked.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }

        fn call(&mut self, _: R) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok("answered"))
        }
    }

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_ready_service_is_called_at_once() {
        let service = Gated::default();
        service.open();
        let call = pin!(Call::new(service.clone(), "request", true));
        assert_eq!(service.calls(), 1, "called before the answer is polled");
        let waker = Waker::noop();
        assert_eq!(
            call.poll(&mut Context::from_waker(waker)),
            Poll::Ready(Ok("answered"))
        );
        assert_eq!(service.calls(), 1);
    }

    #[test]
    fn a_service_not_ready_is_called_once_ready_and_wakes_the_task_that_polled() {
        let service = Gated::default();
        let mut call = pin!(Call::new(service.clone(), "request", true));
        assert_eq!(service.calls(), 0, "not called before it is ready");
        let woken = Arc::new(Counted::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(service.calls(), 0);
        service.open();
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the polling task is woken"
        );
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Ready(Ok("answered")));
        assert_eq!(service.calls(), 1);
    }

    #[test]
    fn a_failed_service_answers_with_its_error_and_is_never_called() {
        let service = Gated {
            failed: true,
            ..Gated::default()
        };
        let call = pin!(Call::new(service.clone(), "request", true));
        assert_eq!(
            call.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Err("failed"))
        );
        assert_eq!(service.calls(), 0);
    }

    /// An HTTP/1 request's service is called when hyper hands the request over; an HTTP/2
    /// stream's when its own task first polls the answer.
    #[test]
    fn http1_requests_are_called_at_once_and_http2_streams_when_polled() {
        use hyper::service::Service;
        let lifecycle = Lifecycle::new(Config::default());
        let state = Arc::new(ConnState::new(lifecycle.handle().track_connection()));
        let service = Gated::default();
        service.open();
        let conn = ConnService::new(service.clone(), state, None);
        let request = |version| {
            let mut request = Request::new(());
            *request.version_mut() = version;
            request
        };
        let http1 = conn.call(request(Version::HTTP_11));
        assert_eq!(service.calls(), 1, "HTTP/1.1: called at once");
        let http2 = conn.call(request(Version::HTTP_2));
        assert_eq!(service.calls(), 1, "HTTP/2: not called before it is polled");
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(pin!(http2).poll(&mut cx), Poll::Ready(Ok("answered")));
        assert_eq!(service.calls(), 2);
        assert_eq!(pin!(http1).poll(&mut cx), Poll::Ready(Ok("answered")));
        assert_eq!(service.calls(), 2);
    }
}
