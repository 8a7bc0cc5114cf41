//! The admin listener's routes: the probes, `/metrics`, `/prestop` and `/maintenance`.
//!
//! A server serves [`AdminService`] on a port of its own (`ZDD_ADMIN_ADDR`; `zdd-hyper`'s
//! `Serve` does it), open in every phase until the report exists and never counted as work
//! to drain, so probes and scrapes keep answering on new connections while the public
//! listener is closed for the drain. The routes that change state live only here, never on
//! a public listener:
//!
//! | path | methods | answer |
//! |---|---|---|
//! | `/health/live`, `/health/ready`, `/health/startup` | GET, HEAD | the same as the public probes ([`ProbePaths`]) |
//! | `/metrics` | GET, HEAD | the renderer's text, when one is given ([`AdminService::metrics`]); else 404 |
//! | `/prestop` | GET, POST | starts the sequence ([`Trigger::PreStop`]) and answers once the propagation delay is over |
//! | `/maintenance` | GET, POST, DELETE | reads, sets (POST) or clears (DELETE) the not-ready toggle |
//!
//! Any other path answers 404, a known path with another method 405 (with `Allow`), both
//! with a short JSON body such as `{"error":"not found"}`.
//!
//! `/prestop` is for a Kubernetes `preStop: httpGet` hook: the kubelet sends `SIGTERM` only
//! once the hook has answered, so the answer is held until the propagation delay is over
//! and the `SIGTERM` that follows finds the sequence already draining (it waits nothing
//! more). Repeated calls answer when the first does; once the propagation delay is over,
//! at once. Every answer is bounded by the propagation delay plus the force wait.
//!
//! # Examples
//!
//! ```
//! use http::{Method, Request};
//! use tower::ServiceExt;
//! use zdd_core::{AdminService, Config, Lifecycle, Phase};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//! let admin = AdminService::new(handle.clone()).metrics(|| "requests_total 7\n".to_owned());
//! tokio::spawn(lifecycle.run());
//! handle.reached(Phase::Serving).await;
//!
//! let call = |method: Method, path: &str| {
//!     let request = Request::builder().method(method).uri(path).body(()).unwrap();
//!     admin.clone().oneshot(request)
//! };
//! assert_eq!(call(Method::GET, "/health/ready").await.unwrap().status(), 200);
//! assert_eq!(call(Method::GET, "/metrics").await.unwrap().status(), 200);
//!
//! // Maintenance: readiness fails until it is cleared, and nothing shuts down.
//! assert_eq!(call(Method::POST, "/maintenance").await.unwrap().status(), 200);
//! assert_eq!(call(Method::GET, "/health/ready").await.unwrap().status(), 503);
//! call(Method::DELETE, "/maintenance").await.unwrap();
//! assert_eq!(call(Method::GET, "/health/ready").await.unwrap().status(), 200);
//!
//! assert_eq!(call(Method::PUT, "/prestop").await.unwrap().status(), 405);
//! assert_eq!(call(Method::GET, "/nope").await.unwrap().status(), 404);
//!
//! // preStop: answered once the propagation delay (0 here) is over.
//! assert_eq!(call(Method::GET, "/prestop").await.unwrap().status(), 200);
//! assert!(handle.phase() >= Phase::Draining);
//! # }
//! ```

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::time::Instant;

use crate::{LifecycleHandle, Probe, ProbePaths, Trigger, health::respond};

/// The path that starts the sequence for a preStop hook.
pub const PRESTOP_PATH: &str = "/prestop";
/// The path of the not-ready toggle.
pub const MAINTENANCE_PATH: &str = "/maintenance";
/// The path of the metrics renderer's text.
pub const METRICS_PATH: &str = "/metrics";

/// The Prometheus text format's media type.
const METRICS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The admin listener's service; see the [module docs](self) for its routes.
///
/// Serve it only on a port that public traffic cannot reach: it can stop the service.
#[derive(Clone)]
pub struct AdminService {
    handle: LifecycleHandle,
    paths: Option<ProbePaths>,
    verbose: bool,
    metrics: Option<Render>,
    peer: Option<SocketAddr>,
}

impl AdminService {
    /// The probes at their default paths, `/prestop` and `/maintenance`; no `/metrics`.
    #[must_use]
    pub fn new(handle: LifecycleHandle) -> Self {
        Self {
            handle,
            paths: None,
            verbose: false,
            metrics: None,
            peer: None,
        }
    }

    /// Where the probes are answered. Default is [`ProbePaths::default`], or, served by
    /// `zdd-hyper`, the public listener's probe paths.
    #[must_use]
    pub fn probes(mut self, paths: ProbePaths) -> Self {
        self.paths = Some(paths);
        self
    }

    /// The probe paths set with [`AdminService::probes`], if any.
    #[must_use]
    pub fn probe_paths(&self) -> Option<&ProbePaths> {
        self.paths.as_ref()
    }

    /// Whether failing checks show their full message. The admin port is not public, so
    /// this is safer here than on a public listener. Default is `false`.
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Answers `GET /metrics` with `render()`'s text (the Prometheus text format), such as
    /// `metrics-exporter-prometheus`'s `PrometheusHandle::render`. Default is none: 404.
    #[must_use]
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The address of the client on this connection, logged with every state change it
    /// makes. Servers set it per connection. Default is none (logged as `unknown`).
    #[must_use]
    pub fn peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    fn route(&self, path: &str) -> Route {
        let default;
        let paths = match &self.paths {
            Some(paths) => paths,
            None => {
                default = ProbePaths::default();
                &default
            }
        };
        if let Some(probe) = paths.probe_for(path) {
            return Route::Probe(probe);
        }
        match path {
            METRICS_PATH => Route::Metrics,
            PRESTOP_PATH => Route::PreStop,
            MAINTENANCE_PATH => Route::Maintenance,
            _ => Route::NotFound,
        }
    }
}

impl fmt::Debug for AdminService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminService")
            .field("paths", &self.paths)
            .field("verbose", &self.verbose)
            .field("metrics", &self.metrics.is_some())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Probe(Probe),
    Metrics,
    PreStop,
    Maintenance,
    NotFound,
}

impl Route {
    /// The methods the route answers, as listed in `Allow`.
    fn allow(self) -> &'static str {
        match self {
            Self::Probe(_) | Self::Metrics => "GET, HEAD",
            Self::PreStop => "GET, POST",
            Self::Maintenance => "GET, POST, DELETE",
            Self::NotFound => "",
        }
    }

    fn allows(self, method: &Method) -> bool {
        let name = method.as_str();
        self.allow().split(", ").any(|allowed| allowed == name)
    }
}

impl<B> tower_service::Service<Request<B>> for AdminService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = self.route(request.uri().path());
        let method = request.method().clone();
        let admin = self.clone();
        Box::pin(async move {
            let response = match route {
                Route::NotFound => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
                _ if !route.allows(&method) => {
                    let mut response = json(
                        StatusCode::METHOD_NOT_ALLOWED,
                        r#"{"error":"method not allowed"}"#.into(),
                    );
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(route.allow()));
                    response
                }
                Route::Probe(probe) => respond(admin.handle, probe, admin.verbose).await,
                Route::Metrics => admin.render_metrics(),
                Route::PreStop => admin.prestop().await,
                Route::Maintenance => admin.maintenance(&method),
            };
            Ok(response.map(Full::new))
        })
    }
}

impl AdminService {
    fn peer_name(&self) -> String {
        self.peer
            .map_or_else(|| "unknown".to_owned(), |peer| peer.to_string())
    }

    fn render_metrics(&self) -> Response<Bytes> {
        let Some(render) = &self.metrics else {
            return json(
                StatusCode::NOT_FOUND,
                r#"{"error":"no metrics renderer configured"}"#.into(),
            );
        };
        let mut response = Response::new(Bytes::from(render()));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(METRICS_TEXT));
        no_store(response)
    }

    /// Starts the sequence and answers once the propagation delay is over (at once if it
    /// already is), within the propagation delay plus the force wait.
    async fn prestop(self) -> Response<Bytes> {
        let handle = &self.handle;
        let started = Instant::now();
        let first = handle.trigger(Trigger::PreStop);
        info!(
            peer = %self.peer_name(),
            first,
            phase = handle.phase().as_str(),
            "preStop requested on the admin listener"
        );
        let config = handle.config();
        let bound = config.propagation_delay_after(Trigger::PreStop) + config.force_wait();
        let over = tokio::time::timeout(bound, handle.stop_accepting())
            .await
            .is_ok();
        let waited_ms = started.elapsed().as_millis();
        let phase = handle.phase();
        if over {
            json(
                StatusCode::OK,
                format!(r#"{{"status":"pass","phase":"{phase}","waited_ms":{waited_ms}}}"#),
            )
        } else {
            warn!(
                waited_ms = waited_ms as u64,
                phase = phase.as_str(),
                "preStop answered before the propagation delay was over: is the lifecycle running?"
            );
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    r#"{{"status":"fail","phase":"{phase}","waited_ms":{waited_ms},"output":"propagation delay not over"}}"#
                ),
            )
        }
    }

    /// Reads (GET), sets (POST) or clears (DELETE) the not-ready toggle.
    fn maintenance(&self, method: &Method) -> Response<Bytes> {
        let health = self.handle.shared.health();
        let on = if *method == Method::GET {
            health.is_marked_not_ready()
        } else {
            let on = *method == Method::POST;
            let was = health.set_not_ready(on);
            info!(
                maintenance = on,
                changed = was != on,
                peer = %self.peer_name(),
                "maintenance toggled on the admin listener"
            );
            on
        };
        json(
            StatusCode::OK,
            format!(
                r#"{{"maintenance":{on},"phase":"{}"}}"#,
                self.handle.phase()
            ),
        )
    }
}

fn json(status: StatusCode, body: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(response)
}

fn no_store(mut response: Response<Bytes>) -> Response<Bytes> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
