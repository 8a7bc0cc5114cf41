//! The shutdown sequence: the one place where phases advance after the trigger. It reads top
//! to bottom as the phases, and calls the owners: the machine (phases), the work (what the
//! drain waits for), the hooks and the report.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::{
    Phase, Trigger,
    guard::ABORTS_LOGGED,
    hooks,
    report::{ForceReason, ShutdownReport},
    shared::Shared,
};

type TriggerFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

pub(crate) async fn run(shared: &Arc<Shared>, mut triggers: Vec<TriggerFuture>) -> ShutdownReport {
    let (machine, work, config) = (shared.machine(), shared.work(), shared.config());

    // Starting → Serving, then wait for a trigger, which turns Unready.
    wait_for_trigger(shared, &mut triggers).await;
    drop(triggers);

    // Unready: keep serving while load balancers notice the failing readiness probe.
    let trigger = machine.recorded_trigger().unwrap_or(Trigger::Programmatic);
    let propagation = config.propagation_delay_after(trigger);
    let mut force = match machine.is_force_requested() {
        true => Some(ForceReason::Requested),
        // No delay: draining starts now, not at the timer's next tick (up to a millisecond
        // later: tokio's timers round deadlines up to whole milliseconds).
        false if propagation.is_zero() => None,
        false => tokio::select! {
            () = sleep(propagation) => None,
            () = machine.force_requested() => Some(ForceReason::Requested),
        },
    };

    // Draining: stop accepting, finish what is in flight, tell long-lived work to end.
    shared.advance(Phase::Draining);
    work.close();
    if force.is_none() {
        // Idle HTTP/1 connections are told to close once the runtime has read the sockets'
        // events (`Machine::idle_close`): when the servers that see them say so
        // (`EventTurn`), or with none, at the timer's next turn, which comes after a read of
        // the events; the phase after the drain tells them, if that comes first. tokio
        // rounds a deadline up to the next whole millisecond after the last one its timer
        // turned past, so this one fires at a later turn, about a millisecond from now (a
        // deadline of now would fire at once when now falls on a whole millisecond the timer
        // has turned past).
        let mut idle_close = pin!(sleep_until(Instant::now() + Duration::from_nanos(1)));
        let mut idle_closed = !machine.idle_close_by_timer();
        let mut deadline = pin!(sleep(config.drain_timeout()));
        // Biased: a drain that is over when the deadline comes is over, not forced (with a
        // zero timeout both are ready at once).
        force = loop {
            tokio::select! {
                biased;
                () = work.drained() => break None,
                () = machine.force_requested() => break Some(ForceReason::Requested),
                () = &mut deadline => break Some(ForceReason::DrainTimeout),
                () = &mut idle_close, if !idle_closed => {
                    idle_closed = true;
                    machine.reach_idle_close();
                }
            }
        };
    }

    // Forcing: servers close whatever is left; give them a bounded moment to do it.
    if let Some(reason) = force {
        let deadline = Instant::now() + config.force_wait();
        // At the drain deadline with no request and no connection open, forcing would close
        // nothing: what is left are tasks, such as an accept loop that has been told to stop
        // and has not yet run (a zero drain timeout reaches its deadline before any other
        // task is polled). They get the force wait to end on their own, and only if they do
        // not is the drain forced.
        let settled = reason == ForceReason::DrainTimeout
            && work.left_open() == 0
            && timeout_at(deadline, work.drained()).await.is_ok();
        if settled {
            force = None;
        } else {
            warn!(
                reason = ?reason,
                in_flight_requests = work.in_flight_requests(),
                open_connections = work.connections().len(),
                running_tasks = work.tasks().len(),
                "drain did not finish; forcing"
            );
            shared.advance(Phase::Forcing);
            let _ = timeout_at(deadline, work.drained()).await;
            let aborted = work.stats().tally().requests_aborted;
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
    let left_open = work.left_open();
    let tasks_unfinished = work.tasks().len();
    if left_open > 0 || tasks_unfinished > 0 {
        error!(
            left_open,
            tasks_unfinished, "work still running at cleanup; it ends with the process"
        );
    }
    shared.advance(Phase::CleaningUp);
    let hooks = hooks::run(shared.take_hooks(), config.cleanup_timeout()).await;

    // Stopped: the report.
    shared.advance(Phase::Stopped);
    let tally = work.stats().tally();
    let report = ShutdownReport {
        trigger,
        phases: phase_durations(machine.entered_at()),
        forced: force,
        requests_completed: tally.requests_completed,
        requests_aborted: tally.requests_aborted,
        requests_rejected: tally.requests_rejected,
        connections_graceful: tally.connections_graceful,
        connections_forced: tally.connections_forced,
        left_open,
        tasks_unfinished,
        hooks,
        upgrades_failed: shared.upgrades().failed(),
        listeners: work.stats().listener_tallies(),
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
    let mut shutdown = shared.machine().reached(Phase::Unready);
    let mut startup = pin!(shared.health().startup().all_done());
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
