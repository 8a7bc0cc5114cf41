//! What one request came to.

use std::{error::Error as _, io};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Ok,
    ConnectRefused,
    Dns,
    Tls,
    Reset,
    EmptyReply,
    Timeout,
    ServerError,
    OtherStatus,
    OtherError,
    /// A gRPC call that ended with this status code (1 to 16; 17 for any other).
    Grpc(u8),
}

/// The gRPC status codes' names (1 to 16), as `grpc_<name>` outcomes use them.
const GRPC_CODES: [&str; 17] = [
    "grpc_ok",
    "grpc_cancelled",
    "grpc_unknown",
    "grpc_invalid_argument",
    "grpc_deadline_exceeded",
    "grpc_not_found",
    "grpc_already_exists",
    "grpc_permission_denied",
    "grpc_resource_exhausted",
    "grpc_failed_precondition",
    "grpc_aborted",
    "grpc_out_of_range",
    "grpc_unimplemented",
    "grpc_internal",
    "grpc_unavailable",
    "grpc_data_loss",
    "grpc_unauthenticated",
];

impl Outcome {
    pub(crate) const FAILURES: [Self; 9] = [
        Self::ConnectRefused,
        Self::Dns,
        Self::Tls,
        Self::Reset,
        Self::EmptyReply,
        Self::Timeout,
        Self::ServerError,
        Self::OtherStatus,
        Self::OtherError,
    ];

    /// Every kind of failure: the HTTP ones, then each gRPC status code.
    pub(crate) fn failures() -> impl Iterator<Item = Self> {
        Self::FAILURES.into_iter().chain((1..=17).map(Self::Grpc))
    }

    /// A gRPC call's end from its `grpc-status` value: `Ok` for 0, else its code; a value
    /// that is not a number is `grpc_other`.
    pub(crate) fn from_grpc_status(value: &[u8]) -> Self {
        match std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u8>().ok())
        {
            Some(0) => Self::Ok,
            Some(code @ 1..=16) => Self::Grpc(code),
            _ => Self::Grpc(17),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Grpc(code) => GRPC_CODES
                .get(usize::from(code))
                .copied()
                .unwrap_or("grpc_other"),
            Self::Ok => "ok",
            Self::ConnectRefused => "connect_refused",
            Self::Dns => "dns_error",
            Self::Tls => "tls_error",
            Self::Reset => "reset",
            Self::EmptyReply => "empty_reply",
            Self::Timeout => "timeout",
            Self::ServerError => "status_5xx",
            Self::OtherStatus => "status_other",
            Self::OtherError => "other_error",
        }
    }

    pub(crate) fn from_status(status: http::StatusCode) -> Self {
        if status.is_success() {
            Self::Ok
        } else if status.is_server_error() {
            Self::ServerError
        } else {
            Self::OtherStatus
        }
    }

    /// Whether no connection could be made at all.
    pub(crate) fn is_connect_failure(self) -> bool {
        matches!(self, Self::ConnectRefused | Self::Dns)
    }

    /// Whether the request provably never reached the server's application: its kept-alive
    /// connection closed before the request was written (hyper's "canceled"), the client's
    /// pool gave up on a connection before writing it (see [`POOL_GAVE_UP`]), or an HTTP/2
    /// server refused the stream (a GOAWAY whose last stream came before it, or
    /// `REFUSED_STREAM`), which promises it was not processed (RFC 9113 §8.7).
    pub(crate) fn never_sent(error: &hyper_util::client::legacy::Error) -> bool {
        let mut source = error.source();
        while let Some(cause) = source {
            if cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_canceled)
            {
                return true;
            }
            // hyper-util's pool reports these with its own error types, which are not
            // public; the message is what tells, as for a failed name lookup below.
            if cause.source().is_none() && POOL_GAVE_UP.contains(&cause.to_string().as_str()) {
                return true;
            }
            if let Some(h2) = cause.downcast_ref::<h2::Error>()
                && h2.is_remote()
                && (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR)
                    || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
            {
                return true;
            }
            source = cause.source();
        }
        false
    }

    /// Classifies a client error by walking its sources (an error without a source that
    /// fits no kind is `other_error`).
    pub(crate) fn from_error(error: &hyper_util::client::legacy::Error) -> Self {
        let mut source = error.source();
        while let Some(cause) = source {
            // hyper-util's connector reports a failed name lookup as a connect error with
            // this message; its error type is not public, so the message is what tells.
            if cause.to_string() == "dns error" {
                return Self::Dns;
            }
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                // rustls reports a failed handshake (an untrusted certificate, a protocol
                // mismatch) inside an I/O error, which the connector wraps in another.
                if is_tls(io) {
                    return Self::Tls;
                }
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return Self::ConnectRefused,
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                        return Self::Reset;
                    }
                    io::ErrorKind::UnexpectedEof => return Self::EmptyReply,
                    _ => {}
                }
            }
            if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
                && hyper.is_incomplete_message()
            {
                return Self::EmptyReply;
            }
            source = cause.source();
        }
        if error.is_connect() {
            Self::ConnectRefused
        } else {
            Self::OtherError
        }
    }
}

/// What hyper-util's client pool says when it drops a request before writing any of it,
/// while it waits for a connection: the connection it waited for closed before it could be
/// used ("checked out connection was closed"), or, as it connected over TLS and the server
/// picked HTTP/2, another of its new connections to the same server had been upgraded first
/// and the waiting request was cancelled in favour of that one ("ALPN upgraded to HTTP/2").
/// Both happen when connections end and are replaced under load, a rollout's every step.
const POOL_GAVE_UP: [&str; 2] = [
    "checked out connection was closed",
    "ALPN upgraded to HTTP/2",
];

/// Whether `error`, or an I/O error it wraps, is a TLS error.
fn is_tls(error: &io::Error) -> bool {
    match error.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => true,
        Some(inner) => inner.downcast_ref::<io::Error>().is_some_and(is_tls),
        None => false,
    }
}

#[cfg(test)]
mod tests;
