//! Database users on MariaDB, MySQL and PostgreSQL (`DatabaseUserInstaller`, `DatabaseUserRemover`). A user's
//! password is sealed in the store before its job is queued: job payloads are not secret.

use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError};
use brokeforge_store::{Job, Store};
use serde_json::json;

use super::engine::{Engine, UserEntry};
use super::sql::{
    DatabaseSchemaInstallerMilestones, DropRequest, UserRequest, config_change, drop_user_sql,
    engine_config, parse_engine, sql_plan, user_secret_name, user_sql, validate_name,
};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, StoreChange};

pub fn register(r: &mut Registry) {
    r.installer(DatabaseUserInstaller);
    r.remover(DatabaseUserRemover);
}

pub struct DatabaseUserInstaller;
pub struct DatabaseUserRemover;

/// The SQL to run (with the password it carries) and the configuration to record afterwards.
pub struct UserChange {
    pub engine: Engine,
    pub name: String,
    pub sql: String,
    pub secrets: Vec<Secret>,
    pub record: StoreChange,
}

/// Shortest database password accepted (BrokeForge's own are 32 characters).
pub const MIN_PASSWORD_LEN: usize = 12;

fn check_password(password: &Secret) -> Result<(), ValidationError> {
    if password.expose().chars().count() < MIN_PASSWORD_LEN {
        return Err(ValidationError::new(
            "password",
            format!("use at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    if password.expose().contains(['\0', '\n', '\r']) {
        return Err(ValidationError::new(
            "password",
            "must not contain line breaks",
        ));
    }
    Ok(())
}

impl Package for DatabaseUserInstaller {
    type Milestones = DatabaseSchemaInstallerMilestones;
    type Request = UserRequest;
    type Input = UserChange;
    const JOB: &'static str = "database_user_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    /// Create or update a user; its password was stored (sealed) under [`user_secret_name`] beforehand.
    async fn gather(&self, cx: &Gather<'_>, req: &UserRequest) -> Result<UserChange, PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let schemas = req
            .schemas
            .iter()
            .map(|s| validate_name("schema", s))
            .collect::<Result<Vec<_>, _>>()?;
        let password = cx
            .store
            .service_secret(cx.server.id, &user_secret_name(engine, &name))
            .await?
            .ok_or_else(|| {
                ValidationError::new("password", "no password was given for this user")
            })?;
        check_password(&password)?;
        let mut config = engine_config(cx, engine).await?;
        if let Some(missing) = schemas
            .iter()
            .find(|s| !config.schemas.iter().any(|k| k.name == **s))
        {
            return Err(ValidationError::new(
                "schema",
                format!("schema `{missing}` does not exist: create it first"),
            )
            .into());
        }
        config.users.retain(|u| u.name != name);
        config.users.push(UserEntry {
            name: name.clone(),
            privileges: Some(req.privileges),
            schemas: schemas.clone(),
        });
        Ok(UserChange {
            engine,
            sql: user_sql(engine, &name, &password, req.privileges, &schemas),
            name,
            secrets: vec![password],
            record: config_change(engine, &config),
        })
    }

    fn commands(&self, c: &UserChange) -> Result<Plan, PackageError> {
        sql_plan(c.engine, c.sql.clone(), c.secrets.clone(), c.record.clone())
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        c: UserChange,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"name": c.name}))
    }
}

impl PackageInstaller for DatabaseUserInstaller {}

impl Package for DatabaseUserRemover {
    type Milestones = DatabaseSchemaInstallerMilestones;
    type Request = DropRequest;
    type Input = UserChange;
    const JOB: &'static str = "database_user_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, req: &DropRequest) -> Result<UserChange, PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let mut config = engine_config(cx, engine).await?;
        let schemas = config
            .users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.schemas.clone())
            .unwrap_or_default();
        config.users.retain(|u| u.name != name);
        Ok(UserChange {
            engine,
            sql: drop_user_sql(engine, &name, &schemas),
            name,
            secrets: vec![],
            record: config_change(engine, &config),
        })
    }

    fn commands(&self, c: &UserChange) -> Result<Plan, PackageError> {
        sql_plan(c.engine, c.sql.clone(), vec![], c.record.clone())
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        c: UserChange,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        cx.store
            .delete_service_secret(cx.server.id, &user_secret_name(c.engine, &c.name))
            .await?;
        Ok(json!({"name": c.name}))
    }
}

impl PackageRemover for DatabaseUserRemover {}

/// Queue a user's creation: seal the password first, then enqueue a job that names it only.
pub async fn create_user(
    store: &Store,
    server_id: i64,
    req: &UserRequest,
    password: &Secret,
) -> Result<Job, PackageError> {
    let engine = parse_engine(&req.engine)?;
    let name = validate_name("name", &req.name)?;
    for s in &req.schemas {
        validate_name("schema", s)?;
    }
    check_password(password)?;
    store
        .put_service_secret(server_id, &user_secret_name(engine, &name), password)
        .await?;
    let request = UserRequest {
        name,
        ..req.clone()
    };
    Ok(store
        .enqueue(&job::<DatabaseUserInstaller>(server_id, &request)?)
        .await?)
}

/// Validate and queue a user's removal.
pub async fn drop_user(
    store: &Store,
    server_id: i64,
    engine: &str,
    name: &str,
) -> Result<Job, PackageError> {
    parse_engine(engine)?;
    let request = DropRequest {
        engine: engine.into(),
        name: validate_name("name", name)?,
    };
    Ok(store
        .enqueue(&job::<DatabaseUserRemover>(server_id, &request)?)
        .await?)
}
