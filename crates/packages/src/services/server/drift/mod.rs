//! Drift Check Installer: does the server still look the way BrokeForge left it? BrokeForge knows what it put
//! there from its own records: each active site's vhost (rendered again now) and its link in
//! `sites-enabled`, each site's schedule and daemon files (the tasks package's plan, rendered again), the
//! Debian packages and units of the active services, and the firewall's baseline rules. One command over one
//! SSH connection reads the real state (checksums, `readlink`, `dpkg-query`, `systemctl is-enabled/is-active`,
//! ufw's rule files) and sends back a file's contents only when its checksum differs, for the diff. The report
//! (one item per thing: ok, missing, changed, unexpected) is the job's result; the newest is the server's
//! drift report. Repair re-applies the package an item belongs to (see `domain::drift`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use brokeforge_core::{
    CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError, shell_quote, validate,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::firewall::{READ_COMMAND, RuleOrigin, parse_state};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{FileContents, PackageError, Plan, RunStep, Step};
use crate::milestones;
use crate::services::server::access::{SSHD_HARDENING, sudoers};
use crate::services::sites::common::{SiteUser, app_unit, vhost_path};
use crate::services::sites::config::{SiteConfig, SiteKind};
use crate::services::sites::tasks::SiteTasksInstaller;
use crate::services::sites::vhost::render_vhost;
use crate::services::database::mariadb::{cnf_dir, server_cnf_path, server_cnf_text};
use crate::services::webserver::nginx::WebServerConfig;
use crate::services::webserver::php::{settings_file, settings_text};

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
    /// `file`, `link`, `package`, `unit`, `user` or `firewall`.
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

/// What the check compares against, gathered from BrokeForge's records.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    files: Vec<(String, Wanted)>,
    links: Vec<(String, Wanted)>,
    packages: Vec<Wanted>,
    units: Vec<Wanted>,
    /// Unix users BrokeForge made (provisioning's, isolated sites').
    users: Vec<Wanted>,
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

/// The Debian packages, units and remote-access port of a catalogue service (`php_versions` for the web
/// server's PHP-FPM). Also what `logs` lets users read.
pub fn service_parts(
    service: &str,
    php_versions: &[String],
) -> (Vec<String>, Vec<String>, Option<u16>) {
    let one = |p: &str, u: &str| (vec![p.to_string()], vec![u.to_string()]);
    let ((packages, units), port) = match service {
        "webserver" => {
            let mut packages = vec!["nginx".to_string()];
            let mut units = vec!["nginx".to_string()];
            for v in php_versions {
                packages.push(format!("php{v}-fpm"));
                units.push(format!("php{v}-fpm"));
            }
            ((packages, units), None)
        }
        "mariadb" => (one("mariadb-server", "mariadb"), Some(3306)),
        "mysql" => (one("mysql-server", "mysql"), Some(3306)),
        "postgresql" => (one("postgresql", "postgresql"), Some(5432)),
        "redis" => (one("redis-server", "redis-server"), Some(6379)),
        "memcached" => (one("memcached", "memcached"), None),
        "nodejs" => ((vec!["nodejs".to_string()], vec![]), None),
        _ => ((vec![], vec![]), None),
    };
    (packages, units, port)
}

/// Installing a service again with the settings it has puts back its packages, units and settings file: for
/// the services whose settings its record keeps whole (not the web server, whose PHP versions and pools
/// have their own packages, nor the collector, whose address comes from the panel).
fn service_repair(s: &brokeforge_store::ServerService) -> Option<Repair> {
    if !matches!(
        s.service_name.as_str(),
        "mariadb" | "mysql" | "postgresql" | "redis" | "memcached" | "nodejs"
    ) {
        return None;
    }
    let entry = crate::catalogue::entry(&s.service_name).ok()?;
    let settings = entry
        .parameters
        .iter()
        .filter_map(|p| {
            let text = match &s.configuration[p.name] {
                serde_json::Value::Null => return None,
                serde_json::Value::String(v) => v.clone(),
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            Some((p.name.to_string(), text))
        })
        .collect();
    Some(Repair::Service {
        name: s.service_name.clone(),
        settings: ServiceSettings(settings),
    })
}

impl Expected {
    fn file(&mut self, path: String, what: String, text: String, repair: Option<Repair>) {
        self.files.push((
            path.clone(),
            Wanted {
                item: format!("file:{path}"),
                what,
                value: text,
                repair,
            },
        ));
    }

    fn user(&mut self, name: &str, what: String) {
        self.users.push(Wanted {
            item: format!("user:{name}"),
            what,
            value: name.into(),
            repair: None,
        });
    }

    /// What BrokeForge's records say is on the server.
    pub async fn gather(cx: &Gather<'_>) -> Result<Expected, PackageError> {
        let server = cx.server;
        let mut e = Expected {
            ssh_port: server.ssh_port,
            firewall: server.provision_status == brokeforge_core::ProvisionStatus::Provisioned,
            by_hand: cx.store.drift_by_hand(server.id).await?.into_iter().collect(),
            ..Expected::default()
        };
        if e.firewall {
            // What provisioning wrote and made (re-run provisioning to put it back).
            e.file(
                "/etc/sudoers.d/brokeforge".into(),
                "sudo rules of the brokeforge user".into(),
                sudoers(),
                None,
            );
            e.file(
                "/etc/ssh/sshd_config.d/01-brokeforge.conf".into(),
                "SSH hardening (keys only)".into(),
                SSHD_HARDENING.into(),
                None,
            );
            for u in ["brokeforge", "worker"] {
                e.user(u, format!("user {u} (provisioning)"));
            }
        }
        let webserver = WebServerConfig::current(cx.store, server.id).await?;
        let php = webserver.php_versions.clone();
        // The php.ini settings set in BrokeForge, for FPM and the CLI, of each installed version.
        for (version, settings) in &webserver.php_settings {
            if settings.is_empty() || !php.contains(version) {
                continue;
            }
            for sapi in ["fpm", "cli"] {
                e.file(
                    settings_file(version, sapi),
                    format!("php.ini settings of PHP {version} ({})", sapi.to_uppercase()),
                    settings_text(version, settings),
                    Some(Repair::PhpSettings {
                        version: version.clone(),
                    }),
                );
            }
        }
        for s in cx.store.services(server.id).await? {
            if s.status != ServiceStatus::Active {
                continue;
            }
            let (packages, units, port) = service_parts(&s.service_name, &php);
            let repair = service_repair(&s);
            for p in packages {
                e.packages.push(Wanted {
                    item: format!("package:{p}"),
                    what: format!("package {p} of {}", s.service_name),
                    value: p,
                    repair: repair.clone(),
                });
            }
            for u in units {
                e.units.push(Wanted {
                    item: format!("unit:{u}"),
                    what: format!("service {u} of {}", s.service_name),
                    value: u,
                    repair: repair.clone(),
                });
            }
            if s.service_name == "webserver" {
                // BrokeForge's own default page.
                e.enabled_vhosts.insert("default".into());
            }
            if let Some(p) = port {
                e.service_ports.insert(p.to_string());
            }
            // A MySQL-family server's settings file (bound to localhost unless remote access is open).
            if let Some(dir) = cnf_dir(&s.service_name) {
                let opened = s.configuration["allowed_sources"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                e.file(
                    server_cnf_path(dir),
                    format!("settings of {}", s.service_name),
                    server_cnf_text(opened)?,
                    repair.clone(),
                );
            }
        }
        for site in cx.store.sites(server.id).await? {
            if site.status != ServiceStatus::Active {
                continue;
            }
            let config = SiteConfig::of(&site);
            let domain = validate::domain(&site.domain)?;
            let owner = SiteUser::of(&site);
            if owner.isolated {
                e.user(&owner.name, format!("user {} of {domain}", owner.name));
            }
            let vhost = Repair::SiteVhost {
                site_id: site.id,
                domain: domain.clone(),
            };
            let tasks = Repair::SiteTasks {
                site_id: site.id,
                domain: domain.clone(),
            };
            let (available, enabled) = vhost_path(&domain);
            e.file(
                available.clone(),
                format!("vhost of {domain}"),
                render_vhost(&site, &config)?,
                Some(vhost.clone()),
            );
            if let Some(name) = enabled.rsplit('/').next() {
                e.enabled_vhosts.insert(name.to_string());
            }
            e.links.push((
                enabled,
                Wanted {
                    item: format!("vhost-enabled:{domain}"),
                    what: format!("vhost of {domain} enabled"),
                    value: available,
                    repair: Some(vhost),
                },
            ));
            let plan = SiteTasksInstaller.tasks_plan(&site, &config.tasks)?;
            for step in plan.steps {
                if let Step::PutFile(f) = step
                    && let FileContents::Text(text) = f.contents
                {
                    let what = if f.path.starts_with("/etc/cron.d/") {
                        e.cron_files.insert(f.path.trim_start_matches("/etc/cron.d/").into());
                        format!("schedule of {domain}")
                    } else {
                        format!("background-work file of {domain}")
                    };
                    e.file(f.path, what, text, Some(tasks.clone()));
                }
            }
            for (i, d) in config.tasks.daemons.iter().enumerate() {
                for n in 1..=d.processes {
                    let unit = format!("brokeforge-site-{}-daemon-{i}@{n}", site.id);
                    e.units.push(Wanted {
                        item: format!("unit:{unit}"),
                        what: format!("daemon {i} (process {n}) of {domain}"),
                        value: unit,
                        repair: Some(tasks.clone()),
                    });
                }
            }
            if config.kind == SiteKind::Node {
                let unit = app_unit(site.id);
                e.units.push(Wanted {
                    item: format!("unit:{unit}"),
                    what: format!("Node.js app of {domain}"),
                    value: unit,
                    repair: None,
                });
            }
        }
        Ok(e)
    }

    /// The one command that reads it all: markers `#BF# ...` per item, the firewall's state last.
    pub fn script(&self) -> String {
        let q = shell_quote;
        let mut s = String::from(
            "set +e\nexport LC_ALL=C\n\
             bf_file() { if [ ! -f \"$2\" ]; then echo \"#BF# file $1 missing\"; \
             elif [ \"$(sha256sum < \"$2\" | cut -c1-64)\" = \"$3\" ]; then echo \"#BF# file $1 ok\"; \
             else echo \"#BF# file $1 changed $(head -c ",
        );
        s.push_str(&DIFF_LIMIT.to_string());
        s.push_str(
            " \"$2\" | base64 -w0) $(wc -c < \"$2\")\"; fi; }\n\
             bf_link() { t=$(readlink \"$2\"); if [ -z \"$t\" ]; then echo \"#BF# link $1 missing\"; \
             elif [ \"$t\" = \"$3\" ]; then echo \"#BF# link $1 ok\"; \
             else echo \"#BF# link $1 changed $(printf %s \"$t\" | base64 -w0)\"; fi; }\n",
        );
        for (i, (path, w)) in self.files.iter().enumerate() {
            let sum = hex::encode(Sha256::digest(w.value.as_bytes()));
            s.push_str(&format!("bf_file {i} {} {sum}\n", q(path)));
        }
        for (i, (path, w)) in self.links.iter().enumerate() {
            s.push_str(&format!("bf_link {i} {} {}\n", q(path), q(&w.value)));
        }
        s.push_str("echo '#BF# packages'\n");
        if !self.packages.is_empty() {
            let names: Vec<String> = self.packages.iter().map(|p| q(&p.value)).collect();
            s.push_str(&format!(
                "dpkg-query -W -f='${{Package}} ${{db:Status-Abbrev}}\\n' {} 2>/dev/null\n",
                names.join(" ")
            ));
        }
        s.push_str("echo '#BF# units'\n");
        for u in &self.units {
            s.push_str(&format!(
                "echo \"{u} $(systemctl is-enabled {u} 2>/dev/null | head -n 1) $(systemctl is-active {u} 2>/dev/null | head -n 1)\"\n",
                u = q(&u.value)
            ));
        }
        s.push_str("echo '#BF# users'\n");
        for u in &self.users {
            s.push_str(&format!(
                "id -u {u} >/dev/null 2>&1 && echo {u}\n",
                u = q(&u.value)
            ));
        }
        s.push_str(
            "echo '#BF# sites-enabled'\nls -1A /etc/nginx/sites-enabled 2>/dev/null\n\
             echo '#BF# cron.d'\nls -1A /etc/cron.d 2>/dev/null | grep '^brokeforge-'\n\
             echo '#BF# firewall'\n",
        );
        s.push_str(READ_COMMAND);
        s.push_str("\nexit 0\n");
        s
    }

    /// Compare what the script printed with what is wanted.
    pub fn compare(&self, output: &str) -> DriftReport {
        let mut sections: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut found: BTreeMap<(String, usize), (String, String)> = BTreeMap::new();
        let mut section = "";
        for line in output.lines() {
            let Some(marker) = line.strip_prefix("#BF# ") else {
                sections.entry(section).or_default().push(line);
                continue;
            };
            let f: Vec<&str> = marker.splitn(4, ' ').collect();
            match f.as_slice() {
                [kind @ ("file" | "link"), i, state, rest @ ..] => {
                    if let Ok(i) = i.parse::<usize>() {
                        found.insert(
                            (kind.to_string(), i),
                            (state.to_string(), rest.first().copied().unwrap_or("").into()),
                        );
                    }
                }
                [name] => section = name,
                _ => {}
            }
        }
        let mut items = Vec::new();
        let item = |w: &Wanted, kind: &str, state: DriftState, detail: String| DriftItem {
            item: w.item.clone(),
            kind: kind.into(),
            what: w.what.clone(),
            state,
            detail,
            diff: None,
            repair: w.repair.clone(),
            by_hand: false,
        };
        for (i, (path, w)) in self.files.iter().enumerate() {
            let (state, rest) = found
                .get(&("file".to_string(), i))
                .cloned()
                .unwrap_or_else(|| ("missing".into(), String::new()));
            items.push(match state.as_str() {
                "ok" => item(w, "file", DriftState::Ok, path.clone()),
                "changed" => {
                    let (b64, size) = rest.split_once(' ').unwrap_or((&rest, ""));
                    let size: usize = size.trim().parse().unwrap_or(0);
                    let mut it = item(w, "file", DriftState::Changed, format!("{path} was edited"));
                    if size <= DIFF_LIMIT {
                        let actual = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        it.diff = Some(diff(&w.value, &actual, path));
                    } else {
                        it.detail = format!("{path} was edited ({size} bytes: too long to show)");
                    }
                    it
                }
                _ => item(w, "file", DriftState::Missing, format!("{path} is gone")),
            });
        }
        for (i, (path, w)) in self.links.iter().enumerate() {
            let (state, rest) = found
                .get(&("link".to_string(), i))
                .cloned()
                .unwrap_or_else(|| ("missing".into(), String::new()));
            items.push(match state.as_str() {
                "ok" => item(w, "link", DriftState::Ok, path.clone()),
                "changed" => {
                    let target = base64::engine::general_purpose::STANDARD
                        .decode(rest.trim())
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    item(
                        w,
                        "link",
                        DriftState::Changed,
                        format!("{path} points at {target}, not {}", w.value),
                    )
                }
                _ => item(w, "link", DriftState::Missing, format!("{path} is gone")),
            });
        }
        let installed: BTreeMap<&str, &str> = sections
            .get("packages")
            .into_iter()
            .flatten()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, s)| (n.trim(), s.trim()))
            .collect();
        for p in &self.packages {
            items.push(match installed.get(p.value.as_str()) {
                Some(s) if s.starts_with("ii") => item(p, "package", DriftState::Ok, String::new()),
                Some(s) => item(
                    p,
                    "package",
                    DriftState::Missing,
                    format!("{} is not installed (dpkg status {s}); install the service again", p.value),
                ),
                None => item(
                    p,
                    "package",
                    DriftState::Missing,
                    format!("{} is not installed; install the service again", p.value),
                ),
            });
        }
        let units: BTreeMap<&str, (&str, &str)> = sections
            .get("units")
            .into_iter()
            .flatten()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((f.next()?, (f.next().unwrap_or(""), f.next().unwrap_or(""))))
            })
            .collect();
        for u in &self.units {
            let (enabled, active) = units.get(u.value.as_str()).copied().unwrap_or(("", ""));
            items.push(if active == "active" {
                item(u, "unit", DriftState::Ok, format!("{enabled}, active"))
            } else if enabled.is_empty() || enabled == "not-found" {
                item(u, "unit", DriftState::Missing, format!("{} does not exist", u.value))
            } else {
                item(
                    u,
                    "unit",
                    DriftState::Changed,
                    format!(
                        "{} is {} and {enabled}",
                        u.value,
                        if active.is_empty() { "unknown" } else { active }
                    ),
                )
            });
        }
        let users: BTreeSet<&str> = sections
            .get("users")
            .into_iter()
            .flatten()
            .map(|l| l.trim())
            .collect();
        for u in &self.users {
            items.push(if users.contains(u.value.as_str()) {
                item(u, "user", DriftState::Ok, String::new())
            } else {
                item(
                    u,
                    "user",
                    DriftState::Missing,
                    format!("there is no user {}", u.value),
                )
            });
        }
        let unexpected = |item: String, kind: &str, what: String, detail: String| DriftItem {
            item,
            kind: kind.into(),
            what,
            state: DriftState::Unexpected,
            detail,
            diff: None,
            repair: None,
            by_hand: false,
        };
        for name in sections.get("sites-enabled").into_iter().flatten() {
            let name = name.trim();
            if !name.is_empty() && !self.enabled_vhosts.contains(name) {
                items.push(unexpected(
                    format!("vhost-enabled:{name}"),
                    "link",
                    format!("vhost {name}"),
                    format!("/etc/nginx/sites-enabled/{name} is not a site of BrokeForge's"),
                ));
            }
        }
        for name in sections.get("cron.d").into_iter().flatten() {
            let name = name.trim();
            if !name.is_empty() && !self.cron_files.contains(name) {
                items.push(unexpected(
                    format!("file:/etc/cron.d/{name}"),
                    "file",
                    format!("schedule {name}"),
                    format!("/etc/cron.d/{name} belongs to no site BrokeForge knows"),
                ));
            }
        }
        if self.firewall {
            let text = sections.get("firewall").map(|l| l.join("\n")).unwrap_or_default();
            let state = parse_state(&text, self.ssh_port);
            let fw = |item: &str, what: &str, st: DriftState, detail: String| DriftItem {
                item: format!("firewall:{item}"),
                kind: "firewall".into(),
                what: what.into(),
                state: st,
                detail,
                diff: None,
                repair: None,
                by_hand: false,
            };
            items.push(if state.active {
                fw("active", "ufw enabled", DriftState::Ok, String::new())
            } else {
                fw(
                    "active",
                    "ufw enabled",
                    DriftState::Changed,
                    "ufw is not active: the server accepts any connection".into(),
                )
            });
            for (port, name) in [(self.ssh_port.to_string(), "ssh"), ("80".into(), "http"), ("443".into(), "https")] {
                let there = state
                    .rules
                    .iter()
                    .any(|r| r.origin == RuleOrigin::Baseline && r.port == port);
                items.push(if there {
                    fw(&format!("baseline:{port}"), &format!("firewall rule {name}"), DriftState::Ok, format!("allow {port}/tcp"))
                } else {
                    fw(
                        &format!("baseline:{port}"),
                        &format!("firewall rule {name}"),
                        DriftState::Missing,
                        format!("allow {port}/tcp from anywhere is gone; add it with `brokeforge firewall add`"),
                    )
                });
            }
            for r in &state.rules {
                if r.origin == RuleOrigin::Other && !self.service_ports.contains(&r.port) {
                    items.push(unexpected(
                        format!("firewall:{}", r.id),
                        "firewall",
                        format!("firewall rule {}", r.id),
                        format!(
                            "{} {}/{} from {} ({}) was not made by BrokeForge",
                            r.action, r.port, r.protocol, r.source, r.direction
                        ),
                    ));
                }
            }
        }
        for i in &mut items {
            i.by_hand = self.by_hand.contains(&i.item);
        }
        DriftReport::new(items)
    }
}

/// Lines that look like they carry a secret keep their name and lose their value.
fn mask(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    let secret = ["password", "passwd", "secret", "token", "api_key", "apikey", "private"]
        .iter()
        .any(|w| lower.contains(w));
    if !secret {
        return line.to_string();
    }
    match line.find(['=', ':']) {
        Some(i) => format!("{} ********", &line[..=i]),
        None => {
            let keep: String = line.chars().take(1).collect();
            format!("{keep} ******** (masked)")
        }
    }
}

/// A unified diff from BrokeForge's rendering to the server's file, secrets masked.
pub fn diff(wanted: &str, actual: &str, path: &str) -> String {
    let d = similar::TextDiff::from_lines(wanted, actual);
    let text = d
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (BrokeForge)"), &format!("{path} (server)"))
        .to_string();
    text.lines().map(mask).collect::<Vec<_>>().join("\n")
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
        _cx: &Gather<'_>,
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
        let report = e.compare(&String::from_utf8_lossy(&out.stdout));
        Ok(serde_json::to_value(&report).unwrap_or_default())
    }
}

impl PackageInstaller for DriftCheckInstaller {}

#[cfg(test)]
mod tests;
