//! OS signals: `SIGTERM` and `SIGINT` start the sequence, a second `SIGINT` forces, a third
//! signal ends the process from the signal handler.
//!
//! Signals are read on a dedicated thread (signal-hook's iterator), not on the async runtime,
//! so they are seen even when every runtime worker is blocked. After the second signal the
//! thread arms a handler registered with signal-hook's `register_conditional_shutdown`,
//! which runs inside the signal handler itself: the third signal ends the process with
//! `128 + signal number` whatever the rest of the process is doing.
//!
//! Enable it with [`Lifecycle::listen_for_signals`](crate::Lifecycle::listen_for_signals).

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use signal_hook::{
    SigId,
    consts::{SIGINT, SIGTERM},
    flag,
    iterator::{Handle, Signals},
    low_level,
};

use crate::{LifecycleHandle, SecondSigterm, Trigger};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Term,
    Int,
}

impl Signal {
    fn from_raw(raw: i32) -> Self {
        if raw == SIGINT { Self::Int } else { Self::Term }
    }

    fn exit_code(self) -> i32 {
        128 + match self {
            Self::Term => SIGTERM,
            Self::Int => SIGINT,
        }
    }

    fn trigger(self) -> Trigger {
        match self {
            Self::Term => Trigger::Sigterm,
            Self::Int => Trigger::Sigint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Trigger(Trigger),
    Force(Trigger),
    Ignore,
    Exit(i32),
}

/// Decides what each signal means, from how many came before it.
#[derive(Debug)]
pub(crate) struct SignalCounter {
    received: u32,
    second_sigterm: SecondSigterm,
}

impl SignalCounter {
    pub(crate) fn new(second_sigterm: SecondSigterm) -> Self {
        Self { received: 0, second_sigterm }
    }

    pub(crate) fn on_signal(&mut self, signal: Signal) -> Action {
        self.received = self.received.saturating_add(1);
        match (self.received, signal) {
            (1, _) => Action::Trigger(signal.trigger()),
            (2, Signal::Int) => Action::Force(Trigger::Sigint),
            (2, Signal::Term) => match self.second_sigterm {
                SecondSigterm::Force => Action::Force(Trigger::Sigterm),
                SecondSigterm::Ignore => Action::Ignore,
            },
            _ => Action::Exit(signal.exit_code()),
        }
    }

    /// From now on, the next signal ends the process.
    pub(crate) fn next_exits(&self) -> bool {
        self.received >= 2
    }
}

/// Listens until dropped.
pub(crate) struct SignalListener {
    control: Handle,
    exit_hooks: Vec<SigId>,
    thread: Option<JoinHandle<()>>,
}

impl SignalListener {
    pub(crate) fn start(handle: &LifecycleHandle) -> io::Result<Self> {
        // Registered before the iterator's handlers, so it runs first on each signal.
        let armed = Arc::new(AtomicBool::new(false));
        let mut exit_hooks = Vec::with_capacity(2);
        for signal in [Signal::Term, Signal::Int] {
            let raw = if signal == Signal::Term { SIGTERM } else { SIGINT };
            exit_hooks.push(flag::register_conditional_shutdown(raw, signal.exit_code(), Arc::clone(&armed))?);
        }
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let control = signals.handle();
        let lifecycle = handle.downgrade();
        let mut counter = SignalCounter::new(handle.config().second_sigterm());
        let thread = std::thread::Builder::new().name("zdd-signals".to_owned()).spawn(move || {
            for raw in signals.forever() {
                let signal = Signal::from_raw(raw);
                let action = counter.on_signal(signal);
                // SeqCst: the handler reads this flag from signal context on another thread.
                armed.store(counter.next_exits(), Ordering::SeqCst);
                let Some(handle) = lifecycle.upgrade() else { return };
                match action {
                    Action::Trigger(trigger) => {
                        handle.trigger(trigger);
                    }
                    Action::Force(trigger) => {
                        warn!(signal = trigger.as_str(), "second signal: forcing");
                        handle.shared.force(trigger);
                    }
                    Action::Ignore => {
                        warn!(signal = signal.trigger().as_str(), "repeated signal ignored; the next one ends the process");
                    }
                    Action::Exit(code) => {
                        error!(code, "third signal: exiting now");
                        low_level::exit(code);
                    }
                }
            }
        })?;
        Ok(Self { control, exit_hooks, thread: Some(thread) })
    }
}

impl Drop for SignalListener {
    /// Stops listening. The process keeps signal-hook's handlers installed, so signals
    /// arriving after this are swallowed rather than killing the process mid-report.
    fn drop(&mut self) {
        self.control.close();
        for id in self.exit_hooks.drain(..) {
            low_level::unregister(id);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SignalListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalListener").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_signal_triggers_with_its_kind() {
        assert_eq!(SignalCounter::new(SecondSigterm::Ignore).on_signal(Signal::Term), Action::Trigger(Trigger::Sigterm));
        assert_eq!(SignalCounter::new(SecondSigterm::Ignore).on_signal(Signal::Int), Action::Trigger(Trigger::Sigint));
    }

    #[test]
    fn second_sigint_forces_and_second_sigterm_follows_the_policy() {
        let mut counter = SignalCounter::new(SecondSigterm::Ignore);
        counter.on_signal(Signal::Term);
        assert!(!counter.next_exits());
        assert_eq!(counter.on_signal(Signal::Int), Action::Force(Trigger::Sigint));
        assert!(counter.next_exits());

        let mut ignoring = SignalCounter::new(SecondSigterm::Ignore);
        ignoring.on_signal(Signal::Term);
        assert_eq!(ignoring.on_signal(Signal::Term), Action::Ignore);

        let mut forcing = SignalCounter::new(SecondSigterm::Force);
        forcing.on_signal(Signal::Term);
        assert_eq!(forcing.on_signal(Signal::Term), Action::Force(Trigger::Sigterm));
    }

    #[test]
    fn third_signal_exits_with_128_plus_its_number() {
        let mut counter = SignalCounter::new(SecondSigterm::Ignore);
        counter.on_signal(Signal::Term);
        counter.on_signal(Signal::Term);
        assert_eq!(counter.on_signal(Signal::Term), Action::Exit(143));
        assert_eq!(counter.on_signal(Signal::Int), Action::Exit(130));
    }
}
