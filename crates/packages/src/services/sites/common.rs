//! What the site packages share: where a site lives on the server, its secrets' names, and the checks every
//! site job makes.

use std::time::Duration;

use brokeforge_core::{CredentialKind, ValidationError, shell_quote};
use brokeforge_store::ServerSite;
use serde::{Deserialize, Serialize};

use crate::base::Plan;
use crate::base::executor::{Executor, RunContext};

/// The app user's home: every site lives below it.
pub const APP_HOME: &str = "/home/brokeforge";
/// Default number of releases kept on the server.
pub const DEFAULT_KEEP_RELEASES: u32 = 5;
/// Where a site lives on the server.
pub fn site_root(domain: &str) -> String {
    format!("{APP_HOME}/{domain}")
}

pub fn vhost_path(domain: &str) -> (String, String) {
    (
        format!("/etc/nginx/sites-available/{domain}.conf"),
        format!("/etc/nginx/sites-enabled/{domain}.conf"),
    )
}

pub fn fpm_socket(php_version: &str) -> String {
    format!("/run/php/php{php_version}-fpm-brokeforge.sock")
}

/// The Linux user a site's code runs as, and the home the site lives in. A site created with isolation has
/// its own (`site<ID>`, home `/home/site<ID>`, its own PHP-FPM pool); older sites, and those created with
/// `--shared-user`, share the app user `brokeforge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteUser {
    pub name: String,
    pub home: String,
    pub isolated: bool,
}

impl SiteUser {
    pub fn new(site_id: i64, isolated: bool) -> SiteUser {
        if isolated {
            let name = format!("site{site_id}");
            SiteUser {
                home: format!("/home/{name}"),
                name,
                isolated,
            }
        } else {
            SiteUser {
                name: "brokeforge".into(),
                home: APP_HOME.into(),
                isolated,
            }
        }
    }

    /// Where the site lives: `releases/`, `shared/`, `current`.
    pub fn site_root(&self, domain: &str) -> String {
        format!("{}/{domain}", self.home)
    }

    /// Where the site's deploy key lives on the server.
    pub fn deploy_key_path(&self, site_id: i64) -> String {
        format!("{}/.ssh/brokeforge-site-{site_id}", self.home)
    }

    /// The PHP-FPM pool name: the shared `brokeforge` pool, or the site's own.
    pub fn pool(&self) -> &str {
        &self.name
    }

    /// The socket nginx hands the site's PHP requests to.
    pub fn fpm_socket(&self, php_version: &str) -> String {
        format!("/run/php/php{php_version}-fpm-{}.sock", self.pool())
    }

    /// The site's own pool file (`None` for the shared pool, which the web server package owns).
    pub fn pool_file(&self, php_version: &str) -> Option<String> {
        self.isolated
            .then(|| format!("/etc/php/{php_version}/fpm/pool.d/{}.conf", self.name))
    }

    /// `command` run as this user. The app user has its own SSH credential; a site user has none (one key per
    /// site would be one more secret per site to keep and rotate), so root drops to it with `runuser`, with
    /// the environment a login would give and the home as working directory.
    pub fn step(&self, command: impl Into<String>, timeout: Duration) -> crate::base::RunStep {
        let command = command.into();
        let (credential, command) = if self.isolated {
            (
                CredentialKind::Root,
                format!(
                    "cd {home} && runuser -u {user} -- env HOME={home} USER={user} LOGNAME={user} SHELL=/bin/bash bash -c {cmd}",
                    home = shell_quote(&self.home),
                    user = shell_quote(&self.name),
                    cmd = shell_quote(&command),
                ),
            )
        } else {
            (CredentialKind::User, command)
        };
        crate::base::RunStep {
            command,
            timeout,
            stdin: None,
            credential: Some(credential),
            private_output: false,
        }
    }

    /// A file of the site's, written as this user (the app user's credential, or root giving it to the site
    /// user; root refuses to write through a symbolic link the user planted).
    pub fn file(&self, file: crate::base::FileStep) -> crate::base::FileStep {
        if self.isolated {
            file.as_credential(CredentialKind::Root)
                .owner(format!("{0}:{0}", self.name))
        } else {
            file.as_credential(CredentialKind::User)
        }
    }
}

/// Validate a shared path (`.env`, `storage/`): relative, no `..`, simple characters.
pub fn shared_path(value: &str) -> Result<String, ValidationError> {
    let dir = value.ends_with('/');
    let v = value.trim_end_matches('/');
    let ok = !v.is_empty()
        && v.len() <= 200
        && !v.starts_with('/')
        && !v.starts_with('-')
        && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if !ok {
        return Err(ValidationError::new(
            "shared_paths",
            format!("`{value}` is not a path inside the release (like `.env` or `storage/`)"),
        ));
    }
    Ok(if dir { format!("{v}/") } else { v.to_string() })
}

/// What a user asks for when creating a site.
/// Store name of a site's sealed deploy key.
pub fn deploy_key_secret(site_id: i64) -> String {
    format!("site:{site_id}:deploy_key")
}

/// Store name of the id in a site's webhook URL.
pub fn webhook_secret(site_id: i64) -> String {
    format!("site:{site_id}:webhook")
}

/// Store name of the secret a site's webhook callers prove they know.
pub fn webhook_signing_secret(site_id: i64) -> String {
    format!("site:{site_id}:webhook_signing")
}

/// Where the deploy key lives on the server.
pub fn deploy_key_path(site_id: i64) -> String {
    format!("{APP_HOME}/.ssh/brokeforge-site-{site_id}")
}

/// A site's job runs against the site's own server only.
pub fn on_server(server_id: i64, site: &ServerSite) -> Result<(), ValidationError> {
    if site.server_id != server_id {
        return Err(ValidationError::new(
            "site",
            "the site belongs to another server",
        ));
    }
    Ok(())
}

/// Work on a site (repository, certificate, background work) waits until the site is installed.
pub fn require_active(site: &ServerSite) -> Result<(), ValidationError> {
    if site.status != brokeforge_core::ServiceStatus::Active {
        return Err(ValidationError::new("site", "the site is not active yet"));
    }
    Ok(())
}

/// The request of a job about one site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteRef {
    pub site_id: i64,
}

/// Run one command on `plan`'s credential and return what it printed: read live for the user, never stored
/// in the job log or events.
pub async fn read_live(
    executor: &Executor,
    ctx: &RunContext,
    plan: Plan,
    command: String,
) -> Result<String, crate::PackageError> {
    let step = crate::base::RunStep {
        command,
        timeout: Duration::from_secs(30),
        stdin: None,
        credential: None,
        private_output: true,
    };
    read_live_step(executor, ctx, plan, step).await
}

/// [`read_live`] of a prepared step (e.g. one run as a site's user); its output is kept private.
pub async fn read_live_step(
    executor: &Executor,
    ctx: &RunContext,
    plan: Plan,
    step: crate::base::RunStep,
) -> Result<String, crate::PackageError> {
    let plan = plan.run_step(crate::base::RunStep {
        private_output: true,
        ..step
    });
    let report = executor
        .run(ctx, &plan, brokeforge_core::ProvisionType::Install)
        .await?;
    Ok(report
        .outputs
        .first()
        .map(|o| o.stdout_text())
        .unwrap_or_default())
}

/// Where HTTP-01 challenge files are written and served from (readable by nginx, written by root).
pub const ACME_ROOT: &str = "/var/lib/brokeforge/acme";
/// certbot's command to delete a certificate (nothing when there is none).
/// Where a certificate the user brought lives on the server.
pub fn custom_certificate_dir(name: &str) -> String {
    format!("/etc/brokeforge/certs/{name}")
}

pub fn certificate_delete_command(name: &str) -> String {
    let q = shell_quote;
    // An ACME certificate (and its renewals), or one the user brought.
    format!(
        "if [ -e /etc/letsencrypt/renewal/{n}.conf ] && command -v certbot >/dev/null; then \
         certbot delete --non-interactive --cert-name {n}; fi; rm -rf {custom}",
        n = q(name),
        custom = q(&custom_certificate_dir(name))
    )
}

/// The units of a site's daemons (a glob systemctl understands).
pub fn daemon_units(site_id: i64) -> String {
    format!("brokeforge-site-{site_id}-daemon-*")
}

/// Restart the site's daemons in the release that is now live (a deploy or rollback step, as root).
pub fn restart_daemons_command(site_id: i64) -> String {
    // The release is live by now: a daemon that will not restart is reported, not a failed deployment.
    format!(
        "if systemctl restart {}; then echo 'daemons restarted'; else echo 'warning: the daemons did not restart; see the site page' >&2; fi",
        shell_quote(&daemon_units(site_id))
    )
}

/// The systemd unit that runs a Node.js site's application.
pub fn app_unit(site_id: i64) -> String {
    format!("brokeforge-site-{site_id}-app")
}

/// A Node.js site's unit: `npm start` in the live release as the app user, on the port nginx sends requests
/// to, with the site's `.env` as its environment. `current` is resolved when the unit starts, so a restart
/// runs the new release.
pub fn app_unit_file(site_id: i64, user: &SiteUser, domain: &str, port: u16) -> String {
    let root = user.site_root(domain);
    let name = app_unit(site_id);
    format!(
        "# Managed by BrokeForge: the Node.js application of {domain}. Edit the site in BrokeForge.\n\
         [Unit]\nDescription=BrokeForge Node.js application of {domain}\nAfter=network.target\n\n\
         [Service]\nUser={user}\nGroup={user}\nWorkingDirectory={root}/current\n\
         Environment=NODE_ENV=production\nEnvironmentFile=-{root}/shared/.env\nEnvironment=PORT={port}\n\
         ExecStart=/bin/sh -c 'exec npm start'\nRestart=always\nRestartSec=3\nSyslogIdentifier={name}\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        user = user.name
    )
}

/// Restart a Node.js site's application in the release that is now live (as root). Like the daemons, one that
/// will not start is reported; the site check after deploys is what fails a deployment on it.
pub fn restart_app_command(site_id: i64) -> String {
    let unit = app_unit(site_id);
    format!(
        "systemctl restart {unit} && sleep 1 && if systemctl is-active --quiet {unit}; then echo 'application restarted'; \
         else echo 'warning: the application is not running; see its log' >&2; journalctl -u {unit} -n 20 --no-pager >&2; fi"
    )
}

/// Stop and remove all of a site's scheduled commands and daemons (before applying a new set, and when the
/// site is removed).
pub fn tasks_remove_command(site_id: i64) -> String {
    let units = shell_quote(&daemon_units(site_id));
    format!(
        "systemctl stop {units} 2>/dev/null; \
         rm -f /etc/systemd/system/multi-user.target.wants/brokeforge-site-{site_id}-daemon-* \
         /etc/systemd/system/brokeforge-site-{site_id}-daemon-* /etc/cron.d/brokeforge-site-{site_id} \
         /etc/brokeforge/sites/{site_id}/*.sh; systemctl daemon-reload; systemctl reset-failed {units} 2>/dev/null; true"
    )
}

/// Longest a site command may run by default.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
