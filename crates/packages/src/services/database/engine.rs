//! What the database engines share: one install plan (install, configure bound to localhost, admin password
//! over stdin, firewall exactly as asked) and one remove plan, driven by the engine table below. Each engine's
//! folder adds its configuration files ([`EngineSpec::configure`]) and registers
//! `DatabaseInstaller<ItsSpec>` and `DatabaseRemover<ItsSpec>` (`MariaDbInstaller`, `RedisRemover`, ...).

use std::marker::PhantomData;

use brokeforge_core::{CredentialKind, Secret, ServiceStatus, ServiceType, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::shared::{firewall_commands, generate_password, mysql_string, parse_sources, pg_string};
use crate::base::config::{Configuration, service_config};
use crate::base::executor::RunReport;
use crate::base::package::{Gather, Package, PackageInstaller, PackageRemover};
use crate::base::registry::{Entry, Parameter, Registry};
use crate::base::{PackageError, Plan, RunStep, StoreChange};
use crate::milestones;
use crate::services::server::provision::APT;

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

    /// Whether the engine has schemas and users (the SQL engines; Redis has neither).
    pub fn has_schemas(self) -> bool {
        self != Engine::Redis
    }

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
    pub fn unit(self) -> &'static str {
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
    pub fn postgres_version(os: &str) -> Option<&'static str> {
        match os {
            "debian 12" => Some("15"),
            "debian 13" => Some("17"),
            "ubuntu 22.04" => Some("14"),
            "ubuntu 24.04" => Some("16"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseOptions {
    /// Comma-separated addresses/networks allowed to connect; empty: localhost only.
    pub allowed_sources: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseRemoveOptions {
    /// Dump everything to /root/brokeforge-backups first.
    pub dump_first: bool,
    /// Delete data and configuration directories too.
    pub remove_data: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Privileges {
    All,
    ReadWrite,
    ReadOnly,
}

/// A schema BrokeForge created on an engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchemaEntry {
    pub name: String,
    #[serde(default)]
    pub charset: String,
    #[serde(default)]
    pub collation: String,
}

/// A user BrokeForge created on an engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserEntry {
    pub name: String,
    #[serde(default)]
    pub privileges: Option<Privileges>,
    #[serde(default)]
    pub schemas: Vec<String>,
}

/// What a database engine's service record holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatabaseConfig {
    pub port: Option<u16>,
    /// Networks allowed in besides localhost (CIDR).
    pub allowed_sources: Vec<String>,
    /// `localhost` or `all`.
    pub bound_to: Option<String>,
    pub schemas: Vec<SchemaEntry>,
    pub users: Vec<UserEntry>,
}

impl Configuration for DatabaseConfig {
    const WHAT: &'static str = "database configuration";
}

impl DatabaseConfig {
    /// The engine's stored configuration (empty when it has no record).
    pub async fn current(
        store: &brokeforge_store::Store,
        server_id: i64,
        engine: Engine,
    ) -> Result<DatabaseConfig, PackageError> {
        service_config(store, server_id, engine.name()).await
    }
}

/// An engine's own part: its configuration files, what excludes it, and its job kinds. Implemented by each
/// engine's folder.
pub trait EngineSpec: Send + Sync + 'static {
    const ENGINE: Engine;
    const INSTALLER_JOB: &'static str;
    const REMOVER_JOB: &'static str;
    /// Write the engine's configuration (bound to localhost unless `input.sources` opens it).
    fn configure(plan: Plan, input: &EngineInput) -> Result<Plan, PackageError>;
    /// Why the engine cannot be installed on `os`; `None` when it can.
    fn unavailable(_os: &str) -> Option<String> {
        None
    }
}

/// What an engine's install plan needs, gathered and validated.
#[derive(Debug, Clone)]
pub struct EngineInput {
    pub os: String,
    /// Networks allowed in besides localhost.
    pub sources: Vec<String>,
    /// What was allowed before (their firewall rules are deleted).
    pub previous: Vec<String>,
    pub password: Secret,
    pub config: DatabaseConfig,
}

/// What an engine's remove plan needs.
#[derive(Debug, Clone)]
pub struct EngineRemoval {
    pub options: DatabaseRemoveOptions,
    pub previous: Vec<String>,
    pub password: Option<Secret>,
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
                 ALTER ROLE brokeforge WITH LOGIN NOSUPERUSER CREATEDB CREATEROLE PASSWORD {};\n",
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

/// The installer of engine `E` (`MariaDbInstaller` = `DatabaseInstaller<MariaDb>`).
pub struct DatabaseInstaller<E>(PhantomData<fn() -> E>);
/// The remover of engine `E`.
pub struct DatabaseRemover<E>(PhantomData<fn() -> E>);

impl<E> Default for DatabaseInstaller<E> {
    fn default() -> Self {
        DatabaseInstaller(PhantomData)
    }
}
impl<E> Default for DatabaseRemover<E> {
    fn default() -> Self {
        DatabaseRemover(PhantomData)
    }
}

impl<E: EngineSpec> Package for DatabaseInstaller<E> {
    type Milestones = DatabaseInstallerMilestones;
    type Request = DatabaseOptions;
    type Input = EngineInput;
    const JOB: &'static str = E::INSTALLER_JOB;

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        options: &DatabaseOptions,
    ) -> Result<EngineInput, PackageError> {
        let engine = E::ENGINE;
        let os = cx.os()?;
        if let Some(reason) = E::unavailable(os) {
            return Err(ValidationError::new(engine.name(), reason).into());
        }
        let services = cx.store.services(cx.server.id).await?;
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
        let config = DatabaseConfig::current(cx.store, cx.server.id, engine).await?;
        let password = cx
            .secret_or_generate(&engine.secret_name(), generate_password)
            .await?;
        Ok(EngineInput {
            os: os.to_string(),
            sources,
            previous: config.allowed_sources.clone(),
            password,
            config,
        })
    }

    fn commands(&self, input: &EngineInput) -> Result<Plan, PackageError> {
        install_plan::<E>(input)
    }

    async fn finish(
        &self,
        _cx: &Gather<'_>,
        input: EngineInput,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        Ok(json!({"allowed_sources": input.sources}))
    }
}

impl<E: EngineSpec> PackageInstaller for DatabaseInstaller<E> {}

impl<E: EngineSpec> Package for DatabaseRemover<E> {
    type Milestones = DatabaseRemoverMilestones;
    type Request = DatabaseRemoveOptions;
    type Input = EngineRemoval;
    const JOB: &'static str = E::REMOVER_JOB;

    fn service_type(&self) -> ServiceType {
        ServiceType::Database
    }
    fn credential(&self) -> CredentialKind {
        CredentialKind::Root
    }

    async fn gather(
        &self,
        cx: &Gather<'_>,
        options: &DatabaseRemoveOptions,
    ) -> Result<EngineRemoval, PackageError> {
        let engine = E::ENGINE;
        let config = DatabaseConfig::current(cx.store, cx.server.id, engine).await?;
        Ok(EngineRemoval {
            options: options.clone(),
            previous: config.allowed_sources,
            password: cx
                .store
                .service_secret(cx.server.id, &engine.secret_name())
                .await?,
        })
    }

    fn commands(&self, input: &EngineRemoval) -> Result<Plan, PackageError> {
        Ok(remove_plan(
            E::ENGINE,
            &input.options,
            &input.previous,
            input.password.as_ref(),
        ))
    }

    async fn finish(
        &self,
        cx: &Gather<'_>,
        input: EngineRemoval,
        _report: RunReport,
    ) -> Result<serde_json::Value, PackageError> {
        if input.options.remove_data {
            cx.store
                .delete_service_secret(cx.server.id, &E::ENGINE.secret_name())
                .await?;
        }
        Ok(json!({"dumped": input.options.dump_first, "data_removed": input.options.remove_data}))
    }
}

impl<E: EngineSpec> PackageRemover for DatabaseRemover<E> {}

/// Register engine `E`'s installer, remover and catalogue entry.
pub fn register<E: EngineSpec>(r: &mut Registry, description: &'static str) {
    let installer = r.installer(DatabaseInstaller::<E>::default());
    let remover = r.remover(DatabaseRemover::<E>::default());
    r.catalogue(
        Entry::new(
            E::ENGINE.name(),
            ServiceType::Database,
            description,
            installer,
        )
        .repaired_by_reinstall()
        .parameters(vec![Parameter::new(
            "allowed_sources",
            "string",
            "comma-separated addresses or networks allowed to connect; empty keeps it on localhost",
            json!(""),
        )])
        .remover(
            remover,
            vec![
                Parameter::new(
                    "dump_first",
                    "boolean",
                    "dump all data to /root/brokeforge-backups before removing",
                    json!(false),
                ),
                Parameter::new(
                    "remove_data",
                    "boolean",
                    "delete the data and configuration directories",
                    json!(false),
                ),
            ],
        )
        .unavailable(E::unavailable),
    );
}

/// The install plan for engine `E`, with exactly `input.sources` allowed in (besides localhost).
pub fn install_plan<E: EngineSpec>(input: &EngineInput) -> Result<Plan, PackageError> {
    use DatabaseInstallerMilestones as M;
    let engine = E::ENGINE;
    let opened = !input.sources.is_empty();
    let password = &input.password;
    let plan = Plan::new::<M>(ServiceType::Database, CredentialKind::Root)
        .secret(password.clone())
        .track(M::PrepareSystem)
        .run_with_timeout(
            format!("{APT} update -qq"),
            std::time::Duration::from_secs(900),
        )
        .track(M::InstallSoftware)
        .run_with_timeout(
            {
                // A package's configuration step starts the service; on a busy machine that start can time
                // out once. Configure it again before giving up, and say why when it still fails.
                let install = format!(
                    "{APT} install -y -qq --no-install-recommends {}",
                    engine.packages().join(" ")
                );
                format!(
                    "{install} || {{ echo 'configuring the packages failed; trying once more' >&2; sleep 5; \
                     dpkg --configure -a && {install}; }} || \
                     {{ journalctl -n 30 --no-pager -u {unit} -u '{unit}@*' >&2; exit 1; }}",
                    unit = engine.unit()
                )
            },
            std::time::Duration::from_secs(1800),
        )
        .track(M::Configure);
    let unit = engine.unit();
    let mut plan = E::configure(plan, input)?
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
        plan = plan.put_file(crate::base::FileStep::new(
            "/root/.brokeforge-mysql.cnf",
            crate::base::FileContents::Secret(Secret::new(cnf)),
            0o600,
        ));
    }
    let opened_to = if opened { "all" } else { "localhost" };
    Ok(plan
        .track(M::ConfigureFirewall)
        .run(firewall_commands(
            engine.port(),
            &input.sources,
            &input.previous,
        ))
        .track(M::Complete)
        .record(StoreChange::UpsertService {
            name: engine.name().into(),
            service_type: ServiceType::Database,
            // Keep what else the record holds (schemas, users).
            configuration: DatabaseConfig {
                port: Some(engine.port()),
                allowed_sources: input.sources.clone(),
                bound_to: Some(opened_to.into()),
                ..input.config.clone()
            }
            .to_value(),
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

/// The plans of engine `E` as a user reads them, for each engine's snapshot test: installed closed, then
/// removed with a dump. Asserts the password never shows and an opened install opens exactly what it should.
#[cfg(test)]
pub fn snapshot_plans<E: EngineSpec>(os: &str) -> (String, String) {
    let pw = Secret::new("Sn4pshotPassw0rdSn4pshotPassw0rd");
    let input = |sources: Vec<String>, previous: Vec<String>, config| EngineInput {
        os: os.into(),
        sources,
        previous,
        password: pw.clone(),
        config,
    };
    let closed = install_plan::<E>(&input(vec![], vec![], DatabaseConfig::default()))
        .unwrap()
        .to_string();
    assert!(!closed.contains(pw.expose()), "{closed}");
    let with_schema = DatabaseConfig {
        schemas: vec![SchemaEntry {
            name: "app".into(),
            charset: String::new(),
            collation: String::new(),
        }],
        ..Default::default()
    };
    let opened = install_plan::<E>(&input(
        vec!["203.0.113.7/32".into()],
        vec!["198.51.100.1/32".into()],
        with_schema,
    ))
    .unwrap()
    .to_string();
    assert!(
        opened.contains("ufw allow from 203.0.113.7/32 to any port")
            && opened.contains("ufw delete allow from 198.51.100.1/32"),
        "{opened}"
    );
    let removed = remove_plan(
        E::ENGINE,
        &DatabaseRemoveOptions {
            dump_first: true,
            remove_data: true,
        },
        &["203.0.113.7/32".into()],
        Some(&pw),
    )
    .to_string();
    assert!(!removed.contains(pw.expose()));
    (closed, removed)
}
