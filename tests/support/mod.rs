//! End-to-end helpers: example servers as real processes, HAProxy in front of them, and a
//! keep-alive load generator that counts every failure.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations,
    clippy::must_use_candidate
)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A generous bound for anything that should happen promptly on loopback.
pub const BOUND: Duration = Duration::from_secs(20);

/// The zdd timings the deploy tests give their servers; they fit `GRACE`.
pub const PROPAGATION: Duration = Duration::from_secs(1);
pub const GRACE: Duration = Duration::from_secs(10);
pub const ZDD_ENV: &[(&str, &str)] = &[
    ("ZDD_PROPAGATION_DELAY", "1s"),
    ("ZDD_DRAIN_TIMEOUT", "5s"),
    ("ZDD_CLEANUP_TIMEOUT", "1s"),
    ("ZDD_GRACE_PERIOD", "10s"),
];

/// Every old zdd process left by itself, gracefully, inside its grace period.
pub fn assert_graceful_exits(exits: &[Exited]) {
    for exited in exits {
        assert_eq!(
            exited.code,
            Some(0),
            "{} did not exit gracefully: {:#?}",
            exited.name,
            exited.output
        );
        assert!(
            exited.after < GRACE,
            "{} took {:?}, past its grace period",
            exited.name,
            exited.after
        );
        assert!(
            exited
                .output
                .iter()
                .any(|l| l.contains("shutdown graceful")),
            "{:#?}",
            exited.output
        );
    }
}

/// Terminates `instances` together and waits for all of them to exit.
pub async fn terminate(instances: Vec<Instance>) -> Vec<Exited> {
    for instance in &instances {
        instance.signal("TERM");
    }
    let mut exits = Vec::new();
    for instance in instances {
        exits.push(
            tokio::task::spawn_blocking(move || instance.wait())
                .await
                .unwrap(),
        );
    }
    exits
}

/// HAProxy's binary, or `None` (after saying how to install it) when it is missing and the
/// end-to-end suite is not required. `.ci/run` sets `ZDD_E2E_REQUIRED=1`.
pub fn haproxy() -> Option<PathBuf> {
    let found = Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("haproxy"));
    }
    let message = "HAProxy is not installed: run `apt-get install haproxy` (Debian/Ubuntu) to run the end-to-end suite";
    assert!(std::env::var_os("ZDD_E2E_REQUIRED").is_none(), "{message}");
    eprintln!("skipped: {message}");
    None
}

/// Builds with cargo and returns the path of the built binary under `target/debug`. With
/// every feature, as the README's test command builds everything: the same artifacts, no
/// second build (and the TLS example needs `rustls`).
fn built(cargo_args: &[&str], path: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .arg("build")
        .arg("--quiet")
        .arg("--all-features")
        .args(cargo_args)
        .current_dir(root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build {cargo_args:?} failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug").join(path)
}

/// Builds an example of the root package and returns its path.
pub fn example(name: &str) -> PathBuf {
    built(&["--example", name], &format!("examples/{name}"))
}

/// The deploy-time load checker, run as its own process for a whole deploy: it sends
/// keep-alive traffic until stopped, then reports what it saw as JSON.
pub struct Checker {
    child: Option<Child>,
}

impl Checker {
    pub fn start(port: u16) -> Self {
        Self::start_on(&format!("http://127.0.0.1:{port}/"), &[])
    }

    /// Starts it on `url`, with `extra` arguments (such as `--cacert FILE`).
    pub fn start_on(url: &str, extra: &[&str]) -> Self {
        let binary = built(&["-p", "zdd-check"], "zdd-check");
        let child = Command::new(binary)
            .arg(url)
            .args(extra)
            .args(["--concurrency", "4", "--duration", "120s", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("zdd-check starts");
        Self { child: Some(child) }
    }

    /// Runs it to completion on a fixed number of requests and returns its summary.
    pub fn run(port: u16, requests: u64) -> serde_json::Value {
        let binary = built(&["-p", "zdd-check"], "zdd-check");
        let output = Command::new(binary)
            .arg(format!("http://127.0.0.1:{port}/"))
            .args([
                "--concurrency",
                "4",
                "--requests",
                &requests.to_string(),
                "--duration",
                "60s",
                "--json",
            ])
            .output()
            .expect("zdd-check runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("zdd-check printed no summary ({e}): {stdout}"))
    }

    /// Runs it to completion with `args` after `url` (a canary gate, say), with `--json
    /// --no-progress` unless given: its exit code and its JSON summary.
    pub fn judge(url: &str, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let binary = built(&["-p", "zdd-check"], "zdd-check");
        let mut command = Command::new(binary);
        command.arg(url).args(args);
        for flag in ["--json", "--no-progress"] {
            if !args.contains(&flag) {
                command.arg(flag);
            }
        }
        let output = command.output().expect("zdd-check runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            panic!("zdd-check printed no summary ({e}): {stdout}{stderr}")
        });
        (output.status.code(), summary)
    }

    /// Stops it (SIGINT) and returns its summary.
    pub fn stop(mut self) -> serde_json::Value {
        let child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = rx.recv_timeout(BOUND).expect("zdd-check stopped").unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("zdd-check printed no summary ({e}): {stdout}"))
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The checker saw no failure, and both versions answered.
pub fn assert_checker_clean(summary: &serde_json::Value) {
    assert_eq!(
        summary["failed"], 0,
        "zdd-check counted failures: {summary}"
    );
    assert!(summary["ok"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(
        summary["versions"]["v2"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
}

pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768–60999 by default): a port from that range
    // can be taken, between this check and the server's bind, as the source port of one of
    // the load's many outgoing connections (seen once: a server that never started).
    // Random, so tests running side by side seldom try the same one; free when checked.
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000_u16, ephemeral.max(10_001));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().rotate_left(16);
    for _ in 0..1_000 {
        // xorshift: enough spread for picking ports.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let port = low + (seed % u32::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}")
}

/// One server process.
pub struct Instance {
    pub name: String,
    pub port: u16,
    /// Taken by `wait`; killed on drop otherwise.
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Instance {
    pub fn start(
        binary: &Path,
        name: &str,
        version: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_command(Command::new(binary), name, version, port, env)
    }

    /// Starts `binary` with at most `limit` open file descriptors (the shell's `ulimit -n`,
    /// then `exec`, so signals reach the server itself).
    pub fn start_with_fd_limit(
        binary: &Path,
        limit: u32,
        name: &str,
        version: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\""))
            .arg(binary);
        Self::start_command(command, name, version, port, env)
    }

    /// Starts `binary` with `sockets` at descriptors 3, 4, … and `LISTEN_FDS`, as a
    /// service manager's socket activation does (without `LISTEN_PID`, which a launcher
    /// cannot know before the process starts).
    pub fn start_with_sockets(
        binary: &Path,
        sockets: Vec<std::os::fd::OwnedFd>,
        name: &str,
        version: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(binary);
        command.env("LISTEN_FDS", sockets.len().to_string());
        pass_sockets(&mut command, sockets);
        Self::start_command(command, name, version, port, env)
    }

    fn start_command(
        mut command: Command,
        name: &str,
        version: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = command
            .env("PORT", port.to_string())
            .env("APP_VERSION", version)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("example starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            let ready_tx = ready_tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("listening on") {
                        let _ = ready_tx.send(());
                    }
                    output.lock().unwrap().push(line);
                }
            }));
        }
        ready_rx
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("{name} never started listening"));
        Self {
            name: name.to_owned(),
            port,
            child: Some(child),
            output,
            readers,
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id).expect("still running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("still running")
    }

    /// Waits (bounded) for the process to exit and returns its exit code, while its output
    /// keeps being read: processes it started (an upgrade's new process) may still write to
    /// the same pipes.
    pub fn wait_for_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take().expect("still running");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} did not exit within {BOUND:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded, real time) until the output has `count` lines containing `needle`;
    /// returns them.
    pub async fn printed_times(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + BOUND;
        loop {
            let found: Vec<String> = self
                .output()
                .into_iter()
                .filter(|line| line.contains(needle))
                .collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} printed {needle:?} {} times, not {count}",
                self.name,
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit; its exit code and how long that took.
    pub fn wait(mut self) -> Exited {
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut child = self.child.take().expect("still running");
        let pid = child.id();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait().map(|s| s.code()));
        });
        let code = match rx.recv_timeout(BOUND) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("{} did not exit within {BOUND:?}", self.name);
            }
        };
        // The pipes closed with the process: the readers end once they took the last lines.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = self.output.lock().unwrap().clone();
        Exited {
            name: self.name.clone(),
            code,
            after: started.elapsed(),
            output,
        }
    }

    /// Waits (bounded) until the process has printed a line containing `needle`.
    pub async fn printed(&self, needle: &str) {
        let deadline = Instant::now() + BOUND;
        while !self
            .output
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
        {
            assert!(
                Instant::now() < deadline,
                "{} never printed {needle:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug)]
pub struct Exited {
    pub name: String,
    pub code: Option<i32>,
    pub after: Duration,
    pub output: Vec<String>,
}

/// HAProxy in front of the instances, with an admin socket to read server states.
pub struct Haproxy {
    pub port: u16,
    child: Child,
    socket: PathBuf,
    _dir: TempDir,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
    /// HTTP mode speaking HTTP/2 to clients and servers (`proto h2`): gRPC.
    Grpc,
}

/// Health-check timing shared by the config and the tests' assertions.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(100);
pub const CHECK_FALL: u32 = 2;

impl Haproxy {
    /// Starts HAProxy in front of `servers`: (name, port, weight). A server of weight 0 is
    /// health-checked but gets no traffic until [`Haproxy::set_weight`] gives it some.
    pub fn start(binary: &Path, mode: Mode, servers: &[(&str, u16, u32)]) -> Self {
        Self::start_checking(binary, mode, servers, &[])
    }

    /// As [`Haproxy::start`], health-checking server `i` on `check_ports[i]` (`check port`,
    /// such as zdd's admin listener) instead of its traffic port, where given.
    pub fn start_checking(
        binary: &Path,
        mode: Mode,
        servers: &[(&str, u16, u32)],
        check_ports: &[u16],
    ) -> Self {
        let dir = TempDir::new();
        let port = free_port();
        let socket = dir.0.join("admin.sock");
        let (proto, mode) = match mode {
            Mode::Http => ("", "http"),
            Mode::Tcp => ("", "tcp"),
            Mode::Grpc => (" proto h2", "http"),
        };
        let mut config = format!(
            "global\n  stats socket {socket} level admin\n\
             defaults\n  mode {mode}\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 0\n\
             frontend fe\n  bind 127.0.0.1:{port}{proto}\n  default_backend be\n\
             backend be\n  balance roundrobin\n  option httpchk\n  http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host localhost\n  http-check expect status 200\n  default-server inter {inter}ms fall {fall} rise 1\n",
            socket = socket.display(),
            inter = CHECK_INTERVAL.as_millis(),
            fall = CHECK_FALL,
        );
        for (i, (name, port, weight)) in servers.iter().enumerate() {
            let check_port = check_ports
                .get(i)
                .map(|port| format!(" port {port}"))
                .unwrap_or_default();
            config.push_str(&format!(
                "  server {name} 127.0.0.1:{port}{proto} check{check_port} weight {weight}\n"
            ));
        }
        let config_path = dir.0.join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .args(["-db", "-f"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let haproxy = Self {
            port,
            child,
            socket,
            _dir: dir,
        };
        haproxy.wait_until("the admin socket answers", |states| !states.is_empty());
        haproxy
    }

    /// Sends one command to the admin socket and returns the answer (empty if unreachable).
    pub fn command(&self, command: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&self.socket) else {
            return String::new();
        };
        if stream.write_all(format!("{command}\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    /// Changes a server's weight at run time (0 takes it out of the balancing).
    pub fn set_weight(&self, server: &str, weight: u32) {
        let answer = self.command(&format!("set weight be/{server} {weight}"));
        assert!(answer.trim().is_empty(), "set weight {server}: {answer}");
    }

    /// Each server's state (`UP`, `DOWN`, `UP 1/2`, …), from `show stat`.
    pub fn states(&self) -> BTreeMap<String, String> {
        let csv = self.command("show stat");
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return BTreeMap::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| columns.iter().position(|c| *c == name);
        let (Some(sv), Some(status)) = (column("svname"), column("status")) else {
            return BTreeMap::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_owned(), f[status].to_owned()))
            .collect()
    }

    /// Polls the admin socket until `done` holds (end-to-end tests may wait on real time,
    /// bounded).
    pub fn wait_until(&self, what: &str, done: impl Fn(&BTreeMap<String, String>) -> bool) {
        let deadline = Instant::now() + BOUND;
        loop {
            let states = self.states();
            if done(&states) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy never reached: {what}; states {states:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for(&self, server: &str, state: &str) {
        self.wait_until(&format!("{server} {state}"), |s| {
            s.get(server).is_some_and(|v| v == state)
        });
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("zdd-e2e-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Keep-alive HTTP/1.1 load on `port` from `concurrency` clients until stopped: zdd-check's
/// own load generator, so the end-to-end tests and the tool count failures the same way.
/// Requests are never retried: every failure counts.
/// Gives the command's process `sockets` at descriptors 3, 4, …
pub fn pass_sockets(command: &mut Command, sockets: Vec<std::os::fd::OwnedFd>) {
    use command_fds::{CommandFdExt, FdMapping};
    let mappings = sockets
        .into_iter()
        .enumerate()
        .map(|(i, parent_fd)| FdMapping {
            parent_fd,
            child_fd: 3 + i32::try_from(i).unwrap(),
        })
        .collect();
    command.fd_mappings(mappings).unwrap();
}

/// Runs `command` to its end (bounded; killed past it): its exit code and everything it
/// printed, stdout then stderr.
pub fn run_to_end(mut command: Command) -> (Option<i32>, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx.recv_timeout(BOUND).unwrap_or_else(|_| {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("{command:?} kept running past {BOUND:?}");
    });
    let output = output.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// Waits (bounded, real time) until the process `pid`, which is not this test's child, is
/// gone (a zombie counts as gone: only its parent could reap it).
pub async fn gone(pid: u32) {
    let deadline = Instant::now() + BOUND;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .next();
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} still runs");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `signal` to the process `pid`.
pub fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// gRPC calls of `grpc_hello`'s `SayHello` on `port`, on `concurrency` HTTP/2 connections.
pub fn load_grpc(port: u16, concurrency: usize) -> zdd_check::Load {
    let url = format!("http://127.0.0.1:{port}{GRPC_METHOD}")
        .parse()
        .unwrap();
    zdd_check::Load::start(zdd_check::Plan::new(url).concurrency(concurrency).grpc(&[]))
}

/// The method the gRPC loads call.
pub const GRPC_METHOD: &str = "/hello.v1.Greeter/SayHello";

pub fn load(port: u16, concurrency: usize) -> zdd_check::Load {
    let url = format!("http://127.0.0.1:{port}/").parse().unwrap();
    zdd_check::Load::start(zdd_check::Plan::new(url).concurrency(concurrency))
}

/// The same load over HTTPS, trusting the certificates in `ca` (PEM).
pub fn load_tls(port: u16, concurrency: usize, ca: &Path) -> zdd_check::Load {
    let url = format!("https://localhost:{port}/").parse().unwrap();
    let trust = zdd_check::client_config(&zdd_check::Trust::CaFile(ca.to_owned())).unwrap();
    zdd_check::Load::start(
        zdd_check::Plan::new(url)
            .concurrency(concurrency)
            .tls(trust),
    )
}

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`:
/// (certificate, key).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// Waits (bounded, real time) until `done` holds, letting the load run meanwhile.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request on a new connection: the status and the body, or the connection's error
/// (refused, reset).
pub async fn request(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = String::new();
    tokio::time::timeout(BOUND, stream.read_to_string(&mut response))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, response.clone()))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
