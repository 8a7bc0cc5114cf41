//! Serving a `Router` and mounting the probes.

use axum::Router;
use zdd_core::{Lifecycle, LifecycleHandle, Probe, ProbePaths, ProbeService};
use zdd_hyper::Serve;

/// Serves `router` on `listener` until the lifecycle's shutdown sequence ends. `.await` the
/// returned [`Serve`] for the [`ShutdownReport`](zdd_core::ShutdownReport); configure it
/// like any [`Serve`] (probe paths, exempt paths, deadlines, an accept step such as TLS).
///
/// For axum's `ConnectInfo<SocketAddr>` extractor (rate limiters, access logs), add
/// `.connect_info(ConnectInfo)`: each request then carries its connection's peer address,
/// as `into_make_service_with_connect_info` does for `axum::serve`.
///
/// ```
/// use std::net::SocketAddr;
/// use axum::{Router, extract::ConnectInfo, routing::get};
/// use zdd_core::{Config, Lifecycle};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let lifecycle = Lifecycle::new(Config::default());
/// # lifecycle.handle().shutdown();
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hello {peer}") }),
/// );
/// let report = zdd_axum::serve(listener, app, lifecycle).connect_info(ConnectInfo).await;
/// assert!(report.is_graceful());
/// # Ok(())
/// # }
/// ```
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use zdd_core::{Config, Lifecycle};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let lifecycle = Lifecycle::new(Config::default());
/// # lifecycle.handle().shutdown();
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let report = zdd_axum::serve(listener, app, lifecycle).await;
/// assert_eq!(report.exit_code(), 0);
/// # Ok(())
/// # }
/// ```
pub fn serve<L: zdd_hyper::Listener>(
    listener: L,
    router: Router,
    lifecycle: Lifecycle,
) -> Serve<L, Router> {
    // As `axum::serve` does: turn each handler into its route once, not at every request.
    zdd_hyper::serve(listener, router.with_state(()), lifecycle)
}

/// A router answering the three probes at `paths`, to merge into an application router
/// served without [`serve`] (which answers them already).
///
/// # Examples
///
/// ```
/// use axum::{Router, routing::get};
/// use zdd_core::{Config, Lifecycle, ProbePaths};
///
/// let lifecycle = Lifecycle::new(Config::default());
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .merge(zdd_axum::probe_routes(lifecycle.handle(), &ProbePaths::default()));
/// # drop(app);
/// ```
pub fn probe_routes(handle: LifecycleHandle, paths: &ProbePaths) -> Router {
    let probes = ProbeService::new(handle).paths(paths.clone());
    [Probe::Liveness, Probe::Readiness, Probe::Startup]
        .into_iter()
        .fold(Router::new(), |router, probe| {
            router.route_service(paths.path(probe), probes.clone())
        })
}
