use std::{fmt, sync::Arc};

use crate::shared::Shared;

/// A server's word that it will say when its runtime has read its sockets' events after
/// draining began; made by [`LifecycleHandle::event_turn`](crate::LifecycleHandle::event_turn).
///
/// Idle HTTP/1 connections close once draining has begun and the runtime has read the
/// sockets' events since ([`ConnectionGuard::graceful_close`](crate::ConnectionGuard::graceful_close)):
/// a request that reached an idle connection's socket as the drain began is then reported
/// to its reader, and read, before the connection decides it is idle. Without a server's
/// word the lifecycle waits for its runtime's first timer turn after the drain began,
/// about a millisecond. A server that sees its runtime's event loop can tell sooner: for
/// example, a byte written to a socket pair registered with the runtime after draining
/// began is reported after every event that was ready before it, as the kernel reports
/// ready sockets first come, first served. A word speaks for the runtime whose event loop
/// it watched: a server that serves from several runtimes gives one for each.
///
/// While any word is outstanding, the lifecycle waits for all of them, not for its timer;
/// a later phase (forcing) tells idle connections to close whatever is outstanding. Give
/// it with [`EventTurn::turned`]; dropping it says the same, so a server that is gone
/// holds nothing open. Dropped before draining began, it is as if it had not been made.
///
/// # Examples
///
/// ```
/// use zdd_core::{Config, Lifecycle};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let lifecycle = Lifecycle::new(Config::default());
/// let handle = lifecycle.handle();
/// let connection = handle.track_connection();
/// let turn = handle.event_turn();
/// let server = tokio::spawn(async move {
///     handle.draining().await;
///     // … wait until the runtime has read the sockets' events, then:
///     turn.turned();
/// });
/// let closing = tokio::spawn(async move {
///     connection.graceful_close().await; // an idle connection closes now
/// });
/// lifecycle.handle().shutdown();
/// let report = tokio::spawn(lifecycle.run());
/// server.await.unwrap();
/// closing.await.unwrap();
/// assert!(report.await.unwrap().is_graceful());
/// # }
/// ```
#[must_use = "dropping it says the runtime has read its sockets' events"]
pub struct EventTurn {
    shared: Arc<Shared>,
}

impl EventTurn {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.machine().expect_event_turn();
        Self { shared }
    }

    /// The runtime has read the sockets' events since draining began: idle HTTP/1
    /// connections may close, once every other word given is kept too.
    pub fn turned(self) {
        drop(self);
    }
}

impl Drop for EventTurn {
    fn drop(&mut self) {
        self.shared.machine().event_turned();
    }
}

impl fmt::Debug for EventTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventTurn").finish_non_exhaustive()
    }
}
