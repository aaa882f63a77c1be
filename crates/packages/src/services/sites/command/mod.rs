//! Site Command Installer: runs one command in a site's directory as the app user (the spec's single-command
//! executor), returns what it printed, and keeps it in the site's command history.

use std::time::{Duration, Instant};

use brokeforge_core::time::now_ms;
use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{ServerSite, SiteCommandRecord};
use serde::{Deserialize, Serialize};

use super::common::{DEFAULT_COMMAND_TIMEOUT, SiteUser, on_server};
use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(SiteCommandInstaller);
}

milestones! {
    pub enum SiteCommandInstallerMilestones {
        PrepareExecution => ("prepare_execution", "Preparing command execution"),
        CommandComplete => ("command_complete", "Command complete"),
    }
}

pub struct SiteCommandInstaller;

/// Longest a site command may run.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A command to run in a site's live release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandRequest {
    pub site_id: i64,
    pub command: String,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    DEFAULT_COMMAND_TIMEOUT.as_secs()
}

impl CommandRequest {
    pub fn new(site_id: i64, command: &str, timeout: Duration) -> CommandRequest {
        CommandRequest {
            site_id,
            command: command.to_string(),
            timeout_secs: timeout.as_secs(),
        }
    }
}

/// A validated command and where it runs.
pub struct CommandInput {
    pub site: ServerSite,
    pub command: String,
    pub timeout: Duration,
    pub working_directory: String,
    pub user: SiteUser,
}

impl Package for SiteCommandInstaller {
    type Milestones = SiteCommandInstallerMilestones;
    type Request = CommandRequest;
    type Input = CommandInput;
    const JOB: &'static str = "site_command";
    /// It may have partly run: after a lost worker the user decides whether to run it again.
    const RESUMABLE: bool = false;

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }

    async fn gather(&self, cx: &Gather<'_>, r: &CommandRequest) -> Result<CommandInput, PackageError> {
        let command = r.command.as_str();
        if command.trim().is_empty() {
            return Err(ValidationError::new("command", "cannot execute an empty command").into());
        }
        if command.contains('\0') {
            return Err(ValidationError::new("command", "must not contain NUL bytes").into());
        }
        let timeout = Duration::from_secs(r.timeout_secs);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(
                ValidationError::new("timeout", "must be between 1 and 3600 seconds").into(),
            );
        }
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        // The live release: commands see the code that is being served.
        let working_directory = format!(
            "{}/current",
            validate::absolute_path("document_root", &site.document_root)?
        );
        Ok(CommandInput {
            user: SiteUser::of(&site),
            site,
            command: command.to_string(),
            timeout,
            working_directory,
        })
    }

    fn commands(&self, i: &CommandInput) -> Result<Plan, PackageError> {
        Ok(self.command_plan(&i.user, &i.command, i.timeout, &i.working_directory))
    }
}

impl PackageInstaller for SiteCommandInstaller {
    /// Run the command in the site's directory. A command that fails still returns a result (with its exit
    /// code, output and `success: false`) and is kept in the history; only a failure to reach the server is an
    /// error.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &CommandRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let i = self
            .gather(&Gather::new(executor.store(), &ctx.server), request)
            .await?;
        let ran_at = now_ms();
        let started = Instant::now();
        let result = self.install(executor, ctx, self.commands(&i)?).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let record = match result {
            Ok(report) => {
                let out = report.outputs.first();
                SiteCommandRecord {
                    id: 0,
                    site_id: i.site.id,
                    command: i.command.clone(),
                    output: out.map(|o| o.stdout_text()).unwrap_or_default(),
                    error_output: out.map(|o| o.stderr_text()).unwrap_or_default(),
                    exit_code: Some(0),
                    ran_at,
                    duration_ms,
                    success: true,
                    timed_out: false,
                }
            }
            Err(PackageError::CommandFailed {
                exit_code,
                timed_out,
                stdout,
                stderr,
                ..
            }) => SiteCommandRecord {
                id: 0,
                site_id: i.site.id,
                command: i.command.clone(),
                output: stdout,
                error_output: stderr,
                exit_code: if timed_out {
                    None
                } else {
                    exit_code.map(i64::from)
                },
                ran_at,
                duration_ms,
                success: false,
                timed_out,
            },
            Err(e) => return Err(e),
        };
        let record = executor.store().record_site_command(&record).await?;
        Ok(serde_json::to_value(record).unwrap_or_default())
    }
}

impl SiteCommandInstaller {
    /// The plan: change into the site's directory and run the command as given (the user's own shell syntax).
    /// It runs as the site's user.
    pub fn command_plan(
        &self,
        user: &SiteUser,
        command: &str,
        timeout: Duration,
        working_directory: &str,
    ) -> Plan {
        self.plan()
            .track(SiteCommandInstallerMilestones::PrepareExecution)
            .run_step(user.step(
                format!("cd {} && {command}", shell_quote(working_directory)),
                timeout,
            ))
            .track(SiteCommandInstallerMilestones::CommandComplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Milestones;

    #[test]
    fn milestones_have_stable_keys_labels_and_count() {
        use SiteCommandInstallerMilestones as M;
        assert_eq!(M::total_steps(), 2);
        assert_eq!(M::PrepareExecution.key(), "prepare_execution");
        assert_eq!(M::CommandComplete.step(), 2);
        assert_eq!(M::CommandComplete.label(), "Command complete");
    }

    #[test]
    fn plan_snapshot() {
        let p = SiteCommandInstaller.command_plan(
            &SiteUser::new(7, false),
            "php artisan migrate --force && echo \"done $HOME\"",
            Duration::from_secs(90),
            "/home/brokeforge/it's here",
        );
        insta::assert_snapshot!(p.to_string());
    }
}
