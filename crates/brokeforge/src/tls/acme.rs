//! A certificate for BrokeForge's own host name from an ACME authority (Let's Encrypt by default), validated
//! by TLS-ALPN-01 on the HTTPS port itself (RFC 8737): no second port, no web root. The account and the
//! certificate are kept sealed in the database, so a restart (or another node) reuses them; a certificate is
//! renewed 30 days before a 90-day one ends.
//!
//! The authority validates by connecting to port 443 of the name: BrokeForge must answer there (bind
//! `0.0.0.0:443`, or forward 443 to it).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use brokeforge_core::time::now_ms;
use brokeforge_store::Store;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{CertStore, certified_key};

const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Renew this long after issuance (Let's Encrypt certificates last 90 days).
const RENEW_AFTER: Duration = Duration::from_secs(60 * 24 * 3600);
/// How often a node looks at the stored certificate (another node may have renewed it).
const RECHECK: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The host name of `BROKEFORGE_PUBLIC_URL`.
    pub domain: String,
    /// `BROKEFORGE_ACME_DIRECTORY` (Let's Encrypt's production directory by default).
    pub directory: String,
    /// `BROKEFORGE_ACME_EMAIL`: where the authority sends expiry warnings (optional).
    pub contact: Option<String>,
    /// `BROKEFORGE_ACME_CA_FILE`: a root to trust for the authority's own HTTPS (a private or test CA).
    pub ca_file: Option<String>,
}

impl AcmeSettings {
    pub fn from_env() -> Result<AcmeSettings> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let url = env("BROKEFORGE_PUBLIC_URL").ok_or_else(|| {
            anyhow!("BROKEFORGE_TLS=acme needs BROKEFORGE_PUBLIC_URL=https://NAME (the name to get a certificate for)")
        })?;
        let domain = domain_of(&url)?;
        let contact = env("BROKEFORGE_ACME_EMAIL");
        if let Some(c) = &contact
            && (!c.contains('@') || c.contains(|ch: char| ch.is_whitespace() || ch == ','))
        {
            bail!("BROKEFORGE_ACME_EMAIL `{c}` is not an email address");
        }
        Ok(AcmeSettings {
            domain,
            directory: env("BROKEFORGE_ACME_DIRECTORY").unwrap_or_else(|| LETS_ENCRYPT.into()),
            contact,
            ca_file: env("BROKEFORGE_ACME_CA_FILE"),
        })
    }
}

/// The DNS name of an `https://` URL, or why it cannot have an ACME certificate.
pub fn domain_of(url: &str) -> Result<String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        anyhow!("BROKEFORGE_PUBLIC_URL must start with https:// to get a certificate")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > 253 || !host.contains('.') || !host.split('.').all(label_ok) {
        bail!(
            "`{host}` in BROKEFORGE_PUBLIC_URL is not a DNS name an ACME authority can issue for"
        );
    }
    if host
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        bail!("an ACME certificate needs a DNS name, not the address `{host}`");
    }
    Ok(host)
}

/// The certificate as stored (sealed) in the database.
#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    directory: String,
    chain_pem: String,
    key_pem: String,
    issued_at_ms: i64,
}

fn cert_key(domain: &str) -> String {
    format!("acme:certificate:{domain}")
}

fn account_key(directory: &str) -> String {
    format!("acme:account:{directory}")
}

/// Keep a valid certificate in `certs` until `stop`: load it from the database, order one when there is none
/// or it is due, retry failures with a growing pause.
pub async fn keep_certificate(
    settings: AcmeSettings,
    store: Store,
    certs: Arc<CertStore>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let wait = match ensure(&settings, &store, &certs).await {
            Ok(wait) => {
                failures = 0;
                wait
            }
            Err(e) => {
                failures += 1;
                let wait = Duration::from_secs((15u64 << failures.min(8)).min(3600));
                tracing::error!(
                    domain = %settings.domain,
                    error = format!("{e:#}"),
                    retry_in_s = wait.as_secs(),
                    "no TLS certificate from the ACME authority"
                );
                wait
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Make sure `certs` holds a certificate that is not due; how long until the next look.
async fn ensure(settings: &AcmeSettings, store: &Store, certs: &CertStore) -> Result<Duration> {
    let age = |issued: i64| Duration::from_millis(now_ms().saturating_sub(issued).max(0) as u64);
    if let Some(raw) = store.panel_secret(&cert_key(&settings.domain)).await? {
        let stored: StoredCertificate =
            serde_json::from_slice(&raw).context("the stored certificate is unreadable")?;
        if stored.directory == settings.directory && age(stored.issued_at_ms) < RENEW_AFTER {
            certs.set(certified_key(
                stored.chain_pem.as_bytes(),
                stored.key_pem.as_bytes(),
            )?);
            return Ok((RENEW_AFTER - age(stored.issued_at_ms)).min(RECHECK));
        }
        if stored.directory == settings.directory && !certs.has_certificate() {
            // Due, but still valid for weeks: serve it while a new one is ordered.
            certs.set(certified_key(
                stored.chain_pem.as_bytes(),
                stored.key_pem.as_bytes(),
            )?);
        }
    }
    let fresh = order(settings, store, certs).await?;
    certs.set(certified_key(
        fresh.chain_pem.as_bytes(),
        fresh.key_pem.as_bytes(),
    )?);
    store
        .set_panel_secret(&cert_key(&settings.domain), &serde_json::to_vec(&fresh)?)
        .await?;
    tracing::info!(domain = %settings.domain, "TLS certificate issued by the ACME authority");
    Ok(RECHECK)
}

async fn account(settings: &AcmeSettings, store: &Store) -> Result<Account> {
    let builder = || -> Result<instant_acme::AccountBuilder> {
        Ok(match &settings.ca_file {
            Some(path) => Account::builder_with_root(path)
                .with_context(|| format!("cannot trust BROKEFORGE_ACME_CA_FILE {path}"))?,
            None => Account::builder()?,
        })
    };
    let key = account_key(&settings.directory);
    if let Some(raw) = store.panel_secret(&key).await? {
        let credentials: AccountCredentials =
            serde_json::from_slice(&raw).context("the stored ACME account is unreadable")?;
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact = settings.contact.as_ref().map(|c| format!("mailto:{c}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .with_context(|| format!("cannot open an account at {}", settings.directory))?;
    store
        .set_panel_secret(&key, &serde_json::to_vec(&credentials)?)
        .await?;
    Ok(account)
}

async fn order(
    settings: &AcmeSettings,
    store: &Store,
    certs: &CertStore,
) -> Result<StoredCertificate> {
    let account = account(settings, store).await?;
    let identifiers = [Identifier::Dns(settings.domain.clone())];
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => bail!("the authorization for {} is {other:?}", settings.domain),
            }
            let mut challenge = authz.challenge(ChallengeType::TlsAlpn01).ok_or_else(|| {
                anyhow!(
                    "the ACME authority offers no TLS-ALPN-01 challenge for {}",
                    settings.domain
                )
            })?;
            let proof = challenge_certificate(
                &settings.domain,
                challenge.key_authorization().digest().as_ref(),
            )?;
            certs.set_challenge(&settings.domain, proof);
            challenge.set_ready().await?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(Duration::from_secs(180));
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("the order is {status:?}"));
            bail!(
                "the ACME authority did not validate {}: {why}",
                settings.domain
            );
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        Ok(StoredCertificate {
            directory: settings.directory.clone(),
            chain_pem,
            key_pem,
            issued_at_ms: now_ms(),
        })
    }
    .await;
    certs.clear_challenge(&settings.domain);
    result
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge: the name, and the SHA-256 of the key
/// authorization in the critical acmeIdentifier extension.
fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<rustls::sign::CertifiedKey> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow!("challenge key: {e}"))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)?;
    // Not checked with keys_match(): webpki rightly refuses to parse the critical acmeIdentifier extension,
    // and the pair was made together just above.
    Ok(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dns_names_of_https_urls_get_certificates() {
        assert_eq!(
            domain_of("https://Panel.Example.com/").unwrap(),
            "panel.example.com"
        );
        assert_eq!(
            domain_of("https://panel.example.com:8443").unwrap(),
            "panel.example.com"
        );
        for bad in [
            "http://panel.example.com",
            "https://localhost",
            "https://10.0.0.1",
            "https://-x.example.com",
            "https://a_b.example.com",
            "https://",
        ] {
            assert!(domain_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_challenge_certificate_names_the_domain() {
        let key = challenge_certificate("panel.example.com", &[7u8; 32]).unwrap();
        assert_eq!(key.cert.len(), 1);
        let der = key.cert[0].as_ref();
        // The name, and the acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the digest.
        assert!(der.windows(17).any(|w| w == b"panel.example.com"));
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(32).any(|w| w == [7u8; 32]));
    }
}
