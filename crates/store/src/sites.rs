//! Sites, their deployments and the commands run in them.

use brokeforge_core::ServiceStatus;
use brokeforge_core::time::now_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Result, Store, StoreError, is_unique_violation, json, parse};

const SITE_COLS: &str = "id, server_id, domain, document_root, php_version, status, configuration, config_revision, created_at, updated_at";

fn site_from(row: &AnyRow) -> Result<ServerSite> {
    Ok(ServerSite {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        domain: row.try_get("domain")?,
        document_root: row.try_get("document_root")?,
        php_version: row.try_get("php_version")?,
        status: parse(row, "status")?,
        configuration: json(row, "configuration")?,
        config_revision: row.try_get("config_revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const DEPLOYMENT_COLS: &str = "id, site_id, job_id, kind, status, branch, commit_hash, release_name, triggered_by, exit_code, error, created_at, started_at, finished_at";

fn deployment_from(row: &AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        id: row.try_get("id")?,
        site_id: row.try_get("site_id")?,
        job_id: row.try_get("job_id")?,
        kind: row.try_get("kind")?,
        status: parse(row, "status")?,
        branch: row.try_get("branch")?,
        commit_hash: row.try_get("commit_hash")?,
        release: row.try_get("release_name")?,
        triggered_by: row.try_get("triggered_by")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Store {
    /// Store a new site. `{id}` in its document root becomes the site's id (an isolated site lives in its own
    /// user's home, named after the id).
    pub async fn create_site(&self, new: &NewSite) -> Result<ServerSite> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO server_sites (server_id, domain, document_root, php_version, status, configuration, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {SITE_COLS}"
        ))
        .bind(new.server_id)
        .bind(&new.domain)
        .bind(&new.document_root)
        .bind(new.php_version.clone())
        .bind(new.status.as_str())
        .bind(new.configuration.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the server already has a site {}", new.domain))
            } else {
                e.into()
            }
        })?;
        let mut site = site_from(&row)?;
        if site.document_root.contains("{id}") {
            site.document_root = site.document_root.replace("{id}", &site.id.to_string());
            sqlx::query("UPDATE server_sites SET document_root = $1 WHERE id = $2")
                .bind(&site.document_root)
                .bind(site.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(site)
    }

    pub async fn site(&self, id: i64) -> Result<ServerSite> {
        let row = sqlx::query(&format!(
            "SELECT {SITE_COLS} FROM server_sites WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {id}")))?;
        site_from(&row)
    }

    pub async fn sites(&self, server_id: i64) -> Result<Vec<ServerSite>> {
        let rows = sqlx::query(&format!(
            "SELECT {SITE_COLS} FROM server_sites WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(site_from).collect()
    }

    pub async fn set_site_status(&self, id: i64, status: ServiceStatus) -> Result<()> {
        sqlx::query("UPDATE server_sites SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A job that installs to the site starts: a new or failed site is `installing`; a serving one stays
    /// `active` (a change to it does not take it down, and drift keeps checking it).
    pub async fn begin_site_install(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE server_sites SET status = 'installing', updated_at = $1 WHERE id = $2 AND status <> 'active'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_site_php_version(&self, id: i64, version: &str) -> Result<()> {
        sqlx::query("UPDATE server_sites SET php_version = $1, updated_at = $2 WHERE id = $3")
            .bind(version)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_site_configuration(
        &self,
        id: i64,
        configuration: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE server_sites SET configuration = $1, config_revision = config_revision + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(configuration.to_string())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {id}")));
        }
        Ok(())
    }

    /// Replace a site's configuration only if nobody changed it since revision `revision` was read;
    /// `false` when someone did (read it again and redo the change).
    pub async fn set_site_configuration_if(
        &self,
        id: i64,
        revision: i64,
        configuration: &serde_json::Value,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE server_sites SET configuration = $1, config_revision = config_revision + 1, updated_at = $2 \
             WHERE id = $3 AND config_revision = $4",
        )
        .bind(configuration.to_string())
        .bind(now_ms())
        .bind(id)
        .bind(revision)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_site(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM server_sites WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a deployment and queue the job that runs it (`job` gets the deployment as its target).
    /// Deployments of one server run one at a time, in order: the queue's per-server rule.
    pub async fn queue_deployment(
        &self,
        site: &ServerSite,
        kind: &str,
        branch: Option<&str>,
        release: Option<&str>,
        triggered_by: &str,
        mut job: crate::NewJob,
    ) -> Result<(Deployment, crate::Job)> {
        let row = sqlx::query(&format!(
            "INSERT INTO site_deployments (site_id, kind, status, branch, release_name, triggered_by, created_at) \
             VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING {DEPLOYMENT_COLS}"
        ))
        .bind(site.id)
        .bind(kind)
        .bind(branch.map(str::to_string))
        .bind(release.map(str::to_string))
        .bind(triggered_by)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        let mut deployment = deployment_from(&row)?;
        job.target = Some(crate::JobTarget::Deployment { id: deployment.id });
        if let Some(p) = job.payload.as_object_mut() {
            p.insert("deployment_id".into(), deployment.id.into());
        }
        let queued = match self.enqueue(&job).await {
            Ok(j) => j,
            Err(e) => {
                // Nothing will run it: do not leave a deployment that looks queued.
                let _ = sqlx::query("DELETE FROM site_deployments WHERE id = $1")
                    .bind(deployment.id)
                    .execute(&self.pool)
                    .await;
                return Err(e);
            }
        };
        sqlx::query("UPDATE site_deployments SET job_id = $1 WHERE id = $2")
            .bind(queued.id)
            .bind(deployment.id)
            .execute(&self.pool)
            .await?;
        deployment.job_id = Some(queued.id);
        Ok((deployment, queued))
    }

    pub async fn deployment(&self, id: i64) -> Result<Deployment> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM site_deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        deployment_from(&row)
    }

    /// A site's deployments, newest first.
    pub async fn deployments(&self, site_id: i64, limit: i64) -> Result<Vec<Deployment>> {
        self.deployments_before(site_id, i64::MAX, limit).await
    }

    /// A page of a site's deployments older than `before_id`, newest first.
    pub async fn deployments_before(
        &self,
        site_id: i64,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM site_deployments WHERE site_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(site_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from).collect()
    }

    /// A deployment of the site still waiting in the queue (not yet started), if any.
    pub async fn queued_deployment(&self, site_id: i64) -> Result<Option<Deployment>> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM site_deployments WHERE site_id = $1 AND kind = 'deploy' AND status = 'queued' ORDER BY id DESC LIMIT 1"
        ))
        .bind(site_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_from).transpose()
    }

    /// Remember a webhook delivery; `false` when it was recorded before (a replay).
    pub async fn record_webhook_delivery(&self, site_id: i64, delivery_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (site_id, delivery_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(site_id)
        .bind(delivery_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forget webhook deliveries older than `before_ms`, at most `limit`; how many went.
    pub async fn prune_webhook_deliveries(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE (site_id, delivery_id) IN \
             (SELECT site_id, delivery_id FROM webhook_deliveries WHERE created_at < $1 LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The job picked the deployment up.
    pub async fn start_deployment(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE site_deployments SET status = 'running', started_at = $1, error = NULL WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the deployment resolved to (its commit and release) and, when a step failed, that step's exit code.
    pub async fn set_deployment_details(
        &self,
        id: i64,
        branch: Option<&str>,
        commit_hash: Option<&str>,
        release: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE site_deployments SET branch = COALESCE($1, branch), commit_hash = COALESCE($2, commit_hash), \
             release_name = COALESCE($3, release_name), exit_code = COALESCE($4, exit_code) WHERE id = $5",
        )
        .bind(branch.map(str::to_string))
        .bind(commit_hash.map(str::to_string))
        .bind(release.map(str::to_string))
        .bind(exit_code)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_site_command(&self, rec: &SiteCommandRecord) -> Result<SiteCommandRecord> {
        let row = sqlx::query(
            "INSERT INTO site_commands (site_id, command, output, error_output, exit_code, ran_at, duration_ms, success, timed_out) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(rec.site_id)
        .bind(&rec.command)
        .bind(&rec.output)
        .bind(&rec.error_output)
        .bind(rec.exit_code)
        .bind(rec.ran_at)
        .bind(rec.duration_ms)
        .bind(rec.success as i64)
        .bind(rec.timed_out as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(SiteCommandRecord {
            id: row.try_get("id")?,
            ..rec.clone()
        })
    }

    /// A site's command history, newest first.
    pub async fn site_commands(&self, site_id: i64, limit: i64) -> Result<Vec<SiteCommandRecord>> {
        self.site_commands_before(site_id, i64::MAX, limit).await
    }

    /// A page of a site's commands older than `before_id`, newest first.
    pub async fn site_commands_before(
        &self,
        site_id: i64,
        before_id: i64,
        limit: i64,
    ) -> Result<Vec<SiteCommandRecord>> {
        let rows = sqlx::query(
            "SELECT id, site_id, command, output, error_output, exit_code, ran_at, duration_ms, success, timed_out \
             FROM site_commands WHERE site_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(site_id)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteCommandRecord {
                    id: r.try_get("id")?,
                    site_id: r.try_get("site_id")?,
                    command: r.try_get("command")?,
                    output: r.try_get("output")?,
                    error_output: r.try_get("error_output")?,
                    exit_code: r.try_get("exit_code")?,
                    ran_at: r.try_get("ran_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    success: r.try_get::<i64, _>("success")? != 0,
                    timed_out: r.try_get::<i64, _>("timed_out")? != 0,
                })
            })
            .collect()
    }
}
