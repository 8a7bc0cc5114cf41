//! The restart-safe way to get a listener: [`listen`] takes a socket the process inherited
//! (systemd socket activation, or a zdd parent handing its sockets over in an upgrade) and
//! binds one itself only when none matches, with `SO_REUSEPORT` when configured.
//!
//! Inherited sockets come through the socket-activation environment: `LISTEN_FDS` (how
//! many, starting at descriptor 3), `LISTEN_FDNAMES` (their names, optional) and
//! `LISTEN_PID` (the process they are meant for; when set, it must be this one, as systemd
//! sets it; a zdd parent leaves it unset, which the `listenfd` crate accepts). They are
//! read once, by the first call, and each is taken by the call asking for its address.

use std::{
    io,
    net::SocketAddr,
    sync::{Mutex, OnceLock},
};

use tokio::net::TcpListener;
use zdd_core::Config;

/// One socket inherited from the environment, not yet taken.
#[derive(Debug)]
struct Inherited {
    fd: i32,
    name: String,
    listener: std::net::TcpListener,
    addr: SocketAddr,
}

/// The inherited sockets, or why the environment describing them is wrong.
type Registry = Result<Vec<Inherited>, String>;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(from_env()))
}

/// Reads the socket-activation environment (once per process: `listenfd` removes it, so
/// child processes do not inherit it).
fn from_env() -> Registry {
    let var = |key: &str| std::env::var(key).ok();
    let Some(count) = var("LISTEN_FDS") else {
        return Ok(Vec::new());
    };
    let count: usize = count
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS: not a number of descriptors: {count:?}"))?;
    if let Some(pid) = var("LISTEN_PID").filter(|pid| !pid.is_empty())
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        tracing::warn!(target: "zdd", listen_pid = %pid, pid = std::process::id(), "LISTEN_PID names another process: the inherited sockets are not for this one and are ignored");
        return Ok(Vec::new());
    }
    let names: Vec<String> = match var("LISTEN_FDNAMES") {
        Some(names) => names.split(':').map(str::to_owned).collect(),
        None => vec!["unknown".to_owned(); count],
    };
    if names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS says {count}",
            names.len()
        ));
    }
    let first = var("LISTEN_FDS_FIRST_FD")
        .and_then(|fd| fd.parse::<i32>().ok())
        .unwrap_or(3);
    let mut descriptors = listenfd::ListenFd::from_env();
    let mut inherited = Vec::with_capacity(count);
    for (index, name) in names.into_iter().enumerate() {
        let fd = first + i32::try_from(index).unwrap_or(i32::MAX);
        let described = |problem: &dyn std::fmt::Display| {
            format!("inherited descriptor {fd} ({name}): {problem}")
        };
        let listener = match descriptors.take_tcp_listener(index) {
            Ok(Some(listener)) => listener,
            Ok(None) => return Err(described(&"already taken")),
            Err(error) => return Err(described(&error)),
        };
        #[cfg(target_os = "linux")]
        if !socket2::SockRef::from(&listener)
            .is_listener()
            .map_err(|e| described(&e))?
        {
            return Err(described(&"not a listening socket"));
        }
        // Sockets from a service manager are blocking; tokio needs them non-blocking.
        listener.set_nonblocking(true).map_err(|e| described(&e))?;
        let addr = listener.local_addr().map_err(|e| described(&e))?;
        inherited.push(Inherited {
            fd,
            name,
            listener,
            addr,
        });
    }
    Ok(inherited)
}

/// Whether a socket bound to `have` serves what `want` asks for.
fn serves(have: SocketAddr, want: SocketAddr) -> bool {
    have == want
        || (have.port() == want.port()
            && (want.ip().is_unspecified() || have.ip().is_unspecified()))
}

/// A TCP listener for `addr`, safe across restarts in place.
///
/// 1. A socket inherited from systemd socket activation or from a zdd parent in an
///    upgrade, bound to `addr` (or to the same port on any address), if there is one. Its
///    connections survive the restart: the socket never closed.
/// 2. Otherwise a new socket, bound as [`bind`](crate::bind) does, with `SO_REUSEPORT` too
///    when [`Config::reuse_port`] is set (`ZDD_REUSE_PORT=true`), so a replacement process
///    can bind the same port while this one drains.
///
/// # Errors
///
/// When the inherited sockets are described wrongly (`LISTEN_FDNAMES` not matching
/// `LISTEN_FDS`, a descriptor that is not a TCP listening socket; the error names it), and
/// when binding fails.
///
/// # Examples
///
/// ```
/// use zdd_core::Config;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = zdd_hyper::listen("127.0.0.1:0".parse().unwrap(), &Config::default())?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(())
/// # }
/// ```
pub fn listen(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let taken = {
        let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
        let inherited = registry
            .as_mut()
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.clone()))?;
        let found = inherited
            .iter()
            .position(|socket| serves(socket.addr, addr));
        if found.is_none() && !inherited.is_empty() {
            let addrs: Vec<_> = inherited.iter().map(|s| s.addr.to_string()).collect();
            tracing::warn!(target: "zdd", addr = %addr, inherited = ?addrs, "no inherited socket is bound to the address asked for; binding it");
        }
        found.map(|index| inherited.remove(index))
    };
    match taken {
        Some(socket) => {
            tracing::info!(target: "zdd", addr = %socket.addr, fd = socket.fd, name = %socket.name, "listening on an inherited socket");
            TcpListener::from_std(socket.listener)
        }
        None => crate::listener::bind_sharing(addr, config.reuse_port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_socket_serves_its_port_on_any_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(serves(at("0.0.0.0:3000"), at("0.0.0.0:3000")));
        assert!(serves(at("127.0.0.1:3000"), at("0.0.0.0:3000")));
        assert!(serves(at("0.0.0.0:3000"), at("127.0.0.1:3000")));
        assert!(!serves(at("0.0.0.0:9000"), at("0.0.0.0:3000")));
        assert!(!serves(at("127.0.0.1:3000"), at("127.0.0.2:3000")));
    }
}
