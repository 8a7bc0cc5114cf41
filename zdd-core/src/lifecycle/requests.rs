//! A server's end of the in-place upgrade requests (see the [upgrade module](crate::upgrade)).

use std::{
    fmt,
    sync::{Arc, Weak},
};

use tokio::sync::watch;

use crate::{Trigger, shared::Shared};

/// A server's end of the upgrade requests: [`next`](Self::next) completes on each
/// request, and the server reports how each one ended. Taken with
/// [`LifecycleHandle::upgrade_requests`](crate::LifecycleHandle::upgrade_requests); while
/// none is held, requests are refused.
pub struct UpgradeRequests {
    requests: watch::Receiver<u64>,
    shared: Weak<Shared>,
}

impl UpgradeRequests {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        let mut requests = shared.upgrades().subscribe();
        requests.mark_unchanged();
        Self {
            requests,
            shared: Arc::downgrade(shared),
        }
    }

    /// Completes when an upgrade is requested; never, once the lifecycle is gone.
    pub async fn next(&mut self) {
        if self.requests.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The new process (`pid`) is ready: systemd is told it is the main process now (with
    /// the `systemd` feature, under a `Type=notify` service), and this one drains, with
    /// [`Trigger::Upgrade`] and no propagation delay.
    pub fn succeeded(&self, pid: u32) {
        if let Some(shared) = self.shared.upgrade() {
            crate::metrics::upgrade("succeeded");
            info!(pid, "upgrade: the new process is ready; this one drains");
            crate::notify::main_pid(pid);
            shared.trigger(Trigger::Upgrade);
        }
    }

    /// The new process did not take over (`why`): this one serves on.
    pub fn failed(&self, why: &dyn fmt::Display) {
        if let Some(shared) = self.shared.upgrade() {
            crate::metrics::upgrade("failed");
            error!(error = %why, "upgrade failed; this process serves on");
            shared.upgrades().record_failure();
        }
    }
}

impl fmt::Debug for UpgradeRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeRequests").finish_non_exhaustive()
    }
}
