//! The spec's `Base/` and `Contracts/`: milestones, plans, the package contract ([`package`]), jobs
//! ([`job`]), the registry packages add themselves to ([`registry`]), typed stored configuration
//! ([`config`]) and the [`executor`] that runs plans over SSH.
//!
//! A package's `commands(...)` returns a [`Plan`]: plain data (track a milestone, run a command, put a file,
//! record a store change). Its `gather(...)` validates and gathers what the plan needs; `execute(...)` runs
//! both and hands the plan to `install` or `remove`, which run it through the executor.

pub mod config;
pub mod executor;
pub mod job;
pub mod metrics;
pub mod package;
pub mod registry;

use std::fmt;
use std::time::Duration;

use brokeforge_core::secret::redact;
use brokeforge_core::{CredentialKind, ProvisionStatus, Secret, ServiceStatus, ServiceType};

/// A milestone as the catalogue and job pages show it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Milestone {
    pub key: &'static str,
    pub label: &'static str,
}

/// A package's milestones: an enum with stable keys, human labels and a fixed order.
pub trait Milestones: Copy + Send + Sync + 'static {
    fn all() -> &'static [Self];
    fn key(self) -> &'static str;
    fn label(self) -> &'static str;
    /// 1-based position.
    fn step(self) -> usize;
    fn total_steps() -> usize {
        Self::all().len()
    }
}

/// Declare a milestones enum: `milestones! { pub enum FooInstallerMilestones { PrepareSystem => ("prepare_system", "Preparing system"), ... } }`.
#[macro_export]
macro_rules! milestones {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident => ($key:literal, $label:literal)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $crate::base::Milestones for $name {
            fn all() -> &'static [Self] { &[$($name::$variant),+] }
            fn key(self) -> &'static str { match self { $($name::$variant => $key),+ } }
            fn label(self) -> &'static str { match self { $($name::$variant => $label),+ } }
            fn step(self) -> usize {
                Self::all().iter().position(|m| *m == self).map(|i| i + 1).unwrap_or(0)
            }
        }
    };
}

/// Run a shell command on the server.
#[derive(Debug, Clone)]
pub struct RunStep {
    pub command: String,
    pub timeout: Duration,
    /// Sent on stdin, never on the command line.
    pub stdin: Option<Secret>,
    /// Run as another credential than the plan's.
    pub credential: Option<CredentialKind>,
    /// The output is returned to the caller but never written to the job's log (e.g. a site's `.env`).
    pub private_output: bool,
}

#[derive(Debug, Clone)]
pub enum FileContents {
    Text(String),
    Secret(Secret),
}

impl FileContents {
    fn bytes(&self) -> &[u8] {
        match self {
            FileContents::Text(t) => t.as_bytes(),
            FileContents::Secret(s) => s.expose().as_bytes(),
        }
    }
}

/// Put a file on the server: contents sent over the channel and moved into place atomically.
#[derive(Debug, Clone)]
pub struct FileStep {
    pub path: String,
    pub contents: FileContents,
    /// `user` or `user:group`; `None` leaves the owner as the credential's user.
    pub owner: Option<String>,
    pub mode: u32,
    pub credential: Option<CredentialKind>,
    /// A command that must accept the new file (its path is `$1`) before it replaces the old one,
    /// e.g. `visudo -cf "$1"`.
    pub check: Option<String>,
}

impl FileStep {
    pub fn new(path: impl Into<String>, contents: FileContents, mode: u32) -> Self {
        FileStep {
            path: path.into(),
            contents,
            owner: None,
            mode,
            credential: None,
            check: None,
        }
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    pub fn check(mut self, command: impl Into<String>) -> Self {
        self.check = Some(command.into());
        self
    }

    /// Write the file as another credential than the plan's (the app user for its own files).
    pub fn as_credential(mut self, credential: CredentialKind) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Shell that writes what `source` prints to a temp file beside the target, checks it, sets owner and
    /// mode, and renames it into place: readers never see a partial or rejected file. A target directory
    /// reached through a symbolic link is refused: a user who owns part of a path could otherwise point it at
    /// `/etc` and have root write there.
    pub fn install_command(&self, source: &str) -> String {
        let path = brokeforge_core::shell_quote(&self.path);
        let chown = self
            .owner
            .as_ref()
            .map(|o| format!(" && chown {} \"$tmp\"", brokeforge_core::shell_quote(o)))
            .unwrap_or_default();
        let check = self
            .check
            .as_ref()
            .map(|c| format!(" && sh -c {} _ \"$tmp\"", brokeforge_core::shell_quote(c)))
            .unwrap_or_default();
        format!(
            "(set -e; umask 077; dir=$(dirname {path}); mkdir -p \"$dir\"; \
             if [ \"$(readlink -f -- \"$dir\")\" != \"$dir\" ]; then echo \"refusing to write into $dir: it leads elsewhere through a symbolic link\" >&2; exit 1; fi; \
             tmp=$(mktemp \"$dir/.brokeforge.XXXXXX\"); \
             trap 'rm -f \"$tmp\"' EXIT; {source} > \"$tmp\"{check}{chown} && chmod {:o} \"$tmp\" && mv -f \"$tmp\" {path}; trap - EXIT)",
            self.mode
        )
    }
}

/// A change to the store, applied once every remote step before it has succeeded.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreChange {
    UpsertService {
        name: String,
        service_type: ServiceType,
        configuration: serde_json::Value,
        status: ServiceStatus,
    },
    DeleteService {
        name: String,
    },
    SetProvisionStatus(ProvisionStatus),
    SetServerOs(String),
    /// Replace the configuration of an existing service record (e.g. its schemas and users).
    SetServiceConfiguration {
        name: String,
        configuration: serde_json::Value,
    },
}

#[derive(Debug, Clone)]
pub enum Step {
    Track {
        key: &'static str,
        label: &'static str,
        step: usize,
    },
    Run(RunStep),
    PutFile(FileStep),
    Record(StoreChange),
}

/// What a package will do, as data: testable, snapshot-able and showable before it runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub service_type: ServiceType,
    pub credential: CredentialKind,
    pub total_steps: usize,
    pub steps: Vec<Step>,
    /// Values that must never appear in stored events, logs or errors.
    pub secrets: Vec<Secret>,
}

/// Default timeout of a command step.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Plan {
    pub fn new<M: Milestones>(service_type: ServiceType, credential: CredentialKind) -> Plan {
        Plan {
            service_type,
            credential,
            total_steps: M::total_steps(),
            steps: Vec::new(),
            secrets: Vec::new(),
        }
    }

    pub fn track<M: Milestones>(mut self, milestone: M) -> Self {
        self.steps.push(Step::Track {
            key: milestone.key(),
            label: milestone.label(),
            step: milestone.step(),
        });
        self
    }

    pub fn run(self, command: impl Into<String>) -> Self {
        self.run_step(RunStep {
            command: command.into(),
            timeout: DEFAULT_TIMEOUT,
            stdin: None,
            credential: None,
            private_output: false,
        })
    }

    pub fn run_with_timeout(self, command: impl Into<String>, timeout: Duration) -> Self {
        self.run_step(RunStep {
            command: command.into(),
            timeout,
            stdin: None,
            credential: None,
            private_output: false,
        })
    }

    pub fn run_step(mut self, step: RunStep) -> Self {
        if let Some(s) = &step.stdin {
            self.secrets.push(s.clone());
        }
        self.steps.push(Step::Run(step));
        self
    }

    pub fn put_file(mut self, file: FileStep) -> Self {
        if let FileContents::Secret(s) = &file.contents {
            self.secrets.push(s.clone());
        }
        self.steps.push(Step::PutFile(file));
        self
    }

    pub fn record(mut self, change: StoreChange) -> Self {
        self.steps.push(Step::Record(change));
        self
    }

    /// Mark a value as secret without using it in a step (e.g. a password inside a rendered command's stdin).
    pub fn secret(mut self, value: Secret) -> Self {
        self.secrets.push(value);
        self
    }

    /// Remove every secret of this plan from `text`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }
}

/// The plan as a user reads it (dry run, snapshots): secrets masked.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} plan, as {} ({} milestones)",
            self.service_type,
            self.credential.unix_user(),
            self.total_steps
        )?;
        for step in &self.steps {
            match step {
                Step::Track { key, label, step } => {
                    writeln!(f, "[{step}/{}] {key}: {label}", self.total_steps)?
                }
                Step::Run(r) => {
                    let who = r
                        .credential
                        .map(|c| format!(" as {}", c.unix_user()))
                        .unwrap_or_default();
                    let stdin = if r.stdin.is_some() {
                        " (stdin: ********)"
                    } else {
                        ""
                    };
                    writeln!(
                        f,
                        "  $ {}{stdin}  [timeout {}s{who}]",
                        self.redact(&r.command),
                        r.timeout.as_secs()
                    )?
                }
                Step::PutFile(p) => {
                    let owner = match (&p.owner, p.credential) {
                        (Some(o), _) => o.clone(),
                        (None, Some(c)) => {
                            format!("{} (written as {})", c.unix_user(), c.unix_user())
                        }
                        (None, None) => "(credential user)".to_string(),
                    };
                    match &p.contents {
                        FileContents::Text(t) => {
                            writeln!(
                                f,
                                "  put {} owner={owner} mode={:04o} ({} bytes):",
                                p.path,
                                p.mode,
                                t.len()
                            )?;
                            for line in self.redact(t).lines() {
                                writeln!(f, "    | {line}")?;
                            }
                        }
                        FileContents::Secret(_) => writeln!(
                            f,
                            "  put {} owner={owner} mode={:04o} (contents secret: ********)",
                            p.path, p.mode
                        )?,
                    }
                }
                Step::Record(c) => writeln!(f, "  record: {}", describe_change(c))?,
            }
        }
        Ok(())
    }
}

fn describe_change(c: &StoreChange) -> String {
    match c {
        StoreChange::UpsertService {
            name,
            service_type,
            configuration,
            status,
        } => {
            format!("service {name} ({service_type}) = {status} {configuration}")
        }
        StoreChange::DeleteService { name } => format!("remove service {name}"),
        StoreChange::SetProvisionStatus(s) => format!("server provision status = {s}"),
        StoreChange::SetServerOs(os) => format!("server os = {os}"),
        StoreChange::SetServiceConfiguration {
            name,
            configuration,
        } => {
            format!("service {name} configuration = {configuration}")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Validation(#[from] brokeforge_core::ValidationError),
    #[error(transparent)]
    Store(#[from] brokeforge_store::StoreError),
    #[error(transparent)]
    Ssh(#[from] brokeforge_ssh::SshError),
    #[error("{message}")]
    CommandFailed {
        /// Human summary: the command, exit code and the tail of stderr (secrets redacted).
        message: String,
        exit_code: Option<u32>,
        timed_out: bool,
        /// Output of the failed command, redacted.
        stdout: String,
        stderr: String,
        duration: Duration,
    },
    #[error("cancelled")]
    Cancelled,
}
