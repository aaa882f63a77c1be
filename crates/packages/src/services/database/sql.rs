//! What the schema and user packages share: SQL for MariaDB, MySQL and PostgreSQL, name validation, and the
//! plan that applies SQL. SQL travels on stdin to the admin client over the local socket; names are
//! validated, passwords quoted as SQL literals and never put on a command line.

use brokeforge_core::{CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};

pub use super::engine::Privileges;
use super::engine::{DatabaseConfig, Engine};
use super::shared::{mysql_string, pg_string};
use crate::base::config::Configuration;
use crate::base::package::Gather;
use crate::base::{PackageError, Plan, RunStep, StoreChange};
use crate::milestones;

milestones! {
    pub enum DatabaseSchemaInstallerMilestones {
        Apply => ("apply", "Applying the change"),
        Complete => ("complete", "Done"),
    }
}

/// A schema or user name: a letter or `_`, then letters, digits and `_`, at most 63 characters.
pub fn validate_name(field: &'static str, name: &str) -> Result<String, ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let reserved = [
        "mysql",
        "information_schema",
        "performance_schema",
        "sys",
        "postgres",
        "template0",
        "template1",
        "root",
        "brokeforge",
    ];
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("`{name}` must start with a letter or _, then letters, digits or _ (max 63)"),
        ));
    }
    if reserved.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ValidationError::new(field, format!("`{name}` is reserved")));
    }
    Ok(name.to_string())
}

pub fn word(field: &'static str, v: &str) -> Result<String, ValidationError> {
    if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(v.to_string())
    } else {
        Err(ValidationError::new(
            field,
            format!("`{v}` is not a valid {field}"),
        ))
    }
}

/// The admin client of an engine, reading SQL from stdin.
fn client(engine: Engine) -> Result<&'static str, ValidationError> {
    match engine {
        Engine::MariaDb | Engine::MySql => Ok("mysql --protocol=socket -u root"),
        Engine::PostgreSql => Ok("cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q"),
        Engine::Redis => Err(ValidationError::new(
            "engine",
            "Redis has no schemas or users",
        )),
    }
}

pub fn sql_plan(
    engine: Engine,
    sql: String,
    secrets: Vec<Secret>,
    change: StoreChange,
) -> Result<Plan, PackageError> {
    use DatabaseSchemaInstallerMilestones as M;
    let mut plan = Plan::new::<M>(ServiceType::Database, CredentialKind::Root);
    for s in secrets {
        plan = plan.secret(s);
    }
    Ok(plan
        .track(M::Apply)
        .run_step(RunStep {
            command: client(engine)?.to_string(),
            timeout: std::time::Duration::from_secs(300),
            stdin: Some(Secret::new(sql)),
            credential: None,
            private_output: false,
        })
        .track(M::Complete)
        .record(change))
}

pub fn create_schema_sql(engine: Engine, name: &str, charset: &str, collation: &str) -> String {
    match engine {
        Engine::PostgreSql => format!(
            "SELECT 'CREATE DATABASE \"{name}\" ENCODING ''UTF8''' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = {lit})\\gexec\n",
            lit = pg_string(name)
        ),
        _ => format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET {charset} COLLATE {collation};\n"
        ),
    }
}

pub fn drop_schema_sql(engine: Engine, name: &str) -> String {
    match engine {
        Engine::PostgreSql => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\n"),
        _ => format!("DROP DATABASE IF EXISTS `{name}`;\n"),
    }
}

pub fn user_sql(
    engine: Engine,
    name: &str,
    password: &Secret,
    privileges: Privileges,
    schemas: &[String],
) -> String {
    match engine {
        Engine::PostgreSql => {
            let mut sql = format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN CREATE ROLE \"{name}\"; END IF; END$$;\n\
                 ALTER ROLE \"{name}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {pw};\n",
                lit = pg_string(name),
                pw = pg_string(password.expose())
            );
            for db in schemas {
                let (schema_grant, table_grant) = match privileges {
                    Privileges::All => ("ALL", "ALL"),
                    Privileges::ReadWrite => (
                        "USAGE, CREATE",
                        "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
                    ),
                    Privileges::ReadOnly => ("USAGE", "SELECT"),
                };
                sql.push_str(&format!(
                    "GRANT CONNECT{temp} ON DATABASE \"{db}\" TO \"{name}\";\n\\c \"{db}\"\n\
                     REVOKE ALL ON SCHEMA public FROM \"{name}\";\n\
                     GRANT {schema_grant} ON SCHEMA public TO \"{name}\";\n\
                     GRANT {table_grant} ON ALL TABLES IN SCHEMA public TO \"{name}\";\n\
                     ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {table_grant} ON TABLES TO \"{name}\";\n",
                    temp = if privileges == Privileges::ReadOnly { "" } else { ", TEMPORARY" },
                ));
            }
            sql
        }
        _ => {
            let user = format!("{}@'localhost'", mysql_string(name));
            let mut sql = format!(
                "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {pw};\nALTER USER {user} IDENTIFIED BY {pw};\n\
                 REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user};\n",
                pw = mysql_string(password.expose())
            );
            let grant = match privileges {
                Privileges::All => "ALL PRIVILEGES",
                Privileges::ReadWrite => {
                    "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, DROP, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, REFERENCES, CREATE VIEW, SHOW VIEW"
                }
                Privileges::ReadOnly => "SELECT, SHOW VIEW",
            };
            for db in schemas {
                sql.push_str(&format!("GRANT {grant} ON `{db}`.* TO {user};\n"));
            }
            sql.push_str("FLUSH PRIVILEGES;\n");
            sql
        }
    }
}

pub fn drop_user_sql(engine: Engine, name: &str, schemas: &[String]) -> String {
    match engine {
        Engine::PostgreSql => {
            let mut sql = String::new();
            for db in schemas {
                sql.push_str(&format!("\\c \"{db}\"\nREASSIGN OWNED BY \"{name}\" TO postgres;\nDROP OWNED BY \"{name}\";\n"));
            }
            sql.push_str(&format!("\\c postgres\nDROP ROLE IF EXISTS \"{name}\";\n"));
            sql
        }
        _ => format!(
            "DROP USER IF EXISTS {}@'localhost';\nFLUSH PRIVILEGES;\n",
            mysql_string(name)
        ),
    }
}

/// The engine's configuration; the engine must be installed and active.
pub async fn engine_config(
    cx: &Gather<'_>,
    engine: Engine,
) -> Result<DatabaseConfig, PackageError> {
    let svc = cx
        .store
        .services(cx.server.id)
        .await?
        .into_iter()
        .find(|s| s.service_name == engine.name() && s.status == ServiceStatus::Active)
        .ok_or_else(|| {
            ValidationError::new(
                "engine",
                format!("{} is not installed on this server", engine.name()),
            )
        })?;
    Ok(DatabaseConfig::read(&svc.configuration)?)
}

/// The store change that records `config` as the engine's configuration.
pub fn config_change(engine: Engine, config: &DatabaseConfig) -> StoreChange {
    StoreChange::SetServiceConfiguration {
        name: engine.name().into(),
        configuration: config.to_value(),
    }
}

pub fn parse_engine(name: &str) -> Result<Engine, ValidationError> {
    match name {
        "mariadb" => Ok(Engine::MariaDb),
        "mysql" => Ok(Engine::MySql),
        "postgresql" => Ok(Engine::PostgreSql),
        _ => Err(ValidationError::new(
            "engine",
            format!("`{name}` is not mariadb, mysql or postgresql"),
        )),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct SchemaRequest {
    pub engine: String,
    pub name: String,
    #[serde(default = "default_charset")]
    pub charset: String,
    #[serde(default = "default_collation")]
    pub collation: String,
}
pub fn default_charset() -> String {
    "utf8mb4".into()
}
pub fn default_collation() -> String {
    "utf8mb4_unicode_ci".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct UserRequest {
    pub engine: String,
    pub name: String,
    #[serde(default)]
    pub schemas: Vec<String>,
    pub privileges: Privileges,
}

/// What a removal names.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DropRequest {
    pub engine: String,
    pub name: String,
}

/// Where a user's password waits (sealed) for its job: jobs' payloads are not secret.
pub fn user_secret_name(engine: Engine, user: &str) -> String {
    format!("{}_user_{user}", engine.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("name", "app_1").is_ok());
        for bad in [
            "",
            "1app",
            "a-b",
            "a;drop",
            "a`b",
            "x\"y",
            "mysql",
            "postgres",
            &"a".repeat(64),
        ] {
            assert!(validate_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_snapshots_quote_passwords() {
        let pw = Secret::new(r#"p'a"s\s$w;o rd"#);
        let schemas = vec!["app".to_string()];
        insta::assert_snapshot!(
            "mariadb_user_rw",
            user_sql(
                Engine::MariaDb,
                "app_rw",
                &pw,
                Privileges::ReadWrite,
                &schemas
            )
        );
        insta::assert_snapshot!(
            "postgresql_user_ro",
            user_sql(
                Engine::PostgreSql,
                "app_ro",
                &pw,
                Privileges::ReadOnly,
                &schemas
            )
        );
        insta::assert_snapshot!(
            "postgresql_schema",
            create_schema_sql(Engine::PostgreSql, "app", "utf8mb4", "utf8mb4_unicode_ci")
        );
        insta::assert_snapshot!(
            "mariadb_schema",
            create_schema_sql(Engine::MariaDb, "app", "utf8mb4", "utf8mb4_unicode_ci")
        );
    }
}
