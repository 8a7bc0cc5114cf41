//! The socket wrapper that holds a connection's guard, obeys forcing, and bounds how long a
//! later request's head may take to arrive.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep, sleep_until},
};
use zdd_core::{PhaseReached, Protocol};

use crate::state::ConnState;

/// A connection's stream, counted until it is dropped.
///
/// The connection's guard lives in the state this wrapper shares, not in the connection
/// task, so a connection handed to an upgraded protocol (a WebSocket) still counts, and
/// still obeys forcing: once the core says its I/O must fail (at forcing), every read and write
/// fails and the stream is closed. The connection task is woken at forcing by its own
/// wait; once upgraded, the stream has left that task, and a task waiting on a read or
/// write of it is woken here.
///
/// It also enforces the head deadline of every HTTP/1 request after the first (the first is
/// bounded from accept by the connection task): once bytes of a new request arrive on an
/// idle keep-alive connection, its head must be complete within the header timeout, or
/// reads fail and the connection closes. An idle connection has no such deadline; hyper's
/// own header timer cannot tell the two apart, as it starts when the connection goes idle.
/// The timer is armed only when a read finds the head incomplete, so a head that arrives
/// in one piece costs no clock read and no timer.
pub(crate) struct TrackedIo<I> {
    inner: Option<I>,
    /// Holds the connection's guard.
    state: Arc<ConnState>,
    /// The connection's protocol, once its first request told it. An HTTP/2 connection's
    /// stream needs none of the checks below: it stays open at forcing, has no request
    /// heads to time, and is never upgraded, so its reads and writes read no shared state.
    protocol: Option<Protocol>,
    /// Forcing, waited for once the connection is upgraded.
    forced: Option<PhaseReached>,
    header_timeout: Duration,
    /// The head deadline, and which head it was armed for.
    head_deadline: Option<(u64, Pin<Box<Sleep>>)>,
    /// Given the stream when this wrapper is dropped with it still open (see
    /// [`linger::close`](crate::linger::close)).
    on_drop: fn(I, Arc<ConnState>),
}

impl<I> TrackedIo<I> {
    pub(crate) fn new(
        inner: I,
        state: Arc<ConnState>,
        header_timeout: Duration,
        on_drop: fn(I, Arc<ConnState>),
    ) -> Self {
        Self {
            inner: Some(inner),
            state,
            protocol: None,
            forced: None,
            header_timeout,
            head_deadline: None,
            on_drop,
        }
    }

    /// Whether the connection speaks HTTP/2 (read from the guard until its first request
    /// has begun, then kept).
    #[inline(always)]
    fn is_http2(&mut self) -> bool {
        if self.protocol.is_none() {
            self.protocol = self.state.guard.protocol();
        }
        self.protocol == Some(Protocol::Http2)
    }

    /// Whether the head now arriving is past its deadline. Arms the deadline for a head
    /// seen for the first time; registers the task to be woken at it.
    fn head_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(head) = self.state.open_head() else {
            return false;
        };
        let armed = matches!(&self.head_deadline, Some((armed_for, _)) if *armed_for == head);
        if !armed {
            let at = Instant::now() + self.header_timeout;
            match &mut self.head_deadline {
                Some((armed_for, deadline)) => {
                    deadline.as_mut().reset(at);
                    *armed_for = head;
                }
                None => self.head_deadline = Some((head, Box::pin(sleep_until(at)))),
            }
        }
        self.head_deadline
            .as_mut()
            .is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready())
    }
}

fn head_timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request head not received within the header timeout",
    )
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection closed by forced shutdown",
    )
}

impl<I: Unpin> TrackedIo<I> {
    /// The stream, or an error once forcing has closed it. An HTTP/2 connection's stream
    /// stays open at forcing: its task serves it a moment longer, so the answers that end its
    /// open streams then go out, and closes it (`Deadlines::flush_at_forcing`).
    #[inline(always)]
    fn stream(&mut self) -> io::Result<Pin<&mut I>> {
        if !self.is_http2() && self.state.guard.must_fail_io() {
            self.inner = None;
        }
        self.inner.as_mut().map(Pin::new).ok_or_else(aborted)
    }

    /// Called when the stream is not ready. Once upgraded, also waits for forcing, so a
    /// task parked on this connection is woken when it has to close (before, the
    /// connection's task is, and polls it).
    #[inline]
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.forced.is_none() {
            if self.is_http2() || !self.state.guard.is_upgraded() {
                return Poll::Pending;
            }
            self.forced = Some(self.state.guard.io_fails());
        }
        let Some(forced) = &mut self.forced else {
            return Poll::Pending;
        };
        match Pin::new(forced).poll(cx) {
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
        if this.is_http2() {
            return this.stream()?.poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match this.stream()?.poll_read(cx, buf) {
            Poll::Pending if this.head_expired(cx) => {
                tracing::debug!(target: "zdd", timeout_ms = this.header_timeout.as_millis() as u64, "closing a connection whose request head did not arrive in time");
                this.inner = None;
                Poll::Ready(Err(head_timed_out()))
            }
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

impl<I> Drop for TrackedIo<I> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            (self.on_drop)(inner, Arc::clone(&self.state));
        }
    }
}
