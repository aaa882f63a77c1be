//! The metrics collector: a script run by a systemd timer that pushes one report per interval to
//! BrokeForge's ingest endpoint with the server's own token (push, not poll: a panel with a thousand
//! servers holds no SSH session for metrics). The token is generated here, kept only as a hash, and reaches
//! the server as a 0600 file, never in a command line.

use brokeforge_core::{CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::base::package::{Gather, NoRequest, Package, PackageInstaller, PackageRemover};
use crate::base::registry::{Entry, Parameter, Registry};
use crate::base::{FileContents, FileStep, PackageError, Plan, StoreChange};
use crate::milestones;

pub const NAME: &str = "monitoring";
/// The ingest endpoint under BrokeForge's base URL.
pub const INGEST_PATH: &str = "/ingest/metrics";
const SCRIPT: &str = include_str!("collect.sh");
const SCRIPT_PATH: &str = "/usr/local/lib/brokeforge/monitoring-collect";
const CONF_PATH: &str = "/etc/brokeforge/monitoring.conf";
const HEADER_PATH: &str = "/etc/brokeforge/monitoring.header";
const UNIT: &str = "brokeforge-monitoring";
/// The shortest and longest report interval.
pub const INTERVALS: std::ops::RangeInclusive<i64> = 10..=3600;

pub fn register(r: &mut Registry) {
    let installer = r.installer(MonitoringInstaller);
    let remover = r.remover(MonitoringRemover);
    r.catalogue(
        Entry::new(
            NAME,
            ServiceType::Monitoring,
            "Metrics collector: CPU, load, memory, swap, disks, network and services, pushed to BrokeForge",
            installer,
        )
        .parameters(vec![
            Parameter::new(
                "interval_seconds",
                "integer",
                "seconds between reports (10 to 3600)",
                json!(60),
            ),
            Parameter::new(
                "report_to",
                "string",
                "BrokeForge's address as the server reaches it (default: BrokeForge's public URL)",
                json!(""),
            ),
        ])
        .remover(remover, Vec::new()),
    );
}

milestones! {
    pub enum MonitoringInstallerMilestones {
        Configure => ("configure", "Installing the collector"),
        Verify => ("verify", "Sending the first report"),
    }
}

milestones! {
    pub enum MonitoringRemoverMilestones {
        Remove => ("remove", "Removing the collector"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitoringOptions {
    pub interval_seconds: i64,
    pub report_to: String,
}

impl Default for MonitoringOptions {
    fn default() -> Self {
        MonitoringOptions {
            interval_seconds: 60,
            report_to: String::new(),
        }
    }
}

/// What the plan needs: the options and the server's new token.
pub struct MonitoringInput {
    interval_seconds: i64,
    ingest_url: String,
    token: Secret,
}

/// A base URL a shell may take as it is: http(s), a host, an optional port and path, nothing else.
pub fn check_base_url(url: &str) -> Result<String, ValidationError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            ValidationError::new(
                "report_to",
                "give BrokeForge's address as the server reaches it, e.g. https://panel.example.com \
                 (set BROKEFORGE_PUBLIC_URL and BrokeForge fills it in)",
            )
        })?;
    if rest.is_empty()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:/[]_".contains(&b))
    {
        return Err(ValidationError::new(
            "report_to",
            format!("`{url}` is not a plain http(s) address"),
        ));
    }
    Ok(url.to_string())
}

pub struct MonitoringInstaller;
pub struct MonitoringRemover;

impl Package for MonitoringInstaller {
    type Milestones = MonitoringInstallerMilestones;
    type Request = MonitoringOptions;
    type Input = MonitoringInput;
    const JOB: &'static str = "monitoring_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Monitoring
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        o: &MonitoringOptions,
    ) -> Result<MonitoringInput, PackageError> {
        if !INTERVALS.contains(&o.interval_seconds) {
            return Err(ValidationError::new("interval_seconds", "give 10 to 3600 seconds").into());
        }
        let base = check_base_url(&o.report_to)?;
        let token = if cx.dry_run {
            Secret::new("bfm_preview")
        } else {
            let random = crate::services::database::shared::generate_password()?;
            let token = Secret::new(format!("bfm_{}", random.expose()));
            // Registered before the plan runs: its last step is a report that must be accepted.
            cx.store
                .put_monitoring_agent(cx.server.id, token.expose(), o.interval_seconds)
                .await?;
            token
        };
        Ok(MonitoringInput {
            interval_seconds: o.interval_seconds,
            ingest_url: format!("{base}{INGEST_PATH}"),
            token,
        })
    }

    fn commands(&self, i: &MonitoringInput) -> Result<Plan, PackageError> {
        use MonitoringInstallerMilestones as M;
        let secs = i.interval_seconds;
        let service = "[Unit]\nDescription=BrokeForge metrics collector\n\n[Service]\nType=oneshot\n\
             ExecStart=/usr/local/lib/brokeforge/monitoring-collect\nNice=10\n"
            .to_string();
        let timer = format!(
            "[Unit]\nDescription=Report metrics to BrokeForge every {secs} s\n\n[Timer]\nOnActiveSec=1s\n\
             OnUnitActiveSec={secs}s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n"
        );
        Ok(self
            .plan()
            .track(M::Configure)
            .run("mkdir -p /usr/local/lib/brokeforge /etc/brokeforge /var/lib/brokeforge-monitoring")
            .put_file(FileStep::new(
                SCRIPT_PATH,
                FileContents::Text(SCRIPT.into()),
                0o755,
            ))
            .put_file(FileStep::new(
                CONF_PATH,
                FileContents::Text(format!(
                    "BF_INGEST_URL={}\n",
                    brokeforge_core::shell::shell_quote(&i.ingest_url)
                )),
                0o644,
            ))
            .put_file(FileStep::new(
                HEADER_PATH,
                FileContents::Secret(Secret::new(format!(
                    "Authorization: Bearer {}\nContent-Type: text/plain\n",
                    i.token.expose()
                ))),
                0o600,
            ))
            .put_file(FileStep::new(
                format!("/etc/systemd/system/{UNIT}.service"),
                FileContents::Text(service),
                0o644,
            ))
            .put_file(FileStep::new(
                format!("/etc/systemd/system/{UNIT}.timer"),
                FileContents::Text(timer),
                0o644,
            ))
            .track(M::Verify)
            // One report now, by hand: an address the server cannot reach fails the install here.
            .run(SCRIPT_PATH)
            .run(format!(
                "systemctl daemon-reload && systemctl enable {UNIT}.timer && systemctl restart {UNIT}.timer"
            ))
            .record(StoreChange::UpsertService {
                name: NAME.into(),
                service_type: ServiceType::Monitoring,
                configuration: json!({"interval_seconds": secs, "ingest_url": i.ingest_url}),
                status: ServiceStatus::Active,
            }))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: MonitoringInput,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let defaults = default_rules(cx).await?;
        Ok(json!({"interval_seconds": i.interval_seconds, "ingest_url": i.ingest_url, "default_rules": defaults}))
    }
}
impl PackageInstaller for MonitoringInstaller {}

/// The rules a server starts with (once: a reinstall keeps the user's): disk and memory above 90 % for 5
/// minutes, a service down, no report, a site's certificate expiring within 14 days. Without a channel they notify every channel of the server's team.
async fn default_rules(cx: &Gather<'_>) -> Result<usize, PackageError> {
    use brokeforge_store::NewAlertRule;
    if !cx.store.alert_rules(cx.server.id).await?.is_empty() {
        return Ok(0);
    }
    let rule = |kind: &str, metric: Option<&str>, threshold: Option<f64>, for_secs| NewAlertRule {
        server_id: cx.server.id,
        kind: kind.into(),
        metric: metric.map(Into::into),
        comparison: threshold.map(|_| "above".into()),
        threshold,
        for_secs,
        channel_id: None,
    };
    let rules = [
        rule("metric", Some("disk_used_percent"), Some(90.0), 300),
        rule("metric", Some("memory_used_percent"), Some(90.0), 300),
        rule("service_down", None, None, 0),
        rule("not_reporting", None, None, 0),
        NewAlertRule {
            comparison: Some("below".into()),
            ..rule("cert_expiring", None, Some(14.0), 0)
        },
    ];
    for r in &rules {
        cx.store.create_alert_rule(r).await?;
    }
    Ok(rules.len())
}

impl Package for MonitoringRemover {
    type Milestones = MonitoringRemoverMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "monitoring_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Monitoring
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, _cx: &Gather<'_>, _request: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        Ok(self
            .plan()
            .track(MonitoringRemoverMilestones::Remove)
            .run(format!(
                "systemctl disable --now {UNIT}.timer 2>/dev/null; systemctl stop {UNIT}.service 2>/dev/null; \
                 rm -f /etc/systemd/system/{UNIT}.timer /etc/systemd/system/{UNIT}.service {SCRIPT_PATH} {CONF_PATH} \
                 {HEADER_PATH} && rm -rf /var/lib/brokeforge-monitoring && systemctl daemon-reload"
            ))
            .record(StoreChange::DeleteService { name: NAME.into() }))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        _input: (),
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        // The token stops working with the collector gone.
        cx.store.delete_monitoring_agent(cx.server.id).await?;
        Ok(json!({"removed": NAME}))
    }
}
impl PackageRemover for MonitoringRemover {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let input = MonitoringInput {
            interval_seconds: 30,
            ingest_url: "https://panel.example.com/ingest/metrics".into(),
            token: Secret::new("bfm_secret_token"),
        };
        let install = MonitoringInstaller.commands(&input).unwrap().to_string();
        assert!(!install.contains("bfm_secret_token"), "{install}");
        assert!(install.contains("OnUnitActiveSec=30s"), "{install}");
        insta::assert_snapshot!("monitoring_install", install);
        insta::assert_snapshot!(
            "monitoring_remove",
            MonitoringRemover.commands(&()).unwrap().to_string()
        );
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            check_base_url("https://panel.example.com/").unwrap(),
            "https://panel.example.com"
        );
        assert!(check_base_url("http://10.0.0.1:8080").is_ok());
        for bad in ["", "panel.example.com", "https://a b", "https://x;reboot", "ftp://x", "https://$(id)"] {
            assert!(check_base_url(bad).is_err(), "{bad}");
        }
    }
}
