//! What can go wrong, as the people asking should hear it; the web layer maps each kind to a status once.

use brokeforge_core::ValidationError;
use brokeforge_packages::PackageError;
use brokeforge_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Bad input: nothing changed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Not there, or not the caller's (the two look the same on purpose).
    #[error("not found")]
    NotFound,
    /// Signed in, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The password was right, and the account asks for a second factor too.
    #[error("{0}")]
    SecondFactorRequired(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    Throttled(String),
    /// The request clashes with the current state (`code` says how).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The server could not be reached or a command on it failed.
    #[error("{message}")]
    Remote { code: &'static str, message: String },
    /// A fault of BrokeForge itself; the log has the details, the caller gets a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Invalid(ValidationError::new(field, message))
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => DomainError::NotFound,
            StoreError::Conflict(m) => DomainError::conflict("conflict", m),
            e => {
                tracing::error!(error = %e, "store error");
                DomainError::Internal(e.to_string())
            }
        }
    }
}

impl From<PackageError> for DomainError {
    fn from(e: PackageError) -> Self {
        match e {
            PackageError::Validation(v) => v.into(),
            PackageError::Store(s) => s.into(),
            PackageError::Ssh(s) => DomainError::Remote {
                code: "ssh_error",
                message: s.to_string(),
            },
            PackageError::CommandFailed { message, .. } => DomainError::Remote {
                code: "command_failed",
                message,
            },
            PackageError::Cancelled => DomainError::conflict("cancelled", "cancelled"),
        }
    }
}
