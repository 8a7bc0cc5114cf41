//! `zdd-check`: send keep-alive traffic at a URL during a deploy and count every failure.
//!
//! ```sh
//! zdd-check http://localhost:8080/ --concurrency 16 --duration 60s
//! zdd-check http://localhost:8080/ --duration 30s --slow-path /slow?ms=2000 --slow-every 20 --json
//! zdd-check --grpc http://localhost:50051/hello.v1.Greeter/SayHello --duration 30s
//! zdd-check --grpc http://localhost:50051/     # grpc.health.v1.Health/Check
//! ```
//!
//! Ctrl-C (or SIGTERM) stops the run early and still prints the summary. Requests are
//! never retried. The summary gives the total, successes, failures by kind
//! (connect refused, reset, empty reply, timeout, 5xx, other non-2xx, other errors, and
//! with `--grpc` each non-OK gRPC status by name: `grpc_unavailable`, …),
//! latency percentiles of successful requests, and requests per version (grouped by the
//! `X-Version` response header, or the one named with `--version-header`). The exit code
//! is 0 when nothing failed and no threshold was crossed, 1 otherwise, 2 on bad input
//! (every option is checked first, with its limit in the message).
//!
//! As a canary gate (`--version v2 --max-error-rate 1% --max-p95 1000ms --min-requests
//! 200`), it judges the answers of one version (or all traffic without `--version`) and
//! exits 0 to promote, 1 to roll back, 3 when inconclusive (too few requests, or the
//! version never answered); `--json` adds a `verdict` object with the numbers it was based
//! on. Progress is shown on stderr while it runs (`--no-progress` turns it off).
//!
//! After a failed connect (refused, or the name did not resolve), a client waits before its
//! next request, 10 ms doubling to 1 s, so a server that is down is not hammered; the
//! summary says how often and how long.

mod args;
mod live;

use std::process::ExitCode;

use clap::Parser;
use zdd_check::{Load, Plan};

fn main() -> ExitCode {
    // Bad input ends here with exit code 2 and a message naming the option.
    let args = args::Args::parse();
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
    let mut plan = Plan::new(args.url.clone())
        // At most `MAX_CONCURRENCY`, which fits any `usize`.
        .concurrency(usize::try_from(args.concurrency).unwrap_or(usize::MAX))
        .duration(args.duration)
        .timeout(args.timeout)
        .version_header(args.version_header.clone())
        .h2c(args.h2c);
    if let Some(limit) = args.requests {
        plan = plan.requests(limit);
    }
    if args.grpc {
        plan = plan.grpc(args.grpc_message.as_deref().unwrap_or_default());
    }
    if let Some(path) = args.slow_path.clone() {
        plan = plan.slow(path, args.slow_every);
    }
    let tls = args.trust().and_then(|trust| {
        trust
            .map(|trust| zdd_check::client_config(&trust))
            .transpose()
    });
    match tls {
        Ok(Some(config)) => plan = plan.tls(config),
        Ok(None) => {}
        Err(message) => {
            eprintln!("zdd-check: {message}");
            return ExitCode::from(2);
        }
    }
    let gate = args.gate();
    let summary = runtime.block_on(async {
        let load = Load::start(plan);
        // Ctrl-C or SIGTERM ends the run early; the summary is still printed.
        let stopper = load.stopper();
        tokio::spawn(async move {
            stopped().await;
            stopper.stop();
        });
        if !args.no_progress {
            live::show(&load, load.until_done(), args.progress_every).await;
        }
        load.finish().await
    });
    let Some(gate) = gate else {
        let verdict = summary.verdict(args.max_failures.unwrap_or(0), args.max_p99);
        if args.json {
            println!("{}", summary.to_json(&verdict));
        } else {
            print!("{}", summary.to_text(&verdict));
        }
        return match verdict.is_empty() {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        };
    };
    // A canary gate: its decision is the exit code; thresholds of the plain check apply
    // only when given.
    let mut judged = gate.judge(&summary);
    let other = match args.max_failures {
        Some(max) => summary.verdict(max, args.max_p99),
        None => summary.verdict(u64::MAX, args.max_p99),
    };
    judged.also_failed(&other);
    if args.json {
        let mut json: serde_json::Value =
            serde_json::from_str(&summary.to_json(&other)).unwrap_or_default();
        json["verdict"] = judged.to_json();
        println!("{json}");
    } else {
        print!("{}", summary.to_text(&other));
        println!("{judged}");
    }
    ExitCode::from(judged.decision().exit_code())
}

/// Completes on Ctrl-C or SIGTERM (never, if neither can be listened for).
async fn stopped() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
