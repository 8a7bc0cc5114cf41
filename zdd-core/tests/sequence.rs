//! The shutdown sequence end to end on paused time: delays, early drain, deadlines, forcing,
//! hooks, tasks and triggers.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};
use zdd_core::{Config, ForceReason, HookOutcome, Lifecycle, Phase, Trigger};

fn config(propagation: u64, drain: u64, cleanup: u64) -> Config {
    Config::builder()
        .propagation_delay(Duration::from_secs(propagation))
        .drain_timeout(Duration::from_secs(drain))
        .cleanup_timeout(Duration::from_secs(cleanup))
        .grace_period(Duration::from_secs(propagation + drain + cleanup + 2))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn propagation_is_a_fixed_wait_and_the_drain_ends_when_work_is_done() {
    let lifecycle = Lifecycle::new(config(5, 20, 3));
    let handle = lifecycle.handle();
    let request = handle.track_request();
    let connection = handle.track_connection();
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    let triggered = Instant::now();
    handle.trigger(Trigger::Sigterm);
    handle.draining().await;
    assert_eq!(
        triggered.elapsed(),
        Duration::from_secs(5),
        "propagation delay is waited in full"
    );

    // Three seconds into the drain the work finishes; the drain must not wait 20 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    request.finish();
    assert_eq!(
        handle.phase(),
        Phase::Draining,
        "the connection still holds the drain"
    );
    drop(connection);

    let report = sequence.await.unwrap();
    assert_eq!(triggered.elapsed(), Duration::from_secs(8));
    assert_eq!(report.trigger(), Trigger::Sigterm);
    assert_eq!(report.time_in(Phase::Unready), Some(Duration::from_secs(5)));
    assert_eq!(
        report.time_in(Phase::Draining),
        Some(Duration::from_secs(3))
    );
    assert_eq!(report.time_in(Phase::Forcing), None);
    assert_eq!(report.shutdown_duration(), Duration::from_secs(8));
    assert_eq!(report.requests_completed(), 1);
    assert_eq!(report.connections_graceful(), 1);
    assert!(report.is_graceful());
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_request_arriving_during_the_drain_is_waited_for() {
    let lifecycle = Lifecycle::new(config(0, 20, 3));
    let handle = lifecycle.handle();
    let first = handle.track_request();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.draining().await;

    let late = handle.track_request();
    first.finish();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        handle.phase(),
        Phase::Draining,
        "the late request holds the drain"
    );
    late.finish();
    let report = sequence.await.unwrap();
    assert_eq!(report.requests_completed(), 2);
    assert!(report.is_graceful());
}

#[tokio::test(start_paused = true)]
async fn the_drain_deadline_forces_and_the_report_says_so() {
    let lifecycle = Lifecycle::new(config(1, 10, 3));
    let handle = lifecycle.handle();
    let hung = handle.track_request().describe(&http::Method::GET, "/slow");
    let connection = handle.track_connection();
    let sequence = tokio::spawn(lifecycle.run());
    let triggered = Instant::now();
    handle.shutdown();

    handle.reached(Phase::Forcing).await;
    assert_eq!(triggered.elapsed(), Duration::from_secs(11));
    // A server would close the connection now, dropping the request with it.
    drop(hung);
    drop(connection);

    let report = sequence.await.unwrap();
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.requests_aborted(), 1);
    assert_eq!(report.connections_forced(), 1);
    assert_eq!(report.left_open(), 0);
    assert!(!report.is_graceful());
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(start_paused = true)]
async fn forcing_waits_a_bounded_time_for_work_nobody_closes() {
    let lifecycle = Lifecycle::new(config(0, 5, 3));
    let handle = lifecycle.handle();
    let _never_released = handle.track_connection();
    let sequence = tokio::spawn(lifecycle.run());
    let triggered = Instant::now();
    handle.shutdown();
    let report = sequence.await.unwrap();
    assert_eq!(
        triggered.elapsed(),
        Duration::from_secs(6),
        "5 s drain + 1 s forcing wait"
    );
    assert_eq!(report.left_open(), 1);
    assert!(!report.is_graceful());
}

#[tokio::test(start_paused = true)]
async fn a_forcing_request_skips_the_rest_of_the_propagation_and_the_drain() {
    let lifecycle = Lifecycle::new(config(10, 15, 3));
    let handle = lifecycle.handle();
    let request = handle.track_request();
    let sequence = tokio::spawn(lifecycle.run());
    let triggered = Instant::now();
    handle.trigger(Trigger::Sigint);
    tokio::time::sleep(Duration::from_secs(2)).await;
    handle.force();
    handle.reached(Phase::Forcing).await;
    assert_eq!(triggered.elapsed(), Duration::from_secs(2));
    drop(request);
    let report = sequence.await.unwrap();
    assert_eq!(report.forced(), Some(ForceReason::Requested));
    assert_eq!(
        report.trigger(),
        Trigger::Sigint,
        "the first trigger is kept"
    );
    assert_eq!(report.requests_aborted(), 1);
}

#[tokio::test(start_paused = true)]
async fn hooks_run_newest_first_and_each_outcome_is_recorded() {
    let lifecycle = Lifecycle::new(config(0, 5, 3));
    let handle = lifecycle.handle();
    let order = Arc::new(AtomicUsize::new(0));
    let position = |order: &Arc<AtomicUsize>| order.fetch_add(1, Ordering::SeqCst);

    let o = Arc::clone(&order);
    handle.on_cleanup("database", Duration::from_secs(1), async move {
        assert_eq!(position(&o), 3, "registered first, runs last");
    });
    handle.on_cleanup("hangs", Duration::from_millis(500), async {
        std::future::pending::<()>().await;
    });
    let o = Arc::clone(&order);
    handle.on_cleanup("panics", Duration::from_secs(1), async move {
        position(&o);
        if o.load(Ordering::SeqCst) > 0 {
            panic!("broken hook");
        }
    });
    let o = Arc::clone(&order);
    handle.on_cleanup("fails", Duration::from_secs(1), async move {
        position(&o);
        Err::<(), _>("flush failed")
    });
    let o = Arc::clone(&order);
    handle.on_cleanup("cache", Duration::from_secs(1), async move {
        assert_eq!(position(&o), 0, "registered last, runs first");
    });

    handle.shutdown();
    let report = lifecycle.run().await;
    let outcomes: Vec<_> = report
        .hooks()
        .iter()
        .map(|h| (h.name(), h.outcome().clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("cache", HookOutcome::Completed),
            ("fails", HookOutcome::Failed("flush failed".into())),
            ("panics", HookOutcome::Panicked("broken hook".into())),
            ("hangs", HookOutcome::TimedOut),
            ("database", HookOutcome::Completed),
        ]
    );
    assert_eq!(report.hooks()[3].duration(), Duration::from_millis(500));
    assert_eq!(order.load(Ordering::SeqCst), 4);
    assert!(!report.is_graceful());
}

#[tokio::test(start_paused = true)]
async fn hooks_share_the_cleanup_budget_and_late_ones_are_skipped() {
    let lifecycle = Lifecycle::new(config(0, 5, 3));
    let handle = lifecycle.handle();
    handle.on_cleanup("never reached", Duration::from_secs(1), async {});
    handle.on_cleanup("cut short", Duration::from_secs(5), async {
        std::future::pending::<()>().await;
    });
    handle.on_cleanup("slow", Duration::from_secs(5), async {
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    handle.shutdown();
    let started = Instant::now();
    let report = lifecycle.run().await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "the cleanup budget bounds all hooks"
    );
    let outcomes: Vec<_> = report.hooks().iter().map(|h| h.outcome().clone()).collect();
    assert_eq!(
        outcomes,
        [
            HookOutcome::Completed,
            HookOutcome::TimedOut,
            HookOutcome::Skipped
        ]
    );
    assert_eq!(
        report.hooks()[1].duration(),
        Duration::from_secs(1),
        "only what was left"
    );
}

#[tokio::test(start_paused = true)]
async fn hooks_run_after_the_last_connection_closed() {
    let lifecycle = Lifecycle::new(config(0, 20, 3));
    let handle = lifecycle.handle();
    let connection = handle.track_connection();
    let observer = handle.clone();
    let (tx, rx) = oneshot::channel();
    handle.on_cleanup("pool", Duration::from_secs(1), async move {
        let _ = tx.send(observer.open_connections());
    });
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.draining().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(connection);
    assert_eq!(rx.await.unwrap(), 0);
    assert!(sequence.await.unwrap().is_graceful());
}

#[tokio::test(start_paused = true)]
async fn background_tasks_are_cancelled_at_the_drain_and_waited_for() {
    let lifecycle = Lifecycle::new(config(2, 20, 3));
    let handle = lifecycle.handle();
    let (saw_cancel_tx, saw_cancel) = oneshot::channel();
    let worker = handle.spawn(|token| async move {
        token.cancelled().await;
        let _ = saw_cancel_tx.send(Instant::now());
        // Finishing the current job takes a while.
        tokio::time::sleep(Duration::from_secs(4)).await;
    });
    assert_eq!(handle.running_tasks(), 1);
    let sequence = tokio::spawn(lifecycle.run());
    let triggered = Instant::now();
    handle.shutdown();
    let cancelled_at = saw_cancel.await.unwrap();
    assert_eq!(
        cancelled_at - triggered,
        Duration::from_secs(2),
        "cancelled when draining starts"
    );
    let report = sequence.await.unwrap();
    assert_eq!(
        triggered.elapsed(),
        Duration::from_secs(6),
        "the drain waited for the task"
    );
    worker.await.unwrap();
    assert!(report.is_graceful());
    assert_eq!(report.tasks_unfinished(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_task_ignoring_cancellation_is_reported_unfinished() {
    let lifecycle = Lifecycle::new(config(0, 3, 1));
    let handle = lifecycle.handle();
    let _stubborn = handle.spawn(|_token| std::future::pending::<()>());
    handle.shutdown();
    let report = lifecycle.run().await;
    assert_eq!(report.forced(), Some(ForceReason::DrainTimeout));
    assert_eq!(report.tasks_unfinished(), 1);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_future_can_trigger_and_the_first_trigger_wins() {
    let (tx, rx) = oneshot::channel::<()>();
    let lifecycle = Lifecycle::new(config(0, 5, 1)).shutdown_on(async {
        let _ = rx.await;
    });
    let handle = lifecycle.handle();
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;
    tx.send(()).unwrap();
    handle.reached(Phase::Unready).await;
    assert!(!handle.trigger(Trigger::Sigterm), "already triggered");
    assert_eq!(sequence.await.unwrap().trigger(), Trigger::Future);
}

#[tokio::test(start_paused = true)]
async fn a_trigger_during_startup_goes_straight_to_unready() {
    let lifecycle = Lifecycle::new(config(0, 5, 1));
    let handle = lifecycle.handle();
    let warm_up = handle.startup_task("warm-up");
    let sequence = tokio::spawn(lifecycle.run());
    handle.trigger(Trigger::PreStop);
    let report = sequence.await.unwrap();
    assert_eq!(report.time_in(Phase::Serving), None, "never served");
    assert_eq!(report.trigger(), Trigger::PreStop);
    warm_up.complete();
    assert_eq!(handle.phase(), Phase::Stopped);
}

#[tokio::test(start_paused = true)]
async fn the_prestop_wait_is_taken_off_the_propagation_delay() {
    let config = Config::builder()
        .propagation_delay(Duration::from_secs(5))
        .prestop_delay(Duration::from_secs(3))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    lifecycle.handle().shutdown();
    let report = lifecycle.run().await;
    assert_eq!(report.time_in(Phase::Unready), Some(Duration::from_secs(2)));
}

/// What a server's accept loop does: a tracked task that, once draining starts, takes one
/// more turn (serving its queue) and ends. The yield lets the runtime's timers run first, as
/// they may on a busy runtime.
fn accept_loop_like(handle: &zdd_core::LifecycleHandle) {
    let draining = handle.draining();
    drop(handle.spawn(|_token| async move {
        draining.await;
        tokio::task::yield_now().await;
    }));
}

#[test]
fn a_zero_drain_timeout_with_nothing_in_flight_is_graceful_every_time() {
    let zero = || {
        Config::builder()
            .propagation_delay(Duration::ZERO)
            .drain_timeout(Duration::ZERO)
            .build()
            .unwrap()
    };
    // Both runtime flavours, many rounds: the deadline and the end of the drain are ready
    // at the same moment, so any coin toss between them shows within a few rounds.
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        for round in 0..200 {
            let report = runtime.block_on(async {
                let lifecycle = Lifecycle::new(zero());
                let handle = lifecycle.handle();
                if round % 2 == 1 {
                    accept_loop_like(&handle);
                }
                handle.shutdown();
                lifecycle.run().await
            });
            assert!(
                report.is_graceful(),
                "round {round} (multi-thread: {multi_thread}): {report}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn at_the_deadline_tasks_alone_get_the_force_wait_before_forcing() {
    let lifecycle = Lifecycle::new(config(0, 3, 1));
    let handle = lifecycle.handle();
    // Ends half a second after the drain deadline, inside the force wait.
    let _late = handle.spawn(|token| async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(3_500)).await;
    });
    let sequence = tokio::spawn(lifecycle.run());
    let triggered = Instant::now();
    handle.shutdown();
    let report = sequence.await.unwrap();
    assert_eq!(triggered.elapsed(), Duration::from_millis(3_500));
    assert!(report.is_graceful(), "{report}");
    assert_eq!(report.time_in(Phase::Forcing), None);
}

#[tokio::test(start_paused = true)]
async fn the_largest_durations_the_configuration_accepts_run_without_overflow() {
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let config = Config::builder()
        .propagation_delay(century)
        .drain_timeout(century)
        .cleanup_timeout(century)
        .grace_period(Duration::MAX)
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    let request = handle.track_request();
    let sequence = tokio::spawn(lifecycle.run());
    handle.shutdown();
    handle.force();
    handle.reached(Phase::Forcing).await;
    drop(request);
    let report = sequence.await.unwrap();
    assert_eq!(report.forced(), Some(ForceReason::Requested));
    assert_eq!(report.left_open(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_abandons_the_lifecycle_to_forcing_without_cleanup() {
    let lifecycle = Lifecycle::new(config(5, 20, 3));
    let handle = lifecycle.handle();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let hook_ran = Arc::clone(&cleaned);
    handle.on_cleanup("pool", Duration::from_secs(1), async move {
        hook_ran.fetch_add(1, Ordering::SeqCst);
    });
    let connection = handle.track_connection();
    let mut io_fails = std::pin::pin!(connection.io_fails());
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    sequence.abort();
    assert!(sequence.await.unwrap_err().is_cancelled());
    assert_eq!(handle.phase(), Phase::Forcing, "abandoned: forcing at once");
    (&mut io_fails).await;
    assert!(connection.must_fail_io());
    assert_eq!(cleaned.load(Ordering::SeqCst), 0, "no cleanup hook runs");
}
