//! Request metrics labelled with the service's version, for deploy decisions (feature
//! `metrics`): is the new version failing more, or slower, than the stable one?

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{Request, Response};
use metrics::{Counter, Histogram, counter, histogram};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The status classes counted, `1xx` to `5xx`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The metric handles of one version, registered once.
#[derive(Debug)]
struct Handles {
    /// `zdd_http_requests_total{version, status}`, one per class of [`CLASSES`].
    requests: [Counter; 5],
    /// `zdd_http_request_duration_seconds{version}`.
    duration: Histogram,
}

/// Records each request's outcome and latency through the `metrics` facade, labelled with
/// the service's version: what a canary analysis compares between versions (error rate,
/// p95 latency, traffic share). Opt-in; zdd records nothing per request without it.
///
/// | name | kind | labels |
/// |---|---|---|
/// | `zdd_http_requests_total` | counter | `version`, `status` (`1xx` … `5xx`; a service error counts as `5xx`) |
/// | `zdd_http_request_duration_seconds` | histogram | `version`: from the call to the response head |
///
/// The handles are registered with the recorder installed when the layer is built: install
/// the recorder first. For latency quantiles across instances, give the histogram buckets
/// (with `metrics-exporter-prometheus`: `set_buckets_for_metric`), as the `prometheus`
/// example does. Its cost per request is measured by `cargo bench -p zdd-core --features
/// tower,metrics --bench core` (`one_request/request_metrics`).
///
/// # Examples
///
/// ```
/// use tower::{Layer, service_fn};
/// use zdd_core::layer::RequestMetricsLayer;
///
/// let service = service_fn(|_request: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// });
/// let service = RequestMetricsLayer::new("v2").layer(service);
/// # drop(service);
/// ```
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer {
    handles: Arc<Handles>,
}

impl RequestMetricsLayer {
    /// Records under `version` (such as the `APP_VERSION` the deploy sets).
    #[must_use]
    pub fn new(version: impl Into<String>) -> Self {
        let version: String = version.into();
        let requests = CLASSES.map(|class| {
            counter!("zdd_http_requests_total", "version" => version.clone(), "status" => class)
        });
        let duration = histogram!("zdd_http_request_duration_seconds", "version" => version);
        Self {
            handles: Arc::new(Handles { requests, duration }),
        }
    }
}

impl<S> Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> RequestMetrics<S> {
        RequestMetrics {
            inner,
            handles: Arc::clone(&self.handles),
        }
    }
}

/// The service of [`RequestMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S, B, ResBody> Service<Request<B>> for RequestMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecordedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        RecordedFuture {
            future: self.inner.call(request),
            handles: Arc::clone(&self.handles),
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The response future of [`RequestMetrics`]: records when the response head is ready.
    #[derive(Debug)]
    pub struct RecordedFuture<F> {
        #[pin]
        future: F,
        handles: Arc<Handles>,
        started: Instant,
    }
}

impl<F, ResBody, E> Future for RecordedFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        let class = match &result {
            Ok(response) => usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1,
            Err(_) => 4,
        };
        this.handles.requests[class].increment(1);
        this.handles
            .duration
            .record(this.started.elapsed().as_secs_f64());
        Poll::Ready(result)
    }
}
