//! The spec's `Services/Sites` category.

mod site_command_installer;
mod site_command_installer_job;

pub use site_command_installer::{SiteCommandInstaller, SiteCommandInstallerMilestones};
pub use site_command_installer_job::SiteCommandInstallerJob;
