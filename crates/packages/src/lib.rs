//! The package system from the spec, in Rust: `base` (plans, milestones, installer/remover contracts, the
//! executor), `credentials`, `enums`, and `services/{category}/{service}`.

pub mod base;
pub mod catalogue;
pub mod credentials;
pub mod enums;
pub mod jobs;
pub mod services;
pub mod templates;

pub use base::executor::{Executor, RunContext, RunReport};
pub use base::{
    FileContents, FileStep, Milestones, Package, PackageError, PackageInstaller, PackageRemover,
    Plan, RunStep, Step, StoreChange,
};
