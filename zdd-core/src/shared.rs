//! What a lifecycle's controller, handles and guards share: one owner per concern, and the
//! one place where a transition is observed (logged and counted).
//!
//! Each field is an owner with its own small API: the [`Machine`] (the phase), [`Work`]
//! (what the drain waits for), [`Health`] (probes), the cleanup hooks and the
//! [`Config`]. Nothing reaches past those APIs; the phase changes only through
//! [`Shared::advance`], which is [`Machine::advance`] plus its log line and metrics.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use crate::{
    Config, Phase, Trigger,
    health::Health,
    hooks::Hook,
    machine::{Machine, Transition},
    tracker::Work,
    upgrade::{Refused, Upgrades},
};

/// The owners behind one lifecycle, held in one `Arc` by the controller, its handles and
/// every guard (one reference count per guard, whatever it reads).
pub(crate) struct Shared {
    config: Config,
    machine: Machine,
    work: Work,
    health: Health,
    hooks: Mutex<Vec<Hook>>,
    upgrades: Upgrades,
    /// Set once the missing-propagation-delay warning was logged.
    warned_no_delay: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            machine: Machine::new(),
            work: Work::new(),
            health: Health::default(),
            hooks: Mutex::new(Vec::new()),
            upgrades: Upgrades::default(),
            warned_no_delay: AtomicBool::new(false),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    #[inline]
    pub(crate) fn machine(&self) -> &Machine {
        &self.machine
    }

    #[inline]
    pub(crate) fn work(&self) -> &Work {
        &self.work
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    pub(crate) fn upgrades(&self) -> &Upgrades {
        &self.upgrades
    }

    /// Asks the server for an in-place upgrade; logs why when it cannot start one. Returns
    /// whether it started.
    pub(crate) fn request_upgrade(&self, by: &'static str) -> bool {
        let phase = self.machine.phase();
        let refused = if phase.is_shutting_down() {
            Err(Refused::ShuttingDown)
        } else {
            self.upgrades.request()
        };
        match refused {
            Ok(()) => {
                info!(by, "upgrade requested");
                true
            }
            Err(Refused::InProgress) => {
                warn!(by, "upgrade requested while one is in progress; ignored");
                false
            }
            Err(Refused::ShuttingDown) => {
                warn!(
                    by,
                    phase = phase.as_str(),
                    "upgrade requested while shutting down; ignored"
                );
                false
            }
            Err(Refused::NoServer) => {
                warn!(
                    by,
                    "upgrade requested, but no server here can hand its listeners over; ignored"
                );
                false
            }
        }
    }

    /// Adds a cleanup hook.
    pub(crate) fn add_hook(&self, hook: Hook) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Takes every registered hook, in registration order.
    pub(crate) fn take_hooks(&self) -> Vec<Hook> {
        std::mem::take(&mut *self.hooks.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the missing-propagation-delay warning is still to be logged; `true` once.
    pub(crate) fn first_no_delay_warning(&self) -> bool {
        !self.warned_no_delay.swap(true, Ordering::Relaxed)
    }

    /// Moves to `to` if it is later than the current phase, and logs and counts the
    /// transition. Returns whether it moved.
    pub(crate) fn advance(&self, to: Phase) -> bool {
        let Some(transition) = self.machine.advance(to) else {
            return false;
        };
        let Transition {
            from,
            to,
            in_previous,
        } = transition;
        crate::metrics::transition(from, to, in_previous);
        crate::metrics::sample(&self.work);
        info!(
            phase = to.as_str(),
            from = from.as_str(),
            in_previous_ms = in_previous.map_or(0, |d| d.as_millis()) as u64,
            in_flight_requests = self.work.in_flight_requests(),
            open_connections = self.work.connections().len(),
            "phase changed"
        );
        true
    }

    /// Records the trigger (the first one wins) and turns unready. Returns whether this was
    /// the first trigger.
    pub(crate) fn trigger(&self, trigger: Trigger) -> bool {
        let first = self.machine.record_trigger(trigger);
        if first {
            info!(
                trigger = trigger.as_str(),
                phase = self.machine.phase().as_str(),
                "shutdown triggered"
            );
        } else {
            debug!(trigger = trigger.as_str(), "shutdown already triggered");
        }
        self.advance(Phase::Unready);
        first
    }

    /// The sequence was dropped before it finished: go to forcing at once, so everything
    /// that watches the phases (listeners, connections) ends, and stay there.
    pub(crate) fn abandon(&self) {
        if self.machine.phase() >= Phase::Forcing {
            return;
        }
        warn!(
            phase = self.machine.phase().as_str(),
            "the lifecycle's sequence was dropped before it finished: forcing, without cleanup or report"
        );
        self.machine.record_trigger(Trigger::Programmatic);
        self.machine.request_force();
        self.advance(Phase::Forcing);
    }

    /// Triggers shutdown (if it has not started) and asks the sequence to force.
    pub(crate) fn force(&self, trigger: Trigger) {
        self.trigger(trigger);
        if self.machine.request_force() {
            warn!(trigger = trigger.as_str(), "forcing requested");
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            config,
            machine,
            work,
            health,
            hooks,
            upgrades,
            warned_no_delay: _,
        } = self;
        let hooks = hooks.lock().map_or(0, |hooks| hooks.len());
        f.debug_struct("Shared")
            .field("config", config)
            .field("machine", machine)
            .field("work", work)
            .field("health", health)
            .field("hooks", &hooks)
            .field("upgrades", upgrades)
            .finish()
    }
}
