//! Drift Check Installer: does the server still look the way BrokeForge left it? BrokeForge knows what it put
//! there from its own records: each active site's vhost (rendered again now) and its link in
//! `sites-enabled`, each site's schedule and daemon files (the tasks package's plan, rendered again), the
//! Debian packages and units of the active services, and the firewall's baseline rules. One command over one
//! SSH connection reads the real state (checksums, `readlink`, `dpkg-query`, `systemctl is-enabled/is-active`,
//! ufw's rule files) and sends back a file's contents only when its checksum differs, for the diff. The report
//! (one item per thing: ok, missing, changed, unexpected) is the job's result; the newest is the server's
//! drift report. Repair re-applies the package an item belongs to (see `domain::drift`).

use std::collections::{BTreeMap, BTreeSet};

use brokeforge_core::{
    CredentialKind, Secret, ServiceType, ValidationError,
};
use serde::{Deserialize, Serialize};

use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::services::sites::config::SiteConfig;
use crate::base::{PackageError, Plan, RunStep};
use crate::milestones;

mod compare;
mod gather;

pub use compare::diff;
pub use gather::service_parts;

pub fn register(r: &mut Registry) {
    r.installer(DriftCheckInstaller);
}

milestones! {
    pub enum DriftCheckInstallerMilestones {
        ReadState => ("read_state", "Reading the server's state"),
        Complete => ("complete", "Drift check done"),
    }
}

/// A file's contents come back for a diff up to this size; a longer one is reported changed without one.
const DIFF_LIMIT: usize = 32 * 1024;

/// A certificate closer to its end than this is drift: certbot renews at 30 days left, so a Let's Encrypt
/// certificate this close was not renewed (the `cert_expiring` alert rule's default is the same).
pub const CERT_WARN_DAYS: i64 = 14;

/// How an item compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    Ok,
    Missing,
    Changed,
    Unexpected,
}

impl DriftState {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::Ok => "ok",
            DriftState::Missing => "missing",
            DriftState::Changed => "changed",
            DriftState::Unexpected => "unexpected",
        }
    }
}

/// The package that puts an item back.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "package", rename_all = "snake_case")]
pub enum Repair {
    /// The site's vhost written again (`site_vhost_installer`).
    SiteVhost { site_id: i64, domain: String },
    /// The site's scheduled commands and daemons applied again (`site_tasks_installer`).
    SiteTasks { site_id: i64, domain: String },
    /// A PHP version's php.ini settings written again (`php_settings_installer`).
    PhpSettings { version: String },
    /// A catalogue service installed again with the settings it has (its installer is idempotent).
    Service {
        name: String,
        settings: ServiceSettings,
    },
}

/// A catalogue package's settings by parameter name. A named type so that API clients generate one model for
/// it (an inline map inside a tagged enum's variant made openapi-python-client emit a duplicate model).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ServiceSettings(pub BTreeMap<String, String>);

impl Repair {
    pub fn label(&self) -> String {
        match self {
            Repair::SiteVhost { domain, .. } => format!("Write the vhost of {domain} again"),
            Repair::SiteTasks { domain, .. } => {
                format!("Apply the scheduled commands and daemons of {domain} again")
            }
            Repair::PhpSettings { version } => {
                format!("Write the php.ini settings of PHP {version} again")
            }
            Repair::Service { name, .. } => format!("Install {name} again with its settings"),
        }
    }
}

/// One thing BrokeForge put on the server (or found there that looks like its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DriftItem {
    /// Stable name of the item (`file:/etc/...`, `package:nginx`, `unit:nginx`, `firewall:...`): what
    /// "managed by hand" marks.
    pub item: String,
    /// `file`, `link`, `package`, `unit`, `user`, `certificate` or `firewall`.
    pub kind: String,
    /// What it is, for people.
    pub what: String,
    pub state: DriftState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// A unified diff (BrokeForge's rendering, then the server's), secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// The user manages it by hand: reported, never repaired.
    #[serde(default)]
    pub by_hand: bool,
}

/// Counts of a report's items by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DriftSummary {
    pub ok: usize,
    pub missing: usize,
    pub changed: usize,
    pub unexpected: usize,
}

/// A drift check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DriftReport {
    pub summary: DriftSummary,
    pub items: Vec<DriftItem>,
}

impl DriftReport {
    pub fn new(items: Vec<DriftItem>) -> DriftReport {
        let mut summary = DriftSummary::default();
        for i in &items {
            match i.state {
                DriftState::Ok => summary.ok += 1,
                DriftState::Missing => summary.missing += 1,
                DriftState::Changed => summary.changed += 1,
                DriftState::Unexpected => summary.unexpected += 1,
            }
        }
        DriftReport { summary, items }
    }

    /// Items that drifted and are not managed by hand.
    pub fn drifted(&self) -> impl Iterator<Item = &DriftItem> {
        self.items
            .iter()
            .filter(|i| i.state != DriftState::Ok && !i.by_hand)
    }
}

/// Something that must be on the server.
#[derive(Debug, Clone)]
struct Wanted {
    item: String,
    what: String,
    /// A file's text, a link's target, a package's or unit's name.
    value: String,
    repair: Option<Repair>,
}

/// A site's certificate: where its chain is, and whether the user brought it (no ACME renewal).
#[derive(Debug, Clone)]
struct WantedCert {
    site_id: i64,
    path: String,
    custom: bool,
    wanted: Wanted,
}

/// What the check compares against, gathered from BrokeForge's records.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    files: Vec<(String, Wanted)>,
    links: Vec<(String, Wanted)>,
    packages: Vec<Wanted>,
    units: Vec<Wanted>,
    /// Unix users BrokeForge made (provisioning's, isolated sites').
    users: Vec<Wanted>,
    /// Files that hold a secret (Redis's password): compared by checksum only, their contents never read back.
    secret_files: BTreeSet<String>,
    /// HTTPS sites' certificates: the chain file, and the expiry BrokeForge recorded as the value.
    certs: Vec<WantedCert>,
    /// Names in `/etc/nginx/sites-enabled` and `brokeforge-*` names in `/etc/cron.d` BrokeForge made.
    enabled_vhosts: BTreeSet<String>,
    cron_files: BTreeSet<String>,
    /// Ports whose rules a service manages (a database's remote access): not unexpected.
    service_ports: BTreeSet<String>,
    ssh_port: u16,
    /// Base provisioning ran: ufw is on with its baseline rules.
    firewall: bool,
    by_hand: BTreeSet<String>,
}

pub struct DriftCheckInstaller;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DriftCheckRequest {}

impl Package for DriftCheckInstaller {
    type Milestones = DriftCheckInstallerMilestones;
    type Request = DriftCheckRequest;
    type Input = Expected;
    const JOB: &'static str = "drift_check";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        // ufw's rule files and other sites' files are root's to read.
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, _r: &DriftCheckRequest) -> Result<Expected, PackageError> {
        Expected::gather(cx).await
    }

    /// One command: the script on stdin (its length does not matter); the output is compared, not logged
    /// (it carries files' contents).
    fn commands(&self, e: &Expected) -> Result<Plan, PackageError> {
        use DriftCheckInstallerMilestones as M;
        let mut plan = self.plan().track(M::ReadState).run_step(RunStep {
            command: "bash -s".into(),
            timeout: std::time::Duration::from_secs(120),
            stdin: Some(Secret::new(e.script())),
            credential: None,
            private_output: true,
        });
        // The script holds no secret (rendered vhosts and schedules, checksums): nothing to redact.
        plan.secrets.clear();
        Ok(plan.track(M::Complete))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        e: Expected,
        report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let out = report
            .outputs
            .last()
            .ok_or_else(|| ValidationError::new("drift", "the drift check printed nothing"))?;
        if out.truncated {
            return Err(ValidationError::new(
                "drift",
                "the server's state was too long to read in one go",
            )
            .into());
        }
        let output = String::from_utf8_lossy(&out.stdout);
        let report = e.compare(&output);
        // certbot renews on the server by itself: the record follows the certificate the server has.
        for (site_id, expires) in e.renewed(&output) {
            SiteConfig::update(cx.store, site_id, |c| {
                if let Some(cert) = &mut c.certificate {
                    cert.expires = Some(expires.clone());
                }
            })
            .await?;
        }
        Ok(serde_json::to_value(&report).unwrap_or_default())
    }
}

impl PackageInstaller for DriftCheckInstaller {}

#[cfg(test)]
mod tests;
