//! A user's own SSH key on a server (`UserKeyInstaller`, `UserKeyRemover`): one line in the Unix user's
//! `authorized_keys`, rebuilt from the parsed key (so nothing but the key reaches the file) and marked
//! `brokeforge-user-key:ID`, so removal takes exactly that line away and leaves every other key. Each file is
//! edited as its own user: the app user's by the app user, root's by root.

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(UserKeyInstaller);
    r.remover(UserKeyRemover);
}

milestones! {
    pub enum UserKeyInstallerMilestones {
        InstallKey => ("install_key", "Adding the SSH key"),
    }
}

milestones! {
    pub enum UserKeyRemoverMilestones {
        RemoveKey => ("remove_key", "Removing the SSH key"),
    }
}

/// The Unix users a personal key may be put on.
pub const UNIX_USERS: [&str; 2] = ["brokeforge", "root"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserKeyRequest {
    pub key_id: i64,
    /// `brokeforge` or `root`.
    pub unix_user: String,
}

/// A checked request: the line to write (installs) and where.
pub struct UserKeyChange {
    pub key_id: i64,
    pub unix_user: String,
    pub line: String,
    pub owner: i64,
}

/// `type base64`: the key as OpenSSH writes it, without the comment the user gave it.
pub fn normalize(public_key: &str) -> Result<(String, String), ValidationError> {
    let key = brokeforge_ssh::keys::parse_public(public_key)
        .map_err(|e| ValidationError::new("public_key", e.to_string()))?;
    let mut bare = key.clone();
    bare.set_comment("");
    let text = bare
        .to_openssh()
        .map_err(|e| ValidationError::new("public_key", e.to_string()))?;
    let fingerprint = brokeforge_ssh::keys::fingerprint(&text)
        .map_err(|e| ValidationError::new("public_key", e.to_string()))?;
    Ok((text.trim().to_string(), fingerprint))
}

fn marker(key_id: i64) -> String {
    format!("brokeforge-user-key:{key_id}")
}

fn check_unix_user(u: &str) -> Result<(&'static str, CredentialKind), ValidationError> {
    match u {
        "brokeforge" => Ok(("\"$HOME/.ssh/authorized_keys\"", CredentialKind::User)),
        "root" => Ok(("/root/.ssh/authorized_keys", CredentialKind::Root)),
        _ => Err(ValidationError::new("user", "brokeforge or root")),
    }
}

/// Shell that removes the lines marked for `key_id` from the file (others stay; owner and mode kept).
fn drop_marked(file: &str, key_id: i64) -> String {
    let pattern = shell_quote(&format!(" {}$", marker(key_id)));
    format!(
        "f={file}; if [ -f \"$f\" ]; then t=$(mktemp) && {{ grep -v -- {pattern} \"$f\" > \"$t\" || true; }} && cat \"$t\" > \"$f\"; rm -f \"$t\"; fi"
    )
}

fn step(command: String, credential: CredentialKind) -> RunStep {
    RunStep {
        command,
        timeout: std::time::Duration::from_secs(60),
        stdin: None,
        credential: Some(credential),
        private_output: false,
    }
}

pub struct UserKeyInstaller;
pub struct UserKeyRemover;

impl Package for UserKeyInstaller {
    type Milestones = UserKeyInstallerMilestones;
    type Request = UserKeyRequest;
    type Input = UserKeyChange;
    const JOB: &'static str = "user_key_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &UserKeyRequest) -> Result<UserKeyChange, PackageError> {
        check_unix_user(&r.unix_user)?;
        let key = cx.store.user_key(r.key_id).await?;
        let (bare, _) = normalize(&key.public_key)?;
        Ok(UserKeyChange {
            key_id: key.id,
            unix_user: r.unix_user.clone(),
            line: format!("{bare} {}", marker(key.id)),
            owner: key.user_id,
        })
    }

    fn commands(&self, i: &UserKeyChange) -> Result<Plan, PackageError> {
        let (file, credential) = check_unix_user(&i.unix_user)?;
        let dir = if i.unix_user == "root" {
            "/root/.ssh"
        } else {
            "\"$HOME/.ssh\""
        };
        Ok(self.plan().track(UserKeyInstallerMilestones::InstallKey).run_step(step(
            format!(
                "install -d -m 700 {dir} && touch {file} && chmod 600 {file} && {} && printf '%s\\n' {} >> {file}",
                drop_marked(file, i.key_id),
                shell_quote(&i.line)
            ),
            credential,
        )))
    }
}

impl PackageInstaller for UserKeyInstaller {
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &UserKeyRequest,
    ) -> Result<Value, PackageError> {
        let store = executor.store();
        let i = self.gather(&Gather::new(store, &ctx.server), request).await?;
        let result = self.install(executor, ctx, self.commands(&i)?).await;
        let status = if result.is_ok() { "active" } else { "failed" };
        store
            .put_key_deployment(ctx.server.id, i.key_id, i.owner, &i.unix_user, status)
            .await?;
        result?;
        Ok(serde_json::json!({"key_id": i.key_id, "user": i.unix_user}))
    }
}

impl Package for UserKeyRemover {
    type Milestones = UserKeyRemoverMilestones;
    type Request = UserKeyRequest;
    type Input = UserKeyChange;
    const JOB: &'static str = "user_key_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    /// Works after the key itself was deleted: the marker is all it needs.
    async fn gather(&self, _cx: &Gather<'_>, r: &UserKeyRequest) -> Result<UserKeyChange, PackageError> {
        check_unix_user(&r.unix_user)?;
        Ok(UserKeyChange {
            key_id: r.key_id,
            unix_user: r.unix_user.clone(),
            line: String::new(),
            owner: 0,
        })
    }

    fn commands(&self, i: &UserKeyChange) -> Result<Plan, PackageError> {
        let (file, credential) = check_unix_user(&i.unix_user)?;
        Ok(self
            .plan()
            .track(UserKeyRemoverMilestones::RemoveKey)
            .run_step(step(drop_marked(file, i.key_id), credential)))
    }
}

impl PackageRemover for UserKeyRemover {
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &UserKeyRequest,
    ) -> Result<Value, PackageError> {
        let store = executor.store();
        let i = self.gather(&Gather::new(store, &ctx.server), request).await?;
        self.remove(executor, ctx, self.commands(&i)?).await?;
        store
            .delete_key_deployment(ctx.server.id, i.key_id, &i.unix_user)
            .await?;
        Ok(serde_json::json!({"key_id": i.key_id, "user": i.unix_user, "removed": true}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_rebuilt_and_removed_by_their_mark_only() {
        let kp = brokeforge_ssh::keys::generate_ed25519("laptop of ann").unwrap();
        let (bare, fp) = normalize(&kp.public_openssh).unwrap();
        assert!(bare.starts_with("ssh-ed25519 ") && !bare.contains("ann"), "{bare}");
        assert!(fp.starts_with("SHA256:"));
        for bad in [
            "ssh-ed25519 AAAA'; reboot #",
            "not a key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\ncommand=\"reboot\" ssh-ed25519 AAAA",
        ] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
        let change = UserKeyChange {
            key_id: 7,
            unix_user: "brokeforge".into(),
            line: format!("{bare} brokeforge-user-key:7"),
            owner: 1,
        };
        let add = UserKeyInstaller.commands(&change).unwrap().to_string();
        assert!(add.contains("grep -v -- ' brokeforge-user-key:7$'"), "{add}");
        assert!(add.contains("brokeforge-user-key:7' >> \"$HOME/.ssh/authorized_keys\""), "{add}");
        let rm = UserKeyRemover.commands(&change).unwrap().to_string();
        assert!(rm.contains("' brokeforge-user-key:7$'") && !rm.contains("printf"), "{rm}");
        assert!(check_unix_user("worker").is_err());
    }
}
