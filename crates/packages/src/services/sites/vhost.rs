//! A site's nginx vhost: the names it answers to, the rendered file, and writing it (with the other vhosts a
//! change rewrites) so that a vhost nginx refuses puts everything back as it was.

use brokeforge_core::{ValidationError, shell_quote, validate};
use brokeforge_store::ServerSite;
use serde_json::json;

use super::common::{ACME_ROOT, SiteUser, vhost_path};
use super::config::SiteConfig;
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::templates::{self, Template};

pub static SITE_CONF: Template = Template {
    name: "nginx/site.conf",
    source: include_str!("site.conf.j2"),
};

/// Render a site's vhost.
/// The names a site answers to (its vhost's `server_name`, its certificate's names): the domain, then its
/// aliases, each once.
pub fn server_names(site: &ServerSite, config: &SiteConfig) -> Result<Vec<String>, PackageError> {
    let mut names = vec![validate::domain(&site.domain)?];
    for a in &config.aliases {
        let a = validate::domain(a)?;
        if !names.contains(&a) {
            names.push(a);
        }
    }
    Ok(names)
}

pub fn render_vhost(site: &ServerSite, config: &SiteConfig) -> Result<String, PackageError> {
    let domain = validate::domain(&site.domain)?;
    let user = SiteUser::new(site.id, config.isolated);
    let fpm = if config.kind.runs_php() {
        let php = site
            .php_version
            .as_deref()
            .ok_or_else(|| ValidationError::new("php_version", "the site has no PHP version"))?;
        Some(user.fpm_socket(&validate::php_version(php)?))
    } else {
        None
    };
    let proxy_port = if config.kind.proxies() {
        Some(config.proxy_port.ok_or_else(|| {
            ValidationError::new("proxy_port", "the site has no port to send requests to")
        })?)
    } else {
        None
    };
    let web = validate::relative_dir("web_directory", &config.web_directory)?;
    let names = server_names(site, config)?;
    let root = if web.is_empty() {
        format!("{}/current", user.site_root(&domain))
    } else {
        format!("{}/current/{web}", user.site_root(&domain))
    };
    templates::render(
        &SITE_CONF,
        json!({
            "domain": domain,
            "site_id": site.id,
            "php": fpm.is_some(),
            "proxy_port": proxy_port,
            "spa_fallback": config.spa_fallback,
            "server_names": names,
            "default_server": config.default_site,
            "root": root,
            "client_max_body_size": config.client_max_body_size,
            "fpm_socket": fpm,
            "acme_root": ACME_ROOT,
            "certificate": config.certificate.as_ref().map(|c| json!({
                "fullchain": c.fullchain_path(),
                "key": c.key_path(),
                "hsts": c.hsts,
            })),
        }),
    )
}

/// Write a site's vhost (and those of `others`, rewritten alongside) and enable it, keeping nginx serving:
/// every vhost this rewrites (its own on a re-run; other sites' when it takes the default from them) is kept
/// aside until `nginx -t` accepts the new set, so a refused vhost puts everything back as it was. A new
/// site's vhost is simply taken out again. Reloading is the caller's next step.
pub fn write_vhosts(
    mut plan: Plan,
    site: &ServerSite,
    config: &SiteConfig,
    others: &[(ServerSite, SiteConfig)],
) -> Result<Plan, PackageError> {
    let q = shell_quote;
    let (available, enabled) = vhost_path(&validate::domain(&site.domain)?);
    let mut rewrites = vec![(available.clone(), render_vhost(site, config)?)];
    for (other, oc) in others {
        rewrites.push((vhost_path(&other.domain).0, render_vhost(other, oc)?));
    }
    let mut undo = Vec::new();
    let mut done = Vec::new();
    for (path, text) in rewrites {
        let kept = format!("{path}.brokeforge-previous");
        plan = plan
            .run(format!(
                "rm -f {kept}; if [ -e {p} ]; then cp -p {p} {kept}; fi",
                p = q(&path),
                kept = q(&kept)
            ))
            .put_file(FileStep::new(path.clone(), FileContents::Text(text), 0o644));
        undo.push(format!(
            "if [ -e {kept} ]; then mv -f {kept} {p}; fi",
            p = q(&path),
            kept = q(&kept)
        ));
        done.push(format!("rm -f {}", q(&kept)));
    }
    let mut enable = format!(
        "out=$(mktemp) || exit 1; new_site=; if [ ! -e {e} ]; then new_site=1; fi; ",
        e = q(&enabled)
    );
    if config.default_site {
        // BrokeForge's own default site gives way (it also claims default_server).
        enable.push_str(
            "had_default=; if [ -e /etc/nginx/sites-enabled/default ]; then had_default=1; \
             rm -f /etc/nginx/sites-enabled/default; fi; ",
        );
        undo.push(
            "if [ -n \"$had_default\" ]; then ln -sfn /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default; fi"
                .into(),
        );
    }
    undo.push(format!(
        "if [ -n \"$new_site\" ]; then rm -f {e} {a}; fi",
        e = q(&enabled),
        a = q(&available)
    ));
    enable.push_str(&format!(
        "if ! ln -sfn {a} {e} || ! nginx -t 2>\"$out\"; then cat \"$out\" >&2; rm -f \"$out\"; \
         {undo}; exit 1; fi; rm -f \"$out\"; {done}",
        a = q(&available),
        e = q(&enabled),
        undo = undo.join("; "),
        done = done.join("; "),
    ));
    Ok(plan.run(enable))
}
