//! Server Installer: base provisioning of a connected server (OS check, apt, base packages, time, security
//! updates, swap, firewall). Every step converges, so running it again changes nothing.

use std::time::Duration;

use brokeforge_core::{CredentialKind, ServiceType, ValidationError, shell_quote};
use serde::{Deserialize, Serialize};

use crate::base::executor::{Executor, RunContext};
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, StoreChange};
use crate::milestones;

pub fn register(r: &mut Registry) {
    r.installer(ServerInstaller);
}

milestones! {
    pub enum ServerInstallerMilestones {
        DetectOs => ("detect_os", "Detecting the operating system"),
        WaitForApt => ("wait_for_apt", "Waiting for other package managers"),
        UpdatePackageLists => ("update_package_lists", "Updating package lists"),
        InstallBasePackages => ("install_base_packages", "Installing base packages"),
        ConfigureTime => ("configure_time", "Setting the timezone and time sync"),
        EnableSecurityUpdates => ("enable_security_updates", "Enabling automatic security updates"),
        ConfigureSwap => ("configure_swap", "Configuring swap"),
        ConfigureFirewall => ("configure_firewall", "Configuring the firewall"),
        Complete => ("complete", "Server provisioned"),
    }
}

/// Operating systems BrokeForge provisions.
pub const SUPPORTED_OS: &[&str] = &["debian 12", "debian 13", "ubuntu 22.04", "ubuntu 24.04"];

/// Packages every server gets.
pub const BASE_PACKAGES: &[&str] = &[
    "acl",
    "ca-certificates",
    "cron",
    "curl",
    "git",
    "gnupg",
    "logrotate",
    "rsync",
    "sudo",
    "systemd-timesyncd",
    "ufw",
    "unattended-upgrades",
    "unzip",
];

/// `apt-get` that waits for the dpkg lock instead of failing, never asks, keeps local config files.
pub const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

const DETECT_OS: &str = r#". /etc/os-release
case "$ID $VERSION_ID" in
  "debian 12"|"debian 13"|"ubuntu 22.04"|"ubuntu 24.04") echo "$ID $VERSION_ID" ;;
  *) echo "unsupported operating system: ${PRETTY_NAME:-unknown}. BrokeForge provisions Debian 12/13 and Ubuntu 22.04/24.04" >&2; exit 3 ;;
esac"#;

/// Waits while any process holds apt's or dpkg's lock files open (cloud-init and unattended-upgrades do on a
/// fresh server). Reads /proc, so it needs no tools a minimal system lacks.
const WAIT_FOR_APT: &str = r#"locked() {
  for fd in /proc/[0-9]*/fd/*; do
    case "$(readlink "$fd" 2>/dev/null)" in
      /var/lib/dpkg/lock|/var/lib/dpkg/lock-frontend|/var/lib/apt/lists/lock|/var/cache/apt/archives/lock) return 0 ;;
    esac
  done
  return 1
}
waited=0
while locked; do
  [ "$waited" -eq 0 ] && echo "another package manager is running; waiting for it to finish"
  if [ "$waited" -ge 900 ]; then echo "apt/dpkg is still locked after 15 minutes" >&2; exit 1; fi
  sleep 2; waited=$((waited + 2))
done
[ "$waited" -gt 0 ] && echo "waited ${waited}s for the package manager lock"
true"#;

const AUTO_UPGRADES: &str = "// Managed by BrokeForge: install security updates every day.\n\
APT::Periodic::Update-Package-Lists \"1\";\n\
APT::Periodic::Unattended-Upgrade \"1\";\n\
APT::Periodic::AutocleanInterval \"7\";\n";

/// Swap for small servers: only when none exists and memory is under 2 GiB; containers cannot have their own.
fn swap_script(swap_mb: u32) -> String {
    format!(
        r#"if systemd-detect-virt --quiet --container; then echo "container: swap is the host's business"; exit 0; fi
if [ -n "$(swapon --show --noheadings)" ]; then echo "swap already present"; exit 0; fi
mem_kb=$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo)
if [ "$mem_kb" -ge 2097152 ]; then echo "enough memory, no swap needed"; exit 0; fi
if [ ! -f /swapfile ]; then
  fallocate -l {swap_mb}M /swapfile || dd if=/dev/zero of=/swapfile bs=1M count={swap_mb} status=none
  chmod 600 /swapfile
  mkswap /swapfile >/dev/null
fi
swapon /swapfile
grep -q '^/swapfile ' /etc/fstab || echo '/swapfile none swap sw 0 0' >> /etc/fstab
echo 'vm.swappiness=10' > /etc/sysctl.d/60-brokeforge-swap.conf
sysctl -q -p /etc/sysctl.d/60-brokeforge-swap.conf"#
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInstallerOptions {
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_swap")]
    pub swap_mb: u32,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_swap() -> u32 {
    1024
}

impl Default for ServerInstallerOptions {
    fn default() -> Self {
        ServerInstallerOptions {
            timezone: default_timezone(),
            swap_mb: default_swap(),
        }
    }
}

pub struct ServerInstaller;

/// What the plan needs, validated; `os` as detected on the server.
#[derive(Debug, Clone)]
pub struct ServerInstallerInput {
    pub os: String,
    pub timezone: String,
    pub swap_mb: u32,
    pub ssh_port: u16,
}

impl Package for ServerInstaller {
    type Milestones = ServerInstallerMilestones;
    type Request = ServerInstallerOptions;
    type Input = ServerInstallerInput;
    const JOB: &'static str = "server_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Server
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        options: &ServerInstallerOptions,
    ) -> Result<ServerInstallerInput, PackageError> {
        let timezone = validate_timezone(&options.timezone)?;
        if !(256..=16384).contains(&options.swap_mb) {
            return Err(ValidationError::new("swap_mb", "must be between 256 and 16384").into());
        }
        Ok(ServerInstallerInput {
            // Detected again by the run itself (see `execute`).
            os: cx.server.os.clone().unwrap_or_default(),
            timezone,
            swap_mb: options.swap_mb,
            ssh_port: cx.server.ssh_port,
        })
    }

    fn commands(&self, input: &ServerInstallerInput) -> Result<Plan, PackageError> {
        Ok(self.provision_commands(input))
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        input: ServerInstallerInput,
        _report: crate::base::executor::RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(serde_json::json!({"os": input.os}))
    }
}

impl PackageInstaller for ServerInstaller {
    /// Detect the OS first (the rest of the plan depends on it), then provision.
    async fn execute(
        &self,
        executor: &Executor,
        ctx: &RunContext,
        options: &ServerInstallerOptions,
    ) -> Result<serde_json::Value, PackageError> {
        let cx = Gather::new(executor.store(), &ctx.server);
        let mut input = self.gather(&cx, options).await?;
        let detected = self.install(executor, ctx, self.detect_commands()).await?;
        input.os = detected
            .outputs
            .first()
            .map(|o| o.stdout_text().trim().to_string())
            .unwrap_or_default();
        if !SUPPORTED_OS.contains(&input.os.as_str()) {
            return Err(ValidationError::new(
                "os",
                format!("unsupported operating system `{}`", input.os),
            )
            .into());
        }
        let report = self.install(executor, ctx, self.commands(&input)?).await?;
        self.finish(&cx, input, report).await
    }
}

/// An IANA zone name like `Europe/Berlin` (letters, digits, `_+-/`, no `..`).
pub fn validate_timezone(tz: &str) -> Result<String, ValidationError> {
    let ok = !tz.is_empty()
        && tz.len() <= 64
        && !tz.contains("..")
        && !tz.starts_with('/')
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-/".contains(&b));
    if ok {
        Ok(tz.to_string())
    } else {
        Err(ValidationError::new(
            "timezone",
            format!("`{tz}` is not a timezone like Europe/Berlin"),
        ))
    }
}

impl ServerInstaller {
    pub fn detect_commands(&self) -> Plan {
        self.plan()
            .track(ServerInstallerMilestones::DetectOs)
            .run(DETECT_OS)
    }

    fn provision_commands(&self, input: &ServerInstallerInput) -> Plan {
        use ServerInstallerMilestones as M;
        let (os, timezone, swap_mb, ssh_port) =
            (&input.os, &input.timezone, input.swap_mb, input.ssh_port);
        self.plan()
            .track(M::WaitForApt)
            .run_with_timeout(WAIT_FOR_APT, Duration::from_secs(960))
            .track(M::UpdatePackageLists)
            .run_with_timeout(format!("{APT} update -qq"), Duration::from_secs(900))
            .track(M::InstallBasePackages)
            .run_with_timeout(
                format!("{APT} install -y -qq --no-install-recommends {}", BASE_PACKAGES.join(" ")),
                Duration::from_secs(1800),
            )
            .track(M::ConfigureTime)
            .run(format!("timedatectl set-timezone {} && timedatectl set-ntp true", shell_quote(timezone)))
            .track(M::EnableSecurityUpdates)
            .put_file(FileStep::new(
                "/etc/apt/apt.conf.d/20auto-upgrades",
                FileContents::Text(AUTO_UPGRADES.into()),
                0o644,
            ))
            .track(M::ConfigureSwap)
            .run(swap_script(swap_mb))
            .track(M::ConfigureFirewall)
            .run(format!(
                "ufw default deny incoming >/dev/null && ufw default allow outgoing >/dev/null && \
                 ufw allow {ssh_port}/tcp >/dev/null && ufw allow 80/tcp >/dev/null && ufw allow 443/tcp >/dev/null && \
                 ufw --force enable >/dev/null && ufw status"
            ))
            .track(M::Complete)
            .record(StoreChange::SetServerOs(os.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_snapshot() {
        let plan = ServerInstaller
            .commands(&ServerInstallerInput {
                os: "debian 12".into(),
                timezone: "Europe/Berlin".into(),
                swap_mb: 1024,
                ssh_port: 2222,
            })
            .unwrap();
        insta::assert_snapshot!(plan.to_string());
        assert_eq!(plan.total_steps, 9);
    }

    #[test]
    fn timezones_are_validated() {
        assert!(validate_timezone("America/Argentina/Buenos_Aires").is_ok());
        for bad in [
            "",
            "../etc/passwd",
            "UTC; rm -rf /",
            "/etc/localtime",
            "a b",
        ] {
            assert!(validate_timezone(bad).is_err(), "{bad}");
        }
    }
}
