use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::watch;

use crate::Phase;

/// Completes once the lifecycle has reached a phase (or gone past it).
///
/// Returned by [`LifecycleHandle::reached`](crate::LifecycleHandle::reached),
/// [`draining`](crate::LifecycleHandle::draining) and
/// [`shutdown_requested`](crate::LifecycleHandle::shutdown_requested). Each one owns a
/// receiver of a channel that changes only when its phase is reached, so thousands of them
/// can wait at once without sharing a waiter, and none is woken by the phases before. It
/// also completes if the lifecycle is dropped.
///
/// # Cancel safety
///
/// Cancel safe: dropping it before completion loses nothing.
#[must_use = "futures do nothing unless polled"]
pub struct PhaseReached {
    target: Phase,
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl PhaseReached {
    pub(crate) fn new(mut milestone: watch::Receiver<bool>, target: Phase) -> Self {
        let inner = Box::pin(async move {
            // An error means the lifecycle is gone, which is as far as phases go.
            let _ = milestone.wait_for(|reached| *reached).await;
        });
        Self { target, inner }
    }
}

impl Future for PhaseReached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for PhaseReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseReached")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
