//! `zdd-check`: send keep-alive traffic at a URL during a deploy and count every failure.
//!
//! ```sh
//! zdd-check http://localhost:8080/ --concurrency 16 --duration 60s
//! zdd-check http://localhost:8080/ --duration 30s --slow-path /slow?ms=2000 --slow-every 20 --json
//! ```
//!
//! Ctrl-C (or SIGTERM) stops the run early and still prints the summary. Requests are
//! never retried. The summary gives the total, successes, failures by kind
//! (connect refused, reset, empty reply, timeout, 5xx, other non-2xx, other errors),
//! latency percentiles of successful requests, and requests per version (grouped by the
//! `X-Version` response header, or the one named with `--version-header`). The exit code
//! is 0 when nothing failed and no threshold was crossed, 1 otherwise, 2 on bad input.

mod load;
mod outcome;
mod summary;

use std::{process::ExitCode, time::Duration};

use clap::Parser;

/// Send keep-alive traffic at a URL and count every failure.
#[derive(Debug, Parser)]
#[command(name = "zdd-check", version, about)]
struct Args {
    /// The URL to load (http only; use --h2c for HTTP/2 without TLS).
    url: http::Uri,
    /// Concurrent clients, each on its own kept-alive connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to send traffic (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Stop after this many requests (whichever comes first with --duration).
    #[arg(long)]
    requests: Option<u64>,
    /// Per-request timeout; a request without a complete answer by then is a failure.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    timeout: Duration,
    /// A path for slow requests mixed into the traffic (e.g. /slow?ms=2000).
    #[arg(long)]
    slow_path: Option<String>,
    /// Send the slow path every N-th request of each client.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    slow_every: u64,
    /// The response header whose value groups requests per version.
    #[arg(long, default_value = "x-version")]
    version_header: http::HeaderName,
    /// Speak HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    h2c: bool,
    /// Fail (exit 1) when more requests than this failed.
    #[arg(long, default_value_t = 0)]
    max_failures: u64,
    /// Fail (exit 1) when the 99th percentile latency is above this.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_p99: Option<Duration>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.url.scheme_str() != Some("http") || args.url.authority().is_none() {
        eprintln!(
            "zdd-check: the URL must be http://host[:port]/path, got {}",
            args.url
        );
        return ExitCode::from(2);
    }
    if args.concurrency == 0 {
        eprintln!("zdd-check: --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zdd-check: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let plan = load::Plan {
        url: args.url,
        concurrency: args.concurrency,
        duration: args.duration,
        requests: args.requests,
        timeout: args.timeout,
        slow: args.slow_path.map(|path| (path, args.slow_every)),
        version_header: args.version_header,
        h2c: args.h2c,
    };
    let summary = runtime.block_on(load::run(plan));
    let verdict = summary.verdict(args.max_failures, args.max_p99);
    if args.json {
        println!("{}", summary.to_json(&verdict));
    } else {
        print!("{}", summary.to_text(&verdict));
    }
    if verdict.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
