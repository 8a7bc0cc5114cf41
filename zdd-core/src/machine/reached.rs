use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use crate::loom::sync::watch;

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
/// Polling it again while its phase has not come is one atomic load: a connection's task
/// that holds one is polled at every request, and waiting on the channel's shared waiter
/// list each time would put all connections behind one lock. That check is sound only
/// because the wait registers with the channel whenever it returns `Pending`, so it is
/// exempt from tokio's cooperative budget (which would make it yield without registering).
///
/// # Cancel safety
///
/// Cancel safe: dropping it before completion loses nothing.
#[must_use = "futures do nothing unless polled"]
pub struct PhaseReached {
    target: Phase,
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// A second receiver of the milestone, to see without a lock whether it changed.
    seen: watch::Receiver<bool>,
    /// The waker `inner` registered when it last returned `Pending`.
    registered: Option<Waker>,
}

impl PhaseReached {
    pub(crate) fn new(mut milestone: watch::Receiver<bool>, target: Phase) -> Self {
        let seen = milestone.clone();
        let wait = async move {
            // An error means the lifecycle is gone, which is as far as phases go.
            let _ = milestone.wait_for(|reached| *reached).await;
        };
        // Out of tokio's cooperative budget, the channel yields (`Pending` and an
        // immediate wake-up) without registering a waiter, and the lock-free check in
        // `poll` would then never poll it again: the phase's wake-up would be lost. Waiting
        // on a milestone is no work worth bounding, so it runs outside the budget.
        #[cfg(not(zdd_loom))]
        let wait = tokio::task::coop::unconstrained(wait);
        let inner = Box::pin(wait);
        Self {
            target,
            inner,
            seen,
            registered: None,
        }
    }
}

impl Future for PhaseReached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `inner` waits with the same waker and the milestone did not change since it was
        // created: a change wakes that waker, and polling `inner` again would only take the
        // channel's lock to store the waker it has. (A milestone changes once, to true, or
        // closes; either wakes the waiter and shows in `has_changed`.)
        if self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
            && matches!(self.seen.has_changed(), Ok(false))
        {
            return Poll::Pending;
        }
        match self.inner.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                self.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl fmt::Debug for PhaseReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseReached")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
