use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{ResponseFuture, layer::Settings};
use crate::{
    Phase,
    layer::{LateRequests, is_http1},
};

/// Tracks requests and marks responses according to the lifecycle's phase; built by
/// [`ZddLayer`](super::ZddLayer). See the [module docs](crate::layer).
#[derive(Debug, Clone)]
pub struct Zdd<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Zdd<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self { inner, settings }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Zdd<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<super::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.settings;
        let http1 = is_http1(request.version());
        let path = request.uri().path();
        if let Some(probe) = settings
            .probes
            .as_ref()
            .and_then(|paths| paths.probe_for(path))
        {
            return ResponseFuture::probe(settings.handle.clone(), probe, settings.verbose, http1);
        }
        if settings.is_exempt(path) {
            return ResponseFuture::exempt(
                self.inner.call(request),
                settings.handle.clone(),
                http1,
            );
        }
        if let LateRequests::Reject { retry_after } = settings.late
            && settings.handle.phase() >= Phase::Draining
        {
            settings.handle.record_rejected();
            debug!(
                method = request.method().as_str(),
                path, "late request rejected"
            );
            return ResponseFuture::rejected(retry_after, http1);
        }
        let guard = settings.handle.track_http_request(request.method(), path);
        ResponseFuture::tracked(self.inner.call(request), guard, http1)
    }
}
