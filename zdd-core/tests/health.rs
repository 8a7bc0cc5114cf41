//! Readiness and liveness checks: caching, timeouts, panics, warnings, verbose output.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use zdd_core::{Check, Config, Lifecycle, LifecycleHandle, Phase, Probe, Status, Verdict};

async fn serving() -> LifecycleHandle {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;
    handle
}

fn counting(
    calls: &Arc<AtomicUsize>,
) -> impl Fn() -> std::future::Ready<()> + Send + Sync + 'static {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(())
    }
}

#[tokio::test(start_paused = true)]
async fn results_are_cached_for_the_interval_so_probes_do_not_hammer() {
    let handle = serving().await;
    let calls = Arc::new(AtomicUsize::new(0));
    handle.readiness_check(Check::new("db", counting(&calls)).cache_for(Duration::from_secs(5)));

    for _ in 0..10 {
        assert_eq!(handle.probe(Probe::Readiness).await.status(), Status::Pass);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    handle.probe(Probe::Readiness).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_probes_share_one_run() {
    let handle = serving().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    handle.readiness_check(Check::new("slow", move || {
        c.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300))
    }));
    let probes: Vec<_> = (0..5)
        .map(|_| {
            let h = handle.clone();
            tokio::spawn(async move { h.probe(Probe::Readiness).await.status() })
        })
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap(), Status::Pass);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_times_out_and_a_panicking_one_fails() {
    let handle = serving().await;
    handle.readiness_check(
        Check::new("slow", || tokio::time::sleep(Duration::from_secs(10)))
            .timeout(Duration::from_millis(500)),
    );
    handle.readiness_check(Check::new("broken", || async {
        if std::hint::black_box(true) {
            panic!("bug in check");
        }
    }));
    let started = tokio::time::Instant::now();
    let report = handle.probe(Probe::Readiness).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(500),
        "bounded by the check timeout"
    );
    assert_eq!(report.http_status(), 503);
    let outputs: Vec<_> = report
        .checks()
        .iter()
        .map(|c| (c.name(), c.status(), c.output()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("slow", Status::Fail, Some("timed out")),
            ("broken", Status::Fail, Some("panicked"))
        ]
    );
    assert_eq!(report.checks()[0].duration(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_warning_keeps_the_probe_passing() {
    let handle = serving().await;
    handle.readiness_check(Check::new("replica lag", || async {
        Verdict::Warn("lag 3s".into())
    }));
    handle.readiness_check(Check::new("flag", || async { true }));
    let report = handle.probe(Probe::Readiness).await;
    assert_eq!(report.status(), Status::Warn);
    assert_eq!(report.http_status(), 200);
}

#[tokio::test(start_paused = true)]
async fn error_details_only_show_when_verbose() {
    let handle = serving().await;
    handle.readiness_check(Check::new("db \"main\"", || async {
        Err::<(), _>("password authentication failed for user \"app\" at 10.0.0.7")
    }));
    let report = handle.probe(Probe::Readiness).await;
    let short: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(short["checks"]["db \"main\""]["output"], "failed");
    assert!(!report.to_json().contains("10.0.0.7"));
    let verbose: serde_json::Value = serde_json::from_str(&report.to_json_verbose()).unwrap();
    assert_eq!(
        verbose["checks"]["db \"main\""]["output"],
        "password authentication failed for user \"app\" at 10.0.0.7"
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_checks_run_while_serving_but_never_during_shutdown() {
    let handle = serving().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    handle.liveness_check(Check::new("event loop", move || {
        c.fetch_add(1, Ordering::SeqCst);
        async { false }
    }));
    let readiness_calls = Arc::new(AtomicUsize::new(0));
    handle.readiness_check(Check::new("db", counting(&readiness_calls)));

    assert_eq!(handle.probe(Probe::Liveness).await.http_status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    handle.shutdown();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(handle.probe(Probe::Liveness).await.http_status(), 200);
    assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 503);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "liveness checks not run during shutdown"
    );
    assert_eq!(
        readiness_calls.load(Ordering::SeqCst),
        0,
        "readiness checks not run either"
    );
}
