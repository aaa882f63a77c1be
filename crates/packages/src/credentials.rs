//! The spec's `Credentials/`: which remote account a package runs as.
//!
//! `RootCredential` installs system software, `UserCredential` (the app user `brokeforge`) owns sites and
//! runs site commands, `WorkerCredential` runs queue workers.

pub use brokeforge_core::CredentialKind as SshCredential;

pub const ROOT_CREDENTIAL: SshCredential = SshCredential::Root;
pub const USER_CREDENTIAL: SshCredential = SshCredential::User;
pub const WORKER_CREDENTIAL: SshCredential = SshCredential::Worker;
