//! Monitoring: reports pushed by each server's collector, notification channels, alert rules and the
//! evaluator that moves rules between ok, pending, firing and resolved and tells the channels once per
//! change (and again only after a quiet period while a rule keeps firing).

use std::collections::HashMap;
use std::time::Duration;

use brokeforge_core::ValidationError;
use brokeforge_core::time::now_ms;
use brokeforge_store::{AlertRule, NewAlertRule, RuleTransition, Server};
use serde::{Deserialize, Serialize};

use crate::{Domain, DomainError, DomainResult};

mod certs;
mod channels;
mod checks;
mod fleet;
mod rules;
pub use certs::{ProbeAttempts, cert_metric};
use channels::rfc3339;
pub use channels::{CHANNEL_KINDS, ChannelSpec, NewChannel, Notice, Smtp};
pub use checks::{CheckSpec, check_metrics};
pub use fleet::{FLEET_SPAN_MS, FleetHealth};

/// A report's limits: a collector sends a few dozen lines.
const MAX_REPORT_BYTES: usize = 64 * 1024;
const MAX_REPORT_LINES: usize = 1000;
/// How often rules are evaluated.
pub const EVALUATE_EVERY: Duration = Duration::from_secs(10);
/// A server is "not reporting" after three intervals without a report (at least this long).
const SILENCE_MS: i64 = 30_000;
/// A site check's result counts this long (three of the longest check interval).
const CHECK_FRESH_MS: i64 = 3 * 3600 * 1000;
/// A rule that keeps firing reminds its channels after this long.
const REMIND_AFTER_MS: i64 = 4 * 3600 * 1000;

/// A metric name as collectors send it: `disk_used_percent`, `disk_used_percent:/var`, `service_up:nginx`.
pub fn check_metric_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:./@-".contains(&b))
    {
        return Err(ValidationError::new(
            "metric",
            format!("`{name}` is not a metric name (letters, digits and _ : . / @ -)"),
        ));
    }
    Ok(())
}

/// Parse a report: `name value` lines. Lines that are not are skipped (counted), so one odd mount point
/// does not lose the rest; a body with nothing usable is refused.
pub fn parse_report(body: &str) -> Result<(Vec<(String, f64)>, usize), ValidationError> {
    if body.len() > MAX_REPORT_BYTES {
        return Err(ValidationError::new("body", "a report is at most 64 KiB"));
    }
    let mut samples = Vec::new();
    let mut skipped = 0;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let parsed = line.split_once(' ').and_then(|(name, value)| {
            let value: f64 = value.trim().parse().ok()?;
            (check_metric_name(name).is_ok() && value.is_finite())
                .then(|| (name.to_string(), value))
        });
        match parsed {
            Some(s) if samples.len() < MAX_REPORT_LINES => samples.push(s),
            _ => skipped += 1,
        }
    }
    if samples.is_empty() {
        return Err(ValidationError::new(
            "body",
            "no `name value` line in the report",
        ));
    }
    Ok((samples, skipped))
}

#[derive(Debug, Serialize)]
pub struct Ingested {
    pub server_id: i64,
    pub accepted: usize,
    pub skipped: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MetricSample {
    pub metric: String,
    #[serde(with = "brokeforge_core::time::Rfc3339")]
    pub at: i64,
    pub value: f64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct MetricsView {
    pub installed: bool,
    pub interval_seconds: Option<i64>,
    #[serde(default, with = "brokeforge_core::time::OptRfc3339")]
    pub last_report_at: Option<i64>,
    /// The newest report, every metric in it.
    pub samples: Vec<MetricSample>,
    /// The series asked for, oldest first.
    pub series: Vec<Series>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Series {
    pub metric: String,
    pub points: Vec<brokeforge_store::Sample>,
}

/// An alert rule as the user defines it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSpec {
    /// metric (default), service_down, not_reporting, job_failed, drift, cert_expiring
    pub kind: Option<String>,
    pub metric: Option<String>,
    pub above: Option<f64>,
    pub below: Option<f64>,
    /// How long the condition must hold: `90s`, `5m`, `1h` (or seconds).
    #[serde(rename = "for")]
    pub for_duration: Option<String>,
    /// A channel of the server's team, by name; none: every channel of the team.
    pub channel: Option<String>,
    /// cert_expiring: fire when a site's certificate expires within this many days (default 14).
    pub days: Option<i64>,
}

/// `90`, `90s`, `5m`, `2h`, `1d` as seconds, at most 7 days (how long a rule's condition must hold).
pub fn parse_duration_secs(field: &'static str, text: &str) -> Result<i64, ValidationError> {
    parse_duration_upto(field, text, 7 * 86400)
}

/// A duration as [`parse_duration_secs`] reads it, at most `max` seconds.
pub fn parse_duration_upto(
    field: &'static str,
    text: &str,
    max: i64,
) -> Result<i64, ValidationError> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = num.parse().map_err(|_| {
        ValidationError::new(
            field,
            format!("`{text}` is not a duration like 90s, 5m or 1h"),
        )
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(ValidationError::new(
                field,
                format!("`{text}` is not a duration like 90s, 5m or 1h"),
            ));
        }
    };
    let secs = n.saturating_mul(mult);
    if secs > max {
        return Err(ValidationError::new(
            field,
            format!("at most {} days", max / 86400),
        ));
    }
    Ok(secs)
}

impl Domain {
    /// Store a collector's report (`token`: its bearer token). `None`: no collector has that token.
    pub async fn ingest_metrics(&self, token: &str, body: &str) -> DomainResult<Option<Ingested>> {
        if !token.starts_with("bfm_") {
            return Ok(None);
        }
        let (samples, skipped) = parse_report(body)?;
        Ok(self
            .store
            .ingest_samples(token, &samples)
            .await?
            .map(|server_id| Ingested {
                server_id,
                accepted: samples.len(),
                skipped,
            }))
    }

    /// The newest report and, for `metrics`, their series since `since` (ms).
    pub async fn metrics(
        &self,
        server: &Server,
        since: i64,
        metrics: &[String],
    ) -> DomainResult<MetricsView> {
        for m in metrics {
            check_metric_name(m)?;
        }
        let agent = self.store.monitoring_agent(server.id).await?;
        let fresh = agent
            .as_ref()
            .map(|a| 600_000.max(2 * a.interval_secs * 1000))
            .unwrap_or(600_000);
        let samples = self
            .store
            .latest_samples(server.id, now_ms() - fresh)
            .await?
            .into_iter()
            .map(|(metric, s)| MetricSample {
                metric,
                at: s.at,
                value: s.value,
            })
            .collect();
        let mut series = Vec::new();
        // Raw samples while they are kept; older ranges from the rollups.
        let span = now_ms() - since;
        for m in metrics {
            let points = if span <= crate::maintenance::SAMPLES_MS {
                self.store.samples(server.id, m, since, i64::MAX).await?
            } else if span <= crate::maintenance::ROLLUPS_10M_MS {
                self.store
                    .rollups(server.id, m, 600, since, i64::MAX)
                    .await?
            } else {
                self.store
                    .rollups(server.id, m, 3600, since, i64::MAX)
                    .await?
            };
            series.push(Series {
                metric: m.clone(),
                points,
            });
        }
        Ok(MetricsView {
            installed: agent.is_some(),
            interval_seconds: agent.as_ref().map(|a| a.interval_secs),
            last_report_at: agent.and_then(|a| a.last_seen_at),
            samples,
            series,
        })
    }

    /// Where a channel may post: https (http only when the operator allows it for test networks), a
    pub async fn alerts(&self, server: &Server) -> DomainResult<Vec<AlertRule>> {
        Ok(self.store.alert_rules(server.id).await?)
    }

    pub async fn add_alert(&self, server: &Server, spec: &AlertSpec) -> DomainResult<AlertRule> {
        let new = self.alert_rule(server, spec).await?;
        Ok(self.store.create_alert_rule(&new).await?)
    }

    /// Change a rule's definition (raise a threshold, another channel); its state stays, so the next
    /// evaluation resolves it if it no longer holds.
    pub async fn update_alert(
        &self,
        server: &Server,
        id: i64,
        spec: &AlertSpec,
    ) -> DomainResult<AlertRule> {
        let new = self.alert_rule(server, spec).await?;
        self.store
            .update_alert_rule(id, &new)
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// A rule's definition from what the user gave, checked.
    async fn alert_rule(&self, server: &Server, spec: &AlertSpec) -> DomainResult<NewAlertRule> {
        let kind = spec.kind.as_deref().unwrap_or("metric");
        let for_secs = match &spec.for_duration {
            Some(d) => parse_duration_secs("for", d)?,
            None => 0,
        };
        let channel_id = match &spec.channel {
            Some(name) => Some(
                self.channel_named(server.team_id, name)
                    .await
                    .map_err(|_| {
                        ValidationError::new(
                            "channel",
                            format!("the server's team has no channel `{name}`"),
                        )
                    })?
                    .id,
            ),
            None => None,
        };
        let new = match kind {
            "metric" => {
                if spec.days.is_some() {
                    return Err(ValidationError::new(
                        "days",
                        "a metric rule has no days (that is for cert_expiring)",
                    )
                    .into());
                }
                let metric = spec.metric.as_deref().ok_or_else(|| {
                    ValidationError::new("metric", "give the metric, e.g. disk_used_percent")
                })?;
                check_metric_name(metric)?;
                let (comparison, threshold) = match (spec.above, spec.below) {
                    (Some(v), None) => ("above", v),
                    (None, Some(v)) => ("below", v),
                    _ => {
                        return Err(
                            ValidationError::new("above", "give either above or below").into()
                        );
                    }
                };
                if !threshold.is_finite() {
                    return Err(ValidationError::new("above", "give a number").into());
                }
                NewAlertRule {
                    server_id: server.id,
                    kind: kind.into(),
                    metric: Some(metric.into()),
                    comparison: Some(comparison.into()),
                    threshold: Some(threshold),
                    for_secs,
                    channel_id,
                }
            }
            "cert_expiring" => {
                if spec.metric.is_some() || spec.above.is_some() || spec.below.is_some() {
                    return Err(ValidationError::new(
                        "metric",
                        "a cert_expiring rule has no metric or threshold: give days",
                    )
                    .into());
                }
                let days = spec.days.unwrap_or(14);
                if !(1..=365).contains(&days) {
                    return Err(ValidationError::new("days", "give 1 to 365 days").into());
                }
                NewAlertRule {
                    server_id: server.id,
                    kind: kind.into(),
                    metric: None,
                    comparison: Some("below".into()),
                    threshold: Some(days as f64),
                    for_secs,
                    channel_id,
                }
            }
            "service_down" | "not_reporting" | "job_failed" | "drift" => {
                if spec.days.is_some() {
                    return Err(ValidationError::new(
                        "days",
                        format!("a {kind} rule has no days (that is for cert_expiring)"),
                    )
                    .into());
                }
                if spec.metric.is_some() || spec.above.is_some() || spec.below.is_some() {
                    return Err(ValidationError::new(
                        "metric",
                        format!("a {kind} rule has no metric or threshold"),
                    )
                    .into());
                }
                NewAlertRule {
                    server_id: server.id,
                    kind: kind.into(),
                    metric: None,
                    comparison: None,
                    threshold: None,
                    for_secs,
                    channel_id,
                }
            }
            other => {
                return Err(ValidationError::new(
                    "kind",
                    format!(
                        "`{other}` is not metric, service_down, not_reporting, job_failed, drift or cert_expiring"
                    ),
                )
                .into());
            }
        };
        Ok(new)
    }

    pub async fn remove_alert(&self, server: &Server, id: i64) -> DomainResult<()> {
        if !self.store.delete_alert_rule(server.id, id).await? {
            return Err(DomainError::NotFound);
        }
        Ok(())
    }

    /// One pass over every rule of every monitored server; how many notices went out.
    pub async fn evaluate_alerts(&self) -> DomainResult<usize> {
        let now = now_ms();
        let agents: HashMap<i64, brokeforge_store::MonitoringAgent> = self
            .store
            .monitoring_agents()
            .await?
            .into_iter()
            .map(|a| (a.server_id, a))
            .collect();
        let mut sent = 0;
        for rule in self.store.all_alert_rules().await? {
            let agent = agents.get(&rule.server_id);
            // The collector's samples count for three report intervals (at least SILENCE_MS).
            let fresh = agent
                .map(|a| SILENCE_MS.max(3 * a.interval_secs * 1000))
                .unwrap_or(SILENCE_MS);
            let last_seen = agent.map(|a| a.last_seen_at.unwrap_or(a.created_at));
            let collector = rules::Collector {
                now,
                fresh_ms: fresh,
                last_seen,
                quiet: last_seen.is_some_and(|t| now - t > fresh),
                installed: agent.is_some(),
            };
            let Some(rules::Reading {
                breach,
                value,
                detail,
            }) = self.read_rule(&rule, &collector).await?
            else {
                continue;
            };
            let Some((to, event)) = next_state(&rule, breach, now) else {
                continue;
            };
            let to = RuleTransition {
                last_value: value,
                detail: detail.or(to.detail),
                ..to
            };
            if !self
                .store
                .transition_alert_rule(rule.id, &rule, &to)
                .await?
            {
                continue; // another node got there first
            }
            if let Some(event) = event {
                sent += self.notify(&rule, event, to.detail.as_deref()).await?;
            }
        }
        Ok(sent)
    }

    /// Tell a rule's channel (or every channel of the server's team) about a change; deliveries run in the
    /// background with their retries.
    async fn notify(
        &self,
        rule: &AlertRule,
        event: &str,
        detail: Option<&str>,
    ) -> DomainResult<usize> {
        let server = self.store.server(rule.server_id).await?;
        let channels = match rule.channel_id {
            Some(id) => vec![self.store.channel(id).await?],
            None => self.store.channels(server.team_id).await?,
        };
        let what = describe_rule(rule);
        let summary = match event {
            "resolved" => format!("Resolved on {}: {what}", server.name),
            "reminder" => format!(
                "Still firing on {}: {what} ({})",
                server.name,
                detail.unwrap_or("")
            ),
            _ => format!(
                "Firing on {}: {what} ({})",
                server.name,
                detail.unwrap_or("")
            ),
        };
        let notice = Notice {
            event: event.into(),
            server_id: Some(server.id),
            server_name: Some(server.name.clone()),
            rule_id: Some(rule.id),
            summary,
            at: rfc3339(now_ms()),
        };
        for channel in &channels {
            let domain = self.clone();
            let (channel, notice) = (channel.clone(), notice.clone());
            tokio::spawn(async move {
                if let Err(e) = domain.deliver(&channel, &notice).await {
                    tracing::warn!(channel = channel.id, error = %e, "could not record a notification");
                }
            });
        }
        Ok(channels.len())
    }

    /// Run site checks and evaluate rules until `stop` is cancelled.
    pub async fn run_alerts(&self, stop: tokio_util::sync::CancellationToken) {
        // Certificates are read every 6 h each: looking for due ones every 30 s is plenty (each look reads
        // the rules, sites and readings), and a new rule still gets its first reading within a minute.
        const CERTS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
        let mut certs_next = std::time::Instant::now();
        loop {
            let certs = std::time::Instant::now() >= certs_next;
            if certs {
                certs_next = std::time::Instant::now() + CERTS_EVERY;
            }
            // Checks run beside the evaluation (a slow site must not hold the rules up); claims keep a
            // check from running twice.
            let checks = self.clone();
            tokio::spawn(async move {
                if let Err(e) = checks.run_due_checks().await {
                    tracing::warn!(error = %e, "site checks failed; trying again later");
                }
                if certs && let Err(e) = checks.probe_due_certificates().await {
                    tracing::warn!(error = %e, "certificate readings failed; trying again later");
                }
            });
            if let Err(e) = self.evaluate_alerts().await {
                tracing::warn!(error = %e, "alert evaluation failed; trying again later");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVALUATE_EVERY) => {}
            }
        }
    }
}

/// What a rule watches, in words.
pub fn describe_rule(rule: &AlertRule) -> String {
    match rule.kind.as_str() {
        "service_down" => "a service is down".into(),
        "not_reporting" => "the server is not reporting".into(),
        "job_failed" => "a job on the server failed".into(),
        "drift" => "the server drifted from what BrokeForge put on it".into(),
        "cert_expiring" => format!(
            "a site's certificate expires within {} days",
            rule.threshold.unwrap_or(14.0)
        ),
        _ => format!(
            "{} {} {}{}",
            rule.metric.as_deref().unwrap_or("?"),
            rule.comparison.as_deref().unwrap_or("above"),
            rule.threshold.unwrap_or(0.0),
            if rule.for_secs > 0 {
                format!(" for {} s", rule.for_secs)
            } else {
                String::new()
            }
        ),
    }
}

/// The rule's next state for a breach (or not) at `now`, and the notice to send; `None`: nothing changes.
fn next_state(
    rule: &AlertRule,
    breach: bool,
    now: i64,
) -> Option<(RuleTransition, Option<&'static str>)> {
    let keep = |state: &str, event: Option<&'static str>, pending: Option<i64>, notified| {
        Some((
            RuleTransition {
                state: state.into(),
                pending_since: pending,
                state_since: if state == rule.state {
                    rule.state_since
                } else {
                    now
                },
                last_value: None,
                detail: None,
                last_notified_at: notified,
            },
            event,
        ))
    };
    match (rule.state.as_str(), breach) {
        ("ok" | "resolved", true) if rule.for_secs == 0 => {
            keep("firing", Some("firing"), None, Some(now))
        }
        ("ok" | "resolved", true) => keep("pending", None, Some(now), rule.last_notified_at),
        ("pending", true) => {
            let since = rule.pending_since.unwrap_or(now);
            (now - since >= rule.for_secs * 1000)
                .then(|| keep("firing", Some("firing"), None, Some(now)))
                .flatten()
        }
        ("firing", true) => {
            let last = rule.last_notified_at.unwrap_or(rule.state_since);
            (now - last >= REMIND_AFTER_MS)
                .then(|| keep("firing", Some("reminder"), None, Some(now)))
                .flatten()
        }
        ("pending", false) => keep("ok", None, None, rule.last_notified_at),
        ("firing", false) => keep("resolved", Some("resolved"), None, Some(now)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        let (s, skipped) = parse_report(
            "cpu_percent 12.5\ndisk_used_percent:/ 40\nservice_up:nginx 1\nbad line here\nx nan\n$(id) 1\n",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(skipped, 3);
        assert_eq!(s[1], ("disk_used_percent:/".to_string(), 40.0));
        assert!(parse_report("").is_err());
        assert!(parse_report("only garbage").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("for", "90").unwrap(), 90);
        assert_eq!(parse_duration_secs("for", "5m").unwrap(), 300);
        assert_eq!(parse_duration_secs("for", "1h").unwrap(), 3600);
        for bad in ["", "5x", "m", "-1m", "30d"] {
            assert!(parse_duration_secs("for", bad).is_err(), "{bad}");
        }
    }

    fn rule(state: &str, for_secs: i64) -> AlertRule {
        AlertRule {
            id: 1,
            server_id: 1,
            kind: "metric".into(),
            metric: Some("load1".into()),
            comparison: Some("above".into()),
            threshold: Some(1.0),
            for_secs,
            channel_id: None,
            state: state.into(),
            pending_since: (state == "pending").then_some(1_000),
            state_since: 1_000,
            last_value: None,
            detail: None,
            last_notified_at: (state == "firing").then_some(1_000),
            created_at: 0,
        }
    }

    #[test]
    fn states() {
        // Fires at once without a duration, after it with one; resolves once; reminds after a quiet period.
        assert_eq!(
            next_state(&rule("ok", 0), true, 2_000).unwrap().1,
            Some("firing")
        );
        let (t, e) = next_state(&rule("ok", 60), true, 2_000).unwrap();
        assert_eq!((t.state.as_str(), e), ("pending", None));
        assert!(next_state(&rule("pending", 60), true, 30_000).is_none());
        assert_eq!(
            next_state(&rule("pending", 60), true, 61_000).unwrap().1,
            Some("firing")
        );
        assert_eq!(
            next_state(&rule("pending", 60), false, 5_000)
                .unwrap()
                .0
                .state,
            "ok"
        );
        assert!(next_state(&rule("firing", 0), true, 60_000).is_none());
        assert_eq!(
            next_state(&rule("firing", 0), true, 1_000 + REMIND_AFTER_MS)
                .unwrap()
                .1,
            Some("reminder")
        );
        assert_eq!(
            next_state(&rule("firing", 0), false, 2_000).unwrap().1,
            Some("resolved")
        );
        assert!(next_state(&rule("resolved", 0), false, 2_000).is_none());
        assert!(next_state(&rule("ok", 0), false, 2_000).is_none());
    }
}
