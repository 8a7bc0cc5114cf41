//! The primitives of zdd's own synchronisation (the drain's counters), switched to loom's
//! models when the crate is built with `RUSTFLAGS="--cfg zdd_loom"`, so the models in
//! `src/tests/loom_*.rs` explore every interleaving of the real code.
//!
//! The switch is `zdd_loom`, not `loom`: tokio's own `cfg(loom)` code needs loom as a
//! dev-dependency of tokio, so `--cfg loom` would break tokio's build. Under the switch,
//! tokio's `Notify` and `watch` (not modelled by loom for a dependent crate) are replaced by
//! models with the contract zdd relies on: `Notify::notify_waiters` for the counters, and
//! for the phase machine a `watch` channel whose receivers see every change and whose
//! waiters are woken by it.

#[cfg(not(zdd_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    pub(crate) use tokio::sync::{Notify, futures::OwnedNotified, watch};
}

#[cfg(zdd_loom)]
pub(crate) mod sync {
    use std::{
        future::Future,
        pin::Pin,
        task::{Context, Poll, Waker},
    };

    use loom::sync::Mutex;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A model of tokio's `Notify` as the counter uses it: `notify_waiters` wakes every
    /// `Notified` that was enabled (or first polled) before it, and none created after;
    /// nothing is stored for later.
    #[derive(Debug)]
    pub(crate) struct Notify {
        state: Mutex<State>,
    }

    #[derive(Debug, Default)]
    struct State {
        /// How many times `notify_waiters` ran.
        generation: u64,
        waiters: Vec<Waker>,
    }

    impl Default for Notify {
        fn default() -> Self {
            Self {
                state: Mutex::new(State::default()),
            }
        }
    }

    impl Notify {
        pub(crate) fn notified(&self) -> Notified<'_> {
            Notified {
                notify: self,
                generation: None,
            }
        }

        /// As tokio's: a wait that owns its `Notify`.
        pub(crate) fn notified_owned(self: std::sync::Arc<Self>) -> OwnedNotified {
            OwnedNotified {
                notify: self,
                generation: None,
            }
        }

        /// The generation a wait enabled now waits to see pass.
        fn generation(&self) -> u64 {
            self.state.lock().unwrap().generation
        }

        /// Whether `generation` has passed; registers `cx`'s waker if not.
        fn poll_generation(&self, generation: &mut Option<u64>, cx: &Context<'_>) -> Poll<()> {
            let mut state = self.state.lock().unwrap();
            let generation = *generation.get_or_insert(state.generation);
            if state.generation != generation {
                return Poll::Ready(());
            }
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }

        pub(crate) fn notify_waiters(&self) {
            let waiters = {
                let mut state = self.state.lock().unwrap();
                state.generation += 1;
                std::mem::take(&mut state.waiters)
            };
            for waiter in waiters {
                waiter.wake();
            }
        }
    }

    #[derive(Debug)]
    pub(crate) struct Notified<'a> {
        notify: &'a Notify,
        /// The generation it waits to see pass, fixed when enabled.
        generation: Option<u64>,
    }

    impl Notified<'_> {
        pub(crate) fn enable(self: Pin<&mut Self>) {
            let this = self.get_mut();
            if this.generation.is_none() {
                this.generation = Some(this.notify.generation());
            }
        }
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            this.notify.poll_generation(&mut this.generation, cx)
        }
    }

    /// [`Notified`] owning its `Notify`, as tokio's `OwnedNotified`.
    #[derive(Debug)]
    pub(crate) struct OwnedNotified {
        notify: std::sync::Arc<Notify>,
        generation: Option<u64>,
    }

    impl OwnedNotified {
        pub(crate) fn enable(self: Pin<&mut Self>) -> bool {
            let this = self.get_mut();
            if this.generation.is_none() {
                this.generation = Some(this.notify.generation());
            }
            false
        }
    }

    impl Future for OwnedNotified {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            this.notify.poll_generation(&mut this.generation, cx)
        }
    }

    /// A model of tokio's `watch` channel with what the phase machine uses: every change
    /// bumps a version under the channel's lock and wakes every registered waiter after it.
    // `pub` types, as tokio's are: the handle returns receivers from its public API.
    #[allow(unreachable_pub, clippy::must_use_candidate)]
    pub(crate) mod watch {
        use std::{future::poll_fn, task::Poll};

        use loom::sync::{Arc, Mutex};

        #[derive(Debug)]
        struct State<T> {
            value: T,
            version: usize,
            waiters: Vec<std::task::Waker>,
        }

        impl<T> State<T> {
            fn changed(&mut self) {
                self.version += 1;
                for waiter in self.waiters.drain(..) {
                    waiter.wake();
                }
            }
        }

        /// The model's sending half.
        #[derive(Debug)]
        pub struct Sender<T> {
            state: Arc<Mutex<State<T>>>,
        }

        /// The model's receiving half; it remembers the version it saw last.
        #[derive(Debug)]
        pub struct Receiver<T> {
            state: Arc<Mutex<State<T>>>,
            seen: usize,
        }

        impl<T> Clone for Receiver<T> {
            fn clone(&self) -> Self {
                Self {
                    state: Arc::clone(&self.state),
                    seen: self.seen,
                }
            }
        }

        /// The sender is gone (never, in the models).
        #[derive(Debug)]
        pub struct RecvError;

        impl<T> Sender<T> {
            pub fn new(value: T) -> Self {
                Self {
                    state: Arc::new(Mutex::new(State {
                        value,
                        version: 0,
                        waiters: Vec::new(),
                    })),
                }
            }

            pub fn subscribe(&self) -> Receiver<T> {
                let seen = self.state.lock().unwrap().version;
                Receiver {
                    state: Arc::clone(&self.state),
                    seen,
                }
            }

            pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
                let mut state = self.state.lock().unwrap();
                let modified = modify(&mut state.value);
                if modified {
                    state.changed();
                }
                modified
            }

            pub fn send_replace(&self, value: T) -> T {
                let mut state = self.state.lock().unwrap();
                let old = std::mem::replace(&mut state.value, value);
                state.changed();
                old
            }
        }

        impl<T> Receiver<T> {
            pub fn has_changed(&self) -> Result<bool, RecvError> {
                Ok(self.state.lock().unwrap().version != self.seen)
            }

            pub async fn wait_for(
                &mut self,
                mut done: impl FnMut(&T) -> bool,
            ) -> Result<(), RecvError> {
                poll_fn(|cx| {
                    let mut state = self.state.lock().unwrap();
                    self.seen = state.version;
                    if done(&state.value) {
                        return Poll::Ready(Ok(()));
                    }
                    state.waiters.push(cx.waker().clone());
                    Poll::Pending
                })
                .await
            }
        }
    }
}
