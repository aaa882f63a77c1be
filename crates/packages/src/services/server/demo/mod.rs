//! A harmless demo package: four short steps, optionally failing once at a chosen step. It shows how
//! progress, failures and retries look without touching a real server's software, and the browser tests
//! drive it. Hidden from the catalogue unless `BROKEFORGE_DEMO_PACKAGE=1` (or [`enable`]).

use std::sync::atomic::{AtomicBool, Ordering};

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::base::config::Configuration;
use crate::base::package::{Gather, NoRequest, Package, PackageInstaller, PackageRemover};
use crate::base::registry::{Entry, Parameter, Registry};
use crate::base::{PackageError, Plan, StoreChange};
use crate::milestones;

/// Copy this folder to start a package: its milestones, request, installer and remover, and this one
/// registration (jobs, catalogue entry); then add the folder's name to its category's `packages![...]`.
pub fn register(r: &mut Registry) {
    let installer = r.installer(DemoInstaller);
    let remover = r.remover(DemoRemover);
    r.catalogue(
        Entry::new(
            NAME,
            ServiceType::Server,
            "A harmless demo: four short steps, optionally failing once (then Retry)",
            installer,
        )
        .parameters(vec![
            Parameter::new("step_ms", "integer", "milliseconds per step", json!(700)),
            Parameter::choice(
                "fail_once_at",
                "a step that fails the first time",
                "none",
                ["none", "prepare", "download", "configure", "finish"],
            ),
        ])
        .remover(remover, Vec::new())
        .shown(enabled),
    );
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// What the demo's service record holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    pub step_ms: u64,
}

impl Configuration for DemoConfig {
    const WHAT: &'static str = "demo configuration";
}

pub struct DemoInstaller;
pub struct DemoRemover;

impl Package for DemoInstaller {
    type Milestones = DemoInstallerMilestones;
    type Request = DemoOptions;
    type Input = DemoOptions;
    const JOB: &'static str = "demo_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, _cx: &Gather<'_>, o: &DemoOptions) -> Result<DemoOptions, PackageError> {
        Ok(o.clone())
    }

    fn commands(&self, o: &DemoOptions) -> Result<Plan, PackageError> {
        Ok(self.demo_plan(o)?)
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        _input: DemoOptions,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"ok": true}))
    }
}
impl PackageInstaller for DemoInstaller {}

impl Package for DemoRemover {
    type Milestones = DemoRemoverMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "demo_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, _cx: &Gather<'_>, _request: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        Ok(self
            .plan()
            .track(DemoRemoverMilestones::Remove)
            .run("rm -f .brokeforge-demo-failed-*")
            .record(StoreChange::DeleteService { name: NAME.into() }))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        _input: (),
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"ok": true}))
    }
}
impl PackageRemover for DemoRemover {}

impl DemoInstaller {
    fn demo_plan(&self, o: &DemoOptions) -> Result<Plan, ValidationError> {
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
            configuration: DemoConfig { step_ms: o.step_ms }.to_value(),
            status: ServiceStatus::Active,
        }))
    }
}
