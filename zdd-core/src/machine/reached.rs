use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use crate::{
    Phase,
    loom::sync::{AtomicBool, Notify, Ordering, OwnedNotified},
};

/// How many waiter lists a milestone spreads its waiters over: registering takes a list's
/// lock, and every open request of a service that ends its requests at forcing
/// (`ZddLayer::end_forced_with`) registers one wait.
const SHARDS: usize = 8;

/// One phase's milestone: a flag set once, when the phase is reached (or the machine is
/// gone), and the waiters it then wakes.
///
/// # Why no wake-up is lost
///
/// [`Milestone::reach`] sets the flag, then wakes every waiter registered with any of the
/// `notify` lists. A waiter registers with one (enabling its wait takes that list's lock),
/// then reads the flag. If the waker's lock came first, the flag it set before is visible
/// to the waiter after its own lock; if the waiter's came first, it is among those woken.
pub(crate) struct Milestone {
    reached: AtomicBool,
    notify: [Arc<Notify>; SHARDS],
}

impl Milestone {
    pub(crate) fn new(reached: bool) -> Arc<Self> {
        Arc::new(Self {
            reached: AtomicBool::new(reached),
            notify: std::array::from_fn(|_| Arc::new(Notify::default())),
        })
    }

    /// Whether the phase was reached (or the machine is gone). One atomic load.
    #[inline]
    pub(crate) fn is_reached(&self) -> bool {
        self.reached.load(Ordering::Acquire)
    }

    /// Sets the flag and wakes the waiters, the first time only.
    pub(crate) fn reach(&self) {
        if !self.reached.swap(true, Ordering::AcqRel) {
            for notify in &self.notify {
                notify.notify_waiters();
            }
        }
    }

    /// A wait on the list of this thread's shard.
    fn wait(&self) -> OwnedNotified {
        let shard = usize::from(crate::tracker::this_threads_shard()) % SHARDS;
        Arc::clone(&self.notify[shard]).notified_owned()
    }
}

/// Completes once the lifecycle has reached a phase (or gone past it).
///
/// Returned by [`LifecycleHandle::reached`](crate::LifecycleHandle::reached),
/// [`draining`](crate::LifecycleHandle::draining) and
/// [`shutdown_requested`](crate::LifecycleHandle::shutdown_requested). Each one waits on its
/// phase's own milestone, so thousands of them can wait at once and none is woken by the
/// phases before. It also completes if the lifecycle is dropped.
///
/// Polling it again while its phase has not come, with the waker it registered last, is
/// one atomic load: a connection's task or a stream that holds one is polled often, and
/// asking the milestone's waiter list each time would put all of them behind its lock.
///
/// # Cancel safety
///
/// Cancel safe: dropping it before completion loses nothing.
#[must_use = "futures do nothing unless polled"]
pub struct PhaseReached {
    target: Phase,
    milestone: Arc<Milestone>,
    /// The registered wait, made at the first poll that finds the phase not reached yet.
    wait: Option<Pin<Box<OwnedNotified>>>,
    /// The waker `wait` was last polled with while it was pending.
    registered: Option<Waker>,
}

impl PhaseReached {
    pub(crate) fn new(milestone: Arc<Milestone>, target: Phase) -> Self {
        Self {
            target,
            milestone,
            wait: None,
            registered: None,
        }
    }

    /// Whether the phase was reached, without registering to be woken: one atomic load.
    // The layer's forced endings use it; without the `tower` feature there is no layer.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    #[inline]
    pub(crate) fn is_reached(&self) -> bool {
        self.milestone.is_reached()
    }
}

impl Future for PhaseReached {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.milestone.is_reached() {
            return Poll::Ready(());
        }
        // Registered with this waker and not reached: the milestone's `reach` wakes it.
        if this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let wait = this
            .wait
            .get_or_insert_with(|| Box::pin(this.milestone.wait()));
        match wait.as_mut().poll(cx) {
            // Only `reach` notifies, after setting the flag.
            Poll::Ready(()) => Poll::Ready(()),
            // Registered (the first poll takes the list's lock to add it) before the flag
            // is read again: a `reach` in between wakes it.
            Poll::Pending if this.milestone.is_reached() => Poll::Ready(()),
            Poll::Pending => {
                this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl fmt::Debug for PhaseReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhaseReached")
            .field("target", &self.target)
            .field("reached", &self.milestone.is_reached())
            .finish_non_exhaustive()
    }
}
