//! Serving tonic routes through zdd-hyper's loop.

use http::{HeaderMap, HeaderValue};
use tonic::service::Routes;
use zdd_core::Lifecycle;
use zdd_hyper::{Listener, Serve};

use crate::{
    GrpcHealth,
    health::{CHECK_PATH, HEALTH_PREFIX, WATCH_PATH},
};

/// Serves tonic `routes` on `listener` until the lifecycle's shutdown sequence ends.
/// `.await` the returned [`Serve`] for the [`ShutdownReport`](zdd_core::ShutdownReport);
/// configure it like any [`Serve`] (deadlines, an accept step such as TLS, more listeners).
///
/// The sequence, as a gRPC client sees it:
/// - **Unready**: every HTTP/2 connection gets the graceful GOAWAY, so clients open new
///   calls on other endpoints; calls already open go on.
/// - **Draining**: open unary and streaming calls finish; server-streaming handlers
///   wrapped in [`LifecycleHandle::until_draining`](zdd_core::LifecycleHandle::until_draining)
///   end cleanly (status `OK`, stream complete).
/// - **Forcing** (the drain deadline): each call still open ends with status `UNAVAILABLE`
///   (`grpc-status: 14`, "server shutting down"), which clients may retry elsewhere, and
///   counts as aborted in the report
///   ([`ZddLayer::end_forced_with`](zdd_core::layer::ZddLayer::end_forced_with)).
///
/// The `grpc.health.v1.Health` methods are exempt from counting: a `Watch` never holds
/// the drain (it ends at Draining; see [`GrpcHealth`](crate::GrpcHealth)). The HTTP probes
/// (`/health/ready`, …) are answered on the same port as with `zdd_hyper::serve`, over
/// HTTP/1.1 or HTTP/2. Calls to a service the routes do not have are answered
/// `UNIMPLEMENTED` by tonic.
///
/// # Examples
///
/// ```
/// use zdd_core::{Config, Lifecycle};
/// use zdd_tonic::GrpcHealth;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let lifecycle = Lifecycle::new(Config::default());
/// let routes = tonic::service::Routes::new(GrpcHealth::new(lifecycle.handle()).into_server());
/// # lifecycle.handle().shutdown();
/// let report = zdd_tonic::serve(listener, routes, lifecycle).await;
/// assert_eq!(report.exit_code(), 0);
/// # Ok(())
/// # }
/// ```
pub fn serve<L: Listener>(listener: L, routes: Routes, lifecycle: Lifecycle) -> Serve<L, Routes> {
    zdd_hyper::serve(listener, routes, lifecycle).layer(|layer| {
        layer
            .exempt(CHECK_PATH)
            .exempt(WATCH_PATH)
            .end_forced_with(unavailable())
    })
}

/// [`serve`] with `health` (the `grpc.health.v1.Health` service) added to `routes`, and
/// mounted on the admin listener too when there is one (`ZDD_ADMIN_ADDR`), where it
/// answers through the whole drain: point Kubernetes' `grpc:` probes at the admin port.
///
/// # Examples
///
/// ```
/// use zdd_core::{Config, Lifecycle, Probe};
/// use zdd_tonic::GrpcHealth;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let lifecycle = Lifecycle::new(Config::default());
/// let health = GrpcHealth::new(lifecycle.handle()).service("liveness", Probe::Liveness);
/// let routes = tonic::service::Routes::default(); // .add_service(YourServer::new(..))
/// # lifecycle.handle().shutdown();
/// let report = zdd_tonic::serve_with_health(listener, routes, health, lifecycle).await;
/// assert_eq!(report.exit_code(), 0);
/// # Ok(())
/// # }
/// ```
pub fn serve_with_health<L: Listener>(
    listener: L,
    routes: Routes,
    health: GrpcHealth,
    lifecycle: Lifecycle,
) -> Serve<L, Routes> {
    let routes = routes.add_service(health.clone().into_server());
    serve(listener, routes, lifecycle).admin_route(HEALTH_PREFIX, health.into_server())
}

/// The trailers-only answer (and the trailers) that end a call open at forcing.
fn unavailable() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from(tonic::Code::Unavailable as i32),
    );
    headers.insert(
        "grpc-message",
        HeaderValue::from_static("server%20shutting%20down"),
    );
    headers
}
