//! The services the loop can serve, named once.

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower service [`serve`](crate::serve) accepts: `Request<Incoming>` in,
/// `Response<Self::Body>` out, cloneable per connection, and sendable across threads (its
/// error too: a service found failed when a request comes answers with it later).
///
/// Sealed, and implemented for every such service (axum's `Router`, `service_fn`, boxed
/// services…), so it only names the bounds; there is nothing to implement.
pub trait HttpService:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<Self::Body>,
        Error: Into<BoxError> + Send,
        Future: Send + 'static,
    >
    + Clone
    + Send
    + 'static
    + sealed::Sealed
{
    /// The response body.
    type Body: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: tower_service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError> + Send,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    type Body = B;
}

mod sealed {
    pub trait Sealed {}
    impl<S> Sealed for S {}
}
