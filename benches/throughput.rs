//! Throughput and latency: the same hello-world handler served by plain `axum::serve`, axum
//! with `with_graceful_shutdown`, hyper-util with `GracefulShutdown`, and zdd (layer,
//! probes and the zdd-hyper loop), in turn and alternating, each loaded by `zdd-check` over
//! keep-alive HTTP/1.1 and h2c; medians of several rounds and zdd's ratio to plain axum.
//!
//! ```sh
//! cargo bench --bench throughput                          # 5 rounds of 5 s per server and protocol
//! cargo bench --bench throughput -- --rounds 3 --seconds 3 --concurrency 32
//! cargo bench --bench throughput -- --servers zdd,hyper-util --protocols h2c
//! cargo bench --bench throughput -- --pin 0,1   # server on CPU 0, load generator on CPU 1
//! benches/layouts --count 8 -- --rounds 40 --servers zdd,hyper-util-duties --protocols h2load
//! ```
//!
//! Client and server share the machine: on a small one, compare ratios, not absolute rates.
//! With `--pin S,C` (through `taskset`) the server runs on CPU `S` and the load generator
//! on CPU `C`, so they do not take each other's core. The last table gives zdd's ratio to
//! each other server: the median over the rounds of the ratio within each round, and the
//! interval the true median lies in at least 95 % sure (`common/stats.rs`): a target the
//! interval straddles is not decided by the run.
//!
//! With `--layouts DIR`, round `r` runs every server from the `r mod K`th of the K benchmark
//! binaries in `DIR` instead of this one: builds that differ only in where the linker put
//! each function (`benches/layouts` makes them). Where code lies decides which of it shares
//! instruction-cache sets and pages, and moves a server's rate by a few per cent either way
//! by luck; over several layouts that luck averages out instead of favouring one server.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each driver uses a part of it
mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use axum::{Router, routing::get, serve::ListenerExt};
use common::{
    Protections,
    counting::{Counting, Name, Unnamed},
};

/// The servers compared by default, then those run only when asked for by name:
/// `hyper-util-timeout` is hyper-util with hyper's HTTP/1 header read timeout on (10 s, zdd's
/// default header timeout): the peer that bounds slow request heads, as zdd does.
/// `hyper-util-counting` is hyper-util with the least any request tracker does (one shared
/// in-flight count, its guard carried in the response body; `common/counting.rs`): the
/// floor under what tracking requests costs. `hyper-util-named` adds what the forced-close
/// log needs (each guard carries the request's method, the start of its path and its start
/// time, as zdd's does), and `hyper-util-duties` adds to that the header timeout and an idle
/// timeout (`common/idle.rs`: one armed timer per connection, as zdd's connections have):
/// the floor under what zdd's design asks of each request and connection.
const SERVERS: [&str; 8] = [
    "axum",
    "axum-graceful",
    "hyper-util",
    "zdd",
    "hyper-util-timeout",
    "hyper-util-counting",
    "hyper-util-named",
    "hyper-util-duties",
];
/// zdd's default header and idle timeouts (`ZDD_HEADER_TIMEOUT`, `ZDD_IDLE_TIMEOUT`), for
/// the peers that bound the same.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(620);
const DEFAULT_SERVERS: usize = 4;
/// `h2load` is h2c too, loaded by h2load (nghttp2) with 10 streams at a time per connection:
/// asked for by name (`--protocols http1,h2c,h2load`).
const PROTOCOLS: [&str; 3] = ["http1", "h2c", "h2load"];

fn main() {
    if let Some(kind) = common::value("--server") {
        server(&kind);
        return;
    }
    let rounds: usize = common::arg("--rounds", 5);
    let seconds: u64 = common::arg("--seconds", 5);
    let concurrency: usize = common::arg("--concurrency", 32);
    let servers = pick("--servers", &SERVERS, DEFAULT_SERVERS);
    let protocols = match common::value("--protocols") {
        Some(_) => pick("--protocols", &PROTOCOLS, PROTOCOLS.len()),
        None => PROTOCOLS[..2].to_vec(),
    };
    let checker = common::build_checker();
    let pin = common::pin();
    let layouts = layouts();

    let mut results: BTreeMap<(&str, &str), Vec<Measured>> = BTreeMap::new();
    for round in 0..rounds {
        let mut order = servers.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        let exe = &layouts[round % layouts.len()];
        for kind in order {
            for &protocol in &protocols {
                let measured = measure(
                    exe,
                    &checker,
                    kind,
                    protocol,
                    seconds,
                    concurrency,
                    pin.as_ref(),
                );
                println!(
                    "round {round} {kind:<14} {protocol:<5} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  server CPU {:>5.2} us/request{}",
                    measured.rps,
                    measured.p50,
                    measured.p99,
                    measured.cpu_us,
                    match layouts.len() {
                        1 => String::new(),
                        _ => format!("  layout {}", round % layouts.len()),
                    }
                );
                results.entry((kind, protocol)).or_default().push(measured);
            }
        }
    }

    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "\n{rounds} rounds of {seconds} s, {concurrency} keep-alive clients{}, medians:",
        match layouts.len() {
            1 => String::new(),
            k => format!(", {k} code layouts"),
        }
    );
    println!(
        "{:<14} {:<5} {:>10} {:>9} {:>9} {:>11} {:>10} {:>10} {:>10}",
        "server",
        "proto",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU us/req",
        "rps/axum",
        "p99/axum",
        "CPU/axum"
    );
    for &protocol in &protocols {
        let of = |kind: &str, f: fn(&Measured) -> f64| {
            median(&mut results[&(kind, protocol)].iter().map(f).collect())
        };
        let [rps, p50, p99, cpu]: [fn(&Measured) -> f64; 4] =
            [|m| m.rps, |m| m.p50, |m| m.p99, |m| m.cpu_us];
        for &kind in &servers {
            println!(
                "{kind:<14} {protocol:<5} {:>10.0} {:>9.2} {:>9.2} {:>11.2} {:>9.3}x {:>9.3}x {:>9.3}x",
                of(kind, rps),
                of(kind, p50),
                of(kind, p99),
                of(kind, cpu),
                of(kind, rps) / of("axum", rps),
                of(kind, p99) / of("axum", p99),
                of(kind, cpu) / of("axum", cpu),
            );
        }
    }

    if !servers.contains(&"zdd") {
        return;
    }
    println!(
        "\nzdd against each server: medians over the rounds of zdd / server in the same round,\n\
         [in brackets: where the true median lies, at least {:.0} % sure; 6 rounds or more]",
        common::stats::CONFIDENCE * 100.0
    );
    println!(
        "{:<17} {:<6} {:>23} {:>23} {:>23}",
        "against", "proto", "req/s", "p99", "CPU/req"
    );
    for &protocol in &protocols {
        for &kind in servers.iter().filter(|&&k| k != "zdd") {
            let ratio = |f: fn(&Measured) -> f64| {
                let zdd = &results[&("zdd", protocol)];
                let other = &results[&(kind, protocol)];
                common::stats::ratio_with_interval(
                    zdd.iter().zip(other).map(|(z, o)| f(z) / f(o)).collect(),
                )
            };
            println!(
                "{kind:<17} {protocol:<6} {:>23} {:>23} {:>23}",
                ratio(|m| m.rps),
                ratio(|m| m.p99),
                ratio(|m| m.cpu_us),
            );
        }
    }
}

/// The names after `--name` (comma-separated) that are among `all`, or all of them; plain
/// axum is always kept, as every ratio is to it.
/// The values of `name` (comma-separated, each one of `all`), or the first `default` of
/// `all`. Plain axum is always included: ratios are taken to it.
fn pick(name: &str, all: &[&'static str], default: usize) -> Vec<&'static str> {
    let Some(wanted) = common::value(name) else {
        return all[..default].to_vec();
    };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    if let Some(unknown) = wanted.iter().find(|w| !all.contains(w)) {
        eprintln!("{name}: {unknown:?} is not one of {all:?}");
        std::process::exit(2);
    }
    all.iter()
        .copied()
        .filter(|a| wanted.contains(a) || *a == "axum")
        .collect()
}

/// The benchmark binaries the servers run from: those in the directory after `--layouts`
/// (in name order), or this one.
fn layouts() -> Vec<PathBuf> {
    let Some(dir) = common::value("--layouts") else {
        return vec![std::env::current_exe().expect("the benchmark's own path")];
    };
    let mut layouts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            eprintln!("--layouts {dir}: {e}");
            std::process::exit(2);
        })
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.is_file())
        .collect();
    if layouts.is_empty() {
        eprintln!("--layouts {dir}: no benchmark binary in it (benches/layouts builds them)");
        std::process::exit(2);
    }
    layouts.sort();
    layouts
}

/// One run.
#[derive(Clone, Copy)]
struct Measured {
    rps: f64,
    /// Latency percentiles, ms.
    p50: f64,
    p99: f64,
    /// The server's CPU time (user + system) per request served, microseconds: the cost
    /// per request, which the other load on a shared machine disturbs less than the rate.
    cpu_us: f64,
}

/// Starts `kind` from the benchmark binary `exe`, loads it with zdd-check (or h2load),
/// stops it.
fn measure(
    exe: &Path,
    checker: &Path,
    kind: &str,
    protocol: &str,
    seconds: u64,
    concurrency: usize,
    pin: Option<&(String, String)>,
) -> Measured {
    let mut server =
        common::ServerProcess::start_from(exe, kind, pin.map(|(server, _)| server.as_str()));
    let port = server.port;
    let cpu_before = cpu_seconds(server.child.id());
    let load = if protocol == "h2load" {
        Path::new("h2load")
    } else {
        checker
    };
    let mut check = common::command_on(load, pin.map(|(_, client)| client.as_str()));
    let url = format!("http://127.0.0.1:{port}/");
    if protocol == "h2load" {
        // h2c with prior knowledge, 10 streams at a time on each connection.
        check.args([
            "-c",
            &concurrency.to_string(),
            "-m",
            "10",
            "-D",
            &seconds.to_string(),
            &url,
        ]);
    } else {
        check.arg(&url).args([
            "--concurrency",
            &concurrency.to_string(),
            "--duration",
            &format!("{seconds}s"),
            "--json",
        ]);
        if protocol == "h2c" {
            check.arg("--h2c");
        }
    }
    let output = check.output().unwrap_or_else(|e| {
        eprintln!(
            "{} does not run ({e}): install it (h2load: apt-get install nghttp2-client)",
            load.display()
        );
        std::process::exit(2);
    });
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    server.terminate();
    let _ = server.child.wait();
    if !output.status.success() && output.stdout.is_empty() {
        // Also a load generator that is missing behind `taskset`, which runs but cannot
        // start it.
        eprintln!(
            "{} failed ({}): {}\ninstall it if it is missing (h2load: apt-get install nghttp2-client)",
            load.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        std::process::exit(2);
    }
    if protocol == "h2load" {
        return h2load_measured(&String::from_utf8_lossy(&output.stdout), kind, cpu);
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("zdd-check summary");
    assert_eq!(summary["failed"], 0, "{kind} {protocol}: {summary}");
    let total = summary["total"].as_f64().unwrap_or(f64::NAN);
    let latency = |p: &str| summary["latency_ms"][p].as_f64().unwrap_or(f64::NAN);
    Measured {
        rps: total / summary["elapsed_s"].as_f64().unwrap_or(f64::NAN),
        p50: latency("p50"),
        p99: latency("p99"),
        cpu_us: cpu / total * 1e6,
    }
}

/// What h2load printed: its rate, and its mean time per request in place of both
/// percentiles (h2load gives no percentiles).
fn h2load_measured(out: &str, kind: &str, cpu: f64) -> Measured {
    let number = |line: &str, after: &str| -> f64 {
        line.split(after)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.trim_end_matches(',').parse().ok())
            .unwrap_or(f64::NAN)
    };
    let succeeded = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .map_or(f64::NAN, |l| number(l, "done, "));
    let failed = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .map_or(f64::NAN, |l| number(l, "succeeded, "));
    assert_eq!(failed, 0.0, "{kind} h2load: {out}");
    let rps = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .map_or(f64::NAN, |l| number(l, "s, "));
    let mean_ms = out
        .lines()
        .find(|l| l.trim_start().starts_with("time for request:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .map_or(f64::NAN, |mean| {
            let value: f64 = mean
                .trim_end_matches(|c: char| c.is_alphabetic())
                .parse()
                .unwrap_or(f64::NAN);
            if mean.ends_with("ms") {
                value
            } else if mean.ends_with("us") {
                value / 1000.0
            } else {
                value * 1000.0
            }
        });
    Measured {
        rps,
        p50: mean_ms,
        p99: mean_ms,
        cpu_us: cpu / succeeded * 1e6,
    }
}

/// A process's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; the clock
    // tick is 100 Hz on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

fn server(kind: &str) {
    common::server_main(|listener| async move {
        let terminate = common::sigterm();
        // Every server sets TCP_NODELAY, as zdd's listener does, so Nagle's algorithm does not
        // skew small responses.
        let nodelay = |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        };
        match kind {
            "axum" => {
                tokio::select! {
                    _ = axum::serve(listener.tap_io(nodelay), app()) => {}
                    () = terminate => {}
                }
            }
            "axum-graceful" => {
                axum::serve(listener.tap_io(nodelay), app())
                    .with_graceful_shutdown(terminate)
                    .await
                    .unwrap();
            }
            "hyper-util" => {
                common::hyper_util_graceful(listener, app(), terminate, Protections::default())
                    .await;
            }
            "hyper-util-timeout" => {
                let protections = Protections {
                    header_timeout: Some(HEADER_TIMEOUT),
                    ..Protections::default()
                };
                common::hyper_util_graceful(listener, app(), terminate, protections).await;
            }
            "hyper-util-counting" => {
                let counted = Counting::<_, Unnamed>::new(app());
                common::hyper_util_graceful(listener, counted, terminate, Protections::default())
                    .await;
            }
            "hyper-util-named" => {
                let counted = Counting::<_, Name>::new(app());
                common::hyper_util_graceful(listener, counted, terminate, Protections::default())
                    .await;
            }
            "hyper-util-duties" => {
                let counted = Counting::<_, Name>::new(app());
                let protections = Protections {
                    header_timeout: Some(HEADER_TIMEOUT),
                    idle_timeout: Some(IDLE_TIMEOUT),
                    ..Protections::default()
                };
                common::hyper_util_graceful(listener, counted, terminate, protections).await;
            }
            _ => {
                let mut lifecycle = zdd::Lifecycle::new(zdd::Config::default());
                lifecycle.listen_for_signals().unwrap();
                let _ = zdd::axum::serve(listener, app(), lifecycle).await;
            }
        }
    });
}
