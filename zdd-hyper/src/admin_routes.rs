//! Services mounted on the admin listener beside zdd's own routes
//! ([`Serve::admin_route`](crate::Serve::admin_route)), such as the gRPC health service.

use std::{
    borrow::Cow,
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use zdd_core::AdminService;

use crate::HttpService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What every admin answer's body is.
pub(crate) type AdminBody = UnsyncBoxBody<Bytes, BoxError>;
type AdminFuture = Pin<Box<dyn Future<Output = Result<Response<AdminBody>, Infallible>> + Send>>;
type Call = dyn Fn(Request<Incoming>) -> AdminFuture + Send + Sync;

/// A service mounted at a path prefix.
#[derive(Clone)]
pub(crate) struct Mounted {
    prefix: Cow<'static, str>,
    call: Arc<Call>,
}

impl Mounted {
    pub(crate) fn new<S: HttpService + Sync>(prefix: Cow<'static, str>, service: S) -> Self {
        let call = move |request: Request<Incoming>| -> AdminFuture {
            let mut service = service.clone();
            Box::pin(async move {
                let answer = async {
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    service.call(request).await
                };
                Ok(match answer.await {
                    Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
                    Err(error) => {
                        let error: BoxError = error.into();
                        tracing::warn!(target: "zdd", error = %error, "admin route failed");
                        let mut response = Response::new(empty());
                        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        response
                    }
                })
            })
        };
        Self {
            prefix,
            call: Arc::new(call),
        }
    }
}

impl fmt::Debug for Mounted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mounted")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn empty() -> AdminBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The admin listener's service: a mounted service for a path under its prefix, else zdd's
/// own routes.
#[derive(Clone, Debug)]
pub(crate) struct AdminRoutes {
    pub(crate) admin: AdminService,
    pub(crate) mounted: Arc<[Mounted]>,
}

impl tower_service::Service<Request<Incoming>> for AdminRoutes {
    type Response = Response<AdminBody>;
    type Error = Infallible;
    type Future = AdminFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> AdminFuture {
        let path = request.uri().path();
        if let Some(mounted) = self
            .mounted
            .iter()
            .find(|mounted| path.starts_with(&*mounted.prefix))
        {
            return (mounted.call)(request);
        }
        let answer = self.admin.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| body.map_err(|never| match never {}).boxed_unsync()))
        })
    }
}
