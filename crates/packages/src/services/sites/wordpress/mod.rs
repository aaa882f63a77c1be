//! WordPress Installer: a WordPress site's first release. Its database and user are created on the server's
//! MariaDB or MySQL (recorded like any other, the password sealed in the store), WordPress comes from the
//! distribution's `wordpress` package (copied into a release; no download from the internet), and
//! `wp-config.php` (database credentials and freshly generated salts) is written to `shared/` and linked into
//! releases. Its text travels as a secret: it is never in a plan, a log or an event. Visiting the site then
//! shows WordPress's own install page.

use brokeforge_core::time::utc_stamp;
use brokeforge_core::{CredentialKind, Secret, ServiceType, ValidationError, shell_quote, validate};
use brokeforge_store::{JobTarget, NewJob, ServerSite, Store};
use serde_json::json;

use super::common::{SiteRef, SiteUser, on_server};
use super::config::{ReleaseInfo, SiteConfig, SiteKind};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, job};
use crate::base::registry::Registry;
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep};
use crate::milestones;
use crate::services::database::engine::{DatabaseConfig, Engine, SchemaEntry, UserEntry};
use crate::services::database::shared::generate_password;
use crate::services::database::sql::{
    Privileges, config_change, create_schema_sql, user_secret_name, user_sql,
};
use crate::services::server::provision::APT;

pub fn register(r: &mut Registry) {
    r.installer(WordpressInstaller);
}

milestones! {
    pub enum WordpressInstallerMilestones {
        CreateDatabase => ("create_database", "Creating the WordPress database and user"),
        InstallWordpress => ("install_wordpress", "Installing WordPress"),
        Configure => ("configure", "Writing wp-config.php"),
        Activate => ("activate", "Making WordPress live"),
        Complete => ("complete", "WordPress ready for its install page"),
    }
}

/// The database (and user) name of a WordPress site.
pub fn database_name(site_id: i64) -> String {
    format!("wp_{site_id}")
}

/// The engine a WordPress site's database goes to: MariaDB, else MySQL, whichever is active.
pub async fn wordpress_engine(store: &Store, server_id: i64) -> Result<Engine, PackageError> {
    let services = store.services(server_id).await?;
    for engine in [Engine::MariaDb, Engine::MySql] {
        if services.iter().any(|s| {
            s.service_name == engine.name() && s.status == brokeforge_core::ServiceStatus::Active
        }) {
            return Ok(engine);
        }
    }
    Err(ValidationError::new(
        "type",
        "WordPress needs a MariaDB or MySQL database: install the `mariadb` package first",
    )
    .into())
}

/// Queue a new WordPress site's installer (after its site installer, which the same server runs first).
pub async fn queue_wordpress(
    store: &Store,
    site: &ServerSite,
) -> Result<brokeforge_store::Job, PackageError> {
    Ok(store
        .enqueue(&NewJob {
            target: Some(JobTarget::Site {
                id: site.id,
                provision_type: brokeforge_core::ProvisionType::Install,
            }),
            ..job::<WordpressInstaller>(site.server_id, &SiteRef { site_id: site.id })?
        })
        .await?)
}

/// 64 characters for a WordPress key or salt.
fn salt() -> Result<String, ValidationError> {
    Ok(generate_password()?.expose().to_string() + generate_password()?.expose())
}

pub struct WordpressInstaller;

/// What the plan needs.
pub struct WordpressInput {
    pub site: ServerSite,
    pub engine: Engine,
    pub database: String,
    pub password: Secret,
    pub config: Secret,
    pub release: String,
    pub db_config: DatabaseConfig,
}

impl Package for WordpressInstaller {
    type Milestones = WordpressInstallerMilestones;
    type Request = SiteRef;
    type Input = WordpressInput;
    const JOB: &'static str = "wordpress_installer";

    fn service_type(&self) -> ServiceType {
        ServiceType::Site
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(&self, cx: &Gather<'_>, r: &SiteRef) -> Result<WordpressInput, PackageError> {
        let site = cx.store.site(r.site_id).await?;
        on_server(cx.server.id, &site)?;
        if SiteConfig::of(&site).kind != SiteKind::Wordpress {
            return Err(ValidationError::new("type", "the site is not a WordPress site").into());
        }
        let engine = wordpress_engine(cx.store, cx.server.id).await?;
        let database = database_name(site.id);
        let password = cx
            .secret_or_generate(&user_secret_name(engine, &database), generate_password)
            .await?;
        let mut config = format!(
            "<?php\n// Written by BrokeForge for {domain}: database credentials and keys. Kept in shared/.\n\
             define('DB_NAME', '{database}');\ndefine('DB_USER', '{database}');\n\
             define('DB_PASSWORD', '{password}');\ndefine('DB_HOST', 'localhost');\n\
             define('DB_CHARSET', 'utf8mb4');\ndefine('DB_COLLATE', '');\n",
            domain = validate::domain(&site.domain)?,
            password = password.expose(),
        );
        for key in [
            "AUTH_KEY",
            "SECURE_AUTH_KEY",
            "LOGGED_IN_KEY",
            "NONCE_KEY",
            "AUTH_SALT",
            "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT",
            "NONCE_SALT",
        ] {
            config.push_str(&format!("define('{key}', '{}');\n", salt()?));
        }
        config.push_str(
            "$table_prefix = 'wp_';\ndefine('WP_DEBUG', false);\n\
             if (!defined('ABSPATH')) { define('ABSPATH', __DIR__ . '/'); }\nrequire_once ABSPATH . 'wp-settings.php';\n",
        );
        let mut db_config = DatabaseConfig::current(cx.store, cx.server.id, engine).await?;
        if !db_config.schemas.iter().any(|s| s.name == database) {
            db_config.schemas.push(SchemaEntry {
                name: database.clone(),
                charset: "utf8mb4".into(),
                collation: "utf8mb4_unicode_ci".into(),
            });
        }
        db_config.users.retain(|u| u.name != database);
        db_config.users.push(UserEntry {
            name: database.clone(),
            privileges: Some(Privileges::ReadWrite),
            schemas: vec![database.clone()],
        });
        Ok(WordpressInput {
            site,
            engine,
            database,
            password,
            config: Secret::new(config),
            release: format!("{}-wordpress", utc_stamp(brokeforge_core::time::now_ms())),
            db_config,
        })
    }

    fn commands(&self, i: &WordpressInput) -> Result<Plan, PackageError> {
        use WordpressInstallerMilestones as M;
        let q = shell_quote;
        let domain = validate::domain(&i.site.domain)?;
        let user = SiteUser::of(&i.site);
        let root = user.site_root(&domain);
        let rel = format!("{root}/releases/{}", i.release);
        let sql = create_schema_sql(i.engine, &i.database, "utf8mb4", "utf8mb4_unicode_ci")
            + &user_sql(
                i.engine,
                &i.database,
                &i.password,
                Privileges::ReadWrite,
                std::slice::from_ref(&i.database),
            );
        let as_user = |command: String| user.step(command, std::time::Duration::from_secs(300));
        Ok(self
            .plan()
            .secret(i.password.clone())
            .track(M::CreateDatabase)
            .run_step(RunStep {
                command: "mysql --protocol=socket -u root".into(),
                timeout: std::time::Duration::from_secs(300),
                stdin: Some(Secret::new(sql)),
                credential: None,
                private_output: false,
            })
            .record(config_change(i.engine, &i.db_config))
            .track(M::InstallWordpress)
            .run_with_timeout(
                format!("{APT} install -y -qq --no-install-recommends wordpress"),
                std::time::Duration::from_secs(900),
            )
            // The distribution's tree links to its own config and shared files: copy what the links point to.
            .run_step(as_user(format!(
                "set -e; install -d {rel}; cp -rL /usr/share/wordpress/. {rel}/; rm -f {rel}/wp-config.php; \
                 cd {root}; install -d -m 750 shared shared/wp-content shared/wp-content/uploads",
                rel = q(&rel),
                root = q(&root),
            )))
            .track(M::Configure)
            .put_file(user.file(FileStep::new(
                format!("{root}/shared/wp-config.php"),
                FileContents::Secret(i.config.clone()),
                // PHP runs as a site user itself; the shared pool's files are the app user's group's.
                if user.isolated { 0o600 } else { 0o640 },
            )))
            .track(M::Activate)
            .run_step(as_user(format!(
                "set -e; cd {rel}; ln -sfn {root}/shared/wp-config.php wp-config.php; \
                 rm -rf wp-content/uploads; ln -sfn {root}/shared/wp-content/uploads wp-content/uploads; \
                 cd {root}; ln -sfn releases/{release} current.new; mv -Tf current.new current; echo \"live: $(readlink current)\"",
                rel = q(&rel),
                root = q(&root),
                release = q(&i.release),
            )))
            .track(M::Complete))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        i: WordpressInput,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        let release = i.release.clone();
        SiteConfig::update(cx.store, i.site.id, |c| {
            c.current_release = Some(release.clone());
            if !c.releases.iter().any(|r| r.name == release) {
                c.releases.push(ReleaseInfo {
                    name: release.clone(),
                    commit: None,
                    deployment_id: None,
                    deployed_at: brokeforge_core::time::now_ms(),
                });
            }
        })
        .await?;
        Ok(json!({"site_id": i.site.id, "database": i.database, "release": i.release}))
    }
}

impl PackageInstaller for WordpressInstaller {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan shows every step but neither the database password nor wp-config.php's text.
    #[test]
    fn plan_keeps_secrets_out() {
        let site = crate::services::sites::site::tests::site();
        let input = WordpressInput {
            site,
            engine: Engine::MariaDb,
            database: database_name(7),
            password: Secret::new("db-password-4f9a"),
            config: Secret::new("<?php define('DB_PASSWORD', 'db-password-4f9a'); define('AUTH_KEY', 'salt-77c1');"),
            release: "20261128000000-wordpress".into(),
            db_config: DatabaseConfig::default(),
        };
        let plan = WordpressInstaller.commands(&input).unwrap().to_string();
        for secret in ["db-password-4f9a", "salt-77c1"] {
            assert!(!plan.contains(secret), "{secret} in the plan:\n{plan}");
        }
        for step in [
            "apt-get",
            "cp -rL /usr/share/wordpress/.",
            "/home/brokeforge/example.com/shared/wp-config.php",
            "ln -sfn releases/20261128000000-wordpress current.new",
        ] {
            assert!(plan.contains(step), "{step} not in the plan:\n{plan}");
        }
    }
}
