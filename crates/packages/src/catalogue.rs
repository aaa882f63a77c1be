//! The package catalogue: what can be installed on a server by name, with its parameters and milestones, so
//! the web UI, the API and the CLI never hard-code a list. Entries come from the packages' own folders (see
//! [`crate::services::registry`]). `install`/`remove` turn a name and settings into a queued job; `preview`
//! shows the plan a job would run, from the package's own gathering step.

use std::collections::BTreeMap;

use brokeforge_core::{ProvisionType, ValidationError};
use brokeforge_store::{Job, JobTarget, NewJob, Server, Store};
use serde_json::{Map, Value};

use crate::base::PackageError;
use crate::base::package::AnyPackage;
pub use crate::base::registry::{Entry, Milestone, Parameter};
use crate::services::registry;

/// Every installable package shown in this process.
pub fn catalogue() -> Vec<Entry> {
    registry().entries().cloned().collect()
}

pub fn entry(name: &str) -> Result<Entry, ValidationError> {
    registry().entry(name).cloned()
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
    Ok(out)
}

/// The package and the payload its job carries: settings typed against the parameters, then parsed once
/// into the package's own request type.
fn request(
    entry: &Entry,
    provision_type: ProvisionType,
    settings: &BTreeMap<String, String>,
) -> Result<(std::sync::Arc<dyn AnyPackage>, Value), ValidationError> {
    let (package, parameters) = match provision_type {
        ProvisionType::Install => (entry.installer.clone(), &entry.parameters),
        ProvisionType::Uninstall => (
            entry.remover.clone().ok_or_else(|| {
                ValidationError::new("package", format!("{} cannot be removed", entry.name))
            })?,
            &entry.remove_parameters,
        ),
    };
    let payload = package.payload(Value::Object(typed(entry, parameters, settings)?))?;
    Ok((package, payload))
}

fn job_for(
    entry: &Entry,
    server_id: i64,
    provision_type: ProvisionType,
    package: &dyn AnyPackage,
    payload: Value,
) -> NewJob {
    NewJob {
        target: Some(JobTarget::Service {
            name: entry.name.into(),
            service_type: entry.category,
            provision_type,
        }),
        ..NewJob::new(package.job(), Some(server_id), payload)
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
    let (package, payload) = request(&entry, ProvisionType::Install, settings)?;
    // The package's own checks run first (as a preview, changing nothing): a request it would refuse (a
    // memory limit out of range) queues nothing.
    let server = store.server(server_id).await?;
    package.preview(store, &server, &payload).await?;
    Ok(store
        .enqueue(&job_for(
            &entry,
            server_id,
            ProvisionType::Install,
            package.as_ref(),
            payload,
        ))
        .await?)
}

/// Queue the removal of catalogue package `name` from a server. The removal's own checks run first (as a
/// preview), so a removal that would be refused (a web server that still serves sites) queues nothing.
pub async fn remove(
    store: &Store,
    server_id: i64,
    name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<Job, PackageError> {
    let entry = entry(name)?;
    let (package, payload) = request(&entry, ProvisionType::Uninstall, settings)?;
    let server = store.server(server_id).await?;
    package.preview(store, &server, &payload).await?;
    Ok(store
        .enqueue(&job_for(
            &entry,
            server_id,
            ProvisionType::Uninstall,
            package.as_ref(),
            payload,
        ))
        .await?)
}

/// The plan catalogue package `name` would run on `server` with `settings`, as a user reads it (milestones,
/// commands, files; secrets masked), without running anything.
pub async fn preview(
    store: &Store,
    server: &Server,
    name: &str,
    settings: &BTreeMap<String, String>,
) -> Result<String, PackageError> {
    preview_for(store, server, name, settings, ProvisionType::Install).await
}

/// [`preview`] of the installation or the removal: the package's own gathering, as a dry run.
pub async fn preview_for(
    store: &Store,
    server: &Server,
    name: &str,
    settings: &BTreeMap<String, String>,
    provision_type: ProvisionType,
) -> Result<String, PackageError> {
    let entry = entry(name)?;
    let (package, payload) = request(&entry, provision_type, settings)?;
    Ok(package.preview(store, server, &payload).await?.to_string())
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
