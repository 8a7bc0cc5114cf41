//! The command line: every value checked before any traffic is sent, so a typo is exit 2
//! with the setting named, never a silent default, a panic or an allocation failure.

use std::time::Duration;

use clap::Parser;
use http::{Uri, uri::PathAndQuery};

/// The most concurrent clients: each holds a connection (a file descriptor) and a task.
pub(crate) const MAX_CONCURRENCY: u64 = 10_000;
/// The longest run: a week.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest per-request timeout: an hour.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Send keep-alive traffic at a URL and count every failure.
#[derive(Debug, Parser)]
#[command(name = "zdd-check", version, about, disable_version_flag = true)]
pub(crate) struct Args {
    /// Print zdd-check's version (`--version` names the version to judge).
    #[arg(short = 'V', long = "print-version", action = clap::ArgAction::Version)]
    print_version: Option<bool>,
    /// The URL to load: http:// or https:// (--h2c for HTTP/2 without TLS).
    #[arg(value_parser = url)]
    pub(crate) url: Uri,
    /// Concurrent clients, each on its own kept-alive connection (1 to 10000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=MAX_CONCURRENCY))]
    pub(crate) concurrency: u64,
    /// How long to send traffic (e.g. 30s, 2m; at most a week).
    #[arg(long, value_parser = duration_at_most(MAX_DURATION), default_value = "10s")]
    pub(crate) duration: Duration,
    /// Stop after this many requests (whichever comes first with --duration).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) requests: Option<u64>,
    /// Per-request timeout; a request without a complete answer by then is a failure (at
    /// most an hour).
    #[arg(long, value_parser = duration_at_most(MAX_TIMEOUT), default_value = "5s")]
    pub(crate) timeout: Duration,
    /// A path for slow requests mixed into the traffic (e.g. /slow?ms=2000).
    #[arg(long, value_parser = path)]
    pub(crate) slow_path: Option<PathAndQuery>,
    /// Send the slow path every N-th request of each client.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) slow_every: u64,
    /// The response header whose value groups requests per version.
    #[arg(long, default_value = "x-version")]
    pub(crate) version_header: http::HeaderName,
    /// Speak HTTP/2 only: without TLS (prior knowledge) on http://, through ALPN on https://.
    #[arg(long)]
    pub(crate) h2c: bool,
    /// Send gRPC unary calls (HTTP/2) instead of GETs: to the method the URL's path names
    /// (http://host:port/package.Service/Method), or to grpc.health.v1.Health/Check when
    /// the path is /. A call succeeds when its status is OK; other statuses are failures
    /// counted by code (grpc_unavailable, …).
    #[arg(long)]
    pub(crate) grpc: bool,
    /// The gRPC request message, protobuf-encoded, in hex (e.g. 0a03796f75 for a string
    /// field 1 = "you"). Default is empty: every field at its default.
    #[arg(long, value_name = "HEX", requires = "grpc", value_parser = hex)]
    pub(crate) grpc_message: Option<bytes::Bytes>,
    /// Trust the certificates in this PEM file for https:// (a private CA, or the server's
    /// own self-signed certificate) instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub(crate) cacert: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate on https:// (test servers only).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Fail (exit 1) when more requests than this failed (default 0; as a canary gate,
    /// only when given).
    #[arg(long)]
    pub(crate) max_failures: Option<u64>,
    /// Fail (exit 1) when the 99th percentile latency is above this.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_p99: Option<Duration>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Canary gate: judge only the answers of this version (the version header's value).
    /// Exit 0 promote, 1 roll back, 3 inconclusive; a version that never answered is
    /// inconclusive.
    #[arg(long, value_name = "VERSION")]
    pub(crate) version: Option<String>,
    /// Canary gate: roll back when more than this share of requests failed (0% to 100%,
    /// e.g. 1% or 0.5%).
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub(crate) max_error_rate: Option<f64>,
    /// Canary gate: roll back when the 95th-percentile latency is above this (e.g. 1000ms).
    #[arg(long, value_parser = duration_at_most(MAX_TIMEOUT))]
    pub(crate) max_p95: Option<Duration>,
    /// Canary gate: fewer requests than this (from the judged version) are inconclusive,
    /// not a pass (default 100).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) min_requests: Option<u64>,
    /// No live progress on stderr (a line refreshed every second on a terminal, a line
    /// every --progress-every otherwise).
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// How often a progress line is written when stderr is not a terminal (100ms to 1h).
    #[arg(long, default_value = "10s", value_parser = progress_every)]
    pub(crate) progress_every: Duration,
}

impl Args {
    /// The canary gate the options ask for, if any.
    pub(crate) fn gate(&self) -> Option<zdd_check::Gate> {
        if self.version.is_none()
            && self.max_error_rate.is_none()
            && self.max_p95.is_none()
            && self.min_requests.is_none()
        {
            return None;
        }
        let mut gate = zdd_check::Gate::new();
        if let Some(version) = &self.version {
            gate = gate.version(version.clone());
        }
        if let Some(rate) = self.max_error_rate {
            gate = gate.max_error_rate(rate);
        }
        if let Some(p95) = self.max_p95 {
            gate = gate.max_p95(p95);
        }
        if let Some(requests) = self.min_requests {
            gate = gate.min_requests(requests);
        }
        Some(gate)
    }
}

/// A progress interval: from 100 ms (a line is not worth less) to an hour.
fn progress_every(value: &str) -> Result<Duration, String> {
    let every = duration_at_most(MAX_TIMEOUT)(value)?;
    if every < Duration::from_millis(100) {
        return Err(format!("{value} is shorter than 100ms"));
    }
    Ok(every)
}

/// A share written as a percentage, `0%` to `100%` (the `%` may be left out): a fraction
/// from 0 to 1.
fn percent(value: &str) -> Result<f64, String> {
    let number = value.trim().trim_end_matches('%').trim();
    let percent: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a percentage: expected e.g. 1% or 0.5%"))?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(format!("{value} is outside 0% to 100%"));
    }
    Ok(percent / 100.0)
}

/// An `http(s)://host[:port]/path` URL with a port in range (the `http` crate drops a port it
/// cannot read, which would quietly send the load to port 80).
fn url(value: &str) -> Result<Uri, String> {
    let uri: Uri = value.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the URL must start with http:// or https://".to_owned()),
    }
    let authority = uri.authority().ok_or("the URL has no host")?;
    if authority.host().is_empty() {
        return Err("the URL has no host".to_owned());
    }
    // What follows the host: skip user information and an IPv6 literal's colons.
    let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let after_host = host_and_port.rsplit(']').next().unwrap_or_default();
    if let Some((_, port)) = after_host.rsplit_once(':') {
        match port.parse::<u16>() {
            Ok(0) => return Err("port 0 cannot be connected to".to_owned()),
            Ok(_) => {}
            Err(_) => return Err(format!("port {port:?} is not a port number (1 to 65535)")),
        }
    }
    Ok(uri)
}

impl Args {
    /// Whom to trust for an https:// URL; an error for TLS options on an http:// one.
    pub(crate) fn trust(&self) -> Result<Option<zdd_check::Trust>, String> {
        let https = self.url.scheme_str() == Some("https");
        match (&self.cacert, self.insecure, https) {
            (Some(_), _, false) | (_, true, false) => {
                Err("--cacert and --insecure are for https:// URLs".to_owned())
            }
            (_, _, false) => Ok(None),
            (Some(path), _, true) => Ok(Some(zdd_check::Trust::CaFile(path.clone()))),
            (None, true, true) => Ok(Some(zdd_check::Trust::Insecure)),
            (None, false, true) => Ok(Some(zdd_check::Trust::System)),
        }
    }
}

/// A human-readable duration no longer than `limit`.
fn duration_at_most(limit: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |value| {
        let duration = humantime::parse_duration(value)
            .map_err(|e| format!("{e}: expected a number with a unit, such as 500ms, 30s or 2m"))?;
        if duration > limit {
            return Err(format!(
                "{value} is longer than the limit of {}",
                humantime::format_duration(limit)
            ));
        }
        Ok(duration)
    }
}

/// Bytes written as hex digits, two a byte (at most 1 MiB).
fn hex(value: &str) -> Result<bytes::Bytes, String> {
    let value = value.trim();
    if !value.len().is_multiple_of(2) {
        return Err("an odd number of hex digits: two make one byte".to_owned());
    }
    if value.len() > 2 << 20 {
        return Err("longer than 1 MiB".to_owned());
    }
    (0..value.len())
        .step_by(2)
        .map(|i| {
            value
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| {
                    format!(
                        "not hex digits at {}: {:?}",
                        i,
                        value.get(i..i + 2).unwrap_or("")
                    )
                })
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(bytes::Bytes::from)
}

/// A request path with an optional query, starting with `/`.
fn path(value: &str) -> Result<PathAndQuery, String> {
    if !value.starts_with('/') {
        return Err(format!("must start with / (e.g. /{value})"));
    }
    value
        .parse()
        .map_err(|e| format!("not a request path: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use clap::Parser;
    use proptest::prelude::*;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("zdd-check").chain(args.iter().copied()))
    }

    #[test]
    fn limits_hold_at_their_edges() {
        let ok = |args: &[&str]| parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let base = "http://127.0.0.1:8080/";
        assert_eq!(ok(&[base, "--concurrency", "10000"]).concurrency, 10_000);
        assert!(parse(&[base, "--concurrency", "10001"]).is_err());
        assert_eq!(ok(&[base, "--duration", "7days"]).duration, MAX_DURATION);
        assert!(parse(&[base, "--duration", "7days 1s"]).is_err());
        assert_eq!(ok(&[base, "--timeout", "1h"]).timeout, MAX_TIMEOUT);
        assert!(parse(&[base, "--timeout", "61m"]).is_err());
        assert!(parse(&[base, "--requests", "0"]).is_err());
        assert_eq!(ok(&["http://[::1]:65535/"]).url.port_u16(), Some(65535));
        assert_eq!(ok(&["http://user:pw@localhost:1/"]).url.port_u16(), Some(1));
        assert_eq!(ok(&["http://localhost/"]).url.port_u16(), None);
        let grpc = ok(&[base, "--grpc", "--grpc-message", "0A03796f75"]);
        assert_eq!(grpc.grpc_message.unwrap().as_ref(), b"\x0a\x03you");
        assert!(parse(&[base, "--grpc", "--grpc-message", "0a0"]).is_err());
        assert!(parse(&[base, "--grpc", "--grpc-message", "zz"]).is_err());
        assert!(
            parse(&[base, "--grpc-message", "00"]).is_err(),
            "needs --grpc"
        );
        let gate = ok(&[
            base,
            "--version",
            "v2",
            "--max-error-rate",
            "1%",
            "--max-p95",
            "1000ms",
        ]);
        assert_eq!(gate.version.as_deref(), Some("v2"));
        assert_eq!(gate.max_error_rate, Some(0.01));
        assert_eq!(gate.max_p95, Some(std::time::Duration::from_secs(1)));
        assert_eq!(
            ok(&[base, "--max-error-rate", "0.5"]).max_error_rate,
            Some(0.005)
        );
        assert_eq!(
            ok(&[base, "--max-error-rate", "100%"]).max_error_rate,
            Some(1.0)
        );
        for bad in ["150%", "-1%", "fast", "%", "NaN"] {
            let flag = format!("--max-error-rate={bad}");
            let error = parse(&[base, &flag]).unwrap_err().to_string();
            assert!(error.contains("--max-error-rate"), "{bad}: {error}");
        }
        let error = parse(&[base, "--max-p95", "fast"]).unwrap_err().to_string();
        assert!(error.contains("--max-p95"), "{error}");
        assert!(parse(&[base, "--min-requests", "0"]).is_err());
        assert!(ok(&[base]).gate().is_none());
        assert!(ok(&[base, "--min-requests", "5"]).gate().is_some());
        let slow = ok(&[base, "--slow-path", "/slow?ms=100"])
            .slow_path
            .unwrap();
        assert_eq!(slow.as_str(), "/slow?ms=100");
    }

    proptest! {
        /// No value of any option panics: it is either refused (exit 2 through clap) or
        /// accepted within the limits the load relies on.
        #[test]
        fn no_argument_value_panics(
            option in prop::sample::select(vec![
                "--concurrency", "--duration", "--requests", "--timeout", "--slow-path",
                "--slow-every", "--version-header", "--max-failures", "--max-p99",
                "--grpc-message", "--version", "--max-error-rate", "--max-p95",
                "--min-requests",
            ]),
            value in prop_oneof![
                any::<String>(),
                "[0-9]{1,25}(ns|ms|s|m|h|d|w|y)?",
                "-?[0-9]{1,22}",
                "/[ -~]{0,20}",
            ],
        ) {
            if let Ok(args) = parse(&["http://127.0.0.1:8080/", "--grpc", option, &value]) {
                prop_assert!((1..=MAX_CONCURRENCY).contains(&args.concurrency));
                prop_assert!(args.duration <= MAX_DURATION && args.timeout <= MAX_TIMEOUT);
                prop_assert!(Instant::now().checked_add(args.duration + args.timeout).is_some());
                if let Some(rate) = args.max_error_rate {
                    prop_assert!((0.0..=1.0).contains(&rate), "{rate}");
                }
                if let Some(path) = &args.slow_path {
                    prop_assert!(path.as_str().starts_with('/'));
                }
            }
        }

        #[test]
        fn no_url_panics_and_an_accepted_one_has_its_port(value in prop_oneof![
            any::<String>(),
            "http://[a-z0-9.]{0,12}(:[0-9]{0,7})?(/[ -~]{0,10})?",
            "http://\\[[0-9a-f:]{0,10}\\](:[0-9]{0,7})?/",
        ]) {
            if let Ok(args) = parse(&[&value]) {
                let authority = args.url.authority().unwrap().as_str();
                let tail = authority.rsplit(']').next().unwrap();
                if tail.contains(':') {
                    prop_assert!(args.url.port_u16().is_some_and(|p| p > 0), "{value}");
                }
            }
        }
    }
}
