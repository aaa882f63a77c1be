//! Git for a site: the environment git runs with (deploy key, pinned known_hosts, never a prompt) and the
//! site's deploy key, generated once and sealed in the store.

use brokeforge_core::{Secret, shell_quote};
use brokeforge_store::{ServerSite, Store};

use super::common::{SiteUser, deploy_key_secret};
use super::config::{RepositoryConfig, SiteConfig};
use crate::base::PackageError;

/// The shell environment git runs with for a site: its deploy key, its pinned known_hosts, never a prompt.
pub fn git_env(user: &SiteUser, site_id: i64, domain: &str, remote: &RepositoryConfig) -> String {
    let mut env = String::from("export GIT_TERMINAL_PROMPT=0; ");
    if remote.transport == "ssh" {
        let ssh = format!(
            "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={}/.brokeforge/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=20",
            user.deploy_key_path(site_id),
            user.site_root(domain)
        );
        env.push_str(&format!("export GIT_SSH_COMMAND={}; ", shell_quote(&ssh)));
    }
    env
}

/// The site's deploy key: generated once, the private half sealed in the store, the public half in the
/// site's configuration (shown to the user).
pub async fn deploy_key(
    store: &Store,
    site: &ServerSite,
) -> Result<(String, Secret), PackageError> {
    let name = deploy_key_secret(site.id);
    let fresh = store.site(site.id).await?;
    if let (Some(private), Some(public)) = (
        store.service_secret(site.server_id, &name).await?,
        SiteConfig::of(&fresh).deploy_key_public,
    ) {
        return Ok((public, private));
    }
    let pair =
        brokeforge_ssh::keys::generate_ed25519(&format!("brokeforge-deploy@{}", site.domain))?;
    store
        .put_service_secret(site.server_id, &name, &pair.private_openssh)
        .await?;
    let public = pair.public_openssh.clone();
    SiteConfig::update(store, site.id, |c| {
        c.deploy_key_public = Some(public.clone())
    })
    .await?;
    Ok((pair.public_openssh, pair.private_openssh))
}
