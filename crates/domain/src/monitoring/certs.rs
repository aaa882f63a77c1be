//! Certificate expiry, read from what each HTTPS site serves: a TLS handshake with the server's address
//! and the site's name (SNI), so the figure is this server's certificate whatever DNS says, and the days
//! left on the leaf become a sample (`cert_days:DOMAIN`) with a history like any metric. Only servers with
//! a `cert_expiring` rule are probed, each site every few hours.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brokeforge_core::time::now_ms;
use brokeforge_packages::services::sites::config::SiteConfig;
use brokeforge_store::ServerSite;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{Domain, DomainError, DomainResult};

/// How often a site's certificate is read.
pub const PROBE_EVERY_MS: i64 = 6 * 3600 * 1000;
/// After a failed read, the next try.
const RETRY_AFTER_MS: i64 = 10 * 60 * 1000;
/// A reading counts this long for the rules (two probe intervals).
pub const CERT_FRESH_MS: i64 = 2 * PROBE_EVERY_MS;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The metric of a site's certificate: days until it expires.
pub fn cert_metric(domain: &str) -> String {
    format!("cert_days:{domain}")
}

/// When each site's certificate was last tried on this node (successes are in the samples).
pub type ProbeAttempts = Arc<Mutex<HashMap<i64, i64>>>;

impl Domain {
    /// Read the certificates that are due on servers with a `cert_expiring` rule; how many were read.
    pub async fn probe_due_certificates(&self) -> DomainResult<usize> {
        let now = now_ms();
        let mut servers: Vec<i64> = self
            .store
            .all_alert_rules()
            .await?
            .into_iter()
            .filter(|r| r.kind == "cert_expiring")
            .map(|r| r.server_id)
            .collect();
        servers.sort_unstable();
        servers.dedup();
        let mut read = 0;
        for server_id in servers {
            let server = self.store.server(server_id).await?;
            for site in self.store.sites(server_id).await? {
                if SiteConfig::of(&site).certificate.is_none() {
                    continue;
                }
                let metric = cert_metric(&site.domain);
                let last = self.store.latest_sample(server_id, &metric).await?;
                if last.is_some_and(|s| now - s.at < PROBE_EVERY_MS) {
                    continue;
                }
                {
                    let mut tried = self.cert_probes.lock().expect("probe map");
                    if tried
                        .get(&site.id)
                        .is_some_and(|t| now - t < RETRY_AFTER_MS)
                    {
                        continue;
                    }
                    tried.insert(site.id, now);
                }
                match self.read_certificate(&server.public_ip, &site).await {
                    Ok(not_after) => {
                        let days = (not_after * 1000 - now_ms()) as f64 / 86_400_000.0;
                        self.store
                            .put_samples(server_id, now_ms(), &[(metric, days)])
                            .await?;
                        read += 1;
                    }
                    Err(e) => {
                        tracing::warn!(site = %site.domain, error = %e, "could not read the site's certificate")
                    }
                }
            }
        }
        Ok(read)
    }

    /// When the certificate `site` serves on `ip` expires (Unix seconds).
    async fn read_certificate(&self, ip: &str, site: &ServerSite) -> DomainResult<i64> {
        let (ip, name) = (ip.to_string(), site.domain.clone());
        tokio::task::spawn_blocking(move || not_after(&ip, &name))
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?
            .map_err(DomainError::Internal)
    }
}

/// Handshake with `ip`:443 as `name` and read the leaf's expiry. The chain is not judged here: an
/// untrusted or self-signed certificate expires too, and that is what this reading is for.
fn not_after(ip: &str, name: &str) -> Result<i64, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), server_name).map_err(|e| e.to_string())?;
    let addr: SocketAddr = (ip, 443)
        .to_socket_addrs()
        .map_err(|e| format!("{ip}: {e}"))?
        .next()
        .ok_or_else(|| format!("{ip}: no address"))?;
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connection to {addr} failed: {}", e.kind()))?;
    sock.set_read_timeout(Some(TIMEOUT)).ok();
    sock.set_write_timeout(Some(TIMEOUT)).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("the certificate could not be read: {e}"))?;
    let at = cert.validity().not_after.timestamp();
    // Say goodbye properly; the answer is already in hand.
    conn.send_close_notify();
    let _ = conn.write_tls(&mut sock);
    Ok(at)
}

/// Accepts any certificate (see [`not_after`]) while still checking the handshake's signatures.
#[derive(Debug)]
struct ReadOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
