//! Site Command Installer: runs one command in a site's directory as the app user (the spec's single-command
//! executor), returns what it printed, and keeps it in the site's command history.

use std::time::{Duration, Instant};

use brokeforge_core::time::now_ms;
use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{ServerSite, SiteCommandRecord};

use crate::base::executor::{Executor, RunContext};
use crate::base::{Package, PackageError, PackageInstaller, Plan, RunStep};
use crate::milestones;

milestones! {
    pub enum SiteCommandInstallerMilestones {
        PrepareExecution => ("prepare_execution", "Preparing command execution"),
        CommandComplete => ("command_complete", "Command complete"),
    }
}

pub struct SiteCommandInstaller {
    site: ServerSite,
}

/// Longest a site command may run.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl Package for SiteCommandInstaller {
    type Milestones = SiteCommandInstallerMilestones;
    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::User
    }
}

impl PackageInstaller for SiteCommandInstaller {}

impl SiteCommandInstaller {
    pub fn new(site: ServerSite) -> Self {
        SiteCommandInstaller { site }
    }

    /// Run `command` in the site's directory. A command that fails still returns a result (with its exit code,
    /// output and `success: false`) and is kept in the history; only a failure to reach the server is an error.
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        command: &str,
        timeout: Duration,
    ) -> Result<SiteCommandRecord, PackageError> {
        if command.trim().is_empty() {
            return Err(ValidationError::new("command", "cannot execute an empty command").into());
        }
        if command.contains('\0') {
            return Err(ValidationError::new("command", "must not contain NUL bytes").into());
        }
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(
                ValidationError::new("timeout", "must be between 1 and 3600 seconds").into(),
            );
        }
        if ctx.server.id != self.site.server_id {
            return Err(
                ValidationError::new("site", "the site does not belong to this server").into(),
            );
        }
        // The live release: commands see the code that is being served.
        let working_directory = format!(
            "{}/current",
            validate::absolute_path("document_root", &self.site.document_root)?
        );

        let ran_at = now_ms();
        let started = Instant::now();
        let plan = self.commands(command, timeout, &working_directory);
        let result = self.install(executor, ctx, plan).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let record = match result {
            Ok(report) => {
                let out = report.outputs.first();
                SiteCommandRecord {
                    id: 0,
                    site_id: self.site.id,
                    command: command.to_string(),
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
                site_id: self.site.id,
                command: command.to_string(),
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
        Ok(executor.store().record_site_command(&record).await?)
    }

    /// The plan: change into the site's directory and run the command as given (the user's own shell syntax).
    pub fn commands(&self, command: &str, timeout: Duration, working_directory: &str) -> Plan {
        self.plan()
            .track(SiteCommandInstallerMilestones::PrepareExecution)
            .run_step(RunStep {
                command: format!("cd {} && {command}", shell_quote(working_directory)),
                timeout,
                stdin: None,
                credential: None,
                private_output: false,
            })
            .track(SiteCommandInstallerMilestones::CommandComplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Milestones;
    use brokeforge_core::ServiceStatus;

    fn site() -> ServerSite {
        ServerSite {
            id: 7,
            server_id: 3,
            domain: "example.com".into(),
            document_root: "/home/brokeforge/example.com".into(),
            php_version: Some("8.2".into()),
            status: ServiceStatus::Active,
            configuration: serde_json::json!({}),
            created_at: 0,
            updated_at: 0,
        }
    }

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
        let p = SiteCommandInstaller::new(site()).commands(
            "php artisan migrate --force && echo \"done $HOME\"",
            Duration::from_secs(90),
            "/home/brokeforge/it's here",
        );
        insta::assert_snapshot!(p.to_string());
    }
}
