//! Domain types shared by every BrokeForge crate: enums from the package spec, validation of user input,
//! shell quoting and secrets that refuse to print themselves.

pub mod enums;
pub mod secret;
pub mod shell;
pub mod time;
pub mod validate;

pub use enums::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionStatus, ProvisionType, ServiceStatus,
    ServiceType, TeamRole,
};
pub use secret::Secret;
pub use shell::shell_quote;
pub use validate::ValidationError;
