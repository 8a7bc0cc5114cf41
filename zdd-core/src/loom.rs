//! The primitives of zdd's own synchronisation (the drain's counters), switched to loom's
//! models when the crate is built with `RUSTFLAGS="--cfg zdd_loom"`, so the models in
//! `src/tests/loom_*.rs` explore every interleaving of the real code.
//!
//! The switch is `zdd_loom`, not `loom`: tokio's own `cfg(loom)` code needs loom as a
//! dev-dependency of tokio, so `--cfg loom` would break tokio's build. Under the switch,
//! tokio's `Notify` (not modelled by loom for a dependent crate) is replaced by a model with
//! the same contract as the counter uses it; see [`sync::Notify`].

#[cfg(not(zdd_loom))]
pub(crate) mod sync {
    pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
    pub(crate) use tokio::sync::Notify;
}

#[cfg(zdd_loom)]
pub(crate) mod sync {
    use std::{
        future::Future,
        pin::Pin,
        task::{Context, Poll, Waker},
    };

    use loom::sync::Mutex;
    pub(crate) use loom::sync::atomic::{AtomicUsize, Ordering};

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
                this.generation = Some(this.notify.state.lock().unwrap().generation);
            }
        }
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            let mut state = this.notify.state.lock().unwrap();
            let generation = *this.generation.get_or_insert(state.generation);
            if state.generation != generation {
                return Poll::Ready(());
            }
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }
}
