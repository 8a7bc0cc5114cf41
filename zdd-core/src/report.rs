//! The [`ShutdownReport`] returned at the end of the sequence.

use std::{fmt, time::Duration};

use crate::{HookOutcome, HookReport, Phase, Trigger};

/// Why the sequence went through [`Phase::Forcing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForceReason {
    /// The drain timeout passed with work still in flight.
    DrainTimeout,
    /// Forcing was requested (a second `SIGINT`, or
    /// [`LifecycleHandle::force`](crate::LifecycleHandle::force)).
    Requested,
}

/// What happened during shutdown: returned by
/// [`Lifecycle::run`](crate::Lifecycle::run) and the serve calls of the adapters.
///
/// # Examples
///
/// ```
/// use zdd_core::{Config, Lifecycle, Phase, Trigger};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let lifecycle = Lifecycle::new(Config::default());
/// lifecycle.handle().trigger(Trigger::Sigterm);
/// let report = lifecycle.run().await;
/// assert_eq!(report.trigger(), Trigger::Sigterm);
/// assert!(report.is_graceful());
/// assert_eq!(report.exit_code(), 0);
/// assert_eq!(report.time_in(Phase::Forcing), None); // never entered
/// println!("{report}");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    pub(crate) trigger: Trigger,
    pub(crate) phases: [Option<Duration>; 7],
    pub(crate) forced: Option<ForceReason>,
    pub(crate) requests_completed: u64,
    pub(crate) requests_aborted: u64,
    pub(crate) requests_rejected: u64,
    pub(crate) connections_graceful: u64,
    pub(crate) connections_forced: u64,
    pub(crate) left_open: usize,
    pub(crate) tasks_unfinished: usize,
    pub(crate) hooks: Vec<HookReport>,
    pub(crate) upgrades_failed: u64,
    pub(crate) listeners: Vec<ListenerReport>,
}

/// One listener's connections, in the [`ShutdownReport`]: how many it accepted over the
/// lifecycle, and how many of them closed gracefully or forcibly after the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerReport {
    pub(crate) name: String,
    pub(crate) accepted: u64,
    pub(crate) connections_graceful: u64,
    pub(crate) connections_forced: u64,
}

impl ListenerReport {
    /// The listener's name (servers use its address).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connections it accepted, over the whole lifecycle.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Its connections closed after the trigger and before forcing.
    #[must_use]
    pub fn connections_graceful(&self) -> u64 {
        self.connections_graceful
    }

    /// Its connections closed by forcing.
    #[must_use]
    pub fn connections_forced(&self) -> u64 {
        self.connections_forced
    }
}

impl ShutdownReport {
    /// What started the sequence.
    #[must_use]
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// Time spent in `phase`, or `None` if it was never entered. `Stopped` has no duration
    /// (`Some(0)`).
    #[must_use]
    pub fn time_in(&self, phase: Phase) -> Option<Duration> {
        self.phases[phase.index()]
    }

    /// Time from the trigger until stopped.
    #[must_use]
    pub fn shutdown_duration(&self) -> Duration {
        Phase::ALL[Phase::Unready.index()..]
            .iter()
            .filter_map(|p| self.time_in(*p))
            .sum()
    }

    /// Why forcing happened, if it did.
    #[must_use]
    pub fn forced(&self) -> Option<ForceReason> {
        self.forced
    }

    /// Requests that finished after the trigger.
    #[must_use]
    pub fn requests_completed(&self) -> u64 {
        self.requests_completed
    }

    /// Requests cut off by forcing.
    #[must_use]
    pub fn requests_aborted(&self) -> u64 {
        self.requests_aborted
    }

    /// Late requests answered 503 during the drain.
    #[must_use]
    pub fn requests_rejected(&self) -> u64 {
        self.requests_rejected
    }

    /// Connections closed after the trigger and before forcing.
    #[must_use]
    pub fn connections_graceful(&self) -> u64 {
        self.connections_graceful
    }

    /// Connections closed by forcing.
    #[must_use]
    pub fn connections_forced(&self) -> u64 {
        self.connections_forced
    }

    /// Requests and connections still open when cleanup started (a server that could not
    /// close them); they end with the process.
    #[must_use]
    pub fn left_open(&self) -> usize {
        self.left_open
    }

    /// Tracked background tasks still running when cleanup started.
    #[must_use]
    pub fn tasks_unfinished(&self) -> usize {
        self.tasks_unfinished
    }

    /// Each cleanup hook, in the order they ran.
    #[must_use]
    pub fn hooks(&self) -> &[HookReport] {
        &self.hooks
    }

    /// Each listener the server registered, in order, with its connections (see
    /// [`LifecycleHandle::register_listener`](crate::LifecycleHandle::register_listener)).
    #[must_use]
    pub fn listeners(&self) -> &[ListenerReport] {
        &self.listeners
    }

    /// In-place upgrades that did not take over (the new process exited or was not ready in
    /// time) during the lifecycle. They leave the service serving, so they do not make the
    /// shutdown less graceful.
    #[must_use]
    pub fn upgrades_failed(&self) -> u64 {
        self.upgrades_failed
    }

    /// Whether nothing was forced, left open or unfinished, and every hook completed.
    #[must_use]
    pub fn is_graceful(&self) -> bool {
        self.forced.is_none()
            && self.requests_aborted == 0
            && self.connections_forced == 0
            && self.left_open == 0
            && self.tasks_unfinished == 0
            && self
                .hooks
                .iter()
                .all(|hook| *hook.outcome() == HookOutcome::Completed)
    }

    /// The process exit code: 0 when graceful, 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.is_graceful() { 0 } else { 1 }
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_graceful() {
            "graceful"
        } else {
            "not graceful"
        };
        writeln!(
            f,
            "shutdown {verdict} (trigger {}, exit code {})",
            self.trigger,
            self.exit_code()
        )?;
        for phase in &Phase::ALL[Phase::Unready.index()..Phase::Stopped.index()] {
            if let Some(time) = self.time_in(*phase) {
                writeln!(f, "  {:<12} {:?}", phase.as_str(), time)?;
            }
        }
        if let Some(reason) = self.forced {
            writeln!(f, "  forced: {reason:?}")?;
        }
        writeln!(
            f,
            "  requests: {} completed, {} aborted, {} rejected",
            self.requests_completed, self.requests_aborted, self.requests_rejected
        )?;
        writeln!(
            f,
            "  connections: {} closed gracefully, {} forced, {} left open",
            self.connections_graceful, self.connections_forced, self.left_open
        )?;
        if self.listeners.len() > 1 {
            for listener in &self.listeners {
                writeln!(
                    f,
                    "    on {}: {} accepted, {} closed gracefully, {} forced",
                    listener.name,
                    listener.accepted,
                    listener.connections_graceful,
                    listener.connections_forced
                )?;
            }
        }
        if self.tasks_unfinished > 0 {
            writeln!(
                f,
                "  background tasks unfinished: {}",
                self.tasks_unfinished
            )?;
        }
        if self.upgrades_failed > 0 {
            writeln!(f, "  upgrades failed: {}", self.upgrades_failed)?;
        }
        for hook in &self.hooks {
            writeln!(
                f,
                "  hook {:?}: {} in {:?}",
                hook.name(),
                hook.outcome().as_str(),
                hook.duration()
            )?;
        }
        Ok(())
    }
}
