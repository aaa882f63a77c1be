//! Installed services of a server, their configuration and their sealed secrets.

use brokeforge_core::time::now_ms;
use brokeforge_core::{Secret, ServiceStatus, ServiceType};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::models::*;
use crate::{Result, Store, StoreError, json, parse};

const SERVICE_COLS: &str = "id, server_id, service_name, service_type, configuration, status, error, created_at, updated_at";

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

impl Store {
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

    /// The services of these servers, in one statement (lists of servers show them).
    pub async fn services_of_servers(&self, server_ids: &[i64]) -> Result<Vec<ServerService>> {
        if server_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Ids, formatted as numbers: nothing to quote.
        let ids = crate::id_list(server_ids);
        let rows = sqlx::query(&format!(
            "SELECT {SERVICE_COLS} FROM server_services WHERE server_id IN ({ids}) ORDER BY server_id, id"
        ))
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
        Ok(Some(self.cipher.open_secret(
            &format!("service_secrets:{server_id}:{name}"),
            &sealed,
        )?))
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
