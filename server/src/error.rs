//! The core's error type, and the one place it becomes a gRPC status.
use tonic::{Code, Status};

use crate::store::StoreError;

/// An error a caller can act on. Each variant maps to one gRPC code; the
/// message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Store(StoreError::Full(_)) => Code::ResourceExhausted,
            Error::Store(StoreError::Unavailable(_)) => Code::Unavailable,
            Error::Store(StoreError::LimitReached(_)) => Code::ResourceExhausted,
            Error::Store(_) => Code::Internal,
        };
        let message = match err {
            Error::Store(StoreError::LimitReached(m)) => m,
            other => other.to_string(),
        };
        Status::new(code, message)
    }
}
