//! HTTPS for a site: a certificate from Let's Encrypt (or another ACME certificate authority) through certbot
//! on the server, validated over HTTP-01 from BrokeForge's challenge directory, which every site's vhost serves.
//! The vhost then serves HTTPS and redirects plain HTTP; certbot's own timer renews the certificate and reloads
//! nginx. Removing it (or the site) deletes the certificate and serves plain HTTP again.

use std::time::Duration;

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{ACME_ROOT, SiteRef, certificate_delete_command, on_server, require_active};
use super::config::{CertificateConfig, SiteConfig};
use super::vhost::{server_names, write_vhosts};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep};
use crate::milestones;
use crate::services::server::provision::APT;
use crate::services::webserver::nginx::NGINX_RELOAD;

pub mod custom;

pub fn register(r: &mut Registry) {
    r.installer(CertificateInstaller);
    r.remover(CertificateRemover);
    r.installer(custom::CustomCertificateInstaller);
}

/// Let's Encrypt's production directory, the default certificate authority.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Where a private ACME server's CA certificate goes on the server, when the user gives one.
const ACME_CA_FILE: &str = "/etc/brokeforge/acme-ca.pem";
/// The system's CAs plus that one: certbot trusts it for the request and, through a drop-in for certbot's
/// service, for every renewal (Let's Encrypt certificates on the same server keep renewing too).
const ACME_CA_BUNDLE: &str = "/etc/brokeforge/acme-ca-bundle.pem";

milestones! {
    pub enum CertificateInstallerMilestones {
        PrepareChallenge => ("prepare_challenge", "Preparing the ACME challenge directory"),
        InstallCertbot => ("install_certbot", "Installing certbot"),
        RequestCertificate => ("request_certificate", "Requesting the certificate"),
        ConfigureNginx => ("configure_nginx", "Serving the site over HTTPS"),
        Complete => ("complete", "HTTPS enabled"),
    }
}

milestones! {
    pub enum CertificateRemoverMilestones {
        ConfigureNginx => ("configure_nginx", "Serving the site over plain HTTP"),
        DeleteCertificate => ("delete_certificate", "Deleting the certificate"),
        Complete => ("complete", "HTTPS removed"),
    }
}

/// What a user asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct CertificateRequest {
    /// Expiry notices from the certificate authority; none when empty.
    pub email: Option<String>,
    /// The ACME directory URL; Let's Encrypt when empty (its staging directory is useful for trials).
    pub acme_directory: Option<String>,
    /// PEM CA certificate of a private ACME server (step-ca, pebble), trusted only for talking to it.
    pub acme_ca_certificate: Option<String>,
    /// Send Strict-Transport-Security (browsers then refuse plain HTTP for a year): only once HTTPS works.
    #[serde(deserialize_with = "flag")]
    pub hsts: bool,
}

/// A yes/no from JSON (`true`) or from a form (`"true"`, `"on"`).
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(t) => match t.as_str() {
            "true" | "on" | "1" | "yes" => Ok(true),
            "false" | "off" | "0" | "no" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not yes or no"
            ))),
        },
    }
}

/// A validated request: (email, directory, CA certificate).
fn prepare(
    req: &CertificateRequest,
) -> Result<(Option<String>, String, Option<String>), PackageError> {
    let email = match req.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) => Some(validate::email(e)?),
    };
    let directory = match req.acme_directory.as_deref().map(str::trim) {
        None | Some("") => LETS_ENCRYPT.to_string(),
        Some(d) => {
            let ok = d.len() <= 2000
                && d.strip_prefix("https://").is_some_and(|rest| {
                    let host = rest.split(['/', ':']).next().unwrap_or("");
                    validate::host(host).is_ok()
                        && !rest
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control() || "'\"`\\$;".contains(c))
                });
            if !ok {
                return Err(ValidationError::new(
                    "acme_directory",
                    "give the ACME directory as an https:// URL",
                )
                .into());
            }
            d.to_string()
        }
    };
    let ca = match req.acme_ca_certificate.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(pem) => {
            if !pem.starts_with("-----BEGIN CERTIFICATE-----")
                || !pem.ends_with("-----END CERTIFICATE-----")
                || pem.len() > 64 * 1024
            {
                return Err(ValidationError::new(
                    "acme_ca_certificate",
                    "paste the CA certificate in PEM form (-----BEGIN CERTIFICATE----- ...)",
                )
                .into());
            }
            Some(format!("{pem}\n"))
        }
    };
    Ok((email, directory, ca))
}

/// Validate and queue a certificate for a site (also renews early or adds new aliases when run again).
pub async fn request_certificate(
    store: &Store,
    site: &ServerSite,
    req: &CertificateRequest,
) -> Result<brokeforge_store::Job, PackageError> {
    prepare(req)?;
    require_active(site)?;
    server_names(site, &SiteConfig::of(site))?;
    let payload = CertificatePayload {
        site_id: site.id,
        request: req.clone(),
    };
    Ok(store
        .enqueue(&job::<CertificateInstaller>(site.server_id, &payload)?)
        .await?)
}

/// Queue the removal of a site's certificate.
pub async fn remove_certificate(
    store: &Store,
    site: &ServerSite,
) -> Result<brokeforge_store::Job, PackageError> {
    require_active(site)?;
    if SiteConfig::of(site).certificate.is_none() {
        return Err(ValidationError::new("certificate", "the site has no certificate").into());
    }
    Ok(store
        .enqueue(&job::<CertificateRemover>(
            site.server_id,
            &SiteRef { site_id: site.id },
        )?)
        .await?)
}

pub struct CertificateInstaller;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificatePayload {
    pub site_id: i64,
    #[serde(default)]
    pub request: CertificateRequest,
}

/// The plan and the certificate it gets (its expiry is learned from the run).
pub struct CertificateInput {
    pub site: ServerSite,
    pub plan: Plan,
    pub certificate: CertificateConfig,
}

impl Package for CertificateInstaller {
    type Milestones = CertificateInstallerMilestones;
    type Request = CertificatePayload;
    type Input = CertificateInput;
    const JOB: &'static str = "site_certificate_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        // certbot writes /etc/letsencrypt, the vhost lives in /etc/nginx.
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        p: &CertificatePayload,
    ) -> Result<CertificateInput, PackageError> {
        let site = cx.store.site(p.site_id).await?;
        on_server(cx.server.id, &site)?;
        let (plan, certificate) =
            self.certificate_plan(&site, &SiteConfig::of(&site), &p.request)?;
        Ok(CertificateInput {
            site,
            plan,
            certificate,
        })
    }

    fn commands(&self, i: &CertificateInput) -> Result<Plan, PackageError> {
        Ok(i.plan.clone())
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: CertificateInput,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let mut cert = i.certificate;
        // The last command prints certbot's view of the certificate.
        let listing = report
            .outputs
            .last()
            .map(|o| o.stdout_text())
            .unwrap_or_default();
        cert.expires = listing
            .lines()
            .find_map(|l| l.trim().strip_prefix("Expiry Date:"))
            .map(|rest| rest.split(" (").next().unwrap_or(rest).trim().to_string());
        let stored = cert.clone();
        SiteConfig::update(cx.store, i.site.id, |c| c.certificate = Some(stored.clone())).await?;
        Ok(json!({"site_id": i.site.id, "domains": cert.domains, "expires": cert.expires}))
    }
}

impl PackageInstaller for CertificateInstaller {}

impl CertificateInstaller {
    pub fn certificate_plan(
        &self,
        site: &ServerSite,
        config: &SiteConfig,
        req: &CertificateRequest,
    ) -> Result<(Plan, CertificateConfig), PackageError> {
        use CertificateInstallerMilestones as M;
        let q = shell_quote;
        let (email, directory, ca) = prepare(req)?;
        let names = server_names(site, config)?;
        let cert = CertificateConfig {
            name: names[0].clone(),
            domains: names.clone(),
            email: email.clone(),
            acme_directory: directory.clone(),
            expires: None,
            hsts: req.hsts,
            custom: false,
        };
        // First the current vhost, which carries the challenge location (sites made before it existed get it).
        let mut plan = self
            .plan()
            .track(M::PrepareChallenge)
            .run(format!("install -d -m 755 {}", q(ACME_ROOT)));
        plan = write_vhosts(plan, site, config, &[])?
            .run(NGINX_RELOAD)
            .track(M::InstallCertbot)
            .run_step(RunStep {
                command: format!(
                    "command -v certbot >/dev/null || {{ {APT} update -qq && {APT} install -y -qq certbot; }}"
                ),
                timeout: Duration::from_secs(900),
                stdin: None,
                credential: None,
                private_output: false,
            })
            .track(M::RequestCertificate);
        let mut env = String::new();
        if let Some(pem) = ca {
            plan = plan
                .run("install -d -m 755 /etc/brokeforge /etc/systemd/system/certbot.service.d")
                .put_file(FileStep::new(ACME_CA_FILE, FileContents::Text(pem), 0o644))
                .put_file(FileStep::new(
                    "/etc/systemd/system/certbot.service.d/brokeforge-ca.conf",
                    FileContents::Text(format!(
                        "# Managed by BrokeForge: renewals trust the private ACME server's CA too.\n\
                         [Service]\nEnvironment=REQUESTS_CA_BUNDLE={ACME_CA_BUNDLE}\n"
                    )),
                    0o644,
                ))
                .run(format!(
                    "cat /etc/ssl/certs/ca-certificates.crt {ca} > {bundle}.tmp && mv {bundle}.tmp {bundle} && \
                     systemctl daemon-reload",
                    ca = q(ACME_CA_FILE),
                    bundle = q(ACME_CA_BUNDLE)
                ));
            env = format!("REQUESTS_CA_BUNDLE={} ", q(ACME_CA_BUNDLE));
        }
        let mut certbot = format!(
            "{env}certbot certonly --non-interactive --agree-tos --webroot -w {root} --cert-name {name} \
             --server {dir} --keep-until-expiring --expand --deploy-hook 'systemctl reload nginx'",
            root = q(ACME_ROOT),
            name = q(&cert.name),
            dir = q(&directory),
        );
        for d in &names {
            certbot.push_str(&format!(" -d {}", q(d)));
        }
        match &email {
            Some(e) => certbot.push_str(&format!(" --email {}", q(e))),
            None => certbot.push_str(" --register-unsafely-without-email"),
        }
        plan = plan.run_step(RunStep {
            command: certbot,
            timeout: Duration::from_secs(300),
            stdin: None,
            credential: None,
            private_output: false,
        });
        let mut with_tls = config.clone();
        with_tls.certificate = Some(cert.clone());
        plan = write_vhosts(plan.track(M::ConfigureNginx), site, &with_tls, &[])?
            .run(NGINX_RELOAD)
            .track(M::Complete)
            .run(format!(
                "certbot certificates --cert-name {}",
                q(&cert.name)
            ));
        Ok((plan, cert))
    }
}

pub struct CertificateRemover;

impl Package for CertificateRemover {
    type Milestones = CertificateRemoverMilestones;
    type Request = SiteRef;
    type Input = ServerSite;
    const JOB: &'static str = "site_certificate_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &SiteRef) -> Result<ServerSite, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        Ok(site)
    }

    fn commands(&self, site: &ServerSite) -> Result<Plan, PackageError> {
        self.removal_plan(site, &SiteConfig::of(site))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        site: ServerSite,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        SiteConfig::update(cx.store, site.id, |c| c.certificate = None).await?;
        Ok(json!({"site_id": site.id}))
    }
}

impl PackageRemover for CertificateRemover {}

impl CertificateRemover {
    pub fn removal_plan(&self, site: &ServerSite, config: &SiteConfig) -> Result<Plan, PackageError> {
        use CertificateRemoverMilestones as M;
        let name = match &config.certificate {
            Some(c) => c.name.clone(),
            None => validate::domain(&site.domain)?,
        };
        let mut plain = config.clone();
        plain.certificate = None;
        let plan = write_vhosts(self.plan().track(M::ConfigureNginx), site, &plain, &[])?
            .run(NGINX_RELOAD)
            .track(M::DeleteCertificate)
            .run(certificate_delete_command(&name))
            .track(M::Complete);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_certificate() -> (ServerSite, SiteConfig) {
        let site = crate::services::sites::site::tests::site();
        let mut config = SiteConfig::of(&site);
        config.certificate = Some(CertificateConfig {
            name: "example.com".into(),
            domains: vec!["example.com".into(), "www.example.com".into()],
            email: None,
            acme_directory: LETS_ENCRYPT.into(),
            expires: Some("2027-02-24 01:59:05+00:00".into()),
            hsts: false,
            custom: false,
        });
        (site, config)
    }

    #[test]
    fn install_plan() {
        let site = crate::services::sites::site::tests::site();
        let (plan, cert) = CertificateInstaller
            .certificate_plan(
                &site,
                &SiteConfig::of(&site),
                &CertificateRequest {
                    email: Some(" Ops@Example.com ".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(cert.domains, ["example.com", "www.example.com"]);
        assert_eq!(cert.email.as_deref(), Some("ops@example.com"));
        insta::assert_snapshot!(plan.to_string());
    }

    #[test]
    fn remove_plan() {
        let (site, config) = with_certificate();
        insta::assert_snapshot!(
            CertificateRemover
                .removal_plan(&site, &config)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn hsts_comes_from_json_or_a_form() {
        let json: CertificateRequest = serde_json::from_str(r#"{"hsts": true}"#).unwrap();
        let text: CertificateRequest = serde_json::from_str(r#"{"hsts": "true"}"#).unwrap();
        let form: CertificateRequest = serde_urlencoded::from_str("email=&hsts=true").unwrap();
        let none: CertificateRequest = serde_urlencoded::from_str("email=").unwrap();
        assert!(json.hsts && text.hsts && form.hsts && !none.hsts);
        assert!(serde_json::from_str::<CertificateRequest>(r#"{"hsts": "maybe"}"#).is_err());
    }

    #[test]
    fn requests_are_checked() {
        for bad in [
            CertificateRequest {
                email: Some("not-an-email".into()),
                ..Default::default()
            },
            CertificateRequest {
                email: Some("a@b.com; rm -rf /".into()),
                ..Default::default()
            },
            CertificateRequest {
                acme_directory: Some("http://acme.example.com/dir".into()),
                ..Default::default()
            },
            CertificateRequest {
                acme_directory: Some("https://acme.example.com/$(id)".into()),
                ..Default::default()
            },
            CertificateRequest {
                acme_ca_certificate: Some("hello".into()),
                ..Default::default()
            },
        ] {
            assert!(prepare(&bad).is_err(), "{bad:?} accepted");
        }
        let (email, dir, ca) = prepare(&CertificateRequest::default()).unwrap();
        assert_eq!((email, dir.as_str(), ca), (None, LETS_ENCRYPT, None));
        let (_, dir, _) = prepare(&CertificateRequest {
            acme_directory: Some("https://10.0.0.1:14000/dir".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(dir, "https://10.0.0.1:14000/dir");
    }

    #[test]
    fn vhost_with_a_certificate_serves_https_and_redirects_http() {
        let (site, config) = with_certificate();
        let vhost = super::super::vhost::render_vhost(&site, &config).unwrap();
        assert!(vhost.contains("listen 443 ssl http2;"), "{vhost}");
        assert!(vhost.contains("ssl_certificate /etc/letsencrypt/live/example.com/fullchain.pem;"));
        assert!(vhost.contains("return 301 https://$host$request_uri;"));
        assert!(!vhost.contains("Strict-Transport-Security"));
        let mut hsts = config.clone();
        hsts.certificate.as_mut().unwrap().hsts = true;
        let vhost = super::super::vhost::render_vhost(&site, &hsts).unwrap();
        let https = &vhost[vhost.find("listen 443").unwrap()..];
        assert!(
            https.contains("add_header Strict-Transport-Security \"max-age=31536000\" always;"),
            "{vhost}"
        );
        // The challenge directory stays reachable over plain HTTP (renewals).
        let http = &vhost[..vhost.find("listen 443").unwrap()];
        assert!(http.contains("/.well-known/acme-challenge/"), "{http}");
    }
}
