//! The admin listener: zdd's own small server for
//! [`AdminService`](zdd_core::AdminService) (probes, `/metrics`, `/prestop`,
//! `/maintenance`) and the services mounted beside it
//! ([`Serve::admin_route`](crate::Serve::admin_route), such as gRPC health), over HTTP/1.1
//! and HTTP/2 (h2c, for Kubernetes' gRPC probes).
//!
//! It knows nothing of the phases: its connections are not tracked, so they never hold the
//! drain open, and nothing closes them at the drain or when forcing. It stops when the
//! lifecycle's report exists ([`Serve`](crate::Serve) cancels it then), so it is closed
//! last. Each connection is bounded on its own: its request heads must arrive within
//! [`HEADER_TIMEOUT`], which also closes a connection idle that long. At most
//! [`MAX_CONNECTIONS`] are open at once: when a new one comes with all taken, the oldest is
//! asked to close (at once if idle, after its answer if not), so a flood of idle
//! connections cannot keep a probe waiting.

use std::{collections::VecDeque, fmt, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tokio_util::sync::CancellationToken;
use zdd_core::{Config, config::ENV_ADMIN_ADDR};

use crate::{admin_routes::AdminRoutes, backoff::Backoff, listener::is_connection_error};

/// Admin connections served at once. Probes and scrapes need a handful.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a request head may take, and an idle connection may stay open.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may take to finish its answer once the listener stops.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why the admin listener could not be opened.
#[derive(Debug)]
pub(crate) enum AdminError {
    /// The configured address is the public listener's.
    SameAsPublic { addr: SocketAddr },
    /// Binding failed (in use, not a local address, no permission).
    Bind { addr: SocketAddr, error: io::Error },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SameAsPublic { addr } => write!(
                f,
                "{ENV_ADMIN_ADDR}={addr} is the public listener's address: the admin listener needs a port of its own"
            ),
            Self::Bind { addr, error } => write!(
                f,
                "{ENV_ADMIN_ADDR}={addr}: cannot bind the admin listener: {error}"
            ),
        }
    }
}

/// The admin listener to serve: the one given, else the configured address's (inherited
/// in an upgrade, or bound), else none.
pub(crate) fn open(
    given: Option<TcpListener>,
    config: &Config,
    public: &[SocketAddr],
) -> Result<Option<TcpListener>, AdminError> {
    if given.is_some() {
        return Ok(given);
    }
    let Some(addr) = config.admin_addr() else {
        return Ok(None);
    };
    if public.iter().any(|public| overlaps(addr, *public)) {
        return Err(AdminError::SameAsPublic { addr });
    }
    crate::listen(addr, config)
        .map(Some)
        .map_err(|error| AdminError::Bind { addr, error })
}

/// Whether binding `a` would take the port `b` listens on.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Serves `service` on `listener` until `stop` is cancelled.
pub(crate) async fn run(listener: TcpListener, service: AdminRoutes, stop: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(target: "zdd", addr = ?addr, "admin listening");
    }
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Each open connection's token, oldest first; a connection cancels its own when it ends.
    let mut open: VecDeque<CancellationToken> = VecDeque::new();
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Backoff::default();
                open.retain(|connection| !connection.is_cancelled());
                let permit = match Arc::clone(&limit).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        if let Some(oldest) = open.pop_front() {
                            oldest.cancel();
                        }
                        tokio::select! {
                            biased;
                            () = stop.cancelled() => break,
                            permit = Arc::clone(&limit).acquire_owned() => match permit {
                                Ok(permit) => permit,
                                Err(_) => break,
                            },
                        }
                    }
                };
                let _ = stream.set_nodelay(true);
                let close = stop.child_token();
                open.push_back(close.clone());
                let service = AdminRoutes {
                    admin: service.admin.clone().peer(peer),
                    mounted: Arc::clone(&service.mounted),
                };
                tokio::spawn(serve_connection(stream, service, close, permit));
            }
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                let pause = backoff.next();
                tracing::error!(target: "zdd", error = %error, retry_in_ms = pause.as_millis() as u64, "admin accept failed");
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    drop(listener);
    tracing::info!(target: "zdd", "admin listener closed");
}

/// Serves one connection until it ends, or closes it gracefully once `close` is cancelled
/// (the listener stops, or the connection is the oldest when the limit is reached).
async fn serve_connection(
    stream: TcpStream,
    service: AdminRoutes,
    close: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let _ended = close.clone().drop_guard();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    // An HTTP/2 connection (a gRPC probe) is bounded by the connection limit's eviction and
    // by the listener's end, as an idle HTTP/1 one is by the header timeout.
    builder.http2().timer(TokioTimer::new());
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = close.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_WAIT, connection).await;
        }
    }
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_overlaps_the_same_port_on_the_same_or_any_address() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(at("0.0.0.0:3000"), at("0.0.0.0:3000")));
        assert!(overlaps(at("127.0.0.1:3000"), at("0.0.0.0:3000")));
        assert!(overlaps(at("0.0.0.0:3000"), at("127.0.0.1:3000")));
        assert!(!overlaps(at("0.0.0.0:9000"), at("0.0.0.0:3000")));
        assert!(!overlaps(at("127.0.0.1:3000"), at("127.0.0.2:3000")));
        assert!(!overlaps(at("127.0.0.1:0"), at("127.0.0.1:0")));
    }
}
