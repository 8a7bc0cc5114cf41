//! Fan-out: many connections each holding a streaming response, ended by the draining
//! notice. Measures the time from the notice until every stream has ended and until the
//! server returned, for zdd (`LifecycleHandle::until_draining` on each stream) against the
//! status quo: hyper-util `GracefulShutdown` with each stream cut by a tokio-util
//! `CancellationToken` cancelled at SIGTERM. Alternating rounds, medians and ratios.
//!
//! ```sh
//! cargo bench --bench fanout                          # 10,000 streams, 5 rounds
//! cargo bench --bench fanout -- --streams 1000 --rounds 3
//! ```
//!
//! Each stream sends a line at once and then one a second until it is ended; the client
//! reads its first line, and once every stream is open the driver sends SIGTERM and each
//! client reads to the end of its connection. The server reports, from the moment it saw
//! SIGTERM (zdd: a second handler beside zdd's own, so zdd's path from the signal through
//! [`Phase::Unready`](zdd::Phase::Unready) to its draining notice is inside the figure;
//! status quo: the handler that cancels the token):
//! - `first ended` and `all ended`: until the first and the last stream sent its end;
//! - `closed`: until the serve call returned (every connection closed).
//!
//! `--perf DIR` records each server from just before the signal until it exits with
//! `perf record -g`, into `DIR/<server>.<round>.data`, for `perf report`.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each driver uses a part of it
mod common;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::StreamBody;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const SERVERS: [&str; 2] = ["zdd", "hyper-util"];

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let streams: usize = common::arg("--streams", 10_000);
    let rounds: usize = common::arg("--rounds", 5);
    let limit = common::open_file_limit();
    if streams + 1024 > limit {
        eprintln!(
            "{streams} streams need an open-file limit of {} here and in the server; it is \
             {limit} (`ulimit -n {}`, as root for the hard limit; `benches/run` does it)",
            streams + 1024,
            streams + 1024
        );
        std::process::exit(2);
    }
    let mut results: Vec<(&str, [f64; 3])> = Vec::new();
    for round in 0..rounds {
        let mut order = SERVERS.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let measured = measure(kind, streams, round);
            let [first, ended, closed] = measured;
            println!(
                "round {round} {kind:<10} first ended {first:>8.2} ms  all ended {ended:>8.2} ms  closed {closed:>8.2} ms"
            );
            results.push((kind, measured));
        }
    }
    let median = |kind: &str, i: usize| {
        let mut values: Vec<f64> = results
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| m[i])
            .collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n{streams} streaming responses, {rounds} rounds, medians from SIGTERM:");
    println!(
        "{:<12} {:>15} {:>13} {:>10}",
        "server", "first ended ms", "all ended ms", "closed ms"
    );
    for kind in SERVERS {
        println!(
            "{kind:<12} {:>15.2} {:>13.2} {:>10.2}",
            median(kind, 0),
            median(kind, 1),
            median(kind, 2)
        );
    }
    println!(
        "zdd / hyper-util: all ended {:.2}x, closed {:.2}x",
        median("zdd", 1) / median("hyper-util", 1),
        median("zdd", 2) / median("hyper-util", 2)
    );
}

/// One server run with `streams` open streams: ms until the first stream ended, until the
/// last did, and until the server returned.
fn measure(kind: &str, streams: usize, round: usize) -> [f64; 3] {
    let mut server = common::ServerProcess::start(kind);
    let port = server.port;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let clients: Vec<_> = (0..streams)
        .map(|i| {
            let (opened, limit) = (Arc::clone(&opened), Arc::clone(&limit));
            runtime.spawn(async move {
                let permit = limit.acquire().await.unwrap();
                let mut stream = common::connect_from(i, port).await;
                stream
                    .write_all(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = vec![0; 4096];
                let mut read = 0;
                while !buf[..read].windows(5).any(|w| w == b"tick\n") {
                    let n = stream.read(&mut buf[read..]).await.unwrap();
                    assert!(n > 0, "closed before the first line");
                    read += n;
                }
                drop(permit);
                opened.add_permits(1);
                // Read to the end: the server ends the stream and closes the connection.
                while stream.read(&mut buf).await.unwrap_or(0) > 0 {}
            })
        })
        .collect();
    runtime.block_on(async {
        let all = u32::try_from(streams).expect("streams fit in u32");
        let opened = tokio::time::timeout(Duration::from_secs(60), opened.acquire_many(all));
        let _opened = opened.await.expect("every stream opened within 60 s");
    });
    let perf = common::value("--perf")
        .map(|dir| common::perf_record(server.child.id(), &format!("{dir}/{kind}.{round}.data")));
    server.terminate();
    let result = server.result();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            for client in clients {
                client.await.unwrap();
            }
        })
        .await
        .expect("every stream ended within 60 s");
    });
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{kind} server exited with {status}");
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    ["first_s", "streams_s", "closed_s"].map(|name| common::field(&result, name) * 1e3)
}

/// The streams still open, and when the last one ended.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    first_ended: Mutex<Option<Instant>>,
    last_ended: Mutex<Option<Instant>>,
}

/// A response body that counts itself open until it sends its end.
struct Counted<B> {
    inner: B,
    open: Option<Arc<Open>>,
}

impl<B> Counted<B> {
    fn new(inner: B, open: &Arc<Open>) -> Self {
        open.count.fetch_add(1, Ordering::SeqCst);
        Self {
            inner,
            open: Some(Arc::clone(open)),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame
            && let Some(open) = self.open.take()
        {
            open.first_ended
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            if open.count.fetch_sub(1, Ordering::SeqCst) == 1 {
                *open.last_ended.lock().unwrap() = Some(Instant::now());
            }
        }
        frame
    }
}

/// A line now, then one a second, forever.
fn ticks() -> impl Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Unpin + 'static {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    Box::pin(stream::poll_fn(move |cx| {
        interval
            .poll_tick(cx)
            .map(|_| Some(Ok(Frame::data(Bytes::from_static(b"tick\n")))))
    }))
}

fn server(kind: &str) {
    common::server_main(|listener| async move {
        let open = Arc::new(Open::default());
        let notice = Arc::new(Mutex::new(None::<Instant>));
        match kind {
            "zdd" => {
                let lifecycle = common::draining_lifecycle();
                let handle = lifecycle.handle();
                // The signal as this server sees it: zdd's own handler starts the sequence,
                // whose draining notice then ends the streams.
                tokio::spawn({
                    let notice = Arc::clone(&notice);
                    async move {
                        common::sigterm().await;
                        *notice.lock().unwrap() = Some(Instant::now());
                    }
                });
                let service = {
                    let open = Arc::clone(&open);
                    tower::service_fn(move |_request: Request<Incoming>| {
                        let stream: Pin<Box<dyn Stream<Item = _> + Send>> =
                            Box::pin(handle.until_draining(ticks()));
                        let body = Counted::new(StreamBody::new(stream), &open);
                        async move { Ok::<_, Infallible>(Response::new(body)) }
                    })
                };
                let report = zdd::serve(listener, service, lifecycle).await;
                assert!(report.is_graceful(), "{report}");
            }
            _ => {
                let token = CancellationToken::new();
                let service = {
                    let (open, token) = (Arc::clone(&open), token.clone());
                    tower::service_fn(move |_request: Request<Incoming>| {
                        let stream: Pin<Box<dyn Stream<Item = _> + Send>> =
                            Box::pin(ticks().take_until(token.clone().cancelled_owned()));
                        let body = Counted::new(StreamBody::new(stream), &open);
                        async move { Ok::<_, Infallible>(Response::new(body)) }
                    })
                };
                let terminate = {
                    let notice = Arc::clone(&notice);
                    async move {
                        common::sigterm().await;
                        *notice.lock().unwrap() = Some(Instant::now());
                        token.cancel();
                    }
                };
                let protections = common::Protections::default();
                common::hyper_util_graceful(listener, service, terminate, protections).await;
            }
        }
        let returned = Instant::now();
        let notice = notice.lock().unwrap().expect("SIGTERM came");
        let since = |at: &Mutex<Option<Instant>>| {
            let at = at.lock().unwrap().expect("streams ended");
            at.saturating_duration_since(notice).as_secs_f64()
        };
        println!(
            "result first_s={} streams_s={} closed_s={}",
            since(&open.first_ended),
            since(&open.last_ended),
            returned.saturating_duration_since(notice).as_secs_f64()
        );
    });
}
