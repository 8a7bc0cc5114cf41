//! The reference design's blue-green behind nginx, end to end: two versions side by side,
//! Debian's nginx in front (`deploy/nginx/blue-green.conf`, no `proxy_next_upstream`
//! retries), keep-alive load through nginx, the cut-over by rewriting the upstream and
//! `nginx -s reload`, then the old version shut down. zdd fails no request; the same run
//! with axum's own graceful shutdown is printed beside it (`-- --nocapture`).
//!
//! Needs nginx (`apt-get install nginx`); skipped with a message when it is missing,
//! mandatory under `.ci/run` (`ZDD_E2E_REQUIRED=1`).

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use support::*;

/// nginx's binary, or `None` (after saying how to install it) when it is missing and the
/// end-to-end suite is not required.
fn nginx_binary() -> Option<PathBuf> {
    for candidate in ["nginx", "/usr/sbin/nginx"] {
        if Command::new(candidate)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(PathBuf::from(candidate));
        }
    }
    let message = "nginx is not installed: run `apt-get install nginx` (Debian/Ubuntu) to run the nginx blue-green test";
    assert!(std::env::var_os("ZDD_E2E_REQUIRED").is_none(), "{message}");
    eprintln!("skipped: {message}");
    None
}

/// nginx in the foreground, configured from the recipe, its upstream in `upstream.conf`.
struct Nginx {
    binary: PathBuf,
    dir: TempDir,
    /// HTTP/1.1 clients.
    port: u16,
    /// HTTP/2 clients (h2c, prior knowledge).
    h2c_port: u16,
    master: Child,
}

impl Nginx {
    fn start(binary: &Path, upstream: u16) -> Self {
        let dir = TempDir::new();
        let (port, h2c_port) = (free_port(), free_port());
        let recipe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/blue-green.conf"),
        )
        .unwrap();
        assert!(
            recipe.contains("listen 80;"),
            "the recipe listens on port 80"
        );
        let server = recipe.replace(
            "listen 80;",
            &format!("listen 127.0.0.1:{port};\n    listen 127.0.0.1:{h2c_port} http2;"),
        );
        let d = dir.0.display();
        let config = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{server}\n}}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), config).unwrap();
        let nginx = |binary: &Path, dir: &TempDir| {
            let mut command = Command::new(binary);
            command
                .arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(dir.0.join("nginx.conf"));
            command
        };
        Self::write_upstream(&dir, upstream);
        let master = nginx(binary, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Self {
            binary: binary.to_owned(),
            dir,
            port,
            h2c_port,
            master,
        };
        let deadline = Instant::now() + BOUND;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", h2c_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nginx never listened: {}",
                nginx.errors()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn write_upstream(dir: &TempDir, port: u16) {
        let upstream =
            format!("upstream app {{\n  server 127.0.0.1:{port};\n  keepalive 32;\n}}\n");
        std::fs::write(dir.0.join("upstream.conf"), upstream).unwrap();
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }

    /// The master's worker processes.
    fn workers(&self) -> usize {
        let out = Command::new("pgrep")
            .args(["-P", &self.master.id().to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// Points the upstream at `port` and reloads; waits until the old worker has left.
    fn switch_to(&self, port: u16) {
        Self::write_upstream(&self.dir, port);
        let status = Command::new(&self.binary)
            .arg("-p")
            .arg(&self.dir.0)
            .arg("-c")
            .arg(self.dir.0.join("nginx.conf"))
            .args(["-s", "reload"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "nginx -s reload failed: {}",
            self.errors()
        );
    }

    /// Waits until only the new worker is left (the old one finished its requests).
    async fn old_workers_gone(&self) {
        let deadline = Instant::now() + BOUND;
        while self.workers() != 1 {
            assert!(Instant::now() < deadline, "old nginx workers never left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// What one blue-green run through nginx came to, for one kind of client.
struct Legs {
    tally: zdd_check::Summary,
    /// Failed during the reload: on the clients' connections to nginx's old worker, which
    /// closes its idle keep-alive connections as it leaves.
    at_reload: u64,
    /// Failed from the old version's shutdown on: the deploy's own.
    at_shutdown: u64,
}

/// Blue (v1) live behind nginx, green (v2) started beside it; the upstream is switched to
/// green by a reload, then blue is terminated, under HTTP/1.1 and HTTP/2 keep-alive load
/// at once. Returns what each load saw, and blue's exit.
async fn blue_green_behind_nginx(nginx_bin: &Path, server: &str) -> ([Legs; 2], Exited) {
    let binary = example(server);
    let blue = Instance::start(&binary, "blue", "v1", free_port(), ZDD_ENV);
    let green = Instance::start(&binary, "green", "v2", free_port(), ZDD_ENV);
    let nginx = Nginx::start(nginx_bin, blue.port);
    let h2c_url = format!("http://127.0.0.1:{}/", nginx.h2c_port)
        .parse()
        .unwrap();
    let loads = [
        load(nginx.port, 8),
        zdd_check::Load::start(zdd_check::Plan::new(h2c_url).concurrency(8).h2c(true)),
    ];
    until("traffic flows through nginx", || {
        loads.iter().all(|l| l.ok() > 300)
    })
    .await;

    let before_reload = loads.each(zdd_check::Load::failed);
    nginx.switch_to(green.port);
    let v2 = loads.each(|l| l.version_count("v2"));
    until("green answers", || {
        loads
            .iter()
            .zip(v2)
            .all(|(l, before)| l.version_count("v2") > before + 200)
    })
    .await;
    nginx.old_workers_gone().await;

    let before_shutdown = loads.each(zdd_check::Load::failed);
    let exited = terminate(vec![blue]).await.remove(0);
    let ok = loads.each(zdd_check::Load::ok);
    until("traffic continues on green", || {
        loads
            .iter()
            .zip(ok)
            .all(|(l, before)| l.ok() > before + 500)
    })
    .await;
    let [http1, http2] = loads;
    let tallies = [http1.stop().await, http2.stop().await];
    drop((green, nginx));
    let mut i = 0;
    let legs = tallies.map(|tally| {
        let legs = Legs {
            at_reload: before_shutdown[i] - before_reload[i],
            at_shutdown: tally.failed() - before_shutdown[i],
            tally,
        };
        i += 1;
        legs
    });
    for (legs, protocol) in legs.iter().zip(["HTTP/1.1", "h2c"]) {
        println!(
            "| blue-green behind nginx (reload), {protocol} clients | {server} | {} | {} ({} at the reload, {} from the shutdown on) | {:?} |",
            legs.tally.total(),
            legs.tally.failed(),
            legs.at_reload,
            legs.at_shutdown,
            legs.tally.failures()
        );
    }
    (legs, exited)
}

/// The same reading of each of two loads.
trait Each {
    fn each(&self, read: impl Fn(&zdd_check::Load) -> u64) -> [u64; 2];
}

impl Each for [zdd_check::Load; 2] {
    fn each(&self, read: impl Fn(&zdd_check::Load) -> u64) -> [u64; 2] {
        [read(&self[0]), read(&self[1])]
    }
}

/// zdd fails nothing from the old version's shutdown on, over either protocol, and nothing
/// at all over HTTP/2, where nginx's reload is graceful too (GOAWAY). Over HTTP/1.1, nginx's
/// old worker closes its idle keep-alive client connections as it leaves, and a request
/// sent on one at that moment is lost whatever the backend: counted and printed apart
/// (README, "Blue-green behind nginx").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_behind_nginx_by_reload_fails_nothing() {
    let Some(nginx_bin) = nginx_binary() else {
        return;
    };
    let ([http1, http2], exited) = blue_green_behind_nginx(&nginx_bin, "axum_hello").await;
    let (baseline, _) = blue_green_behind_nginx(&nginx_bin, "baseline_axum_graceful").await;
    for (label, legs) in [
        ("zdd", [&http1, &http2]),
        ("axum graceful", [&baseline[0], &baseline[1]]),
    ] {
        eprintln!(
            "nginx blue-green, {label}: HTTP/1.1 {} of {} failed ({} at the reload, {} from the shutdown on), h2c {} of {} failed",
            legs[0].tally.failed(),
            legs[0].tally.total(),
            legs[0].at_reload,
            legs[0].at_shutdown,
            legs[1].tally.failed(),
            legs[1].tally.total(),
        );
    }
    assert_graceful_exits(&[exited]);
    assert_eq!(http1.at_shutdown, 0, "{:#?}", http1.tally.first_errors());
    assert_eq!(
        http2.tally.failed(),
        0,
        "failed requests: {:?}; first: {:#?}",
        http2.tally.failures(),
        http2.tally.first_errors()
    );
    for legs in [&http1, &http2] {
        assert!(legs.tally.versions().get("v1").copied().unwrap_or(0) > 0);
        assert!(legs.tally.versions().get("v2").copied().unwrap_or(0) > 500);
    }
}
