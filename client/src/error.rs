//! The client's one error type.
use tonic::{Code, Status};

use crate::tls::Trust;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status, or the transport failed
    /// (then the cause follows in parentheses: `UNAVAILABLE: tcp connect
    /// error (connection refused)`).
    #[error("{}", status_line(.0))]
    Status(Status),
    /// The server could not be reached: `no errand server at ADDR
    /// (connection refused)`, or its TLS handshake failed, and then the
    /// line says how (see [`crate::tls::handshake_failure`]): `the server
    /// at ADDR presented a certificate that the trusted CA did not sign
    /// (invalid peer certificate: UnknownIssuer)`, or, with `trust`
    /// [`Trust::System`], `... that no CA of the system's trust store
    /// signed, and no CA was given (...)`. The transport's own error (a
    /// chain that repeats itself) is kept in `cause`, not shown.
    #[error("{}", connect_line(.addr, *.trust, .cause))]
    Connect {
        addr: String,
        /// What the server's certificate had to be signed by
        /// ([`crate::ConnectOptions::trust`]).
        trust: Trust,
        cause: tonic::transport::Error,
    },
    /// An address that is not `host:port` or a URL.
    #[error("invalid server address {0:?}: use HOST:PORT or http://HOST:PORT")]
    Address(String),
    /// TLS settings that cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A token that cannot be sent.
    #[error("token: {0}")]
    Token(String),
    /// The server broke the protocol (for example a worker stream without
    /// `Registered`).
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Why a connection failed, in a few words: the innermost cause, as the
/// operating system names it when it does ("connection refused").
pub fn reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = err;
    while let Some(next) = inner.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        inner = next;
    }
    inner.to_string()
}

/// Why a connection to `addr` failed: no server there, or a failed TLS
/// handshake.
fn connect_line(addr: &str, trust: Trust, cause: &tonic::transport::Error) -> String {
    let why = reason(cause);
    match crate::tls::handshake_failure(cause) {
        Some(failure) => crate::tls::handshake_line(&failure, addr, trust, &why),
        None => format!("no errand server at {addr} ({why})"),
    }
}

/// `err` and its causes, each once, joined with ": " (tonic's own texts
/// are often only "transport error").
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `CODE: message`, and the transport's reason when it adds one.
fn status_line(status: &Status) -> String {
    let line = format!("{}: {}", code_name(status.code()), status.message());
    match std::error::Error::source(status) {
        Some(_) => {
            let why = reason(status);
            if line.contains(&why) {
                line
            } else {
                format!("{line} ({why})")
            }
        }
        None => line,
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::Status(status)
    }
}

impl Error {
    /// The gRPC code, when the server answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// `NOT_FOUND` rather than tonic's "Some requested entity was not found".
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether a failed call or stream is worth retrying: the server or the
/// network may come back; a bad request will not get better.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport error that wraps an I/O error, as tonic's do.
    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Connect(#[source] std::io::Error);

    #[test]
    fn a_transport_failure_says_why_once() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut status = Status::unavailable("tcp connect error");
        status.set_source(std::sync::Arc::new(Connect(io)));
        assert_eq!(
            Error::Status(status).to_string(),
            "UNAVAILABLE: tcp connect error (connection refused)"
        );
        let plain = Error::Status(Status::not_found("no task x"));
        assert_eq!(plain.to_string(), "NOT_FOUND: no task x");
    }
}
