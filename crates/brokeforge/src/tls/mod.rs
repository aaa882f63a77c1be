//! HTTPS served by BrokeForge itself: the one-line script runs as root on the user's server, so it must reach
//! the server unaltered. Either certificate files (`BROKEFORGE_TLS_CERT`, `BROKEFORGE_TLS_KEY`, re-read when
//! they change, so a renewal by certbot needs no restart), or a certificate for the public URL's host name
//! from an ACME authority (`BROKEFORGE_TLS=acme`, see [`acme`]).

pub mod acme;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How BrokeForge serves its web app.
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// Plain HTTP (behind a TLS-terminating proxy, or on a test network).
    Off,
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Acme(acme::AcmeSettings),
}

impl TlsMode {
    /// From the environment: `BROKEFORGE_TLS_CERT` + `BROKEFORGE_TLS_KEY`, or `BROKEFORGE_TLS=acme` (with
    /// `BROKEFORGE_PUBLIC_URL=https://NAME`), or nothing.
    pub fn from_env() -> Result<TlsMode> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mode = env("BROKEFORGE_TLS");
        match (
            env("BROKEFORGE_TLS_CERT"),
            env("BROKEFORGE_TLS_KEY"),
            mode.as_deref(),
        ) {
            (Some(_), Some(_), Some("acme")) => {
                bail!(
                    "set either BROKEFORGE_TLS=acme or BROKEFORGE_TLS_CERT/BROKEFORGE_TLS_KEY, not both"
                )
            }
            (Some(cert), Some(key), _) => Ok(TlsMode::Files {
                cert: cert.into(),
                key: key.into(),
            }),
            (Some(_), None, _) | (None, Some(_), _) => {
                bail!(
                    "BROKEFORGE_TLS_CERT and BROKEFORGE_TLS_KEY go together: set both (PEM files)"
                )
            }
            (None, None, Some("acme")) => Ok(TlsMode::Acme(acme::AcmeSettings::from_env()?)),
            (None, None, Some("off")) | (None, None, None) => Ok(TlsMode::Off),
            (None, None, Some(other)) => {
                bail!(
                    "BROKEFORGE_TLS={other} is not understood: use `acme`, or set BROKEFORGE_TLS_CERT/BROKEFORGE_TLS_KEY"
                )
            }
        }
    }
}

/// The certificate BrokeForge presents, swapped in place when it is renewed, and the answers to ACME
/// TLS-ALPN-01 challenges while an order is validated.
#[derive(Default)]
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertStore")
    }
}

impl CertStore {
    pub fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(key));
    }

    pub fn has_certificate(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn set_challenge(&self, name: &str, key: CertifiedKey) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase(), Arc::new(key));
    }

    pub fn clear_challenge(&self, name: &str) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // Only the validation certificate answers an ACME handshake, and only for a name being ordered.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A certificate chain and its private key, from PEM text.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .context("the certificate file is not PEM")?;
    if chain.is_empty() {
        bail!("the certificate file holds no certificate");
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).context("the key file holds no PEM private key")?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .context("the private key's type is not supported")?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .context("the private key does not belong to the certificate")?;
    Ok(certified)
}

fn read_files(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    certified_key(&chain, &key_pem)
        .with_context(|| format!("{} and {}", cert.display(), key.display()))
}

/// The rustls configuration serving `certs` (HTTP/2 and HTTP/1.1; ACME's protocol when `acme`).
pub fn server_config(certs: Arc<CertStore>, acme: bool) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Arc::new(config)
}

/// Load the certificate for `mode` (or start obtaining it) and keep it current until `stop`.
pub async fn start(
    mode: &TlsMode,
    store: &brokeforge_store::Store,
    stop: CancellationToken,
) -> Result<Option<Arc<rustls::ServerConfig>>> {
    let certs = Arc::new(CertStore::default());
    match mode {
        TlsMode::Off => Ok(None),
        TlsMode::Files { cert, key } => {
            certs.set(read_files(cert, key)?);
            tokio::spawn(watch_files(certs.clone(), cert.clone(), key.clone(), stop));
            Ok(Some(server_config(certs, false)))
        }
        TlsMode::Acme(settings) => {
            let config = server_config(certs.clone(), true);
            tokio::spawn(acme::keep_certificate(
                settings.clone(),
                store.clone(),
                certs,
                stop,
            ));
            Ok(Some(config))
        }
    }
}

/// Re-read the certificate files when they change (a renewal), keeping the old pair if the new one is bad.
async fn watch_files(certs: Arc<CertStore>, cert: PathBuf, key: PathBuf, stop: CancellationToken) {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen: (Option<SystemTime>, Option<SystemTime>) = (stamp(&cert), stamp(&key));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match read_files(&cert, &key) {
            Ok(k) => {
                certs.set(k);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "TLS certificate files changed but cannot be used; keeping the previous certificate"
                )
            }
        }
    }
}
