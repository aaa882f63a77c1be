//! Service implementations, grouped by category as in the spec (`Services/{Category}/{Service}`): one folder
//! per package, each registering its own jobs, catalogue entry and templates.

use std::sync::OnceLock;

use crate::base::PackageError;
use crate::base::job::{BoxFuture, JobContext, JobHandler};
use crate::base::registry::Registry;

pub mod backup;
pub mod cache;
pub mod database;
pub mod monitoring;
pub mod runtime;
pub mod server;
pub mod sites;
pub mod webserver;

/// Every package BrokeForge has, and the jobs that are not packages.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = Registry::default();
        server::register(&mut r);
        webserver::register(&mut r);
        database::register(&mut r);
        sites::register(&mut r);
        backup::register(&mut r);
        cache::register(&mut r);
        runtime::register(&mut r);
        monitoring::register(&mut r);
        r.job(NoopJob);
        r
    })
}

/// A job that does nothing, to measure the queue alone.
pub struct NoopJob;

impl NoopJob {
    pub const KIND: &'static str = "noop";
}

impl JobHandler for NoopJob {
    fn kind(&self) -> &'static str {
        Self::KIND
    }
    fn run<'a>(
        &'a self,
        _ctx: &'a JobContext<'a>,
    ) -> BoxFuture<'a, Result<serde_json::Value, PackageError>> {
        Box::pin(async { Ok(serde_json::Value::Null) })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::templates::render_with;

    /// Every template a package registered, rendered with typical values.
    #[test]
    fn rendered_configs() {
        let case = |name: &str| match name {
            "nginx/default.conf" => {
                json!({"root": "/home/brokeforge/default/public", "fpm_socket": "/run/php/php8.2-fpm-brokeforge.sock"})
            }
            "nginx/site.conf" => {
                json!({"domain": "example.com", "site_id": 7, "php": true, "proxy_port": null, "spa_fallback": false,
                   "server_names": ["example.com", "www.example.com"], "default_server": false,
                   "root": "/home/brokeforge/example.com/current/public", "client_max_body_size": "64M",
                   "fpm_socket": "/run/php/php8.2-fpm-brokeforge.sock", "acme_root": "/var/lib/brokeforge/acme",
                   "certificate": null})
            }
            "php/fpm-pool.conf" => {
                json!({"version": "8.2", "purpose": "sites as the app user", "pool": "brokeforge", "user": "brokeforge",
                   "socket": "/run/php/php8.2-fpm-brokeforge.sock", "pm": "dynamic", "max_children": 10, "start_servers": 2,
                   "max_spare_servers": 3, "error_log": "/var/log/php8.2-fpm-brokeforge.log"})
            }
            "php/php.ini" => {
                json!({"version": "8.2", "memory_limit": "256M", "upload_max_filesize": "64M", "post_max_size": "64M", "max_execution_time": 60, "timezone": "UTC"})
            }
            "provision/default-site.html" => json!({"server_name": "web-1"}),
            "mariadb/server.cnf" => json!({"bind_address": "127.0.0.1", "max_connections": 200}),
            "postgresql/pg_hba.conf" => {
                json!({"allowed_sources": ["203.0.113.7/32", "198.51.100.0/24"]})
            }
            "postgresql/brokeforge.conf" => json!({"listen_addresses": "localhost"}),
            "redis/redis.conf" => json!({"bind": "127.0.0.1 -::1", "password": "example-password"}),
            "memcached/memcached.conf" => json!({"memory_mb": 64}),
            other => panic!("template {other} has no snapshot case: add one here"),
        };
        let templates = super::registry().templates();
        assert_eq!(templates.len(), 10);
        for t in templates {
            insta::assert_snapshot!(
                t.name.replace('/', "__"),
                render_with(None, t, case(t.name)).unwrap()
            );
        }
    }
}
