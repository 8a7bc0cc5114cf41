use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response, Version};
use tower_service::Service;

use super::{ResponseFuture, forced::Forced, layer::Settings};
use crate::{
    ConnectionGuard, Phase, Probe,
    connection::{ConnectionInner, RequestEnd},
    guard::RequestGuard,
    layer::{LateRequests, is_http1, layer::SpecialPath},
};

/// Tracks requests and marks responses according to the lifecycle's phase; built by
/// [`ZddLayer`](super::ZddLayer). See the [module docs](crate::layer).
#[derive(Clone)]
pub struct Zdd<S> {
    inner: S,
    /// One reference: servers clone the service for every request (hyper-util's glue
    /// does), and a connection's service then takes one reference count that no other
    /// connection touches.
    scope: Arc<Scope>,
}

/// What a [`Zdd`] serves with.
struct Scope {
    settings: Arc<Settings>,
    /// The connection its requests are counted on, for a service of one connection.
    connection: Option<Arc<ConnectionInner>>,
}

impl<S> Zdd<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            scope: Arc::new(Scope {
                settings,
                connection: None,
            }),
        }
    }

    /// This service for the requests of one connection, which a server counts with
    /// `connection`: its requests are counted on that connection rather than on the
    /// lifecycle, and the connection counts as open until the last of them ends (the
    /// drain waits for it either way). They are counted the same in the report, the logs
    /// and the metrics; what changes is the cost: a request then touches nothing that
    /// requests on other connections touch, no reference count and no count shared by all
    /// of them. zdd-hyper's server serves each connection this way.
    ///
    /// The server tells the connection when each request begins
    /// ([`ConnectionGuard::request_begins`]): a request's age, which the forced-close log
    /// gives, counts from then.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_layer::Layer;
    /// use zdd_core::{Config, Lifecycle, layer::ZddLayer};
    ///
    /// let lifecycle = Lifecycle::new(Config::default());
    /// let handle = lifecycle.handle();
    /// let service = ZddLayer::new(handle.clone()).layer(tower::service_fn(
    ///     |_: http::Request<String>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) },
    /// ));
    /// let connection = handle.track_connection();
    /// let per_connection = service.for_connection(&connection);
    /// drop(connection);
    /// assert_eq!(handle.open_connections(), 1, "its service still holds the connection");
    /// drop(per_connection);
    /// assert_eq!(handle.open_connections(), 0);
    /// ```
    #[must_use]
    pub fn for_connection(&self, connection: &ConnectionGuard) -> Self
    where
        S: Clone,
    {
        Self {
            inner: self.inner.clone(),
            scope: Arc::new(Scope {
                settings: Arc::clone(&self.scope.settings),
                connection: Some(Arc::clone(connection.inner())),
            }),
        }
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

    // Every path hands the request on whole: what is kept out of line (a probe's answer,
    // the 503, the forced path) is given the request itself, never a reference into it, and
    // an extension method's name is read from a copy (`RequestName::new`). A reference into
    // the request escaping into a call the compiler cannot see through (`Method::as_str` is
    // one), or a path that drops the request here, made it copy the whole request (264
    // bytes) on every request's path before handing it on.
    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = &*self.scope.settings;
        // Found once: the path is read through the URI's pointers, which the compiler
        // reads again after each atomic operation when asked for it twice.
        let (path, version) = (request.uri().path(), request.version());
        let special = match settings.may_be_special(path) {
            true => settings.special(path),
            false => SpecialPath::Counted,
        };
        let counted = match special {
            SpecialPath::Probe(probe) => return self.probe(request, probe),
            SpecialPath::Exempt => false,
            SpecialPath::Counted => true,
        };
        if counted
            && let LateRequests::Reject { retry_after } = settings.late
            && settings.handle.phase() >= Phase::Draining
        {
            return self.reject(request, retry_after);
        }
        let guard = match (&self.scope.connection, counted) {
            (Some(connection), _) => {
                RequestGuard::on_connection(connection, request.method(), path, version, counted)
            }
            (None, true) => {
                RequestGuard::new(&settings.handle.shared, Some((request.method(), path)))
            }
            (None, false) => RequestGuard::exempt(Arc::clone(&settings.handle.shared)),
        };
        let http1 = is_http1(version);
        if counted && settings.forced.is_some() {
            return self.call_forced(request, guard, http1);
        }
        ResponseFuture::served(self.inner.call(request), guard, http1)
    }
}

impl<S> Zdd<S> {
    /// A probe's answer, by the layer.
    #[cold]
    #[inline(never)]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the request is given, not lent: see `call`"
    )]
    fn probe<B, F>(&self, request: Request<B>, probe: Probe) -> ResponseFuture<F> {
        let settings = &*self.scope.settings;
        let version = request.version();
        ResponseFuture::probe(
            settings.handle.clone(),
            probe,
            settings.verbose,
            is_http1(version),
            self.request_end(version),
        )
    }

    /// A request the layer ends at forcing ([`ZddLayer::end_forced_with`](super::ZddLayer::end_forced_with)).
    /// Out of line and cold: code for it beside every request's would take room in the
    /// instruction cache on every request's path.
    #[cold]
    #[inline(never)]
    fn call_forced<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
        guard: RequestGuard,
        http1: bool,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let settings = &*self.scope.settings;
        let end = settings
            .forced
            .as_ref()
            .map(|trailers| Forced::new(&settings.handle, trailers));
        ResponseFuture::forced(self.inner.call(request), guard, http1, end)
    }

    /// A request that came during the drain, answered 503 ([`LateRequests::Reject`]).
    #[cold]
    #[inline(never)]
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the request is given, not lent: see `call`"
    )]
    fn reject<B, F>(
        &self,
        request: Request<B>,
        retry_after: std::time::Duration,
    ) -> ResponseFuture<F> {
        self.scope.settings.handle.record_rejected();
        let (path, version) = (request.uri().path(), request.version());
        debug!(
            method = request.method().as_str(),
            path, "late request rejected"
        );
        ResponseFuture::rejected(retry_after, is_http1(version), self.request_end(version))
    }

    /// On a connection, the connection is told when each HTTP/1 request is over: by the
    /// request's guard, or for an answer of the layer's own by a marker in its body.
    fn request_end(&self, version: Version) -> Option<RequestEnd> {
        self.scope
            .connection
            .as_ref()
            .and_then(|connection| RequestEnd::of(connection, version))
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Zdd<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zdd")
            .field("inner", &self.inner)
            .field("settings", &self.scope.settings)
            .field("per_connection", &self.scope.connection.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Arc};

    use tower_layer::Layer;

    use crate::{Config, Lifecycle, layer::ZddLayer};

    /// Servers clone the service for each request (hyper-util's glue does): a connection's
    /// service must then touch no reference count that other connections share.
    #[test]
    fn cloning_a_connections_service_touches_nothing_other_connections_share() {
        let lifecycle = Lifecycle::new(Config::default());
        let handle = lifecycle.handle();
        let service =
            ZddLayer::new(handle.clone()).layer(tower::service_fn(|_: http::Request<()>| async {
                Ok::<_, Infallible>(http::Response::new(()))
            }));
        let connection = handle.track_connection();
        let per_connection = service.for_connection(&connection);
        let settings = Arc::strong_count(&service.scope.settings);
        let lifecycle_refs = Arc::strong_count(&handle.shared);
        let clones: Vec<_> = (0..8).map(|_| per_connection.clone()).collect();
        assert_eq!(Arc::strong_count(&service.scope.settings), settings);
        assert_eq!(Arc::strong_count(&handle.shared), lifecycle_refs);
        assert_eq!(Arc::strong_count(&per_connection.scope), 9);
        drop(clones);
    }
}
