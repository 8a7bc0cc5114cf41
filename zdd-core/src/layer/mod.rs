//! The tower middleware that tracks requests and speaks for the lifecycle on the wire.
//!
//! [`ZddLayer`] wraps a service so that:
//!
//! - each request counts as in flight from the call until its response body has ended or
//!   been dropped, not merely until the handler returns (a streaming body keeps the drain
//!   open until it is done);
//! - from [`Phase::Unready`] on, HTTP/1.x responses carry
//!   `Connection: close`, so keep-alive clients reconnect (to an instance that is still
//!   ready) instead of reusing this connection. HTTP/2 responses never get it: the protocol
//!   forbids the header, and the server's GOAWAY does that job there;
//! - during the drain, late requests on live connections are served (with
//!   `Connection: close`) by default, or answered `503 Service Unavailable` with
//!   `Retry-After` and `Connection: close` with [`LateRequests::Reject`];
//! - exempt paths (metrics, admin) are never counted and never rejected, and the probe paths
//!   can be answered by the layer itself with [`ZddLayer::probes`].
//!
//! # Errors
//!
//! The layer never adds errors of its own: the inner service's error type passes through
//! unchanged. Rejecting a late request is an HTTP answer (503), not an error, because a
//! client or proxy knows how to retry a 503 with `Retry-After` on another instance, whereas
//! an error would surface as a reset connection.
//!
//! # Examples
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use zdd_core::{Config, Lifecycle, layer::{LateRequests, ZddLayer}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//! let service = ServiceBuilder::new()
//!     .layer(
//!         ZddLayer::new(handle.clone())
//!             .probes(Default::default())
//!             .exempt("/metrics")
//!             .late_requests(LateRequests::Reject { retry_after: Duration::from_secs(1) }),
//!     )
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     }));
//!
//! handle.shutdown(); // now unready: still served, but told to close the connection
//! let response = service.clone().oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["connection"], "close");
//!
//! let ready = service.oneshot(Request::get("/health/ready").body(()).unwrap()).await.unwrap();
//! assert_eq!(ready.status(), 503);
//! # }
//! ```

mod body;
mod forced;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;
#[cfg(feature = "metrics")]
mod versioned;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use self::versioned::{RecordedFuture, RequestMetrics, RequestMetricsLayer};
pub use self::{
    body::ResponseBody,
    future::ResponseFuture,
    layer::{LateRequests, ZddLayer},
    service::Zdd,
};

use http::{HeaderValue, Response, StatusCode, Version, header};

use crate::Phase;

pub(crate) fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

/// Adds `Connection: close` to an HTTP/1 response once shutdown has begun. Upgrade answers
/// (101) are left alone: they hand the connection to the upgraded protocol.
pub(crate) fn close_if_shutting_down<B>(response: &mut Response<B>, http1: bool, phase: Phase) {
    if http1 && phase.is_shutting_down() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        mark_close(response.headers_mut());
    }
}

/// Out of line and cold: answers are marked only once shutdown has begun, and the header
/// map's insertion beside every answer's path would take room in the instruction cache on
/// every request.
#[cold]
#[inline(never)]
fn mark_close(headers: &mut http::HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
}
