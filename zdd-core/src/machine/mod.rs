//! The phase machine: the current phase, the only place it changes, and the milestones that
//! wake each waiter once, for its own phase.
//!
//! Everything else reads the phase: guards and connections with one atomic load
//! ([`Machine::phase`]), waiters through a [`PhaseReached`] that waits on its phase's
//! milestone. Only [`Machine::advance`] writes it, and it reports what changed as a
//! [`Transition`] for the caller to log and count; the machine itself observes nothing.

mod reached;

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use crossbeam_utils::CachePadded;
use tokio::time::Instant;

use crate::loom::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use self::reached::Milestone;
pub use self::reached::PhaseReached;
use crate::{Phase, Trigger};

/// One phase change, as [`Machine::advance`] made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) from: Phase,
    pub(crate) to: Phase,
    /// How long the lifecycle was in `from`.
    pub(crate) in_previous: Option<Duration>,
}

/// The servers' event turns at the drain ([`Machine::expect_event_turn`]).
#[derive(Debug, Default)]
struct EventTurns {
    /// Turns expected and not made yet.
    pending: usize,
    /// Whether the drain began: from then on, the last turn tells idle connections to close.
    draining: bool,
}

/// The phase and everything that waits on it.
///
/// # Invariants
///
/// Phases only move forward. `phase_now` is written inside the watch channel's write lock,
/// before the channel's and the milestones' waiters are woken, so a waiter that wakes reads
/// a phase at least as late as the one it waited for. Dropping the machine reaches every
/// milestone: no phase will come, and no [`PhaseReached`] waits forever.
pub(crate) struct Machine {
    /// The phase, for watchers. Every waiter holds its own receiver, and tokio shards a watch
    /// channel's waiters, so waking thousands of connections does not contend on one lock.
    phase_tx: watch::Sender<Phase>,
    /// A copy of the phase for the request path, where a plain atomic load is all we can
    /// afford. On a cache line of its own: every connection reads it at every read and
    /// write, and it must not share a line with the counts every request writes.
    phase_now: CachePadded<AtomicU8>,
    /// One flag per phase, set once when it is reached. A task waiting for one phase
    /// ([`PhaseReached`]) waits on its flag only, so it is woken once, for that phase,
    /// instead of at every transition (ten thousand idle connections waiting for the drain
    /// are not woken when the service turns unready).
    reached: [Arc<Milestone>; 7],
    /// Reached once the runtime has read the sockets' events after [`Phase::Draining`]
    /// began (or with any later phase): when idle HTTP/1 connections close
    /// ([`Machine::idle_close`]).
    idle_close: Arc<Milestone>,
    /// The servers' event turns still to come, and whether the drain began
    /// ([`Machine::expect_event_turn`]).
    event_turns: Mutex<EventTurns>,
    /// The same flags as watch channels, for [`Machine::milestone`]'s receivers.
    milestones: [watch::Sender<bool>; 7],
    /// When each phase was entered; only touched on transitions.
    entered: Mutex<[Option<Instant>; 7]>,
    trigger: OnceLock<Trigger>,
    /// Cancelled when forcing is requested (second signal or a programmatic force).
    force: CancellationToken,
}

impl Machine {
    pub(crate) fn new() -> Self {
        let mut entered = [None; 7];
        entered[Phase::Starting.index()] = Some(Instant::now());
        Self {
            phase_tx: watch::Sender::new(Phase::Starting),
            phase_now: CachePadded::new(AtomicU8::new(Phase::Starting as u8)),
            reached: std::array::from_fn(|i| Milestone::new(i == 0)),
            idle_close: Milestone::new(false),
            event_turns: Mutex::new(EventTurns::default()),
            milestones: std::array::from_fn(|i| watch::Sender::new(i == 0)),
            entered: Mutex::new(entered),
            trigger: OnceLock::new(),
            force: CancellationToken::new(),
        }
    }

    /// The current phase, from the request-path atomic.
    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        // Acquire pairs with the Release store in `advance`, so a reader that sees a phase
        // also sees everything the sequence did before entering it.
        Phase::from_u8(self.phase_now.load(Ordering::Acquire))
    }

    /// A receiver that sees every phase change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase_tx.subscribe()
    }

    /// A receiver whose value turns `true` once `phase` is reached, and changes only then.
    pub(crate) fn milestone(&self, phase: Phase) -> watch::Receiver<bool> {
        self.milestones[phase.index()].subscribe()
    }

    /// Completes once `phase` (or a later one) is reached.
    pub(crate) fn reached(&self, phase: Phase) -> PhaseReached {
        PhaseReached::new(Arc::clone(&self.reached[phase.index()]), phase)
    }

    /// Completes when idle HTTP/1 connections are to close: once the runtime has read the
    /// sockets' events after [`Phase::Draining`] began, or once a later phase is reached.
    ///
    /// Draining wakes a connection's task at once, possibly before the runtime has reported
    /// bytes that reached its socket just before: a request sent on an idle connection as
    /// the drain began. Woken after the runtime has read the sockets' events, a connection
    /// reads such a request before it decides it is idle. The servers that see their
    /// sockets tell when that is ([`Machine::event_turned`]); with none, the sequence takes
    /// the runtime's first timer turn after the drain began, which comes after a read of
    /// the events ([`Machine::idle_close_by_timer`]). Each connection is woken once.
    pub(crate) fn idle_close(&self) -> PhaseReached {
        PhaseReached::new(Arc::clone(&self.idle_close), Phase::Draining)
    }

    /// Tells idle HTTP/1 connections to close ([`Machine::idle_close`]).
    pub(crate) fn reach_idle_close(&self) {
        self.idle_close.reach();
    }

    /// A server will say when its runtime has read the sockets' events after the drain
    /// began ([`Machine::event_turned`]); until every server that said so has, idle
    /// connections stay open (or until a later phase).
    pub(crate) fn expect_event_turn(&self) {
        self.event_turns().pending += 1;
    }

    /// A server's runtime has read the sockets' events since the drain began, or the
    /// server is gone. The last one tells idle connections to close, once draining.
    pub(crate) fn event_turned(&self) {
        let mut turns = self.event_turns();
        turns.pending -= 1;
        if turns.pending == 0 && turns.draining {
            self.idle_close.reach();
        }
    }

    /// Whether no server's event turn is to come after the drain began, so that the
    /// sequence itself waits for the runtime to read the sockets' events (a timer's turn)
    /// before it tells idle connections to close. Otherwise the last server's turn tells
    /// them.
    pub(crate) fn idle_close_by_timer(&self) -> bool {
        self.event_turns().pending == 0
    }

    fn event_turns(&self) -> std::sync::MutexGuard<'_, EventTurns> {
        self.event_turns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves to `to` if it is later than the current phase; the transition made, if any.
    pub(crate) fn advance(&self, to: Phase) -> Option<Transition> {
        let mut from = to;
        let moved = self.phase_tx.send_if_modified(|current| {
            if to <= *current {
                return false;
            }
            from = *current;
            *current = to;
            self.phase_now.store(to as u8, Ordering::Release);
            true
        });
        if !moved {
            return None;
        }
        if from < Phase::Draining && to >= Phase::Draining {
            // Before the milestones wake the servers that turn at the drain.
            self.event_turns().draining = true;
        }
        for milestone in &self.reached[from.index() + 1..=to.index()] {
            milestone.reach();
        }
        for milestone in &self.milestones[from.index() + 1..=to.index()] {
            milestone.send_replace(true);
        }
        if to > Phase::Draining {
            self.idle_close.reach();
        }
        let now = Instant::now();
        let mut entered = self.entered.lock().unwrap_or_else(|e| e.into_inner());
        let in_previous = entered[from.index()].map(|at| now.saturating_duration_since(at));
        entered[to.index()] = Some(now);
        Some(Transition {
            from,
            to,
            in_previous,
        })
    }

    /// Records what triggered shutdown; the first trigger wins. Returns whether this one
    /// was the first.
    pub(crate) fn record_trigger(&self, trigger: Trigger) -> bool {
        self.trigger.set(trigger).is_ok()
    }

    pub(crate) fn recorded_trigger(&self) -> Option<Trigger> {
        self.trigger.get().copied()
    }

    /// Asks for forcing. Returns whether this was the first request.
    pub(crate) fn request_force(&self) -> bool {
        let first = !self.force.is_cancelled();
        self.force.cancel();
        first
    }

    pub(crate) fn is_force_requested(&self) -> bool {
        self.force.is_cancelled()
    }

    /// Completes once forcing is requested.
    pub(crate) fn force_requested(&self) -> WaitForCancellationFuture<'_> {
        self.force.cancelled()
    }

    /// When each phase was entered.
    pub(crate) fn entered_at(&self) -> [Option<Instant>; 7] {
        *self.entered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Machine {
    /// The lifecycle is gone: no phase will come, and every wait for one completes.
    fn drop(&mut self) {
        for milestone in &self.reached {
            milestone.reach();
        }
        self.idle_close.reach();
    }
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine")
            .field("phase", &self.phase())
            .field("trigger", &self.recorded_trigger())
            .finish_non_exhaustive()
    }
}
