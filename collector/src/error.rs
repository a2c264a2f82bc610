//! The one place where internal errors become gRPC statuses.

use tonic::Status;

use crate::{
    pki::PkiError,
    store::{EnrollError, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::Store(StoreError::AlreadyExists(what)) => {
                Status::already_exists(format!("{what} already exists"))
            }
            ApiError::Store(StoreError::NotFound(what)) => Status::not_found(format!("{what} not found")),
            ApiError::Store(StoreError::Conflict(what)) => Status::failed_precondition(what),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "storage error");
                Status::unavailable("collector storage error; retry later")
            }
            ApiError::Enroll(EnrollError::Store(e)) => ApiError::Store(e).into(),
            ApiError::Enroll(e) => Status::permission_denied(e.to_string()),
            ApiError::Pki(PkiError::BadCsr(e)) => {
                Status::invalid_argument(format!("invalid certificate signing request: {e}"))
            }
            ApiError::Pki(e) => {
                tracing::error!(error = %e, "pki error");
                Status::internal("certificate authority error")
            }
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ApiError::Internal(m) => internal("request", m),
        }
    }
}

/// A refusal: the caller may not do this.
pub fn denied(m: impl Into<String>) -> Status {
    ApiError::PermissionDenied(m.into()).into()
}

/// No usable identity on the call.
pub fn unauthenticated(m: impl Into<String>) -> Status {
    ApiError::Unauthenticated(m.into()).into()
}

/// Try again later (shutting down, storage full).
pub fn unavailable(m: impl Into<String>) -> Status {
    ApiError::Unavailable(m.into()).into()
}

/// A bad request, naming what is wrong.
pub fn invalid(m: impl Into<String>) -> Status {
    ApiError::InvalidArgument(m.into()).into()
}

/// The peer took too long.
pub fn deadline(m: impl Into<String>) -> Status {
    ApiError::DeadlineExceeded(m.into()).into()
}

/// An internal error: logged with an id, answered with only that id so
/// that no internal detail reaches a peer.
pub fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    tracing::error!(error_id = %id, error = %e, "internal error while {what}");
    Status::internal(format!("internal error (id {id})"))
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        ApiError::Store(e).into()
    }
}

impl From<EnrollError> for Status {
    fn from(e: EnrollError) -> Status {
        ApiError::Enroll(e).into()
    }
}

impl From<PkiError> for Status {
    fn from(e: PkiError) -> Status {
        ApiError::Pki(e).into()
    }
}

/// A blocking task that panicked or was cancelled.
pub fn join_error(e: tokio::task::JoinError) -> Status {
    ApiError::Internal(format!("task failed: {e}")).into()
}
