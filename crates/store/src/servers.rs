//! Servers and what gets BrokeForge into them: SSH credentials (sealed) and provisioning tokens.

use brokeforge_core::time::now_ms;
use brokeforge_core::{ConnectionStatus, CredentialKind, ProvisionStatus, Secret};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Result, Store, StoreError, is_unique_violation, like_escape, parse};

pub(crate) const SERVER_COLS: &str = "id, user_id, team_id, name, public_ip, ssh_port, os, provision_status, connection_status, host_key_fingerprint, created_at, updated_at";

/// [`SERVER_COLS`] of table alias `s`.
const SERVER_COLS_S: &str = "s.id, s.user_id, s.team_id, s.name, s.public_ip, s.ssh_port, s.os, s.provision_status, s.connection_status, s.host_key_fingerprint, s.created_at, s.updated_at";

/// A member (`m`) sees a server (`s`) of the team unless narrowed to other servers.
const VISIBLE: &str = "(NOT EXISTS (SELECT 1 FROM team_member_servers n WHERE n.team_id = m.team_id AND n.user_id = m.user_id) \
     OR EXISTS (SELECT 1 FROM team_member_servers n WHERE n.team_id = m.team_id AND n.user_id = m.user_id AND n.server_id = s.id))";

pub(crate) fn server_from(row: &AnyRow) -> Result<Server> {
    Ok(Server {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        team_id: row
            .try_get::<Option<i64>, _>("team_id")?
            .unwrap_or_default(),
        name: row.try_get("name")?,
        public_ip: row.try_get("public_ip")?,
        ssh_port: u16::try_from(row.try_get::<i64, _>("ssh_port")?)
            .map_err(|_| StoreError::InvalidData("ssh_port out of range".into()))?,
        os: row.try_get("os")?,
        provision_status: parse(row, "provision_status")?,
        connection_status: parse(row, "connection_status")?,
        host_key_fingerprint: row.try_get("host_key_fingerprint")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn credential_context(server_id: i64, credential: CredentialKind) -> String {
    format!("server_credentials:{server_id}:{credential}:private_key")
}

/// What a provisioning token allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Fetch the one-line script (once).
    Script,
    /// Ask whether the script could be fetched, without using the token up (an HTTP HEAD).
    Peek,
    /// Report a step from the running script.
    Callback,
}

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
    /// A server in its creator's personal team.
    pub async fn create_server(&self, new: &NewServer) -> Result<Server> {
        let team = self.personal_team(new.user_id).await?;
        self.create_server_in(team, new).await
    }

    /// A server in team `team_id` (the caller checked the creator may add servers there).
    pub async fn create_server_in(&self, team_id: i64, new: &NewServer) -> Result<Server> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO servers (user_id, name, public_ip, ssh_port, os, provision_status, connection_status, host_key_fingerprint, created_at, updated_at, team_id) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $8, $9) RETURNING {SERVER_COLS}"
        ))
        .bind(new.user_id)
        .bind(&new.name)
        .bind(&new.public_ip)
        .bind(new.ssh_port as i64)
        .bind(ProvisionStatus::Pending.as_str())
        .bind(ConnectionStatus::Pending.as_str())
        .bind(new.host_key_fingerprint.clone())
        .bind(now)
        .bind(team_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("you already have a server named {}", new.name))
            } else {
                e.into()
            }
        })?;
        server_from(&row)
    }

    /// A server by id, whoever owns it (for workers). Front ends use [`Store::server_for_user`].
    pub async fn server(&self, id: i64) -> Result<Server> {
        let row = sqlx::query(&format!("SELECT {SERVER_COLS} FROM servers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("server {id}")))?;
        server_from(&row)
    }

    /// A server only if `user_id` is a member of its team (and not narrowed to other servers); anyone
    /// else's server is "not found".
    pub async fn server_for_user(&self, user_id: i64, id: i64) -> Result<Server> {
        Ok(self.server_for_member(user_id, id).await?.0)
    }

    /// A server the user may see, with the user's role in its team.
    pub async fn server_for_member(
        &self,
        user_id: i64,
        id: i64,
    ) -> Result<(Server, brokeforge_core::TeamRole)> {
        let row = sqlx::query(&format!(
            "SELECT {SERVER_COLS_S}, m.role AS member_role FROM servers s \
             JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $2 \
             WHERE s.id = $1 AND {VISIBLE}"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("server {id}")))?;
        Ok((server_from(&row)?, parse(&row, "member_role")?))
    }

    pub async fn servers_for_user(&self, user_id: i64) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS_S} FROM servers s JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $1 \
             WHERE {VISIBLE} ORDER BY s.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from).collect()
    }

    /// Every server of a team, by id (whoever may see which).
    pub async fn team_servers(&self, team_id: i64) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS_S} FROM servers s WHERE s.team_id = $1 ORDER BY s.id"
        ))
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from).collect()
    }

    /// A page of a user's servers after `after_id`, by id; `name` narrows it to that one.
    pub async fn servers_page(
        &self,
        user_id: i64,
        after_id: i64,
        limit: i64,
        filter: &ServerFilter<'_>,
    ) -> Result<Vec<Server>> {
        // A search matches part of the name or the address (case-insensitive), or a whole tag.
        let search = filter.search.map(str::trim).filter(|s| !s.is_empty());
        let pattern = search.map(|s| format!("%{}%", like_escape(&s.to_lowercase())));
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS_S} FROM servers s JOIN team_members m ON m.team_id = s.team_id AND m.user_id = $1 \
             WHERE {VISIBLE} AND s.id > $2 AND ($3 IS NULL OR s.name = $3) AND ($5 IS NULL OR s.team_id = $5) \
             AND ($6 IS NULL OR LOWER(s.name) LIKE $6 ESCAPE '\\' OR LOWER(s.public_ip) LIKE $6 ESCAPE '\\' \
                  OR EXISTS (SELECT 1 FROM server_tags t WHERE t.server_id = s.id AND t.tag = $7)) \
             ORDER BY s.id LIMIT $4"
        ))
        .bind(user_id)
        .bind(after_id)
        .bind(filter.name)
        .bind(limit)
        .bind(filter.team)
        .bind(pattern)
        .bind(search.map(str::to_lowercase))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from).collect()
    }

    /// The sites of these servers, each with its newest deployment's status and time (for the fleet overview).
    pub async fn sites_with_last_deployment(&self, server_ids: &[i64]) -> Result<Vec<SiteSummary>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = crate::id_list(server_ids);
        let rows = sqlx::query(&format!(
            "SELECT st.id, st.server_id, st.domain, d.status, d.created_at FROM server_sites st \
             LEFT JOIN site_deployments d ON d.id = (SELECT MAX(id) FROM site_deployments WHERE site_id = st.id) \
             WHERE st.server_id IN ({ids}) ORDER BY st.server_id, st.domain"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteSummary {
                    id: r.try_get("id")?,
                    server_id: r.try_get("server_id")?,
                    domain: r.try_get("domain")?,
                    last_deployment: match r.try_get::<Option<String>, _>("status")? {
                        Some(status) => Some((status, r.try_get("created_at")?)),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// Move a server from team `from` to team `to`, in one transaction: what tied it to the old team goes
    /// (members narrowed to it there, alert rules' old-team channels: they then tell all of the new team's
    /// channels). False when the server was no longer in `from`.
    pub async fn move_server(&self, id: i64, from: i64, to: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query("UPDATE servers SET team_id = $1 WHERE id = $2 AND team_id = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM team_member_servers WHERE server_id = $1 AND team_id = $2")
            .bind(id)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE alert_rules SET channel_id = NULL WHERE server_id = $1 AND channel_id IN \
             (SELECT id FROM notification_channels WHERE team_id = $2)",
        )
        .bind(id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Move a just-added server into team `team_id`.
    pub async fn set_server_team(&self, id: i64, team_id: i64) -> Result<()> {
        sqlx::query("UPDATE servers SET team_id = $1 WHERE id = $2")
            .bind(team_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_provision_status(&self, id: i64, status: ProvisionStatus) -> Result<()> {
        self.update_server_text(id, "provision_status", Some(status.as_str()))
            .await
    }

    pub async fn set_connection_status(&self, id: i64, status: ConnectionStatus) -> Result<()> {
        self.update_server_text(id, "connection_status", Some(status.as_str()))
            .await
    }

    pub async fn set_server_os(&self, id: i64, os: &str) -> Result<()> {
        self.update_server_text(id, "os", Some(os)).await
    }

    /// Pin (or, with `None`, unpin) the server's SSH host key fingerprint.
    pub async fn pin_host_key(&self, id: i64, fingerprint: Option<&str>) -> Result<()> {
        self.update_server_text(id, "host_key_fingerprint", fingerprint)
            .await
    }

    /// Pin only if nothing is pinned yet; returns whether this call pinned it (trust on first use).
    pub async fn pin_host_key_if_unset(&self, id: i64, fingerprint: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE servers SET host_key_fingerprint = $1, updated_at = $2 WHERE id = $3 AND host_key_fingerprint IS NULL",
        )
        .bind(fingerprint)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_server_text(
        &self,
        id: i64,
        column: &'static str,
        value: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query(&format!(
            "UPDATE servers SET {column} = $1, updated_at = $2 WHERE id = $3"
        ))
        .bind(value.map(str::to_string))
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("server {id}")));
        }
        Ok(())
    }

    pub async fn delete_server(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Store a key pair for a server credential; the private key is sealed to this (server, credential).
    pub async fn put_credential(
        &self,
        server_id: i64,
        credential: CredentialKind,
        public_key: &str,
        private_key: &Secret,
    ) -> Result<()> {
        self.put_credential_as(server_id, credential, None, public_key, private_key)
            .await
    }

    /// Like [`Store::put_credential`], logging in as `username` instead of the credential's usual user.
    pub async fn put_credential_as(
        &self,
        server_id: i64,
        credential: CredentialKind,
        username: Option<&str>,
        public_key: &str,
        private_key: &Secret,
    ) -> Result<()> {
        let sealed = self.cipher.seal(
            &credential_context(server_id, credential),
            private_key.expose().as_bytes(),
        )?;
        sqlx::query(
            "INSERT INTO server_credentials (server_id, credential, public_key, private_key_enc, created_at, username) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (server_id, credential) DO UPDATE SET public_key = excluded.public_key, private_key_enc = excluded.private_key_enc, username = excluded.username",
        )
        .bind(server_id)
        .bind(credential.as_str())
        .bind(public_key)
        .bind(sealed)
        .bind(now_ms())
        .bind(username.map(str::to_string))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn credential(
        &self,
        server_id: i64,
        credential: CredentialKind,
    ) -> Result<ServerCredential> {
        let row = sqlx::query(
            "SELECT public_key, private_key_enc, username FROM server_credentials WHERE server_id = $1 AND credential = $2",
        )
        .bind(server_id)
        .bind(credential.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{credential} credential of server {server_id}")))?;
        let sealed: Vec<u8> = row.try_get("private_key_enc")?;
        let private_key = self
            .cipher
            .open_secret(&credential_context(server_id, credential), &sealed)?;
        Ok(ServerCredential {
            server_id,
            credential,
            public_key: row.try_get("public_key")?,
            private_key,
            username: row.try_get("username")?,
        })
    }

    /// Delete every credential of kind `credential` stored before `before_ms` (the user's root keys for direct
    /// onboarding, which a crashed onboarding may have left); how many went.
    pub async fn expire_credentials(
        &self,
        credential: CredentialKind,
        before_ms: i64,
    ) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM server_credentials WHERE credential = $1 AND created_at < $2")
                .bind(credential.as_str())
                .bind(before_ms)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_credential(
        &self,
        server_id: i64,
        credential: CredentialKind,
    ) -> Result<()> {
        sqlx::query("DELETE FROM server_credentials WHERE server_id = $1 AND credential = $2")
            .bind(server_id)
            .bind(credential.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Create (or replace) the server's provisioning token; returns the token, which is not stored.
    pub async fn create_provision_token(
        &self,
        server_id: i64,
        valid_for: std::time::Duration,
    ) -> Result<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
        let token = hex::encode(raw);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO server_provision_tokens (server_id, token_hash, expires_at, script_served_at, finished_at, created_at) \
             VALUES ($1, $2, $3, NULL, NULL, $4) ON CONFLICT (server_id) DO UPDATE SET token_hash = excluded.token_hash, \
             expires_at = excluded.expires_at, script_served_at = NULL, finished_at = NULL, created_at = excluded.created_at",
        )
        .bind(server_id)
        .bind(token_hash(&token))
        .bind(now + valid_for.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The server a token belongs to, if the token allows `usage` now. Fetching the script uses it up (the check
    /// and the marking are one statement, so two fetches cannot both succeed).
    pub async fn use_provision_token(&self, token: &str, usage: TokenUse) -> Result<Option<i64>> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let now = now_ms();
        let row = match usage {
            TokenUse::Script => {
                sqlx::query(
                    "UPDATE server_provision_tokens SET script_served_at = $1 WHERE token_hash = $2 AND expires_at > $1 \
                     AND script_served_at IS NULL AND finished_at IS NULL RETURNING server_id",
                )
                .bind(now)
                .bind(token_hash(token))
                .fetch_optional(&self.pool)
                .await?
            }
            TokenUse::Peek => {
                sqlx::query(
                    "SELECT server_id FROM server_provision_tokens WHERE token_hash = $1 AND expires_at > $2 \
                     AND script_served_at IS NULL AND finished_at IS NULL",
                )
                .bind(token_hash(token))
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
            }
            TokenUse::Callback => {
                sqlx::query(
                    "SELECT server_id FROM server_provision_tokens WHERE token_hash = $1 AND expires_at > $2 \
                     AND script_served_at IS NOT NULL AND finished_at IS NULL",
                )
                .bind(token_hash(token))
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|r| r.try_get::<i64, _>("server_id").map_err(Into::into))
            .transpose()
    }

    /// The onboarding ended (completed or failed): the token accepts nothing more.
    pub async fn finish_provision_token(&self, server_id: i64) -> Result<()> {
        sqlx::query("UPDATE server_provision_tokens SET finished_at = $1 WHERE server_id = $2")
            .bind(now_ms())
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Which servers a list shows (all that the user may see when empty).
#[derive(Debug, Default, Clone, Copy)]
pub struct ServerFilter<'a> {
    /// Exactly this name.
    pub name: Option<&'a str>,
    /// Part of the name or address, or a whole tag.
    pub search: Option<&'a str>,
    /// One team's servers.
    pub team: Option<i64>,
}

/// A site in the fleet overview: its newest deployment's (status, created_at), if it has one.
#[derive(Debug, Clone)]
pub struct SiteSummary {
    pub id: i64,
    pub server_id: i64,
    pub domain: String,
    pub last_deployment: Option<(String, i64)>,
}
