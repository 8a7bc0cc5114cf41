//! The phases of a service's life and what can start its shutdown.
//!
//! A lifecycle only ever moves forward through [`Phase`]s:
//!
//! ```text
//! Starting → Serving → Unready → Draining → Forcing → CleaningUp → Stopped
//! ```
//!
//! Phases can be skipped (a drain that finishes in time never enters `Forcing`) but never
//! revisited. Watch them with [`LifecycleHandle::phase`] and [`LifecycleHandle::reached`].
//!
//! # Examples
//!
//! ```
//! use zdd_core::Phase;
//!
//! assert!(Phase::Serving < Phase::Draining);
//! assert_eq!(Phase::CleaningUp.to_string(), "cleaning_up");
//! assert!(Phase::Unready.is_shutting_down());
//! assert!(!Phase::Serving.is_shutting_down());
//! ```
//!
//! [`LifecycleHandle::phase`]: crate::LifecycleHandle::phase
//! [`LifecycleHandle::reached`]: crate::LifecycleHandle::reached

use std::fmt;

/// A phase of the lifecycle, in the order they happen.
///
/// See the [module docs](crate::phase) for the order and what each phase means for probes and
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Phase {
    /// The process has started; startup tasks are still running. Readiness and startup
    /// probes fail, liveness passes.
    Starting = 0,
    /// Every startup task is done; requests are served and readiness reflects the checks.
    Serving = 1,
    /// Shutdown was triggered. Readiness fails so load balancers stop routing here, but the
    /// listener still accepts for the propagation delay. HTTP/1 responses carry
    /// `Connection: close`.
    Unready = 2,
    /// The propagation delay is over. The listener is closed after its backlog is served,
    /// idle connections are closed, in-flight work finishes, long-lived handlers are told to
    /// end.
    Draining = 3,
    /// The drain deadline passed (or a forcing signal arrived): remaining connections are
    /// closed.
    Forcing = 4,
    /// No connection is left; cleanup hooks run in reverse registration order.
    CleaningUp = 5,
    /// Everything is done; the serve call returns its report.
    Stopped = 6,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Self; 7] = [
        Self::Starting,
        Self::Serving,
        Self::Unready,
        Self::Draining,
        Self::Forcing,
        Self::CleaningUp,
        Self::Stopped,
    ];

    /// The phase's name in `snake_case`, as used in health bodies and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Serving => "serving",
            Self::Unready => "unready",
            Self::Draining => "draining",
            Self::Forcing => "forcing",
            Self::CleaningUp => "cleaning_up",
            Self::Stopped => "stopped",
        }
    }

    /// Whether shutdown has begun (`Unready` or later).
    #[must_use]
    pub const fn is_shutting_down(self) -> bool {
        self as u8 >= Self::Unready as u8
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Starting,
            1 => Self::Serving,
            2 => Self::Unready,
            3 => Self::Draining,
            4 => Self::Forcing,
            5 => Self::CleaningUp,
            _ => Self::Stopped,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started the shutdown sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// `SIGTERM`, as sent by Kubernetes, systemd and most orchestrators.
    Sigterm,
    /// `SIGINT`, usually Ctrl-C in a terminal.
    Sigint,
    /// [`LifecycleHandle::shutdown`](crate::LifecycleHandle::shutdown) was called.
    Programmatic,
    /// A future passed to
    /// [`Lifecycle::shutdown_on`](crate::Lifecycle::shutdown_on) completed.
    Future,
    /// A Kubernetes `preStop` hook: the admin listener's `/prestop` endpoint, or a handler
    /// of your own calling [`LifecycleHandle::trigger`](crate::LifecycleHandle::trigger).
    /// The propagation delay is then waited in full (see
    /// [`Config::propagation_delay_after`](crate::Config::propagation_delay_after)).
    PreStop,
    /// A new process took over the listening sockets and is ready (an in-place upgrade,
    /// [`LifecycleHandle::upgrade`](crate::LifecycleHandle::upgrade)): this one drains with
    /// no propagation delay, since no load balancer has anything to notice.
    Upgrade,
    /// The server could not start (for example, its admin listener could not be bound):
    /// [`LifecycleHandle::fail_startup`](crate::LifecycleHandle::fail_startup). The service
    /// never turned ready, and the report is not graceful.
    StartupFailed,
}

impl Trigger {
    /// The trigger's name in `snake_case`, as used in logs and reports.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sigterm => "sigterm",
            Self::Sigint => "sigint",
            Self::Programmatic => "programmatic",
            Self::Future => "future",
            Self::PreStop => "pre_stop",
            Self::Upgrade => "upgrade",
            Self::StartupFailed => "startup_failed",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip_through_u8_in_order() {
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(phase.index(), i);
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
        assert!(Phase::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn only_unready_and_later_are_shutting_down() {
        let shutting: Vec<_> = Phase::ALL
            .into_iter()
            .filter(|p| p.is_shutting_down())
            .collect();
        assert_eq!(shutting[0], Phase::Unready);
        assert_eq!(shutting.len(), 5);
    }
}
