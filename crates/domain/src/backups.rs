//! Backups: storages a user defines once, plans per server (what, where, when, how long), runs, snapshots,
//! restores, restore drills, the recovery kit, and the schedule that queues due runs.

use std::time::Duration;

use brokeforge_core::time::now_ms;
use brokeforge_core::{Secret, ValidationError};
use brokeforge_packages::services::backup::check::check_storage;
use brokeforge_packages::services::backup::repository::{
    Repository, Retention, Source, StorageConfig,
};
use brokeforge_packages::services::backup::restore::{RestoreRequest, restore_backup, snapshot_id};
use brokeforge_packages::services::backup::run::run_backup;
use brokeforge_packages::services::backup::verify::verify_backup;
use brokeforge_packages::services::database::shared::generate_password;
use brokeforge_store::{
    BackupPlan, BackupSnapshot, BackupStorage, Job, NewBackupPlan, NewBackupStorage, Server, User,
};
use serde::{Deserialize, Serialize};

use crate::{Domain, DomainError, DomainResult};

/// How often the schedule looks for due runs.
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(30);

/// A storage as a user asks for it (the CLI's `backup storage add`, the API's body).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct StorageRequest {
    pub name: String,
    pub kind: String,
    // s3
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    #[serde(default)]
    pub access_key_id: String,
    /// The S3 secret access key (sealed; never shown again).
    #[serde(default)]
    pub secret_access_key: Option<String>,
    // sftp
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub host_key_fingerprint: Option<String>,
    // local: a directory on this server (by id)
    #[serde(default)]
    pub server_id: Option<i64>,
    // local and sftp
    #[serde(default)]
    pub path: String,
}

/// A plan as a user asks for it.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct PlanRequest {
    pub name: String,
    /// `ENGINE:SCHEMA`, e.g. `mariadb:shop` (or `site:DOMAIN`).
    #[serde(default)]
    pub database: String,
    /// A site's domain: its `shared/` files and `.env`.
    #[serde(default)]
    pub site: String,
    /// The storage's name.
    pub storage: String,
    /// Cron (five fields or @daily...), in UTC; none: manual only.
    #[serde(default)]
    pub schedule: Option<String>,
    /// When to run a restore drill (cron); none: on demand only.
    #[serde(default)]
    pub verify_schedule: Option<String>,
    #[serde(default)]
    pub retention: Option<Retention>,
}

/// A plan with what its page shows.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanView {
    #[serde(flatten)]
    pub plan: BackupPlan,
    pub storage: String,
    pub snapshots: usize,
    pub newest_snapshot: Option<BackupSnapshot>,
    pub repository: String,
}

/// A short object name (storages, plans, channels): lowercase letters, digits, - and _.
pub(crate) fn name(field: &'static str, value: &str) -> Result<String, ValidationError> {
    let v = value.trim();
    let ok = (1..=64).contains(&v.len())
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(v.to_string())
    } else {
        Err(ValidationError::new(
            field,
            format!("`{v}` is not a name: 1 to 64 lowercase letters, digits, - and _"),
        ))
    }
}

/// The next time `cron` fires after `after_ms` (UTC).
pub fn next_run(cron: &str, after_ms: i64) -> Result<i64, ValidationError> {
    use chrono::TimeZone;
    let bad = |e: String| {
        ValidationError::new(
            "schedule",
            format!(
                "`{cron}` is not a schedule ({e}): five cron fields like `0 3 * * *`, or @hourly, @daily, @weekly, @monthly"
            ),
        )
    };
    if cron.chars().any(|c| c.is_control()) || cron.len() > 100 {
        return Err(bad("control characters or too long".into()));
    }
    let parsed = croner::Cron::new(cron.trim())
        .parse()
        .map_err(|e| bad(e.to_string()))?;
    let start = chrono::Utc
        .timestamp_millis_opt(after_ms)
        .single()
        .ok_or_else(|| bad("time out of range".into()))?;
    parsed
        .find_next_occurrence(&start, false)
        .map(|t| t.timestamp_millis())
        .map_err(|e| bad(e.to_string()))
}

fn parse_schedule(field: Option<&str>) -> Result<(Option<String>, Option<i64>), ValidationError> {
    match field.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok((None, None)),
        Some(s) => Ok((Some(s.to_string()), Some(next_run(s, now_ms())?))),
    }
}

impl Domain {
    /// Define a storage. An SFTP storage gets a key pair: the answer's public key goes into the SFTP user's
    /// `authorized_keys`.
    pub async fn add_backup_storage(
        &self,
        user: &User,
        req: &StorageRequest,
    ) -> DomainResult<BackupStorage> {
        let storage_name = name("name", &req.name)?;
        let (config, secret) = match req.kind.as_str() {
            "local" => {
                let server_id = req.server_id.ok_or_else(|| {
                    ValidationError::new(
                        "server",
                        "a local storage is a directory on one of your servers: name it",
                    )
                })?;
                self.owned_server(user, server_id, crate::policy::Action::ServerManage)
                    .await?;
                (
                    StorageConfig::Local {
                        server_id,
                        path: req.path.clone(),
                    },
                    None,
                )
            }
            "s3" => {
                let secret = req
                    .secret_access_key
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && !s.contains(['\n', '\r']))
                    .ok_or_else(|| {
                        ValidationError::new("secret_access_key", "give the secret access key")
                    })?;
                (
                    StorageConfig::S3 {
                        endpoint: req.endpoint.clone(),
                        bucket: req.bucket.clone(),
                        region: req.region.clone(),
                        path_style: req.path_style,
                        access_key_id: req.access_key_id.clone(),
                    },
                    Some(Secret::new(secret)),
                )
            }
            "sftp" => {
                let pair = brokeforge_ssh::keys::generate_ed25519(&format!(
                    "brokeforge-backup-{storage_name}"
                ))
                .map_err(|e| DomainError::Internal(e.to_string()))?;
                (
                    StorageConfig::Sftp {
                        host: req.host.clone(),
                        port: req.port.unwrap_or(22),
                        user: req.user.clone(),
                        path: req.path.clone(),
                        public_key: pair.public_openssh.clone(),
                        known_hosts: None,
                        fingerprint: req.host_key_fingerprint.clone(),
                    },
                    Some(Secret::new(pair.private_openssh.expose())),
                )
            }
            other => {
                return Err(ValidationError::new(
                    "kind",
                    format!("`{other}` is not a storage kind: s3, sftp or local"),
                )
                .into());
            }
        };
        let config = config.validated()?;
        Ok(self
            .store
            .create_backup_storage(&NewBackupStorage {
                user_id: user.id,
                name: storage_name,
                kind: config.kind().to_string(),
                configuration: serde_json::to_value(&config)
                    .map_err(|e| DomainError::Internal(e.to_string()))?,
                secret,
            })
            .await?)
    }

    pub async fn backup_storages(&self, user: &User) -> DomainResult<Vec<BackupStorage>> {
        Ok(self.store.backup_storages(user.id).await?)
    }

    async fn owned_storage(&self, user: &User, storage: &str) -> DomainResult<BackupStorage> {
        self.store
            .backup_storage_by_name(user.id, storage)
            .await?
            .ok_or(DomainError::NotFound)
    }

    /// Test a storage from one of the user's servers: write, read back and delete a small object (a job).
    pub async fn check_backup_storage(
        &self,
        user: &User,
        server: &Server,
        storage: &str,
    ) -> DomainResult<Job> {
        let s = self.owned_storage(user, storage).await?;
        Ok(check_storage(&self.store, server.id, s.id).await?)
    }

    /// Delete a storage no plan uses (the data in it stays where it is).
    pub async fn delete_backup_storage(&self, user: &User, storage: &str) -> DomainResult<()> {
        let s = self.owned_storage(user, storage).await?;
        Ok(self.store.delete_backup_storage(s.id).await?)
    }

    pub async fn create_backup_plan(
        &self,
        user: &User,
        server: &Server,
        req: &PlanRequest,
    ) -> DomainResult<BackupPlan> {
        let plan_name = name("name", &req.name)?;
        let mut source = match (req.database.trim(), req.site.trim()) {
            (d, "") if !d.is_empty() => Source::parse(d)?,
            ("", site) if !site.is_empty() => Source::site(site)?,
            _ => {
                return Err(ValidationError::new(
                    "database",
                    "back up one thing: a database (ENGINE:SCHEMA) or a site (its domain)",
                )
                .into());
            }
        };
        if let Source::Site { domain, root } = &mut source {
            let site = self
                .store
                .sites(server.id)
                .await?
                .into_iter()
                .find(|s| &s.domain == domain)
                .ok_or_else(|| {
                    ValidationError::new("site", format!("the server has no site {domain}"))
                })?;
            // An isolated site lives in its own user's home.
            if brokeforge_packages::services::sites::config::SiteConfig::of(&site).isolated {
                *root = Some(site.document_root.clone());
            }
        }
        let storage = self
            .store
            .backup_storage_by_name(user.id, req.storage.trim())
            .await?
            .ok_or_else(|| {
                ValidationError::new(
                    "storage",
                    format!("you have no backup storage `{}`", req.storage.trim()),
                )
            })?;
        if let StorageConfig::Local { server_id, .. } = StorageConfig::of(&storage)?
            && server_id != server.id
        {
            return Err(ValidationError::new(
                "storage",
                format!("{} is a directory on another server; a local storage serves its own server's plans", storage.name),
            )
            .into());
        }
        let retention = req.retention.clone().unwrap_or_default().validated()?;
        let (schedule, next_run_at) = parse_schedule(req.schedule.as_deref())?;
        let (verify_schedule, next_verify_at) = parse_schedule(req.verify_schedule.as_deref())
            .map_err(|e| ValidationError::new("verify_schedule", e.message))?;
        Ok(self
            .store
            .create_backup_plan(&NewBackupPlan {
                server_id: server.id,
                storage_id: storage.id,
                name: plan_name,
                source: serde_json::to_value(&source)
                    .map_err(|e| DomainError::Internal(e.to_string()))?,
                schedule,
                verify_schedule,
                retention: serde_json::to_value(&retention)
                    .map_err(|e| DomainError::Internal(e.to_string()))?,
                password: generate_password()?,
                next_run_at,
                next_verify_at,
            })
            .await?)
    }

    /// The server's plan `plan` (by name).
    pub async fn backup_plan(&self, server: &Server, plan: &str) -> DomainResult<BackupPlan> {
        self.store
            .backup_plan_by_name(server.id, plan)
            .await?
            .ok_or(DomainError::NotFound)
    }

    async fn view(&self, plan: BackupPlan) -> DomainResult<PlanView> {
        let storage = self.store.backup_storage(plan.storage_id).await?;
        let snapshots = self.store.backup_snapshots(plan.id).await?;
        let repository = self.repository_url(&plan, &storage)?;
        Ok(PlanView {
            storage: storage.name,
            snapshots: snapshots.len(),
            newest_snapshot: snapshots.into_iter().next(),
            repository,
            plan,
        })
    }

    fn repository_url(&self, plan: &BackupPlan, storage: &BackupStorage) -> DomainResult<String> {
        Ok(Repository {
            plan: plan.clone(),
            storage: storage.clone(),
            config: StorageConfig::of(storage)?,
            source: Source::of(plan)?,
            password: Secret::new(""),
            storage_secret: None,
            source_secret: None,
        }
        .url())
    }

    pub async fn backup_plans(&self, server: &Server) -> DomainResult<Vec<PlanView>> {
        let mut out = Vec::new();
        for p in self.store.backup_plans(server.id).await? {
            out.push(self.view(p).await?);
        }
        Ok(out)
    }

    pub async fn backup_plan_view(&self, server: &Server, plan: &str) -> DomainResult<PlanView> {
        let p = self.backup_plan(server, plan).await?;
        self.view(p).await
    }

    pub async fn delete_backup_plan(&self, server: &Server, plan: &str) -> DomainResult<()> {
        let p = self.backup_plan(server, plan).await?;
        Ok(self.store.delete_backup_plan(p.id).await?)
    }

    pub async fn run_backup_now(&self, server: &Server, plan: &str) -> DomainResult<Job> {
        let p = self.backup_plan(server, plan).await?;
        Ok(run_backup(&self.store, server.id, p.id).await?)
    }

    pub async fn backup_snapshots(
        &self,
        server: &Server,
        plan: &str,
    ) -> DomainResult<Vec<BackupSnapshot>> {
        let p = self.backup_plan(server, plan).await?;
        Ok(self.store.backup_snapshots(p.id).await?)
    }

    /// The plan's snapshot named by `snapshot` (an id or a unique prefix of one).
    async fn snapshot_of(&self, p: &BackupPlan, snapshot: &str) -> DomainResult<String> {
        let wanted = snapshot_id(snapshot)?;
        let snapshots = self.store.backup_snapshots(p.id).await?;
        let matching: Vec<&BackupSnapshot> = snapshots
            .iter()
            .filter(|s| s.snapshot_id.starts_with(&wanted))
            .collect();
        match matching.as_slice() {
            [one] => Ok(one.snapshot_id.clone()),
            [] => Err(ValidationError::new(
                "snapshot",
                format!("plan {} has no snapshot {wanted}", p.name),
            )
            .into()),
            _ => Err(ValidationError::new(
                "snapshot",
                format!("{wanted} names more than one snapshot: give more of its id"),
            )
            .into()),
        }
    }

    /// Download a snapshot through BrokeForge: its file name, and its bytes as they come off the server
    /// (`restic dump`), a few chunks buffered at most. A failure after the first bytes ends the stream with
    /// an error, so the caller never mistakes a cut download for a whole one.
    pub async fn download_backup(
        &self,
        server: &Server,
        plan: &str,
        snapshot: &str,
    ) -> DomainResult<(
        String,
        tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    )> {
        let p = self.backup_plan(server, plan).await?;
        let snap = self.snapshot_of(&p, snapshot).await?;
        let name =
            brokeforge_packages::services::backup::download::file_name(&Source::of(&p)?, &snap);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let (out, body) = tokio::sync::mpsc::channel(4);
        let executor = self.executor.clone();
        let ctx = brokeforge_packages::RunContext::new(server.clone());
        let plan_id = p.id;
        tokio::spawn(async move {
            let download = async move {
                let r = brokeforge_packages::services::backup::download::download(
                    &executor, &ctx, plan_id, &snap, &tx,
                )
                .await;
                drop(tx);
                r
            };
            let forward = {
                let out = out.clone();
                async move {
                    while let Some(chunk) = rx.recv().await {
                        if out.send(Ok(chunk)).await.is_err() {
                            break;
                        }
                    }
                }
            };
            let (result, ()) = tokio::join!(download, forward);
            if let Err(e) = result {
                tracing::warn!(plan_id, error = %e, "a snapshot download failed");
                let _ = out.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        });
        Ok((name, body))
    }

    /// Restore snapshot `snapshot` (an id or its unique prefix). Over the plan's own schema only when
    /// `confirm` names that schema: the user says what will be overwritten.
    pub async fn restore_backup(
        &self,
        server: &Server,
        plan: &str,
        snapshot: &str,
        into: Option<&str>,
        confirm: Option<&str>,
    ) -> DomainResult<Job> {
        let p = self.backup_plan(server, plan).await?;
        let source = Source::of(&p)?;
        let snap = self.snapshot_of(&p, snapshot).await?;
        let into = into.map(str::trim).filter(|s| !s.is_empty());
        if into.is_some() && matches!(source, Source::Redis {}) {
            return Err(ValidationError::new(
                "into",
                "Redis has one data set: a restore replaces it (leave the new name out)",
            )
            .into());
        }
        if into.is_none() && confirm != Some(source.target()) {
            return Err(ValidationError::new(
                "confirm",
                format!(
                    "restoring overwrites the {} with the snapshot's: confirm with its name ({})",
                    source.describe(),
                    source.target()
                ),
            )
            .into());
        }
        Ok(restore_backup(
            &self.store,
            server.id,
            &RestoreRequest {
                plan_id: p.id,
                snapshot_id: snap,
                into: into.map(str::to_string),
            },
        )
        .await?)
    }

    pub async fn verify_backup_now(&self, server: &Server, plan: &str) -> DomainResult<Job> {
        let p = self.backup_plan(server, plan).await?;
        if self.store.backup_snapshots(p.id).await?.is_empty() {
            return Err(ValidationError::new(
                "plan",
                "the plan has no snapshot yet: run a backup first",
            )
            .into());
        }
        Ok(verify_backup(&self.store, server.id, p.id).await?)
    }

    /// What a user needs to restore without BrokeForge: the repository, its password, the storage's access
    /// (the secret itself stays sealed: the user has it), and the commands.
    pub async fn backup_recovery_kit(&self, server: &Server, plan: &str) -> DomainResult<String> {
        let p = self.backup_plan(server, plan).await?;
        let storage = self.store.backup_storage(p.storage_id).await?;
        let config = StorageConfig::of(&storage)?;
        let source = Source::of(&p)?;
        let url = self.repository_url(&p, &storage)?;
        let password = self.store.backup_plan_password(p.id).await?;
        let access = match &config {
            StorageConfig::Local { .. } => {
                format!("# A directory on the server {} itself.", server.name)
            }
            StorageConfig::S3 {
                access_key_id,
                region,
                path_style,
                ..
            } => format!(
                "export AWS_ACCESS_KEY_ID={access_key_id}\nexport AWS_SECRET_ACCESS_KEY=...   # the secret key you gave BrokeForge for storage {}{}{}",
                storage.name,
                region
                    .as_ref()
                    .map(|r| format!("\n# add: -o s3.region={r}"))
                    .unwrap_or_default(),
                if *path_style {
                    "\n# add: -o s3.bucket-lookup=path"
                } else {
                    ""
                }
            ),
            StorageConfig::Sftp { public_key, .. } => format!(
                "# SFTP with the key BrokeForge generated (public half: {public_key}); use a key of your own\n# that the SFTP user accepts if BrokeForge is gone."
            ),
        };
        let (file, load) = match &source {
            Source::Database { engine, schema } if engine == "postgresql" => (
                format!("/{schema}.dump"),
                format!("pg_restore --clean --if-exists -d {schema}"),
            ),
            Source::Database { schema, .. } => {
                (format!("/{schema}.sql"), format!("mysql {schema}"))
            }
            Source::Redis {} => (
                "/redis.rdb".to_string(),
                "cat > dump.rdb   # then, with Redis stopped: install -o redis -g redis dump.rdb /var/lib/redis/".to_string(),
            ),
            Source::Site { .. } => (String::new(), String::new()),
        };
        let restore = match source.path() {
            Some(dir) => format!("restic restore latest --target / --include {dir}"),
            None => format!("restic dump latest {file} | {load}"),
        };
        Ok(format!(
            "BrokeForge recovery kit: backup plan {plan} of server {server_name}\n\
             Keep this offline. Anyone with it can read the backups.\n\n\
             What: {what}\nRepository (restic): {url}\nRepository password: {pw}\n\n\
             {access}\n\
             export RESTIC_REPOSITORY='{url}'\nexport RESTIC_PASSWORD='{pw}'\n\
             restic snapshots\n\
             {restore}\n",
            plan = p.name,
            server_name = server.name,
            what = source.describe(),
            pw = password.expose(),
        ))
    }

    /// Queue the runs and drills that are due. Each due time is moved on before its job is queued, under a
    /// check that no other node moved it first, so a due run is queued once.
    pub async fn queue_due_backups(&self) -> DomainResult<usize> {
        let now = now_ms();
        let mut queued = 0;
        for verify in [false, true] {
            for p in self.store.due_backup_plans(now, verify).await? {
                let (cron, due) = if verify {
                    (p.verify_schedule.as_deref(), p.next_verify_at)
                } else {
                    (p.schedule.as_deref(), p.next_run_at)
                };
                let Some(due) = due else { continue };
                let next = cron.and_then(|c| next_run(c, now).ok());
                if !self
                    .store
                    .advance_backup_plan(p.id, verify, due, next)
                    .await?
                {
                    continue;
                }
                let job = if verify {
                    if self.store.backup_snapshots(p.id).await?.is_empty() {
                        continue;
                    }
                    verify_backup(&self.store, p.server_id, p.id).await
                } else {
                    run_backup(&self.store, p.server_id, p.id).await
                };
                match job {
                    Ok(j) => {
                        queued += 1;
                        let what = if verify { "restore drill" } else { "backup" };
                        self.audit_schedule(
                            p.server_id,
                            &format!("scheduled {what}"),
                            &format!("plan {} (job {})", p.name, j.id),
                        )
                        .await;
                    }
                    Err(e) => {
                        tracing::warn!(plan = p.id, error = %e, "a due backup could not be queued")
                    }
                }
            }
        }
        Ok(queued)
    }

    /// Queue due backups until `stop` is cancelled.
    pub async fn run_backup_schedule(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.queue_due_backups().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(queued = n, "queued scheduled backups"),
                Err(e) => tracing::warn!(error = %e, "backup schedule failed; trying again later"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SCHEDULE_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schedules() {
        // 2026-11-27 19:29:36 UTC
        let t = 1_795_807_776_135;
        assert_eq!(super::next_run("0 3 * * *", t).unwrap(), 1_795_834_800_000);
        assert_eq!(super::next_run("@hourly", t).unwrap(), 1_795_809_600_000);
        for bad in ["61 * * * *", "tomorrow", "* * *\n* * *"] {
            assert!(super::next_run(bad, t).is_err(), "{bad}");
        }
    }
}
