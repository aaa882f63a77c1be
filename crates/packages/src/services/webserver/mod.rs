//! The spec's `Services/WebServer`: nginx + PHP-FPM.

mod web_service_installer;
mod web_service_remover;

pub use web_service_installer::{
    NGINX_RELOAD, PHP_EXTENSIONS, THIRD_PARTY_PHP, WebServiceInstaller, WebServiceInstallerJob,
    WebServiceInstallerMilestones, WebServiceOptions, distro_php,
};
pub use web_service_remover::{
    WebServiceRemover, WebServiceRemoverJob, WebServiceRemoverMilestones,
};

/// The service record's name.
pub const SERVICE_NAME: &str = "webserver";
