//! In-place upgrades: on request, start the program at its own path again with copies of
//! the listening sockets, and hand over once the new process says it is ready.
//!
//! The new process gets the sockets at descriptors 3, 4, … with `LISTEN_FDS` and
//! `LISTEN_FDNAMES` (no `LISTEN_PID`: it is not known before the process starts), so
//! [`listen`](crate::listen) in the new process takes them, and [`ENV_UPGRADE_READY`]
//! naming a Unix datagram socket where its lifecycle says `READY=1` once it serves. Until
//! then this process serves as before; whatever happens to the new one (it exits, it is not
//! ready within the upgrade timeout, it cannot be started), this one serves on. The copies
//! of the sockets are let go when draining starts, so they never keep a listener open past
//! the drain.

use std::{ffi::OsString, fmt, os::fd::OwnedFd, path::PathBuf, sync::OnceLock, time::Duration};

use command_fds::{CommandFdExt, FdMapping};
use tokio::net::UnixDatagram;
use zdd_core::{LifecycleHandle, upgrade::ENV_UPGRADE_READY};

/// How long a new process that failed is given to end after it is killed.
const KILL_WAIT: Duration = Duration::from_secs(1);

/// The program this process runs and its arguments, read once, before anything could
/// replace the file: a new binary installed at the same path is what an upgrade starts.
fn program() -> &'static Option<(PathBuf, Vec<OsString>)> {
    static PROGRAM: OnceLock<Option<(PathBuf, Vec<OsString>)>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let path = std::env::current_exe().ok()?;
        Some((path, std::env::args_os().skip(1).collect()))
    })
}

/// Reads the program's path now, at startup, so a later upgrade starts what is installed
/// at that path then.
pub(crate) fn remember_program() {
    let _ = program();
}

/// A listening socket to hand over, and its name in `LISTEN_FDNAMES`.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) name: String,
    pub(crate) fd: OwnedFd,
}

/// Why an upgrade did not take over.
#[derive(Debug)]
enum Failed {
    NoProgram,
    Start(PathBuf, std::io::Error),
    Exited(std::process::ExitStatus),
    NotReady(Duration),
    Shutdown,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProgram => f.write_str("the path of this program is unknown"),
            Self::Start(path, error) => write!(f, "could not start {}: {error}", path.display()),
            Self::Exited(status) => {
                write!(f, "the new process exited before it was ready ({status})")
            }
            Self::NotReady(timeout) => write!(
                f,
                "the new process was not ready within {timeout:?} (ZDD_UPGRADE_TIMEOUT); stopped it"
            ),
            Self::Shutdown => {
                f.write_str("shutdown began during the upgrade; stopped the new process")
            }
        }
    }
}

/// Serves upgrade requests until one takes over or draining starts.
pub(crate) async fn run(handle: LifecycleHandle, sockets: Vec<Socket>) {
    let mut requests = handle.upgrade_requests();
    let mut draining = handle.stop_accepting();
    let timeout = handle.config().upgrade_timeout();
    loop {
        tokio::select! {
            biased;
            () = &mut draining => return,
            () = requests.next() => {}
        }
        let attempt = attempt(&sockets, timeout);
        let outcome = tokio::select! {
            biased;
            () = &mut draining => Err(Failed::Shutdown),
            outcome = attempt => outcome,
        };
        match outcome {
            Ok(pid) => {
                requests.succeeded(pid);
                return;
            }
            Err(why) => requests.failed(&why),
        }
        if handle.is_shutting_down() {
            return;
        }
    }
}

/// Starts the new process and waits until it is ready: its pid.
async fn attempt(sockets: &[Socket], timeout: Duration) -> Result<u32, Failed> {
    let Some((program, args)) = program() else {
        return Err(Failed::NoProgram);
    };
    let dir = ReadyDir::create().map_err(|e| Failed::Start(program.clone(), e))?;
    let ready = UnixDatagram::bind(dir.socket()).map_err(|e| Failed::Start(program.clone(), e))?;
    let mut command = tokio::process::Command::new(program);
    let names: Vec<&str> = sockets.iter().map(|socket| socket.name.as_str()).collect();
    command
        .args(args)
        .env("LISTEN_FDS", sockets.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS_FIRST_FD")
        .env(ENV_UPGRADE_READY, dir.socket());
    let mut mappings = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.iter().enumerate() {
        let parent_fd = socket
            .fd
            .try_clone()
            .map_err(|e| Failed::Start(program.clone(), e))?;
        mappings.push(FdMapping {
            parent_fd,
            child_fd: 3 + i32::try_from(index).unwrap_or(0),
        });
    }
    command
        .fd_mappings(mappings)
        .map_err(|e| Failed::Start(program.clone(), std::io::Error::other(e)))?;
    let mut child = command
        .spawn()
        .map_err(|e| Failed::Start(program.clone(), e))?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(target: "zdd", pid, program = %program.display(), sockets = ?names, "upgrade: started the new process; waiting until it is ready");

    let mut message = [0; 256];
    let outcome = tokio::select! {
        status = child.wait() => Err(match status {
            Ok(status) => Failed::Exited(status),
            Err(error) => Failed::Start(program.clone(), error),
        }),
        () = ready_from(&ready, &mut message) => Ok(pid),
        () = tokio::time::sleep(timeout) => Err(Failed::NotReady(timeout)),
    };
    if outcome.is_err() {
        // A new process that did not take over must not linger on the sockets.
        let _ = child.start_kill();
        let _ = tokio::time::timeout(KILL_WAIT, child.wait()).await;
    }
    outcome
}

/// Completes when a `READY=1` datagram arrives.
async fn ready_from(socket: &UnixDatagram, buffer: &mut [u8]) {
    loop {
        match socket.recv(buffer).await {
            Ok(n)
                if String::from_utf8_lossy(&buffer[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(target: "zdd", error = %error, "upgrade: reading the new process's notification failed");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A private directory for the readiness socket, removed on drop.
struct ReadyDir(PathBuf);

impl ReadyDir {
    fn create() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zdd-upgrade-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("ready.sock")
    }
}

impl Drop for ReadyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
