//! A small migration runner: each backend has its own ordered SQL files, embedded in the binary.

use sqlx::{AnyPool, Row};

use crate::{Backend, Result, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sqlite: include_str!("../migrations/sqlite/0001_core.sql"),
        postgres: include_str!("../migrations/postgres/0001_core.sql"),
    },
    Migration {
        version: 2,
        name: "jobs",
        sqlite: include_str!("../migrations/sqlite/0002_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0002_jobs.sql"),
    },
    Migration {
        version: 3,
        name: "onboarding",
        sqlite: include_str!("../migrations/sqlite/0003_onboarding.sql"),
        postgres: include_str!("../migrations/postgres/0003_onboarding.sql"),
    },
    Migration {
        version: 4,
        name: "service_secrets",
        sqlite: include_str!("../migrations/sqlite/0004_service_secrets.sql"),
        postgres: include_str!("../migrations/postgres/0004_service_secrets.sql"),
    },
    Migration {
        version: 5,
        name: "deployments",
        sqlite: include_str!("../migrations/sqlite/0005_deployments.sql"),
        postgres: include_str!("../migrations/postgres/0005_deployments.sql"),
    },
    Migration {
        version: 6,
        name: "accounts",
        sqlite: include_str!("../migrations/sqlite/0006_accounts.sql"),
        postgres: include_str!("../migrations/postgres/0006_accounts.sql"),
    },
    Migration {
        version: 7,
        name: "hardening",
        sqlite: include_str!("../migrations/sqlite/0007_hardening.sql"),
        postgres: include_str!("../migrations/postgres/0007_hardening.sql"),
    },
    Migration {
        version: 8,
        name: "retention",
        sqlite: include_str!("../migrations/sqlite/0008_retention.sql"),
        postgres: include_str!("../migrations/postgres/0008_retention.sql"),
    },
    Migration {
        version: 9,
        name: "backups",
        sqlite: include_str!("../migrations/sqlite/0009_backups.sql"),
        postgres: include_str!("../migrations/postgres/0009_backups.sql"),
    },
    Migration {
        version: 10,
        name: "self_backup",
        sqlite: include_str!("../migrations/sqlite/0010_self_backup.sql"),
        postgres: include_str!("../migrations/postgres/0010_self_backup.sql"),
    },
    Migration {
        version: 11,
        name: "two_factor",
        sqlite: include_str!("../migrations/sqlite/0011_two_factor.sql"),
        postgres: include_str!("../migrations/postgres/0011_two_factor.sql"),
    },
    Migration {
        version: 12,
        name: "audit",
        sqlite: include_str!("../migrations/sqlite/0012_audit.sql"),
        postgres: include_str!("../migrations/postgres/0012_audit.sql"),
    },
    Migration {
        version: 13,
        name: "token_scopes",
        sqlite: include_str!("../migrations/sqlite/0013_token_scopes.sql"),
        postgres: include_str!("../migrations/postgres/0013_token_scopes.sql"),
    },
    Migration {
        version: 14,
        name: "session_origin",
        sqlite: include_str!("../migrations/sqlite/0014_session_origin.sql"),
        postgres: include_str!("../migrations/postgres/0014_session_origin.sql"),
    },
    Migration {
        version: 15,
        name: "teams",
        sqlite: include_str!("../migrations/sqlite/0015_teams.sql"),
        postgres: include_str!("../migrations/postgres/0015_teams.sql"),
    },
    Migration {
        version: 16,
        name: "user_ssh_keys",
        sqlite: include_str!("../migrations/sqlite/0016_user_ssh_keys.sql"),
        postgres: include_str!("../migrations/postgres/0016_user_ssh_keys.sql"),
    },
    Migration {
        version: 17,
        name: "monitoring",
        sqlite: include_str!("../migrations/sqlite/0017_monitoring.sql"),
        postgres: include_str!("../migrations/postgres/0017_monitoring.sql"),
    },
    Migration {
        version: 18,
        name: "recipes",
        sqlite: include_str!("../migrations/sqlite/0018_recipes.sql"),
        postgres: include_str!("../migrations/postgres/0018_recipes.sql"),
    },
    Migration {
        version: 19,
        name: "drift",
        sqlite: include_str!("../migrations/sqlite/0019_drift.sql"),
        postgres: include_str!("../migrations/postgres/0019_drift.sql"),
    },
    Migration {
        version: 20,
        name: "idempotency",
        sqlite: include_str!("../migrations/sqlite/0020_idempotency.sql"),
        postgres: include_str!("../migrations/postgres/0020_idempotency.sql"),
    },
];

/// The newest schema this binary knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// The newest migration applied to the database (`None`: none yet).
pub(crate) async fn applied(pool: &AnyPool) -> Result<Option<i64>> {
    let exists = sqlx::query("SELECT MAX(version) AS v FROM schema_migrations")
        .fetch_one(pool)
        .await;
    match exists {
        Ok(row) => Ok(row.try_get::<Option<i64>, _>("v")?),
        // No table yet: a new database.
        Err(_) => Ok(None),
    }
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    // A database a newer BrokeForge migrated may hold what this one would misread or lose: stop.
    if let Some(v) = applied(pool).await?
        && v > latest()
    {
        return Err(StoreError::InvalidData(format!(
            "the database was migrated by a newer BrokeForge (schema {v}; this binary knows up to {}): run that release or a newer one",
            latest()
        )));
    }
    for m in MIGRATIONS {
        let mut tx = pool.begin().await?;
        if backend == Backend::Postgres {
            // Serialise concurrent migrators (several nodes starting at once).
            sqlx::raw_sql("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("version"))
            .transpose()?
            .is_some();
        if !done {
            let sql = match backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(brokeforge_core::time::now_ms())
            .execute(&mut *tx)
            .await?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        tx.commit().await?;
    }
    Ok(())
}
