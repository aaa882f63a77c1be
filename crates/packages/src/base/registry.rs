//! Every package registers itself here from its own folder: its jobs (`r.installer(...)`, `r.remover(...)`),
//! its catalogue entry when users install it by name, and its config templates. Nothing else names packages.

use std::collections::HashMap;
use std::sync::Arc;

use brokeforge_core::{ServiceType, ValidationError};
use serde::Serialize;
use serde_json::Value;

pub use super::Milestone;
use super::job::JobHandler;
use super::package::{AnyPackage, InstallerJob, PackageInstaller, PackageRemover, RemoverJob};
use crate::templates::Template;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Parameter {
    pub name: &'static str,
    /// `string`, `integer`, `boolean` or `choice`.
    pub kind: &'static str,
    pub description: &'static str,
    pub default: Value,
    /// For `choice`: the allowed values.
    pub allowed: Vec<String>,
}

impl Parameter {
    pub fn new(
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

    pub fn choice(
        name: &'static str,
        description: &'static str,
        default: &str,
        allowed: impl IntoIterator<Item = impl Into<String>>,
    ) -> Parameter {
        Parameter {
            allowed: allowed.into_iter().map(Into::into).collect(),
            ..Parameter::new(name, "choice", description, Value::from(default))
        }
    }
}

/// A package users install by name.
#[derive(Clone, Serialize, schemars::JsonSchema)]
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
    pub installer: Arc<dyn AnyPackage>,
    #[serde(skip)]
    pub remover: Option<Arc<dyn AnyPackage>>,
    /// Why the package cannot go on a server with this OS; `None` when it can.
    #[serde(skip)]
    pub unavailable: fn(os: &str) -> Option<String>,
    /// Listed in this process's catalogue (the demo package hides unless enabled).
    #[serde(skip)]
    pub shown: fn() -> bool,
    /// Its record keeps its settings whole, so installing it again with them puts back its packages, units
    /// and settings files: drift repair does that (not for the web server, whose PHP versions and pools
    /// have their own packages, nor the collector, whose address comes from the panel).
    #[serde(skip)]
    pub repaired_by_reinstall: bool,
}

impl Entry {
    pub fn new(
        name: &'static str,
        category: ServiceType,
        description: &'static str,
        installer: Arc<dyn AnyPackage>,
    ) -> Entry {
        Entry {
            name,
            category,
            description,
            parameters: Vec::new(),
            remove_parameters: Vec::new(),
            install_milestones: installer.milestones(),
            remove_milestones: Vec::new(),
            installer,
            remover: None,
            unavailable: |_| None,
            shown: || true,
            repaired_by_reinstall: false,
        }
    }

    pub fn parameters(mut self, parameters: Vec<Parameter>) -> Entry {
        self.parameters = parameters;
        self
    }

    pub fn remover(mut self, remover: Arc<dyn AnyPackage>, parameters: Vec<Parameter>) -> Entry {
        self.remove_milestones = remover.milestones();
        self.remover = Some(remover);
        self.remove_parameters = parameters;
        self
    }

    pub fn unavailable(mut self, reason: fn(&str) -> Option<String>) -> Entry {
        self.unavailable = reason;
        self
    }

    pub fn shown(mut self, shown: fn() -> bool) -> Entry {
        self.shown = shown;
        self
    }

    pub fn repaired_by_reinstall(mut self) -> Entry {
        self.repaired_by_reinstall = true;
        self
    }

    /// The job kind that installs this package.
    pub fn installer_kind(&self) -> &'static str {
        self.installer.job()
    }

    /// The job kind that removes it.
    pub fn remover_kind(&self) -> Option<&'static str> {
        self.remover.as_ref().map(|r| r.job())
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Default, Clone)]
pub struct Registry {
    jobs: HashMap<&'static str, Arc<dyn JobHandler>>,
    packages: HashMap<&'static str, Arc<dyn AnyPackage>>,
    entries: Vec<Entry>,
    templates: Vec<&'static Template>,
}

impl Registry {
    /// Register installer `P` and its job; the handle goes into a catalogue entry.
    pub fn installer<P: PackageInstaller>(&mut self, package: P) -> Arc<dyn AnyPackage> {
        let p = Arc::new(package);
        self.job(InstallerJob(p.clone()));
        self.packages.insert(P::JOB, p.clone());
        p
    }

    /// Register remover `P` and its job.
    pub fn remover<P: PackageRemover>(&mut self, package: P) -> Arc<dyn AnyPackage> {
        let p = Arc::new(package);
        self.job(RemoverJob(p.clone()));
        self.packages.insert(P::JOB, p.clone());
        p
    }

    /// A job kind that is not a package (the queue benchmark's no-op, tests' own handlers).
    pub fn job(&mut self, handler: impl JobHandler) {
        let kind = handler.kind();
        let previous = self.jobs.insert(kind, Arc::new(handler));
        debug_assert!(previous.is_none(), "job kind `{kind}` registered twice");
    }

    pub fn catalogue(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    pub fn template(&mut self, template: &'static Template) {
        self.templates.push(template);
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.jobs.get(kind).cloned()
    }

    /// The package a job kind runs.
    pub fn package(&self, kind: &str) -> Option<&Arc<dyn AnyPackage>> {
        self.packages.get(kind)
    }

    pub fn job_kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.jobs.keys().copied()
    }

    /// Catalogue entries shown in this process.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| (e.shown)())
    }

    pub fn entry(&self, name: &str) -> Result<&Entry, ValidationError> {
        self.entries().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<_> = self.entries().map(|e| e.name).collect();
            ValidationError::new(
                "package",
                format!("unknown package `{name}` (available: {})", names.join(", ")),
            )
        })
    }

    pub fn templates(&self) -> &[&'static Template] {
        &self.templates
    }
}

/// A category's packages, one folder each: `packages![mariadb, postgresql]` declares the modules and a
/// `register` that registers each (every package folder has `pub fn register(r: &mut Registry)`).
#[macro_export]
macro_rules! packages {
    ($($name:ident),+ $(,)?) => {
        $(pub mod $name;)+

        /// Register every package of this category, each from its own folder.
        pub fn register(r: &mut $crate::base::registry::Registry) {
            $($name::register(r);)+
        }
    };
}
