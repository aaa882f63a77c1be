//! Connection Check Installer: logs in as each of the server's credentials and refreshes its connection status.

use brokeforge_core::{ConnectionStatus, CredentialKind, ServiceType};

use crate::base::executor::{Executor, RunContext};
use crate::base::{Package, PackageError, PackageInstaller, Plan};
use crate::milestones;

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
    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }
}

impl PackageInstaller for ConnectionCheckInstaller {}

impl ConnectionCheckInstaller {
    pub fn commands(&self) -> Plan {
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
        plan
    }

    /// Returns the user each credential logged in as; any failure marks the connection failed.
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
    ) -> Result<Vec<String>, PackageError> {
        match self.install(executor, ctx, self.commands()).await {
            Ok(report) => {
                executor
                    .store()
                    .set_connection_status(ctx.server.id, ConnectionStatus::Connected)
                    .await?;
                Ok(report
                    .outputs
                    .iter()
                    .map(|o| o.stdout_text().trim().to_string())
                    .collect())
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

crate::job_handler! {
    ConnectionCheckInstallerJob, "connection_check", |ctx| {
        let users = ConnectionCheckInstaller
            .execute(ctx.executor, &ctx.run_context()?)
            .await?;
        Ok(serde_json::json!({ "users": users }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        insta::assert_snapshot!(ConnectionCheckInstaller.commands().to_string());
    }
}
