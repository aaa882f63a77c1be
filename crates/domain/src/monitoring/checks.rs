//! Site health checks, run by BrokeForge: an HTTP GET of a path of the site (by default to the server's
//! address with the site's name as Host, so the check sees this server whatever DNS or a CDN say; with
//! `https`, to `https://DOMAIN` as visitors reach it). Each result is a sample (`http_up:DOMAIN` 1 or 0,
//! `http_ms:DOMAIN`) so it has a history, a chart and alert rules like any metric; a check comes with a
//! rule that fires when the site stops answering as expected.

use std::time::{Duration, Instant};

use brokeforge_core::ValidationError;
use brokeforge_core::time::now_ms;
use brokeforge_store::{NewAlertRule, NewSiteCheck, ServerSite, SiteCheck};
use serde::Deserialize;

use crate::{Domain, DomainError, DomainResult};

/// Checks run per evaluation round, at most.
const CLAIM: i64 = 64;

#[derive(Debug, Clone, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CheckSpec {
    pub path: String,
    pub expect: i64,
    pub interval_seconds: i64,
    pub timeout_seconds: i64,
    /// Check `https://DOMAIN` (resolved by DNS) instead of the server's address over HTTP.
    pub https: bool,
    /// After each deploy, from the server itself: `off`, `fail` (the deployment fails when the site does not
    /// answer as expected) or `rollback` (and the previous release goes live again).
    pub after_deploy: String,
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            path: "/".into(),
            expect: 200,
            interval_seconds: 60,
            timeout_seconds: 10,
            https: false,
            after_deploy: "off".into(),
        }
    }
}

/// The metric names of a site's check.
pub fn check_metrics(domain: &str) -> (String, String) {
    (format!("http_up:{domain}"), format!("http_ms:{domain}"))
}

impl Domain {
    /// Create or replace a site's check, and the alert rule that goes with it (once).
    pub async fn put_site_check(
        &self,
        site: &ServerSite,
        spec: &CheckSpec,
    ) -> DomainResult<SiteCheck> {
        let path = spec.path.trim();
        if !path.starts_with('/')
            || path.len() > 512
            || !path
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\"'<>\\`{}|^".contains(&b))
        {
            return Err(ValidationError::new(
                "path",
                "give a path like / or /health (no spaces or quotes)",
            )
            .into());
        }
        if !(100..=599).contains(&spec.expect) {
            return Err(ValidationError::new("expect", "give an HTTP status, 100 to 599").into());
        }
        if !(10..=3600).contains(&spec.interval_seconds) {
            return Err(ValidationError::new("interval_seconds", "give 10 to 3600 seconds").into());
        }
        if !(1..=60).contains(&spec.timeout_seconds)
            || spec.timeout_seconds >= spec.interval_seconds
        {
            return Err(ValidationError::new(
                "timeout_seconds",
                "give 1 to 60 seconds, shorter than the interval",
            )
            .into());
        }
        if !["off", "fail", "rollback"].contains(&spec.after_deploy.as_str()) {
            return Err(ValidationError::new(
                "after_deploy",
                "give off, fail (a deployment fails when the check does) or rollback (and goes back)",
            )
            .into());
        }
        let path = brokeforge_store::check_path(spec.https, path);
        let check = self
            .store
            .put_site_check(&NewSiteCheck {
                site_id: site.id,
                server_id: site.server_id,
                path,
                expect_status: spec.expect,
                interval_secs: spec.interval_seconds,
                timeout_secs: spec.timeout_seconds,
                after_deploy: spec.after_deploy.clone(),
            })
            .await?;
        let (up, _) = check_metrics(&site.domain);
        let rules = self.store.alert_rules(site.server_id).await?;
        if !rules
            .iter()
            .any(|r| r.metric.as_deref() == Some(up.as_str()))
        {
            self.store
                .create_alert_rule(&NewAlertRule {
                    server_id: site.server_id,
                    kind: "metric".into(),
                    metric: Some(up),
                    comparison: Some("below".into()),
                    threshold: Some(0.5),
                    for_secs: 0,
                    channel_id: None,
                })
                .await?;
        }
        Ok(check)
    }

    pub async fn site_check(&self, site: &ServerSite) -> DomainResult<Option<SiteCheck>> {
        Ok(self.store.site_check(site.id).await?)
    }

    /// Remove a site's check and the rule that came with it.
    pub async fn remove_site_check(&self, site: &ServerSite) -> DomainResult<()> {
        if !self.store.delete_site_check(site.id).await? {
            return Err(DomainError::NotFound);
        }
        let (up, _) = check_metrics(&site.domain);
        for r in self.store.alert_rules(site.server_id).await? {
            if r.metric.as_deref() == Some(up.as_str()) {
                self.store.delete_alert_rule(site.server_id, r.id).await?;
            }
        }
        Ok(())
    }

    /// Run the checks that are due, all at once; how many ran.
    pub async fn run_due_checks(&self) -> DomainResult<usize> {
        let due = self.store.claim_due_checks(now_ms(), CLAIM).await?;
        let n = due.len();
        let mut set = tokio::task::JoinSet::new();
        for check in due {
            let domain = self.clone();
            set.spawn(async move {
                if let Err(e) = domain.run_check(&check).await {
                    tracing::warn!(check = check.id, error = %e, "a site check could not be recorded");
                }
            });
        }
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    async fn run_check(&self, check: &SiteCheck) -> DomainResult<()> {
        let site = self.store.site(check.site_id).await?;
        let server = self.store.server(check.server_id).await?;
        let (url, host) = match check.target() {
            (true, path) => (format!("https://{}{path}", site.domain), None),
            (false, path) => {
                let ip = &server.public_ip;
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                (format!("http://{ip}{path}"), Some(site.domain.clone()))
            }
        };
        let timeout = Duration::from_secs(check.timeout_secs as u64);
        let started = Instant::now();
        let answer = tokio::task::spawn_blocking(move || get(&url, host.as_deref(), timeout))
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let ms = started.elapsed().as_millis() as i64;
        let (ok, status, error) = match answer {
            Ok(status) if i64::from(status) == check.expect_status => {
                (true, Some(status as i64), None)
            }
            Ok(status) => (
                false,
                Some(status as i64),
                Some(format!(
                    "answered {status}, expected {}",
                    check.expect_status
                )),
            ),
            Err(e) => (false, None, Some(e)),
        };
        self.store
            .record_site_check(check.id, ok, status, ms, error.as_deref())
            .await?;
        let (up, time) = check_metrics(&site.domain);
        self.store
            .put_samples(
                server.id,
                now_ms(),
                &[(up, if ok { 1.0 } else { 0.0 }), (time, ms as f64)],
            )
            .await?;
        Ok(())
    }
}

/// One GET without following redirects; the status, or what went wrong.
fn get(url: &str, host: Option<&str>, timeout: Duration) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into();
    let mut req = agent.get(url).header("User-Agent", "BrokeForge-check/1");
    if let Some(h) = host {
        req = req.header("Host", h);
    }
    match req.call() {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(ureq::Error::Timeout(_)) => Err("no answer in time".into()),
        Err(ureq::Error::Io(e)) => Err(format!("connection failed: {}", e.kind())),
        Err(ureq::Error::HostNotFound) => Err("host not found".into()),
        Err(e) => Err(e.to_string()),
    }
}
