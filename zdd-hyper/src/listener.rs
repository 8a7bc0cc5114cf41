//! Where connections come from: a small trait, open for TLS acceptors and other transports.

use std::{fmt, future::Future, io};

use tokio::io::{AsyncRead, AsyncWrite};

/// A source of connections for [`serve`](crate::serve).
///
/// Implemented for [`tokio::net::TcpListener`] (which also sets `TCP_NODELAY` on each
/// connection) and [`tokio::net::UnixListener`]. Implement it to put TLS or any other
/// transport in front of the same loop: accept the inner connection, do the handshake, and
/// return the stream.
///
/// `accept` must be cancel safe: during the drain, the loop polls it once more to serve
/// connections already waiting in the backlog, and drops it when nothing is ready.
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

    /// The local address.
    ///
    /// # Errors
    ///
    /// When the transport cannot tell.
    fn local_addr(&self) -> io::Result<Self::Addr>;
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

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Self::local_addr(self)
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        Self::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Self::local_addr(self)
    }
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
