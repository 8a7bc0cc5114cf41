//! OS signals: `SIGTERM` and `SIGINT` start the sequence, a second `SIGINT` forces, and
//! further signals end the process only when its runtime is wedged. `SIGHUP` asks for an
//! in-place upgrade (unless [`Config::upgrade_on_sighup`](crate::Config::upgrade_on_sighup)
//! is off); it never counts towards shutdown.
//!
//! Signals are read on a dedicated thread (signal-hook's iterator), not on the async runtime,
//! so they are seen even when every runtime worker is blocked. On every signal after the
//! first, the thread asks the runtime for a sign of life: it spawns a tiny task and waits up
//! to [`RESPONSIVE_WITHIN`] for it to run. A runtime that answers is making progress, and
//! repeated signals are logged and ignored: a supervisor that sends ten `SIGTERM`s in a row
//! does not cut a healthy drain short. A runtime that does not answer is wedged: the thread
//! arms a handler registered with signal-hook's `register_conditional_shutdown`, which runs
//! inside the signal handler itself, so the next signal ends the process with
//! `128 + signal number` whatever the rest of the process is doing (a third or later signal
//! seen by the thread ends it too).
//!
//! When signals are listened for outside a Tokio runtime there is no runtime to ask; the
//! thread then takes every runtime to be wedged, which is the plain count: the third signal
//! ends the process.
//!
//! Enable it with [`Lifecycle::listen_for_signals`](crate::Lifecycle::listen_for_signals).

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::Duration,
};

use signal_hook::{
    SigId,
    consts::{SIGHUP, SIGINT, SIGTERM},
    flag,
    iterator::{Handle, Signals},
    low_level,
};

use crate::{SecondSigterm, Trigger, shared::Shared};

/// How long a runtime has to run a spawned task before it counts as wedged. A runtime that
/// is making progress, however loaded, runs a new task within milliseconds.
const RESPONSIVE_WITHIN: Duration = Duration::from_secs(1);

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
    /// A signal past those with a meaning: ends the process with this code if the runtime
    /// is wedged, and is ignored otherwise.
    ExitIfWedged(i32),
}

/// Decides what each signal means, from how many came before it.
#[derive(Debug)]
pub(crate) struct SignalCounter {
    received: u32,
    second_sigterm: SecondSigterm,
}

impl SignalCounter {
    pub(crate) fn new(second_sigterm: SecondSigterm) -> Self {
        Self {
            received: 0,
            second_sigterm,
        }
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
            _ => Action::ExitIfWedged(signal.exit_code()),
        }
    }

    /// Whether this signal repeats an earlier one, so the runtime's health decides what the
    /// next signals do.
    pub(crate) fn is_repeated(&self) -> bool {
        self.received >= 2
    }
}

/// What the signal thread's probe hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A probe task ran on the runtime.
    Alive,
    /// The listener is being dropped: stop probing and end the thread.
    Closing,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Responsive,
    Wedged,
    Closing,
}

/// Asks the runtime for a sign of life: a spawned task that answers on a channel.
///
/// The same channel carries [`Answer::Closing`] from the listener's `Drop`, which can run on
/// the runtime's only thread (at the end of [`Lifecycle::run`](crate::Lifecycle::run)): a
/// probe waiting there must end at once, not read the blocked thread as a wedged runtime.
#[derive(Debug)]
struct Probe {
    runtime: Option<tokio::runtime::Handle>,
    answers: mpsc::Sender<Answer>,
    heard: mpsc::Receiver<Answer>,
}

impl Probe {
    fn new(runtime: Option<tokio::runtime::Handle>) -> Self {
        let (answers, heard) = mpsc::channel();
        Self {
            runtime,
            answers,
            heard,
        }
    }

    /// A sender for [`Answer::Closing`].
    fn closer(&self) -> mpsc::Sender<Answer> {
        self.answers.clone()
    }

    /// Whether the runtime runs a new task within [`RESPONSIVE_WITHIN`]. Blocks the calling
    /// thread (the signal thread) for at most that long. Without a runtime to ask, every
    /// runtime counts as wedged.
    fn ask(&self) -> Liveness {
        // An answer left from an earlier probe that timed out says nothing about now.
        while let Ok(answer) = self.heard.try_recv() {
            if answer == Answer::Closing {
                return Liveness::Closing;
            }
        }
        let Some(runtime) = &self.runtime else {
            return Liveness::Wedged;
        };
        let alive = self.answers.clone();
        drop(runtime.spawn(async move {
            let _ = alive.send(Answer::Alive);
        }));
        match self.heard.recv_timeout(RESPONSIVE_WITHIN) {
            Ok(Answer::Alive) => Liveness::Responsive,
            Ok(Answer::Closing) => Liveness::Closing,
            Err(_) => Liveness::Wedged,
        }
    }
}

/// Listens until dropped.
pub(crate) struct SignalListener {
    control: Handle,
    exit_hooks: Vec<SigId>,
    closing: mpsc::Sender<Answer>,
    thread: Option<JoinHandle<()>>,
}

impl SignalListener {
    pub(crate) fn start(shared: &Arc<Shared>) -> io::Result<Self> {
        // Registered before the iterator's handlers, so it runs first on each signal.
        let armed = Arc::new(AtomicBool::new(false));
        let mut exit_hooks = Vec::with_capacity(2);
        for signal in [Signal::Term, Signal::Int] {
            let raw = if signal == Signal::Term {
                SIGTERM
            } else {
                SIGINT
            };
            exit_hooks.push(flag::register_conditional_shutdown(
                raw,
                signal.exit_code(),
                Arc::clone(&armed),
            )?);
        }
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        if shared.config().upgrade_on_sighup() {
            signals.add_signal(SIGHUP)?;
        }
        let control = signals.handle();
        let lifecycle = Arc::downgrade(shared);
        let probe = Probe::new(tokio::runtime::Handle::try_current().ok());
        let closing = probe.closer();
        let mut counter = SignalCounter::new(shared.config().second_sigterm());
        let thread = std::thread::Builder::new()
            .name("zdd-signals".to_owned())
            .spawn(move || {
                for raw in signals.forever() {
                    if raw == SIGHUP {
                        // An upgrade request, not a step towards shutdown.
                        if let Some(shared) = lifecycle.upgrade() {
                            shared.request_upgrade("sighup");
                        }
                        continue;
                    }
                    let signal = Signal::from_raw(raw);
                    let action = counter.on_signal(signal);
                    let Some(shared) = lifecycle.upgrade() else {
                        return;
                    };
                    match action {
                        Action::Trigger(trigger) => {
                            shared.trigger(trigger);
                        }
                        Action::Force(trigger) => {
                            warn!(signal = trigger.as_str(), "second signal: forcing");
                            shared.force(trigger);
                        }
                        Action::Ignore | Action::ExitIfWedged(_) => {}
                    }
                    drop(shared);
                    if !counter.is_repeated() {
                        continue;
                    }
                    let wedged = match probe.ask() {
                        Liveness::Responsive => false,
                        Liveness::Wedged => true,
                        Liveness::Closing => return,
                    };
                    // SeqCst: the handler reads this flag from signal context on another thread.
                    armed.store(wedged, Ordering::SeqCst);
                    let name = signal.trigger().as_str();
                    match (action, wedged) {
                        (Action::ExitIfWedged(code), true) => {
                            error!(
                                signal = name,
                                code,
                                "repeated signal and the runtime is not responding: exiting now"
                            );
                            low_level::exit(code);
                        }
                        (_, true) => {
                            warn!(
                                signal = name,
                                within_ms = RESPONSIVE_WITHIN.as_millis() as u64,
                                "the runtime is not responding; the next signal ends the process"
                            );
                        }
                        (Action::Ignore | Action::ExitIfWedged(_), false) => {
                            warn!(
                                signal = name,
                                "repeated signal ignored: the runtime is making progress"
                            );
                        }
                        (Action::Trigger(_) | Action::Force(_), false) => {}
                    }
                }
            })?;
        Ok(Self {
            control,
            exit_hooks,
            closing,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalListener {
    /// Stops listening. The process keeps signal-hook's handlers installed, so signals
    /// arriving after this are swallowed rather than killing the process mid-report.
    fn drop(&mut self) {
        // First, so a probe in progress ends now rather than waiting for a runtime whose
        // thread may be this one, blocked in the join below.
        let _ = self.closing.send(Answer::Closing);
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
        assert_eq!(
            SignalCounter::new(SecondSigterm::Ignore).on_signal(Signal::Term),
            Action::Trigger(Trigger::Sigterm)
        );
        assert_eq!(
            SignalCounter::new(SecondSigterm::Ignore).on_signal(Signal::Int),
            Action::Trigger(Trigger::Sigint)
        );
    }

    #[test]
    fn second_sigint_forces_and_second_sigterm_follows_the_policy() {
        let mut counter = SignalCounter::new(SecondSigterm::Ignore);
        counter.on_signal(Signal::Term);
        assert!(!counter.is_repeated());
        assert_eq!(
            counter.on_signal(Signal::Int),
            Action::Force(Trigger::Sigint)
        );
        assert!(counter.is_repeated());

        let mut ignoring = SignalCounter::new(SecondSigterm::Ignore);
        ignoring.on_signal(Signal::Term);
        assert_eq!(ignoring.on_signal(Signal::Term), Action::Ignore);

        let mut forcing = SignalCounter::new(SecondSigterm::Force);
        forcing.on_signal(Signal::Term);
        assert_eq!(
            forcing.on_signal(Signal::Term),
            Action::Force(Trigger::Sigterm)
        );
    }

    #[test]
    fn later_signals_exit_with_128_plus_their_number_if_wedged() {
        let mut counter = SignalCounter::new(SecondSigterm::Ignore);
        counter.on_signal(Signal::Term);
        counter.on_signal(Signal::Term);
        assert_eq!(counter.on_signal(Signal::Term), Action::ExitIfWedged(143));
        assert_eq!(counter.on_signal(Signal::Int), Action::ExitIfWedged(130));
    }

    #[test]
    fn a_runtime_that_runs_tasks_is_responsive_and_no_runtime_is_not() {
        assert_eq!(
            Probe::new(None).ask(),
            Liveness::Wedged,
            "no runtime to ask"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let probe = Probe::new(Some(runtime.handle().clone()));
        // A blocked runtime is shown by the wedged child process in tests/signals.rs.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = std::thread::spawn(move || runtime.block_on(stopped));
        assert_eq!(probe.ask(), Liveness::Responsive);
        stop.send(()).unwrap();
        driver.join().unwrap().unwrap();
    }

    #[test]
    fn closing_ends_a_probe_without_waiting_for_the_runtime() {
        // Nothing drives this runtime: without the closing answer, the probe would wait out
        // its whole second and call the runtime wedged.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let probe = Probe::new(Some(runtime.handle().clone()));
        probe.closer().send(Answer::Closing).unwrap();
        assert_eq!(probe.ask(), Liveness::Closing);
    }
}
