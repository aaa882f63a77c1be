//! Upgrades that lose nothing: each release leaves a fixture panel in `tests/fixtures/upgrade/VERSION/` (a SQLite
//! file, a PostgreSQL dump and the master key that sealed them), made by [`populate`] through the domain layer
//! as a user would fill a panel. Every fixture is upgraded by this binary on both backends, then every object
//! is read back through the domain layer and every secret is opened. A new release adds its fixture with
//! `scripts/make-upgrade-fixture.sh VERSION`.

mod selfbackup;

use std::path::{Path, PathBuf};

use brokeforge_core::{CredentialKind, ProvisionStatus, Secret, ServiceStatus, ServiceType};
use brokeforge_domain::Domain;
use brokeforge_packages::services::sites::config::{ReleaseInfo, RepositoryConfig, SiteConfig};
use brokeforge_store::{
    LogStream, MasterKey, NewEvent, NewJob, NewSite, SeenSnapshot, SiteCommandRecord, Store,
    StoreError, User,
};
use serde_json::json;

const OWNER: &str = "owner@fixture.test";
const TOKEN: &str = "bf_fixture_token_0123456789abcdef";
const DB_PASSWORD: &str = "fixture-db-password !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
const S3_SECRET: &str = "fixture-s3-secret";
const PANEL_SECRET: &[u8] = b"fixture-panel-secret";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

/// A panel as a user leaves it: an account and a token, a provisioned server with its three keys, a database
/// service with its password, a site with repository, releases and tasks, a deployment, a site command, jobs
/// with events and output, a backup storage and plan with snapshots, a panel secret.
async fn populate(store: &Store) {
    let domain = Domain::new(store.clone());
    let user = domain
        .create_user(&brokeforge_domain::accounts::NewUser {
            email: OWNER.into(),
            password: "a fixture password of some length".into(),
            admin: true,
        })
        .await
        .unwrap();
    store
        .create_api_token(
            user.id,
            "fixture",
            &brokeforge_domain::accounts::sha256_hex(TOKEN),
            "bf_fixtur",
        )
        .await
        .unwrap();
    let added = domain
        .add_server(
            &user,
            "https://panel.fixture.test",
            &brokeforge_domain::servers::NewServer {
                name: "web-1".into(),
                public_ip: "203.0.113.10".into(),
                ssh_port: Some(22),
                host_key_fingerprint: Some(
                    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU".into(),
                ),
                root_key: None,
                trust_on_first_use: false,
                team: None,
            },
        )
        .await
        .unwrap();
    let server = added.server;
    store
        .set_provision_status(server.id, ProvisionStatus::Provisioned)
        .await
        .unwrap();
    store
        .upsert_service(
            server.id,
            "mariadb",
            ServiceType::Database,
            &json!({"version": "10.11"}),
            ServiceStatus::Active,
        )
        .await
        .unwrap();
    store
        .put_service_secret(
            server.id,
            "mariadb_admin_password",
            &Secret::new(DB_PASSWORD),
        )
        .await
        .unwrap();
    store
        .set_panel_secret("fixture_panel_secret", PANEL_SECRET)
        .await
        .unwrap();

    let config = SiteConfig {
        aliases: vec!["www.shop.fixture.test".into()],
        repository: Some(RepositoryConfig {
            url: "git@git.fixture.test:acme/shop.git".into(),
            branch: "main".into(),
            transport: "ssh".into(),
            host: "git.fixture.test".into(),
            port: 22,
            deploy_key_public: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture deploy".into()),
            host_key_fingerprints: vec!["SHA256:fixturegithostkey".into()],
            known_hosts: "git.fixture.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture\n".into(),
        }),
        current_release: Some("20261101120000".into()),
        releases: vec![ReleaseInfo {
            name: "20261101120000".into(),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            deployment_id: None,
            deployed_at: 1_793_534_400_000,
        }],
        ..SiteConfig::default()
    };
    let site = store
        .create_site(&NewSite {
            server_id: server.id,
            domain: "shop.fixture.test".into(),
            document_root: "public".into(),
            php_version: Some("8.2".into()),
            status: ServiceStatus::Active,
            configuration: serde_json::to_value(&config).unwrap(),
        })
        .await
        .unwrap();
    let (_, deploy_job) = store
        .queue_deployment(
            &site,
            "deploy",
            Some("main"),
            None,
            "fixture",
            NewJob::new("site_deploy", Some(server.id), json!({"site_id": site.id})),
        )
        .await
        .unwrap();
    store
        .record_site_command(&SiteCommandRecord {
            id: 0,
            site_id: site.id,
            command: "php artisan migrate --force".into(),
            output: "Nothing to migrate.\n".into(),
            error_output: String::new(),
            exit_code: Some(0),
            ran_at: 1_793_534_500_000,
            duration_ms: 812,
            success: true,
            timed_out: false,
        })
        .await
        .unwrap();
    let event = store
        .start_event(&NewEvent {
            server_id: server.id,
            job_id: Some(deploy_job.id),
            attempt: None,
            service_type: ServiceType::Site,
            provision_type: brokeforge_core::ProvisionType::Install,
            milestone: "clone".into(),
            label: "Cloning the repository".into(),
            current_step: 1,
            total_steps: 4,
            details: json!({}),
        })
        .await
        .unwrap();
    store
        .append_log(
            server.id,
            Some(deploy_job.id),
            Some(event.id),
            LogStream::Stdout,
            "Cloning into 'releases/20261101120000'...\n",
        )
        .await
        .unwrap();
    store
        .finish_event(event.id, brokeforge_core::EventStatus::Completed, None)
        .await
        .unwrap();

    let storage = domain
        .add_backup_storage(
            &user,
            &serde_json::from_value(json!({
                "name": "offsite",
                "kind": "s3",
                "endpoint": "https://s3.fixture.test",
                "bucket": "backups",
                "region": "eu-west-1",
                "path_style": true,
                "access_key_id": "AKIAFIXTURE",
                "secret_access_key": S3_SECRET,
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let plan = domain
        .create_backup_plan(
            &user,
            &server,
            &serde_json::from_value(json!({
                "name": "shop-db",
                "database": "mariadb:shop",
                "storage": storage.name,
                "schedule": "0 3 * * *",
                "verify_schedule": "0 5 * * 0",
                "retention": {"keep_last": 3, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    store
        .sync_backup_snapshots(
            plan.id,
            &[SeenSnapshot {
                snapshot_id: "1a2b3c4d5e6f".into(),
                taken_at: 1_793_545_200_000,
                job_id: None,
                size_bytes: Some(1_048_576),
                duration_ms: Some(4_200),
            }],
        )
        .await
        .unwrap();
}

/// Everything [`populate`] wrote, read back through the domain layer, every secret opened; then a rotation,
/// which opens every sealed value there is (a kind of secret this check forgot still has to open).
async fn check(store: &Store, url: &str, what: &str) {
    let domain = Domain::new(store.clone());
    let user: User = domain.token_user(TOKEN).await.unwrap();
    assert_eq!(user.email, OWNER, "{what}");
    assert!(user.is_admin, "{what}");
    let servers = domain
        .servers_page(&user, 0, 100, &Default::default())
        .await
        .unwrap();
    assert_eq!(servers.len(), 1, "{what}");
    assert_eq!(servers[0].1.len(), 1, "{what}: its services");
    let server = domain
        .owned_server(
            &user,
            servers[0].0.id,
            brokeforge_domain::policy::Action::Read,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            server.name.as_str(),
            server.public_ip.as_str(),
            server.ssh_port
        ),
        ("web-1", "203.0.113.10", 22),
        "{what}"
    );
    assert_eq!(server.provision_status, ProvisionStatus::Provisioned);
    for kind in [
        CredentialKind::Root,
        CredentialKind::User,
        CredentialKind::Worker,
    ] {
        let cred = store.credential(server.id, kind).await.unwrap();
        brokeforge_ssh::keys::parse_private(&cred.private_key)
            .unwrap_or_else(|e| panic!("{what}: the {kind} key does not open as a key: {e}"));
    }
    let services = domain.services(&server).await.unwrap();
    assert_eq!(services.len(), 1, "{what}");
    assert_eq!(services[0].service_name, "mariadb");
    assert_eq!(services[0].configuration["version"], "10.11");
    assert_eq!(
        store
            .service_secret(server.id, "mariadb_admin_password")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        DB_PASSWORD,
        "{what}"
    );
    assert_eq!(
        store
            .panel_secret("fixture_panel_secret")
            .await
            .unwrap()
            .unwrap()
            .as_slice(),
        PANEL_SECRET
    );

    let sites = domain.sites(&server).await.unwrap();
    assert_eq!(sites.len(), 1, "{what}");
    let site = &sites[0];
    assert_eq!(site.domain, "shop.fixture.test");
    let config: SiteConfig = serde_json::from_value(site.configuration.clone())
        .unwrap_or_else(|e| panic!("{what}: the site's configuration no longer reads: {e}"));
    assert_eq!(config.current_release.as_deref(), Some("20261101120000"));
    assert_eq!(
        config.repository.as_ref().map(|r| r.url.as_str()),
        Some("git@git.fixture.test:acme/shop.git")
    );
    let deployments = domain.deployments(site, None, 10).await.unwrap();
    assert_eq!(deployments.len(), 1, "{what}");
    let commands = domain.site_commands(site, None, 10).await.unwrap();
    assert_eq!(commands[0].output, "Nothing to migrate.\n", "{what}");
    let jobs = domain.jobs_page(&server, None, 50).await.unwrap();
    assert!(
        jobs.iter().any(|j| j.kind == "site_deploy"),
        "{what}: {jobs:?}"
    );
    let events = domain.events_page(&server, 0, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.milestone == "clone"),
        "{what}: {events:?}"
    );
    let logs = store.logs(server.id, 0).await.unwrap();
    assert!(
        logs.iter().any(|l| l.chunk.contains("Cloning into")),
        "{what}"
    );

    let storages = domain.backup_storages(&user).await.unwrap();
    assert_eq!(storages.len(), 1, "{what}");
    assert_eq!(
        store
            .backup_storage_secret(storages[0].id)
            .await
            .unwrap()
            .unwrap()
            .expose(),
        S3_SECRET
    );
    let plans = domain.backup_plans(&server).await.unwrap();
    assert_eq!(plans.len(), 1, "{what}");
    assert_eq!(plans[0].storage, "offsite");
    let view = domain.backup_plan_view(&server, "shop-db").await.unwrap();
    assert_eq!(view.plan.schedule.as_deref(), Some("0 3 * * *"));
    assert!(
        !store
            .backup_plan_password(view.plan.id)
            .await
            .unwrap()
            .expose()
            .is_empty()
    );
    let kit = domain
        .backup_recovery_kit(&server, "shop-db")
        .await
        .unwrap();
    assert!(
        kit.contains("s3:https://s3.fixture.test/backups"),
        "{what}: {kit}"
    );
    let snapshots = domain.backup_snapshots(&server, "shop-db").await.unwrap();
    assert_eq!(snapshots[0].snapshot_id, "1a2b3c4d5e6f", "{what}");

    let new = MasterKey::generate().unwrap();
    let n = store.rotate_master_key(&new).await.unwrap();
    assert!(n >= 7, "{what}: {n} sealed values");
    store.close().await;
    let reopened = Store::open(url, &new).await.unwrap();
    assert_eq!(
        reopened
            .service_secret(server.id, "mariadb_admin_password")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        DB_PASSWORD
    );
    reopened.close().await;
}

fn fixture_key(dir: &Path) -> MasterKey {
    MasterKey::from_hex(&std::fs::read_to_string(dir.join("master.key")).unwrap()).unwrap()
}

/// The fixture databases of earlier releases.
fn releases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Each release's SQLite file, copied, opened (migrated) by this build and read back whole.
#[tokio::test]
async fn sqlite_databases_of_earlier_releases_upgrade_whole() {
    let releases = releases();
    assert!(
        !releases.is_empty(),
        "no fixtures in {}",
        fixtures().display()
    );
    for dir in releases {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("brokeforge.db");
        std::fs::copy(dir.join("brokeforge.db"), &db).unwrap();
        let url = format!("sqlite://{}", db.display());
        let store = Store::open(&url, &fixture_key(&dir)).await.unwrap();
        check(&store, &url, &format!("sqlite from {}", dir.display())).await;
    }
}

/// Each release's PostgreSQL dump, loaded into a fresh schema, opened (migrated) by this build and read back.
#[tokio::test]
async fn postgres_databases_of_earlier_releases_upgrade_whole() {
    if brokeforge_store::testing::postgres_schema_url()
        .await
        .is_none()
    {
        eprintln!("not run: set BROKEFORGE_TEST_POSTGRES_URL (scripts/test-postgres.sh)");
        return;
    }
    for dir in releases() {
        let url = brokeforge_store::testing::postgres_schema_url()
            .await
            .unwrap();
        let pool = brokeforge_store::connect_raw(&url).await.unwrap();
        let dump = std::fs::read_to_string(dir.join("postgres.sql")).unwrap();
        brokeforge_store::raw_execute(&pool, &dump).await.unwrap();
        pool.close().await;
        let store = Store::open(&url, &fixture_key(&dir)).await.unwrap();
        check(&store, &url, &format!("postgres from {}", dir.display())).await;
    }
}

/// The fixture maker works on this build (so the next release can make its fixture), and writes one when
/// `BROKEFORGE_WRITE_UPGRADE_FIXTURE=DIR` is set (`scripts/make-upgrade-fixture.sh`).
#[tokio::test]
async fn this_release_can_make_its_upgrade_fixture() {
    let out = std::env::var_os("BROKEFORGE_WRITE_UPGRADE_FIXTURE").map(PathBuf::from);
    let key = MasterKey::generate().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("made.db").display());
    let store = Store::open(&url, &key).await.unwrap();
    populate(&store).await;
    if let Some(out) = &out {
        std::fs::create_dir_all(out).unwrap();
        let db = out.join("brokeforge.db");
        assert!(!db.exists(), "{} exists", db.display());
        store.vacuum_into(db.to_str().unwrap()).await.unwrap();
        std::fs::write(out.join("master.key"), key.to_hex().as_bytes()).unwrap();
    }
    check(&store, &url, "made now (sqlite)").await;

    let Some(pg) = brokeforge_store::testing::postgres_schema_url().await else {
        eprintln!("PostgreSQL part not run: set BROKEFORGE_TEST_POSTGRES_URL");
        assert!(out.is_none(), "a fixture needs both backends");
        return;
    };
    let store = Store::open(&pg, &key).await.unwrap();
    populate(&store).await;
    if let Some(out) = &out {
        std::fs::write(out.join("postgres.sql"), pg_dump(&pg)).unwrap();
    }
    check(&store, &pg, "made now (postgres)").await;
    // A wrong key is refused on the made database, as on any other.
    let other = MasterKey::generate().unwrap();
    assert!(matches!(
        Store::open(&url, &other).await.err(),
        Some(StoreError::WrongMasterKey)
    ));
}

/// `pg_dump` of the test schema in `url`, as plain INSERTs without the schema's name, so it loads into any
/// schema with `search_path` set.
fn pg_dump(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let schema = query
        .rsplit("search_path%3D")
        .next()
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let out = std::process::Command::new("pg_dump")
        .args([
            "--no-owner",
            "--no-privileges",
            "--inserts",
            "--schema",
            &schema,
        ])
        .arg(base)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| {
            // Comments name the schema; meta-commands are for psql.
            !l.starts_with("--")
                && !l.starts_with("CREATE SCHEMA ")
                && !l.starts_with("SELECT pg_catalog.set_config('search_path'")
                && !l.starts_with("\\")
        })
        .map(|l| l.replace(&format!("{schema}."), ""))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
