//! Database schemas and users on MariaDB, MySQL and PostgreSQL (`DatabaseSchemaInstaller/Remover`,
//! `DatabaseUserInstaller/Remover`). SQL travels on stdin to the admin client over the local socket; names
//! are validated, passwords quoted as SQL literals and never put on a command line.

use brokeforge_core::{CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Engine, mysql_string, pg_string};
use crate::base::executor::{Executor, RunContext};
use crate::base::{
    Package, PackageError, PackageInstaller, PackageRemover, Plan, RunStep, StoreChange,
};
use crate::jobs::{BoxFuture, JobContext, JobHandler};
use crate::milestones;

milestones! {
    pub enum DatabaseSchemaInstallerMilestones {
        Apply => ("apply", "Applying the change"),
        Complete => ("complete", "Done"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Privileges {
    All,
    ReadWrite,
    ReadOnly,
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

fn word(field: &'static str, v: &str) -> Result<String, ValidationError> {
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

fn sql_plan(
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

/// The engine's service record, which must be active.
async fn engine_config(
    executor: &Executor,
    ctx: &RunContext,
    engine: Engine,
) -> Result<serde_json::Value, PackageError> {
    let services = executor.store().services(ctx.server.id).await?;
    let svc = services
        .into_iter()
        .find(|s| s.service_name == engine.name() && s.status == ServiceStatus::Active)
        .ok_or_else(|| {
            ValidationError::new(
                "engine",
                format!("{} is not installed on this server", engine.name()),
            )
        })?;
    Ok(svc.configuration)
}

/// The engine record's configuration with the entry named `name` in list `key` replaced by `entry` (or
/// dropped, with `None`), as the store change that records it.
fn config_change(
    engine: Engine,
    mut config: serde_json::Value,
    key: &str,
    name: &str,
    entry: Option<serde_json::Value>,
) -> StoreChange {
    let mut items = list(&config, key);
    items.retain(|i| i["name"] != name);
    items.extend(entry);
    config[key] = json!(items);
    StoreChange::SetServiceConfiguration {
        name: engine.name().into(),
        configuration: config,
    }
}

fn list(config: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    config
        .get(key)
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default()
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

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SchemaRequest {
    pub engine: String,
    pub name: String,
    #[serde(default = "default_charset")]
    pub charset: String,
    #[serde(default = "default_collation")]
    pub collation: String,
}
fn default_charset() -> String {
    "utf8mb4".into()
}
fn default_collation() -> String {
    "utf8mb4_unicode_ci".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UserRequest {
    pub engine: String,
    pub name: String,
    #[serde(default)]
    pub schemas: Vec<String>,
    pub privileges: Privileges,
}

pub struct DatabaseSchemaInstaller;
pub struct DatabaseSchemaRemover;
pub struct DatabaseUserInstaller;
pub struct DatabaseUserRemover;

macro_rules! db_package {
    ($($t:ident),+) => {$(
        impl Package for $t {
            type Milestones = DatabaseSchemaInstallerMilestones;
            fn service_type(&self) -> ServiceType { ServiceType::Database }
            fn credential(&self) -> CredentialKind { CredentialKind::Root }
        }
    )+};
}
db_package!(
    DatabaseSchemaInstaller,
    DatabaseSchemaRemover,
    DatabaseUserInstaller,
    DatabaseUserRemover
);
impl PackageInstaller for DatabaseSchemaInstaller {}
impl PackageInstaller for DatabaseUserInstaller {}
impl PackageRemover for DatabaseSchemaRemover {}
impl PackageRemover for DatabaseUserRemover {}

/// Where a user's password waits (sealed) for its job: jobs' payloads are not secret.
pub fn user_secret_name(engine: Engine, user: &str) -> String {
    format!("{}_user_{user}", engine.name())
}

impl DatabaseSchemaInstaller {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        req: &SchemaRequest,
    ) -> Result<(), PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let (charset, collation) = (
            word("charset", &req.charset)?,
            word("collation", &req.collation)?,
        );
        let config = engine_config(executor, ctx, engine).await?;
        let entry = json!({"name": name, "charset": charset, "collation": collation});
        let change = config_change(engine, config, "schemas", &name, Some(entry));
        self.install(
            executor,
            ctx,
            sql_plan(
                engine,
                create_schema_sql(engine, &name, &charset, &collation),
                vec![],
                change,
            )?,
        )
        .await?;
        Ok(())
    }
}

impl DatabaseSchemaRemover {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        req: &SchemaRequest,
    ) -> Result<(), PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let config = engine_config(executor, ctx, engine).await?;
        let change = config_change(engine, config, "schemas", &name, None);
        self.remove(
            executor,
            ctx,
            sql_plan(engine, drop_schema_sql(engine, &name), vec![], change)?,
        )
        .await?;
        Ok(())
    }
}

impl DatabaseUserInstaller {
    /// Create or update a user; its password was stored (sealed) under [`user_secret_name`] beforehand.
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        req: &UserRequest,
    ) -> Result<(), PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let schemas = req
            .schemas
            .iter()
            .map(|s| validate_name("schema", s))
            .collect::<Result<Vec<_>, _>>()?;
        let password = executor
            .store()
            .service_secret(ctx.server.id, &user_secret_name(engine, &name))
            .await?
            .ok_or_else(|| {
                ValidationError::new("password", "no password was given for this user")
            })?;
        if password.expose().is_empty() || password.expose().contains(['\0', '\n', '\r']) {
            return Err(ValidationError::new(
                "password",
                "must not be empty or contain line breaks",
            )
            .into());
        }
        let config = engine_config(executor, ctx, engine).await?;
        let known: Vec<String> = list(&config, "schemas")
            .iter()
            .filter_map(|s| s["name"].as_str().map(String::from))
            .collect();
        if let Some(missing) = schemas.iter().find(|s| !known.contains(s)) {
            return Err(ValidationError::new(
                "schema",
                format!("schema `{missing}` does not exist: create it first"),
            )
            .into());
        }
        let entry = json!({"name": name, "privileges": req.privileges, "schemas": schemas});
        let change = config_change(engine, config, "users", &name, Some(entry));
        let sql = user_sql(engine, &name, &password, req.privileges, &schemas);
        self.install(
            executor,
            ctx,
            sql_plan(engine, sql, vec![password], change)?,
        )
        .await?;
        Ok(())
    }
}

impl DatabaseUserRemover {
    pub async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        req: &UserRequest,
    ) -> Result<(), PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let config = engine_config(executor, ctx, engine).await?;
        let schemas: Vec<String> = list(&config, "users")
            .iter()
            .find(|u| u["name"] == name.as_str())
            .and_then(|u| serde_json::from_value(u["schemas"].clone()).ok())
            .unwrap_or_default();
        let change = config_change(engine, config, "users", &name, None);
        self.remove(
            executor,
            ctx,
            sql_plan(
                engine,
                drop_user_sql(engine, &name, &schemas),
                vec![],
                change,
            )?,
        )
        .await?;
        executor
            .store()
            .delete_service_secret(ctx.server.id, &user_secret_name(engine, &name))
            .await?;
        Ok(())
    }
}

macro_rules! db_job {
    ($($job:ident, $kind:literal, $pkg:ident, $req:ty;)+) => {$(
        pub struct $job;
        impl $job { pub const KIND: &'static str = $kind; }
        impl JobHandler for $job {
            fn kind(&self) -> &'static str { Self::KIND }
            fn run<'a>(&'a self, ctx: &'a JobContext<'a>) -> BoxFuture<'a, Result<serde_json::Value, PackageError>> {
                Box::pin(async move {
                    let req: $req = serde_json::from_value(ctx.job.payload.clone())
                        .map_err(|e| ValidationError::new("request", e.to_string()))?;
                    $pkg.execute(ctx.executor, &ctx.run_context()?, &req).await?;
                    Ok(json!({"name": req.name}))
                })
            }
        }
    )+};
}

db_job! {
    DatabaseSchemaInstallerJob, "database_schema_installer", DatabaseSchemaInstaller, SchemaRequest;
    DatabaseSchemaRemoverJob, "database_schema_remover", DatabaseSchemaRemover, SchemaRequest;
    DatabaseUserInstallerJob, "database_user_installer", DatabaseUserInstaller, UserRequest;
    DatabaseUserRemoverJob, "database_user_remover", DatabaseUserRemover, UserRequest;
}

pub fn register(r: &mut crate::jobs::Registry) {
    r.register(DatabaseSchemaInstallerJob);
    r.register(DatabaseSchemaRemoverJob);
    r.register(DatabaseUserInstallerJob);
    r.register(DatabaseUserRemoverJob);
}

/// Queue a user's creation: seal the password first, then enqueue a job that names it only.
pub async fn create_user(
    store: &brokeforge_store::Store,
    server_id: i64,
    req: &UserRequest,
    password: &Secret,
) -> Result<brokeforge_store::Job, PackageError> {
    let engine = parse_engine(&req.engine)?;
    let name = validate_name("name", &req.name)?;
    for s in &req.schemas {
        validate_name("schema", s)?;
    }
    if password.expose().is_empty() || password.expose().contains(['\0', '\n', '\r']) {
        return Err(
            ValidationError::new("password", "must not be empty or contain line breaks").into(),
        );
    }
    store
        .put_service_secret(server_id, &user_secret_name(engine, &name), password)
        .await?;
    let payload = serde_json::json!({"engine": req.engine, "name": name, "schemas": req.schemas, "privileges": req.privileges});
    Ok(store
        .enqueue(&brokeforge_store::NewJob::new(
            DatabaseUserInstallerJob::KIND,
            Some(server_id),
            payload,
        ))
        .await?)
}

/// Validate and queue a schema's creation.
pub async fn create_schema(
    store: &brokeforge_store::Store,
    server_id: i64,
    req: &SchemaRequest,
) -> Result<brokeforge_store::Job, PackageError> {
    parse_engine(&req.engine)?;
    validate_name("name", &req.name)?;
    Ok(store
        .enqueue(&brokeforge_store::NewJob::new(
            DatabaseSchemaInstallerJob::KIND,
            Some(server_id),
            serde_json::to_value(req).unwrap_or_default(),
        ))
        .await?)
}

/// Validate and queue a schema's removal.
pub async fn drop_schema(
    store: &brokeforge_store::Store,
    server_id: i64,
    engine: &str,
    name: &str,
) -> Result<brokeforge_store::Job, PackageError> {
    queue_drop(
        store,
        server_id,
        DatabaseSchemaRemoverJob::KIND,
        engine,
        name,
    )
    .await
}

/// Validate and queue a user's removal.
pub async fn drop_user(
    store: &brokeforge_store::Store,
    server_id: i64,
    engine: &str,
    name: &str,
) -> Result<brokeforge_store::Job, PackageError> {
    queue_drop(store, server_id, DatabaseUserRemoverJob::KIND, engine, name).await
}

async fn queue_drop(
    store: &brokeforge_store::Store,
    server_id: i64,
    kind: &str,
    engine: &str,
    name: &str,
) -> Result<brokeforge_store::Job, PackageError> {
    parse_engine(engine)?;
    let name = validate_name("name", name)?;
    // The remover jobs read a full request; privileges do not matter for dropping.
    let payload = json!({"engine": engine, "name": name, "privileges": "read-only"});
    Ok(store
        .enqueue(&brokeforge_store::NewJob::new(
            kind,
            Some(server_id),
            payload,
        ))
        .await?)
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
