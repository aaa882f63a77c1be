//! Database schemas on MariaDB, MySQL and PostgreSQL (`DatabaseSchemaInstaller`, `DatabaseSchemaRemover`).

use brokeforge_core::{CredentialKind, ServiceType};
use brokeforge_store::{Job, Store};
use serde_json::json;

use super::engine::{Engine, SchemaEntry};
use super::sql::{
    DatabaseSchemaInstallerMilestones, DropRequest, SchemaRequest, config_change,
    create_schema_sql, drop_schema_sql, engine_config, parse_engine, sql_plan, validate_name,
    word,
};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover, job};
use crate::base::registry::Registry;
use crate::base::{PackageError, Plan, StoreChange};

pub fn register(r: &mut Registry) {
    r.installer(DatabaseSchemaInstaller);
    r.remover(DatabaseSchemaRemover);
}

pub struct DatabaseSchemaInstaller;
pub struct DatabaseSchemaRemover;

/// The SQL to run and the configuration to record afterwards.
pub struct SchemaChange {
    pub engine: Engine,
    pub name: String,
    pub sql: String,
    pub record: StoreChange,
}

impl Package for DatabaseSchemaInstaller {
    type Milestones = DatabaseSchemaInstallerMilestones;
    type Request = SchemaRequest;
    type Input = SchemaChange;
    const JOB: &'static str = "database_schema_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, req: &SchemaRequest) -> Result<SchemaChange, PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let (charset, collation) = (
            word("charset", &req.charset)?,
            word("collation", &req.collation)?,
        );
        let mut config = engine_config(cx, engine).await?;
        config.schemas.retain(|s| s.name != name);
        config.schemas.push(SchemaEntry {
            name: name.clone(),
            charset: charset.clone(),
            collation: collation.clone(),
        });
        Ok(SchemaChange {
            engine,
            sql: create_schema_sql(engine, &name, &charset, &collation),
            name,
            record: config_change(engine, &config),
        })
    }

    fn commands(&self, c: &SchemaChange) -> Result<Plan, PackageError> {
        sql_plan(c.engine, c.sql.clone(), vec![], c.record.clone())
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        c: SchemaChange,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"name": c.name}))
    }
}

impl PackageInstaller for DatabaseSchemaInstaller {}

impl Package for DatabaseSchemaRemover {
    type Milestones = DatabaseSchemaInstallerMilestones;
    type Request = DropRequest;
    type Input = SchemaChange;
    const JOB: &'static str = "database_schema_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, req: &DropRequest) -> Result<SchemaChange, PackageError> {
        let engine = parse_engine(&req.engine)?;
        let name = validate_name("name", &req.name)?;
        let mut config = engine_config(cx, engine).await?;
        config.schemas.retain(|s| s.name != name);
        Ok(SchemaChange {
            engine,
            sql: drop_schema_sql(engine, &name),
            name,
            record: config_change(engine, &config),
        })
    }

    fn commands(&self, c: &SchemaChange) -> Result<Plan, PackageError> {
        sql_plan(c.engine, c.sql.clone(), vec![], c.record.clone())
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        c: SchemaChange,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"name": c.name}))
    }
}

impl PackageRemover for DatabaseSchemaRemover {}

/// Validate and queue a schema's creation.
pub async fn create_schema(store: &Store, server_id: i64, req: &SchemaRequest) -> Result<Job, PackageError> {
    parse_engine(&req.engine)?;
    validate_name("name", &req.name)?;
    Ok(store
        .enqueue(&job::<DatabaseSchemaInstaller>(server_id, req)?)
        .await?)
}

/// Validate and queue a schema's removal.
pub async fn drop_schema(
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
        .enqueue(&job::<DatabaseSchemaRemover>(server_id, &request)?)
        .await?)
}
