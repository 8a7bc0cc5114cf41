//! Where connections come from: a small trait, open for TLS acceptors and other transports,
//! and [`bind`], which opens a TCP listener with a backlog sized for a server.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::pin,
    task::{Context, Poll, Waker},
};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::either::Either;

/// A source of connections for [`serve`](crate::serve).
///
/// Implemented for [`tokio::net::TcpListener`] (which also sets `TCP_NODELAY` on each
/// connection) and [`tokio::net::UnixListener`]. Implement it to put TLS or any other
/// transport in front of the same loop: accept the inner connection, do the handshake, and
/// return the stream.
///
/// `accept` must be cancel safe: the loop drops it when draining starts. During the drain
/// the loop takes what the kernel already queued with [`Listener::accept_queued`], then
/// closes the listener.
///
/// # Examples
///
/// A listener that counts what it accepts, served like any other:
///
/// ```
/// use std::{convert::Infallible, io};
/// use tokio::net::{TcpListener, TcpStream};
/// use zdd_core::{Config, Lifecycle};
/// use zdd_hyper::Listener;
///
/// struct Counting {
///     inner: TcpListener,
///     accepted: u64,
/// }
///
/// impl Listener for Counting {
///     type Io = TcpStream;
///     type Addr = std::net::SocketAddr;
///
///     async fn accept(&mut self) -> io::Result<(TcpStream, std::net::SocketAddr)> {
///         let accepted = self.inner.accept().await?;
///         self.accepted += 1;
///         Ok(accepted)
///     }
///
///     fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
///         self.inner.local_addr()
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> io::Result<()> {
/// let listener = Counting { inner: TcpListener::bind("127.0.0.1:0").await?, accepted: 0 };
/// let lifecycle = Lifecycle::new(Config::default());
/// # lifecycle.handle().shutdown();
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// });
/// let report = zdd_hyper::serve(listener, app, lifecycle).await;
/// assert!(report.is_graceful());
/// # Ok(())
/// # }
/// ```
pub trait Listener: Send + 'static {
    /// The connection's stream.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The peer's address.
    type Addr: fmt::Debug + Send + 'static;

    /// Accepts the next connection.
    ///
    /// # Errors
    ///
    /// The transport's accept error. Errors about one connection (reset before accept,
    /// aborted) are skipped by the loop; others are logged and retried after a short pause.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// Takes a connection that is already waiting, without waiting for one: `None` when
    /// nothing is queued.
    ///
    /// The drain calls this until it returns `None` before it closes the listener, because
    /// closing a listener resets every connection still in its queue. The TCP and Unix
    /// listeners ask the kernel directly (an `accept` system call on the listening socket),
    /// so a connection queued a moment ago is found even before the runtime has seen the
    /// socket turn readable. The default polls [`Listener::accept`] once, which only finds
    /// what the runtime already knows of: override it when the transport can ask its
    /// source directly.
    ///
    /// # Errors
    ///
    /// As [`Listener::accept`]. Running out of file descriptors is an error here too: the
    /// loop then waits for connections to close and asks again, rather than closing the
    /// listener on a full queue.
    fn accept_queued(&mut self) -> Option<io::Result<(Self::Io, Self::Addr)>> {
        let mut accept = pin!(self.accept());
        match accept
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(accepted) => Some(accepted),
            Poll::Pending => None,
        }
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// When the transport cannot tell.
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// The IP address and port clients reach this listener on, for a network listener;
    /// `None` (the default) for other transports, such as Unix sockets. The loop hands it
    /// to [`LifecycleHandle::listening_on`](zdd_core::LifecycleHandle::listening_on), which
    /// warns when a service reachable from the network has no propagation delay.
    fn network_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// The listening socket itself, for an in-place upgrade, which hands a copy of it to the
    /// new process (see [`Serve`](crate::Serve)); `None` (the default) when the transport
    /// cannot be handed over, which makes upgrades unavailable.
    #[cfg(unix)]
    fn as_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (stream, addr) = Self::accept(self).await?;
        // Small responses should not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok((stream, addr))
    }

    #[cfg(unix)]
    fn accept_queued(&mut self) -> Option<io::Result<(Self::Io, Self::Addr)>> {
        queued(self, |socket| {
            let stream = Self::Io::from_std(socket.into())?;
            let _ = stream.set_nodelay(true);
            let addr = stream.peer_addr()?;
            Ok((stream, addr))
        })
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Self::local_addr(self)
    }

    fn network_addr(&self) -> Option<SocketAddr> {
        Self::local_addr(self).ok()
    }

    #[cfg(unix)]
    fn as_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        Self::accept(self).await
    }

    fn accept_queued(&mut self) -> Option<io::Result<(Self::Io, Self::Addr)>> {
        queued(self, |socket| {
            let stream = Self::Io::from_std(socket.into())?;
            let addr = stream.peer_addr()?;
            Ok((stream, addr))
        })
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Self::local_addr(self)
    }

    fn as_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(self))
    }
}

/// Two kinds of listener served as one (with [`Serve::also`](crate::Serve::also) for the
/// second): TCP and Unix, say. Each connection is the one kind or the other.
impl<A: Listener, B: Listener> Listener for Either<A, B> {
    type Io = Either<A::Io, B::Io>;
    type Addr = Either<A::Addr, B::Addr>;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        match self {
            Self::Left(a) => a
                .accept()
                .await
                .map(|(io, addr)| (Either::Left(io), Either::Left(addr))),
            Self::Right(b) => b
                .accept()
                .await
                .map(|(io, addr)| (Either::Right(io), Either::Right(addr))),
        }
    }

    fn accept_queued(&mut self) -> Option<io::Result<(Self::Io, Self::Addr)>> {
        match self {
            Self::Left(a) => a
                .accept_queued()
                .map(|r| r.map(|(io, addr)| (Either::Left(io), Either::Left(addr)))),
            Self::Right(b) => b
                .accept_queued()
                .map(|r| r.map(|(io, addr)| (Either::Right(io), Either::Right(addr)))),
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match self {
            Self::Left(a) => a.local_addr().map(Either::Left),
            Self::Right(b) => b.local_addr().map(Either::Right),
        }
    }

    fn network_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Left(a) => a.network_addr(),
            Self::Right(b) => b.network_addr(),
        }
    }

    #[cfg(unix)]
    fn as_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match self {
            Self::Left(a) => a.as_socket(),
            Self::Right(b) => b.as_socket(),
        }
    }
}

/// One `accept` system call on a non-blocking listening socket, the accepted socket made
/// non-blocking and handed to `into`: `None` when the queue is empty.
#[cfg(unix)]
fn queued<T>(
    listener: &impl std::os::fd::AsFd,
    into: impl FnOnce(socket2::Socket) -> io::Result<T>,
) -> Option<io::Result<T>> {
    match socket2::SockRef::from(listener).accept() {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => None,
        Err(error) => Some(Err(error)),
        Ok((socket, _)) => Some(socket.set_nonblocking(true).and_then(|()| into(socket))),
    }
}

/// The listen backlog [`bind`] asks for when the system's limit cannot be read.
const FALLBACK_BACKLOG: u32 = 1024;

/// Binds a TCP listener for a server: `SO_REUSEADDR` (so a restarted server can bind while
/// old connections linger in `TIME_WAIT`) and a listen backlog as large as the system allows
/// (`net.core.somaxconn`, 4096 on current Linux; 1024 where it cannot be read).
///
/// `tokio::net::TcpListener::bind` asks for a backlog of 128, which a burst of connections
/// overflows: the kernel then drops connection attempts before the server ever sees them.
///
/// # Errors
///
/// When the socket cannot be created, bound (the address is in use, or not local) or put
/// in the listening state.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = zdd_hyper::bind("127.0.0.1:0".parse().unwrap())?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(())
/// # }
/// ```
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    bind_sharing(addr, false)
}

/// [`bind`], with `SO_REUSEPORT` when `share_port` is set (on Unix).
pub(crate) fn bind_sharing(
    addr: SocketAddr,
    share_port: bool,
) -> io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if share_port {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = share_port;
    socket.bind(addr)?;
    socket.listen(backlog())
}

/// The system's largest listen backlog, or [`FALLBACK_BACKLOG`].
fn backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|limit| limit.trim().parse::<u32>().ok())
        .filter(|limit| *limit > 0)
        .map_or(FALLBACK_BACKLOG, |limit| limit.min(i32::MAX as u32))
}

/// Errors about a single connection, after which accepting can go on at once.
pub(crate) fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
