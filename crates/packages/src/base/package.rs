//! The package contract (spec: `PackageManager`, `Contracts/Installer`, `Contracts/Remover`).
//!
//! A package names its milestones, service type and credential, the request it is queued with, and two
//! steps: [`Package::gather`] reads and validates what the plan needs (from the store and the request), and
//! [`Package::commands`] turns that into a [`Plan`]. The spec's `execute()` is gather, commands, then
//! [`PackageInstaller::install`] or [`PackageRemover::remove`], then [`Package::finish`]. A preview (dry run)
//! is gather (told it is a dry run) and commands, nothing else: the same code as the real run.

use std::future::Future;
use std::sync::Arc;

use brokeforge_core::{CredentialKind, ProvisionType, Secret, ServiceType, ValidationError};
use brokeforge_store::{Server, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::executor::{Executor, RunContext, RunReport};
use super::job::{BoxFuture, JobContext, JobHandler};
use super::{Milestone, Milestones, PackageError, Plan};

/// What the gathering step may read: the store and the server the package runs on.
pub struct Gather<'a> {
    pub store: &'a Store,
    pub server: &'a Server,
    /// A preview: gather exactly as the run would, but change nothing (no generated secret is stored).
    pub dry_run: bool,
}

impl<'a> Gather<'a> {
    pub fn new(store: &'a Store, server: &'a Server) -> Gather<'a> {
        Gather {
            store,
            server,
            dry_run: false,
        }
    }

    /// The server's sealed secret `name`; generated and stored when there is none. A preview gets a stand-in,
    /// masked like the real one, and stores nothing.
    pub async fn secret_or_generate(
        &self,
        name: &str,
        generate: impl FnOnce() -> Result<Secret, ValidationError> + Send,
    ) -> Result<Secret, PackageError> {
        if let Some(s) = self.store.service_secret(self.server.id, name).await? {
            return Ok(s);
        }
        if self.dry_run {
            return Ok(Secret::new("preview-secret-not-used"));
        }
        let s = generate()?;
        self.store
            .put_service_secret(self.server.id, name, &s)
            .await?;
        Ok(s)
    }

    /// The server's OS as detected by base provisioning, or a clear error when it has not run yet.
    pub fn os(&self) -> Result<&'a str, ValidationError> {
        self.server.os.as_deref().ok_or_else(|| {
            ValidationError::new(
                "server",
                "the server is not provisioned yet: provision it first",
            )
        })
    }
}

/// Common to installers and removers (spec: `PackageManager`).
pub trait Package: Send + Sync + Sized + 'static {
    type Milestones: Milestones;
    /// What a job of this package carries (its payload), parsed once from the user's request.
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What [`Package::commands`] needs, gathered and validated.
    type Input: Send + Sync;
    /// The job kind that runs this package.
    const JOB: &'static str;
    /// Whether a job of this package starts again by itself after a lost worker (packages converge, so most
    /// do; one that must not run twice says no).
    const RESUMABLE: bool = true;

    fn service_type(&self) -> ServiceType;
    fn credential(&self) -> CredentialKind;

    /// An empty plan carrying this package's service type, credential and milestone count.
    fn plan(&self) -> Plan {
        Plan::new::<Self::Milestones>(self.service_type(), self.credential())
    }

    /// Read and validate everything the plan needs. A dry run must not change anything.
    fn gather<'a>(
        &'a self,
        cx: &'a Gather<'a>,
        request: &'a Self::Request,
    ) -> impl Future<Output = Result<Self::Input, PackageError>> + Send + 'a;

    /// The plan: plain data, showable before it runs.
    fn commands(&self, input: &Self::Input) -> Result<Plan, PackageError>;

    /// After the plan succeeded: store what the run learned, and say what the job reports.
    fn finish<'a>(
        &'a self,
        cx: &'a Gather<'a>,
        input: Self::Input,
        report: RunReport,
    ) -> impl Future<Output = Result<Value, PackageError>> + Send + 'a {
        let _ = (cx, input, report);
        async { Ok(Value::Object(Default::default())) }
    }
}

/// Contract of installers (spec: `Contracts/Installer`, base `PackageInstaller`).
pub trait PackageInstaller: Package {
    fn install<'a>(
        &'a self,
        executor: &'a Executor,
        ctx: &'a RunContext,
        plan: Plan,
    ) -> impl Future<Output = Result<RunReport, PackageError>> + Send + 'a {
        async move { executor.run(ctx, &plan, ProvisionType::Install).await }
    }

    /// The spec's `execute()`: gather, commands, install, finish.
    fn execute<'a>(
        &'a self,
        executor: &'a Executor,
        ctx: &'a RunContext,
        request: &'a Self::Request,
    ) -> impl Future<Output = Result<Value, PackageError>> + Send + 'a {
        async move {
            let cx = Gather::new(executor.store(), &ctx.server);
            let input = self.gather(&cx, request).await?;
            let report = self.install(executor, ctx, self.commands(&input)?).await?;
            self.finish(&cx, input, report).await
        }
    }
}

/// Contract of removers (spec: `Contracts/Remover`, base `PackageRemover`).
pub trait PackageRemover: Package {
    fn remove<'a>(
        &'a self,
        executor: &'a Executor,
        ctx: &'a RunContext,
        plan: Plan,
    ) -> impl Future<Output = Result<RunReport, PackageError>> + Send + 'a {
        async move { executor.run(ctx, &plan, ProvisionType::Uninstall).await }
    }

    /// The spec's `execute()`: gather, commands, remove, finish.
    fn execute<'a>(
        &'a self,
        executor: &'a Executor,
        ctx: &'a RunContext,
        request: &'a Self::Request,
    ) -> impl Future<Output = Result<Value, PackageError>> + Send + 'a {
        async move {
            let cx = Gather::new(executor.store(), &ctx.server);
            let input = self.gather(&cx, request).await?;
            let report = self.remove(executor, ctx, self.commands(&input)?).await?;
            self.finish(&cx, input, report).await
        }
    }
}

/// A package seen without its types: what the catalogue, previews and job pages need.
pub trait AnyPackage: Send + Sync {
    fn job(&self) -> &'static str;
    fn service_type(&self) -> ServiceType;
    fn milestones(&self) -> Vec<Milestone>;
    /// Check a request against the package's request type; the payload its job carries.
    fn payload(&self, request: Value) -> Result<Value, ValidationError>;
    /// The plan a job with `payload` would run on `server`, gathered as a dry run.
    fn preview<'a>(
        &'a self,
        store: &'a Store,
        server: &'a Server,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<Plan, PackageError>>;
}

fn parse<P: Package>(payload: Value) -> Result<P::Request, ValidationError> {
    serde_json::from_value(payload).map_err(|e| ValidationError::new("settings", e.to_string()))
}

impl<P: Package> AnyPackage for P {
    fn job(&self) -> &'static str {
        P::JOB
    }
    fn service_type(&self) -> ServiceType {
        Package::service_type(self)
    }
    fn milestones(&self) -> Vec<Milestone> {
        P::Milestones::all()
            .iter()
            .map(|m| Milestone {
                key: m.key(),
                label: m.label(),
            })
            .collect()
    }
    fn payload(&self, request: Value) -> Result<Value, ValidationError> {
        let parsed = parse::<P>(request)?;
        serde_json::to_value(&parsed).map_err(|e| ValidationError::new("settings", e.to_string()))
    }
    fn preview<'a>(
        &'a self,
        store: &'a Store,
        server: &'a Server,
        payload: &'a Value,
    ) -> BoxFuture<'a, Result<Plan, PackageError>> {
        Box::pin(async move {
            let request = parse::<P>(payload.clone())?;
            let cx = Gather {
                store,
                server,
                dry_run: true,
            };
            let input = self.gather(&cx, &request).await?;
            self.commands(&input)
        })
    }
}

/// The job that runs installer `P` (spec: `{Service}InstallerJob`).
pub struct InstallerJob<P>(pub Arc<P>);

impl<P: PackageInstaller> JobHandler for InstallerJob<P> {
    fn kind(&self) -> &'static str {
        P::JOB
    }
    fn resumable(&self) -> bool {
        P::RESUMABLE
    }
    fn run<'a>(&'a self, ctx: &'a JobContext<'a>) -> BoxFuture<'a, Result<Value, PackageError>> {
        Box::pin(async move {
            let request: P::Request = ctx.request()?;
            self.0
                .execute(ctx.executor, &ctx.run_context()?, &request)
                .await
        })
    }
}

/// The job that runs remover `P` (spec: `{Service}RemoverJob`).
pub struct RemoverJob<P>(pub Arc<P>);

impl<P: PackageRemover> JobHandler for RemoverJob<P> {
    fn kind(&self) -> &'static str {
        P::JOB
    }
    fn resumable(&self) -> bool {
        P::RESUMABLE
    }
    fn run<'a>(&'a self, ctx: &'a JobContext<'a>) -> BoxFuture<'a, Result<Value, PackageError>> {
        Box::pin(async move {
            let request: P::Request = ctx.request()?;
            self.0
                .execute(ctx.executor, &ctx.run_context()?, &request)
                .await
        })
    }
}

/// A job of package `P` on a server, carrying `request` as its payload (set its target, then enqueue it).
pub fn job<P: Package>(
    server_id: i64,
    request: &P::Request,
) -> Result<brokeforge_store::NewJob, PackageError> {
    let payload = serde_json::to_value(request)
        .map_err(|e| ValidationError::new("request", e.to_string()))?;
    Ok(brokeforge_store::NewJob::new(
        P::JOB,
        Some(server_id),
        payload,
    ))
}

/// The request of a package that needs nothing but its server.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct NoRequest {}
