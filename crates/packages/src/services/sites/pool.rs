//! An isolated site's Linux user and PHP-FPM pool: created by the site installer, moved by a PHP version
//! change, removed with the site.

use brokeforge_core::shell_quote;

use super::common::SiteUser;
use super::config::PoolSettings;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::services::webserver::nginx::{pool_log, render_pool};

/// Create the site's user and group (idempotent): no password, a home only it and its group can enter, an
/// `.ssh` for the deploy key; nginx (`www-data`) joins the group to read what it serves.
pub fn create_user_command(user: &SiteUser) -> String {
    format!(
        "set -e; u={u}; h={h}; id -u \"$u\" >/dev/null 2>&1 || useradd --create-home --home-dir \"$h\" --user-group --shell /bin/bash \"$u\"; \
         usermod -p '*' \"$u\"; chown \"$u:$u\" \"$h\"; chmod 750 \"$h\"; install -d -m 700 -o \"$u\" -g \"$u\" \"$h/.ssh\"; \
         usermod -aG \"$u\" www-data",
        u = shell_quote(&user.name),
        h = shell_quote(&user.home),
    )
}

/// Remove the site's user, group and home (after its processes are stopped).
pub fn remove_user_command(user: &SiteUser) -> String {
    format!(
        "u={u}; if id -u \"$u\" >/dev/null 2>&1; then pkill -KILL -u \"$u\" 2>/dev/null; \
         for i in $(seq 1 50); do pgrep -u \"$u\" >/dev/null || break; sleep 0.1; done; \
         userdel --remove \"$u\" 2>/dev/null || {{ [ \"$?\" = 12 ] || userdel \"$u\"; }}; rm -rf -- {h}; fi",
        u = shell_quote(&user.name),
        h = shell_quote(&user.home),
    )
}

/// Write the site's pool for `version`, have PHP-FPM accept it (a refused pool is taken out again) and reload
/// gracefully, then wait for its socket so the first request after the job finds it.
pub fn write_pool(
    plan: Plan,
    user: &SiteUser,
    version: &str,
    settings: &PoolSettings,
) -> Result<Plan, PackageError> {
    let Some(file) = user.pool_file(version) else {
        return Ok(plan);
    };
    let q = shell_quote;
    Ok(plan
        .put_file(FileStep::new(
            file.clone(),
            FileContents::Text(render_pool(version, user, settings)?),
            0o644,
        ))
        .run(format!(
            "log={log}; [ -e \"$log\" ] || install -m 640 -o {u} -g adm /dev/null \"$log\"; \
             out=$(php-fpm{version} -t 2>&1) || {{ echo \"$out\" >&2; rm -f {file}; exit 1; }}; \
             systemctl reload php{version}-fpm; \
             for i in $(seq 1 100); do [ -S {socket} ] && exit 0; sleep 0.1; done; \
             echo 'PHP-FPM did not open the pool socket {socket}' >&2; exit 1",
            log = q(&pool_log(version, user.pool())),
            u = q(&user.name),
            file = q(&file),
            socket = q(&user.fpm_socket(version)),
        )))
}

/// Take the site's pool of `version` away (nothing for the shared pool).
pub fn remove_pool_command(user: &SiteUser, version: &str) -> Option<String> {
    user.pool_file(version).map(|file| {
        format!(
            "if [ -e {file} ]; then rm -f {file}; systemctl reload php{version}-fpm 2>/dev/null || true; fi",
            file = shell_quote(&file)
        )
    })
}
