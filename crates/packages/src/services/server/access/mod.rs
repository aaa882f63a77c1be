//! Server Access Installer: gives BrokeForge its way into a server: the app user `brokeforge` and the `worker`
//! user, BrokeForge's public keys, a narrow sudoers entry, and hardened sshd. The same plan runs over SSH
//! (direct onboarding with the user's own root key) or as the one-line script the user pastes as root.

pub mod onboarding;
pub mod remover;

use brokeforge_core::{ConnectionStatus, CredentialKind, ServiceType, ValidationError, shell_quote};
use brokeforge_store::Store;
use serde::{Deserialize, Serialize};

use super::provision::{APT, ServerInstaller, ServerInstallerOptions};
use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, Step};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(ServerAccessInstaller);
    r.remover(remover::ServerAccessRemover);
}

milestones! {
    pub enum ServerAccessInstallerMilestones {
        CreateUsers => ("create_users", "Creating the brokeforge and worker users"),
        InstallKeys => ("install_keys", "Installing BrokeForge's SSH keys"),
        ConfigureSudo => ("configure_sudo", "Allowing the app user to reload web services"),
        HardenSsh => ("harden_ssh", "Hardening SSH"),
        Complete => ("complete", "Server connected"),
    }
}

/// Public keys BrokeForge generated for this server.
#[derive(Debug, Clone)]
pub struct AccessKeys {
    pub root: String,
    pub user: String,
    pub worker: String,
}

/// PHP versions whose FPM service the app user may reload.
const PHP_VERSIONS: &[&str] = &["7.4", "8.0", "8.1", "8.2", "8.3", "8.4", "8.5"];

/// Only the service commands the app user needs (no wildcards: sudo's `*` would match spaces, too).
pub fn sudoers() -> String {
    let mut cmds = vec![
        "/usr/bin/systemctl reload nginx".to_string(),
        "/usr/sbin/nginx -t".to_string(),
    ];
    for v in PHP_VERSIONS {
        cmds.push(format!("/usr/bin/systemctl reload php{v}-fpm"));
    }
    format!(
        "# Managed by BrokeForge: the app user may test and reload the web services, nothing else.\n\
         Cmnd_Alias BROKEFORGE_SERVICES = {}\n\
         brokeforge ALL=(root) NOPASSWD: BROKEFORGE_SERVICES\n",
        cmds.join(", \\\n    ")
    )
}

pub const SSHD_HARDENING: &str = "# Managed by BrokeForge: keys only, root by key only.\n\
PasswordAuthentication no\n\
KbdInteractiveAuthentication no\n\
PermitRootLogin prohibit-password\n\
PubkeyAuthentication yes\n\
# A client that vanished (a BrokeForge node that died) is dropped within 90 s, which releases the job lock\n\
# it held on this server.\n\
ClientAliveInterval 30\n\
ClientAliveCountMax 3\n";

pub struct ServerAccessInstaller;

/// Direct onboarding: connect with the user's own root key (trusting the host key on first use only when
/// allowed), then provision with these options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessRequest {
    pub trust_on_first_use: bool,
    pub options: ServerInstallerOptions,
}

/// The keys to install, and who installs them.
#[derive(Debug, Clone)]
pub struct AccessInput {
    pub keys: AccessKeys,
    pub credential: CredentialKind,
}

/// BrokeForge's public keys for a server.
pub async fn access_keys(store: &Store, server_id: i64) -> Result<AccessKeys, PackageError> {
    Ok(AccessKeys {
        root: store
            .credential(server_id, CredentialKind::Root)
            .await?
            .public_key,
        user: store
            .credential(server_id, CredentialKind::User)
            .await?
            .public_key,
        worker: store
            .credential(server_id, CredentialKind::Worker)
            .await?
            .public_key,
    })
}

impl Package for ServerAccessInstaller {
    type Milestones = ServerAccessInstallerMilestones;
    type Request = AccessRequest;
    type Input = AccessInput;
    const JOB: &'static str = "server_access_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        _request: &AccessRequest,
    ) -> Result<AccessInput, PackageError> {
        Ok(AccessInput {
            keys: access_keys(cx.store, cx.server.id).await?,
            credential: CredentialKind::Bootstrap,
        })
    }

    fn commands(&self, input: &AccessInput) -> Result<Plan, PackageError> {
        self.access_plan(&input.keys, input.credential)
    }
}

impl PackageInstaller for ServerAccessInstaller {
    /// Direct onboarding in one job: install access with the user's key, forget that key, then run base
    /// provisioning as BrokeForge's own root credential.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        request: &AccessRequest,
    ) -> Result<serde_json::Value, PackageError> {
        let store = executor.store();
        let server_id = ctx.server.id;
        let installed = async {
            let input = self
                .gather(&Gather::new(store, &ctx.server), request)
                .await?;
            self.install(executor, ctx, self.commands(&input)?).await
        }
        .await;
        // The user's own root key is forgotten whatever happened: BrokeForge keeps only its own keys. A failed
        // attempt needs the key given again.
        ctx.connections
            .drop_credential(CredentialKind::Bootstrap)
            .await;
        store
            .delete_credential(server_id, CredentialKind::Bootstrap)
            .await?;
        installed?;
        store
            .set_connection_status(server_id, ConnectionStatus::Connected)
            .await?;
        // The host key is pinned now (given, or learned on first use).
        let mut run = ctx.clone();
        run.server = store.server(server_id).await?;
        ServerInstaller
            .execute(executor, &run, &request.options)
            .await
    }
}

fn check_public_key(key: &str) -> Result<String, ValidationError> {
    let key = key.trim();
    if key.starts_with("ssh-ed25519 ") && !key.contains(['\n', '\r', '\'']) {
        Ok(key.to_string())
    } else {
        Err(ValidationError::new(
            "public_key",
            "BrokeForge's keys are single-line ssh-ed25519 keys",
        ))
    }
}

impl ServerAccessInstaller {
    /// The plan, run as `credential` (the user's bootstrap key for direct onboarding).
    pub fn access_plan(
        &self,
        keys: &AccessKeys,
        credential: CredentialKind,
    ) -> Result<Plan, PackageError> {
        use ServerAccessInstallerMilestones as M;
        let root = shell_quote(&check_public_key(&keys.root)?);
        let user = check_public_key(&keys.user)?;
        let worker = check_public_key(&keys.worker)?;
        let mut plan = self.plan();
        plan.credential = credential;
        let mut plan = plan
            .track(M::CreateUsers)
            .run(
                "for u in brokeforge worker; do \
                   id -u \"$u\" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash \"$u\"; \
                   usermod -p '*' \"$u\"; \
                 done",
            )
            .track(M::InstallKeys)
            .run(format!(
                "install -d -m 700 /root/.ssh && touch /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys && \
                 (grep -qxF {root} /root/.ssh/authorized_keys || printf '%s\\n' {root} >> /root/.ssh/authorized_keys)"
            ));
        // BrokeForge's key replaces whatever else is there (an old key after a rotation), except the keys
        // members put on the server themselves (marked `brokeforge-user-key:ID`): a re-run keeps those.
        for (name, key) in [("brokeforge", user), ("worker", worker)] {
            // As root in a directory the user owns: refuse one that leads elsewhere (a link to /root/.ssh),
            // and write a fresh temporary file (never a name the user could have planted); in a subshell,
            // as the one-line script runs the steps in one shell.
            plan = plan.run(format!(
                "(set -e; dir=/home/{name}/.ssh; install -d -m 700 -o {name} -g {name} \"$dir\"; \
                 if [ \"$(readlink -f -- \"$dir\")\" != \"$dir\" ]; then echo \"refusing to write into $dir: it leads elsewhere through a symbolic link\" >&2; exit 1; fi; \
                 f=\"$dir/authorized_keys\"; tmp=$(mktemp \"$dir/.brokeforge.XXXXXX\"); trap 'rm -f \"$tmp\"' EXIT; \
                 {{ printf '%s\\n' {key}; if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then grep -E ' brokeforge-user-key:[0-9]+$' \"$f\" || true; fi; }} > \"$tmp\"; \
                 chown {name}:{name} \"$tmp\"; chmod 600 \"$tmp\"; mv -f \"$tmp\" \"$f\"; trap - EXIT)",
                key = shell_quote(&key),
            ));
        }
        Ok(plan
            .track(M::ConfigureSudo)
            .run(format!("command -v sudo >/dev/null || {} install -y -qq sudo", APT))
            .put_file(FileStep::new("/etc/sudoers.d/brokeforge", FileContents::Text(sudoers()), 0o440).check("visudo -cqf \"$1\""))
            .track(M::HardenSsh)
            .run(
                "grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config.d' /etc/ssh/sshd_config || \
                 sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config",
            )
            .put_file(FileStep::new("/etc/ssh/sshd_config.d/01-brokeforge.conf", FileContents::Text(SSHD_HARDENING.into()), 0o644))
            .run(
                "mkdir -p /run/sshd && sshd -t && (systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || \
                 service ssh reload)",
            )
            .track(M::Complete))
    }

    /// The plan as a bash script for the user to run as root: each milestone reports to `callback_url`, a
    /// failing command reports `failed` (ERR trap), and the end reports the host key fingerprints to pin.
    /// Refuses a plan that carries secrets: the script holds public material only.
    pub fn script(&self, plan: &Plan, callback_url: &str) -> Result<String, PackageError> {
        if !plan.secrets.is_empty() {
            return Err(
                ValidationError::new("plan", "a provisioning script cannot carry secrets").into(),
            );
        }
        let mut out = String::new();
        out.push_str(&format!(
            r#"#!/usr/bin/env bash
# BrokeForge provisioning script: connects this server to BrokeForge. It holds only public keys.
# Each step reports back to BrokeForge; a failure is reported too.
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive
BF_CALLBACK={callback}
BF_STEP=start
bf_report() {{
  local msg
  msg=$(printf '%s' "${{3:-}}" | tr -d '"\\' | tr '\n\r\t' '   ' | cut -c1-500)
  curl -fsS -m 20 --retry 3 -H 'Content-Type: application/json' \
    -d "{{\"step\":\"$1\",\"status\":\"$2\",\"message\":\"$msg\"${{4:-}}}}" "$BF_CALLBACK" >/dev/null 2>&1 || true
}}
trap 'bf_report "$BF_STEP" failed "line $LINENO: $BASH_COMMAND exited with $?"; echo "BrokeForge: step $BF_STEP failed" >&2' ERR
# Everything runs inside a function, so bash has read the whole script before any command can read stdin.
bf_main() {{
if [ "$(id -u)" -ne 0 ]; then echo "Run this script as root." >&2; bf_report start failed "not run as root"; exit 1; fi
"#,
            callback = shell_quote(callback_url)
        ));
        for step in &plan.steps {
            match step {
                Step::Track { key, label, step } => {
                    out.push_str(&format!(
                        "\nBF_STEP={key}\necho \"[{step}/{}] {label}\"\nbf_report {key} in_progress\n",
                        plan.total_steps
                    ));
                }
                Step::Run(r) => {
                    if r.stdin.is_some() {
                        return Err(ValidationError::new(
                            "plan",
                            "a provisioning script cannot feed stdin",
                        )
                        .into());
                    }
                    out.push_str(&r.command);
                    out.push('\n');
                }
                Step::PutFile(f) => match &f.contents {
                    FileContents::Text(text) => {
                        let b64 = base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            text.as_bytes(),
                        );
                        out.push_str(
                            &f.install_command(&format!("printf '%s' '{b64}' | base64 -d")),
                        );
                        out.push('\n');
                    }
                    FileContents::Secret(_) => {
                        return Err(ValidationError::new(
                            "plan",
                            "a provisioning script cannot carry secrets",
                        )
                        .into());
                    }
                },
                // The panel applies store changes itself when the script reports completion.
                Step::Record(_) => {}
            }
        }
        out.push_str(
            r#"
host_keys=$(for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$f"; done | awk '{printf "%s\"%s %s\"", (NR>1?",":""), $NF, $2}')
bf_report complete completed "" ",\"host_keys\":[$host_keys]"
echo "This server is now connected to BrokeForge."
echo "Its SSH host keys (compare them with the fingerprint on the server's page in BrokeForge):"
for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$f"; done
}
bf_main "$@"
"#,
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AccessKeys {
        AccessKeys {
            root: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIRoot brokeforge-root@server-1".into(),
            user: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser brokeforge-user@server-1".into(),
            worker: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIWork brokeforge-worker@server-1".into(),
        }
    }

    #[test]
    fn plan_and_script_snapshots() {
        let plan = ServerAccessInstaller
            .access_plan(&keys(), CredentialKind::Bootstrap)
            .unwrap();
        assert_eq!(plan.credential, CredentialKind::Bootstrap);
        insta::assert_snapshot!("plan", plan.to_string());
        let script = ServerAccessInstaller
            .script(&plan, "http://panel.example/provision/abc/callback")
            .unwrap();
        insta::assert_snapshot!("script", script);
        assert!(!script.contains("PRIVATE KEY"));
    }

    /// The app user's keys are rewritten with BrokeForge's key first, members' marked keys kept, anything
    /// else (an old key of BrokeForge's) gone. The step's own shell runs here on a copy of the file.
    #[test]
    fn a_rerun_keeps_members_keys() {
        let plan = ServerAccessInstaller
            .access_plan(&keys(), CredentialKind::Root)
            .unwrap();
        let step = plan
            .steps
            .iter()
            .find_map(|s| match s {
                Step::Run(r) if r.command.contains("dir=/home/brokeforge/.ssh;") => {
                    Some(r.command.clone())
                }
                _ => None,
            })
            .expect("a step writes the app user's keys");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let file = dir.path().join(".ssh/authorized_keys");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(
            &file,
            "ssh-ed25519 AAAAOld brokeforge-user@old\nssh-ed25519 AAAAAnn ann@laptop brokeforge-user-key:7\n",
        )
        .unwrap();
        let me = format!(
            "{}:{}",
            String::from_utf8(std::process::Command::new("id").arg("-u").output().unwrap().stdout)
                .unwrap()
                .trim(),
            String::from_utf8(std::process::Command::new("id").arg("-g").output().unwrap().stdout)
                .unwrap()
                .trim()
        );
        // The directory is the temporary one, as it really is (no link in its path).
        let home = std::fs::canonicalize(home).unwrap();
        let home = home.to_str().unwrap();
        let local = step
            .replace("/home/brokeforge", home)
            .replace("-o brokeforge -g brokeforge ", "")
            .replace("chown brokeforge:brokeforge", &format!("chown {me}"));
        let out = std::process::Command::new("bash")
            .args(["-c", &local])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{}\nssh-ed25519 AAAAAnn ann@laptop brokeforge-user-key:7\n", keys().user)
        );
        // Run again: the same file.
        assert!(std::process::Command::new("bash").args(["-c", &local]).status().unwrap().success());
        assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
    }

    #[test]
    fn keys_must_be_single_line_ed25519() {
        let mut k = keys();
        k.user = "ssh-ed25519 AAAA\nPermitRootLogin yes".into();
        assert!(
            ServerAccessInstaller
                .access_plan(&k, CredentialKind::Root)
                .is_err()
        );
        k.user = "ssh-rsa AAAA".into();
        assert!(
            ServerAccessInstaller
                .access_plan(&k, CredentialKind::Root)
                .is_err()
        );
    }

    #[test]
    fn sudoers_has_no_wildcards_or_shells() {
        let s = sudoers();
        assert!(
            !s.contains('*')
                && !s.contains("ALL=(ALL)")
                && !s.contains("/bin/sh")
                && !s.contains("bash")
        );
        assert!(s.contains("/usr/bin/systemctl reload php8.2-fpm"));
    }
}
