//! The client's one error type.
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(Status),
    /// The server could not be reached: `no errand server at ADDR
    /// (connection refused)`. The transport's own error (a chain that
    /// repeats itself) is kept in `cause`, not shown.
    #[error("no errand server at {addr} ({})", reason(.cause))]
    Connect {
        addr: String,
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
