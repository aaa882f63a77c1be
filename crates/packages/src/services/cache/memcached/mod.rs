//! Memcached from the distribution, bound to loopback (TCP only), with a memory limit.

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::base::package::{Gather, NoRequest, Package, PackageInstaller, PackageRemover};
use crate::base::registry::{Entry, Parameter, Registry};
use crate::base::{FileContents, FileStep, PackageError, Plan, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;
use crate::templates::{self, Template};

pub const NAME: &str = "memcached";
const PORT: u16 = 11211;

pub static MEMCACHED_CONF: Template = Template {
    name: "memcached/memcached.conf",
    source: include_str!("memcached.conf.j2"),
};

pub fn register(r: &mut Registry) {
    r.template(&MEMCACHED_CONF);
    let installer = r.installer(MemcachedInstaller);
    let remover = r.remover(MemcachedRemover);
    r.catalogue(
        Entry::new(
            NAME,
            ServiceType::Cache,
            "Memcached, on 127.0.0.1:11211 only (TCP), with a memory limit",
            installer,
        )
        .repaired_by_reinstall()
        .parameters(vec![Parameter::new(
            "memory_mb",
            "integer",
            "memory for items, in MiB (16 to 65536)",
            json!(64),
        )])
        .remover(remover, Vec::new()),
    );
}

milestones! {
    pub enum MemcachedInstallerMilestones {
        InstallSoftware => ("install_software", "Installing Memcached"),
        Configure => ("configure", "Configuring (loopback only)"),
        Verify => ("verify", "Checking that it answers"),
    }
}

milestones! {
    pub enum MemcachedRemoverMilestones {
        Remove => ("remove", "Removing Memcached"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MemcachedOptions {
    pub memory_mb: u32,
}

impl Default for MemcachedOptions {
    fn default() -> Self {
        MemcachedOptions { memory_mb: 64 }
    }
}

pub struct MemcachedInstaller;
pub struct MemcachedRemover;

impl Package for MemcachedInstaller {
    type Milestones = MemcachedInstallerMilestones;
    type Request = MemcachedOptions;
    type Input = MemcachedOptions;
    const JOB: &'static str = "memcached_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Cache
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        _cx: &Gather<'_>,
        o: &MemcachedOptions,
    ) -> Result<MemcachedOptions, PackageError> {
        if !(16..=65536).contains(&o.memory_mb) {
            return Err(ValidationError::new("memory_mb", "give 16 to 65536 MiB").into());
        }
        Ok(o.clone())
    }

    fn commands(&self, o: &MemcachedOptions) -> Result<Plan, PackageError> {
        use MemcachedInstallerMilestones as M;
        let conf = templates::render(&MEMCACHED_CONF, json!({"memory_mb": o.memory_mb}))?;
        Ok(self
            .plan()
            .track(M::InstallSoftware)
            .run_with_timeout(
                format!("{APT} update -qq"),
                std::time::Duration::from_secs(900),
            )
            .run_with_timeout(
                format!("{APT} install -y -qq --no-install-recommends memcached"),
                std::time::Duration::from_secs(1800),
            )
            .track(M::Configure)
            .put_file(FileStep::new(
                "/etc/memcached.conf",
                FileContents::Text(conf),
                0o644,
            ))
            .run("systemctl enable memcached && systemctl restart memcached")
            .track(M::Verify)
            // Its own protocol over bash's /dev/tcp: `version` answers `VERSION x.y.z`.
            .run(format!(
                "for i in $(seq 1 50); do v=$(timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{PORT}; printf \"version\\r\\n\" >&3; \
                 head -n1 <&3' 2>/dev/null); case \"$v\" in VERSION*) echo \"$v\"; exit 0 ;; esac; sleep 0.2; done; \
                 echo 'memcached does not answer on 127.0.0.1:{PORT}' >&2; exit 1"
            ))
            .record(StoreChange::UpsertService {
                name: NAME.into(),
                service_type: ServiceType::Cache,
                configuration: json!({"port": PORT, "bound_to": "localhost", "memory_mb": o.memory_mb}),
                status: ServiceStatus::Active,
            }))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        o: MemcachedOptions,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"port": PORT, "memory_mb": o.memory_mb}))
    }
}
impl PackageInstaller for MemcachedInstaller {}

impl Package for MemcachedRemover {
    type Milestones = MemcachedRemoverMilestones;
    type Request = NoRequest;
    type Input = ();
    const JOB: &'static str = "memcached_remover";

    fn service_type(&self) -> ServiceType {
        ServiceType::Cache
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, _cx: &Gather<'_>, _request: &NoRequest) -> Result<(), PackageError> {
        Ok(())
    }

    fn commands(&self, _input: &()) -> Result<Plan, PackageError> {
        Ok(self
            .plan()
            .track(MemcachedRemoverMilestones::Remove)
            .run_with_timeout(
                format!("{APT} purge -y -qq memcached && rm -f /etc/memcached.conf"),
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
impl PackageRemover for MemcachedRemover {}

#[cfg(test)]
mod tests {
    use crate::base::package::Package;

    #[test]
    fn plans() {
        let install = super::MemcachedInstaller
            .commands(&super::MemcachedOptions { memory_mb: 128 })
            .unwrap()
            .to_string();
        assert!(install.contains("-l 127.0.0.1") && install.contains("-m 128") && install.contains("-U 0"), "{install}");
        insta::assert_snapshot!("memcached_install", install);
        insta::assert_snapshot!(
            "memcached_remove",
            super::MemcachedRemover.commands(&()).unwrap().to_string()
        );
    }
}
