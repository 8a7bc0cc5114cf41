//! Every row of the phase table: each probe's status and body in each phase, reached by
//! running the real sequence on paused time.

use std::{
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Wake, Waker},
    time::Duration,
};

use tokio::sync::oneshot;
use tokio_test::{assert_pending, assert_ready, task};
use zdd_core::{Check, Config, HookOutcome, Lifecycle, LifecycleHandle, Phase, Probe, Protocol};

async fn answers(handle: &LifecycleHandle) -> [(u16, String); 3] {
    let mut out = Vec::new();
    for probe in [Probe::Readiness, Probe::Liveness, Probe::Startup] {
        let report = handle.probe(probe).await;
        out.push((report.http_status(), report.to_json()));
    }
    out.try_into().unwrap()
}

fn status(answers: &[(u16, String); 3]) -> [u16; 3] {
    [answers[0].0, answers[1].0, answers[2].0]
}

#[tokio::test(start_paused = true)]
async fn each_phase_answers_as_the_table_says() {
    let config = Config::builder()
        .propagation_delay(Duration::from_secs(5))
        .drain_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let lifecycle = Lifecycle::new(config);
    let handle = lifecycle.handle();
    handle.readiness_check(Check::new("db", || async {}));
    let warm_up = handle.startup_task("warm-up");
    let (release_hook, hook_gate) = oneshot::channel::<()>();
    handle.on_cleanup("pool", Duration::from_secs(2), async move {
        let _ = hook_gate.await;
    });

    // Starting: readiness 503, liveness 200, startup 503.
    let starting = answers(&handle).await;
    assert_eq!(status(&starting), [503, 200, 503]);
    assert_eq!(
        starting[0].1,
        r#"{"status":"fail","phase":"starting","output":"starting","checks":{}}"#
    );
    assert_eq!(
        starting[2].1,
        r#"{"status":"fail","phase":"starting","output":"starting","checks":{"warm-up":{"status":"fail","duration_ms":0,"output":"pending"}}}"#
    );

    let sequence = tokio::spawn(lifecycle.run());
    tokio::task::yield_now().await;
    assert_eq!(
        handle.phase(),
        Phase::Starting,
        "startup task still pending"
    );

    // Serving: everything 200, readiness reflects the checks.
    warm_up.complete();
    handle.reached(Phase::Serving).await;
    let serving = answers(&handle).await;
    assert_eq!(status(&serving), [200, 200, 200]);
    assert_eq!(
        serving[0].1,
        r#"{"status":"pass","phase":"serving","checks":{"db":{"status":"pass","duration_ms":0}}}"#
    );
    assert_eq!(
        serving[1].1,
        r#"{"status":"pass","phase":"serving","checks":{}}"#
    );

    // Unready: readiness 503 at once, the others still 200.
    let request = handle.track_request();
    handle.shutdown();
    assert_eq!(handle.phase(), Phase::Unready);
    let unready = answers(&handle).await;
    assert_eq!(status(&unready), [503, 200, 200]);
    assert_eq!(
        unready[0].1,
        r#"{"status":"fail","phase":"unready","output":"shutting down","checks":{}}"#
    );

    // Draining (held open by the request).
    handle.reached(Phase::Draining).await;
    assert_eq!(status(&answers(&handle).await), [503, 200, 200]);

    // Forcing (the request outlives the drain timeout).
    handle.reached(Phase::Forcing).await;
    let forcing = answers(&handle).await;
    assert_eq!(status(&forcing), [503, 200, 200]);
    assert!(forcing[1].1.contains(r#""phase":"forcing""#));
    drop(request);

    // CleaningUp (held by the hook).
    handle.reached(Phase::CleaningUp).await;
    assert_eq!(status(&answers(&handle).await), [503, 200, 200]);
    release_hook.send(()).unwrap();

    let report = sequence.await.unwrap();
    assert_eq!(handle.phase(), Phase::Stopped);
    assert_eq!(status(&answers(&handle).await), [503, 200, 200]);
    assert_eq!(report.hooks()[0].outcome(), &HookOutcome::Completed);
    assert_eq!(report.requests_aborted(), 1);
    assert_eq!(report.exit_code(), 1);
}

#[tokio::test(start_paused = true)]
async fn marked_not_ready_fails_readiness_only_while_marked() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    tokio::spawn(lifecycle.run());
    handle.reached(Phase::Serving).await;

    handle.set_not_ready(true);
    assert!(handle.is_marked_not_ready());
    let report = handle.probe(Probe::Readiness).await;
    assert_eq!(report.http_status(), 503);
    assert_eq!(report.reason(), Some("marked not ready"));
    assert_eq!(handle.probe(Probe::Liveness).await.http_status(), 200);
    assert_eq!(
        handle.phase(),
        Phase::Serving,
        "the toggle does not start shutdown"
    );

    handle.set_not_ready(false);
    assert_eq!(handle.probe(Probe::Readiness).await.http_status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_failed_startup_task_keeps_the_service_starting() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let migrations = handle.startup_task("migrations");
    let sequence = tokio::spawn(lifecycle.run());
    drop(migrations); // panicked or returned early without completing

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(handle.phase(), Phase::Starting);
    let startup = handle.probe(Probe::Startup).await;
    assert_eq!(startup.http_status(), 503);
    assert_eq!(startup.checks()[0].output(), Some("failed"));

    // It can still be shut down.
    handle.shutdown();
    assert!(sequence.await.unwrap().is_graceful());
}

#[tokio::test(start_paused = true)]
async fn phases_only_move_forward() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let mut watch = handle.watch();
    let sequence = tokio::spawn(lifecycle.run());
    let mut seen = vec![*watch.borrow_and_update()];
    handle.reached(Phase::Serving).await;
    handle.shutdown();
    let _ = sequence.await.unwrap();
    while watch.has_changed().unwrap_or(false) {
        seen.push(*watch.borrow_and_update());
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), Phase::Stopped);
    // A late trigger changes nothing.
    assert!(!handle.shutdown());
    assert_eq!(handle.phase(), Phase::Stopped);
}

/// A waker that counts its wakes.
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Counting>, Waker) {
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    (Arc::clone(&counting), Waker::from(counting))
}

/// Polled again before its phase, the future answers from a lock-free check; it must still
/// be woken by the phase, with the waker of its latest poll, and then complete.
#[tokio::test]
async fn a_phase_future_polled_many_times_is_woken_once_its_phase_comes() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let mut reached = pin!(handle.reached(Phase::Unready));
    let (first, first_waker) = counting_waker();
    let (second, second_waker) = counting_waker();

    for _ in 0..3 {
        let pending = reached
            .as_mut()
            .poll(&mut Context::from_waker(&first_waker));
        assert!(pending.is_pending());
    }
    // A new waker (the task moved, or another task polls it) must replace the first.
    let pending = reached
        .as_mut()
        .poll(&mut Context::from_waker(&second_waker));
    assert!(pending.is_pending());
    assert_eq!(
        first.0.load(Ordering::SeqCst) + second.0.load(Ordering::SeqCst),
        0
    );

    assert!(handle.shutdown());
    assert_eq!(
        second.0.load(Ordering::SeqCst),
        1,
        "the latest waker is woken"
    );
    assert_eq!(
        first.0.load(Ordering::SeqCst),
        0,
        "the replaced waker is not"
    );
    let ready = reached
        .as_mut()
        .poll(&mut Context::from_waker(&second_waker));
    assert!(ready.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_connection_closes_gracefully_by_its_protocol_and_fails_io_at_forcing() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let h2 = handle.track_connection();
    h2.set_protocol(Protocol::Http2);
    let h1 = handle.track_connection();
    h1.set_protocol(Protocol::Http1);
    let unknown = handle.track_connection();
    assert_eq!(h2.protocol(), Some(Protocol::Http2));
    assert_eq!(unknown.protocol(), None);

    let mut h2_close = task::spawn(h2.graceful_close());
    let mut h1_close = task::spawn(h1.graceful_close());
    let mut unknown_close = task::spawn(unknown.graceful_close());
    let mut stop_accepting = task::spawn(handle.stop_accepting());
    let mut io_fails = task::spawn(h1.io_fails());
    let mut abandon = task::spawn(handle.abandon_backlog());
    for pending in [
        &mut h2_close,
        &mut h1_close,
        &mut unknown_close,
        &mut stop_accepting,
        &mut io_fails,
        &mut abandon,
    ] {
        assert_pending!(pending.poll());
    }

    // Unready: HTTP/2 gets its GOAWAY; HTTP/1 keeps its connection; the listener accepts.
    handle.shutdown();
    assert!(h2_close.is_woken());
    assert_ready!(h2_close.poll());
    assert_pending!(h1_close.poll());
    assert_pending!(unknown_close.poll());
    assert_pending!(stop_accepting.poll());

    // Draining: the listener stops; HTTP/1 and connections of unknown protocol close at the
    // timer's next turn, after the runtime has read the sockets' events (the clock is
    // paused: it moves only once every task waits).
    let sequence = tokio::spawn(lifecycle.run());
    handle.draining().await;
    assert_ready!(stop_accepting.poll());
    assert_pending!(h1_close.poll());
    assert_pending!(unknown_close.poll());
    h1.graceful_close().await;
    assert!(h1_close.is_woken() && unknown_close.is_woken());
    assert_ready!(h1_close.poll());
    assert_ready!(unknown_close.poll());
    assert!(!h1.must_fail_io());
    assert_pending!(io_fails.poll());
    assert_pending!(abandon.poll());

    // Forcing: I/O fails, the backlog is abandoned; a close asked for now answers at once.
    handle.force();
    handle.reached(Phase::Forcing).await;
    assert!(h1.must_fail_io() && h2.must_fail_io());
    assert_ready!(io_fails.poll());
    assert_ready!(abandon.poll());
    assert_ready!(task::spawn(h1.graceful_close()).poll());
    drop((h1, h2, unknown));
    sequence.await.unwrap();
}

/// An HTTP/1 connection is told to close gracefully at the timer's first turn after the
/// drain began; a later phase that comes first tells it too. Forcing asked for while
/// unready goes through Draining without waiting for a turn: the connection must not wait
/// for one.
#[tokio::test(start_paused = true)]
async fn an_http1_connection_is_told_to_close_when_forcing_skips_the_drain() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let h1 = handle.track_connection();
    h1.set_protocol(Protocol::Http1);
    let mut close = task::spawn(h1.graceful_close());
    assert_pending!(close.poll());
    handle.shutdown();
    handle.force();
    let sequence = tokio::spawn(lifecycle.run());
    handle.reached(Phase::Forcing).await;
    assert!(close.is_woken());
    assert_ready!(close.poll());
    drop(h1);
    let report = sequence.await.unwrap();
    assert_eq!(report.time_in(Phase::Draining), Some(Duration::ZERO));
}

/// A server that said it would tell when its runtime has read the sockets' events after the
/// drain began (`EventTurn`) decides when idle HTTP/1 connections close: not the timer's
/// turn, however long it takes, and only once every server that said so has told; forcing
/// tells them whatever is outstanding.
#[tokio::test(start_paused = true)]
async fn idle_connections_close_at_the_servers_event_turns_not_the_timers() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let h1 = handle.track_connection();
    h1.set_protocol(Protocol::Http1);
    let (first, second) = (handle.event_turn(), handle.event_turn());
    let mut close = task::spawn(h1.graceful_close());
    handle.shutdown();
    let sequence = tokio::spawn(lifecycle.run());
    handle.draining().await;
    // Well past the timer's turn: the sequence has run its select with the clock moved.
    tokio::time::advance(Duration::from_millis(50)).await;
    tokio::task::yield_now().await;
    assert_pending!(
        close.poll(),
        "the timer's turn does not close while a server turns"
    );
    first.turned();
    assert_pending!(close.poll(), "one server's turn is not every server's");
    second.turned();
    assert!(close.is_woken());
    assert_ready!(close.poll());
    drop(h1);
    assert!(sequence.await.unwrap().is_graceful());

    // Outstanding at forcing: the connection is told to close at forcing.
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let h1 = handle.track_connection();
    h1.set_protocol(Protocol::Http1);
    let outstanding = handle.event_turn();
    let mut close = task::spawn(h1.graceful_close());
    handle.shutdown();
    let forced = tokio::spawn(lifecycle.run());
    handle.draining().await;
    tokio::time::advance(Duration::from_millis(50)).await;
    tokio::task::yield_now().await;
    assert_pending!(close.poll());
    handle.force();
    handle.reached(Phase::Forcing).await;
    assert_ready!(close.poll());
    drop((h1, outstanding));
    assert!(forced.await.unwrap().forced().is_some());
}

/// A server's word dropped before the drain began is as if never given: the timer's turn
/// closes idle connections.
#[tokio::test(start_paused = true)]
async fn a_servers_event_turn_dropped_before_the_drain_leaves_it_to_the_timer() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let h1 = handle.track_connection();
    h1.set_protocol(Protocol::Http1);
    drop(handle.event_turn());
    let mut close = task::spawn(h1.graceful_close());
    handle.shutdown();
    let sequence = tokio::spawn(lifecycle.run());
    handle.draining().await;
    assert_pending!(close.poll(), "not at once: at the timer's turn");
    h1.graceful_close().await;
    assert_ready!(close.poll());
    drop(h1);
    assert!(sequence.await.unwrap().is_graceful());
}

/// A phase future first polled when its task has used up tokio's cooperative budget gets a
/// yield, not a wait: the channel returns `Pending` without registering. Polled again with
/// a fresh budget, it must register and be woken when its phase comes; before, it answered
/// `Pending` from its lock-free check, never registered, and a connection waiting for the
/// drain stayed open until forcing.
#[tokio::test]
async fn a_phase_future_first_polled_out_of_budget_is_still_woken_by_its_phase() {
    let lifecycle = Lifecycle::new(Config::default());
    let handle = lifecycle.handle();
    let mut reached = pin!(handle.reached(Phase::Unready));
    let (counting, waker) = counting_waker();

    while tokio::task::coop::has_budget_remaining() {
        tokio::task::coop::consume_budget().await;
    }
    let pending = reached.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(pending.is_pending());
    tokio::task::yield_now().await; // a new poll of this task: a fresh budget
    assert!(tokio::task::coop::has_budget_remaining());
    let pending = reached.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(pending.is_pending());
    let woken_before = counting.0.load(Ordering::SeqCst);

    assert!(handle.shutdown());
    assert!(
        counting.0.load(Ordering::SeqCst) > woken_before,
        "the phase woke the future's waker"
    );
    let ready = reached.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(ready.is_ready());
}

/// A phase future outlives its lifecycle: when the last handle goes, no phase will come, and
/// a future waiting for one is woken and completes (a task awaiting the drain of a lifecycle
/// that was dropped does not hang). A future made after that completes at once.
#[test]
fn a_phase_future_completes_when_its_lifecycle_is_dropped() {
    let lifecycle = Lifecycle::new(Config::default());
    let mut draining = Box::pin(lifecycle.handle().reached(Phase::Draining));
    let (counting, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(draining.as_mut().poll(&mut cx).is_pending());
    let handle = lifecycle.handle();
    let late = handle.reached(Phase::Forcing);
    drop(lifecycle);
    assert!(
        draining.as_mut().poll(&mut cx).is_pending(),
        "a handle is left"
    );
    drop(handle);
    assert_eq!(
        counting.0.load(Ordering::SeqCst),
        1,
        "woken once, by the drop"
    );
    assert!(draining.as_mut().poll(&mut cx).is_ready());
    assert!(pin!(late).poll(&mut cx).is_ready());
}
