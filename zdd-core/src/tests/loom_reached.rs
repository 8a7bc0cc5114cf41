//! A phase future under every interleaving loom finds with the transition it waits for. Its
//! fast path answers a repeated poll (same waker, milestone unchanged) from one load,
//! without asking the channel again: the transition must still wake it, whenever it lands
//! between the two polls.

use std::{
    future::Future,
    pin::{Pin, pin},
    task::{Context, Poll, Wake, Waker},
};

use loom::{
    sync::{Arc, Condvar, Mutex},
    thread,
};

use crate::{Phase, machine::Machine};

/// Wakes the thread that runs [`block_on`]. Loom's own `block_on` makes a new waker at each
/// wake-up; a real task keeps one, which is what the fast path relies on.
#[derive(Default)]
struct Wakeup {
    woken: Mutex<bool>,
    condvar: Condvar,
}

impl Wake for Wakeup {
    fn wake(self: std::sync::Arc<Self>) {
        *self.woken.lock().unwrap() = true;
        self.condvar.notify_one();
    }
}

/// Runs `future` on this thread with one waker for its whole life, as a tokio task does.
fn block_on<F: Future>(future: F) -> F::Output {
    let wakeup = std::sync::Arc::new(Wakeup::default());
    let waker = Waker::from(std::sync::Arc::clone(&wakeup));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let mut woken = wakeup.woken.lock().unwrap();
        while !*woken {
            woken = wakeup.condvar.wait(woken).unwrap();
        }
        *woken = false;
    }
}

/// Polls `reached` twice at each wake-up with the same waker, so the second poll takes the
/// fast path; completes when either poll does.
fn twice(reached: &mut crate::PhaseReached) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        if Pin::new(&mut *reached).poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Pin::new(&mut *reached).poll(cx)
    })
}

#[test]
fn loom_a_phase_future_polled_again_is_woken_when_its_phase_comes() {
    loom::model(|| {
        let machine = Arc::new(Machine::new());
        let mut draining = machine.reached(Phase::Draining);
        let advancer = {
            let machine = Arc::clone(&machine);
            thread::spawn(move || {
                machine.advance(Phase::Unready);
                machine.advance(Phase::Draining);
            })
        };
        block_on(twice(&mut draining));
        assert!(machine.phase() >= Phase::Draining);
        advancer.join().unwrap();
    });
}

/// Polled once at each wake-up, as a task polls a future it awaits: its first poll must
/// register before it reads the phase for the last time, or a transition landing between
/// the two is lost (nothing would poll it again).
#[test]
fn loom_a_phase_future_polled_once_per_wake_up_is_woken_when_its_phase_comes() {
    loom::model(|| {
        let machine = Arc::new(Machine::new());
        let draining = machine.reached(Phase::Draining);
        let advancer = {
            let machine = Arc::clone(&machine);
            thread::spawn(move || {
                machine.advance(Phase::Draining);
            })
        };
        block_on(draining);
        assert!(machine.phase() >= Phase::Draining);
        advancer.join().unwrap();
    });
}

#[test]
fn loom_an_earlier_phase_does_not_complete_a_later_one() {
    loom::model(|| {
        let machine = Arc::new(Machine::new());
        let mut unready = machine.reached(Phase::Unready);
        let mut forcing = machine.reached(Phase::Forcing);
        let advancer = {
            let machine = Arc::clone(&machine);
            thread::spawn(move || {
                machine.advance(Phase::Unready);
            })
        };
        block_on(twice(&mut unready));
        advancer.join().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut forcing).poll(&mut cx).is_pending());
        machine.advance(Phase::Forcing);
        block_on(twice(&mut forcing));
    });
}
