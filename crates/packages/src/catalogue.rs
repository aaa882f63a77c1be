//! The package catalogue: what can be installed on a server, with its parameters and milestones, so the web
//! UI, the API and the CLI never hard-code a list. `install`/`remove` turn a catalogue name and parameters
//! into a queued job.

use std::collections::BTreeMap;

use brokeforge_core::{ProvisionType, ServiceType, ValidationError};
use brokeforge_store::{Job, JobTarget, NewJob, Store};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::base::{Milestones, PackageError};
use crate::services::database::{
    DatabaseInstallerMilestones, DatabaseRemoverMilestones, Engine, job_kinds,
};
use crate::services::webserver::{
    THIRD_PARTY_PHP, WebServiceInstallerJob, WebServiceInstallerMilestones, WebServiceRemoverJob,
    WebServiceRemoverMilestones,
};

#[derive(Debug, Clone, Serialize)]
pub struct Parameter {
    pub name: &'static str,
    /// `string`, `integer`, `boolean` or `choice`.
    pub kind: &'static str,
    pub description: &'static str,
    pub default: Value,
    /// For `choice`: the allowed values.
    pub allowed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Milestone {
    pub key: &'static str,
    pub label: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: &'static str,
    pub category: ServiceType,
    pub description: &'static str,
    pub parameters: Vec<Parameter>,
    /// Parameters of the removal.
    pub remove_parameters: Vec<Parameter>,
    pub install_milestones: Vec<Milestone>,
    pub remove_milestones: Vec<Milestone>,
    #[serde(skip)]
    installer_kind: &'static str,
    #[serde(skip)]
    remover_kind: &'static str,
}

impl Entry {
    /// The job kind that installs this package.
    pub fn installer_kind(&self) -> &'static str {
        self.installer_kind
    }
    /// The job kind that removes it.
    pub fn remover_kind(&self) -> &'static str {
        self.remover_kind
    }
}

fn milestones<M: Milestones>() -> Vec<Milestone> {
    M::all()
        .iter()
        .map(|m| Milestone {
            key: m.key(),
            label: m.label(),
        })
        .collect()
}

fn param(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
    default: Value,
) -> Parameter {
    Parameter {
        name,
        kind,
        description,
        default,
        allowed: Vec::new(),
    }
}

/// Every installable package.
pub fn catalogue() -> Vec<Entry> {
    let mut php = vec!["distribution".to_string()];
    php.extend(THIRD_PARTY_PHP.iter().map(|v| v.to_string()));
    let mut entries = vec![Entry {
        name: "webserver",
        category: ServiceType::Webserver,
        description: "nginx and PHP-FPM with the usual extensions; run again to add PHP versions",
        parameters: vec![
            Parameter {
                allowed: php,
                ..param(
                    "php_version",
                    "choice",
                    "PHP version (the distribution's, or one from the well-known PHP repository)",
                    json!("distribution"),
                )
            },
            param("memory_limit", "string", "PHP memory_limit", json!("256M")),
            param(
                "upload_max_filesize",
                "string",
                "largest upload",
                json!("64M"),
            ),
            param("post_max_size", "string", "largest POST body", json!("64M")),
            param(
                "max_execution_time",
                "integer",
                "seconds a request may run",
                json!(60),
            ),
            param(
                "cli_default",
                "boolean",
                "make this version the command-line php",
                json!(true),
            ),
        ],
        remove_parameters: Vec::new(),
        install_milestones: milestones::<WebServiceInstallerMilestones>(),
        remove_milestones: milestones::<WebServiceRemoverMilestones>(),
        installer_kind: WebServiceInstallerJob::KIND,
        remover_kind: WebServiceRemoverJob::KIND,
    }];
    for engine in Engine::ALL {
        let (installer_kind, remover_kind) = job_kinds(engine);
        entries.push(Entry {
            name: engine.name(),
            category: ServiceType::Database,
            description: match engine {
                Engine::MariaDb => "MariaDB server (excludes MySQL)",
                Engine::MySql => "MySQL server from Ubuntu's archive (excludes MariaDB; not available on Debian)",
                Engine::PostgreSql => "PostgreSQL server",
                Engine::Redis => "Redis with a generated password",
            },
            parameters: vec![param(
                "allowed_sources",
                "string",
                "comma-separated addresses or networks allowed to connect; empty keeps it on localhost",
                json!(""),
            )],
            remove_parameters: vec![
                param("dump_first", "boolean", "dump all data to /root/brokeforge-backups before removing", json!(false)),
                param("remove_data", "boolean", "delete the data and configuration directories", json!(false)),
            ],
            install_milestones: milestones::<DatabaseInstallerMilestones>(),
            remove_milestones: milestones::<DatabaseRemoverMilestones>(),
            installer_kind,
            remover_kind,
        });
    }
    if crate::services::demo::enabled() {
        use crate::services::demo::{
            DemoInstallerJob, DemoInstallerMilestones, DemoRemoverJob, DemoRemoverMilestones,
        };
        entries.push(Entry {
            name: crate::services::demo::NAME,
            category: ServiceType::Server,
            description: "A harmless demo: four short steps, optionally failing once (then Retry)",
            parameters: vec![
                param("step_ms", "integer", "milliseconds per step", json!(700)),
                Parameter {
                    allowed: ["none", "prepare", "download", "configure", "finish"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    ..param(
                        "fail_once_at",
                        "choice",
                        "a step that fails the first time",
                        json!("none"),
                    )
                },
            ],
            remove_parameters: Vec::new(),
            install_milestones: milestones::<DemoInstallerMilestones>(),
            remove_milestones: milestones::<DemoRemoverMilestones>(),
            installer_kind: DemoInstallerJob::KIND,
            remover_kind: DemoRemoverJob::KIND,
        });
    }
    entries
}

pub fn entry(name: &str) -> Result<Entry, ValidationError> {
    catalogue()
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            let names: Vec<_> = catalogue().iter().map(|e| e.name).collect();
            ValidationError::new(
                "package",
                format!("unknown package `{name}` (available: {})", names.join(", ")),
            )
        })
}

/// Check `key=value` settings against an entry's install parameters and type them.
pub fn options(
    entry: &Entry,
    settings: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, ValidationError> {
    typed(entry, &entry.parameters, settings)
}

fn typed(
    entry: &Entry,
    parameters: &[Parameter],
    settings: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, ValidationError> {
    let mut out = Map::new();
    for (key, raw) in settings {
        let p = parameters.iter().find(|p| p.name == key).ok_or_else(|| {
            let names: Vec<_> = parameters.iter().map(|p| p.name).collect();
            ValidationError::new(
                "set",
                format!(
                    "{} has no parameter `{key}` (parameters: {})",
                    entry.name,
                    names.join(", ")
                ),
            )
        })?;
        let value =
            match p.kind {
                "integer" => Value::from(raw.parse::<i64>().map_err(|_| {
                    ValidationError::new(p.name, format!("`{raw}` is not a number"))
                })?),
                "boolean" => Value::from(match raw.as_str() {
                    "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => {
                        return Err(ValidationError::new(
                            p.name,
                            format!("`{raw}` is not true or false"),
                        ));
                    }
                }),
                "choice" if !p.allowed.iter().any(|a| a == raw) => {
                    return Err(ValidationError::new(
                        p.name,
                        format!("`{raw}` is not one of {}", p.allowed.join(", ")),
                    ));
                }
                _ => Value::from(raw.clone()),
            };
        out.insert(key.clone(), value);
    }
    // "distribution" means: let the installer pick the OS's own version.
    if out.get("php_version").and_then(|v| v.as_str()) == Some("distribution") {
        out.remove("php_version");
    }
    Ok(out)
}

fn enqueue_for(
    entry: &Entry,
    server_id: i64,
    provision_type: ProvisionType,
    options: Map<String, Value>,
) -> NewJob {
    let kind = match provision_type {
        ProvisionType::Install => entry.installer_kind,
        ProvisionType::Uninstall => entry.remover_kind,
    };
    NewJob {
        target: Some(JobTarget::Service {
            name: entry.name.into(),
            service_type: entry.category,
            provision_type,
        }),
        ..NewJob::new(kind, Some(server_id), json!({"options": options}))
    }
}

/// Queue the installation of catalogue package `name` on a server.
pub async fn install(
    store: &Store,
    server_id: i64,
    name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<Job, PackageError> {
    let entry = entry(name)?;
    let opts = options(&entry, settings)?;
    Ok(store
        .enqueue(&enqueue_for(
            &entry,
            server_id,
            ProvisionType::Install,
            opts,
        ))
        .await?)
}

/// Queue the removal of catalogue package `name` from a server.
pub async fn remove(
    store: &Store,
    server_id: i64,
    name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<Job, PackageError> {
    let entry = entry(name)?;
    let opts = typed(&entry, &entry.remove_parameters, settings)?;
    if entry.name == crate::services::webserver::SERVICE_NAME {
        let sites = store.sites(server_id).await?;
        if !sites.is_empty() {
            let names: Vec<&str> = sites.iter().map(|s| s.domain.as_str()).collect();
            return Err(ValidationError::new(
                "webserver",
                format!(
                    "the server still has sites ({}): remove them first, or they stop being served",
                    names.join(", ")
                ),
            )
            .into());
        }
    }
    Ok(store
        .enqueue(&enqueue_for(
            &entry,
            server_id,
            ProvisionType::Uninstall,
            opts,
        ))
        .await?)
}

/// The plan catalogue package `name` would run on `server` with `settings`, as a user reads it (milestones,
/// commands, files; secrets masked), without running anything. `remove` previews the removal.
pub async fn preview(
    store: &Store,
    server: &brokeforge_store::Server,
    name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<String, PackageError> {
    preview_for(store, server, name, settings, ProvisionType::Install).await
}

pub async fn preview_for(
    store: &Store,
    server: &brokeforge_store::Server,
    name: &str,
    settings: &BTreeMap<String, String>,
    provision_type: ProvisionType,
) -> Result<String, PackageError> {
    use crate::services::database::{
        DatabaseOptions, DatabaseRemoveOptions, install_plan, parse_sources, previous_sources,
        remove_plan,
    };
    use crate::services::webserver::{
        SERVICE_NAME, WebServiceInstaller, WebServiceOptions, WebServiceRemover,
    };
    let entry = entry(name)?;
    let opts = match provision_type {
        ProvisionType::Install => options(&entry, settings)?,
        ProvisionType::Uninstall => typed(&entry, &entry.remove_parameters, settings)?,
    };
    let bad = |e: serde_json::Error| ValidationError::new("set", e.to_string());
    let services = store.services(server.id).await?;
    let current = services
        .iter()
        .find(|s| s.service_name == entry.name)
        .map(|s| &s.configuration);
    let plan = if entry.name == crate::services::demo::NAME {
        let o: crate::services::demo::DemoOptions =
            serde_json::from_value(Value::Object(opts)).map_err(bad)?;
        match provision_type {
            ProvisionType::Install => crate::services::demo::DemoInstaller.commands(&o)?,
            ProvisionType::Uninstall => {
                return Err(ValidationError::new("package", "no removal preview for demo").into());
            }
        }
    } else if entry.name == SERVICE_NAME {
        match provision_type {
            ProvisionType::Install => {
                let o: WebServiceOptions =
                    serde_json::from_value(Value::Object(opts)).map_err(bad)?;
                let p =
                    WebServiceInstaller.prepare(server.os.as_deref(), &server.name, current, &o)?;
                WebServiceInstaller.commands(&p)?
            }
            ProvisionType::Uninstall => {
                let versions: Vec<String> = current
                    .and_then(|c| c.get("php_versions"))
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default();
                WebServiceRemover.commands(&versions)
            }
        }
    } else {
        let engine = Engine::ALL
            .iter()
            .copied()
            .find(|e| e.name() == entry.name)
            .ok_or_else(|| ValidationError::new("package", format!("no preview for {name}")))?;
        let previous = previous_sources(current);
        // The real password is never shown; a stand-in is masked like it.
        let password = brokeforge_core::Secret::new("preview-password-not-used");
        match provision_type {
            ProvisionType::Install => {
                let o: DatabaseOptions =
                    serde_json::from_value(Value::Object(opts)).map_err(bad)?;
                let os = server.os.clone().ok_or_else(|| {
                    ValidationError::new(
                        "server",
                        "the server is not provisioned yet: provision it first",
                    )
                })?;
                let sources = parse_sources(&o.allowed_sources)?;
                install_plan(engine, &os, &sources, &previous, &password, current)?
            }
            ProvisionType::Uninstall => {
                let o: DatabaseRemoveOptions =
                    serde_json::from_value(Value::Object(opts)).map_err(bad)?;
                remove_plan(engine, &o, &previous, Some(&password))
            }
        }
    };
    Ok(plan.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_typed_and_checked() {
        let e = entry("webserver").unwrap();
        let s: BTreeMap<String, String> = [
            ("php_version", "8.3"),
            ("max_execution_time", "90"),
            ("cli_default", "no"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = options(&e, &s).unwrap();
        assert_eq!(o["php_version"], "8.3");
        assert_eq!(o["max_execution_time"], 90);
        assert_eq!(o["cli_default"], false);
        for (k, v) in [
            ("php_version", "5.6"),
            ("max_execution_time", "soon"),
            ("nope", "1"),
            ("cli_default", "maybe"),
        ] {
            let s = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(options(&e, &s).is_err(), "{k}={v}");
        }
        assert!(
            entry("wordpress")
                .unwrap_err()
                .to_string()
                .contains("available: webserver")
        );
    }
}
