//! Node.js and npm from the distribution (Debian 12: Node 18), for build steps and Node applications.

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType};
use serde_json::json;

use crate::base::package::{Gather, NoRequest, Package, PackageInstaller, PackageRemover};
use crate::base::registry::{Entry, Registry};
use crate::base::{PackageError, Plan, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;

pub const NAME: &str = "nodejs";

pub fn register(r: &mut Registry) {
    let installer = r.installer(NodejsInstaller);
    let remover = r.remover(NodejsRemover);
    r.catalogue(
        Entry::new(
            NAME,
            ServiceType::Runtime,
            "Node.js and npm from the distribution",
            installer,
        )
        .repaired_by_reinstall()
        .remover(remover, Vec::new()),
    );
}

milestones! {
    pub enum NodejsInstallerMilestones {
        InstallSoftware => ("install_software", "Installing Node.js and npm"),
        Verify => ("verify", "Checking that node runs"),
    }
}

milestones! {
    pub enum NodejsRemoverMilestones {
        Remove => ("remove", "Removing Node.js and npm"),
    }
}

pub struct NodejsInstaller;
pub struct NodejsRemover;

impl Package for NodejsInstaller {
    type Milestones = NodejsInstallerMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "nodejs_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Runtime
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, _cx: &Gather<'_>, _r: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        use NodejsInstallerMilestones as M;
        Ok(self
            .plan()
            .track(M::InstallSoftware)
            .run_with_timeout(
                format!("{APT} update -qq"),
                std::time::Duration::from_secs(900),
            )
            .run_with_timeout(
                format!("{APT} install -y -qq --no-install-recommends nodejs npm"),
                std::time::Duration::from_secs(1800),
            )
            .track(M::Verify)
            .run("node --version && npm --version")
            .record(StoreChange::UpsertService {
                name: NAME.into(),
                service_type: ServiceType::Runtime,
                configuration: json!({"source": "distribution"}),
                status: ServiceStatus::Active,
            }))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        _input: (),
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"installed": NAME}))
    }
}
impl PackageInstaller for NodejsInstaller {}

impl Package for NodejsRemover {
    type Milestones = NodejsRemoverMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "nodejs_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Runtime
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, _cx: &Gather<'_>, _r: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        Ok(self
            .plan()
            .track(NodejsRemoverMilestones::Remove)
            .run_with_timeout(
                format!("{APT} purge -y -qq nodejs npm && {APT} autoremove -y -qq"),
                std::time::Duration::from_secs(900),
            )
            .record(StoreChange::DeleteService { name: NAME.into() }))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        _input: (),
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"removed": NAME}))
    }
}
impl PackageRemover for NodejsRemover {}

#[cfg(test)]
mod tests {
    use crate::base::package::Package;

    #[test]
    fn plans() {
        insta::assert_snapshot!(
            "nodejs_install",
            super::NodejsInstaller.commands(&()).unwrap().to_string()
        );
        insta::assert_snapshot!(
            "nodejs_remove",
            super::NodejsRemover.commands(&()).unwrap().to_string()
        );
    }
}
