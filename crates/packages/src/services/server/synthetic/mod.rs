//! A synthetic package for `brokeforge bench` and the worker crash tests: `steps` milestones, each running
//! `true` (or `sleep` for `sleep_ms`) on the server as the app user. The commands are fixed; the request only
//! sets counts.

use brokeforge_core::{CredentialKind, ServiceType};
use serde::{Deserialize, Serialize};

use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, Step};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(SyntheticPlan);
}

milestones! {
    pub enum SyntheticPlanMilestones {
        Step => ("synthetic_step", "Synthetic step"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyntheticRequest {
    #[serde(default = "one")]
    pub steps: usize,
    #[serde(default)]
    pub sleep_ms: u64,
}

fn one() -> usize {
    1
}

pub struct SyntheticPlan;

impl SyntheticPlan {
    pub fn payload(steps: usize, sleep_ms: u64) -> serde_json::Value {
        serde_json::json!({"steps": steps, "sleep_ms": sleep_ms})
    }
}

impl Package for SyntheticPlan {
    type Milestones = SyntheticPlanMilestones;
    type Request = SyntheticRequest;
    type Input = SyntheticRequest;
    const JOB: &'static str = "synthetic_plan";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(
        &self,
        _cx: &Gather<'_>,
        r: &SyntheticRequest,
    ) -> Result<SyntheticRequest, PackageError> {
        Ok(SyntheticRequest {
            steps: r.steps.clamp(1, 10_000),
            sleep_ms: r.sleep_ms.min(600_000),
        })
    }

    fn commands(&self, r: &SyntheticRequest) -> Result<Plan, PackageError> {
        let command = if r.sleep_ms == 0 {
            "true".to_string()
        } else {
            format!("sleep {:.3}", r.sleep_ms as f64 / 1000.0)
        };
        let mut plan = self.plan();
        plan.total_steps = r.steps;
        plan.steps.reserve(r.steps * 2);
        for step in 1..=r.steps {
            plan.steps.push(Step::Track {
                key: "synthetic_step",
                label: "Synthetic step",
                step,
            });
            plan = plan.run(command.clone());
        }
        Ok(plan)
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        r: SyntheticRequest,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(serde_json::json!({"steps": r.steps}))
    }
}

impl PackageInstaller for SyntheticPlan {}
