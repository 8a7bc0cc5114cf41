//! The socket wrapper that holds a connection's guard and obeys forcing.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zdd_core::{Phase, PhaseReached};

use crate::conn::ConnState;

/// A connection's stream, counted until it is dropped.
///
/// The connection's guard lives in the state this wrapper shares, not in the connection
/// task, so a connection handed to an upgraded protocol (a WebSocket) still counts, and
/// still obeys forcing: once the lifecycle reaches [`Phase::Forcing`], every read and write
/// fails and the stream is closed, and a task waiting on a read or write is woken to see it.
pub(crate) struct TrackedIo<I> {
    inner: Option<I>,
    /// Holds the connection's guard.
    state: Arc<ConnState>,
    forced: PhaseReached,
}

impl<I> TrackedIo<I> {
    pub(crate) fn new(inner: I, state: Arc<ConnState>, forced: PhaseReached) -> Self {
        Self {
            inner: Some(inner),
            state,
            forced,
        }
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by forced shutdown",
    )
}

impl<I: Unpin> TrackedIo<I> {
    /// The stream, or an error once forcing has closed it.
    fn stream(&mut self) -> io::Result<Pin<&mut I>> {
        if self.state.guard.phase() >= Phase::Forcing {
            self.inner = None;
        }
        self.inner.as_mut().map(Pin::new).ok_or_else(aborted)
    }

    /// Called when the stream is not ready: also wait for forcing, so a task parked on this
    /// connection is woken when it has to close.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match Pin::new(&mut self.forced).poll(cx) {
            Poll::Ready(()) => {
                self.inner = None;
                Poll::Ready(Err(aborted()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for TrackedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match this.stream()?.poll_read(cx, buf) {
            Poll::Pending => this.pending(cx),
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.saw_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TrackedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.stream()?.poll_write(cx, buf) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.stream()?.poll_write_vectored(cx, bufs) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(I::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.stream()?.poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.stream()?.poll_shutdown(cx) {
            Poll::Pending => this.pending(cx),
            ready => ready,
        }
    }
}
