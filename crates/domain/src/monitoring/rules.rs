//! Each alert rule kind's condition, read now: whether it holds, the figure behind it, and words for the
//! notice. `None`: nothing fresh to judge by, so the rule keeps its state.

use brokeforge_store::{AlertRule, JobStatus};

use super::{CHECK_FRESH_MS, certs};
use crate::{Domain, DomainResult};

/// What a rule's condition reads now.
pub(super) struct Reading {
    pub breach: bool,
    pub value: Option<f64>,
    pub detail: Option<String>,
}

/// How fresh the server's collector is, for the rules that read its reports.
pub(super) struct Collector {
    pub now: i64,
    /// How long its samples count.
    pub fresh_ms: i64,
    pub last_seen: Option<i64>,
    /// No report for longer than `fresh_ms`.
    pub quiet: bool,
    pub installed: bool,
}

impl Domain {
    pub(super) async fn read_rule(
        &self,
        rule: &AlertRule,
        c: &Collector,
    ) -> DomainResult<Option<Reading>> {
        match rule.kind.as_str() {
            "job_failed" => self.newest_job(rule).await,
            "drift" => self.newest_drift(rule).await,
            "not_reporting" => Ok(not_reporting(c)),
            "cert_expiring" => self.soonest_expiry(rule, c.now).await,
            kind => {
                let site_check = rule
                    .metric
                    .as_deref()
                    .is_some_and(|m| m.starts_with("http_"));
                // Without fresh data a rule keeps its state: "not reporting" speaks for the collector's
                // metrics; site checks run here and have their own.
                if (c.quiet || !c.installed) && !site_check {
                    return Ok(None);
                }
                if kind == "service_down" {
                    self.services_down(rule, c).await
                } else {
                    let fresh = if site_check {
                        CHECK_FRESH_MS
                    } else {
                        c.fresh_ms
                    };
                    self.metric_threshold(rule, c.now, fresh).await
                }
            }
        }
    }

    /// The newest finished job (since the rule exists) decides: failed fires, done resolves.
    async fn newest_job(&self, rule: &AlertRule) -> DomainResult<Option<Reading>> {
        let jobs = self.store.recent_jobs(rule.server_id, 10).await?;
        let Some(job) = jobs.iter().find(|j| {
            matches!(j.status, JobStatus::Done | JobStatus::Failed)
                && j.finished_at.is_some_and(|t| t > rule.created_at)
        }) else {
            return Ok(None);
        };
        let failed = job.status == JobStatus::Failed;
        let mut why: String = job
            .error
            .clone()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        if why.is_empty() {
            why = "no reason given".into();
        }
        Ok(Some(Reading {
            breach: failed,
            value: Some(job.id as f64),
            detail: Some(if failed {
                format!("job {} ({}) failed: {why}", job.id, job.kind)
            } else {
                format!("job {} ({}) succeeded", job.id, job.kind)
            }),
        }))
    }

    /// The newest drift report decides (read by BrokeForge's checks, not the collector): items that are not
    /// ok and not managed by hand fire; a clean check resolves.
    async fn newest_drift(&self, rule: &AlertRule) -> DomainResult<Option<Reading>> {
        let server = self.store.server(rule.server_id).await?;
        let Some(view) = self.drift_report(&server).await? else {
            return Ok(None);
        };
        let drifted: Vec<String> = view
            .report
            .items
            .iter()
            .filter(|i| i.state.as_str() != "ok" && !i.by_hand)
            .map(|i| format!("{} {}", i.item, i.state.as_str()))
            .collect();
        let detail = if drifted.is_empty() {
            format!("check {} found no drift", view.job_id)
        } else {
            let more = drifted.len().saturating_sub(5);
            let mut text = format!(
                "check {} found {} drifted: {}",
                view.job_id,
                drifted.len(),
                drifted[..drifted.len().min(5)].join(", ")
            );
            if more > 0 {
                text.push_str(&format!(" and {more} more"));
            }
            text
        };
        Ok(Some(Reading {
            breach: !drifted.is_empty(),
            value: Some(drifted.len() as f64),
            detail: Some(detail),
        }))
    }

    /// Read by BrokeForge (not the collector): the soonest expiry among fresh readings.
    async fn soonest_expiry(&self, rule: &AlertRule, now: i64) -> DomainResult<Option<Reading>> {
        let days = rule.threshold.unwrap_or(14.0);
        let mut soon: Vec<(String, f64)> = self
            .store
            .latest_samples(rule.server_id, now - certs::CERT_FRESH_MS)
            .await?
            .into_iter()
            .filter_map(|(m, s)| {
                m.strip_prefix("cert_days:")
                    .map(|d| (d.to_string(), s.value))
            })
            .collect();
        if soon.is_empty() {
            return Ok(None);
        }
        soon.sort_by(|a, b| a.1.total_cmp(&b.1));
        let expiring: Vec<String> = soon
            .iter()
            .filter(|(_, left)| *left < days)
            .map(|(d, left)| {
                if *left <= 0.0 {
                    format!("{d} has expired")
                } else {
                    format!("{d} expires in {left:.1} days")
                }
            })
            .collect();
        Ok(Some(Reading {
            breach: !expiring.is_empty(),
            value: Some(soon[0].1),
            detail: (!expiring.is_empty()).then(|| expiring.join(", ")),
        }))
    }

    async fn services_down(
        &self,
        rule: &AlertRule,
        c: &Collector,
    ) -> DomainResult<Option<Reading>> {
        let report = self
            .store
            .latest_samples(rule.server_id, c.now - c.fresh_ms)
            .await?;
        let down: Vec<&str> = report
            .iter()
            .filter(|(m, s)| m.starts_with("service_up:") && s.value < 0.5)
            .map(|(m, _)| &m["service_up:".len()..])
            .collect();
        Ok(Some(Reading {
            breach: !down.is_empty(),
            value: Some(down.len() as f64),
            detail: (!down.is_empty()).then(|| format!("down: {}", down.join(", "))),
        }))
    }

    async fn metric_threshold(
        &self,
        rule: &AlertRule,
        now: i64,
        fresh_ms: i64,
    ) -> DomainResult<Option<Reading>> {
        let metric = rule.metric.as_deref().unwrap_or("");
        let Some(s) = self.store.latest_sample(rule.server_id, metric).await? else {
            return Ok(None);
        };
        if now - s.at > fresh_ms {
            return Ok(None);
        }
        let threshold = rule.threshold.unwrap_or(0.0);
        let breach = match rule.comparison.as_deref() {
            Some("below") => s.value < threshold,
            _ => s.value > threshold,
        };
        Ok(Some(Reading {
            breach,
            value: Some(s.value),
            detail: Some(format!(
                "{metric} is {:.2} ({} {threshold})",
                s.value,
                rule.comparison.as_deref().unwrap_or("above")
            )),
        }))
    }
}

fn not_reporting(c: &Collector) -> Option<Reading> {
    let last_seen = c.last_seen?;
    let secs = (c.now - last_seen) / 1000;
    Some(Reading {
        breach: c.quiet,
        value: Some(secs as f64),
        detail: Some(format!("no report for {secs} s")),
    })
}
