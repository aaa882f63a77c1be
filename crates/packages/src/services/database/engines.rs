//! MariaDB, MySQL, PostgreSQL and Redis installers and removers. They share one shape (install, configure
//! bound to localhost, admin password over stdin, firewall exactly as asked), so one engine table drives the
//! commands and a small macro gives each the spec's names (`MariaDbInstaller`, `RedisRemover`, ...).

use brokeforge_core::{CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError};
use serde::Deserialize;
use serde_json::json;

use super::{
    firewall_commands, generate_password, mysql_string, parse_sources, pg_string, previous_sources,
};
use crate::base::executor::{Executor, RunContext};
use crate::base::{FileContents, FileStep, PackageError, Plan, RunStep, StoreChange};
use crate::milestones;
use crate::services::server::APT;
use crate::templates;

milestones! {
    pub enum DatabaseInstallerMilestones {
        PrepareSystem => ("prepare_system", "Preparing the system"),
        InstallSoftware => ("install_software", "Installing the server"),
        Configure => ("configure", "Configuring (bound to localhost unless opened)"),
        CreateAdmin => ("create_admin", "Setting the admin password"),
        ConfigureFirewall => ("configure_firewall", "Configuring the firewall"),
        Complete => ("complete", "Installed"),
    }
}

milestones! {
    pub enum DatabaseRemoverMilestones {
        Backup => ("backup", "Dumping the data"),
        StopService => ("stop_service", "Stopping the service"),
        RemoveSoftware => ("remove_software", "Removing the software"),
        RemoveData => ("remove_data", "Removing data directories"),
        CloseFirewall => ("close_firewall", "Closing the firewall"),
        Complete => ("complete", "Removed"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    MariaDb,
    MySql,
    PostgreSql,
    Redis,
}

impl Engine {
    pub const ALL: [Engine; 4] = [
        Engine::MariaDb,
        Engine::MySql,
        Engine::PostgreSql,
        Engine::Redis,
    ];

    /// The catalogue and service-record name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::MariaDb => "mariadb",
            Engine::MySql => "mysql",
            Engine::PostgreSql => "postgresql",
            Engine::Redis => "redis",
        }
    }
    pub fn port(self) -> u16 {
        match self {
            Engine::MariaDb | Engine::MySql => 3306,
            Engine::PostgreSql => 5432,
            Engine::Redis => 6379,
        }
    }
    fn unit(self) -> &'static str {
        match self {
            Engine::MariaDb => "mariadb",
            Engine::MySql => "mysql",
            Engine::PostgreSql => "postgresql",
            Engine::Redis => "redis-server",
        }
    }
    fn packages(self) -> &'static [&'static str] {
        match self {
            Engine::MariaDb => &["mariadb-server", "mariadb-client"],
            Engine::MySql => &["mysql-server", "mysql-client"],
            Engine::PostgreSql => &["postgresql", "postgresql-contrib"],
            Engine::Redis => &["redis-server", "redis-tools"],
        }
    }
    /// Packages a purge removes (those installed).
    fn purge(self) -> &'static str {
        match self {
            Engine::MariaDb => {
                "mariadb-server mariadb-client mariadb-common mariadb-server-core mariadb-client-core galera-4"
            }
            Engine::MySql => {
                "mysql-server mysql-client mysql-common mysql-server-core-* mysql-client-core-*"
            }
            Engine::PostgreSql => {
                "postgresql postgresql-contrib postgresql-common postgresql-client-common postgresql-[0-9]* postgresql-client-[0-9]*"
            }
            Engine::Redis => "redis-server redis-tools",
        }
    }
    fn data_dirs(self) -> &'static str {
        match self {
            Engine::MariaDb | Engine::MySql => {
                "/var/lib/mysql /etc/mysql /root/.brokeforge-mysql.cnf"
            }
            Engine::PostgreSql => "/var/lib/postgresql /etc/postgresql",
            Engine::Redis => "/var/lib/redis /etc/redis",
        }
    }
    fn conflicts(self) -> Option<Engine> {
        match self {
            Engine::MariaDb => Some(Engine::MySql),
            Engine::MySql => Some(Engine::MariaDb),
            _ => None,
        }
    }
    /// The secret's name in the store.
    pub fn secret_name(self) -> String {
        format!("{}_admin_password", self.name())
    }
    fn postgres_version(os: &str) -> Option<&'static str> {
        match os {
            "debian 12" => Some("15"),
            "debian 13" => Some("17"),
            "ubuntu 22.04" => Some("14"),
            "ubuntu 24.04" => Some("16"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DatabaseOptions {
    /// Comma-separated addresses/networks allowed to connect; empty: localhost only.
    pub allowed_sources: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DatabaseRemoveOptions {
    /// Dump everything to /root/brokeforge-backups first.
    pub dump_first: bool,
    /// Delete data and configuration directories too.
    pub remove_data: bool,
}

/// Admin access over the local socket; passwords always arrive on stdin.
fn admin_sql(engine: Engine, password: &Secret) -> Option<(String, String)> {
    let pw = password.expose();
    match engine {
        Engine::MariaDb | Engine::MySql => Some((
            "mysql --protocol=socket -u root".into(),
            format!(
                "CREATE USER IF NOT EXISTS 'brokeforge'@'localhost' IDENTIFIED BY {p};\n\
                 ALTER USER 'brokeforge'@'localhost' IDENTIFIED BY {p};\n\
                 GRANT ALL PRIVILEGES ON *.* TO 'brokeforge'@'localhost' WITH GRANT OPTION;\n\
                 DROP DATABASE IF EXISTS test;\nFLUSH PRIVILEGES;\n",
                p = mysql_string(pw)
            ),
        )),
        Engine::PostgreSql => Some((
            "cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q".into(),
            format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'brokeforge') THEN CREATE ROLE brokeforge; END IF; END$$;\n\
                 ALTER ROLE brokeforge WITH LOGIN SUPERUSER PASSWORD {};\n",
                pg_string(pw)
            ),
        )),
        Engine::Redis => Some((
            // Proves the password works: redis-cli reads AUTH and PING from stdin.
            "out=$(redis-cli); echo \"$out\"; echo \"$out\" | grep -q PONG".into(),
            format!("AUTH {pw}\nPING\n"),
        )),
    }
}

/// The install plan for `engine` on `os`, with exactly `sources` allowed in (besides localhost).
pub fn install_plan(
    engine: Engine,
    os: &str,
    sources: &[String],
    previous: &[String],
    password: &Secret,
    previous_config: Option<&serde_json::Value>,
) -> Result<Plan, PackageError> {
    use DatabaseInstallerMilestones as M;
    let opened = !sources.is_empty();
    let mut plan = Plan::new::<M>(ServiceType::Database, CredentialKind::Root)
        .secret(password.clone())
        .track(M::PrepareSystem)
        .run_with_timeout(
            format!("{APT} update -qq"),
            std::time::Duration::from_secs(900),
        )
        .track(M::InstallSoftware)
        .run_with_timeout(
            format!(
                "{APT} install -y -qq --no-install-recommends {}",
                engine.packages().join(" ")
            ),
            std::time::Duration::from_secs(1800),
        )
        .track(M::Configure);
    let unit = engine.unit();
    plan = match engine {
        Engine::MariaDb | Engine::MySql => {
            let dir = if engine == Engine::MariaDb {
                "/etc/mysql/mariadb.conf.d"
            } else {
                "/etc/mysql/mysql.conf.d"
            };
            let cnf = templates::render(
                "mariadb/server.cnf",
                json!({"bind_address": if opened { "0.0.0.0" } else { "127.0.0.1" }, "max_connections": 200}),
            )?;
            plan.put_file(FileStep::new(
                format!("{dir}/60-brokeforge.cnf"),
                FileContents::Text(cnf),
                0o644,
            ))
        }
        Engine::PostgreSql => {
            let v = Engine::postgres_version(os).ok_or_else(|| {
                ValidationError::new("os", format!("no PostgreSQL version known for {os}"))
            })?;
            let conf = templates::render(
                "postgresql/brokeforge.conf",
                json!({"listen_addresses": if opened { "*" } else { "localhost" }}),
            )?;
            let hba = templates::render(
                "postgresql/pg_hba.conf",
                json!({"allowed_sources": sources}),
            )?;
            plan.put_file(
                FileStep::new(
                    format!("/etc/postgresql/{v}/main/conf.d/brokeforge.conf"),
                    FileContents::Text(conf),
                    0o644,
                )
                .owner("postgres:postgres"),
            )
            .put_file(
                FileStep::new(
                    format!("/etc/postgresql/{v}/main/pg_hba.conf"),
                    FileContents::Text(hba),
                    0o640,
                )
                .owner("postgres:postgres"),
            )
        }
        Engine::Redis => {
            let conf = templates::render(
                "redis/redis.conf",
                json!({"bind": if opened { "0.0.0.0 ::" } else { "127.0.0.1 -::1" }, "password": password.expose()}),
            )?;
            plan.put_file(
                FileStep::new(
                    "/etc/redis/redis.conf",
                    FileContents::Secret(Secret::new(conf)),
                    0o640,
                )
                .owner("redis:redis"),
            )
        }
    };
    plan = plan
        .run(format!(
            "systemctl enable {unit} && systemctl restart {unit}"
        ))
        .track(M::CreateAdmin);
    if let Some((command, sql)) = admin_sql(engine, password) {
        // Redis may take a moment to accept connections after its restart.
        let command = if engine == Engine::Redis {
            format!(
                "for i in $(seq 1 50); do redis-cli -e ping 2>&1 | grep -q -e NOAUTH -e PONG && break; sleep 0.1; done; {command}"
            )
        } else {
            command
        };
        plan = plan.run_step(RunStep {
            command,
            timeout: std::time::Duration::from_secs(120),
            stdin: Some(Secret::new(sql)),
            credential: None,
            private_output: false,
        });
    }
    if matches!(engine, Engine::MariaDb | Engine::MySql) {
        let cnf = format!(
            "[client]\nuser=brokeforge\npassword=\"{}\"\n",
            password.expose()
        );
        plan = plan.put_file(FileStep::new(
            "/root/.brokeforge-mysql.cnf",
            FileContents::Secret(Secret::new(cnf)),
            0o600,
        ));
    }
    Ok(plan
        .track(M::ConfigureFirewall)
        .run(firewall_commands(engine.port(), sources, previous))
        .track(M::Complete)
        .record(StoreChange::UpsertService {
            name: engine.name().into(),
            service_type: ServiceType::Database,
            configuration: {
                // Keep what else the record holds (schemas, users).
                let mut config = match previous_config {
                    Some(serde_json::Value::Object(map)) => serde_json::Value::Object(map.clone()),
                    _ => json!({}),
                };
                config["port"] = json!(engine.port());
                config["allowed_sources"] = json!(sources);
                config["bound_to"] = json!(if opened { "all" } else { "localhost" });
                config
            },
            status: ServiceStatus::Active,
        }))
}

pub fn remove_plan(
    engine: Engine,
    opts: &DatabaseRemoveOptions,
    previous: &[String],
    password: Option<&Secret>,
) -> Plan {
    use DatabaseRemoverMilestones as M;
    let unit = engine.unit();
    let backup_dir = "/root/brokeforge-backups";
    let mut plan = Plan::new::<M>(ServiceType::Database, CredentialKind::Root).track(M::Backup);
    plan = if !opts.dump_first {
        plan.run("echo 'no dump requested'")
    } else {
        let stamp = "$(date +%Y%m%d-%H%M%S)";
        match engine {
            Engine::MariaDb | Engine::MySql => plan.run(format!(
                "install -d -m 700 {backup_dir} && mysqldump --protocol=socket -u root --all-databases --single-transaction --routines --events \
                 | gzip > {backup_dir}/{}-{stamp}.sql.gz",
                engine.name()
            )),
            Engine::PostgreSql => plan.run(format!(
                "install -d -m 700 {backup_dir} && cd / && runuser -u postgres -- pg_dumpall | gzip > {backup_dir}/postgresql-{stamp}.sql.gz"
            )),
            Engine::Redis => {
                let auth = password.map(|p| format!("AUTH {}\n", p.expose())).unwrap_or_default();
                if let Some(p) = password {
                    plan = plan.secret(p.clone());
                }
                plan.run_step(RunStep {
                    command: format!("install -d -m 700 {backup_dir} && redis-cli >/dev/null && cp /var/lib/redis/dump.rdb {backup_dir}/redis-{stamp}.rdb"),
                    timeout: std::time::Duration::from_secs(600),
                    stdin: Some(Secret::new(format!("{auth}SAVE\n"))),
                    credential: None,
                    private_output: false,
                })
            }
        }
    };
    plan = plan
        .track(M::StopService)
        .run(format!("systemctl disable --now {unit} 2>/dev/null || true"))
        .track(M::RemoveSoftware)
        .run_with_timeout(
            format!(
                "pkgs=$(dpkg-query -W -f '${{Package}} ${{Status}}\\n' {} 2>/dev/null | awk '/install ok installed/ {{print $1}}'); \
                 [ -z \"$pkgs\" ] || {APT} purge -y -qq $pkgs; {APT} autoremove --purge -y -qq",
                engine.purge()
            ),
            std::time::Duration::from_secs(1800),
        )
        .track(M::RemoveData);
    plan = if opts.remove_data {
        plan.run(format!("rm -rf {}", engine.data_dirs()))
    } else {
        plan.run(format!("echo 'kept {}'", engine.data_dirs()))
    };
    plan.track(M::CloseFirewall)
        .run(firewall_commands(engine.port(), &[], previous))
        .track(M::Complete)
        .record(StoreChange::DeleteService {
            name: engine.name().into(),
        })
}

/// Validate, generate or reuse the admin password, and run the installer for `engine`.
pub async fn install_database(
    engine: Engine,
    executor: &Executor,
    ctx: &RunContext,
    options: &DatabaseOptions,
) -> Result<serde_json::Value, PackageError> {
    let store = executor.store();
    let os = ctx.server.os.clone().ok_or_else(|| {
        ValidationError::new(
            "server",
            "the server is not provisioned yet: provision it first",
        )
    })?;
    if engine == Engine::MySql && os.starts_with("debian") {
        return Err(ValidationError::new(
            "mysql",
            format!("MySQL is not in {os}'s package archive. Install MariaDB instead: a drop-in replacement that Debian ships and maintains"),
        )
        .into());
    }
    let services = store.services(ctx.server.id).await?;
    if let Some(other) = engine.conflicts()
        // A record left by a failed attempt (e.g. MySQL refused on Debian) installed nothing: it does not count.
        && services.iter().any(|s| s.service_name == other.name() && s.status != ServiceStatus::Failed)
    {
        return Err(ValidationError::new(
            engine.name(),
            format!(
                "{} is installed on this server and excludes {}: remove it first",
                other.name(),
                engine.name()
            ),
        )
        .into());
    }
    let sources = parse_sources(&options.allowed_sources)?;
    let previous = previous_sources(
        services
            .iter()
            .find(|s| s.service_name == engine.name())
            .map(|s| &s.configuration),
    );
    let password = match store
        .service_secret(ctx.server.id, &engine.secret_name())
        .await?
    {
        Some(p) => p,
        None => {
            let p = generate_password()?;
            store
                .put_service_secret(ctx.server.id, &engine.secret_name(), &p)
                .await?;
            p
        }
    };
    let current = services
        .iter()
        .find(|s| s.service_name == engine.name())
        .map(|s| &s.configuration);
    let plan = install_plan(engine, &os, &sources, &previous, &password, current)?;
    executor
        .run(ctx, &plan, brokeforge_core::ProvisionType::Install)
        .await?;
    Ok(json!({"allowed_sources": sources}))
}

pub async fn remove_database(
    engine: Engine,
    executor: &Executor,
    ctx: &RunContext,
    options: &DatabaseRemoveOptions,
) -> Result<serde_json::Value, PackageError> {
    let store = executor.store();
    let services = store.services(ctx.server.id).await?;
    let previous = previous_sources(
        services
            .iter()
            .find(|s| s.service_name == engine.name())
            .map(|s| &s.configuration),
    );
    let password = store
        .service_secret(ctx.server.id, &engine.secret_name())
        .await?;
    let plan = remove_plan(engine, options, &previous, password.as_ref());
    executor
        .run(ctx, &plan, brokeforge_core::ProvisionType::Uninstall)
        .await?;
    if options.remove_data {
        store
            .delete_service_secret(ctx.server.id, &engine.secret_name())
            .await?;
    }
    Ok(json!({"dumped": options.dump_first, "data_removed": options.remove_data}))
}

macro_rules! database_packages {
    ($($engine:ident: $installer:ident, $installer_job:ident, $remover:ident, $remover_job:ident, $ikind:literal, $rkind:literal;)+) => {$(
        pub struct $installer;
        impl crate::base::Package for $installer {
            type Milestones = DatabaseInstallerMilestones;
            fn service_type(&self) -> ServiceType { ServiceType::Database }
            fn credential(&self) -> CredentialKind { CredentialKind::Root }
        }
        impl crate::base::PackageInstaller for $installer {}
        impl $installer {
            pub const ENGINE: Engine = Engine::$engine;
            pub async fn execute(&self, executor: &Executor, ctx: &RunContext, options: &DatabaseOptions) -> Result<serde_json::Value, PackageError> {
                install_database(Engine::$engine, executor, ctx, options).await
            }
        }
        pub struct $installer_job;
        impl $installer_job { pub const KIND: &'static str = $ikind; }
        impl crate::jobs::JobHandler for $installer_job {
            fn kind(&self) -> &'static str { Self::KIND }
            fn run<'a>(&'a self, ctx: &'a crate::jobs::JobContext<'a>) -> crate::jobs::BoxFuture<'a, Result<serde_json::Value, PackageError>> {
                Box::pin(async move {
                    let options: DatabaseOptions = serde_json::from_value(ctx.job.payload.get("options").cloned().unwrap_or(json!({})))
                        .map_err(|e| ValidationError::new("options", e.to_string()))?;
                    $installer.execute(ctx.executor, &ctx.run_context()?, &options).await
                })
            }
        }
        pub struct $remover;
        impl crate::base::Package for $remover {
            type Milestones = DatabaseRemoverMilestones;
            fn service_type(&self) -> ServiceType { ServiceType::Database }
            fn credential(&self) -> CredentialKind { CredentialKind::Root }
        }
        impl crate::base::PackageRemover for $remover {}
        impl $remover {
            pub async fn execute(&self, executor: &Executor, ctx: &RunContext, options: &DatabaseRemoveOptions) -> Result<serde_json::Value, PackageError> {
                remove_database(Engine::$engine, executor, ctx, options).await
            }
        }
        pub struct $remover_job;
        impl $remover_job { pub const KIND: &'static str = $rkind; }
        impl crate::jobs::JobHandler for $remover_job {
            fn kind(&self) -> &'static str { Self::KIND }
            fn run<'a>(&'a self, ctx: &'a crate::jobs::JobContext<'a>) -> crate::jobs::BoxFuture<'a, Result<serde_json::Value, PackageError>> {
                Box::pin(async move {
                    let options: DatabaseRemoveOptions = serde_json::from_value(ctx.job.payload.get("options").cloned().unwrap_or(json!({})))
                        .map_err(|e| ValidationError::new("options", e.to_string()))?;
                    $remover.execute(ctx.executor, &ctx.run_context()?, &options).await
                })
            }
        }
    )+};
}

database_packages! {
    MariaDb: MariaDbInstaller, MariaDbInstallerJob, MariaDbRemover, MariaDbRemoverJob, "mariadb_installer", "mariadb_remover";
    MySql: MySqlInstaller, MySqlInstallerJob, MySqlRemover, MySqlRemoverJob, "mysql_installer", "mysql_remover";
    PostgreSql: PostgreSqlInstaller, PostgreSqlInstallerJob, PostgreSqlRemover, PostgreSqlRemoverJob, "postgresql_installer", "postgresql_remover";
    Redis: RedisInstaller, RedisInstallerJob, RedisRemover, RedisRemoverJob, "redis_installer", "redis_remover";
}

/// Register every database job kind.
pub fn register(r: &mut crate::jobs::Registry) {
    r.register(MariaDbInstallerJob);
    r.register(MariaDbRemoverJob);
    r.register(MySqlInstallerJob);
    r.register(MySqlRemoverJob);
    r.register(PostgreSqlInstallerJob);
    r.register(PostgreSqlRemoverJob);
    r.register(RedisInstallerJob);
    r.register(RedisRemoverJob);
    super::schemas::register(r);
}

/// Job kinds of an engine's installer and remover.
pub fn job_kinds(engine: Engine) -> (&'static str, &'static str) {
    match engine {
        Engine::MariaDb => (MariaDbInstallerJob::KIND, MariaDbRemoverJob::KIND),
        Engine::MySql => (MySqlInstallerJob::KIND, MySqlRemoverJob::KIND),
        Engine::PostgreSql => (PostgreSqlInstallerJob::KIND, PostgreSqlRemoverJob::KIND),
        Engine::Redis => (RedisInstallerJob::KIND, RedisRemoverJob::KIND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_snapshot_and_never_show_the_password() {
        let pw = Secret::new("Sn4pshotPassw0rdSn4pshotPassw0rd");
        for engine in Engine::ALL {
            let os = if engine == Engine::MySql {
                "ubuntu 24.04"
            } else {
                "debian 12"
            };
            let closed = install_plan(engine, os, &[], &[], &pw, None)
                .unwrap()
                .to_string();
            assert!(!closed.contains(pw.expose()), "{closed}");
            insta::assert_snapshot!(format!("{}_install", engine.name()), closed);
            let opened = install_plan(
                engine,
                os,
                &["203.0.113.7".into()],
                &["198.51.100.1".into()],
                &pw,
                Some(&json!({"schemas": [{"name": "app"}]})),
            )
            .unwrap()
            .to_string();
            assert!(
                opened.contains("ufw allow from 203.0.113.7 to any port")
                    && opened.contains("ufw delete allow from 198.51.100.1")
            );
            let removed = remove_plan(
                engine,
                &DatabaseRemoveOptions {
                    dump_first: true,
                    remove_data: true,
                },
                &["203.0.113.7".into()],
                Some(&pw),
            )
            .to_string();
            assert!(!removed.contains(pw.expose()));
            insta::assert_snapshot!(format!("{}_remove", engine.name()), removed);
        }
    }
}
