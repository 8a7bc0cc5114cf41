//! `RequestMetricsLayer`: each request counted by status class and timed, under the
//! service's version, read back through a debugging recorder.
#![cfg(all(feature = "metrics", feature = "tower"))]

use http::{Request, Response, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{Layer, ServiceExt, service_fn};
use zdd_core::layer::RequestMetricsLayer;

#[tokio::test]
async fn requests_are_counted_by_status_class_and_timed_under_the_version() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // Handles bind to the recorder current when the layer is built.
    let layer = metrics::with_local_recorder(&recorder, || RequestMetricsLayer::new("v2"));
    let service = layer.layer(service_fn(|request: Request<()>| async move {
        match request.uri().path() {
            "/fail" => Err("broken"),
            "/busy" => Ok(Response::builder()
                .status(StatusCode::SERVICE_UNAVAILABLE)
                .body(())
                .unwrap()),
            "/gone" => Ok(Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(())
                .unwrap()),
            _ => Ok(Response::new(())),
        }
    }));
    for path in ["/", "/", "/busy", "/fail", "/gone"] {
        let request = Request::builder().uri(path).body(()).unwrap();
        let _ = service.clone().oneshot(request).await;
    }

    let mut counts = Vec::new();
    let mut timed = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        assert_eq!(label("version").as_deref(), Some("v2"), "{key:?}");
        match (key.name(), value) {
            ("zdd_http_requests_total", DebugValue::Counter(n)) if n > 0 => {
                counts.push((label("status").unwrap(), n));
            }
            ("zdd_http_requests_total", DebugValue::Counter(_)) => {}
            ("zdd_http_request_duration_seconds", DebugValue::Histogram(values)) => {
                timed += values.len();
            }
            other => panic!("unexpected metric {other:?}"),
        }
    }
    counts.sort();
    assert_eq!(
        counts,
        [
            ("2xx".to_owned(), 2),
            ("4xx".to_owned(), 1),
            ("5xx".to_owned(), 2)
        ]
    );
    assert_eq!(timed, 5);
}
