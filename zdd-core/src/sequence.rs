//! The shutdown sequence: the one place where phases advance after the trigger.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use tokio::time::{Instant, sleep, timeout_at};

use crate::{
    Phase, Trigger, hooks,
    lifecycle::{PhaseReached, Shared},
    report::{ForceReason, ShutdownReport},
    tracker::{ABORTS_LOGGED, Stats},
};

/// How long forcing waits for servers to close what is left. It comes out of the
/// configuration's margin.
const FORCE_WAIT: Duration = Duration::from_secs(1);

type TriggerFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) async fn run(shared: &Arc<Shared>, mut triggers: Vec<TriggerFuture>) -> ShutdownReport {
    wait_for_trigger(shared, &mut triggers).await;
    drop(triggers);

    // Unready: keep serving while load balancers notice the failing readiness probe.
    let delay = shared.config.propagation_delay();
    let mut force = match shared.force.is_cancelled() {
        true => Some(ForceReason::Requested),
        false => tokio::select! {
            () = sleep(delay) => None,
            () = shared.force.cancelled() => Some(ForceReason::Requested),
        },
    };

    // Draining: stop accepting, finish what is in flight, tell long-lived work to end.
    shared.advance(Phase::Draining);
    shared.cancel.cancel();
    shared.requests.close();
    shared.connections.close();
    shared.tasks.close();
    if force.is_none() {
        let drain_timeout = shared.config.drain_timeout();
        // Biased: a drain that is over when the deadline comes is over, not forced (with a
        // zero timeout both are ready at once).
        force = tokio::select! {
            biased;
            () = drained(shared) => None,
            () = shared.force.cancelled() => Some(ForceReason::Requested),
            () = sleep(drain_timeout) => Some(ForceReason::DrainTimeout),
        };
    }

    // Forcing: servers close whatever is left; give them a bounded moment to do it.
    if let Some(reason) = force {
        let deadline = Instant::now() + FORCE_WAIT;
        // At the drain deadline with no request and no connection open, forcing would close
        // nothing: what is left are tasks, such as an accept loop that has been told to stop
        // and has not yet run (a zero drain timeout reaches its deadline before any other
        // task is polled). They get the force wait to end on their own, and only if they do
        // not is the drain forced.
        let settled = reason == ForceReason::DrainTimeout
            && shared.connections.len() == 0
            && shared.requests.len() == 0
            && timeout_at(deadline, drained(shared)).await.is_ok();
        if settled {
            force = None;
        } else {
            warn!(
                reason = ?reason,
                in_flight_requests = shared.requests.len(),
                open_connections = shared.connections.len(),
                running_tasks = shared.tasks.len(),
                "drain did not finish; forcing"
            );
            shared.advance(Phase::Forcing);
            let _ = timeout_at(deadline, drained(shared)).await;
            let aborted = Stats::get(&shared.stats.requests_aborted);
            if aborted > ABORTS_LOGGED {
                warn!(
                    requests_aborted = aborted,
                    logged = ABORTS_LOGGED,
                    "requests aborted by forced shutdown, only the first logged one by one"
                );
            }
        }
    }

    // CleaningUp: nothing uses the resources any more, close them newest first.
    let left_open = shared.requests.len() + shared.connections.len();
    let tasks_unfinished = shared.tasks.len();
    if left_open > 0 || tasks_unfinished > 0 {
        error!(
            left_open,
            tasks_unfinished, "work still running at cleanup; it ends with the process"
        );
    }
    shared.advance(Phase::CleaningUp);
    let registered = std::mem::take(&mut *shared.hooks.lock().unwrap_or_else(|e| e.into_inner()));
    let hooks = hooks::run(registered, shared.config.cleanup_timeout()).await;

    shared.advance(Phase::Stopped);
    let stats = &shared.stats;
    let report = ShutdownReport {
        trigger: shared.recorded_trigger().unwrap_or(Trigger::Programmatic),
        phases: phase_durations(shared.entered_at()),
        forced: force,
        requests_completed: Stats::get(&stats.requests_completed),
        requests_aborted: Stats::get(&stats.requests_aborted),
        requests_rejected: Stats::get(&stats.requests_rejected),
        connections_graceful: Stats::get(&stats.connections_graceful),
        connections_forced: Stats::get(&stats.connections_forced),
        left_open,
        tasks_unfinished,
        hooks,
    };
    info!(
        graceful = report.is_graceful(),
        exit_code = report.exit_code(),
        shutdown_ms = report.shutdown_duration().as_millis() as u64,
        requests_completed = report.requests_completed,
        requests_aborted = report.requests_aborted,
        connections_graceful = report.connections_graceful,
        connections_forced = report.connections_forced,
        "shutdown complete"
    );
    report
}

/// Turns serving once startup is done, and returns once shutdown has been triggered.
async fn wait_for_trigger(shared: &Shared, triggers: &mut [TriggerFuture]) {
    let mut shutdown = PhaseReached::new(shared.milestone(Phase::Unready), Phase::Unready);
    let mut startup = pin!(shared.health.startup.all_done());
    let mut started = false;
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = &mut startup, if !started => {
                started = true;
                shared.advance(Phase::Serving);
            }
            () = first_of(triggers) => {
                shared.trigger(Trigger::Future);
            }
        }
    }
}

/// Completes when any of `triggers` does; never if there are none.
fn first_of(triggers: &mut [TriggerFuture]) -> impl Future<Output = ()> + '_ {
    poll_fn(move |cx| {
        for trigger in triggers.iter_mut() {
            if trigger.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
}

/// Completes once no request, connection or tracked task is left. The counters must be
/// closed; late arrivals (a request on a live connection) are waited for too.
async fn drained(shared: &Shared) {
    loop {
        shared.requests.wait().await;
        shared.connections.wait().await;
        shared.tasks.wait().await;
        if is_drained(shared) {
            return;
        }
    }
}

/// Whether nothing is left, read producers first. Tasks open connections (the accept loop
/// is a tracked task) and connections open requests, so each count is read only after
/// everything that could still add to it is gone: a task that counted a connection and then
/// ended is seen either as a running task or, through the task count's acquire/release
/// pair, with its connection counted. Read the other way round, the drain could read zero
/// connections, then see the accept loop end with a connection it had just counted.
fn is_drained(shared: &Shared) -> bool {
    shared.tasks.is_empty() && shared.connections.len() == 0 && shared.requests.len() == 0
}

/// Each entered phase lasted until the next entered one.
fn phase_durations(entered: [Option<Instant>; 7]) -> [Option<Duration>; 7] {
    let mut durations = [None; 7];
    for (i, start) in entered.iter().enumerate() {
        let Some(start) = start else { continue };
        let end = entered[i + 1..]
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or(*start);
        durations[i] = Some(end.saturating_duration_since(*start));
    }
    durations
}
