//! The spec's `Services/Sites` category.

mod site_command_installer;

pub use site_command_installer::{SiteCommandInstaller, SiteCommandInstallerMilestones};
