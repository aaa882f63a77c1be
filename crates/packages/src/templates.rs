//! Config files are templates (minijinja, the Blade of this project), embedded in the binary. An operator may
//! override any of them by placing a file with the same relative name in `BROKEFORGE_TEMPLATE_DIR`.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::base::PackageError;
use brokeforge_core::ValidationError;

const EMBEDDED: &[(&str, &str)] = &[
    (
        "nginx/default.conf",
        include_str!("../templates/nginx/default.conf.j2"),
    ),
    (
        "nginx/site.conf",
        include_str!("../templates/nginx/site.conf.j2"),
    ),
    (
        "php/fpm-pool.conf",
        include_str!("../templates/php/fpm-pool.conf.j2"),
    ),
    ("php/php.ini", include_str!("../templates/php/php.ini.j2")),
    (
        "provision/default-site.html",
        include_str!("../templates/provision/default-site.html.j2"),
    ),
    (
        "mariadb/server.cnf",
        include_str!("../templates/mariadb/server.cnf.j2"),
    ),
    (
        "postgresql/pg_hba.conf",
        include_str!("../templates/postgresql/pg_hba.conf.j2"),
    ),
    (
        "postgresql/brokeforge.conf",
        include_str!("../templates/postgresql/brokeforge.conf.j2"),
    ),
    (
        "redis/redis.conf",
        include_str!("../templates/redis/redis.conf.j2"),
    ),
];

/// The template source: the operator's override if present, else the embedded one.
fn source(dir: Option<&Path>, name: &str) -> Result<String, PackageError> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{name}.j2"));
        if path.is_file() {
            return std::fs::read_to_string(&path).map_err(|e| {
                ValidationError::new("template", format!("cannot read {}: {e}", path.display()))
                    .into()
            });
        }
    }
    EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.to_string())
        .ok_or_else(|| ValidationError::new("template", format!("no template named {name}")).into())
}

/// Render template `name` with `context`. Undefined variables are errors, so a typo never yields a half
/// config.
pub fn render(name: &str, context: impl Serialize) -> Result<String, PackageError> {
    let dir = std::env::var_os("BROKEFORGE_TEMPLATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    render_with(dir.as_deref(), name, context)
}

/// [`render`] with an explicit override directory.
pub fn render_with(
    dir: Option<&Path>,
    name: &str,
    context: impl Serialize,
) -> Result<String, PackageError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let src = source(dir, name)?;
    env.add_template_owned(name.to_string(), src)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?;
    let tmpl = env
        .get_template(name)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?;
    Ok(tmpl
        .render(context)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every embedded template, rendered with typical values.
    #[test]
    fn rendered_configs() {
        let cases = [
            (
                "nginx/default.conf",
                json!({"root": "/home/brokeforge/default/public", "fpm_socket": "/run/php/php8.2-fpm-brokeforge.sock"}),
            ),
            (
                "nginx/site.conf",
                json!({"domain": "example.com", "server_names": ["example.com", "www.example.com"], "default_server": false,
                       "root": "/home/brokeforge/example.com/current/public", "client_max_body_size": "64M",
                       "fpm_socket": "/run/php/php8.2-fpm-brokeforge.sock", "acme_root": "/var/lib/brokeforge/acme",
                       "certificate": null}),
            ),
            (
                "php/fpm-pool.conf",
                json!({"version": "8.2", "user": "brokeforge", "socket": "/run/php/php8.2-fpm-brokeforge.sock", "max_children": 10}),
            ),
            (
                "php/php.ini",
                json!({"version": "8.2", "memory_limit": "256M", "upload_max_filesize": "64M", "post_max_size": "64M", "max_execution_time": 60, "timezone": "UTC"}),
            ),
            (
                "provision/default-site.html",
                json!({"server_name": "web-1"}),
            ),
            (
                "mariadb/server.cnf",
                json!({"bind_address": "127.0.0.1", "max_connections": 200}),
            ),
            (
                "postgresql/pg_hba.conf",
                json!({"allowed_sources": ["203.0.113.7/32", "198.51.100.0/24"]}),
            ),
            (
                "postgresql/brokeforge.conf",
                json!({"listen_addresses": "localhost"}),
            ),
            (
                "redis/redis.conf",
                json!({"bind": "127.0.0.1 -::1", "password": "example-password"}),
            ),
        ];
        assert_eq!(
            cases.len(),
            names().count(),
            "a template has no snapshot case"
        );
        for (name, ctx) in cases {
            insta::assert_snapshot!(
                name.replace('/', "__"),
                render_with(None, name, ctx).unwrap()
            );
        }
    }

    #[test]
    fn operator_overrides_win_and_undefined_variables_fail() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("redis")).unwrap();
        std::fs::write(
            dir.path().join("redis/redis.conf.j2"),
            "custom {{ bind }}\n",
        )
        .unwrap();
        let ctx = json!({"bind": "127.0.0.1", "password": "x"});
        assert_eq!(
            render_with(Some(dir.path()), "redis/redis.conf", &ctx).unwrap(),
            "custom 127.0.0.1\n"
        );
        assert!(
            render_with(None, "redis/redis.conf", &ctx)
                .unwrap()
                .starts_with("# Managed by BrokeForge")
        );
        assert!(render_with(None, "redis/redis.conf", json!({"bind": "x"})).is_err());
        assert!(render_with(None, "nope", &ctx).is_err());
    }
}
