//! The package system from the spec, in Rust: `base` (plans, milestones, the package contract, jobs, the
//! registry, typed configuration, the executor), `services/{category}/{service}` (one folder per package),
//! the `catalogue` users install from, `jobs` (the worker that runs them) and config `templates`.
//!
//! Adding a package: copy a package folder (`services/server/demo/` is the smallest), rename its types, and add
//! the folder's name to its category's `packages![...]` line. See `CONTRIBUTING.md`.

pub mod base;
pub mod catalogue;
pub mod jobs;
pub mod services;
pub mod templates;
pub mod titles;

pub use base::executor::{Executor, RunContext, RunReport};
pub use base::package::{Gather, Package, PackageInstaller, PackageRemover};
pub use base::{
    FileContents, FileStep, Milestones, PackageError, Plan, RunStep, Step, StoreChange,
};

/// Every package's jobs, catalogue entries and templates (a cheap clone of the one registry).
pub fn registry() -> base::registry::Registry {
    services::registry().clone()
}
