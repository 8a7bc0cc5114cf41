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
/// [`shutdown_requested`](crate::LifecycleHandle::shutdown_requested). Each one owns its
/// own receiver of the phase channel, so thousands of them can wait at once without sharing
/// a waiter. It also completes if the lifecycle is dropped.
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
    pub(crate) fn new(mut rx: watch::Receiver<Phase>, target: Phase) -> Self {
        let inner = Box::pin(async move {
            // An error means the lifecycle is gone, which is as far as phases go.
            let _ = rx.wait_for(|phase| *phase >= target).await;
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
