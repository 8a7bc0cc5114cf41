//! In-place upgrades: who may ask for one, one at a time, and what is counted.
//!
//! An upgrade starts a new process of the same program on the same listening sockets, and
//! this one drains once the new one is ready. The core decides only whether an upgrade may
//! start and records how it ended; a server adapter that can hand its sockets over (such
//! as `zdd-hyper`'s `Serve`) takes the [`UpgradeRequests`] and does the rest:
//!
//! 1. [`LifecycleHandle::upgrade`](crate::LifecycleHandle::upgrade) (or `SIGHUP`) asks for
//!    one. It is refused, with a log line, while another is in progress, once shutdown has
//!    begun, or when no server takes requests.
//! 2. The server starts the new process and waits, bounded by
//!    [`Config::upgrade_timeout`](crate::Config::upgrade_timeout), until it reports ready.
//! 3. Ready: [`UpgradeRequests::succeeded`] triggers shutdown with
//!    [`Trigger::Upgrade`](crate::Trigger::Upgrade), which waits no propagation delay.
//!    Not ready (it exited, or the time ran out): [`UpgradeRequests::failed`] logs why and
//!    counts it in the report; this process serves on, and a later request may try again.
//!
//! [`UpgradeRequests`]: crate::UpgradeRequests
//! [`UpgradeRequests::succeeded`]: crate::UpgradeRequests::succeeded
//! [`UpgradeRequests::failed`]: crate::UpgradeRequests::failed

use std::{
    fmt,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use tokio::sync::watch;

pub use crate::notify::ENV_UPGRADE_READY;

/// The upgrade state of one lifecycle.
pub(crate) struct Upgrades {
    /// Bumped on each accepted request; servers watch it.
    requests: watch::Sender<u64>,
    in_progress: AtomicBool,
    failed: AtomicU64,
}

/// Why a request was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    InProgress,
    ShuttingDown,
    NoServer,
}

impl Default for Upgrades {
    fn default() -> Self {
        Self {
            requests: watch::Sender::new(0),
            in_progress: AtomicBool::new(false),
            failed: AtomicU64::new(0),
        }
    }
}

impl Upgrades {
    /// Starts an upgrade unless one is in progress or no server takes requests.
    pub(crate) fn request(&self) -> Result<(), Refused> {
        if self.requests.receiver_count() == 0 {
            return Err(Refused::NoServer);
        }
        if self.in_progress.swap(true, Ordering::AcqRel) {
            return Err(Refused::InProgress);
        }
        self.requests.send_modify(|count| *count += 1);
        Ok(())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.requests.subscribe()
    }

    /// The upgrade in progress ended without taking over.
    pub(crate) fn record_failure(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.in_progress.store(false, Ordering::Release);
    }

    /// Upgrades that ended without the new process taking over.
    pub(crate) fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Upgrades {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrades")
            .field("in_progress", &self.in_progress.load(Ordering::Relaxed))
            .field("failed", &self.failed())
            .finish()
    }
}
