//! The spec's `Services/Server` category: getting into a server and its base provisioning.

mod connection_check_installer;
mod onboarding;
mod server_access_installer;
mod server_installer;

pub use connection_check_installer::{
    ConnectionCheckInstaller, ConnectionCheckInstallerJob, ConnectionCheckInstallerMilestones,
};
pub use onboarding::{
    AddServer, Callback, CallbackStatus, NewServerResult, ServerAccessInstallerJob, TOKEN_LIFETIME,
    add_server, handle_callback, provisioning_script, start_direct_onboarding,
};
pub use server_access_installer::{
    AccessKeys, ServerAccessInstaller, ServerAccessInstallerMilestones, sudoers,
};
pub use server_installer::{
    APT, BASE_PACKAGES, SUPPORTED_OS, ServerInstaller, ServerInstallerJob,
    ServerInstallerMilestones, ServerInstallerOptions, validate_timezone,
};
