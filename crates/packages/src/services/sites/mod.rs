//! The spec's `Services/Sites` category: sites (nginx vhost + directory layout), git repositories,
//! zero-downtime deployments with rollback, HTTPS certificates, background work, the environment file and
//! site commands, one folder each. Shared: the site's stored configuration (`config`, `schedule`), its paths
//! and checks (`common`), and deploy webhooks (`webhook`).

pub mod common;
pub mod config;
pub mod git;
pub mod pool;
pub mod schedule;
pub mod vhost;
pub mod webhook;

crate::packages![
    site,
    repository,
    deployment,
    rollback,
    certificate,
    tasks,
    command,
    environment,
    wordpress,
    php_version,
    php_pool,
    vhost_repair
];
