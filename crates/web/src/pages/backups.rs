//! A server's backups page: its plans with their snapshots, last restore drill and actions (run, verify,
//! restore, recovery kit), and the forms to add a plan and a storage.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use brokeforge_domain::backups::{PlanRequest, PlanView, StorageRequest};
use brokeforge_packages::services::backup::repository::{Retention, Source};
use brokeforge_store::{Job, Server};

use super::common::*;
use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::OwnedServer;
use crate::state::AppState;

pub struct SnapshotRow {
    pub id: String,
    pub short: String,
    pub when: String,
    pub size: String,
    pub took: String,
}

pub struct PlanRow {
    pub name: String,
    pub what: String,
    pub schema: String,
    pub storage: String,
    pub repository: String,
    pub schedule: String,
    pub retention: String,
    pub drill: String,
    pub drill_ok: bool,
    pub snapshots: Vec<SnapshotRow>,
}

pub struct StorageRow {
    pub name: String,
    pub kind: String,
    pub detail: String,
    pub public_key: String,
}

#[derive(Template)]
#[template(path = "backups.html")]
pub struct BackupsPage {
    pub nav: Nav,
    pub server: Server,
    pub plans: Vec<PlanRow>,
    pub storages: Vec<StorageRow>,
    pub databases: Vec<String>,
}

fn size(bytes: Option<i64>) -> String {
    match bytes {
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
        None => String::new(),
    }
}

fn drill(plan: &PlanView) -> (String, bool) {
    let Some(v) = &plan.plan.last_verify else {
        return ("never verified".into(), false);
    };
    let when = brokeforge_core::time::from_json(&v["at"])
        .map(ago)
        .unwrap_or_default();
    if v["ok"] == true {
        let tables: Vec<String> = v["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{} {}", t["table"].as_str().unwrap_or_default(), t["rows"]))
            .collect();
        (
            format!(
                "restored {when} in {}: {}",
                took(v["duration_ms"].as_i64()),
                if tables.is_empty() {
                    "no tables".into()
                } else {
                    tables.join(", ")
                }
            ),
            true,
        )
    } else {
        (
            format!("failed {when}: {}", v["error"].as_str().unwrap_or_default()),
            false,
        )
    }
}

async fn backups_view(
    state: &AppState,
    u: &Authed,
    server: &Server,
    error: Option<&ApiError>,
) -> PageResult {
    let mut plans = Vec::new();
    for p in state.domain.backup_plans(server).await? {
        let snapshots = state
            .domain
            .backup_snapshots(server, &p.plan.name)
            .await?
            .into_iter()
            .map(|s| SnapshotRow {
                short: s.snapshot_id.chars().take(8).collect(),
                when: brokeforge_core::time::utc_stamp(s.taken_at),
                size: size(s.size_bytes),
                took: took(s.duration_ms),
                id: s.snapshot_id,
            })
            .collect();
        let source = serde_json::from_value::<Source>(p.plan.source.clone()).ok();
        let r: Retention = serde_json::from_value(p.plan.retention.clone()).unwrap_or_default();
        let (drill, drill_ok) = drill(&p);
        plans.push(PlanRow {
            name: p.plan.name.clone(),
            what: source.as_ref().map(Source::describe).unwrap_or_default(),
            schema: source
                .as_ref()
                .map(|s| s.target().to_string())
                .unwrap_or_default(),
            storage: p.storage.clone(),
            repository: p.repository.clone(),
            schedule: p
                .plan
                .schedule
                .clone()
                .map(|s| format!("{s} (UTC)"))
                .unwrap_or_else(|| "manual".into()),
            retention: format!(
                "last {}, daily {}, weekly {}, monthly {}",
                r.keep_last, r.keep_daily, r.keep_weekly, r.keep_monthly
            ),
            drill,
            drill_ok,
            snapshots,
        });
    }
    let storages = state
        .domain
        .backup_storages(&u.user)
        .await?
        .into_iter()
        .map(|s| {
            let c = &s.configuration;
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            StorageRow {
                detail: match s.kind.as_str() {
                    "s3" => format!("{}/{}", text("endpoint"), text("bucket")),
                    "sftp" => format!("{}@{}:{}", text("user"), text("host"), text("path")),
                    _ => format!("server {} {}", c["server_id"], text("path")),
                },
                public_key: text("public_key"),
                name: s.name,
                kind: s.kind,
            }
        })
        .collect();
    let mut databases: Vec<String> = state
        .domain
        .database_engines(server)
        .await?
        .into_iter()
        .flat_map(|d| {
            d.schemas
                .into_iter()
                .map(move |s| format!("{}:{s}", d.engine))
        })
        .collect();
    if state
        .store
        .services(server.id)
        .await?
        .iter()
        .any(|s| s.service_name == "redis")
    {
        databases.push("redis".into());
    }
    // A site's files are a source too, in the same list.
    databases.extend(
        state
            .store
            .sites(server.id)
            .await?
            .into_iter()
            .map(|s| format!("site:{}", s.domain)),
    );
    let (nav, status) = Nav::server(u, server, "backups").with_result(error);
    Ok(render(
        &BackupsPage {
            nav,
            server: server.clone(),
            plans,
            storages,
            databases,
        },
        status,
    ))
}

pub async fn backups_page(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
) -> PageResult {
    backups_view(&state, &u, &server, None).await
}

/// Back to the page on success (or to the job it queued), the page with the error otherwise.
async fn done(
    state: &AppState,
    u: &Authed,
    server: &Server,
    result: Result<Option<Job>, ApiError>,
) -> PageResult {
    match result {
        Ok(Some(job)) => Ok(see_other(format!("/jobs/{}", job.id))),
        Ok(None) => Ok(see_other(format!("/servers/{}/backups", server.id))),
        Err(e) => backups_view(state, u, server, Some(&e)).await,
    }
}

fn field(f: &BTreeMap<String, String>, k: &str) -> String {
    f.get(k).map(|v| v.trim().to_string()).unwrap_or_default()
}

fn optional(f: &BTreeMap<String, String>, k: &str) -> Option<String> {
    Some(field(f, k)).filter(|v| !v.is_empty())
}

fn number(f: &BTreeMap<String, String>, k: &'static str, default: u32) -> Result<u32, ApiError> {
    match optional(f, k) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::invalid(k, format!("`{v}` is not a number"))),
    }
}

pub async fn create_plan(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let result = async {
        let req = PlanRequest {
            name: field(&f, "name"),
            database: field(&f, "database"),
            site: String::new(),
            storage: field(&f, "storage"),
            schedule: optional(&f, "schedule"),
            verify_schedule: optional(&f, "verify_schedule"),
            retention: Some(Retention {
                keep_last: number(&f, "keep_last", 7)?,
                keep_daily: number(&f, "keep_daily", 0)?,
                keep_weekly: number(&f, "keep_weekly", 0)?,
                keep_monthly: number(&f, "keep_monthly", 0)?,
            }),
        };
        state
            .domain
            .create_backup_plan(&u.user, &server, &req)
            .await
            .map_err(ApiError::from)?;
        Ok(None)
    }
    .await;
    done(&state, &u, &server, result).await
}

pub async fn add_storage(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let result = async {
        let port = match optional(&f, "port") {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| ApiError::invalid("port", format!("`{p}` is not a port")))?,
            ),
        };
        let req = StorageRequest {
            name: field(&f, "name"),
            kind: field(&f, "kind"),
            endpoint: field(&f, "endpoint"),
            bucket: field(&f, "bucket"),
            region: optional(&f, "region"),
            path_style: f.get("path_style").is_some_and(|v| v == "true"),
            access_key_id: field(&f, "access_key_id"),
            secret_access_key: optional(&f, "secret_access_key"),
            host: field(&f, "host"),
            port,
            user: field(&f, "user"),
            host_key_fingerprint: optional(&f, "host_key_fingerprint"),
            // A local storage from this page is a directory on this server.
            server_id: Some(server.id),
            path: field(&f, "path"),
        };
        state
            .domain
            .add_backup_storage(&u.user, &req)
            .await
            .map_err(ApiError::from)?;
        Ok(None)
    }
    .await;
    done(&state, &u, &server, result).await
}

pub async fn check_storage(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, name)): Path<(i64, String)>,
) -> PageResult {
    let r = state
        .domain
        .check_backup_storage(&u.user, &server, &name)
        .await;
    done(&state, &u, &server, r.map(Some).map_err(ApiError::from)).await
}

pub async fn run_plan(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> PageResult {
    let r = state.domain.run_backup_now(&server, &plan).await;
    done(&state, &u, &server, r.map(Some).map_err(ApiError::from)).await
}

pub async fn verify_plan(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> PageResult {
    let r = state.domain.verify_backup_now(&server, &plan).await;
    done(&state, &u, &server, r.map(Some).map_err(ApiError::from)).await
}

pub async fn delete_plan(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
) -> PageResult {
    let r = state.domain.delete_backup_plan(&server, &plan).await;
    done(&state, &u, &server, r.map(|_| None).map_err(ApiError::from)).await
}

pub async fn restore(
    State(state): State<AppState>,
    OwnedServer(u, server): OwnedServer,
    Path((_, plan)): Path<(i64, String)>,
    Form(f): Form<BTreeMap<String, String>>,
) -> PageResult {
    let r = state
        .domain
        .restore_backup(
            &server,
            &plan,
            &field(&f, "snapshot"),
            optional(&f, "into").as_deref(),
            optional(&f, "confirm").as_deref(),
        )
        .await;
    done(&state, &u, &server, r.map(Some).map_err(ApiError::from)).await
}
