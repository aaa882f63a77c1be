//! Story: databases install bound to localhost, open to listed sources, and remove independently.

use std::time::Duration;

use brokeforge_core::{CredentialKind, Secret};
use brokeforge_packages::Package;
use brokeforge_packages::services::database::sql::{Privileges, UserRequest};
use brokeforge_packages::services::database::user::create_user;
use brokeforge_ssh::ExecRequest;
use brokeforge_store::{JobStatus, NewJob};

use super::harness::*;

/// MariaDB, PostgreSQL and Redis on one host: bound to loopback, Redis refuses without its password,
/// MySQL is refused on Debian before touching the server, installers converge, and removing one leaves the
/// others working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn databases_install_bound_to_localhost_and_remove_independently() {
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(14, "db").await;
    let store = &panel.store;

    // MySQL is not in Debian: a clear error before anything is queued, nothing installed.
    let refused = brokeforge_packages::catalogue::install(store, id, "mysql", &Default::default())
        .await
        .expect_err("MySQL was queued on Debian");
    assert!(
        refused
            .to_string()
            .contains("MySQL is not in debian 12's package archive"),
        "{refused}"
    );
    assert!(
        store
            .jobs_for_server(id)
            .await
            .unwrap()
            .iter()
            .all(|j| !j.kind.starts_with("mysql")),
        "a MySQL job was queued"
    );
    assert!(host.root("dpkg -s mysql-server").await.exit_code != Some(0));

    for db in ["mariadb", "postgresql", "redis"] {
        install(store, id, db, &[]).await;
    }
    let listening = host.root("ss -Hltn | awk '{print $4}'").await.stdout_text();
    for port in [":3306", ":5432", ":6379"] {
        let on: Vec<&str> = listening.lines().filter(|l| l.ends_with(port)).collect();
        assert!(!on.is_empty(), "nothing on {port}: {listening}");
        assert!(
            on.iter()
                .all(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:")),
            "{port} not on loopback: {on:?}"
        );
    }
    let refused = host.root("redis-cli ping").await.stdout_text();
    assert!(refused.contains("NOAUTH"), "{refused}");
    let password = store
        .service_secret(id, "redis_admin_password")
        .await
        .unwrap()
        .unwrap();
    let root = login(store, id, CredentialKind::Root).await;
    let auth = ExecRequest {
        stdin: Some(
            format!("AUTH {}\nPING\n", password.expose())
                .into_bytes()
                .leak(),
        ),
        ..ExecRequest::new("redis-cli", Duration::from_secs(20))
    };
    assert!(
        root.exec(auth)
            .await
            .unwrap()
            .stdout_text()
            .contains("PONG")
    );
    assert_eq!(run(&root, "mysql -N -e 'SELECT 1'").await.trim(), "1");
    assert_eq!(
        run(&root, "cd / && runuser -u postgres -- psql -tAc 'SELECT 1'")
            .await
            .trim(),
        "1"
    );

    database_drift_and_repair(&host, store, id).await;

    // Converges; the generated password is kept.
    install(store, id, "redis", &[]).await;
    assert_eq!(
        store
            .service_secret(id, "redis_admin_password")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        password.expose()
    );

    // Schemas and users, with a password full of special characters.
    let password = Secret::new(r#"p'a"s\s$w;o rd"#);
    for engine in ["mariadb", "postgresql"] {
        let req = brokeforge_packages::services::database::sql::SchemaRequest {
            engine: engine.into(),
            name: "app".into(),
            charset: "utf8mb4".into(),
            collation: "utf8mb4_unicode_ci".into(),
        };
        let job = store
            .enqueue(&NewJob::new(
                brokeforge_packages::services::database::schema::DatabaseSchemaInstaller::JOB,
                Some(id),
                serde_json::to_value(serde_json::json!({"engine": req.engine, "name": req.name}))
                    .unwrap(),
            ))
            .await
            .unwrap();
        let job = wait_job(store, job.id, Duration::from_secs(120)).await;
        assert_eq!(job.status, JobStatus::Done, "{engine} schema: {job:?}");
        for (user, privileges) in [
            ("app_rw", Privileges::ReadWrite),
            ("app_ro", Privileges::ReadOnly),
        ] {
            let req = UserRequest {
                engine: engine.into(),
                name: user.into(),
                schemas: vec!["app".into()],
                privileges,
            };
            let job = create_user(store, id, &req, &password).await.unwrap();
            let job = wait_job(store, job.id, Duration::from_secs(120)).await;
            assert_eq!(job.status, JobStatus::Done, "{engine} user {user}: {job:?}");
        }
    }
    let mariadb = |user: &str, sql: &str| {
        format!("read -r MYSQL_PWD; export MYSQL_PWD; mysql -N -u {user} app -e \"{sql}\"")
    };
    let psql = |user: &str, sql: &str| {
        format!(
            "read -r PGPASSWORD; export PGPASSWORD; psql -h 127.0.0.1 -U {user} -d app -v ON_ERROR_STOP=1 -tAc \"{sql}\""
        )
    };
    for cmd in [
        mariadb(
            "app_rw",
            "CREATE TABLE t (id INT); INSERT INTO t VALUES (1); SELECT COUNT(*) FROM t",
        ),
        psql(
            "app_rw",
            "CREATE TABLE t (id int); INSERT INTO t VALUES (1); SELECT count(*) FROM t",
        ),
    ] {
        let out = with_stdin(&root, &cmd, &format!("{}\n", password.expose())).await;
        assert!(out.success(), "{cmd}: {}", out.stderr_text());
        assert_eq!(out.stdout_text().trim().lines().last(), Some("1"), "{cmd}");
    }
    for cmd in [
        mariadb("app_ro", "SELECT COUNT(*) FROM t"),
        psql("app_ro", "SELECT 1"),
    ] {
        let out = with_stdin(&root, &cmd, &format!("{}\n", password.expose())).await;
        assert!(
            out.success(),
            "read-only login failed: {cmd}: {}",
            out.stderr_text()
        );
    }
    for cmd in [
        mariadb("app_ro", "INSERT INTO t VALUES (2)"),
        psql("app_ro", "CREATE TABLE u (id int)"),
    ] {
        let out = with_stdin(&root, &cmd, &format!("{}\n", password.expose())).await;
        assert!(!out.success(), "a read-only user could write: {cmd}");
    }
    let logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(
        !logs.contains(password.expose()),
        "a password reached the logs"
    );

    // Open PostgreSQL to this machine only: exactly that rule appears; closing it removes it again, and the
    // installers converge without losing the schemas and users.
    let me = format!("{}/32", host.gateway);
    install(
        store,
        id,
        "postgresql",
        &[("allowed_sources", &host.gateway)],
    )
    .await;
    let ufw = run(&root, "ufw status").await;
    let rules: Vec<&str> = ufw.lines().filter(|l| l.starts_with("5432")).collect();
    assert_eq!(rules.len(), 1, "{ufw}");
    assert!(rules[0].contains(&host.gateway), "{ufw}");
    assert!(
        tokio::net::TcpStream::connect((host.ip.as_str(), 5432))
            .await
            .is_ok(),
        "opened PostgreSQL is not reachable"
    );
    // From the opened network only over TLS: a plain connection finds no pg_hba entry, a TLS one signs in.
    let remote = |sslmode: &str| {
        std::process::Command::new("psql")
            .env("PGPASSWORD", password.expose())
            .env("PGCONNECT_TIMEOUT", "10")
            .arg(format!(
                "host={} port=5432 user=app_rw dbname=app sslmode={sslmode}",
                host.ip
            ))
            .args(["-tAc", "SELECT 1"])
            .output()
            .expect("psql on the test machine")
    };
    let plain = remote("disable");
    assert!(
        !plain.status.success() && String::from_utf8_lossy(&plain.stderr).contains("no encryption"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let tls = remote("require");
    assert!(
        tls.status.success(),
        "{}",
        String::from_utf8_lossy(&tls.stderr)
    );
    // BrokeForge's own role administers without being a superuser.
    assert_eq!(
        run(&root, "cd / && runuser -u postgres -- psql -tAc \"SELECT rolsuper FROM pg_roles WHERE rolname = 'brokeforge'\"")
            .await
            .trim(),
        "f"
    );
    let pg = store
        .services(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.service_name == "postgresql")
        .unwrap();
    assert_eq!(pg.configuration["allowed_sources"], serde_json::json!([me]));
    assert_eq!(
        pg.configuration["users"].as_array().map(|u| u.len()),
        Some(2),
        "{:?}",
        pg.configuration
    );
    install(store, id, "postgresql", &[]).await;
    install(store, id, "mariadb", &[]).await;
    assert!(!run(&root, "ufw status").await.contains("5432"));
    let on: String = host
        .root("ss -Hltn | awk '{print $4}' | grep ':5432$'")
        .await
        .stdout_text();
    assert!(
        on.lines()
            .all(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:")),
        "{on}"
    );
    let out = with_stdin(
        &root,
        &psql("app_rw", "SELECT count(*) FROM t"),
        &format!("{}\n", password.expose()),
    )
    .await;
    assert_eq!(out.stdout_text().trim(), "1", "{}", out.stderr_text());

    wordpress_site(&host, store, id).await;

    // Remove Redis with a dump first: the others keep working.
    let settings = [("dump_first".to_string(), "true".to_string())]
        .into_iter()
        .collect();
    let job = brokeforge_packages::catalogue::remove(store, id, "redis", &settings)
        .await
        .unwrap();
    assert_eq!(
        wait_job(store, job.id, Duration::from_secs(600))
            .await
            .status,
        JobStatus::Done
    );
    assert!(
        run(&root, "ls /root/brokeforge-backups")
            .await
            .contains("redis-")
    );
    assert!(
        host.root("systemctl is-active redis-server")
            .await
            .exit_code
            != Some(0)
    );
    assert_eq!(run(&root, "mysql -N -e 'SELECT 1'").await.trim(), "1");
    assert_eq!(
        run(&root, "cd / && runuser -u postgres -- psql -tAc 'SELECT 1'")
            .await
            .trim(),
        "1"
    );
    let names: Vec<String> = store
        .services(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.service_name)
        .collect();
    assert!(
        names.contains(&"mariadb".to_string()) && !names.contains(&"redis".to_string()),
        "{names:?}"
    );
    let wipe = [("remove_data".to_string(), "true".to_string())]
        .into_iter()
        .collect();
    for db in ["mariadb", "postgresql"] {
        let job = brokeforge_packages::catalogue::remove(store, id, db, &wipe)
            .await
            .unwrap();
        assert_eq!(
            wait_job(store, job.id, Duration::from_secs(600))
                .await
                .status,
            JobStatus::Done,
            "{db}"
        );
    }
    let left = host
        .root("ss -Hltn | awk '{print $4}' | grep -E ':(3306|5432|6379)$' || true")
        .await
        .stdout_text();
    assert!(left.trim().is_empty(), "still listening: {left}");
    assert!(
        host.root("test -e /var/lib/mysql || test -e /var/lib/postgresql")
            .await
            .exit_code
            == Some(1)
    );
    root.close().await;
}

/// A WordPress site (`--type wordpress`) on the MariaDB above: its database and user exist, its install page
/// answers through nginx and PHP-FPM, and neither the database password nor wp-config.php is in any log.
async fn wordpress_site(host: &DebianHost, store: &brokeforge_store::Store, id: i64) {
    use brokeforge_packages::services::sites::site::{SiteRequest, create_site};
    install(store, id, "webserver", &[]).await;
    let (site, job) = create_site(
        store,
        id,
        &SiteRequest {
            domain: "wp.test".into(),
            kind: Some("wordpress".into()),
            // Sites from before isolation (the shared app user) keep working.
            isolated: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(job.kind, "wordpress_installer");
    wait_ok(store, &job, "wordpress").await;
    let db = format!("wp_{}", site.id);
    let found = host
        .root(&format!(
            "mysql -N -e \"SELECT schema_name FROM information_schema.schemata WHERE schema_name = '{db}'; SELECT user FROM mysql.user WHERE user = '{db}'\""
        ))
        .await
        .stdout_text();
    assert_eq!(found, format!("{db}\n{db}\n"), "the database and its user");
    let (status, body) = http_request(
        &host.ip,
        "GET",
        "wp.test",
        "/wp-admin/install.php",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("WordPress") && body.contains("language"),
        "not the install page: {body}"
    );
    let (_, body) = http_request(&host.ip, "GET", "wp.test", "/wp-config.php", &[], b"").await;
    assert!(
        !body.contains("DB_PASSWORD"),
        "wp-config.php is served as text: {body}"
    );
    let perms = host
        .root("stat -c '%a %U' /home/brokeforge/wp.test/shared/wp-config.php")
        .await
        .stdout_text();
    assert_eq!(perms, "640 brokeforge\n");
    let password = store
        .service_secret(id, &format!("mariadb_user_{db}"))
        .await
        .unwrap()
        .expect("the database password is sealed in the store");
    let logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(
        !logs.contains(password.expose()),
        "the database password is in a log"
    );
    assert!(!logs.contains("AUTH_KEY"), "wp-config.php is in a log");
}

/// MariaDB's settings file is a drift item as rendered; changed by hand it is reported with a diff, and
/// repair installs MariaDB again with its settings, which puts the file back (still bound to loopback).
/// Redis stopped and disabled by hand is reported, and repair installs it again, which starts it.
async fn database_drift_and_repair(host: &DebianHost, store: &brokeforge_store::Store, id: i64) {
    use brokeforge_packages::services::server::drift::{DriftItem, DriftState, Repair};
    let domain = brokeforge_domain::Domain::new(store.clone());
    let server = store.server(id).await.unwrap();
    let check = async |name: &str| -> DriftItem { drift_item(&domain, store, &server, name).await };
    let repair = async || {
        let plan = domain.repair_drift(&server, true).await.unwrap();
        assert!(!plan.steps.is_empty(), "{plan:?}");
        for step in &plan.steps {
            let job = wait_job(store, step.job_id.unwrap(), Duration::from_secs(300)).await;
            assert_eq!(
                job.status,
                JobStatus::Done,
                "repair {}: {job:?}",
                step.title
            );
        }
    };

    let cnf = "/etc/mysql/mariadb.conf.d/60-brokeforge.cnf";
    let file = format!("file:{cnf}");
    assert_eq!(check(&file).await.state, DriftState::Ok);
    let hand = host
        .root(&format!(
            "sed -i 's/^max_connections = .*/max_connections = 50/' {cnf} && grep -c '= 50' {cnf}"
        ))
        .await;
    assert_eq!(hand.stdout_text(), "1\n", "{}", hand.stderr_text());
    let drifted = check(&file).await;
    assert_eq!(drifted.state, DriftState::Changed, "{drifted:?}");
    assert!(
        drifted
            .diff
            .as_deref()
            .unwrap_or_default()
            .contains("+max_connections = 50"),
        "{drifted:?}"
    );
    assert!(
        matches!(&drifted.repair, Some(Repair::Service { name, .. }) if name == "mariadb"),
        "{drifted:?}"
    );
    repair().await;
    assert_eq!(check(&file).await.state, DriftState::Ok);
    let listening = host.root("ss -Hltn | awk '{print $4}'").await.stdout_text();
    assert!(
        listening
            .lines()
            .filter(|l| l.ends_with(":3306"))
            .all(|a| a.starts_with("127.0.0.1:") || a.starts_with("[::1]:")),
        "{listening}"
    );

    // PostgreSQL's settings files are items as rendered; Redis's holds its password: compared by checksum,
    // an edit reported without a diff (the password never leaves the host).
    for f in [
        "file:/etc/postgresql/15/main/conf.d/brokeforge.conf",
        "file:/etc/postgresql/15/main/pg_hba.conf",
    ] {
        let it = check(f).await;
        assert_eq!(it.state, DriftState::Ok, "{it:?}");
    }
    let conf = "file:/etc/redis/redis.conf";
    assert_eq!(check(conf).await.state, DriftState::Ok);
    let unit = "unit:redis-server";
    assert_eq!(check(unit).await.state, DriftState::Ok);
    host.root(
        "echo 'maxclients 5' >> /etc/redis/redis.conf && systemctl disable --now redis-server",
    )
    .await;
    let edited = check(conf).await;
    assert_eq!(edited.state, DriftState::Changed, "{edited:?}");
    assert!(
        edited.diff.is_none() && edited.detail.contains("holds a secret"),
        "{edited:?}"
    );
    let password = store
        .service_secret(id, "redis_admin_password")
        .await
        .unwrap()
        .unwrap();
    let report = domain.drift_report(&server).await.unwrap().unwrap();
    assert!(
        !serde_json::to_string(&report)
            .unwrap()
            .contains(password.expose()),
        "the Redis password is in the drift report"
    );
    let stopped = check(unit).await;
    assert_eq!(stopped.state, DriftState::Changed, "{stopped:?}");
    assert!(
        matches!(&stopped.repair, Some(Repair::Service { name, .. }) if name == "redis"),
        "{stopped:?}"
    );
    repair().await;
    assert_eq!(check(unit).await.state, DriftState::Ok);
    assert_eq!(check(conf).await.state, DriftState::Ok);
    assert_eq!(
        host.root("systemctl is-enabled redis-server")
            .await
            .stdout_text(),
        "enabled\n"
    );
}
