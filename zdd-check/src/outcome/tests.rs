//! `Outcome::never_sent` against the errors hyper-util's client really returns when its pool
//! gives up on a request before writing it. The client's connections are in-memory pipes,
//! handed out by a connector the test opens one at a time, and each request is polled by
//! hand: every race below happens in the same order on every run.

use std::{
    collections::VecDeque,
    error::Error as _,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{
        Client,
        connect::{Connected, Connection},
    },
    rt::{TokioExecutor, TokioIo},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf},
    sync::oneshot,
};
use tokio_test::{assert_pending, assert_ready_err, task};

use super::Outcome;

/// The client's end of an in-memory connection on which HTTP/2 was agreed by ALPN. A
/// `poisoned` one is closed as far as the pool can tell: it is never handed to a second
/// request. While `held` waits, nothing can be written to it.
struct Pipe {
    stream: DuplexStream,
    poisoned: bool,
    held: Option<oneshot::Receiver<()>>,
}

impl AsyncRead for Pipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(held) = &mut self.held {
            // Released, or its sender dropped: either way the hold is over.
            let _ = ready!(Pin::new(held).poll(cx));
            self.held = None;
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for Pipe {
    fn connected(&self) -> Connected {
        let connected = Connected::new().negotiated_h2();
        if self.poisoned {
            connected.poison();
        }
        connected
    }
}

/// A connector handing out the planned pipes in order, each once the test opens it.
#[derive(Clone, Default)]
struct Pipes(Arc<Mutex<VecDeque<Unopened>>>);

/// A planned pipe, and the receiver that tells the connector to hand it out.
struct Unopened {
    opened: oneshot::Receiver<()>,
    pipe: Pipe,
}

/// A planned connection, as the test steps through it.
struct Planned {
    /// Lets the connector hand it to the client.
    open: oneshot::Sender<()>,
    /// The server's end.
    server: DuplexStream,
    /// Lets the client write to it, if it was planned held.
    release: Option<oneshot::Sender<()>>,
}

impl Pipes {
    /// Plans the next connection; a `held` one takes no write (the client's HTTP/2
    /// handshake waits) until released.
    fn plan(&self, poisoned: bool, held: bool) -> Planned {
        let (open, opened) = oneshot::channel();
        let (release, held) = if held {
            let (release, held) = oneshot::channel();
            (Some(release), Some(held))
        } else {
            (None, None)
        };
        let (stream, server) = tokio::io::duplex(64 * 1024);
        self.0.lock().unwrap().push_back(Unopened {
            opened,
            pipe: Pipe {
                stream,
                poisoned,
                held,
            },
        });
        Planned {
            open,
            server,
            release,
        }
    }

    fn client(&self) -> Client<Self, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build(self.clone())
    }
}

impl tower::Service<http::Uri> for Pipes {
    type Response = TokioIo<Pipe>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Pipe>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let next = self.0.lock().unwrap().pop_front();
        Box::pin(async move {
            let next = next.ok_or_else(|| io::Error::other("no connection planned"))?;
            next.opened.await.map_err(io::Error::other)?;
            Ok(TokioIo::new(next.pipe))
        })
    }
}

/// Serves HTTP/2 on the server's end of a pipe, answering `ok` to every request.
fn serve(server: DuplexStream) {
    tokio::spawn(
        hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
            TokioIo::new(server),
            hyper::service::service_fn(|_| async {
                Ok::<_, io::Error>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            }),
        ),
    );
}

/// What `error` says was its cause, and the cause's cause, and so on.
fn causes(error: &hyper_util::client::legacy::Error) -> Vec<String> {
    let mut causes = Vec::new();
    let mut cause = error.source();
    while let Some(this) = cause {
        causes.push(this.to_string());
        cause = this.source();
    }
    causes
}

fn uri() -> http::Uri {
    http::Uri::from_static("http://localhost/")
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_cancelled_because_another_connection_was_upgraded_to_http2_was_never_sent() {
    let pipes = Pipes::default();
    let a = pipes.plan(true, false);
    let b = pipes.plan(false, false);
    let c = pipes.plan(false, true);
    let client = pipes.client();
    // Three requests find no connection: each waits for one from the pool and starts its
    // own, in this order.
    let mut request_a = task::spawn(client.get(uri()));
    let mut request_b = task::spawn(client.get(uri()));
    let mut request_c = task::spawn(client.get(uri()));
    assert_pending!(request_a.poll());
    assert_pending!(request_b.poll());
    assert_pending!(request_c.poll());
    // A's connection is made, pooled and handed to B and C, which find it closed (it is
    // poisoned): each goes on waiting for its own.
    serve(a.server);
    a.open.send(()).unwrap();
    assert!((&mut request_a).await.unwrap().status().is_success());
    assert_pending!(request_b.poll());
    assert_pending!(request_c.poll());
    // C's connection agrees on HTTP/2 and is being set up as the pool's one HTTP/2
    // connection (its handshake held); then B's agrees on HTTP/2 too, and B's request is
    // cancelled in favour of C's connection, before anything of it was written.
    c.open.send(()).unwrap();
    assert_pending!(request_c.poll());
    b.open.send(()).unwrap();
    let error = assert_ready_err!(request_b.poll());
    assert!(
        causes(&error).contains(&"ALPN upgraded to HTTP/2".to_owned()),
        "{error:?}"
    );
    assert!(Outcome::never_sent(&error), "{error:?}");
    // The request that held the connection being set up is answered on it.
    serve(c.server);
    c.release.unwrap().send(()).unwrap();
    assert!(request_c.await.unwrap().status().is_success());
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_whose_awaited_connection_closed_first_was_never_sent() {
    let pipes = Pipes::default();
    let a = pipes.plan(true, true);
    let b = pipes.plan(false, false);
    let client = pipes.client();
    let mut request_a = task::spawn(client.get(uri()));
    let mut request_b = task::spawn(client.get(uri()));
    assert_pending!(request_a.poll());
    assert_pending!(request_b.poll());
    // A's connection agrees on HTTP/2 and is being set up (its handshake held); B's agrees
    // on HTTP/2 too and is dropped, and B waits for A's from the pool.
    a.open.send(()).unwrap();
    assert_pending!(request_a.poll());
    b.open.send(()).unwrap();
    assert_pending!(request_b.poll());
    // A's connection is set up and handed to B, which finds it closed (it is poisoned).
    serve(a.server);
    a.release.unwrap().send(()).unwrap();
    assert!((&mut request_a).await.unwrap().status().is_success());
    let error = assert_ready_err!(request_b.poll());
    assert!(
        causes(&error).contains(&"checked out connection was closed".to_owned()),
        "{error:?}"
    );
    assert!(Outcome::never_sent(&error), "{error:?}");
}
