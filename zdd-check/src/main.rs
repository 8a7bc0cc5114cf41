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
//! is 0 when nothing failed and no threshold was crossed, 1 otherwise, 2 on bad input
//! (every option is checked first, with its limit in the message).
//!
//! After a failed connect (refused, or the name did not resolve), a client waits before its
//! next request, 10 ms doubling to 1 s, so a server that is down is not hammered; the
//! summary says how often and how long.

mod args;
mod load;
mod outcome;
mod summary;

use std::process::ExitCode;

use clap::Parser;

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
    let plan = load::Plan {
        slow: args.slow_url().map(|url| (url, args.slow_every)),
        url: args.url,
        // At most `MAX_CONCURRENCY`, which fits any `usize`.
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
        duration: args.duration,
        requests: args.requests,
        timeout: args.timeout,
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
