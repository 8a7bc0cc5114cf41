use std::{
    borrow::Cow,
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::Probe;
use crate::LifecycleHandle;

/// The media type of health bodies.
pub(crate) const HEALTH_JSON: &str = "application/health+json";

/// Where the probes are answered. Default is `/health/live`, `/health/ready` and
/// `/health/startup`.
///
/// A path given without its leading `/` gets one.
///
/// # Examples
///
/// ```
/// use zdd_core::{Probe, ProbePaths};
///
/// let paths = ProbePaths::default().liveness("livez").readiness("/readyz");
/// assert_eq!(paths.probe_for("/livez"), Some(Probe::Liveness));
/// assert_eq!(paths.probe_for("/readyz"), Some(Probe::Readiness));
/// assert_eq!(paths.probe_for("/health/startup"), Some(Probe::Startup));
/// assert_eq!(paths.probe_for("/"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePaths {
    liveness: Cow<'static, str>,
    readiness: Cow<'static, str>,
    startup: Cow<'static, str>,
}

impl Default for ProbePaths {
    fn default() -> Self {
        Self {
            liveness: Cow::Borrowed("/health/live"),
            readiness: Cow::Borrowed("/health/ready"),
            startup: Cow::Borrowed("/health/startup"),
        }
    }
}

fn absolute(path: impl Into<Cow<'static, str>>) -> Cow<'static, str> {
    let path = path.into();
    if path.starts_with('/') {
        path
    } else {
        Cow::Owned(format!("/{path}"))
    }
}

impl ProbePaths {
    /// The liveness path. Default is `/health/live`.
    #[must_use]
    pub fn liveness(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.liveness = absolute(path);
        self
    }

    /// The readiness path. Default is `/health/ready`.
    #[must_use]
    pub fn readiness(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.readiness = absolute(path);
        self
    }

    /// The startup path. Default is `/health/startup`.
    #[must_use]
    pub fn startup(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.startup = absolute(path);
        self
    }

    /// The path of `probe`.
    #[must_use]
    pub fn path(&self, probe: Probe) -> &str {
        match probe {
            Probe::Liveness => &self.liveness,
            Probe::Readiness => &self.readiness,
            Probe::Startup => &self.startup,
        }
    }

    /// The probe answered at `path`, if any.
    #[must_use]
    pub fn probe_for(&self, path: &str) -> Option<Probe> {
        [Probe::Liveness, Probe::Readiness, Probe::Startup]
            .into_iter()
            .find(|probe| self.path(*probe) == path)
    }
}

/// Answers `probe` as an HTTP response with a health+json body.
pub(crate) async fn respond(
    handle: LifecycleHandle,
    probe: Probe,
    verbose: bool,
) -> Response<Bytes> {
    let report = handle.probe(probe).await;
    let body = if verbose {
        report.to_json_verbose()
    } else {
        report.to_json()
    };
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() =
        StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A leaf service answering the three probes, and 404 for any other path.
///
/// Mount it where your router wants it (for example with axum's `route_service`), or let
/// [`ZddLayer::probes`](crate::layer::ZddLayer::probes) answer the probes in front of your
/// service. Both give the same answers.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use tower::ServiceExt;
/// use zdd_core::{Config, Lifecycle, ProbeService};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lifecycle = Lifecycle::new(Config::default());
/// let probes = ProbeService::new(lifecycle.handle());
///
/// let response = probes
///     .oneshot(Request::get("/health/startup").body(()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 503); // still starting
/// assert_eq!(response.headers()["content-type"], "application/health+json");
/// assert_eq!(response.headers()["cache-control"], "no-store");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ProbeService {
    handle: LifecycleHandle,
    paths: ProbePaths,
    verbose: bool,
}

impl ProbeService {
    /// Answers the default paths with short outputs.
    #[must_use]
    pub fn new(handle: LifecycleHandle) -> Self {
        Self {
            handle,
            paths: ProbePaths::default(),
            verbose: false,
        }
    }

    /// Where the probes are answered. Default is [`ProbePaths::default`].
    #[must_use]
    pub fn paths(mut self, paths: ProbePaths) -> Self {
        self.paths = paths;
        self
    }

    /// Whether failing checks show their full message. Only enable it where the probe
    /// endpoints are not reachable from outside. Default is `false`.
    #[must_use]
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }
}

impl<B> tower_service::Service<Request<B>> for ProbeService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let probe = self.paths.probe_for(request.uri().path());
        let handle = self.handle.clone();
        let verbose = self.verbose;
        Box::pin(async move {
            let response = match probe {
                Some(probe) => respond(handle, probe, verbose).await,
                None => {
                    let mut response = Response::new(Bytes::new());
                    *response.status_mut() = StatusCode::NOT_FOUND;
                    response
                }
            };
            Ok(response.map(Full::new))
        })
    }
}
