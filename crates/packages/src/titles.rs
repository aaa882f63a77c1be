//! What a job is called wherever it is shown: one place, one voice, a verb first ("Install MariaDB", "Create
//! site shop.example.com", "Deploy shop.example.com").

/// How a catalogue package is named to people.
pub fn service_name(name: &str) -> String {
    match name {
        "webserver" => "nginx and PHP".into(),
        "mariadb" => "MariaDB".into(),
        "mysql" => "MySQL".into(),
        "postgresql" => "PostgreSQL".into(),
        "redis" => "Redis".into(),
        "memcached" => "Memcached".into(),
        "nodejs" => "Node.js".into(),
        "monitoring" => "the monitoring collector".into(),
        other => other.replace(['_', '-'], " "),
    }
}

/// The phrase of a job kind; `subject` (a site's domain) follows it where the job is about one.
fn phrase(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "backup_restore" => "Restore a backup",
        "backup_run" => "Back up",
        "backup_storage_check" => "Check a backup storage",
        "backup_verify" => "Verify a backup",
        "connection_check" => "Check the connection",
        "database_schema_installer" => "Create a database",
        "database_schema_remover" => "Drop a database",
        "database_user_installer" => "Create a database user",
        "database_user_remover" => "Drop a database user",
        "firewall_rule_installer" => "Add a firewall rule",
        "firewall_rule_remover" => "Remove a firewall rule",
        "git_repository_installer" => "Connect the repository of",
        "php_extension_installer" => "Change PHP extensions",
        "php_settings_installer" => "Change PHP settings",
        "recipe" => "Run a recipe",
        "drift_check" => "Check for drift",
        "server_access_installer" => "Set up BrokeForge's access",
        "server_access_remover" => "Take BrokeForge's access away",
        "server_installer" => "Provision the server",
        "site_certificate_installer" => "Get a certificate for",
        "site_certificate_remover" => "Remove the certificate of",
        "site_custom_certificate_installer" => "Install a certificate for",
        "site_command" => "Run a command in",
        "site_deploy" => "Deploy",
        "site_environment_installer" => "Write the .env of",
        "site_installer" => "Create site",
        "site_remover" => "Remove site",
        "site_php_pool_installer" => "Change the PHP pool of",
        "site_php_version_installer" => "Change the PHP version of",
        "site_rollback" => "Roll back",
        "site_tasks_installer" => "Set the scheduled commands and daemons of",
        "site_vhost_installer" => "Write the vhost of",
        "synthetic_plan" => "Run the benchmark's plan",
        "user_key_installer" => "Add an SSH key",
        "user_key_remover" => "Remove an SSH key",
        "wordpress_installer" => "Install WordPress on",
        _ => return None,
    })
}

/// A job's title. `service`: the package a service job installs (`true`) or removes; `subject`: the site it
/// is about.
pub fn job_title(kind: &str, service: Option<(&str, bool)>, subject: Option<&str>) -> String {
    if let Some((name, install)) = service {
        let verb = if install { "Install" } else { "Remove" };
        return format!("{verb} {}", service_name(name));
    }
    let base = match phrase(kind) {
        Some(p) => p.to_string(),
        None => match (
            kind.strip_suffix("_installer"),
            kind.strip_suffix("_remover"),
        ) {
            (Some(name), _) => format!("Install {}", service_name(name)),
            (_, Some(name)) => format!("Remove {}", service_name(name)),
            _ => {
                let text = kind.replace('_', " ");
                let mut c = text.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
        },
    };
    match subject {
        Some(s) if !s.is_empty() => format!("{base} {s}"),
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_voice() {
        assert_eq!(
            job_title("mariadb_installer", Some(("mariadb", true)), None),
            "Install MariaDB"
        );
        assert_eq!(
            job_title("webserver_remover", Some(("webserver", false)), None),
            "Remove nginx and PHP"
        );
        assert_eq!(
            job_title("site_installer", None, Some("shop.example.com")),
            "Create site shop.example.com"
        );
        assert_eq!(
            job_title("site_deploy", None, Some("a.test")),
            "Deploy a.test"
        );
        assert_eq!(
            job_title("server_access_installer", None, None),
            "Set up BrokeForge's access"
        );
        assert_eq!(job_title("redis_installer", None, None), "Install Redis");
        assert_eq!(job_title("noop", None, None), "Noop");
        // Every job kind the registry knows has a title of its own or a package's name.
        for kind in crate::registry().job_kinds() {
            let t = job_title(kind, None, None);
            assert!(
                t.chars().next().is_some_and(char::is_uppercase) && !t.contains('_'),
                "{kind}: {t}"
            );
        }
    }
}
