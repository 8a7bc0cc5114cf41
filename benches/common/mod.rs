//! Plumbing shared by the benchmark drivers: arguments, SIGTERM, the status-quo server, and
//! client connections at scale.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use http::{Request, Response};
use hyper::body::Incoming;

pub(crate) mod counting;
pub(crate) mod idle;
pub(crate) mod stats;

/// The value after `--name` on the command line.
pub(crate) fn value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The value after `--name`, parsed, or `default`.
pub(crate) fn arg<T: FromStr>(name: &str, default: T) -> T {
    value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Completes on SIGTERM.
pub(crate) async fn sigterm() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    term.recv().await;
}

/// What a peer server bounds besides what hyper-util does by default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Protections {
    /// hyper's HTTP/1 header read timeout (its timer armed while a connection waits for a
    /// request head, as zdd's connections are): what a hyper-util server that bounds slow
    /// request heads pays.
    pub(crate) header_timeout: Option<Duration>,
    /// Connections that read nothing this long are closed (`idle.rs`).
    pub(crate) idle_timeout: Option<Duration>,
    /// The graceful shutdown waits until the runtime has reported a socket pair made
    /// readable after the signal, as zdd's drain does before it closes idle HTTP/1
    /// connections (every socket ready before the pair has been reported by then, so a
    /// request that reached an idle socket as the drain began is seen): what that wait
    /// costs a drain, without zdd's other work.
    pub(crate) turn_before_close: bool,
}

/// The status quo: hyper-util's auto builder with `GracefulShutdown`, serving `service`
/// until `terminate` completes, then shut down gracefully. Returns how long the graceful
/// shutdown took. Sets `TCP_NODELAY`, as zdd's listener does.
pub(crate) async fn hyper_util_graceful<S, B>(
    listener: tokio::net::TcpListener,
    service: S,
    terminate: impl Future<Output = ()>,
    protections: Protections,
) -> Duration
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    use hyper_util::{
        rt::{TokioExecutor, TokioIo},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    let mut builder = Builder::new(TokioExecutor::new());
    if let Some(timeout) = protections.header_timeout {
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(timeout);
    }
    let graceful = GracefulShutdown::new();
    let mut terminate = std::pin::pin!(terminate);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(service.clone());
                let Some(idle) = protections.idle_timeout else {
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection.into_owned());
                    tokio::spawn(async move { let _ = connection.await; });
                    continue;
                };
                let activity = idle::activity();
                let stream = idle::ActiveIo::new(stream, std::sync::Arc::clone(&activity));
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                let (open, closed) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let _open = open;
                    let _ = connection.await;
                });
                tokio::spawn(idle::watch(activity, idle, closed, task.abort_handle()));
            }
            () = &mut terminate => break,
        }
    }
    let started = Instant::now();
    drop(listener);
    if protections.turn_before_close {
        let (writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &writer, &[1]).unwrap();
        reader.set_nonblocking(true).unwrap();
        let reader = tokio::net::UnixStream::from_std(reader).unwrap();
        reader.readable().await.unwrap();
    }
    graceful.shutdown().await;
    started.elapsed()
}

/// Connects the `i`th client from its own loopback source address per 20,000 connections:
/// one source address has about 28,000 ephemeral ports, and 50,000 connections need more.
pub(crate) async fn connect_from(i: usize, port: u16) -> tokio::net::TcpStream {
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + (i / 20_000) as u8);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket
        .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await
        .unwrap()
}

/// Starts `perf record -g` on process `pid` into `out`, and waits until it is attached
/// (drivers' `--perf DIR`). Wait for the returned child after the process exited.
pub(crate) fn perf_record(pid: u32, out: &str) -> Child {
    let perf = std::process::Command::new("perf")
        .args([
            "record",
            "-g",
            "-F",
            "20000",
            "-p",
            &pid.to_string(),
            "-o",
            out,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf runs (apt-get install linux-perf)");
    std::thread::sleep(Duration::from_millis(300)); // until perf is attached
    perf
}

/// A server child process: this benchmark binary run with `--server <kind>`, which prints
/// `port N` first (see [`server_main`]) and then whatever the driver reads from [`Self::lines`].
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) lines: Box<dyn Iterator<Item = String>>,
    pub(crate) port: u16,
}

impl ServerProcess {
    pub(crate) fn start(kind: &str) -> Self {
        Self::start_on(kind, None)
    }

    /// Starts it on the CPUs `cpus` (a `taskset -c` list), or anywhere.
    pub(crate) fn start_on(kind: &str, cpus: Option<&str>) -> Self {
        Self::start_from(&std::env::current_exe().unwrap(), kind, cpus)
    }

    /// Starts it from the benchmark binary `exe` (another build of this one, such as one of
    /// `benches/layouts`' builds, whose functions lie elsewhere in memory).
    pub(crate) fn start_from(exe: &std::path::Path, kind: &str, cpus: Option<&str>) -> Self {
        let mut command = match cpus {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", cpus]).arg(exe);
                taskset
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--server", kind])
            .stdout(Stdio::piped())
            .spawn()
            .expect("server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok);
        let port = lines
            .next()
            .and_then(|l| l.strip_prefix("port ").and_then(|p| p.parse().ok()))
            .expect("server port");
        Self {
            child,
            lines: Box::new(lines),
            port,
        }
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success(), "kill failed");
    }

    /// The first line starting with `result `.
    pub(crate) fn result(&mut self) -> String {
        self.lines
            .find(|l| l.starts_with("result "))
            .expect("server result")
    }
}

/// The value of `name=` in a `result` line.
pub(crate) fn field(result: &str, name: &str) -> f64 {
    result
        .split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The server side of [`ServerProcess`]: a two-worker runtime and a loopback listener whose
/// port is printed, handed to `serve`.
pub(crate) fn server_main<F: Future>(
    serve: impl FnOnce(tokio::net::TcpListener) -> F,
) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        println!("port {}", listener.local_addr().unwrap().port());
        serve(listener).await
    })
}

/// This process's soft limit on open files, from `/proc/self/limits`.
pub(crate) fn open_file_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// zdd's lifecycle for the drain benchmarks, listening for SIGTERM: no propagation delay
/// (the measured time starts at the signal, and no load balancer is waiting), and a drain
/// timeout long enough that nothing is forced.
pub(crate) fn draining_lifecycle() -> zdd::Lifecycle {
    let config = zdd::Config::builder()
        .propagation_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(20))
        .build()
        .expect("a valid configuration");
    let mut lifecycle = zdd::Lifecycle::new(config);
    lifecycle
        .listen_for_signals()
        .expect("signal handlers install");
    lifecycle
}

/// Builds zdd-check (release) and returns its path: the load generator of the drivers.
pub(crate) fn build_checker() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "zdd-check"])
        .current_dir(root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building zdd-check failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    target.join("release").join("zdd-check")
}

/// `--pin SERVER_CPU,CLIENT_CPU`: the CPUs to run the server and the load generator on (exit
/// 2 on a malformed value).
pub(crate) fn pin() -> Option<(String, String)> {
    value("--pin").map(|cpus| match cpus.split_once(',') {
        Some((server, client)) => (server.to_owned(), client.to_owned()),
        None => {
            eprintln!("--pin: expected SERVER_CPU,CLIENT_CPU, e.g. 0,1; got {cpus:?}");
            std::process::exit(2);
        }
    })
}

/// A command running `program`, on CPU `cpu` (through `taskset`) when given.
pub(crate) fn command_on(program: &std::path::Path, cpu: Option<&str>) -> std::process::Command {
    match cpu {
        Some(cpu) => {
            let mut taskset = std::process::Command::new("taskset");
            taskset.args(["-c", cpu]).arg(program);
            taskset
        }
        None => std::process::Command::new(program),
    }
}
