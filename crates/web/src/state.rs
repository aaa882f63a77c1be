//! What every handler gets: the domain, how BrokeForge is reached, metrics and the live-feed hub.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use brokeforge_domain::Domain;
use brokeforge_store::Store;

use crate::{metrics, sse};

/// How the web app is reached and what it may trust.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// Base URL servers and browsers reach BrokeForge at (`BROKEFORGE_PUBLIC_URL`); else taken from the
    /// request's Host header.
    pub public_url: Option<String>,
    /// Mark cookies `Secure` (set when the public URL is https).
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_proxy: bool,
    /// `BROKEFORGE_METRICS_TOKEN`: `/metrics` asks for it as a bearer token; without one, `/metrics` answers
    /// only on loopback (a scraper on the same machine).
    pub metrics_token: Option<String>,
    /// BrokeForge serves HTTPS itself (so a URL taken from the Host header is `https://`).
    pub tls: bool,
    /// `BROKEFORGE_INSECURE_PROVISIONING=1`: hand out the one-line script over plain HTTP (test networks;
    /// the page says so in red). Without it, a script is only handed out for an `https://` base URL.
    pub insecure_provisioning: bool,
    /// `BROKEFORGE_REFUSE_PRIVATE_ADDRESSES=1`: servers may not be at private or loopback addresses.
    pub refuse_internal_addresses: bool,
    /// `BROKEFORGE_ALLOW_HTTP_CHANNELS=1`: notification channels may post over plain HTTP (test networks).
    pub allow_http_channels: bool,
    /// `BROKEFORGE_TELEGRAM_API`: Telegram's Bot API base URL (a stand-in on test networks).
    pub telegram_api: Option<String>,
    /// The mail relay for email notifications (`BROKEFORGE_SMTP_URL`, `BROKEFORGE_SMTP_FROM`).
    pub smtp: Option<Arc<brokeforge_domain::monitoring::Smtp>>,
}

#[derive(Clone)]
pub struct AppState {
    pub domain: Domain,
    /// The domain's store, for the live feeds and metrics.
    pub store: Store,
    pub config: Arc<WebConfig>,
    pub metrics: Arc<metrics::Metrics>,
    /// Live feeds shared by the watchers of each server.
    pub hub: Arc<sse::Hub>,
    /// Cancelled when the server shuts down: live streams end so graceful shutdown does not wait on them.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(store: Store, config: WebConfig) -> AppState {
        let secure = config.secure_cookies
            || config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        let mut domain = Domain::new(store.clone());
        domain.refuse_internal_addresses = config.refuse_internal_addresses;
        domain.allow_http_channels = config.allow_http_channels;
        domain.telegram_api = config.telegram_api.clone();
        domain.smtp = config.smtp.clone();
        AppState {
            domain,
            store,
            config: Arc::new(WebConfig {
                secure_cookies: secure,
                ..config
            }),
            metrics: Arc::new(metrics::Metrics::default()),
            hub: Arc::new(sse::Hub::default()),
            shutdown: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The base URL for links that leave the browser (the provisioning one-liner, webhook URLs).
    pub fn base_url(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(url) = &self.config.public_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        // Only a plain host[:port] may flow into scripts and pages.
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return None;
        }
        let scheme = if self.config.tls { "https" } else { "http" };
        Some(format!("{scheme}://{host}"))
    }

    /// The base URL the one-line script is fetched from and reports to. It runs as root on the user's
    /// server: over plain HTTP anyone on the path could rewrite it, so that needs the operator's opt-in.
    pub fn script_base_url(
        &self,
        headers: &HeaderMap,
    ) -> Result<ScriptBase, crate::error::ApiError> {
        let url = self
            .base_url(headers)
            .ok_or_else(|| crate::error::ApiError::invalid("host", "set BROKEFORGE_PUBLIC_URL"))?;
        let secure = url.starts_with("https://");
        if !secure && !self.config.insecure_provisioning {
            return Err(crate::error::ApiError::invalid(
                "public_url",
                format!(
                    "the one-line script runs as root on your server, so BrokeForge hands it out over HTTPS only, and {url} is not HTTPS. \
                     Serve HTTPS (BROKEFORGE_TLS_CERT and BROKEFORGE_TLS_KEY, or BROKEFORGE_TLS=acme) and set BROKEFORGE_PUBLIC_URL=https://..., \
                     or, on a test network only, set BROKEFORGE_INSECURE_PROVISIONING=1"
                ),
            ));
        }
        Ok(ScriptBase { url, secure })
    }
}

impl AppState {
    /// A package's settings with `report_to` (where something on the server reports to, e.g. the metrics
    /// collector) filled in from BrokeForge's base URL when the package has it and the user gave none. A
    /// token is sent there: plain HTTP needs the same opt-in as the one-line script.
    pub fn install_settings(
        &self,
        headers: &HeaderMap,
        package: &str,
        mut settings: std::collections::BTreeMap<String, String>,
    ) -> Result<std::collections::BTreeMap<String, String>, crate::error::ApiError> {
        let takes_it = brokeforge_packages::catalogue::entry(package)
            .is_ok_and(|e| e.parameters.iter().any(|p| p.name == "report_to"));
        if !takes_it || settings.get("report_to").is_some_and(|v| !v.is_empty()) {
            return Ok(settings);
        }
        let url = self.base_url(headers).ok_or_else(|| {
            crate::error::ApiError::invalid("report_to", "set BROKEFORGE_PUBLIC_URL")
        })?;
        if !url.starts_with("https://") && !self.config.insecure_provisioning {
            return Err(crate::error::ApiError::invalid(
                "report_to",
                format!(
                    "the collector sends its token to {url}, which is not HTTPS: serve HTTPS and set BROKEFORGE_PUBLIC_URL=https://..., \
                     or, on a test network only, set BROKEFORGE_INSECURE_PROVISIONING=1"
                ),
            ));
        }
        settings.insert("report_to".into(), url);
        Ok(settings)
    }
}

/// Where the one-line script comes from, and whether that is safe from tampering on the way.
#[derive(Debug, Clone)]
pub struct ScriptBase {
    pub url: String,
    pub secure: bool,
}
