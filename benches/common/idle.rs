//! An idle timeout for the peers' connections (`Protections::idle_timeout`), the least one
//! costs a request: a connection records the coarse clock when it reads bytes, and a task of
//! its own, asleep on one timer, closes it once it has been quiet for the timeout. The
//! connection's task is not woken by the timer, and a request touches no timer; but the
//! runtime's timer wheel is armed while the connection is open, as a zdd connection's is.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::oneshot,
    task::AbortHandle,
};

/// When a connection last read bytes, in coarse clock ticks.
pub(crate) type Activity = Arc<AtomicU64>;

pub(crate) fn activity() -> Activity {
    Arc::new(AtomicU64::new(now().as_ticks()))
}

fn now() -> coarsetime::Instant {
    coarsetime::Instant::now_without_cache_update()
}

pin_project! {
    /// A connection's stream, recording when it read bytes.
    pub(crate) struct ActiveIo<T> {
        #[pin]
        io: T,
        activity: Activity,
    }
}

impl<T> ActiveIo<T> {
    pub(crate) fn new(io: T, activity: Activity) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead> AsyncRead for ActiveIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.store(now().as_ticks(), Ordering::Relaxed);
        }
        read
    }
}

impl<T: AsyncWrite> AsyncWrite for ActiveIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Closes the connection (aborts its task) once it has read nothing for `idle`; returns when
/// it closed by itself (`closed` completes as its task drops the sender).
pub(crate) async fn watch(
    activity: Activity,
    idle: Duration,
    mut closed: oneshot::Receiver<()>,
    connection: AbortHandle,
) {
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            _ = &mut closed => return,
            () = tokio::time::sleep_until(deadline) => {
                let last = coarsetime::Instant::from_u64(activity.load(Ordering::Relaxed));
                let quiet: Duration = (now() - last).into();
                if quiet >= idle {
                    connection.abort();
                    return;
                }
                deadline = tokio::time::Instant::now() + (idle - quiet);
            }
        }
    }
}
