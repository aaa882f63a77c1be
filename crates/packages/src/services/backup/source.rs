//! What a plan backs up (a database schema, Redis's data, a site's files) and the helper's arguments for it.

use brokeforge_core::{ValidationError, validate};
use brokeforge_store::BackupPlan;
use serde::{Deserialize, Serialize};

use crate::base::PackageError;
use crate::services::database::engine::Engine;
use crate::services::database::sql::{parse_engine, validate_name};
use crate::services::sites::common::site_root;

/// What a plan backs up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// One schema of a SQL engine on the plan's server.
    Database { engine: String, schema: String },
    /// A site's `shared/` directory (its `.env` and what survives deploys: uploads, storage).
    Site {
        domain: String,
        /// Where an isolated site lives (in its own user's home); `None`: the app user's home.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    /// The server's Redis instance: all its data (an RDB snapshot).
    Redis {},
}

impl Source {
    /// Parse `ENGINE:SCHEMA` (the CLI's `--database`).
    pub fn database(spec: &str) -> Result<Source, ValidationError> {
        let (engine, schema) = spec.split_once(':').ok_or_else(|| {
            ValidationError::new(
                "database",
                "give the database as ENGINE:SCHEMA, e.g. mariadb:shop",
            )
        })?;
        Source::Database {
            engine: engine.trim().to_string(),
            schema: schema.trim().to_string(),
        }
        .validated()
    }

    /// A site's files (the CLI's `--site`).
    pub fn site(domain: &str) -> Result<Source, ValidationError> {
        Source::Site {
            domain: domain.trim().to_string(),
            root: None,
        }
        .validated()
    }

    /// `site:DOMAIN` or `ENGINE:SCHEMA` (one field on the page).
    pub fn parse(spec: &str) -> Result<Source, ValidationError> {
        if spec.trim() == "redis" {
            return Ok(Source::Redis {});
        }
        match spec.trim().strip_prefix("site:") {
            Some(domain) => Source::site(domain),
            None => Source::database(spec),
        }
    }

    pub fn validated(self) -> Result<Source, ValidationError> {
        match self {
            Source::Database { engine, schema } => {
                let e = parse_engine(&engine)?;
                Ok(Source::Database {
                    engine: e.name().to_string(),
                    schema: validate_name("schema", &schema)?,
                })
            }
            Source::Site { domain, root } => Ok(Source::Site {
                domain: validate::domain(&domain)
                    .map_err(|e| ValidationError::new("site", e.message))?,
                root: root
                    .map(|r| validate::absolute_path("site", &r))
                    .transpose()?,
            }),
            Source::Redis {} => Ok(Source::Redis {}),
        }
    }

    pub fn of(plan: &BackupPlan) -> Result<Source, PackageError> {
        serde_json::from_value(plan.source.clone()).map_err(|e| {
            ValidationError::new(
                "source",
                format!("plan {} has an unreadable source: {e}", plan.name),
            )
            .into()
        })
    }

    /// The engine of a database source.
    pub fn engine(&self) -> Option<Engine> {
        match self {
            Source::Database { engine, .. } => parse_engine(engine).ok(),
            Source::Redis {} => Some(Engine::Redis),
            Source::Site { .. } => None,
        }
    }

    /// What a restore in place overwrites, by name (a schema, a site's domain): the confirmation word.
    pub fn target(&self) -> &str {
        match self {
            Source::Database { schema, .. } => schema,
            Source::Site { domain, .. } => domain,
            Source::Redis {} => "redis",
        }
    }

    /// The directory a site lives in (empty for other sources).
    fn site_dir(&self) -> String {
        match self {
            Source::Site {
                root: Some(root), ..
            } => root.clone(),
            Source::Site { domain, .. } => site_root(domain),
            _ => String::new(),
        }
    }

    /// The directory a site source backs up.
    pub fn path(&self) -> Option<String> {
        match self {
            Source::Site { .. } => Some(format!("{}/shared", self.site_dir())),
            Source::Database { .. } | Source::Redis {} => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Database { engine, schema } => format!("{engine} schema {schema}"),
            Source::Site { domain, .. } => format!("files of site {domain} (shared/, .env)"),
            Source::Redis {} => "the data of Redis".to_string(),
        }
    }

    /// The helper's action and arguments that take a snapshot.
    pub fn backup_args(&self) -> (&'static str, Vec<String>) {
        match self {
            Source::Database { engine, schema } => ("backup", vec![engine.clone(), schema.clone()]),
            Source::Site { .. } => ("backup-files", vec![self.path().unwrap_or_default()]),
            Source::Redis {} => ("backup", vec!["redis".into(), "redis".into()]),
        }
    }

    /// The helper's action and arguments that restore `snapshot`: in place, or into `into` (a new schema,
    /// or a directory `restored-INTO` beside the site's `shared/`).
    pub fn restore_args(&self, snapshot: &str, into: Option<&str>) -> (&'static str, Vec<String>) {
        match self {
            Source::Database { engine, schema } => (
                "restore",
                vec![
                    engine.clone(),
                    schema.clone(),
                    snapshot.into(),
                    into.unwrap_or(schema).into(),
                    if into.is_some() { "new" } else { "same" }.into(),
                ],
            ),
            Source::Site { .. } => (
                "restore-files",
                vec![
                    snapshot.into(),
                    self.path().unwrap_or_default(),
                    into.map(|i| format!("{}/restored-{i}", self.site_dir()))
                        .unwrap_or_else(|| "/".into()),
                ],
            ),
            Source::Redis {} => (
                "restore",
                vec![
                    "redis".into(),
                    "redis".into(),
                    snapshot.into(),
                    "redis".into(),
                    "same".into(),
                ],
            ),
        }
    }

    /// The helper's action and arguments for a restore drill of `snapshot`.
    pub fn verify_args(&self, snapshot: &str, scratch: &str) -> (&'static str, Vec<String>) {
        match self {
            Source::Database { engine, schema } => (
                "verify",
                vec![
                    engine.clone(),
                    schema.clone(),
                    snapshot.into(),
                    scratch.into(),
                ],
            ),
            Source::Site { .. } => (
                "verify-files",
                vec![snapshot.into(), self.path().unwrap_or_default()],
            ),
            Source::Redis {} => (
                "verify",
                vec![
                    "redis".into(),
                    "redis".into(),
                    snapshot.into(),
                    scratch.into(),
                ],
            ),
        }
    }
}
