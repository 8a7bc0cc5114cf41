//! One connection: serve it with hyper-util's auto builder and apply the lifecycle's phases
//! and the connection deadlines to it.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{Method, Request, Response, Version};
use hyper::{body::Incoming, service::Service};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::Notify,
    time::{Instant, sleep_until},
};
use zdd_core::{ConnectionGuard, LifecycleHandle, Phase, PhaseReached, Protocol};

use crate::{
    HttpService,
    io::TrackedIo,
    response::{ResponseBody, ResponseFuture, Watched},
};

/// The connection deadlines. See [`Serve`](crate::Serve) for what each means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    pub(crate) first_byte: Duration,
    pub(crate) first_request: Duration,
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
}

/// What the connection task needs to know about traffic it does not see itself. Written by
/// the stream wrapper and the per-connection service with plain loads and stores; the only
/// read-modify-write is on the first request.
///
/// It also holds the connection's guard, so the connection counts as long as anything of it
/// lives: the stream wrapper keeps it alive through an upgrade.
///
/// The flags below are each written by one side at a time (the connection task, or the
/// response body that hyper drops in that task), so plain relaxed loads and stores suffice.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) guard: ConnectionGuard,
    first_byte: AtomicBool,
    request_seen: AtomicBool,
    http2: AtomicBool,
    /// An HTTP/1 request is being served: its head is complete, its response not yet over.
    in_request: AtomicBool,
    /// Bytes of the next HTTP/1 request's head have arrived; the head is not complete.
    head_open: AtomicBool,
    /// The connection was handed to another protocol (`101`, or a `CONNECT` tunnel): its
    /// bytes are no longer HTTP/1 request heads.
    upgraded: AtomicBool,
    /// Request heads completed, which tells one open head from the next.
    heads: AtomicU64,
    /// Coarse clock ticks of the last request's arrival.
    last_request: AtomicU64,
    first_request: Notify,
}

impl ConnState {
    fn new(guard: ConnectionGuard) -> Self {
        Self {
            guard,
            first_byte: AtomicBool::new(false),
            request_seen: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            in_request: AtomicBool::new(false),
            head_open: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            heads: AtomicU64::new(0),
            last_request: AtomicU64::new(0),
            first_request: Notify::new(),
        }
    }

    /// Bytes were read. Between two HTTP/1 requests, they start the next request's head.
    #[inline]
    pub(crate) fn saw_bytes(&self) {
        if !self.first_byte.load(Ordering::Relaxed) {
            self.first_byte.store(true, Ordering::Relaxed);
        }
        if self.request_seen.load(Ordering::Relaxed)
            && !self.http2.load(Ordering::Relaxed)
            && !self.in_request.load(Ordering::Relaxed)
            && !self.upgraded.load(Ordering::Relaxed)
        {
            self.head_open.store(true, Ordering::Relaxed);
        }
    }

    /// While a later HTTP/1 request's head is arriving, which head it is.
    #[inline]
    pub(crate) fn open_head(&self) -> Option<u64> {
        self.head_open
            .load(Ordering::Relaxed)
            .then(|| self.heads.load(Ordering::Relaxed))
    }

    /// A request's head is complete. Returns whether the connection speaks HTTP/1, whose
    /// responses are watched to their end.
    #[inline]
    fn saw_request(&self, version: Version) -> bool {
        let now = coarsetime::Instant::now_without_cache_update().as_ticks();
        self.last_request.store(now, Ordering::Relaxed);
        if !self.request_seen.load(Ordering::Relaxed)
            && !self.request_seen.swap(true, Ordering::AcqRel)
        {
            let http2 = version == Version::HTTP_2;
            self.http2.store(http2, Ordering::Relaxed);
            self.guard.set_protocol(if http2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            });
            self.first_request.notify_one();
        }
        if version == Version::HTTP_2 {
            return false;
        }
        self.in_request.store(true, Ordering::Relaxed);
        self.head_open.store(false, Ordering::Relaxed);
        let heads = self.heads.load(Ordering::Relaxed);
        self.heads.store(heads.wrapping_add(1), Ordering::Relaxed);
        true
    }

    /// An HTTP/1 response is over (written, failed or dropped).
    #[inline]
    pub(crate) fn response_ended(&self) {
        self.in_request.store(false, Ordering::Relaxed);
    }

    /// The connection now carries another protocol.
    pub(crate) fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = coarsetime::Instant::from_u64(self.last_request.load(Ordering::Relaxed));
        (coarsetime::Instant::now_without_cache_update() - last).into()
    }
}

/// The hyper service of one connection: notes each request's arrival, then calls the
/// (layered) tower service.
#[derive(Debug, Clone)]
struct ConnService<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let watched = self.state.saw_request(request.version()).then(|| Watched {
            state: Arc::clone(&self.state),
            connect: request.method() == Method::CONNECT,
        });
        ResponseFuture::new(self.inner.call(request), watched)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Accepted; no byte yet.
    FirstByte,
    /// Bytes came; the first request is not complete yet.
    FirstRequest,
    /// Serving; closed gracefully after `idle` without a new request.
    Idle,
    /// Graceful shutdown sent; the connection ends by itself or by forcing.
    Closing,
}

/// Serves one connection to its end.
pub(crate) async fn serve_connection<I, S>(
    io: I,
    guard: ConnectionGuard,
    service: S,
    builder: Arc<Builder<TokioExecutor>>,
    handle: LifecycleHandle,
    deadlines: Deadlines,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let accepted = Instant::now();
    let state = Arc::new(ConnState::new(guard));
    let io = TrackedIo::new(
        io,
        Arc::clone(&state),
        handle.reached(Phase::Forcing),
        deadlines.header,
    );
    let service = ConnService {
        inner: TowerToHyperService::new(service),
        state: Arc::clone(&state),
    };
    let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let first_request_deadline = accepted + deadlines.first_request;
    let mut deadline = pin!(sleep_until(
        first_request_deadline.min(accepted + deadlines.first_byte)
    ));
    let mut stage = Stage::FirstByte;
    // The one phase this connection acts on, known once its first request shows the
    // protocol: HTTP/2 gets its GOAWAY when shutdown starts (so clients open their next
    // streams elsewhere); HTTP/1 is told with `Connection: close` on each response, and an
    // idle HTTP/1 connection is closed when draining starts. Waiting on that phase's own
    // milestone means a connection is woken once, not at every transition. Forcing needs no
    // branch here: the stream wrapper fails every pending read and write at forcing, which
    // ends the connection.
    let mut shutdown: Option<PhaseReached> = None;

    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(target: "zdd", error = %error, "connection ended");
                }
                return;
            }
            () = state.first_request.notified(), if matches!(stage, Stage::FirstByte | Stage::FirstRequest) => {
                stage = Stage::Idle;
                deadline.as_mut().reset(Instant::now() + deadlines.idle);
                let phase = if state.http2.load(Ordering::Relaxed) { Phase::Unready } else { Phase::Draining };
                if handle.phase() >= phase {
                    conn.as_mut().graceful_shutdown();
                    stage = Stage::Closing;
                }
                shutdown = Some(handle.reached(phase));
            }
            () = reached(&mut shutdown), if stage == Stage::Idle => {
                conn.as_mut().graceful_shutdown();
                stage = Stage::Closing;
            }
            () = deadline.as_mut(), if stage != Stage::Closing => match stage {
                Stage::FirstByte
                    if state.first_byte.load(Ordering::Relaxed) && Instant::now() < first_request_deadline =>
                {
                    stage = Stage::FirstRequest;
                    deadline.as_mut().reset(first_request_deadline);
                }
                Stage::FirstByte if !state.first_byte.load(Ordering::Relaxed) => {
                    tracing::debug!(target: "zdd", timeout_ms = deadlines.first_byte.as_millis() as u64, "closing a connection that sent nothing");
                    return;
                }
                Stage::FirstByte | Stage::FirstRequest => {
                    tracing::debug!(target: "zdd", timeout_ms = deadlines.first_request.as_millis() as u64, "closing a connection whose first request did not arrive in time");
                    return;
                }
                Stage::Idle => {
                    let idle = state.idle_for();
                    if idle >= deadlines.idle {
                        tracing::debug!(target: "zdd", idle_ms = idle.as_millis() as u64, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        stage = Stage::Closing;
                    } else {
                        deadline.as_mut().reset(Instant::now() + (deadlines.idle - idle));
                    }
                }
                Stage::Closing => {}
            },
        }
    }
}

/// Completes when the phase is reached; never while there is none to wait for.
async fn reached(phase: &mut Option<PhaseReached>) {
    match phase {
        Some(phase) => phase.await,
        None => std::future::pending().await,
    }
}
