//! What the backup packages share: the typed storage settings, what a plan backs up and keeps, and the way a
//! job reaches a plan's restic repository (the helper script, its non-secret settings as variables and its
//! secrets on stdin).

use brokeforge_core::{Secret, ValidationError, shell_quote, validate};
use brokeforge_store::{BackupPlan, BackupStorage, SeenSnapshot};
use serde::{Deserialize, Serialize};

use crate::base::executor::RunReport;
use crate::base::package::Gather;
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep};
use crate::services::database::engine::Engine;
use crate::services::database::sql::{parse_engine, validate_name};
use crate::services::server::provision::APT;

/// Where the helper lives on the server (root only).
pub const HELPER: &str = "/usr/local/lib/brokeforge/backup.sh";
const HELPER_TEXT: &str = include_str!("backup.sh");

/// A storage's settings, by kind. Its secret (S3 secret key, SFTP private key) is sealed apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A directory on one server; only that server's plans may use it.
    Local { server_id: i64, path: String },
    S3 {
        /// `https://host[:port]` (or `http://` for a test network).
        endpoint: String,
        bucket: String,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        path_style: bool,
        access_key_id: String,
    },
    Sftp {
        host: String,
        port: u16,
        user: String,
        path: String,
        /// The key pair BrokeForge generated: this half goes into the SFTP user's authorized_keys.
        public_key: String,
        /// The SFTP server's host key as a known_hosts line, pinned on first use.
        #[serde(default)]
        known_hosts: Option<String>,
        /// The host key fingerprint the user expects (checked on first use).
        #[serde(default)]
        fingerprint: Option<String>,
    },
}

impl StorageConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Local { .. } => "local",
            StorageConfig::S3 { .. } => "s3",
            StorageConfig::Sftp { .. } => "sftp",
        }
    }

    pub fn of(storage: &BackupStorage) -> Result<StorageConfig, PackageError> {
        serde_json::from_value(storage.configuration.clone()).map_err(|e| {
            ValidationError::new(
                "storage",
                format!(
                    "backup storage {} has unreadable settings: {e}",
                    storage.name
                ),
            )
            .into()
        })
    }

    /// Checked settings (what `storage add` stores).
    pub fn validated(self) -> Result<StorageConfig, ValidationError> {
        let path = |p: &str| {
            let p = validate::absolute_path("path", p.trim())?;
            Ok::<_, ValidationError>(p.trim_end_matches('/').to_string())
        };
        Ok(match self {
            StorageConfig::Local { server_id, path: p } => StorageConfig::Local {
                server_id,
                path: path(&p)?,
            },
            StorageConfig::S3 {
                endpoint,
                bucket,
                region,
                path_style,
                access_key_id,
            } => {
                let endpoint = endpoint.trim().trim_end_matches('/').to_string();
                let rest = endpoint
                    .strip_prefix("https://")
                    .or_else(|| endpoint.strip_prefix("http://"))
                    .ok_or_else(|| {
                        ValidationError::new(
                            "endpoint",
                            "give the endpoint as https://host[:port] (http:// only on a test network)",
                        )
                    })?;
                let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
                validate::host(host).map_err(|_| {
                    ValidationError::new("endpoint", format!("`{host}` is not a host"))
                })?;
                if !port.is_empty() && port.parse::<u16>().is_err() {
                    return Err(ValidationError::new(
                        "endpoint",
                        format!("`{port}` is not a port"),
                    ));
                }
                let bucket_ok = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)
                    });
                if !bucket_ok {
                    return Err(ValidationError::new(
                        "bucket",
                        "a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens",
                    ));
                }
                let region = region
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty());
                if let Some(r) = &region
                    && !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(ValidationError::new(
                        "region",
                        format!("`{r}` is not a region"),
                    ));
                }
                let key_ok = !access_key_id.is_empty()
                    && access_key_id.len() <= 128
                    && access_key_id.bytes().all(|b| b.is_ascii_graphic());
                if !key_ok {
                    return Err(ValidationError::new(
                        "access_key_id",
                        "give the access key id (printable characters, no spaces)",
                    ));
                }
                StorageConfig::S3 {
                    endpoint,
                    bucket,
                    region,
                    path_style,
                    access_key_id,
                }
            }
            StorageConfig::Sftp {
                host,
                port,
                user,
                path: p,
                public_key,
                known_hosts,
                fingerprint,
            } => {
                let host = validate::host(&host)
                    .map_err(|_| ValidationError::new("host", format!("`{host}` is not a host")))?;
                let user_ok = !user.is_empty()
                    && user.len() <= 32
                    && user
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    && !user.starts_with('-');
                if !user_ok {
                    return Err(ValidationError::new(
                        "user",
                        format!("`{user}` is not a user name"),
                    ));
                }
                if port == 0 {
                    return Err(ValidationError::new("port", "give a port from 1 to 65535"));
                }
                let fingerprint = fingerprint
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty());
                if let Some(f) = &fingerprint
                    && !(f.starts_with("SHA256:")
                        && f[7..]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)))
                {
                    return Err(ValidationError::new(
                        "fingerprint",
                        "give the host key fingerprint as SHA256:... (ssh-keygen -lf)",
                    ));
                }
                StorageConfig::Sftp {
                    host,
                    port,
                    user,
                    path: path(&p)?,
                    public_key,
                    known_hosts,
                    fingerprint,
                }
            }
        })
    }
}

/// What a plan backs up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// One schema of a SQL engine on the plan's server.
    Database { engine: String, schema: String },
}

impl Source {
    /// Parse `ENGINE:SCHEMA` (the CLI's `--database`).
    pub fn database(spec: &str) -> Result<Source, ValidationError> {
        let (engine, schema) = spec.split_once(':').ok_or_else(|| {
            ValidationError::new(
                "database",
                "give the database as ENGINE:SCHEMA, e.g. mariadb:shop",
            )
        })?;
        Source::Database {
            engine: engine.trim().to_string(),
            schema: schema.trim().to_string(),
        }
        .validated()
    }

    pub fn validated(self) -> Result<Source, ValidationError> {
        match self {
            Source::Database { engine, schema } => {
                let e = parse_engine(&engine)?;
                Ok(Source::Database {
                    engine: e.name().to_string(),
                    schema: validate_name("schema", &schema)?,
                })
            }
        }
    }

    pub fn of(plan: &BackupPlan) -> Result<Source, PackageError> {
        serde_json::from_value(plan.source.clone()).map_err(|e| {
            ValidationError::new(
                "source",
                format!("plan {} has an unreadable source: {e}", plan.name),
            )
            .into()
        })
    }

    pub fn engine(&self) -> Engine {
        match self {
            Source::Database { engine, .. } => parse_engine(engine).unwrap_or(Engine::MariaDb),
        }
    }

    pub fn schema(&self) -> &str {
        match self {
            Source::Database { schema, .. } => schema,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Database { engine, schema } => format!("{engine} schema {schema}"),
        }
    }
}

/// How many snapshots a plan keeps (restic's `forget` policy). The newest is always kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        let engine = source.engine();
        if !cx
            .store
            .services(cx.server.id)
            .await?
            .iter()
            .any(|s| s.service_name == engine.name())
        {
            return Err(ValidationError::new(
                "source",
                format!("{} is not installed on this server", engine.name()),
            )
            .into());
        }
        Ok(Repository {
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
        let leaf = format!("brokeforge-{}-{}", self.plan.server_id, self.plan.name);
        match &self.config {
            StorageConfig::Local { path, .. } => format!("{path}/{leaf}"),
            StorageConfig::S3 {
                endpoint, bucket, ..
            } => format!("s3:{endpoint}/{bucket}/{leaf}"),
            StorageConfig::Sftp {
                host, user, path, ..
            } => format!("sftp:{user}@{host}:{path}/{leaf}"),
        }
    }

    /// The helper's settings as `NAME=value` words (quoted; nothing secret).
    fn variables(&self) -> String {
        let mut vars = vec![
            ("BF_REPO", self.url()),
            ("BF_KIND", self.config.kind().to_string()),
        ];
        match &self.config {
            StorageConfig::Local { .. } => {}
            StorageConfig::S3 {
                region,
                path_style,
                access_key_id,
                ..
            } => {
                vars.push(("BF_S3_KEY_ID", access_key_id.clone()));
                vars.push(("BF_S3_REGION", region.clone().unwrap_or_default()));
                vars.push((
                    "BF_S3_PATH_STYLE",
                    if *path_style { "1" } else { "0" }.into(),
                ));
            }
            StorageConfig::Sftp {
                port,
                known_hosts,
                fingerprint,
                ..
            } => {
                vars.push(("BF_SFTP_PORT", port.to_string()));
                vars.push((
                    "BF_SFTP_KNOWN_HOSTS",
                    known_hosts.clone().unwrap_or_default(),
                ));
                vars.push((
                    "BF_SFTP_FINGERPRINT",
                    fingerprint.clone().unwrap_or_default(),
                ));
            }
        }
        vars.iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The helper's stdin: the repository password, then the storage's secret (an SFTP key in base64, one
    /// line).
    fn stdin(&self) -> Secret {
        use base64::Engine as _;
        let storage = match (&self.config, &self.storage_secret) {
            (StorageConfig::Sftp { .. }, Some(key)) => {
                base64::engine::general_purpose::STANDARD.encode(key.expose())
            }
            (_, Some(s)) => s.expose().to_string(),
            (_, None) => String::new(),
        };
        Secret::new(format!("{}\n{storage}\n", self.password.expose()))
    }

    /// Add the plan's secrets to `plan` (so they are redacted everywhere) and put the helper and restic on
    /// the server.
    pub fn prepare(&self, mut plan: Plan) -> Plan {
        plan = plan.secret(self.password.clone());
        if let Some(s) = &self.storage_secret {
            plan = plan.secret(s.clone());
        }
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
        let StorageConfig::Sftp {
            known_hosts: None, ..
        } = &self.config
        else {
            return Ok(());
        };
        let learned = report.outputs.iter().find_map(|o| {
            o.stdout_text()
                .lines()
                .find_map(|l| l.strip_prefix("known-host ").map(str::to_string))
        });
        if let Some(line) = learned {
            let mut config = self.config.clone();
            if let StorageConfig::Sftp { known_hosts, .. } = &mut config {
                *known_hosts = Some(line);
            }
            cx.store
                .set_backup_storage_configuration(
                    self.storage.id,
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
        for bad in ["shop", "redis:x", "mariadb:a;b", "postgresql:"] {
            assert!(Source::database(bad).is_err(), "{bad}");
        }
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
