//! The admin listener's routes: preStop timing and idempotence, maintenance, the probes'
//! bodies, metrics, and the answers to unknown paths and wrong methods.
#![cfg(feature = "tower")]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::ServiceExt;
use zdd_core::{
    AdminService, Config, Lifecycle, LifecycleHandle, Phase, ProbePaths, ProbeService,
    ShutdownReport, Trigger,
};

const PROPAGATION: Duration = Duration::from_secs(5);

fn lifecycle(config: Config) -> (LifecycleHandle, tokio::task::JoinHandle<ShutdownReport>) {
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    (handle, tokio::spawn(lifecycle.run()))
}

async fn serving(config: Config) -> (LifecycleHandle, tokio::task::JoinHandle<ShutdownReport>) {
    let (handle, sequence) = lifecycle(config);
    handle.reached(Phase::Serving).await;
    (handle, sequence)
}

fn with_propagation() -> Config {
    Config::builder()
        .propagation_delay(PROPAGATION)
        .build()
        .unwrap()
}

async fn call(
    service: impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = std::convert::Infallible,
    >,
    method: Method,
    path: &str,
) -> (StatusCode, http::HeaderMap, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn admin(handle: &LifecycleHandle, method: Method, path: &str) -> (StatusCode, String) {
    let (status, _, body) = call(AdminService::new(handle.clone()), method, path).await;
    (status, body)
}

#[tokio::test(start_paused = true)]
async fn prestop_answers_when_the_propagation_delay_is_over_and_the_signal_waits_no_more() {
    let (handle, sequence) = serving(with_propagation()).await;
    let started = Instant::now();
    let (status, body) = admin(&handle, Method::GET, "/prestop").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(started.elapsed(), PROPAGATION);
    // Nothing is in flight, so the sequence may be past the drain already.
    assert!(body.starts_with(r#"{"status":"pass","phase":""#), "{body}");
    assert!(body.ends_with(r#","waited_ms":5000}"#), "{body}");
    assert!(handle.phase() >= Phase::Draining);

    // The kubelet's SIGTERM comes once the hook answered: the same sequence goes on.
    assert!(!handle.trigger(Trigger::Sigterm));
    let report = sequence.await.unwrap();
    assert_eq!(report.trigger(), Trigger::PreStop);
    assert_eq!(report.time_in(Phase::Unready), Some(PROPAGATION));
    assert!(report.is_graceful());
}

#[tokio::test(start_paused = true)]
async fn prestop_waits_the_whole_delay_even_with_a_prestop_delay_configured() {
    // ZDD_PRESTOP_DELAY is what an `exec: sleep` hook waited before the signal; the
    // `/prestop` hook waited nothing before its own trigger, so the whole delay is waited.
    let config = Config::builder()
        .propagation_delay(PROPAGATION)
        .prestop_delay(Duration::from_secs(3))
        .build()
        .unwrap();
    let (handle, sequence) = serving(config).await;
    let started = Instant::now();
    assert_eq!(admin(&handle, Method::POST, "/prestop").await.0, 200);
    assert_eq!(started.elapsed(), PROPAGATION);
    let report = sequence.await.unwrap();
    assert_eq!(report.time_in(Phase::Unready), Some(PROPAGATION));
}

#[tokio::test(start_paused = true)]
async fn repeated_prestop_calls_answer_when_the_first_does() {
    let (handle, sequence) = serving(with_propagation()).await;
    let started = Instant::now();
    let first = tokio::spawn({
        let handle = handle.clone();
        async move { admin(&handle, Method::GET, "/prestop").await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = admin(&handle, Method::GET, "/prestop").await;
    assert_eq!(started.elapsed(), PROPAGATION);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(second.0, 200);
    // Once the delay is over, at once.
    let again = Instant::now();
    assert_eq!(admin(&handle, Method::GET, "/prestop").await.0, 200);
    assert_eq!(again.elapsed(), Duration::ZERO);
    assert_eq!(
        sequence.await.unwrap().time_in(Phase::Unready),
        Some(PROPAGATION)
    );
}

#[tokio::test(start_paused = true)]
async fn prestop_after_a_signal_answers_when_that_signal_s_delay_is_over() {
    let (handle, sequence) = serving(with_propagation()).await;
    handle.trigger(Trigger::Sigterm);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    assert_eq!(admin(&handle, Method::GET, "/prestop").await.0, 200);
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    let report = sequence.await.unwrap();
    assert_eq!(report.trigger(), Trigger::Sigterm);
    assert_eq!(report.time_in(Phase::Unready), Some(PROPAGATION));
}

#[tokio::test(start_paused = true)]
async fn prestop_is_bounded_when_no_sequence_runs() {
    // A lifecycle whose sequence nobody runs never drains: the answer still comes, after
    // the propagation delay and the force wait, as a 503.
    let lifecycle = Lifecycle::new(with_propagation());
    let handle = lifecycle.handle();
    let started = Instant::now();
    let (status, body) = admin(&handle, Method::GET, "/prestop").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("propagation delay not over"), "{body}");
    assert_eq!(
        started.elapsed(),
        PROPAGATION + handle.config().force_wait()
    );
    drop(lifecycle);
}

/// Readiness as the public probes and the admin listener answer it.
async fn ready_on_both(handle: &LifecycleHandle, public: &ProbeService) -> [u16; 2] {
    let path = "/health/ready";
    [
        call(public.clone(), Method::GET, path).await.0.as_u16(),
        admin(handle, Method::GET, path).await.0.as_u16(),
    ]
}

#[tokio::test(start_paused = true)]
async fn maintenance_holds_readiness_down_on_both_listeners_until_cleared() {
    let (handle, sequence) = serving(Config::default()).await;
    let public = ProbeService::new(handle.clone());

    assert_eq!(
        admin(&handle, Method::GET, "/maintenance").await,
        (
            StatusCode::OK,
            r#"{"maintenance":false,"phase":"serving"}"#.to_owned()
        )
    );
    for _ in 0..2 {
        // Idempotent.
        let (status, body) = admin(&handle, Method::POST, "/maintenance").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"maintenance":true,"phase":"serving"}"#)
        );
    }
    assert_eq!(ready_on_both(&handle, &public).await, [503, 503]);
    assert_eq!(
        handle.phase(),
        Phase::Serving,
        "maintenance does not shut down"
    );

    for _ in 0..2 {
        assert_eq!(admin(&handle, Method::DELETE, "/maintenance").await.0, 200);
    }
    assert_eq!(ready_on_both(&handle, &public).await, [200, 200]);
    handle.shutdown();
    assert!(sequence.await.unwrap().is_graceful());
}

#[tokio::test(start_paused = true)]
async fn probes_answer_as_on_the_public_listener_in_every_phase() {
    let (handle, sequence) = lifecycle(with_propagation());
    let paths = ProbePaths::default().liveness("/livez");
    let admin_service = AdminService::new(handle.clone()).probes(paths.clone());
    let public = ProbeService::new(handle.clone()).paths(paths);
    let mut phases = handle.watch();
    loop {
        for path in ["/livez", "/health/ready", "/health/startup"] {
            let on_admin = call(admin_service.clone(), Method::GET, path).await;
            let on_public = call(public.clone(), Method::GET, path).await;
            assert_eq!(on_admin.0, on_public.0, "{path}");
            assert_eq!(on_admin.2, on_public.2, "{path}");
            assert_eq!(on_admin.1["content-type"], "application/health+json");
            assert_eq!(on_admin.1["cache-control"], "no-store");
        }
        assert_eq!(
            call(admin_service.clone(), Method::GET, "/livez").await.0,
            200,
            "liveness in {:?}",
            handle.phase()
        );
        if handle.phase() == Phase::Serving {
            handle.shutdown();
        }
        if phases.changed().await.is_err() || handle.phase() == Phase::Stopped {
            break;
        }
    }
    sequence.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn metrics_are_rendered_only_when_a_renderer_is_given() {
    let (handle, _sequence) = serving(Config::default()).await;
    let (status, _, body) = call(AdminService::new(handle.clone()), Method::GET, "/metrics").await;
    assert_eq!(status, 404);
    assert_eq!(body, r#"{"error":"no metrics renderer configured"}"#);

    let with_metrics = AdminService::new(handle.clone()).metrics(|| "zdd_phase 1\n".to_owned());
    let (status, headers, body) = call(with_metrics.clone(), Method::GET, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(body, "zdd_phase 1\n");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_eq!(call(with_metrics, Method::HEAD, "/metrics").await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow_and_a_json_body() {
    let (handle, _sequence) = serving(Config::default()).await;
    let service = AdminService::new(handle.clone());
    for path in [
        "/",
        "/health",
        "/prestop/",
        "/PRESTOP",
        "/maintenance?x",
        "/%00",
    ] {
        let (status, headers, body) = call(service.clone(), Method::GET, path).await;
        if path == "/maintenance?x" {
            // The query is not part of the path.
            assert_eq!(status, 200, "{path}");
            continue;
        }
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, r#"{"error":"not found"}"#);
    }
    for (method, path, allow) in [
        (Method::POST, "/health/live", "GET, HEAD"),
        (Method::DELETE, "/prestop", "GET, POST"),
        (Method::PUT, "/maintenance", "GET, POST, DELETE"),
        (Method::POST, "/metrics", "GET, HEAD"),
    ] {
        let (status, headers, body) = call(service.clone(), method.clone(), path).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(headers["allow"], allow);
        assert_eq!(body, r#"{"error":"method not allowed"}"#);
    }
    // Nothing changed state.
    assert_eq!(handle.phase(), Phase::Serving);
    assert!(!handle.is_marked_not_ready());
}
