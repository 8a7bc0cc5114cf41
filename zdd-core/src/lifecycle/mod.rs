//! The lifecycle controller and its cloneable handle: the public face that wires the owners
//! (phase machine, work tracking, health, hooks) together.
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

mod handle;
mod requests;
mod turn;

use std::{future::Future, pin::Pin, sync::Arc};

pub use self::{
    handle::{LifecycleHandle, ListenerTag, WeakLifecycleHandle},
    requests::UpgradeRequests,
    turn::EventTurn,
};
use crate::{Config, report::ShutdownReport, shared::Shared};

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
    /// A lifecycle in [`Phase::Starting`](crate::Phase::Starting) with the given timings.
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
        self.shared.config()
    }

    /// Starts the shutdown sequence when `future` completes, with [`Trigger::Future`](crate::Trigger::Future).
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
        /// Listens for `SIGTERM` and `SIGINT` until [`Lifecycle::run`] returns, and for
        /// `SIGHUP`, which asks for an in-place upgrade
        /// ([`LifecycleHandle::upgrade`](crate::LifecycleHandle::upgrade); off with
        /// `ZDD_UPGRADE_ON_SIGHUP=false`).
        ///
        /// The first signal starts the sequence; a second `SIGINT` skips to
        /// [`Phase::Forcing`](crate::Phase::Forcing); a second `SIGTERM` is logged and ignored unless
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
                self.signals = Some(crate::signal::SignalListener::start(&self.shared)?);
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
            .field("phase", &shared.machine().phase())
            .field("triggers", &triggers.len());
        #[cfg(all(feature = "signal", unix))]
        debug.field("signals", &signals.is_some());
        debug.finish()
    }
}

impl Lifecycle {
    /// Runs the shutdown sequence to the end and returns its report.
    ///
    /// 1. Moves to [`Phase::Serving`](crate::Phase::Serving) once every startup task is done.
    /// 2. Waits for a trigger (a signal, [`LifecycleHandle::shutdown`], or a future given to
    ///    [`Lifecycle::shutdown_on`]); the trigger itself moves to [`Phase::Unready`](crate::Phase::Unready).
    /// 3. Waits the propagation delay, then moves to [`Phase::Draining`](crate::Phase::Draining) and cancels the
    ///    background tasks' token.
    /// 4. Ends the drain as soon as no request, connection or tracked task is left; at the
    ///    drain deadline (or on a forcing request) moves to [`Phase::Forcing`](crate::Phase::Forcing) and waits up to
    ///    the force wait ([`Config::force_wait`], 1 s by default) for servers to close what
    ///    is left. At the deadline with no request and no connection open, tracked tasks
    ///    alone get that wait to end before the drain counts as forced.
    /// 5. Moves to [`Phase::CleaningUp`](crate::Phase::CleaningUp) and runs the cleanup hooks, newest first.
    /// 6. Moves to [`Phase::Stopped`](crate::Phase::Stopped) and returns the report.
    ///
    /// Server adapters run this beside their accept loop; use it directly when serving with
    /// something else.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it returns abandons the lifecycle: it moves straight to
    /// [`Phase::Forcing`](crate::Phase::Forcing) and stays there. Servers driven by it stop accepting (after taking
    /// what is already queued) and close every connection, as forcing does; no cleanup hook
    /// runs and no report is made. A warning is logged.
    pub async fn run(self) -> ShutdownReport {
        let Self {
            shared,
            triggers,
            #[cfg(all(feature = "signal", unix))]
            signals,
        } = self;
        let mut running = Running {
            shared: Arc::clone(&shared),
            #[cfg(feature = "metrics")]
            sampler: tokio::spawn(sample(Arc::clone(&shared))),
            notifier: tokio::spawn(crate::notify::run(
                shared.machine().reached(crate::Phase::Serving),
                shared.machine().reached(crate::Phase::Unready),
                shared.config().grace_period(),
            )),
            finished: false,
        };
        let report = crate::sequence::run(&shared, triggers).await;
        running.finished = true;
        drop(running);
        #[cfg(all(feature = "signal", unix))]
        drop(signals);
        report
    }
}

/// What [`Lifecycle::run`] started, ended when its future ends, whether by returning or by
/// being dropped.
struct Running {
    shared: Arc<Shared>,
    #[cfg(feature = "metrics")]
    sampler: tokio::task::JoinHandle<()>,
    /// Tells systemd and an upgrading parent about the phases.
    notifier: tokio::task::JoinHandle<()>,
    /// The sequence returned its report.
    finished: bool,
}

impl Drop for Running {
    /// Stops the metrics sampler and the notifier; abandons the lifecycle if the sequence
    /// did not finish.
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.sampler.abort();
        self.notifier.abort();
        if !self.finished {
            self.shared.abandon();
        }
    }
}

/// Samples the gauges of current work until aborted.
#[cfg(feature = "metrics")]
async fn sample(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(crate::metrics::SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        crate::metrics::sample(shared.work());
    }
}
