//! Connection Check Installer: logs in as each of the server's credentials and refreshes its connection status.

use brokeforge_core::{ConnectionStatus, CredentialKind, ServiceType};

use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, NoRequest, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(ConnectionCheckInstaller);
}

milestones! {
    pub enum ConnectionCheckInstallerMilestones {
        CheckRoot => ("check_root", "Logging in as root"),
        CheckUser => ("check_user", "Logging in as brokeforge"),
        CheckWorker => ("check_worker", "Logging in as worker"),
    }
}

pub struct ConnectionCheckInstaller;

impl Package for ConnectionCheckInstaller {
    type Milestones = ConnectionCheckInstallerMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "connection_check";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, _cx: &Gather<'_>, _request: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        use ConnectionCheckInstallerMilestones as M;
        let mut plan = self.plan();
        for (milestone, credential) in [
            (M::CheckRoot, CredentialKind::Root),
            (M::CheckUser, CredentialKind::User),
            (M::CheckWorker, CredentialKind::Worker),
        ] {
            plan = plan.track(milestone).run_step(crate::base::RunStep {
                command: "id -un".into(),
                timeout: std::time::Duration::from_secs(30),
                stdin: None,
                credential: Some(credential),
                private_output: false,
            });
        }
        Ok(plan)
    }
}

impl PackageInstaller for ConnectionCheckInstaller {
    /// Reports the user each credential logged in as; any failure marks the connection failed.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        _request: &NoRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let plan = self.commands(&())?;
        match self.install(executor, ctx, plan).await {
            Ok(report) => {
                executor
                    .store()
                    .set_connection_status(ctx.server.id, ConnectionStatus::Connected)
                    .await?;
                let users: Vec<String> = report
                    .outputs
                    .iter()
                    .map(|o| o.stdout_text().trim().to_string())
                    .collect();
                Ok(serde_json::json!({ "users": users }))
            }
            Err(e) => {
                executor
                    .store()
                    .set_connection_status(ctx.server.id, ConnectionStatus::Failed)
                    .await?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        insta::assert_snapshot!(ConnectionCheckInstaller.commands(&()).unwrap().to_string());
    }
}
