//! Recipe Installer: one server's part of a recipe run, the recipe's script run as root or the app user (with
//! the server's name in `$BROKEFORGE_SERVER`). It
//! is a normal job (one at a time per server, live output, cancellable); its ending settles the run's row for
//! that server, which is what moves the run on to the next servers.

use std::time::Duration;

use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};

use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(RecipeInstaller);
}

milestones! {
    pub enum RecipeInstallerMilestones {
        RunScript => ("run_script", "Running the recipe"),
        Complete => ("complete", "Recipe done"),
    }
}

/// Longest a recipe's script may run on one server.
pub const RECIPE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Who a recipe runs as: `root` (a role that may make root-level changes) or the app user `brokeforge`.
pub fn run_as(value: &str) -> Result<CredentialKind, ValidationError> {
    match value {
        "root" => Ok(CredentialKind::Root),
        "brokeforge" => Ok(CredentialKind::User),
        other => Err(ValidationError::new(
            "user",
            format!("`{other}` is not root or brokeforge"),
        )),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipeRequest {
    pub run_id: i64,
    pub script: String,
    pub run_as: String,
    /// The server's name, given to the script as `$BROKEFORGE_SERVER`.
    #[serde(default)]
    pub server: String,
}

pub struct RecipeInstaller;

impl Package for RecipeInstaller {
    type Milestones = RecipeInstallerMilestones;
    type Request = RecipeRequest;
    type Input = RecipeRequest;
    const JOB: &'static str = "recipe";
    /// A script may have partly run: after a lost worker the user decides whether to run it again.
    const RESUMABLE: bool = false;

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, _cx: &Gather<'_>, r: &RecipeRequest) -> Result<RecipeRequest, PackageError> {
        run_as(&r.run_as)?;
        if r.script.trim().is_empty() {
            return Err(ValidationError::new("script", "the recipe's script is empty").into());
        }
        Ok(r.clone())
    }

    /// The script goes to bash on stdin: never on a command line, whatever its length.
    fn commands(&self, r: &RecipeRequest) -> Result<Plan, PackageError> {
        use RecipeInstallerMilestones as M;
        let plan = self.plan().track(M::RunScript);
        let mut plan = plan.run_step(RunStep {
            command: format!(
                "BROKEFORGE_SERVER={} bash -s",
                brokeforge_core::shell_quote(&r.server)
            ),
            timeout: RECIPE_TIMEOUT,
            stdin: Some(Secret::new(r.script.clone())),
            credential: Some(run_as(&r.run_as)?),
            private_output: false,
        });
        // The script itself is the user's, not a secret: keep it out of the redaction list so that output
        // quoting a line of it stays readable.
        plan.secrets.clear();
        Ok(plan.track(M::Complete))
    }
}

impl PackageInstaller for RecipeInstaller {
    /// The grid row is not written here: it shows `running` while the job runs, and the job's ending
    /// (state, exit code, duration) settles it in the transaction that ends the job (its target is the run).
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        r: &RecipeRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let input = self.gather(&Gather::new(executor.store(), &ctx.server), r).await?;
        self.install(executor, ctx, self.commands(&input)?).await?;
        Ok(serde_json::json!({"run_id": r.run_id, "exit_code": 0}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_goes_on_stdin_as_the_chosen_user() {
        let r = RecipeRequest {
            run_id: 1,
            script: "apt-get update\necho done".into(),
            run_as: "root".into(),
            server: "web-1".into(),
        };
        let plan = RecipeInstaller.commands(&r).unwrap().to_string();
        assert!(plan.contains("$ BROKEFORGE_SERVER=web-1 bash -s (stdin: ********)  [timeout 3600s as root]"), "{plan}");
        assert!(!plan.contains("apt-get"), "{plan}");
        assert!(run_as("worker").is_err());
    }
}
