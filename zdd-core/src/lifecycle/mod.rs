//! The lifecycle controller, its cloneable handle, and the shared state behind them.
//!
//! A [`Lifecycle`] is created once per process from a [`Config`]. Everything that needs to
//! know about shutdown gets a [`LifecycleHandle`] from it: servers track connections and
//! requests, handlers wait for the draining notice, startup tasks gate readiness, and
//! components register readiness checks and cleanup hooks. The controller itself is consumed
//! by [`Lifecycle::run`], which drives the shutdown sequence and returns the
//! [`ShutdownReport`].
//!
//! # Examples
//!
//! ```
//! use zdd_core::{Config, Lifecycle, Phase};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let lifecycle = Lifecycle::new(Config::default());
//! let handle = lifecycle.handle();
//!
//! // A request in flight when shutdown starts.
//! let request = handle.track_request();
//! let sequence = tokio::spawn(lifecycle.run());
//!
//! handle.reached(Phase::Serving).await;
//! handle.shutdown();
//! handle.draining().await;
//! request.finish();
//!
//! let report = sequence.await.unwrap();
//! assert!(report.is_graceful());
//! assert_eq!(report.exit_code(), 0);
//! assert_eq!(report.requests_completed(), 1);
//! # }
//! ```

mod future;
mod handle;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
};

use crossbeam_utils::CachePadded;
use tokio::{sync::watch, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::{
    future::PhaseReached,
    handle::{LifecycleHandle, WeakLifecycleHandle},
};
use crate::{
    Config, Phase, Trigger,
    health::Health,
    hooks::Hook,
    report::ShutdownReport,
    tracker::{Counter, Stats},
};

type TriggerFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The controller of a service's lifecycle; [`run`](Lifecycle::run) drives the shutdown
/// sequence.
///
/// `Lifecycle` is deliberately not `Clone`: there is exactly one sequence per service, and
/// consuming the controller in `run` makes a second one impossible. Hand out
/// [`LifecycleHandle`]s (which are cheap to clone) to everything else.
///
/// See the [module docs](crate::lifecycle) for an example.
pub struct Lifecycle {
    shared: Arc<Shared>,
    triggers: Vec<TriggerFuture>,
    #[cfg(all(feature = "signal", unix))]
    signals: Option<crate::signal::SignalListener>,
}

impl Lifecycle {
    /// A lifecycle in [`Phase::Starting`] with the given timings.
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            triggers: Vec::new(),
            #[cfg(all(feature = "signal", unix))]
            signals: None,
        }
    }

    /// A handle to this lifecycle, for servers, handlers and components.
    #[must_use]
    pub fn handle(&self) -> LifecycleHandle {
        LifecycleHandle::new(Arc::clone(&self.shared))
    }

    /// The timings in use.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Starts the shutdown sequence when `future` completes, with [`Trigger::Future`].
    ///
    /// Any number of futures can be added; the first to complete triggers. They are polled
    /// by [`Lifecycle::run`] and dropped once shutdown has started.
    ///
    /// # Examples
    ///
    /// ```
    /// use zdd_core::{Config, Lifecycle, Trigger};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    /// let lifecycle = Lifecycle::new(Config::default()).shutdown_on(async {
    ///     let _ = rx.await;
    /// });
    /// let sequence = tokio::spawn(lifecycle.run());
    /// tx.send(()).unwrap();
    /// assert_eq!(sequence.await.unwrap().trigger(), Trigger::Future);
    /// # }
    /// ```
    #[must_use]
    pub fn shutdown_on<F>(mut self, future: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.triggers.push(Box::pin(future));
        self
    }
}

cfg_signal! {
    impl Lifecycle {
        /// Listens for `SIGTERM` and `SIGINT` until [`Lifecycle::run`] returns.
        ///
        /// The first signal starts the sequence; a second `SIGINT` skips to
        /// [`Phase::Forcing`]; a second `SIGTERM` is logged and ignored unless
        /// [`SecondSigterm::Force`](crate::SecondSigterm::Force) is configured. On every
        /// repeated signal the runtime is asked to run a new task within a second: while it
        /// does, repeated signals are logged and ignored (a burst of `SIGTERM`s does not end
        /// a healthy drain); once it does not, the runtime is wedged and the next signal ends
        /// the process from the signal handler itself (exit code 128 + the signal number).
        ///
        /// Signals are received on a dedicated thread, so they are seen even if every
        /// runtime worker is blocked. Call this inside the Tokio runtime that serves: that
        /// is the runtime asked. Called outside one, there is no runtime to ask, and the
        /// third signal ends the process.
        ///
        /// # Errors
        ///
        /// When the signal handlers cannot be registered.
        pub fn listen_for_signals(&mut self) -> std::io::Result<()> {
            if self.signals.is_none() {
                self.signals = Some(crate::signal::SignalListener::start(&self.handle())?);
            }
            Ok(())
        }
    }
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            shared,
            triggers,
            #[cfg(all(feature = "signal", unix))]
            signals,
        } = self;
        let mut debug = f.debug_struct("Lifecycle");
        debug
            .field("phase", &shared.phase())
            .field("triggers", &triggers.len());
        #[cfg(all(feature = "signal", unix))]
        debug.field("signals", &signals.is_some());
        debug.finish()
    }
}

/// State shared by the controller, its handles and every guard.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The phase, for watchers. Every waiter holds its own receiver, and tokio shards a watch
    /// channel's waiters, so waking thousands of connections does not contend on one lock.
    phase_tx: watch::Sender<Phase>,
    /// A copy of the phase for the request path, where a plain atomic load is all we can
    /// afford. Written (inside the watch's write lock) before watchers are woken. On a
    /// cache line of its own: every connection reads it at every read and write, and it
    /// must not share a line with the counts every request writes.
    phase_now: CachePadded<AtomicU8>,
    /// One flag per phase, set once when it is reached. A task waiting for one phase
    /// subscribes to its flag only, so it is woken once, for that phase, instead of at every
    /// transition (ten thousand idle connections waiting for the drain are not woken when
    /// the service turns unready).
    milestones: [watch::Sender<bool>; 7],
    /// When each phase was entered; only touched on transitions.
    entered: Mutex<[Option<Instant>; 7]>,
    trigger: OnceLock<Trigger>,
    /// Cancelled when forcing is requested (second signal or [`LifecycleHandle::force`]).
    pub(crate) force: CancellationToken,
    /// Handed to background tasks; cancelled when draining starts.
    pub(crate) cancel: CancellationToken,
    /// Each count on its own cache line, away from the phase and from the reference count
    /// of the `Arc` that holds this (with a 128-byte aligned field, the data starts on a
    /// line after the `Arc`'s counts).
    pub(crate) requests: CachePadded<Counter>,
    pub(crate) connections: CachePadded<Counter>,
    pub(crate) tasks: TaskTracker,
    pub(crate) stats: Stats,
    pub(crate) health: Health,
    pub(crate) hooks: Mutex<Vec<Hook>>,
    pub(crate) not_ready: AtomicBool,
    /// Set once the missing-propagation-delay warning was logged.
    pub(crate) warned_no_delay: AtomicBool,
}

impl Shared {
    fn new(config: Config) -> Self {
        let mut entered = [None; 7];
        entered[Phase::Starting.index()] = Some(Instant::now());
        Self {
            config,
            phase_tx: watch::Sender::new(Phase::Starting),
            phase_now: CachePadded::new(AtomicU8::new(Phase::Starting as u8)),
            milestones: std::array::from_fn(|i| watch::Sender::new(i == 0)),
            entered: Mutex::new(entered),
            trigger: OnceLock::new(),
            force: CancellationToken::new(),
            cancel: CancellationToken::new(),
            requests: CachePadded::default(),
            connections: CachePadded::default(),
            tasks: TaskTracker::new(),
            stats: Stats::default(),
            health: Health::default(),
            hooks: Mutex::new(Vec::new()),
            not_ready: AtomicBool::new(false),
            warned_no_delay: AtomicBool::new(false),
        }
    }

    /// The current phase, from the request-path atomic.
    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        // Acquire pairs with the Release store in `advance`, so a reader that sees a phase
        // also sees everything the sequence did before entering it.
        Phase::from_u8(self.phase_now.load(Ordering::Acquire))
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase_tx.subscribe()
    }

    /// A receiver whose value turns `true` once `phase` is reached, and changes only then.
    pub(crate) fn milestone(&self, phase: Phase) -> watch::Receiver<bool> {
        self.milestones[phase.index()].subscribe()
    }

    /// Moves to `to` if it is later than the current phase. Returns whether it moved.
    pub(crate) fn advance(&self, to: Phase) -> bool {
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
        if moved {
            for milestone in &self.milestones[from.index() + 1..=to.index()] {
                milestone.send_replace(true);
            }
            let now = Instant::now();
            let mut entered = self.entered.lock().unwrap_or_else(|e| e.into_inner());
            let previous = entered[from.index()].map(|at| now.saturating_duration_since(at));
            entered[to.index()] = Some(now);
            drop(entered);
            crate::metrics::transition(from, to, previous);
            crate::metrics::sample(self);
            let in_previous_ms = previous.map_or(0, |d| d.as_millis());
            info!(
                phase = to.as_str(),
                from = from.as_str(),
                in_previous_ms = in_previous_ms as u64,
                in_flight_requests = self.requests.len(),
                open_connections = self.connections.len(),
                "phase changed"
            );
        }
        moved
    }

    /// Records the trigger (the first one wins) and turns unready.
    pub(crate) fn trigger(&self, trigger: Trigger) -> bool {
        let first = self.trigger.set(trigger).is_ok();
        if first {
            info!(
                trigger = trigger.as_str(),
                phase = self.phase().as_str(),
                "shutdown triggered"
            );
        } else {
            debug!(trigger = trigger.as_str(), "shutdown already triggered");
        }
        self.advance(Phase::Unready);
        first
    }

    pub(crate) fn force(&self, trigger: Trigger) {
        self.trigger(trigger);
        if !self.force.is_cancelled() {
            warn!(trigger = trigger.as_str(), "forcing requested");
            self.force.cancel();
        }
    }

    pub(crate) fn recorded_trigger(&self) -> Option<Trigger> {
        self.trigger.get().copied()
    }

    pub(crate) fn entered_at(&self) -> [Option<Instant>; 7] {
        *self.entered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lifecycle {
    /// Runs the shutdown sequence to the end and returns its report.
    ///
    /// 1. Moves to [`Phase::Serving`] once every startup task is done.
    /// 2. Waits for a trigger (a signal, [`LifecycleHandle::shutdown`], or a future given to
    ///    [`Lifecycle::shutdown_on`]); the trigger itself moves to [`Phase::Unready`].
    /// 3. Waits the propagation delay, then moves to [`Phase::Draining`] and cancels the
    ///    background tasks' token.
    /// 4. Ends the drain as soon as no request, connection or tracked task is left; at the
    ///    drain deadline (or on a forcing request) moves to [`Phase::Forcing`] and waits up to
    ///    one second for servers to close what is left.
    /// 5. Moves to [`Phase::CleaningUp`] and runs the cleanup hooks, newest first.
    /// 6. Moves to [`Phase::Stopped`] and returns the report.
    ///
    /// Server adapters run this beside their accept loop; use it directly when serving with
    /// something else.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the sequence where it is; the phase stays as it was.
    pub async fn run(self) -> ShutdownReport {
        let Self {
            shared,
            triggers,
            #[cfg(all(feature = "signal", unix))]
            signals,
        } = self;
        #[cfg(feature = "metrics")]
        let sampler = tokio::spawn(crate::metrics::sampler(Arc::clone(&shared)));
        let report = crate::sequence::run(&shared, triggers).await;
        #[cfg(feature = "metrics")]
        sampler.abort();
        #[cfg(all(feature = "signal", unix))]
        drop(signals);
        report
    }
}
