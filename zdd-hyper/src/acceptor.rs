//! The per-connection accept step: what runs on each accepted stream before HTTP is served
//! (a TLS handshake, a PROXY protocol header), in the connection's own task.
//!
//! The loop never waits for it: one client that connects and never sends a byte delays no
//! other. The connection counts as open from accept, so a handshake in progress when the
//! shutdown starts completes during the propagation delay and its requests are served; the
//! step is bounded by the first-byte timeout (counted from accept) and ends when forcing
//! starts.

use std::{
    future::Future,
    io,
    pin::pin,
    task::{Context, Poll, Waker},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, timeout_at},
};
use zdd_core::ConnectionGuard;

/// A step run on each accepted connection before HTTP is served, such as a TLS handshake.
///
/// It runs in the connection's own task, so the loop never waits for it; the connection
/// counts from accept, and the step is bounded by the first-byte timeout and by forcing.
/// Set it with [`Serve::acceptor`](crate::Serve::acceptor); the default,
/// [`DefaultAcceptor`], serves the stream as it is.
///
/// # Examples
///
/// A step that requires each client to send a one-line greeting before its HTTP:
///
/// ```
/// use std::io;
/// use tokio::{io::AsyncBufReadExt, net::TcpStream};
/// use zdd_hyper::Acceptor;
///
/// struct Greeting;
///
/// impl Acceptor<TcpStream> for Greeting {
///     type Stream = tokio::io::BufReader<TcpStream>;
///
///     async fn accept(&self, stream: TcpStream) -> io::Result<Self::Stream> {
///         let mut stream = tokio::io::BufReader::new(stream);
///         let mut line = String::new();
///         stream.read_line(&mut line).await?;
///         match line.as_str() {
///             "hello\n" => Ok(stream),
///             _ => Err(io::Error::new(io::ErrorKind::InvalidData, "no greeting")),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let app = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
/// });
/// let lifecycle = zdd_core::Lifecycle::new(zdd_core::Config::default());
/// # lifecycle.handle().shutdown();
/// let report = zdd_hyper::serve(listener, app, lifecycle).acceptor(Greeting).await;
/// assert!(report.is_graceful());
/// # Ok(())
/// # }
/// ```
pub trait Acceptor<I>: Send + Sync + 'static {
    /// The stream HTTP is served on.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Turns an accepted stream into the one to serve. An error closes the connection
    /// (logged at debug level).
    fn accept(&self, stream: I) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Serves each accepted stream as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultAcceptor;

impl<I> Acceptor<I> for DefaultAcceptor
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = I;

    async fn accept(&self, stream: I) -> io::Result<I> {
        Ok(stream)
    }
}

/// Runs `acceptor` on `stream`, bounded by `deadline` and by forcing: the stream to serve,
/// or `None` when the connection is to be closed.
pub(crate) async fn accept<A, I>(
    acceptor: &A,
    stream: I,
    guard: &ConnectionGuard,
    deadline: Instant,
) -> Option<A::Stream>
where
    A: Acceptor<I>,
{
    let mut step = pin!(acceptor.accept(stream));
    // Most steps (the default one) are done at once: no timer, no phase waiter for them.
    let first = step.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => {
            tokio::select! {
                biased;
                () = guard.io_fails() => {
                    tracing::debug!(target: "zdd", "closing a connection whose accept step had not finished: forcing");
                    return None;
                }
                result = timeout_at(deadline, step) => match result {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::debug!(target: "zdd", "closing a connection whose accept step did not finish within the first-byte timeout");
                        return None;
                    }
                },
            }
        }
    };
    match result {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::debug!(target: "zdd", error = %error, "closing a connection whose accept step failed");
            None
        }
    }
}
