//! What a job provisions (its target): how the target is stored on the job's row, and how the record it
//! names is settled inside the transaction that ends the job.

use brokeforge_core::ProvisionType;
use brokeforge_core::time::now_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

use brokeforge_core::ServiceType;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// The record a job provisions, whose status the job lifecycle keeps truthful.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobTarget {
    Service {
        name: String,
        service_type: ServiceType,
        provision_type: ProvisionType,
    },
    Site {
        id: i64,
        provision_type: ProvisionType,
    },
    /// The server's own provisioning (`provision_status`).
    Server,
    /// A site deployment or rollback (`site_deployments.status`).
    Deployment { id: i64 },
    /// One server's part of a recipe run (its row in the run's grid: state, exit code, duration).
    RecipeRun { id: i64 },
}

pub(crate) fn target_from(row: &AnyRow) -> Result<Option<JobTarget>> {
    let target_type: Option<String> = row.try_get("target_type")?;
    let provision: Option<String> = row.try_get("provision_type")?;
    let provision_type = || -> Result<ProvisionType> {
        provision
            .as_deref()
            .unwrap_or("install")
            .parse()
            .map_err(|e| StoreError::InvalidData(format!("provision_type: {e}")))
    };
    Ok(match target_type.as_deref() {
        None => None,
        Some("service") => Some(JobTarget::Service {
            name: row
                .try_get::<Option<String>, _>("target_name")?
                .unwrap_or_default(),
            service_type: row
                .try_get::<Option<String>, _>("target_service_type")?
                .unwrap_or_default()
                .parse()
                .map_err(|e| StoreError::InvalidData(format!("target_service_type: {e}")))?,
            provision_type: provision_type()?,
        }),
        Some("site") => Some(JobTarget::Site {
            id: row
                .try_get::<Option<String>, _>("target_name")?
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::InvalidData("site target without id".into()))?,
            provision_type: provision_type()?,
        }),
        Some("server") => Some(JobTarget::Server),
        Some("deployment") => Some(JobTarget::Deployment {
            id: row
                .try_get::<Option<String>, _>("target_name")?
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::InvalidData("deployment target without id".into()))?,
        }),
        Some("recipe_run") => Some(JobTarget::RecipeRun {
            id: row
                .try_get::<Option<String>, _>("target_name")?
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StoreError::InvalidData("recipe run target without id".into()))?,
        }),
        Some(other) => {
            return Err(StoreError::InvalidData(format!(
                "unknown job target `{other}`"
            )));
        }
    })
}

/// Bring the record a job provisions in line with how the job ended, inside the transaction that records
/// the ending: nobody sees a finished job whose record still says `installing`.
pub(crate) async fn settle_target(
    conn: &mut sqlx::AnyConnection,
    job_id: i64,
    server_id: Option<i64>,
    target: &Option<JobTarget>,
    failure: Option<&str>,
    exit_code: Option<i64>,
) -> Result<()> {
    let (Some(server_id), Some(target)) = (server_id, target) else {
        return Ok(());
    };
    let now = now_ms();
    let q = match (target, failure) {
        (JobTarget::Service { name, provision_type: ProvisionType::Install, .. }, None) => sqlx::query(
            "UPDATE server_services SET status = 'active', error = NULL, updated_at = $1 WHERE server_id = $2 AND service_name = $3",
        )
        .bind(now)
        .bind(server_id)
        .bind(name.clone()),
        (JobTarget::Service { name, provision_type: ProvisionType::Uninstall, .. }, None) => {
            sqlx::query("DELETE FROM server_services WHERE server_id = $1 AND service_name = $2")
                .bind(server_id)
                .bind(name.clone())
        }
        (JobTarget::Service { name, .. }, Some(reason)) => sqlx::query(
            "UPDATE server_services SET status = 'failed', error = $4, updated_at = $1 WHERE server_id = $2 AND service_name = $3",
        )
        .bind(now)
        .bind(server_id)
        .bind(name.clone())
        .bind(reason.to_string()),
        (JobTarget::Site { id, provision_type: ProvisionType::Install }, None) => sqlx::query(
            "UPDATE server_sites SET status = 'active', updated_at = $1 WHERE server_id = $2 AND id = $3",
        )
        .bind(now)
        .bind(server_id)
        .bind(*id),
        (JobTarget::Site { id, provision_type: ProvisionType::Uninstall }, None) => {
            sqlx::query("DELETE FROM server_sites WHERE server_id = $1 AND id = $2")
                .bind(server_id)
                .bind(*id)
        }
        // A change to a serving site (its PHP version, its pool) that failed or was cancelled leaves it
        // serving: only a site that never came up (or a failed removal) is `failed`.
        (JobTarget::Site { id, provision_type: ProvisionType::Install }, Some(_)) => sqlx::query(
            "UPDATE server_sites SET status = 'failed', updated_at = $1 WHERE server_id = $2 AND id = $3 AND status <> 'active'",
        )
        .bind(now)
        .bind(server_id)
        .bind(*id),
        (JobTarget::Site { id, .. }, Some(_)) => sqlx::query(
            "UPDATE server_sites SET status = 'failed', updated_at = $1 WHERE server_id = $2 AND id = $3",
        )
        .bind(now)
        .bind(server_id)
        .bind(*id),
        (JobTarget::Server, None) => sqlx::query(
            "UPDATE servers SET provision_status = 'provisioned', updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(server_id),
        (JobTarget::Server, Some(_)) => sqlx::query(
            "UPDATE servers SET provision_status = 'failed', updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(server_id),
        (JobTarget::Deployment { id }, None) => sqlx::query(
            "UPDATE site_deployments SET status = 'succeeded', finished_at = $1 WHERE id = $2 AND status IN ('queued', 'running')",
        )
        .bind(now)
        .bind(*id),
        (JobTarget::Deployment { id }, Some(reason)) => sqlx::query(
            "UPDATE site_deployments SET status = $3, error = $4, finished_at = $1 WHERE id = $2 AND status IN ('queued', 'running')",
        )
        .bind(now)
        .bind(*id)
        .bind(if reason == "cancelled" { "cancelled" } else { "failed" })
        .bind(reason.to_string()),
        // The grid row of this job (a resumed run's later jobs have rows of their own). Its duration is the
        // job's, from its first claim.
        (JobTarget::RecipeRun { id }, failure) => {
            let (state, exit_code) = run_row_ending(failure.is_some(), exit_code);
            sqlx::query(
            "UPDATE recipe_run_servers SET state = $1, exit_code = $2, \
             duration_ms = $3 - (SELECT started_at FROM jobs WHERE id = $4) \
             WHERE run_id = $5 AND server_id = $6 AND job_id = $4",
        )
            .bind(state)
            .bind(exit_code)
            .bind(now)
            .bind(job_id)
            .bind(*id)
            .bind(server_id)
        }
    };
    q.execute(&mut *conn).await?;
    Ok(())
}

/// How a recipe server's row ends with its job: done with exit code 0, or failed with the failed command's
/// exit code (none for a cancel or a failure before any command ended).
pub(crate) fn run_row_ending(failed: bool, exit_code: Option<i64>) -> (&'static str, Option<i64>) {
    if failed {
        ("failed", exit_code)
    } else {
        ("done", Some(0))
    }
}

pub(crate) fn target_columns(
    t: &Option<JobTarget>,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    match t {
        None => (None, None, None, None),
        Some(JobTarget::Service {
            name,
            service_type,
            provision_type,
        }) => (
            Some("service".into()),
            Some(name.clone()),
            Some(service_type.as_str().into()),
            Some(provision_type.as_str().into()),
        ),
        Some(JobTarget::Site { id, provision_type }) => (
            Some("site".into()),
            Some(id.to_string()),
            None,
            Some(provision_type.as_str().into()),
        ),
        Some(JobTarget::Deployment { id }) => (
            Some("deployment".into()),
            Some(id.to_string()),
            None,
            Some("install".into()),
        ),
        Some(JobTarget::Server) => (Some("server".into()), None, None, Some("install".into())),
        Some(JobTarget::RecipeRun { id }) => (
            Some("recipe_run".into()),
            Some(id.to_string()),
            None,
            Some("install".into()),
        ),
    }
}
