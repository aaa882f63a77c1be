//! What every handler gets: the domain, how BrokeForge is reached, metrics and the live-feed hub.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use brokeforge_domain::Domain;
use brokeforge_store::Store;

use crate::{metrics, sse};

/// How the web app is reached and what it may trust.
#[derive(Debug, Clone, Default)]
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
        AppState {
            domain: Domain::new(store.clone()),
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
        Some(format!("http://{host}"))
    }
}
