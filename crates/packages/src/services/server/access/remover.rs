//! Server Access Remover: takes BrokeForge's way into a server away again, before the server is forgotten.
//! BrokeForge's keys leave the app user's, the worker's and root's `authorized_keys` (other keys there stay),
//! the app user's sudo rights go, and so do the marks BrokeForge's jobs leave. The users themselves stay:
//! they own the sites' files and run their PHP, which keep working. Each user's own file is edited as that
//! user (never by root through a path the user controls); root's key goes last, so the job keeps its way in
//! until the end.

use brokeforge_core::{CredentialKind, ServiceType, shell_quote};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AccessKeys, access_keys, check_public_key};
use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageRemover};
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

milestones! {
    pub enum ServerAccessRemoverMilestones {
        RemoveUserKeys => ("remove_user_keys", "Removing BrokeForge's keys from the app and worker users"),
        RemoveSudo => ("remove_sudo", "Removing the app user's sudo rights"),
        RemoveRootKey => ("remove_root_key", "Removing BrokeForge's root key"),
    }
}

pub struct ServerAccessRemover;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessRemoval {
    /// Forget the server in BrokeForge once its access is gone.
    pub forget: bool,
}

/// Shell that drops the line `key` from `file` in place (the file keeps its owner, mode and other keys).
fn drop_key(file: &str, key: &str) -> String {
    let key = shell_quote(key);
    format!(
        "f={file}; if [ -f \"$f\" ]; then t=$(mktemp) && {{ grep -vxF {key} \"$f\" > \"$t\" || true; }} && cat \"$t\" > \"$f\"; rm -f \"$t\"; fi"
    )
}

impl Package for ServerAccessRemover {
    type Milestones = ServerAccessRemoverMilestones;
    type Request = AccessRemoval;
    type Input = AccessKeys;
    const JOB: &'static str = "server_access_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        _request: &AccessRemoval,
    ) -> Result<AccessKeys, PackageError> {
        access_keys(cx.store, cx.server.id).await
    }

    fn commands(&self, keys: &AccessKeys) -> Result<Plan, PackageError> {
        use ServerAccessRemoverMilestones as M;
        let as_user = |credential, command: String| RunStep {
            command,
            timeout: std::time::Duration::from_secs(60),
            stdin: None,
            credential: Some(credential),
            private_output: false,
        };
        Ok(self
            .plan()
            .track(M::RemoveUserKeys)
            .run_step(as_user(
                CredentialKind::User,
                format!(
                    "{}; rm -rf \"$HOME/.brokeforge-run\"",
                    drop_key("\"$HOME/.ssh/authorized_keys\"", &check_public_key(&keys.user)?)
                ),
            ))
            .run_step(as_user(
                CredentialKind::Worker,
                format!(
                    "{}; rm -rf \"$HOME/.brokeforge-run\"",
                    drop_key("\"$HOME/.ssh/authorized_keys\"", &check_public_key(&keys.worker)?)
                ),
            ))
            .track(M::RemoveSudo)
            .run("rm -f /etc/sudoers.d/brokeforge")
            .track(M::RemoveRootKey)
            .run(format!(
                "{}; rm -rf /root/.brokeforge-run",
                drop_key("/root/.ssh/authorized_keys", &check_public_key(&keys.root)?)
            )))
    }
}

impl PackageRemover for ServerAccessRemover {
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &AccessRemoval,
    ) -> Result<Value, PackageError> {
        let store = executor.store();
        let keys = self
            .gather(&Gather::new(store, &ctx.server), request)
            .await?;
        self.remove(executor, ctx, self.commands(&keys)?).await?;
        // The connections still open were the last ones this job may use.
        ctx.connections.close().await;
        if request.forget {
            // Its jobs, events and output go with it.
            store.delete_server(ctx.server.id).await?;
        } else {
            store
                .set_connection_status(ctx.server.id, brokeforge_core::ConnectionStatus::Failed)
                .await?;
        }
        Ok(serde_json::json!({"access_removed": true, "forgotten": request.forget}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_removes_only_brokeforges_lines_and_root_last() {
        let keys = AccessKeys {
            root: "ssh-ed25519 AAAARoot brokeforge-root@s".into(),
            user: "ssh-ed25519 AAAAUser brokeforge-user@s".into(),
            worker: "ssh-ed25519 AAAAWork brokeforge-worker@s".into(),
        };
        let plan = ServerAccessRemover.commands(&keys).unwrap();
        let text = plan.to_string();
        let root_at = text.find("AAAARoot").unwrap();
        assert!(text.find("AAAAUser").unwrap() < root_at);
        assert!(text.find("sudoers.d/brokeforge").unwrap() < root_at);
        assert!(text.contains("grep -vxF 'ssh-ed25519 AAAARoot brokeforge-root@s'"), "{text}");
        // A key that could break out of its quotes is refused.
        let bad = AccessKeys {
            user: "ssh-ed25519 AAAA'; rm -rf / #".into(),
            ..keys
        };
        assert!(ServerAccessRemover.commands(&bad).is_err());
    }

    /// The shell really drops only BrokeForge's line, and leaves a missing file alone.
    #[test]
    fn drop_key_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        std::fs::write(&file, "ssh-ed25519 AAAAmine me@laptop\nssh-ed25519 AAAAbf bf\n").unwrap();
        let run = |f: &std::path::Path| {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(drop_key(&shell_quote(&f.display().to_string()), "ssh-ed25519 AAAAbf bf"))
                .status()
                .unwrap();
            assert!(status.success());
        };
        run(&file);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "ssh-ed25519 AAAAmine me@laptop\n"
        );
        run(&dir.path().join("missing"));
        assert!(!dir.path().join("missing").exists());
    }
}
