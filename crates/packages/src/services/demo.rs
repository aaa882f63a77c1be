//! A harmless demo package: four short steps, optionally failing once at a chosen step. It shows how
//! progress, failures and retries look without touching a real server's software, and the browser tests
//! drive it. Hidden from the catalogue unless `BROKEFORGE_DEMO_PACKAGE=1` (or [`enable`]).

use std::sync::atomic::{AtomicBool, Ordering};

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType, ValidationError};
use serde::Deserialize;

use crate::base::{Package, PackageInstaller, PackageRemover, Plan, StoreChange};
use crate::{job_handler, milestones};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Show the demo package in this process's catalogue.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst) || std::env::var("BROKEFORGE_DEMO_PACKAGE").as_deref() == Ok("1")
}

pub const NAME: &str = "demo";

milestones! {
    pub enum DemoInstallerMilestones {
        Prepare => ("prepare", "Preparing"),
        Download => ("download", "Downloading"),
        Configure => ("configure", "Configuring"),
        Finish => ("finish", "Finishing"),
    }
}

milestones! {
    pub enum DemoRemoverMilestones {
        Remove => ("remove", "Removing"),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DemoOptions {
    /// Milliseconds each step takes.
    pub step_ms: u64,
    /// A step key that fails the first time it runs on this server (then succeeds: try Retry).
    pub fail_once_at: String,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            step_ms: 700,
            fail_once_at: "none".into(),
        }
    }
}

pub struct DemoInstaller;
pub struct DemoRemover;

impl Package for DemoInstaller {
    type Milestones = DemoInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}
impl PackageInstaller for DemoInstaller {}

impl Package for DemoRemover {
    type Milestones = DemoRemoverMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}
impl PackageRemover for DemoRemover {}

impl DemoInstaller {
    pub fn commands(&self, o: &DemoOptions) -> Result<Plan, ValidationError> {
        use crate::base::Milestones;
        if o.step_ms > 10_000 {
            return Err(ValidationError::new("step_ms", "at most 10000"));
        }
        let keys: Vec<&str> = DemoInstallerMilestones::all()
            .iter()
            .map(|m| m.key())
            .collect();
        if o.fail_once_at != "none" && !keys.contains(&o.fail_once_at.as_str()) {
            return Err(ValidationError::new(
                "fail_once_at",
                format!(
                    "`{}` is not one of none, {}",
                    o.fail_once_at,
                    keys.join(", ")
                ),
            ));
        }
        let sleep = format!("sleep {:.3}", o.step_ms as f64 / 1000.0);
        let mut plan = self.plan();
        for m in DemoInstallerMilestones::all() {
            plan = plan.track(*m);
            if m.key() == o.fail_once_at {
                // The marker lives in the app user's home: the first run fails, a retry passes.
                plan = plan.run(format!(
                    "{sleep}; if [ ! -e .brokeforge-demo-failed-{k} ]; then touch .brokeforge-demo-failed-{k}; \
                     echo 'demo: {k} failed on purpose (retry to pass)' >&2; exit 3; fi; echo '{k} done'",
                    k = m.key()
                ));
            } else {
                plan = plan.run(format!("{sleep}; echo '{} done'", m.key()));
            }
        }
        Ok(plan.record(StoreChange::UpsertService {
            name: NAME.into(),
            service_type: ServiceType::Server,
            configuration: serde_json::json!({"step_ms": o.step_ms}),
            status: ServiceStatus::Active,
        }))
    }
}

job_handler! {
    /// Runs the [`DemoInstaller`].
    DemoInstallerJob, "demo_installer", |ctx| {
        let o: DemoOptions = ctx
            .job
            .payload
            .get("options")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| ValidationError::new("options", e.to_string()))?
            .unwrap_or_default();
        let plan = DemoInstaller.commands(&o)?;
        DemoInstaller.install(ctx.executor, &ctx.run_context()?, plan).await?;
        Ok(serde_json::json!({"ok": true}))
    }
}

job_handler! {
    /// Runs the [`DemoRemover`].
    DemoRemoverJob, "demo_remover", |ctx| {
        let plan = DemoRemover
            .plan()
            .track(DemoRemoverMilestones::Remove)
            .run("rm -f .brokeforge-demo-failed-*")
            .record(StoreChange::DeleteService { name: NAME.into() });
        DemoRemover.remove(ctx.executor, &ctx.run_context()?, plan).await?;
        Ok(serde_json::json!({"ok": true}))
    }
}
