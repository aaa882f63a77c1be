//! Personal SSH keys: a user adds public keys to their account and puts them on servers they may reach (as
//! the app user, or as root when their role allows root-level changes). Removing a key, or a member from a
//! team, takes the key off every server it was put on (queued jobs).

use brokeforge_packages::base::package::job;
use brokeforge_packages::services::server::user_keys::{
    UNIX_USERS, UserKeyInstaller, UserKeyRemover, UserKeyRequest, normalize,
};
use brokeforge_store::{Job, KeyDeployment, Server, User, UserSshKey};

use crate::policy::Action;
use crate::{Domain, DomainError, DomainResult};

impl Domain {
    pub async fn add_ssh_key(
        &self,
        user: &User,
        name: &str,
        public_key: &str,
    ) -> DomainResult<UserSshKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid("name", "1 to 64 characters"));
        }
        let (bare, fingerprint) = normalize(public_key)?;
        Ok(self
            .store
            .add_user_key(user.id, name, &bare, &fingerprint)
            .await?)
    }

    /// The user's keys with where each is deployed.
    pub async fn ssh_keys(
        &self,
        user: &User,
    ) -> DomainResult<Vec<(UserSshKey, Vec<KeyDeployment>)>> {
        let deployments = self.store.key_deployments(None, Some(user.id)).await?;
        Ok(self
            .store
            .user_keys(user.id)
            .await?
            .into_iter()
            .map(|k| {
                let on = deployments
                    .iter()
                    .filter(|d| d.key_id == k.id)
                    .cloned()
                    .collect();
                (k, on)
            })
            .collect())
    }

    async fn own_key(&self, user: &User, key: &str) -> DomainResult<UserSshKey> {
        let key = key.trim();
        self.store
            .user_keys(user.id)
            .await?
            .into_iter()
            .find(|k| k.id.to_string() == key || k.name == key || k.fingerprint == key)
            .ok_or_else(|| DomainError::invalid("key", format!("you have no SSH key {key}")))
    }

    /// Put one of the user's keys on `server` for `unix_user` (the route checked the user may run commands
    /// there; root needs root-level rights).
    pub async fn deploy_ssh_key(
        &self,
        user: &User,
        server: &Server,
        key: &str,
        unix_user: &str,
    ) -> DomainResult<Job> {
        let unix_user = unix_user.trim();
        if !UNIX_USERS.contains(&unix_user) {
            return Err(DomainError::invalid("user", "brokeforge or root"));
        }
        if unix_user == "root" && !self.may(user, server, Action::ServerManage).await? {
            return Err(DomainError::Forbidden(
                "your role may not put keys on root: use the brokeforge user".into(),
            ));
        }
        let key = self.own_key(user, key).await?;
        self.store
            .put_key_deployment(server.id, key.id, user.id, unix_user, "installing")
            .await?;
        let req = UserKeyRequest {
            key_id: key.id,
            unix_user: unix_user.to_string(),
        };
        Ok(self
            .store
            .enqueue(&job::<UserKeyInstaller>(server.id, &req)?)
            .await?)
    }

    /// Take one of the user's keys off `server`.
    pub async fn undeploy_ssh_key(
        &self,
        user: &User,
        server: &Server,
        key: &str,
    ) -> DomainResult<Vec<Job>> {
        let key = self.own_key(user, key).await?;
        let on: Vec<KeyDeployment> = self
            .store
            .key_deployments(Some(server.id), Some(user.id))
            .await?
            .into_iter()
            .filter(|d| d.key_id == key.id)
            .collect();
        if on.is_empty() {
            return Err(DomainError::invalid(
                "key",
                format!("{} is not on {}", key.name, server.name),
            ));
        }
        self.queue_key_removals(&on).await
    }

    /// Delete a key: it leaves every server first (queued).
    pub async fn remove_ssh_key(&self, user: &User, key: &str) -> DomainResult<Vec<Job>> {
        let key = self.own_key(user, key).await?;
        let on: Vec<KeyDeployment> = self
            .store
            .key_deployments(None, Some(user.id))
            .await?
            .into_iter()
            .filter(|d| d.key_id == key.id)
            .collect();
        let jobs = self.queue_key_removals(&on).await?;
        self.store.delete_user_key(user.id, key.id).await?;
        Ok(jobs)
    }

    /// Queue the removal of these deployments (each marked `removing` until its job is done).
    pub(crate) async fn queue_key_removals(&self, on: &[KeyDeployment]) -> DomainResult<Vec<Job>> {
        let mut jobs = Vec::new();
        for d in on {
            self.store
                .put_key_deployment(d.server_id, d.key_id, d.user_id, &d.unix_user, "removing")
                .await?;
            let req = UserKeyRequest {
                key_id: d.key_id,
                unix_user: d.unix_user.clone(),
            };
            jobs.push(
                self.store
                    .enqueue(&job::<UserKeyRemover>(d.server_id, &req)?)
                    .await?,
            );
        }
        Ok(jobs)
    }

    /// The keys on `server`, for its page.
    pub async fn server_ssh_keys(
        &self,
        server: &Server,
    ) -> DomainResult<Vec<(KeyDeployment, Option<UserSshKey>)>> {
        let mut out = Vec::new();
        for d in self.store.key_deployments(Some(server.id), None).await? {
            let key = self.store.user_key(d.key_id).await.ok();
            out.push((d, key));
        }
        Ok(out)
    }
}
