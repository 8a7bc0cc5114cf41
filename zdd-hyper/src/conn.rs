//! One connection: serve it with hyper-util's auto builder and apply the lifecycle's phases
//! and the connection deadlines to it.

use std::{
    future::Future,
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
    time::Duration,
};

use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::{Instant, Sleep, sleep_until},
};
use zdd_core::{ConnectionGuard, Protocol};

use crate::{
    HttpService,
    call::{ConnService, Insert},
    io::TrackedIo,
    side::SideWaker,
    state::ConnState,
};

/// The connection deadlines. See [`Serve`](crate::Serve) for what each means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) first_byte: Duration,
    pub(crate) first_request: Duration,
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    /// How long an HTTP/2 connection is still served at forcing, for the answers that end
    /// open streams then (`ZddLayer::end_forced_with`) to reach the client.
    pub(crate) flush_at_forcing: Duration,
    /// How long an HTTP/1 connection that answered a request a moment ago is left before
    /// the drain closes it: [`QUIET_BEFORE_CLOSE`], at most a quarter of the drain timeout.
    pub(crate) quiet: Duration,
    /// Whether the force wait is long enough (twice the quiet time) for a connection in its
    /// quiet time to notice forcing only at the end of it, without a wait for forcing of
    /// its own.
    pub(crate) quiet_within_force_wait: bool,
}

impl From<&zdd_core::Config> for Deadlines {
    /// The lifecycle's configured bounds (`ZDD_FIRST_BYTE_TIMEOUT`, …).
    fn from(config: &zdd_core::Config) -> Self {
        let quiet = QUIET_BEFORE_CLOSE.min(config.drain_timeout() / 4);
        Self {
            first_byte: config.first_byte_timeout(),
            first_request: config.first_request_timeout(),
            header: config.header_timeout(),
            idle: config.idle_timeout(),
            flush_at_forcing: FLUSH_AT_FORCING.min(config.force_wait() / 2),
            quiet,
            quiet_within_force_wait: config.force_wait() / 2 >= quiet,
        }
    }
}

/// How long an HTTP/1 connection must have been idle since its last answer before the
/// drain closes it while nothing is on it (at most a quarter of the drain timeout). A
/// client sends its next request on a kept-alive connection right after the last answer,
/// or a little later when its process was busy or paused (a garbage collection, a loaded
/// machine); a close in between loses that request (a client may retry only some requests,
/// RFC 9112 §9.6). Requests that do come are answered with `Connection: close`, which ends
/// the connection after the answer; a connection quiet this long is closed. Behind a load
/// balancer with a propagation delay at least this long it applies only to connections
/// whose streaming answers the drain ends: every other answer during the delay says
/// `Connection: close`, and an idle connection has been quiet for all of the delay.
const QUIET_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// The longest an HTTP/2 connection is still served at forcing (see
/// [`Deadlines::flush_at_forcing`]): writing a few trailers takes microseconds; this bounds
/// what a connection with a hung stream adds to forcing. At most half the force wait.
const FLUSH_AT_FORCING: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Accepted; no byte yet.
    FirstByte,
    /// Bytes came; the first request is not complete yet.
    FirstRequest,
    /// Serving; closed gracefully after `idle` without a new request.
    Idle,
    /// Draining an HTTP/1 connection that answered a request a moment ago, or whose next
    /// request's head is arriving: closed once it has been quiet for the quiet time
    /// ([`Deadlines::quiet`]), or by `Connection: close` on the next answer.
    Quieting,
    /// Graceful shutdown sent; the connection ends by itself or by forcing.
    Closing,
    /// Forcing came to an HTTP/2 connection: served until its streams' last answers are
    /// out, or its deadline.
    Flushing,
}

/// Serves one connection to its end. Its deadlines count from `accepted`.
pub(crate) async fn serve_connection<I, S>(
    io: I,
    guard: ConnectionGuard,
    service: S,
    builder: Arc<Builder<TokioExecutor>>,
    deadlines: Deadlines,
    accepted: Instant,
    insert: Option<Insert>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let state = Arc::new(ConnState::new(guard));
    let io = TrackedIo::new(
        io,
        Arc::clone(&state),
        deadlines.header,
        crate::linger::close::<I>,
    );
    let service = ConnService::new(service, Arc::clone(&state), insert);
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let first_request_deadline = accepted + deadlines.first_request;
    let mut deadline = pin!(sleep_until(
        first_request_deadline.min(accepted + deadlines.first_byte)
    ));
    let mut stage = Stage::FirstByte;
    // One phase to wait for at a time: the one to close gracefully in, by the connection's
    // protocol (see `ConnectionGuard::graceful_close`: draining until the first request
    // tells the protocol), then forcing, when the connection ends whatever it is doing.
    // Each phase's own milestone wakes the connection once, not at every transition, and
    // a connection closed gracefully never waits for forcing. (An upgraded connection
    // leaves this task; its stream wrapper wakes it at forcing.)
    let mut waiting = Some(state.guard.graceful_close());
    let mut forcing = false;
    let mut first_request = pin!(state.guard.first_request());
    // The first request, the phase and the deadline wake the task through their own waker:
    // a wake-up by the socket (every request) polls the connection alone.
    let mut side = SideWaker::new();

    std::future::poll_fn(|cx| {
        // Whether to poll the connection at the top of the loop: at every wake-up, and not
        // again right after an event that changed nothing of it (a deadline moved, a phase
        // waited for).
        let mut poll_conn = true;
        loop {
            // The connection first: bytes that arrived are read before any decision to
            // close. (Deciding first could close a connection whose next request had
            // arrived but was not read yet: the quiet time would see no request.)
            if std::mem::replace(&mut poll_conn, true)
                && let Poll::Ready(result) = conn.as_mut().poll(cx)
            {
                if let Err(error) = result {
                    tracing::debug!(target: "zdd", error = %error, "connection ended");
                }
                return Poll::Ready(());
            }
            if !side.woken(cx) {
                return Poll::Pending;
            }
            // Forcing is waited for only by a connection that did not end when told to
            // close; not in its quiet time, which ends within half the force wait (the
            // connection then closes, waits for forcing if a request came, or finds its
            // reads failing if a head is still arriving).
            let quiet =
                waiting.is_none() && stage == Stage::Quieting && deadlines.quiet_within_force_wait;
            let phase = match quiet {
                true => None,
                false => Some(waiting.get_or_insert_with(|| state.guard.io_fails())),
            };
            let event = {
                let cx = &mut side.context();
                if matches!(stage, Stage::FirstByte | Stage::FirstRequest)
                    && first_request.as_mut().poll(cx).is_ready()
                {
                    Event::FirstRequest
                } else if stage != Stage::Flushing
                    && let Some(phase) = phase
                    && Pin::new(phase).poll(cx).is_ready()
                {
                    Event::Phase
                } else if stage != Stage::Closing && deadline.as_mut().poll(cx).is_ready() {
                    Event::Deadline
                } else {
                    return Poll::Pending;
                }
            };
            let before = stage;
            // What the others wait for may have changed: poll them all again.
            side.again();
            match (event, stage) {
                (Event::Phase, _) if forcing && state.guard.protocol() == Some(Protocol::Http2) => {
                    stage = Stage::Flushing;
                    deadline
                        .as_mut()
                        .reset(Instant::now() + deadlines.flush_at_forcing);
                }
                (Event::Phase, _) if forcing => {
                    tracing::debug!(target: "zdd", "closing a connection at forcing");
                    return Poll::Ready(());
                }
                (Event::Deadline, Stage::Flushing) => {
                    tracing::debug!(target: "zdd", "closing an HTTP/2 connection at forcing");
                    return Poll::Ready(());
                }
                (Event::FirstRequest, _) => {
                    stage = Stage::Idle;
                    deadline.as_mut().reset(Instant::now() + deadlines.idle);
                    if forcing {
                        // Draining began before its first request: closed after the answer.
                        stage = begin_close(&state, deadline.as_mut(), deadlines.quiet, || {
                            conn.as_mut().graceful_shutdown();
                        });
                    } else if state.guard.protocol() == Some(Protocol::Http2) {
                        waiting = Some(state.guard.graceful_close());
                    }
                }
                (Event::Phase, Stage::FirstByte | Stage::FirstRequest) => {
                    // No request yet: it ends at its deadline, after its first answer, or
                    // at forcing.
                    forcing = true;
                    waiting = Some(state.guard.io_fails());
                }
                (Event::Phase, _) => {
                    stage = begin_close(&state, deadline.as_mut(), deadlines.quiet, || {
                        conn.as_mut().graceful_shutdown();
                    });
                    forcing = true;
                    waiting = None;
                }
                (Event::Deadline, Stage::Quieting) => {
                    stage = begin_close(&state, deadline.as_mut(), deadlines.quiet, || {
                        conn.as_mut().graceful_shutdown();
                    });
                }
                (Event::Deadline, Stage::FirstByte)
                    if state.first_byte_seen() && Instant::now() < first_request_deadline =>
                {
                    stage = Stage::FirstRequest;
                    deadline.as_mut().reset(first_request_deadline);
                }
                (Event::Deadline, Stage::FirstByte) if !state.first_byte_seen() => {
                    let timeout_ms = deadlines.first_byte.as_millis() as u64;
                    tracing::debug!(
                        target: "zdd",
                        timeout_ms,
                        "closing a connection that sent nothing"
                    );
                    return Poll::Ready(());
                }
                (Event::Deadline, Stage::FirstByte | Stage::FirstRequest) => {
                    let timeout_ms = deadlines.first_request.as_millis() as u64;
                    tracing::debug!(
                        target: "zdd",
                        timeout_ms,
                        "closing a connection whose first request did not arrive in time"
                    );
                    return Poll::Ready(());
                }
                (Event::Deadline, Stage::Idle) => {
                    let idle = state.guard.idle_for();
                    if idle >= deadlines.idle {
                        let idle_ms = idle.as_millis() as u64;
                        tracing::debug!(target: "zdd", idle_ms, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        stage = Stage::Closing;
                    } else {
                        deadline
                            .as_mut()
                            .reset(Instant::now() + (deadlines.idle - idle));
                    }
                }
                (Event::Deadline, Stage::Closing) => {}
            }
            // Told to shut down gracefully: polled at once to go on with it.
            poll_conn = stage == Stage::Closing && before != Stage::Closing;
        }
    })
    .await;
}

/// What woke a connection task, besides its socket.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// The first request's head is complete.
    FirstRequest,
    /// The phase waited for has come: the one to close gracefully in, or forcing.
    Phase,
    /// The current deadline passed.
    Deadline,
}

/// The stage of a connection told to close, after its socket was read: [`Stage::Quieting`],
/// with `deadline` at the end of its quiet time, when it answered a request a moment ago or
/// its next request's head is arriving (see [`still_busy`]); else [`Stage::Closing`], after
/// `shutdown` (hyper's graceful shutdown).
///
/// The socket has been read after the runtime's last look at the sockets' events: the drain
/// tells an HTTP/1 connection to close once the runtime has read them after it began (the
/// server's event turn, `crate::turn`; `ConnectionGuard::graceful_close`), and the quiet
/// time ends at a timer's turn, which comes after a read of the events too. A request that
/// had reached an idle connection's socket as the drain began is being served by then, not
/// cut off.
fn begin_close(
    state: &ConnState,
    deadline: Pin<&mut Sleep>,
    quiet: Duration,
    shutdown: impl FnOnce(),
) -> Stage {
    match still_busy(state, quiet) {
        Some(rest) => {
            deadline.reset(Instant::now() + rest);
            Stage::Quieting
        }
        None => {
            shutdown();
            Stage::Closing
        }
    }
}

/// How much longer to wait before closing an HTTP/1 connection gracefully, when nothing is
/// served on it: the rest of its `quiet` time, when it answered a request less than that
/// ago; all of it again while the next request's head is arriving (hyper would drop a head
/// it has not read whole; the header timeout bounds how long it may take). `None`: close
/// now (a request being served is finished first, and its answer says close).
fn still_busy(state: &ConnState, quiet: Duration) -> Option<Duration> {
    if state.open_head().is_some() {
        return Some(quiet);
    }
    state
        .http1_quiet_for()
        .and_then(|quiet_for| quiet.checked_sub(quiet_for))
        .filter(|rest| !rest.is_zero())
}
