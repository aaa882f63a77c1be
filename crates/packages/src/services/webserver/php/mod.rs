//! PHP settings and extensions of an installed PHP version (`PhpSettingsInstaller`, `PhpExtensionInstaller`).
//! Settings are php.ini values from an allow-list, each checked for its kind; they live in their own file after
//! the web server's (`99-settings-brokeforge.ini` for FPM and the CLI), which `php-fpm -t` must accept before
//! PHP-FPM reloads gracefully (a refused file puts the previous one back). Extensions are the distribution's
//! (or the PHP repository's) `phpV-NAME` packages.

use std::collections::BTreeMap;

use brokeforge_core::{CredentialKind, ServiceStatus, ServiceType, ValidationError, validate};
use serde::{Deserialize, Serialize};

use super::nginx::{PHP_EXTENSIONS, SERVICE_NAME, WebServerConfig};
use crate::base::config::Configuration;
use crate::base::package::{Gather, Package, PackageInstaller};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;

pub fn register(r: &mut Registry) {
    r.installer(PhpSettingsInstaller);
    r.installer(PhpExtensionInstaller);
}

milestones! {
    pub enum PhpSettingsInstallerMilestones {
        WriteSettings => ("write_settings", "Writing the PHP settings"),
        ReloadPhp => ("reload_php", "Reloading PHP-FPM"),
        Complete => ("complete", "PHP settings applied"),
    }
}

milestones! {
    pub enum PhpExtensionInstallerMilestones {
        CheckPackages => ("check_packages", "Checking the extension packages"),
        ChangeExtensions => ("change_extensions", "Installing and removing extensions"),
        ReloadPhp => ("reload_php", "Reloading PHP-FPM"),
        Complete => ("complete", "PHP extensions changed"),
    }
}

/// How a setting's value is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `256M`, `1G`, `512K` (or `-1` where PHP allows no limit).
    Size { unlimited: bool },
    Int(i64, i64),
    OnOff,
    Timezone,
}

/// The php.ini settings BrokeForge sets, with how each is checked.
const SETTINGS: &[(&str, Kind)] = &[
    ("memory_limit", Kind::Size { unlimited: true }),
    ("upload_max_filesize", Kind::Size { unlimited: false }),
    ("post_max_size", Kind::Size { unlimited: false }),
    ("max_execution_time", Kind::Int(0, 86_400)),
    ("max_input_time", Kind::Int(-1, 86_400)),
    ("max_input_vars", Kind::Int(100, 1_000_000)),
    ("max_file_uploads", Kind::Int(1, 1_000)),
    ("default_socket_timeout", Kind::Int(1, 3_600)),
    ("date.timezone", Kind::Timezone),
    ("display_errors", Kind::OnOff),
    ("short_open_tag", Kind::OnOff),
    ("session.gc_maxlifetime", Kind::Int(60, 2_592_000)),
    ("opcache.enable", Kind::OnOff),
    ("opcache.enable_cli", Kind::OnOff),
    ("opcache.memory_consumption", Kind::Int(8, 4_096)),
    ("opcache.interned_strings_buffer", Kind::Int(1, 256)),
    ("opcache.max_accelerated_files", Kind::Int(200, 1_000_000)),
    ("opcache.validate_timestamps", Kind::OnOff),
    ("opcache.revalidate_freq", Kind::Int(0, 86_400)),
    ("realpath_cache_size", Kind::Size { unlimited: false }),
];

/// The names of the settings BrokeForge sets.
pub fn setting_names() -> Vec<&'static str> {
    SETTINGS.iter().map(|(k, _)| *k).collect()
}

/// Check one setting: a name from the allow-list and a value of its kind; the value as it is written.
pub fn check_setting(name: &str, value: &str) -> Result<String, ValidationError> {
    let Some((_, kind)) = SETTINGS.iter().find(|(k, _)| *k == name) else {
        return Err(ValidationError::new(
            "settings",
            format!(
                "`{name}` is not a setting BrokeForge sets; choose from {}",
                setting_names().join(", ")
            ),
        ));
    };
    let v = value.trim();
    let bad = |what: &str| ValidationError::new("settings", format!("{name}: `{v}` is not {what}"));
    match *kind {
        Kind::Size { unlimited } => {
            if unlimited && v == "-1" {
                return Ok(v.into());
            }
            let (num, unit) = v.split_at(v.len().saturating_sub(1));
            let unit = unit.to_ascii_uppercase();
            if !num.is_empty()
                && num.len() <= 6
                && num.bytes().all(|b| b.is_ascii_digit())
                && matches!(unit.as_str(), "K" | "M" | "G")
            {
                Ok(format!("{num}{unit}"))
            } else {
                Err(bad(if unlimited {
                    "a size like 512M (or -1 for no limit)"
                } else {
                    "a size like 64M"
                }))
            }
        }
        Kind::Int(lo, hi) => match v.parse::<i64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n.to_string()),
            _ => Err(bad(&format!("a whole number from {lo} to {hi}"))),
        },
        Kind::OnOff => match v.to_ascii_lowercase().as_str() {
            "on" | "1" | "true" => Ok("On".into()),
            "off" | "0" | "false" => Ok("Off".into()),
            _ => Err(bad("On or Off")),
        },
        Kind::Timezone => {
            let ok = v == "UTC"
                || (v.len() <= 40
                    && v.split('/').count() <= 3
                    && v.split('/').all(|p| {
                        !p.is_empty()
                            && p.as_bytes()[0].is_ascii_uppercase()
                            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))
                    })
                    && v.contains('/'));
            if ok {
                Ok(v.into())
            } else {
                Err(bad("a time zone like Europe/Berlin or UTC"))
            }
        }
    }
}

/// A change of one PHP version's settings: values to set and names to go back to the web server's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhpSettingsRequest {
    pub version: String,
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
}

/// The checked version and the whole set it will have.
#[derive(Debug, Clone)]
pub struct PhpSettingsPlan {
    pub version: String,
    pub settings: BTreeMap<String, String>,
    pub config: WebServerConfig,
}

/// The installed version `version` names (checked against what the web server has).
pub fn installed_version(config: &WebServerConfig, version: &str) -> Result<String, ValidationError> {
    let v = validate::php_version(version.trim())?;
    if !config.php_versions.contains(&v) {
        return Err(ValidationError::new(
            "version",
            if config.php_versions.is_empty() {
                "no PHP is installed on this server: install the `webserver` package first".to_string()
            } else {
                format!(
                    "PHP {v} is not installed on this server (installed: {})",
                    config.php_versions.join(", ")
                )
            },
        ));
    }
    Ok(v)
}

/// Check a settings change against the web server's record; the resulting set.
pub fn plan_settings(
    config: &WebServerConfig,
    r: &PhpSettingsRequest,
) -> Result<PhpSettingsPlan, ValidationError> {
    let version = installed_version(config, &r.version)?;
    if r.set.is_empty() && r.unset.is_empty() {
        return Err(ValidationError::new(
            "settings",
            "nothing to change: give settings to set (name=value) or to unset",
        ));
    }
    let mut settings = config.php_settings.get(&version).cloned().unwrap_or_default();
    for name in &r.unset {
        if !setting_names().contains(&name.as_str()) {
            check_setting(name, "")?;
        }
        settings.remove(name);
    }
    for (name, value) in &r.set {
        settings.insert(name.clone(), check_setting(name, value)?);
    }
    let mut config = config.clone();
    config.php_settings.insert(version.clone(), settings.clone());
    Ok(PhpSettingsPlan {
        version,
        settings,
        config,
    })
}

/// The settings file of a version (FPM's or the CLI's).
pub fn settings_file(version: &str, sapi: &str) -> String {
    format!("/etc/php/{version}/{sapi}/conf.d/99-settings-brokeforge.ini")
}

/// The settings file's text for a version's settings: what the installer writes and drift compares with.
pub fn settings_text(version: &str, settings: &std::collections::BTreeMap<String, String>) -> String {
    let mut text = format!(
        "; Managed by BrokeForge: PHP {version} settings set in BrokeForge (after the web server's defaults).\n"
    );
    for (k, val) in settings {
        text.push_str(&format!("{k} = {val}\n"));
    }
    text
}

pub struct PhpSettingsInstaller;

impl Package for PhpSettingsInstaller {
    type Milestones = PhpSettingsInstallerMilestones;
    type Request = PhpSettingsRequest;
    type Input = PhpSettingsPlan;
    const JOB: &'static str = "php_settings_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Webserver
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &PhpSettingsRequest) -> Result<PhpSettingsPlan, PackageError> {
        let config = WebServerConfig::current(cx.store, cx.server.id).await?;
        Ok(plan_settings(&config, r)?)
    }

    fn commands(&self, p: &PhpSettingsPlan) -> Result<Plan, PackageError> {
        use PhpSettingsInstallerMilestones as M;
        let v = &p.version;
        let text = settings_text(v, &p.settings);
        let files: Vec<String> = ["fpm", "cli"].iter().map(|s| settings_file(v, s)).collect();
        let keep = files
            .iter()
            .map(|f| format!("rm -f {f}.previous; if [ -e {f} ]; then cp -p {f} {f}.previous; fi"))
            .collect::<Vec<_>>()
            .join("; ");
        let restore = files
            .iter()
            .map(|f| format!("if [ -e {f}.previous ]; then mv -f {f}.previous {f}; else rm -f {f}; fi"))
            .collect::<Vec<_>>()
            .join("; ");
        let done = files
            .iter()
            .map(|f| format!("rm -f {f}.previous"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut plan = self.plan().track(M::WriteSettings).run(keep);
        for f in &files {
            plan = plan.put_file(FileStep::new(f.clone(), FileContents::Text(text.clone()), 0o644));
        }
        Ok(plan
            .run(format!(
                "out=$(mktemp) || exit 1; if ! php-fpm{v} -t 2>\"$out\"; then cat \"$out\" >&2; rm -f \"$out\"; {restore}; exit 1; fi; \
                 rm -f \"$out\"; {done}"
            ))
            .track(M::ReloadPhp)
            .run(format!("systemctl reload php{v}-fpm"))
            .track(M::Complete)
            .record(StoreChange::UpsertService {
                name: SERVICE_NAME.into(),
                service_type: ServiceType::Webserver,
                configuration: p.config.to_value(),
                status: ServiceStatus::Active,
            }))
    }
}

impl PackageInstaller for PhpSettingsInstaller {}

/// Extensions to add to and remove from one PHP version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhpExtensionsRequest {
    pub version: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// The checked version and package names.
#[derive(Debug, Clone)]
pub struct PhpExtensionsPlan {
    pub version: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// An extension's name as its package names it (`intl`, `imagick`, `sqlite3`).
pub fn extension_name(value: &str) -> Result<String, ValidationError> {
    let v = value.trim().to_ascii_lowercase();
    let v = v.strip_prefix("php-").unwrap_or(&v).to_string();
    if !v.is_empty()
        && v.len() <= 32
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
    {
        Ok(v)
    } else {
        Err(ValidationError::new(
            "extensions",
            format!("`{value}` is not an extension name like intl or imagick"),
        ))
    }
}

/// Check an extensions change against the web server's record.
pub fn plan_extensions(
    config: &WebServerConfig,
    r: &PhpExtensionsRequest,
) -> Result<PhpExtensionsPlan, ValidationError> {
    let version = installed_version(config, &r.version)?;
    let names = |list: &[String]| -> Result<Vec<String>, ValidationError> {
        let mut out: Vec<String> = Vec::new();
        for e in list {
            let e = extension_name(e)?;
            if !out.contains(&e) {
                out.push(e);
            }
        }
        Ok(out)
    };
    let add = names(&r.add)?;
    let remove = names(&r.remove)?;
    if add.is_empty() && remove.is_empty() {
        return Err(ValidationError::new(
            "extensions",
            "nothing to change: give extensions to add or to remove",
        ));
    }
    if let Some(e) = add.iter().find(|e| remove.contains(e)) {
        return Err(ValidationError::new(
            "extensions",
            format!("{e} is both added and removed"),
        ));
    }
    if let Some(e) = remove.iter().find(|e| PHP_EXTENSIONS.contains(&e.as_str())) {
        return Err(ValidationError::new(
            "extensions",
            format!(
                "{e} comes with the web server and stays (BrokeForge's sites need: {})",
                PHP_EXTENSIONS.join(", ")
            ),
        ));
    }
    Ok(PhpExtensionsPlan {
        version,
        add,
        remove,
    })
}

/// Lists the modules a version loads (`php -m`).
pub fn modules_command(version: &str) -> String {
    format!("php{version} -m")
}

/// The module names of `php -m`'s output, lowercase and sorted.
pub fn parse_modules(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('['))
        .map(|l| l.to_ascii_lowercase())
        .collect();
    out.sort();
    out.dedup();
    out
}

pub struct PhpExtensionInstaller;

impl Package for PhpExtensionInstaller {
    type Milestones = PhpExtensionInstallerMilestones;
    type Request = PhpExtensionsRequest;
    type Input = PhpExtensionsPlan;
    const JOB: &'static str = "php_extension_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Webserver
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &PhpExtensionsRequest) -> Result<PhpExtensionsPlan, PackageError> {
        let config = WebServerConfig::current(cx.store, cx.server.id).await?;
        Ok(plan_extensions(&config, r)?)
    }

    fn commands(&self, p: &PhpExtensionsPlan) -> Result<Plan, PackageError> {
        use PhpExtensionInstallerMilestones as M;
        let v = &p.version;
        let pkg = |e: &String| format!("php{v}-{e}");
        let add: Vec<String> = p.add.iter().map(pkg).collect();
        let remove: Vec<String> = p.remove.iter().map(pkg).collect();
        let mut plan = self.plan().track(M::CheckPackages);
        if !add.is_empty() {
            // A name the package sources do not know is refused with its name, before anything changes.
            plan = plan.run(format!(
                "missing=; for p in {}; do apt-cache show --no-all-versions \"$p\" >/dev/null 2>&1 || missing=\"$missing $p\"; done; \
                 if [ -n \"$missing\" ]; then echo \"no such package for PHP {v} in this server's package sources:$missing\" >&2; exit 1; fi",
                add.join(" ")
            ));
        }
        plan = plan.track(M::ChangeExtensions);
        if !add.is_empty() {
            plan = plan.run_with_timeout(
                format!("{APT} install -y -qq --no-install-recommends {}", add.join(" ")),
                std::time::Duration::from_secs(900),
            );
        }
        if !remove.is_empty() {
            plan = plan.run_with_timeout(
                format!(
                    "for p in {}; do if dpkg -s \"$p\" >/dev/null 2>&1; then {APT} remove -y -qq \"$p\"; else echo \"$p is not installed\"; fi; done",
                    remove.join(" ")
                ),
                std::time::Duration::from_secs(900),
            );
        }
        Ok(plan
            .track(M::ReloadPhp)
            .run(format!("php-fpm{v} -t && systemctl reload php{v}-fpm && {}", modules_command(v)))
            .track(M::Complete))
    }
}

impl PackageInstaller for PhpExtensionInstaller {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebServerConfig {
        WebServerConfig {
            php_versions: vec!["8.2".into()],
            cli_default: Some("8.2".into()),
            ..Default::default()
        }
    }

    #[test]
    fn settings_are_checked_and_merged() {
        for (k, v) in [
            ("memory_limit", "512"),
            ("memory_limit", "512M\nextension=evil.so"),
            ("max_execution_time", "-5"),
            ("display_errors", "maybe"),
            ("date.timezone", "Europe/Berlin; rm"),
            ("date.timezone", "../../etc"),
            ("disable_functions", ""),
            ("extension", "evil.so"),
        ] {
            assert!(check_setting(k, v).is_err(), "{k}={v:?} accepted");
        }
        assert_eq!(check_setting("memory_limit", "512m").unwrap(), "512M");
        assert_eq!(check_setting("memory_limit", "-1").unwrap(), "-1");
        assert_eq!(check_setting("display_errors", "true").unwrap(), "On");
        assert_eq!(check_setting("date.timezone", "America/Argentina/Buenos_Aires").unwrap(), "America/Argentina/Buenos_Aires");
        let mut set = BTreeMap::new();
        set.insert("memory_limit".to_string(), "512M".to_string());
        let p = plan_settings(&config(), &PhpSettingsRequest { version: "8.2".into(), set, unset: vec![] }).unwrap();
        assert_eq!(p.config.php_settings["8.2"]["memory_limit"], "512M");
        let err = plan_settings(&config(), &PhpSettingsRequest { version: "8.3".into(), ..Default::default() }).unwrap_err();
        assert!(err.message.contains("not installed"), "{}", err.message);
        insta::assert_snapshot!(PhpSettingsInstaller.commands(&p).unwrap().to_string());
    }

    #[test]
    fn extensions_are_checked() {
        let req = |add: &[&str], remove: &[&str]| PhpExtensionsRequest {
            version: "8.2".into(),
            add: add.iter().map(|s| s.to_string()).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
        };
        for (add, remove) in [
            (&["intl; reboot"][..], &[][..]),
            (&["$(id)"][..], &[][..]),
            (&[][..], &["fpm"][..]),
            (&["bz2"][..], &["bz2"][..]),
            (&[][..], &[][..]),
        ] {
            assert!(plan_extensions(&config(), &req(add, remove)).is_err(), "{add:?} {remove:?}");
        }
        let p = plan_extensions(&config(), &req(&["bz2", "php-BZ2", "imagick"], &["xdebug"])).unwrap();
        assert_eq!(p.add, ["bz2", "imagick"]);
        insta::assert_snapshot!(PhpExtensionInstaller.commands(&p).unwrap().to_string());
        assert_eq!(
            parse_modules("[PHP Modules]\nCore\nbz2\nintl\n\n[Zend Modules]\nZend OPcache\n"),
            ["bz2", "core", "intl", "zend opcache"]
        );
    }
}
