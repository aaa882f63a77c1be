//! What the backup packages share: the typed storage settings, what a plan backs up and keeps, and the way a
//! job reaches a plan's restic repository (the helper script, its non-secret settings as variables and its
//! secrets on stdin).

use brokeforge_core::{Secret, ValidationError, shell_quote};
use brokeforge_store::{BackupPlan, BackupStorage, SeenSnapshot};
use serde::{Deserialize, Serialize};

pub use super::source::Source;
pub use super::storage::StorageConfig;

use crate::base::executor::RunReport;
use crate::base::package::Gather;
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep};
use crate::services::database::engine::Engine;
use crate::services::server::provision::APT;

/// Where the helper lives on the server (root only).
pub const HELPER: &str = "/usr/local/lib/brokeforge/backup.sh";
/// The helper itself (also run by BrokeForge on its own machine for its scheduled self-backup).
pub const HELPER_TEXT: &str = include_str!("backup.sh");

/// How many snapshots a plan keeps (restic's `forget` policy). The newest is always kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 7,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        }
    }
}

impl Retention {
    pub fn validated(self) -> Result<Retention, ValidationError> {
        if self.keep_last == 0 {
            return Err(ValidationError::new(
                "keep_last",
                "keep at least the last snapshot (keep_last >= 1): retention never deletes the only good one",
            ));
        }
        if [
            self.keep_last,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .any(|n| *n > 1000)
        {
            return Err(ValidationError::new(
                "keep_last",
                "keep at most 1000 of each",
            ));
        }
        Ok(self)
    }

    pub fn of(plan: &BackupPlan) -> Retention {
        serde_json::from_value(plan.retention.clone()).unwrap_or_default()
    }

    fn args(&self) -> String {
        let mut a = format!("--keep-last {}", self.keep_last);
        for (flag, n) in [
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
        ] {
            if n > 0 {
                a.push_str(&format!(" {flag} {n}"));
            }
        }
        a
    }
}

/// A plan's repository as a job reaches it: its location, its settings for the helper, and its secrets.
#[derive(Debug, Clone)]
pub struct Repository {
    pub plan: BackupPlan,
    pub storage: BackupStorage,
    pub config: StorageConfig,
    pub source: Source,
    pub password: Secret,
    pub storage_secret: Option<Secret>,
    /// The source's own secret (Redis's password), third on the helper's stdin.
    pub source_secret: Option<Secret>,
}

impl Repository {
    /// Read plan `plan_id` of the job's server with its storage and secrets.
    pub async fn open(cx: &Gather<'_>, plan_id: i64) -> Result<Repository, PackageError> {
        let plan = cx.store.backup_plan(plan_id).await?;
        if plan.server_id != cx.server.id {
            return Err(ValidationError::new("plan", "the plan belongs to another server").into());
        }
        let storage = cx.store.backup_storage(plan.storage_id).await?;
        let config = StorageConfig::of(&storage)?;
        if let StorageConfig::Local { server_id, .. } = config
            && server_id != cx.server.id
        {
            return Err(ValidationError::new(
                "storage",
                format!(
                    "the storage {} is a directory on another server",
                    storage.name
                ),
            )
            .into());
        }
        let source = Source::of(&plan)?;
        match &source {
            Source::Database { .. } | Source::Redis {} => {
                let engine = source.engine().map(|e| e.name()).unwrap_or_default();
                if !cx
                    .store
                    .services(cx.server.id)
                    .await?
                    .iter()
                    .any(|s| s.service_name == engine)
                {
                    return Err(ValidationError::new(
                        "source",
                        format!("{engine} is not installed on this server"),
                    )
                    .into());
                }
            }
            Source::Site { domain, .. } => {
                if !cx
                    .store
                    .sites(cx.server.id)
                    .await?
                    .iter()
                    .any(|s| &s.domain == domain)
                {
                    return Err(ValidationError::new(
                        "source",
                        format!("the server has no site {domain}"),
                    )
                    .into());
                }
            }
        }
        let source_secret = match source {
            Source::Redis {} => {
                cx.store
                    .service_secret(cx.server.id, &Engine::Redis.secret_name())
                    .await?
            }
            _ => None,
        };
        Ok(Repository {
            source_secret,
            password: cx.store.backup_plan_password(plan.id).await?,
            storage_secret: cx.store.backup_storage_secret(storage.id).await?,
            plan,
            storage,
            config,
            source,
        })
    }

    /// restic's repository location: one per plan, under the storage's path.
    pub fn url(&self) -> String {
        format!(
            "{}/brokeforge-{}-{}",
            self.config.root(),
            self.plan.server_id,
            self.plan.name
        )
    }

    /// The helper's settings as `NAME=value` words (quoted; nothing secret).
    fn variables(&self) -> String {
        self.config.variables(&self.url())
    }

    fn stdin(&self) -> Secret {
        let two = self
            .config
            .stdin(self.password.expose(), self.storage_secret.as_ref());
        let third = self
            .source_secret
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or("");
        Secret::new(format!("{}{third}\n", two.expose()))
    }

    /// Every secret a step of this repository carries (to redact).
    pub fn secrets(&self) -> Vec<Secret> {
        [
            Some(&self.password),
            self.storage_secret.as_ref(),
            self.source_secret.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Add the plan's secrets to `plan` (so they are redacted everywhere) and put the helper and restic on
    /// the server.
    pub fn prepare(&self, mut plan: Plan) -> Plan {
        plan = plan.secret(self.password.clone());
        for s in [&self.storage_secret, &self.source_secret]
            .into_iter()
            .flatten()
        {
            plan = plan.secret(s.clone());
        }
        prepare_helper(plan)
    }

    /// A step running the helper's `action` with `args` (each quoted).
    pub fn step_owned(&self, (action, args): (&str, Vec<String>), timeout_secs: u64) -> RunStep {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.step(action, &args, timeout_secs)
    }

    /// A step running the helper's `action` with `args` (each quoted).
    pub fn step(&self, action: &str, args: &[&str], timeout_secs: u64) -> RunStep {
        let args: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        RunStep {
            command: format!(
                "{} bash {HELPER} {action} {}",
                self.variables(),
                args.join(" ")
            )
            .trim_end()
            .to_string(),
            timeout: std::time::Duration::from_secs(timeout_secs),
            stdin: Some(self.stdin()),
            credential: None,
            private_output: false,
        }
    }

    /// Retention after a good backup.
    pub fn forget_step(&self) -> RunStep {
        let retention = Retention::of(&self.plan);
        let mut s = self.step("forget", &[], 1800);
        s.command = format!("{} {}", s.command, retention.args());
        s
    }

    /// Pin the SFTP server's host key the run learned (first use).
    pub async fn pin_host_key(
        &self,
        cx: &Gather<'_>,
        report: &RunReport,
    ) -> Result<(), PackageError> {
        pin_host_key(cx, &self.storage, &self.config, report).await
    }
}

/// restic and the helper on the server.
pub fn prepare_helper(plan: Plan) -> Plan {
    plan.run_with_timeout(
        format!("command -v restic >/dev/null || {{ {APT} update -qq && {APT} install -y -qq --no-install-recommends restic; }}"),
        std::time::Duration::from_secs(900),
    )
    .put_file(FileStep::new(
        HELPER,
        FileContents::Text(HELPER_TEXT.to_string()),
        0o700,
    ))
}

/// Pin the SFTP server's host key a run learned (first use) in the storage's settings.
pub async fn pin_host_key(
    cx: &Gather<'_>,
    storage: &BackupStorage,
    config: &StorageConfig,
    report: &RunReport,
) -> Result<(), PackageError> {
    {
        let StorageConfig::Sftp {
            known_hosts: None, ..
        } = config
        else {
            return Ok(());
        };
        let learned = report.outputs.iter().find_map(|o| {
            o.stdout_text()
                .lines()
                .find_map(|l| l.strip_prefix("known-host ").map(str::to_string))
        });
        if let Some(line) = learned {
            let mut config = config.clone();
            if let StorageConfig::Sftp { known_hosts, .. } = &mut config {
                *known_hosts = Some(line);
            }
            cx.store
                .set_backup_storage_configuration(
                    storage.id,
                    &serde_json::to_value(&config)
                        .map_err(|e| ValidationError::new("storage", e.to_string()))?,
                )
                .await?;
        }
        Ok(())
    }
}

/// restic's `snapshots --json` output, as rows to keep.
pub fn parse_snapshots(json: &str) -> Result<Vec<SeenSnapshot>, PackageError> {
    #[derive(Deserialize)]
    struct Snap {
        id: String,
        time: String,
    }
    // The JSON is the line that starts with `[` (the helper may report a learned host key before it).
    let json = json
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .unwrap_or("");
    let snaps: Vec<Snap> = serde_json::from_str(json.trim()).map_err(|e| {
        ValidationError::new(
            "snapshots",
            format!("restic listed snapshots BrokeForge cannot read: {e}"),
        )
    })?;
    snaps
        .into_iter()
        .map(|s| {
            Ok(SeenSnapshot {
                taken_at: rfc3339_ms(&s.time).ok_or_else(|| {
                    ValidationError::new("snapshots", format!("`{}` is not a time", s.time))
                })?,
                snapshot_id: s.id,
                job_id: None,
                size_bytes: None,
                duration_ms: None,
            })
        })
        .collect()
}

/// restic's backup summary line.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub snapshot_id: String,
    pub total_bytes_processed: i64,
    pub total_duration: f64,
}

pub fn parse_summary(report: &RunReport) -> Option<Summary> {
    report.outputs.iter().find_map(|o| {
        o.stdout_text()
            .lines()
            .filter(|l| l.contains("\"message_type\":\"summary\""))
            .find_map(|l| serde_json::from_str(l).ok())
    })
}

/// Unix milliseconds of an RFC 3339 time (restic writes the server's local offset and nanoseconds).
pub fn rfc3339_ms(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, mo, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let zone_at = rest.find(['Z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let mut c = clock.split(':');
    let (h, mi) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = c.next()?.parse().ok()?;
    let offset_min = if zone == "Z" {
        0
    } else {
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (oh, om) = zone[1..].split_once(':')?;
        sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?)
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 - offset_min * 60;
    Some(secs * 1000 + (sec * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_times() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2026-11-27T19:29:36.134992Z"),
            Some(1_795_807_776_135)
        );
        assert_eq!(
            rfc3339_ms("2026-11-27T20:29:36.134992+01:00"),
            Some(1_795_807_776_135)
        );
        assert_eq!(
            rfc3339_ms("2000-02-29T00:00:00-00:30"),
            Some(951_784_200_000)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn snapshot_lists_are_read_after_a_learned_host_key() {
        let out = "known-host 10.0.0.2 ssh-ed25519 AAAA\n[{\"time\":\"2026-11-27T19:29:36.134992Z\",\"id\":\"abc\"}]\n";
        let s = parse_snapshots(out).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].snapshot_id, "abc");
        assert!(parse_snapshots("Fatal: nothing").is_err());
    }

    #[test]
    fn sources_and_retention_are_checked() {
        assert_eq!(
            Source::database("mariadb:shop").unwrap(),
            Source::Database {
                engine: "mariadb".into(),
                schema: "shop".into()
            }
        );
        for bad in [
            "shop",
            "redis:x",
            "mariadb:a;b",
            "postgresql:",
            "site:a b",
            "site:",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        let site = Source::parse("site:example.com").unwrap();
        assert_eq!(site.path().unwrap(), "/home/brokeforge/example.com/shared");
        assert_eq!(
            site.restore_args("abcdef12", Some("before")).1,
            [
                "abcdef12",
                "/home/brokeforge/example.com/shared",
                "/home/brokeforge/example.com/restored-before"
            ]
        );
        assert!(
            Retention {
                keep_last: 0,
                ..Default::default()
            }
            .validated()
            .is_err()
        );
        let r = Retention {
            keep_last: 3,
            keep_daily: 7,
            ..Default::default()
        };
        assert_eq!(r.args(), "--keep-last 3 --keep-daily 7");
    }

    #[test]
    fn storages_are_checked() {
        let s3 = |endpoint: &str, bucket: &str| StorageConfig::S3 {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: None,
            path_style: true,
            access_key_id: "AKIA1".into(),
        };
        assert!(s3("https://s3.example.com", "backups").validated().is_ok());
        assert!(s3("http://10.0.0.1:9000/", "b-1.x").validated().is_ok());
        for (e, b) in [
            ("s3.example.com", "backups"),
            ("https://a b", "backups"),
            ("https://x.example:99999", "backups"),
            ("https://x.example", "Bad_Bucket"),
            ("https://x.example", "b;rm"),
        ] {
            assert!(s3(e, b).validated().is_err(), "{e} {b}");
        }
        let local = |p: &str| StorageConfig::Local {
            server_id: 1,
            path: p.into(),
        };
        assert!(local("/var/backups/").validated().is_ok());
        assert!(local("relative").validated().is_err());
        assert!(local("/a/../etc").validated().is_err());
    }
}
