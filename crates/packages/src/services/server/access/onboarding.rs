//! Adding a server and connecting it: by the one-line script (callbacks authenticated by a one-time token)
//! or directly with the user's own root key.

use std::time::Duration;

use brokeforge_core::{
    CredentialKind, EventStatus, ProvisionStatus, ProvisionType, Secret,
    ServiceType, ValidationError, validate,
};
use brokeforge_store::{Job, JobTarget, NewEvent, NewJob, NewServer, Server, Store};
use serde::Deserialize;

use super::{AccessRequest, ServerAccessInstaller, ServerAccessInstallerMilestones, access_keys};
use crate::base::package::job;
use crate::base::{Milestones, PackageError};
use crate::services::server::provision::{ServerInstaller, ServerInstallerOptions};

/// How long the one-line script's token stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct AddServer {
    pub user_id: i64,
    pub name: String,
    pub public_ip: String,
    pub ssh_port: i64,
    /// `SHA256:...` to pin now; otherwise the script reports it (or trust on first use pins it).
    pub host_key_fingerprint: Option<String>,
}

#[derive(Debug)]
pub struct NewServerResult {
    pub server: Server,
    /// The provisioning token, shown once (only its hash is stored).
    pub token: String,
}

/// Validate, create the server, generate its key pairs (root, brokeforge, worker) and a provisioning token.
/// Bad input changes nothing; a failure after the server was created removes it again.
pub async fn add_server(store: &Store, input: &AddServer) -> Result<NewServerResult, PackageError> {
    let name = validate::server_name(&input.name)?;
    let public_ip = validate::host(&input.public_ip)?;
    let ssh_port = validate::port(input.ssh_port)?;
    let fingerprint = match input
        .host_key_fingerprint
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        Some(fp) => Some(brokeforge_ssh::keys::validate_fingerprint(fp)?),
        None => None,
    };
    let server = store
        .create_server(&NewServer {
            user_id: input.user_id,
            name: name.clone(),
            public_ip,
            ssh_port,
            host_key_fingerprint: fingerprint,
        })
        .await?;
    let finish = async {
        for kind in [
            CredentialKind::Root,
            CredentialKind::User,
            CredentialKind::Worker,
        ] {
            let pair = brokeforge_ssh::keys::generate_ed25519(&format!(
                "brokeforge-{kind}@server-{}",
                server.id
            ))?;
            store
                .put_credential(server.id, kind, &pair.public_openssh, &pair.private_openssh)
                .await?;
        }
        Ok::<_, PackageError>(
            store
                .create_provision_token(server.id, TOKEN_LIFETIME)
                .await?,
        )
    };
    match finish.await {
        Ok(token) => Ok(NewServerResult { server, token }),
        Err(e) => {
            let _ = store.delete_server(server.id).await;
            Err(e)
        }
    }
}

/// The script for a valid, unexpired, unused token (fetching uses it up); `None` otherwise.
pub async fn provisioning_script(
    store: &Store,
    token: &str,
    callback_url: &str,
) -> Result<Option<String>, PackageError> {
    let Some(server_id) = store
        .use_provision_token(token, brokeforge_store::TokenUse::Script)
        .await?
    else {
        return Ok(None);
    };
    let plan = ServerAccessInstaller
        .access_plan(&access_keys(store, server_id).await?, CredentialKind::Root)?;
    let script = ServerAccessInstaller.script(&plan, callback_url)?;
    store
        .set_provision_status(server_id, ProvisionStatus::Installing)
        .await?;
    Ok(Some(script))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    InProgress,
    Completed,
    Failed,
}

/// What the script reports.
#[derive(Debug, Clone, Deserialize)]
pub struct Callback {
    pub step: String,
    pub status: CallbackStatus,
    #[serde(default)]
    pub message: Option<String>,
    /// `"(ED25519) SHA256:..."` for each host key, with the final `completed` report.
    #[serde(default)]
    pub host_keys: Vec<String>,
}

fn script_event(server_id: i64, m: ServerAccessInstallerMilestones) -> NewEvent {
    NewEvent {
        server_id,
        job_id: None,
        attempt: None,
        service_type: ServiceType::Server,
        provision_type: ProvisionType::Install,
        milestone: m.key().into(),
        label: m.label().into(),
        current_step: m.step() as i64,
        total_steps: ServerAccessInstallerMilestones::total_steps() as i64,
        details: serde_json::json!({"source": "script"}),
    }
}

/// Record a report from the script. Returns `Ok(None)` when the token does not allow callbacks (unknown,
/// expired, not fetched, or finished), otherwise the job that base provisioning was queued as, if any.
pub async fn handle_callback(
    store: &Store,
    token: &str,
    cb: &Callback,
) -> Result<Option<Option<Job>>, PackageError> {
    let Some(server_id) = store
        .use_provision_token(token, brokeforge_store::TokenUse::Callback)
        .await?
    else {
        return Ok(None);
    };
    let milestone = ServerAccessInstallerMilestones::all()
        .iter()
        .copied()
        .find(|m| m.key() == cb.step);
    if milestone.is_none() && cb.step != "start" {
        return Err(ValidationError::new("step", format!("unknown step `{}`", cb.step)).into());
    }
    let message: String = cb
        .message
        .as_deref()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(500)
        .collect();
    let open = store.open_script_event(server_id).await?;
    match (cb.status, milestone) {
        (CallbackStatus::InProgress, Some(m)) => {
            store
                .advance_event(open.as_ref(), &script_event(server_id, m))
                .await?;
            Ok(Some(None))
        }
        (CallbackStatus::InProgress, None) => Ok(Some(None)),
        (CallbackStatus::Failed, m) => {
            let reason = format!(
                "the provisioning script failed at step `{}`: {message}",
                cb.step
            );
            match open {
                Some(ev) => {
                    store
                        .finish_event(ev.id, EventStatus::Failed, Some(&reason))
                        .await?
                }
                None => {
                    let m = m.unwrap_or(ServerAccessInstallerMilestones::CreateUsers);
                    let ev = store.start_event(&script_event(server_id, m)).await?;
                    store
                        .finish_event(ev.id, EventStatus::Failed, Some(&reason))
                        .await?;
                }
            }
            store
                .set_provision_status(server_id, ProvisionStatus::Failed)
                .await?;
            store.finish_provision_token(server_id).await?;
            Ok(Some(None))
        }
        (CallbackStatus::Completed, _) => {
            let server = store.server(server_id).await?;
            let reported = ["ED25519", "ECDSA", "RSA"].iter().find_map(|kind| {
                cb.host_keys
                    .iter()
                    .find(|k| k.contains(kind))
                    .and_then(|k| k.split_whitespace().find(|w| w.starts_with("SHA256:")))
            });
            let Some(reported) = reported
                .map(brokeforge_ssh::keys::validate_fingerprint)
                .transpose()?
            else {
                return Err(ValidationError::new(
                    "host_keys",
                    "the script reported no SSH host key",
                )
                .into());
            };
            let fail = |reason: String| async move {
                if let Some(ev) = store.open_script_event(server_id).await? {
                    store
                        .finish_event(ev.id, EventStatus::Failed, Some(&reason))
                        .await?;
                }
                store
                    .set_provision_status(server_id, ProvisionStatus::Failed)
                    .await?;
                store.finish_provision_token(server_id).await?;
                Err::<Option<Option<Job>>, PackageError>(
                    ValidationError::new("host_keys", reason).into(),
                )
            };
            match &server.host_key_fingerprint {
                Some(pinned) if *pinned != reported => {
                    return fail(format!(
                        "the server reported host key {reported}, but {pinned} was pinned when it was added: not connecting"
                    ))
                    .await;
                }
                Some(_) => {}
                None => store.pin_host_key(server_id, Some(&reported)).await?,
            }
            if let Some(ev) = store.open_script_event(server_id).await? {
                store
                    .finish_event(ev.id, EventStatus::Completed, None)
                    .await?;
            }
            store.finish_provision_token(server_id).await?;
            let job = store
                .enqueue(&NewJob {
                    target: Some(JobTarget::Server),
                    ..job::<ServerInstaller>(server_id, &ServerInstallerOptions::default())?
                })
                .await?;
            Ok(Some(Some(job)))
        }
    }
}

/// Direct onboarding: keep the user's root key (sealed) just long enough to install BrokeForge's keys, then
/// provision. With neither a pinned fingerprint nor `trust_on_first_use`, the job refuses to connect.
pub async fn start_direct_onboarding(
    store: &Store,
    server_id: i64,
    root_key: &Secret,
    trust_on_first_use: bool,
) -> Result<Job, PackageError> {
    let key = brokeforge_ssh::keys::parse_private(root_key)?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| ValidationError::new("root_key", format!("unusable key: {e}")))?;
    store
        .put_credential(server_id, CredentialKind::Bootstrap, &public, root_key)
        .await?;
    let request = AccessRequest {
        trust_on_first_use,
        ..Default::default()
    };
    Ok(store
        .enqueue(&NewJob {
            target: Some(JobTarget::Server),
            ..job::<ServerAccessInstaller>(server_id, &request)?
        })
        .await?)
}
