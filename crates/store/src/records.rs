//! Reads and writes of the core tables.

use brokeforge_core::time::now_ms;
use brokeforge_core::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionStatus, Secret, ServiceStatus,
    ServiceType,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Result, Store, StoreError, is_unique_violation, json, parse};

const SERVER_COLS: &str = "id, user_id, name, public_ip, ssh_port, os, provision_status, connection_status, host_key_fingerprint, created_at, updated_at";
const SERVICE_COLS: &str = "id, server_id, service_name, service_type, configuration, status, error, created_at, updated_at";
const SITE_COLS: &str = "id, server_id, domain, document_root, php_version, status, configuration, created_at, updated_at";
const EVENT_COLS: &str = "id, server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at";

fn server_from(row: &AnyRow) -> Result<Server> {
    Ok(Server {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
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

fn service_from(row: &AnyRow) -> Result<ServerService> {
    Ok(ServerService {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        service_name: row.try_get("service_name")?,
        service_type: parse(row, "service_type")?,
        configuration: json(row, "configuration")?,
        status: parse(row, "status")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn site_from(row: &AnyRow) -> Result<ServerSite> {
    Ok(ServerSite {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        domain: row.try_get("domain")?,
        document_root: row.try_get("document_root")?,
        php_version: row.try_get("php_version")?,
        status: parse(row, "status")?,
        configuration: json(row, "configuration")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn event_from(row: &AnyRow) -> Result<ProvisionEvent> {
    Ok(ProvisionEvent {
        id: row.try_get("id")?,
        server_id: row.try_get("server_id")?,
        job_id: row.try_get("job_id")?,
        service_type: parse(row, "service_type")?,
        provision_type: parse(row, "provision_type")?,
        milestone: row.try_get("milestone")?,
        label: row.try_get("label")?,
        current_step: row.try_get("current_step")?,
        total_steps: row.try_get("total_steps")?,
        details: json(row, "details")?,
        status: parse(row, "status")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn log_from(r: &AnyRow) -> Result<CommandLog> {
    Ok(CommandLog {
        id: r.try_get("id")?,
        server_id: r.try_get("server_id")?,
        job_id: r.try_get("job_id")?,
        event_id: r.try_get("event_id")?,
        stream: LogStream::parse(&r.try_get::<String, _>("stream")?),
        chunk: r.try_get("chunk")?,
        created_at: r.try_get("created_at")?,
    })
}

fn credential_context(server_id: i64, credential: CredentialKind) -> String {
    format!("server_credentials:{server_id}:{credential}:private_key")
}

impl Store {
    // ---- users ----

    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<User> {
        let now = now_ms();
        let email = email.trim().to_ascii_lowercase();
        let row = sqlx::query(
            "INSERT INTO users (email, password_hash, is_admin, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(&email)
        .bind(password_hash)
        .bind(is_admin as i64)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a user with email {email} already exists"))
            } else {
                e.into()
            }
        })?;
        Ok(User {
            id: row.try_get("id")?,
            email,
            password_hash: password_hash.to_string(),
            is_admin,
            created_at: now,
        })
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, email, password_hash, is_admin, created_at FROM users WHERE email = $1",
        )
        .bind(email.trim().to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::accounts::user_from).transpose()
    }

    // ---- servers ----

    pub async fn create_server(&self, new: &NewServer) -> Result<Server> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO servers (user_id, name, public_ip, ssh_port, os, provision_status, connection_status, host_key_fingerprint, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $8) RETURNING {SERVER_COLS}"
        ))
        .bind(new.user_id)
        .bind(&new.name)
        .bind(&new.public_ip)
        .bind(new.ssh_port as i64)
        .bind(ProvisionStatus::Pending.as_str())
        .bind(ConnectionStatus::Pending.as_str())
        .bind(new.host_key_fingerprint.clone())
        .bind(now)
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

    /// A server only if `user_id` owns it; another user's server is "not found".
    pub async fn server_for_user(&self, user_id: i64, id: i64) -> Result<Server> {
        let row = sqlx::query(&format!(
            "SELECT {SERVER_COLS} FROM servers WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("server {id}")))?;
        server_from(&row)
    }

    pub async fn servers_for_user(&self, user_id: i64) -> Result<Vec<Server>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVER_COLS} FROM servers WHERE user_id = $1 ORDER BY id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(server_from).collect()
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

    // ---- credentials ----

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
        let plain = self
            .cipher
            .open(&credential_context(server_id, credential), &sealed)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::InvalidData("private key is not text".into()))?;
        Ok(ServerCredential {
            server_id,
            credential,
            public_key: row.try_get("public_key")?,
            private_key: Secret::new(text),
            username: row.try_get("username")?,
        })
    }

    // ---- services ----

    /// Create or update the record of a service on a server (spec: `services()->updateOrCreate`).
    pub async fn upsert_service(
        &self,
        server_id: i64,
        service_name: &str,
        service_type: ServiceType,
        configuration: &serde_json::Value,
        status: ServiceStatus,
    ) -> Result<ServerService> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO server_services (server_id, service_name, service_type, configuration, status, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $6) \
             ON CONFLICT (server_id, service_name) DO UPDATE SET service_type = excluded.service_type, \
             configuration = excluded.configuration, status = excluded.status, error = NULL, updated_at = excluded.updated_at \
             RETURNING {SERVICE_COLS}"
        ))
        .bind(server_id)
        .bind(service_name)
        .bind(service_type.as_str())
        .bind(configuration.to_string())
        .bind(status.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        service_from(&row)
    }

    pub async fn set_service_status(
        &self,
        server_id: i64,
        service_name: &str,
        status: ServiceStatus,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE server_services SET status = $1, error = $2, updated_at = $3 WHERE server_id = $4 AND service_name = $5",
        )
        .bind(status.as_str())
        .bind(error.map(str::to_string))
        .bind(now_ms())
        .bind(server_id)
        .bind(service_name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn services(&self, server_id: i64) -> Result<Vec<ServerService>> {
        let rows = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM server_services WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_from).collect()
    }

    pub async fn delete_service(&self, server_id: i64, service_name: &str) -> Result<()> {
        sqlx::query("DELETE FROM server_services WHERE server_id = $1 AND service_name = $2")
            .bind(server_id)
            .bind(service_name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- sites ----

    pub async fn create_site(&self, new: &NewSite) -> Result<ServerSite> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO server_sites (server_id, domain, document_root, php_version, status, configuration, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {SITE_COLS}"
        ))
        .bind(new.server_id)
        .bind(&new.domain)
        .bind(&new.document_root)
        .bind(new.php_version.clone())
        .bind(new.status.as_str())
        .bind(new.configuration.to_string())
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the server already has a site {}", new.domain))
            } else {
                e.into()
            }
        })?;
        site_from(&row)
    }

    pub async fn site(&self, id: i64) -> Result<ServerSite> {
        let row = sqlx::query(&format!(
            "SELECT {SITE_COLS} FROM server_sites WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("site {id}")))?;
        site_from(&row)
    }

    pub async fn sites(&self, server_id: i64) -> Result<Vec<ServerSite>> {
        let rows = sqlx::query(&format!(
            "SELECT {SITE_COLS} FROM server_sites WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(site_from).collect()
    }

    // ---- provision events ----

    pub async fn start_event(&self, new: &NewEvent) -> Result<ProvisionEvent> {
        self.advance_event(None, new).await
    }

    /// Complete the milestone `previous` (if any) and start the next one, atomically: one statement on
    /// PostgreSQL (a data-modifying CTE), one transaction on SQLite.
    pub async fn advance_event(
        &self,
        previous: Option<i64>,
        new: &NewEvent,
    ) -> Result<ProvisionEvent> {
        let now = now_ms();
        let mut tx = self.telemetry.begin().await?;
        if let Some(id) = previous {
            let row = sqlx::query(&format!(
                "UPDATE provision_events SET status = $1, updated_at = $2 WHERE id = $3 RETURNING {EVENT_COLS}"
            ))
            .bind(EventStatus::Completed.as_str())
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                let done = event_from(&row)?;
                self.insert_activity(
                    &mut tx,
                    done.server_id,
                    done.job_id,
                    Some(done.id),
                    LogStream::Event,
                    &Self::event_activity(&done),
                )
                .await?;
            }
        }
        let row = sqlx::query(&format!(
            "INSERT INTO provision_events (server_id, job_id, service_type, provision_type, milestone, label, current_step, total_steps, details, status, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11) RETURNING {EVENT_COLS}"
        ))
        .bind(new.server_id)
        .bind(new.job_id)
        .bind(new.service_type.as_str())
        .bind(new.provision_type.as_str())
        .bind(&new.milestone)
        .bind(&new.label)
        .bind(new.current_step)
        .bind(new.total_steps)
        .bind(new.details.to_string())
        .bind(EventStatus::InProgress.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let event = event_from(&row)?;
        self.insert_activity(
            &mut tx,
            event.server_id,
            event.job_id,
            Some(event.id),
            LogStream::Event,
            &Self::event_activity(&event),
        )
        .await?;
        tx.commit().await?;
        let _ = self.activity.send(event.server_id);
        Ok(event)
    }

    pub async fn finish_event(
        &self,
        id: i64,
        status: EventStatus,
        error: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.telemetry.begin().await?;
        let row = sqlx::query(&format!(
            "UPDATE provision_events SET status = $1, error = $2, updated_at = $3 WHERE id = $4 RETURNING {EVENT_COLS}"
        ))
        .bind(status.as_str())
        .bind(error.map(str::to_string))
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut server = None;
        if let Some(row) = row {
            let ev = event_from(&row)?;
            self.insert_activity(
                &mut tx,
                ev.server_id,
                ev.job_id,
                Some(ev.id),
                LogStream::Event,
                &Self::event_activity(&ev),
            )
            .await?;
            server = Some(ev.server_id);
        }
        tx.commit().await?;
        if let Some(s) = server {
            let _ = self.activity.send(s);
        }
        Ok(())
    }

    /// Events of a server with an id greater than `after_id`, oldest first.
    pub async fn events(&self, server_id: i64, after_id: i64) -> Result<Vec<ProvisionEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND id > $2 ORDER BY id"
        ))
        .bind(server_id)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    // ---- command output ----

    pub async fn append_log(
        &self,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
    ) -> Result<()> {
        let mut tx = self.telemetry.begin().await?;
        self.insert_activity(&mut tx, server_id, job_id, event_id, stream, chunk)
            .await?;
        tx.commit().await?;
        let _ = self.activity.send(server_id);
        Ok(())
    }

    /// Append to a server's activity feed inside `tx`. On PostgreSQL a per-server transaction lock comes
    /// first, so one server's rows commit in id order and a watcher reading `id > cursor` never skips one.
    async fn insert_activity(
        &self,
        tx: &mut sqlx::AnyConnection,
        server_id: i64,
        job_id: Option<i64>,
        event_id: Option<i64>,
        stream: LogStream,
        chunk: &str,
    ) -> Result<()> {
        if self.backend == crate::Backend::Postgres {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(4242, CAST($1 % 2147483647 AS INTEGER)), pg_notify('brokeforge_activity', CAST($1 AS TEXT))",
            )
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO command_logs (server_id, job_id, event_id, stream, chunk, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(server_id)
        .bind(job_id)
        .bind(event_id)
        .bind(stream.as_str())
        .bind(chunk)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The event as the activity feed carries it.
    fn event_activity(event: &ProvisionEvent) -> String {
        serde_json::to_string(event).unwrap_or_default()
    }

    pub async fn logs(&self, server_id: i64, after_id: i64) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE server_id = $1 AND id > $2 AND stream NOT IN ('event', 'job') ORDER BY id",
        )
        .bind(server_id)
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// Output lines of one job (no event rows).
    pub async fn job_logs(&self, job_id: i64) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE job_id = $1 AND stream NOT IN ('event', 'job') ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from).collect()
    }

    // ---- site commands ----

    pub async fn record_site_command(&self, rec: &SiteCommandRecord) -> Result<SiteCommandRecord> {
        let row = sqlx::query(
            "INSERT INTO site_commands (site_id, command, output, error_output, exit_code, ran_at, duration_ms, success, timed_out) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(rec.site_id)
        .bind(&rec.command)
        .bind(&rec.output)
        .bind(&rec.error_output)
        .bind(rec.exit_code)
        .bind(rec.ran_at)
        .bind(rec.duration_ms)
        .bind(rec.success as i64)
        .bind(rec.timed_out as i64)
        .fetch_one(&self.pool)
        .await?;
        Ok(SiteCommandRecord {
            id: row.try_get("id")?,
            ..rec.clone()
        })
    }

    /// A site's command history, newest first.
    pub async fn site_commands(&self, site_id: i64, limit: i64) -> Result<Vec<SiteCommandRecord>> {
        let rows = sqlx::query(
            "SELECT id, site_id, command, output, error_output, exit_code, ran_at, duration_ms, success, timed_out \
             FROM site_commands WHERE site_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(site_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteCommandRecord {
                    id: r.try_get("id")?,
                    site_id: r.try_get("site_id")?,
                    command: r.try_get("command")?,
                    output: r.try_get("output")?,
                    error_output: r.try_get("error_output")?,
                    exit_code: r.try_get("exit_code")?,
                    ran_at: r.try_get("ran_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    success: r.try_get::<i64, _>("success")? != 0,
                    timed_out: r.try_get::<i64, _>("timed_out")? != 0,
                })
            })
            .collect()
    }
}

impl Store {
    pub async fn set_site_status(&self, id: i64, status: ServiceStatus) -> Result<()> {
        sqlx::query("UPDATE server_sites SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_site(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM server_sites WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Close the events a vanished worker left in progress for `job_id`.
    pub async fn fail_open_events(&self, job_id: i64, reason: &str) -> Result<u64> {
        let mut tx = self.telemetry.begin().await?;
        let rows = sqlx::query(&format!(
            "UPDATE provision_events SET status = $1, error = $2, updated_at = $3 WHERE job_id = $4 AND status = $5 RETURNING {EVENT_COLS}"
        ))
        .bind(EventStatus::Failed.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(job_id)
        .bind(EventStatus::InProgress.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut servers = Vec::new();
        for row in &rows {
            let ev = event_from(row)?;
            self.insert_activity(
                &mut tx,
                ev.server_id,
                ev.job_id,
                Some(ev.id),
                LogStream::Event,
                &Self::event_activity(&ev),
            )
            .await?;
            servers.push(ev.server_id);
        }
        tx.commit().await?;
        for s in servers {
            let _ = self.activity.send(s);
        }
        Ok(rows.len() as u64)
    }
}

/// What a provisioning token allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// Fetch the one-line script (once).
    Script,
    /// Report a step from the running script.
    Callback,
}

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Store {
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
}

impl Store {
    /// The newest in-progress event of a server that no job owns (the provisioning script reports these).
    pub async fn open_script_event(&self, server_id: i64) -> Result<Option<ProvisionEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLS} FROM provision_events WHERE server_id = $1 AND job_id IS NULL AND status = $2 ORDER BY id DESC LIMIT 1"
        ))
        .bind(server_id)
        .bind(EventStatus::InProgress.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(event_from).transpose()
    }
}

impl Store {
    /// Store a generated service password (sealed to this server and name).
    pub async fn put_service_secret(
        &self,
        server_id: i64,
        name: &str,
        value: &Secret,
    ) -> Result<()> {
        let sealed = self.cipher.seal(
            &format!("service_secrets:{server_id}:{name}"),
            value.expose().as_bytes(),
        )?;
        sqlx::query(
            "INSERT INTO service_secrets (server_id, name, value_enc, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (server_id, name) DO UPDATE SET value_enc = excluded.value_enc",
        )
        .bind(server_id)
        .bind(name)
        .bind(sealed)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn service_secret(&self, server_id: i64, name: &str) -> Result<Option<Secret>> {
        let row =
            sqlx::query("SELECT value_enc FROM service_secrets WHERE server_id = $1 AND name = $2")
                .bind(server_id)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.try_get("value_enc")?;
        let plain = self
            .cipher
            .open(&format!("service_secrets:{server_id}:{name}"), &sealed)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::InvalidData("secret is not text".into()))?;
        Ok(Some(Secret::new(text)))
    }

    pub async fn delete_service_secret(&self, server_id: i64, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM service_secrets WHERE server_id = $1 AND name = $2")
            .bind(server_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Store {
    pub async fn set_service_configuration(
        &self,
        server_id: i64,
        service_name: &str,
        configuration: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE server_services SET configuration = $1, updated_at = $2 WHERE server_id = $3 AND service_name = $4",
        )
        .bind(configuration.to_string())
        .bind(now_ms())
        .bind(server_id)
        .bind(service_name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "service {service_name} on server {server_id}"
            )));
        }
        Ok(())
    }
}

const DEPLOYMENT_COLS: &str = "id, site_id, job_id, kind, status, branch, commit_hash, release_name, triggered_by, exit_code, error, created_at, started_at, finished_at";

fn deployment_from(row: &AnyRow) -> Result<Deployment> {
    Ok(Deployment {
        id: row.try_get("id")?,
        site_id: row.try_get("site_id")?,
        job_id: row.try_get("job_id")?,
        kind: row.try_get("kind")?,
        status: parse(row, "status")?,
        branch: row.try_get("branch")?,
        commit_hash: row.try_get("commit_hash")?,
        release: row.try_get("release_name")?,
        triggered_by: row.try_get("triggered_by")?,
        exit_code: row.try_get("exit_code")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

impl Store {
    pub async fn set_site_configuration(
        &self,
        id: i64,
        configuration: &serde_json::Value,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE server_sites SET configuration = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(configuration.to_string())
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("site {id}")));
        }
        Ok(())
    }

    /// Record a deployment and queue the job that runs it (`job` gets the deployment as its target).
    /// Deployments of one server run one at a time, in order: the queue's per-server rule.
    pub async fn queue_deployment(
        &self,
        site: &ServerSite,
        kind: &str,
        branch: Option<&str>,
        release: Option<&str>,
        triggered_by: &str,
        mut job: crate::NewJob,
    ) -> Result<(Deployment, crate::Job)> {
        let row = sqlx::query(&format!(
            "INSERT INTO site_deployments (site_id, kind, status, branch, release_name, triggered_by, created_at) \
             VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING {DEPLOYMENT_COLS}"
        ))
        .bind(site.id)
        .bind(kind)
        .bind(branch.map(str::to_string))
        .bind(release.map(str::to_string))
        .bind(triggered_by)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        let mut deployment = deployment_from(&row)?;
        job.target = Some(crate::JobTarget::Deployment { id: deployment.id });
        if let Some(p) = job.payload.as_object_mut() {
            p.insert("deployment_id".into(), deployment.id.into());
        }
        let queued = match self.enqueue(&job).await {
            Ok(j) => j,
            Err(e) => {
                // Nothing will run it: do not leave a deployment that looks queued.
                let _ = sqlx::query("DELETE FROM site_deployments WHERE id = $1")
                    .bind(deployment.id)
                    .execute(&self.pool)
                    .await;
                return Err(e);
            }
        };
        sqlx::query("UPDATE site_deployments SET job_id = $1 WHERE id = $2")
            .bind(queued.id)
            .bind(deployment.id)
            .execute(&self.pool)
            .await?;
        deployment.job_id = Some(queued.id);
        Ok((deployment, queued))
    }

    pub async fn deployment(&self, id: i64) -> Result<Deployment> {
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM site_deployments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("deployment {id}")))?;
        deployment_from(&row)
    }

    /// A site's deployments, newest first.
    pub async fn deployments(&self, site_id: i64, limit: i64) -> Result<Vec<Deployment>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLS} FROM site_deployments WHERE site_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(site_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_from).collect()
    }

    /// The job picked the deployment up.
    pub async fn start_deployment(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE site_deployments SET status = 'running', started_at = $1, error = NULL WHERE id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the deployment resolved to (its commit and release) and, when a step failed, that step's exit code.
    pub async fn set_deployment_details(
        &self,
        id: i64,
        branch: Option<&str>,
        commit_hash: Option<&str>,
        release: Option<&str>,
        exit_code: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE site_deployments SET branch = COALESCE($1, branch), commit_hash = COALESCE($2, commit_hash), \
             release_name = COALESCE($3, release_name), exit_code = COALESCE($4, exit_code) WHERE id = $5",
        )
        .bind(branch.map(str::to_string))
        .bind(commit_hash.map(str::to_string))
        .bind(release.map(str::to_string))
        .bind(exit_code)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Store {
    /// A server's activity feed after `after_id`: command output and event changes (stream `event`, the event
    /// as JSON), oldest first. The id is the cursor a live watcher resumes from.
    pub async fn activity(
        &self,
        server_id: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<CommandLog>> {
        let rows = sqlx::query(
            "SELECT id, server_id, job_id, event_id, stream, chunk, created_at FROM command_logs WHERE server_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(server_id)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.telemetry)
        .await?;
        rows.iter().map(log_from).collect()
    }

    /// The newest activity id of a server (0 when none): where a watcher that wants only new rows starts.
    pub async fn activity_head(&self, server_id: i64) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(id) AS m FROM command_logs WHERE server_id = $1")
            .bind(server_id)
            .fetch_one(&self.telemetry)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.unwrap_or(0))
    }

    /// Tell a server's watchers that a job ended (how, and why if it failed).
    pub async fn announce_job(&self, job: &crate::Job) -> Result<()> {
        let Some(server_id) = job.server_id else {
            return Ok(());
        };
        let chunk = serde_json::json!({"job_id": job.id, "kind": job.kind, "target": job.target, "status": job.status.as_str(), "error": job.error});
        let mut tx = self.telemetry.begin().await?;
        self.insert_activity(
            &mut tx,
            server_id,
            Some(job.id),
            None,
            LogStream::Job,
            &chunk.to_string(),
        )
        .await?;
        tx.commit().await?;
        let _ = self.activity.send(server_id);
        Ok(())
    }

    /// The feed id just before a job's first row (`None` when it has none yet).
    pub async fn activity_before_job(&self, job_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(id) AS m FROM command_logs WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(&self.telemetry)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?.map(|m| m - 1))
    }

    /// Server ids as they get new activity.
    pub fn subscribe_activity(&self) -> tokio::sync::broadcast::Receiver<i64> {
        self.activity.subscribe()
    }

    /// On PostgreSQL: forward other nodes' activity notifications to this process's watchers.
    pub fn spawn_activity_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.backend != crate::Backend::Postgres {
            return None;
        }
        let store = self.clone();
        Some(tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect(&store.url).await {
                    Ok(mut listener) => {
                        if let Err(e) = listener.listen("brokeforge_activity").await {
                            tracing::warn!(error = %e, "cannot LISTEN for activity");
                        } else {
                            while let Ok(n) = listener.recv().await {
                                if let Ok(id) = n.payload().parse::<i64>() {
                                    let _ = store.activity.send(id);
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot connect the activity listener"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }
}
