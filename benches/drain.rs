//! Drain at scale: idle keep-alive connections closed by zdd against the same server built
//! on plain hyper-util `GracefulShutdown`, side by side, alternating, medians and ratios.
//!
//! ```sh
//! cargo bench --bench drain                       # 1,000, 10,000 and 50,000 connections
//! cargo bench --bench drain -- --connections 10000 --rounds 3
//! ```
//!
//! 50,000 connections need an open-file limit above 51,024 in this process and the server
//! (`ulimit -n 60000`, as root to raise the hard limit; `benches/run` does it); counts the
//! limit does not allow are skipped with a line saying so. Clients connect from several
//! loopback source addresses (127.0.0.2, .3, .4), one per 20,000 connections, because one
//! address has only about 28,000 ephemeral ports.
//!
//! Each round starts each server as a child process (this binary run with `--server`), opens
//! the connections (one request each, then idle: nothing is sent for [`QUIET`] before the
//! signal), reads the server's resident memory from `/proc`, starts one slow request (lasting longer than the idle connections take to close),
//! sends SIGTERM, and reads what the server measured:
//! - `drain`: from the signal until every connection is closed;
//! - `tail`: from the slow response's last byte until the serve call returned;
//! - memory per connection: resident memory growth divided by the connections.
//!
//! `--perf DIR` records each server's drain with `perf record -g` (from just before the
//! signal until it exits) into `DIR/<server>.<connections>.data`, for `perf report`.
//!
//! Two more servers give floors: `hyper-util-turn` is hyper-util waiting for the runtime's
//! event turn (a socket pair made readable and reported) before its graceful shutdown, as
//! zdd's drain waits before it closes idle connections; `close-only` has no HTTP and no graceful shutdown, every stream dropped at
//! once at the signal.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each driver uses a part of it
mod common;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The two servers compared, and the floors: `hyper-util-turn` waits for the runtime's
/// event turn after the signal (a socket pair made readable, until the runtime reports it),
/// then shuts down as `hyper-util` does (zdd's drain waits for that turn before it closes
/// idle HTTP/1 connections, so that a request that reached an idle socket as the drain
/// began is read); `close-only` answers the
/// request of each connection with fixed bytes and, at SIGTERM, drops every stream at once
/// from one task, with no HTTP and no graceful shutdown: what closing that many loopback
/// sockets costs on the machine at hand.
const SERVERS: [&str; 4] = ["zdd", "hyper-util", "hyper-util-turn", "close-only"];

/// How long the connections stay quiet after their answers before the signal. A connection
/// whose answer went out a moment ago is not idle yet: its client may be sending the next
/// request, so zdd's drain waits until it has been quiet for 1 s before closing it (see
/// `QUIET_BEFORE_CLOSE` in zdd-hyper) where hyper-util closes it at once.
const QUIET: Duration = Duration::from_millis(1_200);

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let counts: Vec<usize> = common::value("--connections")
        .unwrap_or_else(|| "1000,10000,50000".to_owned())
        .split(',')
        .map(|n| {
            n.trim().parse().unwrap_or_else(|_| {
                eprintln!("--connections: {n:?} is not a number");
                std::process::exit(2)
            })
        })
        .collect();
    let rounds: usize = common::arg("--rounds", 5);
    let limit = common::open_file_limit();
    let mut curve = Vec::new();
    for connections in counts {
        // This process holds the client ends, the server child (which inherits the limit)
        // the others; both need room for their own files too.
        if connections + 1024 > limit {
            println!(
                "skipped {connections} connections: the open-file limit is {limit}; raise it \
                 first (`ulimit -n {}`, as root for the hard limit; `benches/run` does)",
                connections + 1024
            );
            continue;
        }
        curve.push((connections, run(connections, rounds)));
    }
    if curve.len() > 1 {
        println!("\ncurve, medians (drain per connection shows how cost grows):");
        println!(
            "{:>11} {:>12} {:>11} {:>12} {:>11} {:>12} {:>11} {:>9} {:>10}",
            "connections",
            "zdd ms",
            "us/conn",
            "h-u ms",
            "us/conn",
            "floor ms",
            "us/conn",
            "zdd/h-u",
            "zdd/turn"
        );
        for (connections, [zdd, baseline, turn, floor]) in &curve {
            let ms = |m: &Measured| m.drain.as_secs_f64() * 1e3;
            let per = |m: &Measured| m.drain.as_secs_f64() * 1e6 / *connections as f64;
            println!(
                "{connections:>11} {:>12.2} {:>11.2} {:>12.2} {:>11.2} {:>12.2} {:>11.2} {:>8.2}x {:>9.2}x",
                ms(zdd),
                per(zdd),
                ms(baseline),
                per(baseline),
                ms(floor),
                per(floor),
                ms(zdd) / ms(baseline),
                ms(zdd) / ms(turn)
            );
        }
    }
}

/// `rounds` alternating rounds at `connections`; prints each and the medians, returns the
/// the medians of each server, in the order of [`SERVERS`].
fn run(connections: usize, rounds: usize) -> [Measured; 4] {
    let mut results: Vec<(&str, Measured)> = Vec::new();
    for round in 0..rounds {
        let order: Vec<&str> = if round % 2 == 0 {
            SERVERS.to_vec()
        } else {
            SERVERS.iter().rev().copied().collect()
        };
        for kind in order {
            let idle = measure(kind, connections, false);
            let measured = if kind == "close-only" {
                idle
            } else {
                Measured {
                    tail_ms: measure(kind, connections, true).tail_ms,
                    ..idle
                }
            };
            println!(
                "{connections} round {round} {kind:<10} drain {:>8.2} ms  tail {:>6.2} ms  memory {:>6} B/connection",
                measured.drain.as_secs_f64() * 1e3,
                measured.tail_ms,
                measured.bytes_per_connection
            );
            results.push((kind, measured));
        }
    }
    let median = |kind: &str, f: &dyn Fn(&Measured) -> f64| {
        let mut values: Vec<f64> = results
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, m)| f(m))
            .collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let drain = |m: &Measured| m.drain.as_secs_f64() * 1e3;
    let tail = |m: &Measured| m.tail_ms;
    let memory = |m: &Measured| m.bytes_per_connection as f64;
    println!("\n{connections} idle keep-alive connections, {rounds} rounds, medians:");
    println!(
        "{:<12} {:>10} {:>10} {:>16}",
        "server", "drain ms", "tail ms", "bytes/connection"
    );
    for kind in SERVERS {
        println!(
            "{kind:<12} {:>10.2} {:>10.2} {:>16.0}",
            median(kind, &drain),
            median(kind, &tail),
            median(kind, &memory)
        );
    }
    println!(
        "zdd / hyper-util: drain {:.2}x, tail {:.2}x, memory {:.2}x",
        median("zdd", &drain) / median("hyper-util", &drain),
        median("zdd", &tail) / median("hyper-util", &tail),
        median("zdd", &memory) / median("hyper-util", &memory),
    );
    println!(
        "zdd / hyper-util-turn: drain {:.2}x\n",
        median("zdd", &drain) / median("hyper-util-turn", &drain),
    );
    SERVERS.map(|kind| Measured {
        drain: Duration::from_secs_f64(median(kind, &drain) / 1e3),
        tail_ms: median(kind, &tail),
        bytes_per_connection: median(kind, &memory) as i64,
    })
}

struct Measured {
    drain: Duration,
    /// Not measured (NaN) for the floor, which serves no slow request.
    tail_ms: f64,
    bytes_per_connection: i64,
}

fn resident_kib(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One server run: `connections` idle ones, plus one slow request at the signal when `slow`.
fn measure(kind: &str, connections: usize, slow: bool) -> Measured {
    let mut server = common::ServerProcess::start(kind);
    let (pid, port) = (server.child.id(), server.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = resident_kib(pid);
    let streams = runtime.block_on(open_idle(port, connections));
    std::thread::sleep(QUIET);
    let after = resident_kib(pid);

    // One slow request in flight when the signal comes.
    let slow = slow.then(|| {
        let request = runtime.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            // It outlasts closing the idle connections (about 15 us each here), so that
            // `tail` measures the end of the drain alone.
            let ms = 300 + connections * 40 / 1000;
            let request = format!("GET /slow?ms={ms} HTTP/1.1\r\nHost: bench\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = vec![0; 1024];
            let _ = stream.read(&mut buf).await;
        });
        assert_eq!(
            server.lines.next().as_deref(),
            Some("slow started"),
            "server did not start the slow request"
        );
        request
    });
    // Profiles the drain alone: from just before the signal until the server exits.
    let perf = common::value("--perf")
        .filter(|_| slow.is_none())
        .map(|dir| common::perf_record(pid, &format!("{dir}/{kind}.{connections}.data")));
    server.terminate();
    let result = server.result();
    if let Some(slow) = slow {
        runtime.block_on(slow).unwrap();
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{kind} server exited with {status}");
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    drop(streams);

    Measured {
        drain: Duration::from_secs_f64(common::field(&result, "drain_s")),
        tail_ms: common::field(&result, "tail_s") * 1e3,
        bytes_per_connection: (after - before) * 1024 / connections as i64,
    }
}

/// Opens `n` keep-alive connections, each served one request, then left idle.
async fn open_idle(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let limit = Arc::clone(&limit);
            tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let mut stream = common::connect_from(i, port).await;
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = [0; 512];
                let mut read = 0;
                // The response is small; read until its body ("hello") arrived.
                while !buf[..read].ends_with(b"hello") {
                    let n = stream.read(&mut buf[read..]).await.unwrap();
                    assert!(n > 0, "closed before the response");
                    read += n;
                }
                stream
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(n);
    for task in tasks {
        streams.push(task.await.unwrap());
    }
    streams
}

/// A body that notes when its last frame left, to measure the tail of the drain.
struct Noted {
    inner: Full<Bytes>,
    done: Arc<Mutex<Option<Instant>>>,
}

impl Body for Noted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(Some(_))) && self.inner.is_end_stream() {
            *self.done.lock().unwrap() = Some(Instant::now());
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn handler(
    done: Arc<Mutex<Option<Instant>>>,
) -> impl tower::Service<Request<Incoming>, Response = Response<Noted>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |request: Request<Incoming>| {
        let done = Arc::clone(&done);
        async move {
            if request.uri().path() == "/slow" {
                let ms = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|ms| ms.parse().ok())
                    .expect("/slow?ms=N");
                println!("slow started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok::<_, Infallible>(Response::new(Noted {
                inner: Full::new(Bytes::from_static(b"hello")),
                done,
            }))
        }
    })
}

fn server(kind: &str) {
    common::server_main(|listener| async move {
        let done = Arc::new(Mutex::new(None));
        let (drain, returned) = match kind {
            "zdd" => {
                let lifecycle = common::draining_lifecycle();
                let report = zdd::serve(listener, handler(Arc::clone(&done)), lifecycle).await;
                let returned = Instant::now();
                assert!(report.is_graceful(), "{report}");
                let drain = report.time_in(zdd::Phase::Unready).unwrap_or_default()
                    + report.time_in(zdd::Phase::Draining).unwrap_or_default();
                (drain, returned)
            }
            "close-only" => close_only(listener).await,
            _ => {
                let protections = common::Protections {
                    turn_before_close: kind == "hyper-util-turn",
                    ..common::Protections::default()
                };
                let drain = common::hyper_util_graceful(
                    listener,
                    handler(Arc::clone(&done)),
                    common::sigterm(),
                    protections,
                )
                .await;
                (drain, Instant::now())
            }
        };
        let tail = done.lock().unwrap().map_or(f64::NAN, |done| {
            returned.saturating_duration_since(done).as_secs_f64()
        });
        println!("result drain_s={} tail_s={tail}", drain.as_secs_f64());
    });
}

/// The floor server (see [`SERVERS`]): (time to drop every stream, when it returned).
async fn close_only(listener: tokio::net::TcpListener) -> (Duration, Instant) {
    let streams = Arc::new(Mutex::new(Vec::new()));
    let accept = async {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                let mut buf = [0; 512];
                let mut read = 0;
                while !buf[..read].ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let response = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                if stream.write_all(response).await.is_ok() {
                    streams.lock().unwrap().push(stream);
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        () = common::sigterm() => {}
    }
    let started = Instant::now();
    drop(std::mem::take(&mut *streams.lock().unwrap()));
    (started.elapsed(), Instant::now())
}
