//! A certificate the user brings (`CustomCertificateInstaller`), as an alternative to ACME. It is checked
//! before anything is queued: PEM certificates in chain order (each issued by the next), a leaf that is in
//! date and covers every name the site answers to (wildcards one level deep), and a private key that belongs
//! to the leaf (rustls compares the key's public half with the certificate's). The key is sealed in the store
//! (job payloads are not secret), written 0600 for root only, and never logged.

use brokeforge_core::time::now_ms;
use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError, shell_quote};
use brokeforge_store::{ServerSite, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::common::{certificate_delete_command, on_server, require_active};
use super::super::config::{CertificateConfig, SiteConfig};
use super::super::vhost::{server_names, write_vhosts};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::{FileContents, FileStep, PackageError, Plan};
use crate::milestones;
use crate::services::webserver::nginx::NGINX_RELOAD;

milestones! {
    pub enum CustomCertificateInstallerMilestones {
        WriteCertificate => ("write_certificate", "Writing the certificate and its key"),
        ConfigureNginx => ("configure_nginx", "Serving the site over HTTPS"),
        Complete => ("complete", "HTTPS enabled"),
    }
}

/// Largest chain accepted.
const MAX_PEM: usize = 64 * 1024;

pub use super::super::common::custom_certificate_dir as custom_dir;

/// The name the sealed key is kept under.
pub fn key_secret_name(site_id: i64) -> String {
    format!("site:{site_id}:certificate_key")
}

/// What was checked: the chain as given, the names it covers and when it expires.
#[derive(Debug, Clone)]
pub struct CheckedCertificate {
    pub chain_pem: String,
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
}

fn bad(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// Whether certificate name `pattern` (maybe `*.example.com`) covers host `name`.
fn covers(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(base) => n
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => p == n,
    }
}

/// Check a chain and key for `names` (the site's domain and aliases).
pub fn check(chain: &str, key: &Secret, names: &[String]) -> Result<CheckedCertificate, ValidationError> {
    use x509_parser::prelude::*;
    let chain = chain.trim();
    if chain.is_empty() || chain.len() > MAX_PEM {
        return Err(bad("certificate", "paste the certificate chain in PEM form (leaf first)"));
    }
    let pems: Vec<x509_parser::pem::Pem> = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", format!("not PEM: {e}")))?;
    if pems.is_empty() || pems.iter().any(|p| p.label != "CERTIFICATE") {
        return Err(bad("certificate", "only CERTIFICATE blocks, leaf first (no key in this field)"));
    }
    let certs: Vec<X509Certificate> = pems
        .iter()
        .map(|p| p.parse_x509().map_err(|e| bad("certificate", format!("not a certificate: {e}"))))
        .collect::<Result<_, _>>()?;
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return Err(bad(
                "certificate",
                format!(
                    "certificate {} is not issued by certificate {}: give the chain in order, leaf first",
                    i + 1,
                    i + 2
                ),
            ));
        }
    }
    let leaf = &certs[0];
    let now = now_ms() / 1000;
    let validity = leaf.validity();
    if validity.not_after.timestamp() <= now {
        return Err(bad("certificate", "the certificate has expired"));
    }
    if validity.not_before.timestamp() > now {
        return Err(bad("certificate", "the certificate is not valid yet"));
    }
    let mut covered: Vec<String> = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                covered.push(d.to_string());
            }
        }
    }
    if covered.is_empty() {
        covered.extend(
            leaf.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_string)),
        );
    }
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !covered.iter().any(|c| covers(c, n)))
        .collect();
    if !missing.is_empty() {
        return Err(bad(
            "certificate",
            format!(
                "the certificate does not cover {} (it covers {})",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                covered.join(", ")
            ),
        ));
    }
    // The key: parsed by rustls, and its public half must be the leaf's.
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.expose().trim().as_bytes())
        .map_err(|_| bad("private_key", "paste the private key in PEM form (-----BEGIN PRIVATE KEY----- ...)"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| bad("private_key", format!("not a usable key: {e}")))?;
    let spki = signer
        .public_key()
        .ok_or_else(|| bad("private_key", "not a usable key"))?;
    if spki.as_ref() != leaf.public_key().raw {
        return Err(bad("private_key", "the private key does not belong to the certificate"));
    }
    let chain_pem = pems
        .iter()
        .map(|p| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&p.contents);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
        })
        .collect();
    Ok(CheckedCertificate {
        chain_pem,
        names: covered,
        not_after: validity.not_after.timestamp(),
    })
}

/// A site's own certificate to install: the chain (the key was sealed under [`key_secret_name`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomCertificateRequest {
    pub site_id: i64,
    pub certificate: String,
    #[serde(default)]
    pub hsts: bool,
}

/// Check a chain and key for `site`, seal the key and queue the install.
pub async fn upload_certificate(
    store: &Store,
    site: &ServerSite,
    certificate: &str,
    key: &Secret,
    hsts: bool,
) -> Result<brokeforge_store::Job, PackageError> {
    require_active(site)?;
    let names = server_names(site, &SiteConfig::of(site))?;
    let checked = check(certificate, key, &names)?;
    store
        .put_service_secret(site.server_id, &key_secret_name(site.id), key)
        .await?;
    let request = CustomCertificateRequest {
        site_id: site.id,
        certificate: checked.chain_pem,
        hsts,
    };
    Ok(store
        .enqueue(&job::<CustomCertificateInstaller>(site.server_id, &request)?)
        .await?)
}

pub struct CustomCertificateInstaller;

pub struct CustomCertificateInput {
    pub site: ServerSite,
    pub config: SiteConfig,
    pub chain: String,
    pub key: Secret,
    pub certificate: CertificateConfig,
}

impl Package for CustomCertificateInstaller {
    type Milestones = CustomCertificateInstallerMilestones;
    type Request = CustomCertificateRequest;
    type Input = CustomCertificateInput;
    const JOB: &'static str = "site_custom_certificate_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        r: &CustomCertificateRequest,
    ) -> Result<CustomCertificateInput, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        let config = SiteConfig::of(&site);
        let names = server_names(&site, &config)?;
        let key = cx
            .store
            .service_secret(cx.server.id, &key_secret_name(site.id))
            .await?
            .ok_or_else(|| bad("private_key", "the certificate's key is gone: upload it again"))?;
        // Checked again: the job runs what it was given only if it still holds.
        let checked = check(&r.certificate, &key, &names)?;
        let certificate = CertificateConfig {
            name: names[0].clone(),
            domains: names,
            email: None,
            acme_directory: String::new(),
            expires: chrono_like(checked.not_after),
            hsts: r.hsts,
            custom: true,
        };
        Ok(CustomCertificateInput {
            site,
            config,
            chain: checked.chain_pem,
            key,
            certificate,
        })
    }

    fn commands(&self, i: &CustomCertificateInput) -> Result<Plan, PackageError> {
        use CustomCertificateInstallerMilestones as M;
        let dir = custom_dir(&i.certificate.name);
        let mut with_tls = i.config.clone();
        with_tls.certificate = Some(i.certificate.clone());
        let mut plan = self
            .plan()
            .track(M::WriteCertificate)
            // An ACME certificate of the same name (and its renewals) makes way.
            .run(certificate_delete_command(&i.certificate.name))
            .run(format!("install -d -m 700 {}", shell_quote(&dir)))
            .put_file(FileStep::new(
                i.certificate.fullchain_path(),
                FileContents::Text(i.chain.clone()),
                0o644,
            ))
            .put_file(FileStep::new(
                i.certificate.key_path(),
                FileContents::Secret(i.key.clone()),
                0o600,
            ));
        plan = write_vhosts(plan.track(M::ConfigureNginx), &i.site, &with_tls, &[])?
            .run(NGINX_RELOAD)
            .track(M::Complete);
        Ok(plan)
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: CustomCertificateInput,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let stored = i.certificate.clone();
        SiteConfig::update(cx.store, i.site.id, |c| c.certificate = Some(stored.clone())).await?;
        Ok(json!({"site_id": i.site.id, "domains": i.certificate.domains, "expires": i.certificate.expires}))
    }
}

impl PackageInstaller for CustomCertificateInstaller {}

/// `2027-02-24 01:59:05+00:00`, the form certbot's expiry takes in the site's configuration.
/// A certificate's end as BrokeForge records it (certbot's form: `2027-02-24 01:59:05+00:00`).
pub(crate) fn chrono_like(secs: i64) -> Option<String> {
    let s = brokeforge_core::time::utc_stamp(secs * 1000);
    Some(format!(
        "{}-{}-{} {}:{}:{}+00:00",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> (String, Secret) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let c = params.self_signed(&key).unwrap();
        (c.pem(), Secret::new(key.serialize_pem()))
    }

    #[test]
    fn chains_keys_and_names_are_checked() {
        let names = vec!["example.com".to_string(), "www.example.com".to_string()];
        let (pem, key) = cert(&["example.com", "www.example.com"]);
        let ok = check(&pem, &key, &names).unwrap();
        assert!(ok.chain_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(ok.not_after > now_ms() / 1000);
        let (wild, wkey) = cert(&["*.example.com", "example.com"]);
        assert!(check(&wild, &wkey, &names).is_ok());
        assert!(!covers("*.example.com", "a.b.example.com"));
        // Another key.
        let (_, other) = cert(&["example.com"]);
        assert_eq!(check(&pem, &other, &names).unwrap_err().field, "private_key");
        // Names not covered.
        let (only, okey) = cert(&["example.com"]);
        let e = check(&only, &okey, &names).unwrap_err();
        assert!(e.message.contains("www.example.com"), "{e}");
        // Not a chain in order: a second self-signed certificate did not issue the first.
        let (second, _) = cert(&["other.test"]);
        let e = check(&format!("{pem}{second}"), &key, &names).unwrap_err();
        assert!(e.message.contains("in order"), "{e}");
        // A key in the certificate field, garbage key.
        assert!(check(key.expose(), &key, &names).is_err());
        assert_eq!(
            check(&pem, &Secret::new("nope"), &names).unwrap_err().field,
            "private_key"
        );
    }
}
