//! A connection task's side wake-ups: its deadline, its shutdown phase and its first request
//! wake the task through a waker of their own, so a wake-up by the socket (one per request)
//! polls hyper's connection alone and none of them.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Wake, Waker},
};

/// What the side futures' waker shares with the task.
#[derive(Debug)]
struct Shared {
    /// A side future was woken since the task last polled them.
    woken: AtomicBool,
    /// The task's own waker. Locked only when a side future wakes (rare: a deadline, a
    /// phase) or when the task's waker changes (never, for a tokio task).
    task: Mutex<Option<Waker>>,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release, with the task's acquire in `SideWaker::woken`: what the side future's
        // waker saw happens before the task polls it again.
        self.woken.store(true, Ordering::Release);
        if let Some(task) = &*self.task.lock().unwrap_or_else(|e| e.into_inner()) {
            task.wake_by_ref();
        }
    }
}

/// The waker a connection task polls its side futures with.
///
/// # Why no wake-up is lost
///
/// The task stores its waker before it polls a side future for the first time, and a side
/// future's wake sets `woken` before it wakes that waker. A wake that comes after the task
/// read `woken` as false wakes the task again, and the next poll reads true.
#[derive(Debug)]
pub(crate) struct SideWaker {
    shared: Arc<Shared>,
    waker: Waker,
    /// The task waker last stored in `shared`, to see without a lock whether it changed.
    task: Option<Waker>,
}

impl SideWaker {
    /// A side waker that counts as woken, so the side futures are polled at the first poll.
    pub(crate) fn new() -> Self {
        let shared = Arc::new(Shared {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Self {
            waker: Waker::from(Arc::clone(&shared)),
            shared,
            task: None,
        }
    }

    /// Whether a side future was woken since the last call (then the side futures must be
    /// polled now, with [`SideWaker::context`]). Keeps the task's waker current.
    #[inline]
    pub(crate) fn woken(&mut self, cx: &Context<'_>) -> bool {
        if !self
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self.shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            self.task = Some(waker);
        }
        self.shared.woken.load(Ordering::Acquire)
            && self.shared.woken.swap(false, Ordering::Acquire)
    }

    /// Polls the side futures again at the next call of [`SideWaker::woken`], as after one of
    /// them completed and changed what the others wait for.
    pub(crate) fn again(&self) {
        self.shared.woken.store(true, Ordering::Relaxed);
    }

    /// The context to poll the side futures with.
    pub(crate) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Poll},
    };

    use super::SideWaker;

    #[test]
    fn a_side_wake_wakes_the_task_and_is_seen_once() {
        let task = std::sync::Arc::new(Counter::default());
        let task_waker = std::task::Waker::from(std::sync::Arc::clone(&task));
        let cx = Context::from_waker(&task_waker);
        let mut side = SideWaker::new();
        assert!(side.woken(&cx), "the first poll polls the side futures");
        assert!(!side.woken(&cx));
        side.context().waker().wake_by_ref();
        assert_eq!(task.count(), 1, "the task was woken");
        assert!(side.woken(&cx));
        assert!(!side.woken(&cx), "seen once");
        side.again();
        assert!(side.woken(&cx));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_polled_with_the_side_waker_wakes_the_task() {
        let mut side = SideWaker::new();
        let mut sleep = pin!(tokio::time::sleep(std::time::Duration::from_secs(1)));
        let mut fired = false;
        std::future::poll_fn(|cx| {
            if side.woken(cx) && sleep.as_mut().poll(&mut side.context()).is_ready() {
                fired = true;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
        assert!(fired);
    }

    #[test]
    fn a_side_wake_from_another_thread_is_never_lost() {
        // Many rounds of a side future woken from another thread while the task polls,
        // registers or parks, on real threads: each round must complete.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        for round in 0..2_000 {
            let notify = std::sync::Arc::new(tokio::sync::Notify::new());
            let waker_thread = {
                let notify = std::sync::Arc::clone(&notify);
                std::thread::spawn(move || notify.notify_one())
            };
            let task = runtime.spawn({
                let notify = std::sync::Arc::clone(&notify);
                async move {
                    let mut side = SideWaker::new();
                    let mut notified = pin!(notify.notified());
                    std::future::poll_fn(|cx| {
                        // The task's own wake-ups (none here) and the side's: poll the side
                        // future only when the side waker says so.
                        if side.woken(cx) && notified.as_mut().poll(&mut side.context()).is_ready()
                        {
                            return Poll::Ready(());
                        }
                        Poll::Pending
                    })
                    .await;
                }
            });
            let done = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), task).await
            });
            assert!(done.is_ok(), "round {round}: a side wake-up was lost");
            waker_thread.join().unwrap();
        }
    }

    #[derive(Default)]
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Counter {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
