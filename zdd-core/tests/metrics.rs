//! Metrics move with the lifecycle: phases, work in flight (sampled), forced closes,
//! rejections and check results, read back through a debugging recorder.
#![cfg(all(feature = "metrics", feature = "tower"))]

use std::{convert::Infallible, time::Duration};

use http::{Request, Response};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt, service_fn};
use zdd_core::{
    Check, Config, Lifecycle, Phase, Probe,
    layer::{LateRequests, ZddLayer},
};

/// The values recorded since the last snapshot (the debugging recorder's snapshots drain
/// it), by name and labels.
struct Snapshot(Vec<Recorded>);

/// A metric's name, labels and value.
type Recorded = (String, Vec<(String, String)>, f64);

impl Snapshot {
    fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let key = key.key();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    let value = match value {
                        DebugValue::Gauge(v) => v.into_inner(),
                        DebugValue::Counter(v) => v as f64,
                        DebugValue::Histogram(v) => v.len() as f64,
                    };
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.iter().find_map(|(n, l, v)| {
            let matches = n == name
                && labels
                    .iter()
                    .all(|(k, want)| l.iter().any(|(lk, lv)| lk == k && lv == want));
            matches.then_some(*v)
        })
    }
}

// One test: the recorder is process-wide.
#[tokio::test(start_paused = true)]
async fn metrics_follow_phases_work_and_outcomes() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let config = Config::builder()
        .propagation_delay(Duration::from_secs(1))
        .drain_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    handle.readiness_check(Check::new("db", || async { Err::<(), _>("down") }));
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;
    assert_eq!(
        Snapshot::take(&snapshotter).get("zdd_phase", &[]),
        Some(1.0)
    );

    // In-flight work shows in the sampled gauges and goes away again.
    let request = handle.track_request();
    let connection = handle.track_connection();
    connection.set_protocol(zdd_core::Protocol::Http2);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let busy = Snapshot::take(&snapshotter);
    assert_eq!(busy.get("zdd_in_flight_requests", &[]), Some(1.0));
    assert_eq!(
        busy.get("zdd_open_connections", &[("protocol", "http2")]),
        Some(1.0)
    );
    request.finish();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        Snapshot::take(&snapshotter).get("zdd_in_flight_requests", &[]),
        Some(0.0)
    );

    // Check results.
    assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 503);
    assert_eq!(
        Snapshot::take(&snapshotter).get(
            "zdd_health_check_status",
            &[("probe", "ready"), ("check", "db")]
        ),
        Some(0.0)
    );

    // A rejected late request and a forced connection.
    handle.shutdown();
    handle.draining().await;
    let service = ZddLayer::new(handle.clone())
        .late_requests(LateRequests::Reject {
            retry_after: Duration::from_secs(1),
        })
        .layer(service_fn(|_r: Request<()>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        }));
    assert_eq!(
        service.oneshot(Request::new(())).await.unwrap().status(),
        503
    );
    assert_eq!(
        Snapshot::take(&snapshotter).get("zdd_late_requests_rejected_total", &[]),
        Some(1.0)
    );
    handle.reached(Phase::Forcing).await;
    drop(connection);
    let report = sequence.await.unwrap();
    assert_eq!(report.connections_forced(), 1);
    let end = Snapshot::take(&snapshotter);
    assert_eq!(
        end.get("zdd_forced_closes_total", &[("kind", "connection")]),
        Some(1.0)
    );
    assert_eq!(end.get("zdd_phase", &[]), Some(6.0));
    assert_eq!(
        end.get("zdd_phase_transitions_total", &[("phase", "forcing")]),
        Some(1.0)
    );
    assert_eq!(end.get("zdd_drain_duration_seconds", &[]), Some(3.0));
    assert_eq!(
        end.get("zdd_phase_duration_seconds", &[("phase", "draining")]),
        Some(1.0),
        "one recorded stay"
    );
}
