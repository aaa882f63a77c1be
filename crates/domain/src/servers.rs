//! Servers: adding one (with the one-line script, or directly with the user's root key), its provisioning
//! script, its pinned host key, forgetting it, and installing or removing catalogue packages on it.

use std::collections::BTreeMap;

use brokeforge_core::{ProvisionType, Secret};
use brokeforge_packages::catalogue;
use brokeforge_packages::services::server::access::onboarding::{
    AddServer, TOKEN_LIFETIME, add_server, start_direct_onboarding,
};
use brokeforge_store::{Job, ProvisionEvent, Server, ServerService, ServerSite, User};
use serde::{Deserialize, Serialize};

use crate::{Domain, DomainError, DomainResult};

/// What a user gives to add a server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct NewServer {
    pub name: String,
    pub public_ip: String,
    pub ssh_port: Option<i64>,
    pub host_key_fingerprint: Option<String>,
    /// An existing root private key: BrokeForge connects itself (direct onboarding).
    pub root_key: Option<String>,
    pub trust_on_first_use: bool,
    /// The team it belongs to (its id or name); the user's personal team when left out.
    pub team: Option<String>,
}

/// A server just added: the one-line script, and the onboarding job when BrokeForge connects itself.
#[derive(Debug)]
pub struct AddedServer {
    pub server: Server,
    pub script: String,
    pub job: Option<Job>,
}

/// The one-line command a user runs as root on the new server.
pub fn script_command(base_url: &str, token: &str) -> String {
    format!("curl -fsSL {base_url}/provision/{token} | sudo bash")
}

impl Domain {
    /// A server of one of the user's teams, if their role there allows `action`: a server of another team
    /// answers "not found", an action the role does not allow "forbidden".
    pub async fn owned_server(
        &self,
        user: &User,
        id: i64,
        action: crate::policy::Action,
    ) -> DomainResult<Server> {
        let (server, role) = self.store.server_for_member(user.id, id).await?;
        if !crate::policy::allows(role, action) {
            return Err(DomainError::Forbidden(format!(
                "your role in this server's team ({role}) may not {}",
                action.describe()
            )));
        }
        if !user.two_factor {
            let team = self.store.team(server.team_id).await?;
            if team.require_two_factor {
                return Err(DomainError::Forbidden(format!(
                    "team {} requires two-factor sign-in: turn it on in your account first",
                    team.name
                )));
            }
        }
        Ok(server)
    }

    /// Whether the user's role in `server`'s team allows `action` (for pages that show parts by role).
    pub async fn may(
        &self,
        user: &User,
        server: &Server,
        action: crate::policy::Action,
    ) -> DomainResult<bool> {
        let (_, role) = self.store.server_for_member(user.id, server.id).await?;
        Ok(crate::policy::allows(role, action))
    }

    /// A page of the user's servers after `after` (by id), each with its services: two statements.
    pub async fn servers_page(
        &self,
        user: &User,
        after: i64,
        limit: i64,
        filter: &brokeforge_store::ServerFilter<'_>,
    ) -> DomainResult<Vec<(Server, Vec<ServerService>)>> {
        let servers = self
            .store
            .servers_page(user.id, after, limit, filter)
            .await?;
        let ids: Vec<i64> = servers.iter().map(|s| s.id).collect();
        let mut by_server: std::collections::HashMap<i64, Vec<ServerService>> = Default::default();
        for v in self.store.services_of_servers(&ids).await? {
            by_server.entry(v.server_id).or_default().push(v);
        }
        Ok(servers
            .into_iter()
            .map(|s| {
                let services = by_server.remove(&s.id).unwrap_or_default();
                (s, services)
            })
            .collect())
    }

    pub async fn services(&self, server: &Server) -> DomainResult<Vec<ServerService>> {
        Ok(self.store.services(server.id).await?)
    }

    pub async fn sites(&self, server: &Server) -> DomainResult<Vec<ServerSite>> {
        Ok(self.store.sites(server.id).await?)
    }

    /// Refuse an address that is (or whose name resolves to) a private or loopback one.
    async fn check_public_address(&self, host: &str, port: i64) -> DomainResult<()> {
        let host = brokeforge_core::validate::host(host)?;
        let port = u16::try_from(port)
            .map_err(|_| DomainError::invalid("ssh_port", format!("{port} is not a port")))?;
        let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                DomainError::invalid("public_ip", format!("cannot resolve `{host}`: {e}"))
            })?
            .collect();
        if let Some(bad) = addrs
            .iter()
            .find(|a| brokeforge_core::validate::is_internal(a.ip()))
        {
            return Err(DomainError::invalid(
                "public_ip",
                format!(
                    "`{host}` is {}, a private or loopback address: this BrokeForge only manages servers on public addresses",
                    bad.ip()
                ),
            ));
        }
        Ok(())
    }

    /// Add a server for `user`; with a root key BrokeForge onboards it directly, otherwise the one-line
    /// script (fetched from `base_url`) does. Bad input changes nothing.
    pub async fn add_server(
        &self,
        user: &User,
        base_url: &str,
        new: &NewServer,
    ) -> DomainResult<AddedServer> {
        let root_key = new
            .root_key
            .as_deref()
            .filter(|k| !k.trim().is_empty())
            .map(Secret::new);
        if self.refuse_internal_addresses {
            self.check_public_address(&new.public_ip, new.ssh_port.unwrap_or(22))
                .await?;
        }
        // The team first: a team the user may not add servers to changes nothing.
        let team_id = match new.team.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => Some(
                self.team_for(user, t, crate::policy::Action::ServerManage)
                    .await?
                    .0
                    .id,
            ),
            None => None,
        };
        // Names are unique in a team: commands find servers by name.
        let into = match team_id {
            Some(t) => t,
            None => self.store.personal_team(user.id).await?,
        };
        let name = new.name.trim();
        if self
            .store
            .team_servers(into)
            .await?
            .iter()
            .any(|s| s.name == name)
        {
            return Err(DomainError::conflict(
                "name_taken",
                format!("the team has a server named `{name}` already: choose another name"),
            ));
        }
        if let Some(k) = &root_key {
            // Checked before anything is stored.
            brokeforge_ssh::keys::parse_private(k).map_err(|e| {
                DomainError::invalid("root_key", format!("not a usable private key: {e}"))
            })?;
        }
        let added = add_server(
            &self.store,
            &AddServer {
                user_id: user.id,
                name: new.name.clone(),
                public_ip: new.public_ip.clone(),
                ssh_port: new.ssh_port.unwrap_or(22),
                host_key_fingerprint: new.host_key_fingerprint.clone(),
            },
        )
        .await?;
        let mut added = added;
        if let Some(team_id) = team_id {
            self.store.set_server_team(added.server.id, team_id).await?;
            added.server.team_id = team_id;
        }
        let job = match root_key {
            Some(k) => Some(
                start_direct_onboarding(&self.store, added.server.id, &k, new.trust_on_first_use)
                    .await?,
            ),
            None => None,
        };
        Ok(AddedServer {
            script: script_command(base_url, &added.token),
            server: added.server,
            job,
        })
    }

    /// A fresh one-line script for a server (the previous link stops working).
    pub async fn new_script(&self, server: &Server, base_url: &str) -> DomainResult<String> {
        let token = self
            .store
            .create_provision_token(server.id, TOKEN_LIFETIME)
            .await?;
        Ok(script_command(base_url, &token))
    }

    pub async fn pin_host_key(&self, server: &Server, fingerprint: &str) -> DomainResult<Server> {
        let fp = brokeforge_ssh::keys::validate_fingerprint(fingerprint)?;
        self.store.pin_host_key(server.id, Some(&fp)).await?;
        Ok(self.store.server(server.id).await?)
    }

    /// Forget a server: BrokeForge's records go, nothing on the server changes.
    pub async fn forget_server(&self, server: &Server) -> DomainResult<()> {
        Ok(self.store.delete_server(server.id).await?)
    }

    /// Take BrokeForge's keys and sudo rights off the server (a queued job), then forget it.
    pub async fn remove_access_and_forget(&self, server: &Server) -> DomainResult<Job> {
        use brokeforge_packages::services::server::access::remover::{
            AccessRemoval, ServerAccessRemover,
        };
        let job = brokeforge_packages::base::package::job::<ServerAccessRemover>(
            server.id,
            &AccessRemoval { forget: true },
        )?;
        Ok(self.store.enqueue(&job).await?)
    }

    pub async fn install(
        &self,
        server: &Server,
        package: &str,
        settings: &BTreeMap<String, String>,
    ) -> DomainResult<Job> {
        Ok(catalogue::install(&self.store, server.id, package, settings).await?)
    }

    pub async fn remove(
        &self,
        server: &Server,
        package: &str,
        settings: &BTreeMap<String, String>,
    ) -> DomainResult<Job> {
        Ok(catalogue::remove(&self.store, server.id, package, settings).await?)
    }

    /// The steps a package would run on the server, secrets masked; runs nothing.
    pub async fn plan(
        &self,
        server: &Server,
        package: &str,
        settings: &BTreeMap<String, String>,
        provision_type: ProvisionType,
    ) -> DomainResult<String> {
        Ok(catalogue::preview_for(&self.store, server, package, settings, provision_type).await?)
    }

    /// A page of the server's events after `after` (oldest first).
    pub async fn events_page(
        &self,
        server: &Server,
        after: i64,
        limit: i64,
    ) -> DomainResult<Vec<ProvisionEvent>> {
        Ok(self.store.events_page(server.id, after, limit).await?)
    }
}

impl Domain {
    /// The one-line script for a valid, unexpired, unused token (fetching uses it up); `None` otherwise.
    pub async fn provisioning_script(
        &self,
        token: &str,
        callback_url: &str,
    ) -> DomainResult<Option<String>> {
        Ok(
            brokeforge_packages::services::server::access::onboarding::provisioning_script(
                &self.store,
                token,
                callback_url,
            )
            .await?,
        )
    }

    /// Whether a token would serve the script now, without using it up (an HTTP HEAD asks this).
    pub async fn provisioning_token_valid(&self, token: &str) -> DomainResult<bool> {
        Ok(self
            .store
            .use_provision_token(token, brokeforge_store::TokenUse::Peek)
            .await?
            .is_some())
    }

    /// A report from a running script. `None` when the token does not allow reports; otherwise the job base
    /// provisioning was queued as, if this report completed the script.
    pub async fn provisioning_report(
        &self,
        token: &str,
        report: &brokeforge_packages::services::server::access::onboarding::Callback,
    ) -> DomainResult<Option<Option<Job>>> {
        Ok(
            brokeforge_packages::services::server::access::onboarding::handle_callback(
                &self.store,
                token,
                report,
            )
            .await?,
        )
    }
}
