//! Telling a supervisor about the phases: systemd's notification socket (`READY=1` when
//! serving, `STOPPING=1` and a longer stop timeout when shutdown begins, `MAINPID=` when an
//! upgrade hands over), and the zdd parent of an in-place upgrade, which waits for its new
//! process to be ready before it drains.
//!
//! Both are datagrams on a Unix socket named by the environment: `NOTIFY_SOCKET` (set by
//! systemd for `Type=notify` services; needs the `systemd` feature) and
//! [`ENV_UPGRADE_READY`] (set by the parent for the new process). Without them nothing is
//! sent. A failed send is logged, never fatal: the supervisor's own timeout takes over.

use std::time::Duration;

use crate::PhaseReached;

/// Set by the parent of an in-place upgrade: the Unix datagram socket where the new
/// process says `READY=1` once it serves.
pub const ENV_UPGRADE_READY: &str = "ZDD_UPGRADE_READY";

/// Sends the notifications of the phases as `serving` and `unready` complete, until
/// aborted; `grace` is how much longer than usual systemd should wait for the stop.
pub(crate) async fn run(mut serving: PhaseReached, mut unready: PhaseReached, grace: Duration) {
    let parent = std::env::var_os(ENV_UPGRADE_READY);
    tokio::select! {
        biased;
        () = &mut unready => {}
        () = &mut serving => {
            systemd::ready();
            #[cfg(unix)]
            if let Some(parent) = &parent {
                tell_parent(parent);
            }
            unready.await;
        }
    }
    systemd::stopping(grace);
}

/// Tells the upgrading parent this process serves.
#[cfg(unix)]
fn tell_parent(socket: &std::ffi::OsStr) {
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|datagram| {
        datagram.send_to(
            format!("READY=1\nMAINPID={}\n", std::process::id()).as_bytes(),
            socket,
        )
    });
    match sent {
        Ok(_) => info!("upgrade: told the parent process this one is ready"),
        Err(error) => {
            warn!(error = %error, socket = ?socket, "upgrade: could not tell the parent process this one is ready");
        }
    }
}

/// Tells systemd a new main process took over (after an upgrade).
pub(crate) fn main_pid(pid: u32) {
    systemd::main_pid(pid);
}

#[cfg(all(feature = "systemd", unix))]
mod systemd {
    use sd_notify::NotifyState;

    use super::Duration;

    fn send(what: &'static str, states: &[NotifyState<'_>]) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        match sd_notify::notify(states) {
            Ok(()) => debug!(what, "told systemd"),
            Err(error) => warn!(what, error = %error, "could not notify systemd"),
        }
    }

    pub(super) fn ready() {
        send("READY=1", &[NotifyState::Ready]);
    }

    pub(super) fn stopping(grace: Duration) {
        let usec = u32::try_from(grace.as_micros()).unwrap_or(u32::MAX);
        send(
            "STOPPING=1",
            &[NotifyState::Stopping, NotifyState::ExtendTimeoutUsec(usec)],
        );
    }

    pub(super) fn main_pid(pid: u32) {
        send("MAINPID", &[NotifyState::MainPid(pid), NotifyState::Ready]);
    }
}

#[cfg(not(all(feature = "systemd", unix)))]
mod systemd {
    pub(super) fn ready() {}
    pub(super) fn stopping(_: super::Duration) {}
    pub(super) fn main_pid(_: u32) {}
}
