//! Story: backups of MariaDB and PostgreSQL schemas to S3-compatible storage (moto), SFTP on a second host
//! and a directory on the server; restores bring dropped rows back, restores into a new schema leave the
//! original alone, a drill counts the rows, retention keeps what it says, an unreachable storage fails
//! loudly and keeps the old snapshots, and no secret shows in `ps` or a log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brokeforge_domain::Domain;
use brokeforge_domain::backups::{PlanRequest, StorageRequest};
use brokeforge_packages::services::backup::repository::Retention;
use brokeforge_store::{Job, JobStatus, Store};

use super::harness::*;

const S3_SECRET: &str = "e2e-s3-secret-Zq8Lm2Vx";

async fn finished(store: &Store, job: Job) -> Job {
    wait_job(store, job.id, Duration::from_secs(900)).await
}

async fn ok(store: &Store, job: Job, what: &str) -> Job {
    let job = finished(store, job).await;
    assert_eq!(job.status, JobStatus::Done, "{what}: {job:?}");
    job
}

async fn count(host: &DebianHost, engine: &str, schema: &str, table: &str) -> String {
    let cmd = match engine {
        "postgresql" => format!(
            "cd / && runuser -u postgres -- psql -At -d {schema} -c 'SELECT count(*) FROM {table}'"
        ),
        _ => format!("mysql -N -B -e 'SELECT COUNT(*) FROM {schema}.{table}'"),
    };
    let out = host.root(&cmd).await;
    format!("{}{}", out.stdout_text().trim(), out.stderr_text().trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn backups_restore_drill_and_fail_safely() {
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(17, "backups").await;
    let store = &panel.store;
    let domain = Domain::new(store.clone());
    let user = store.user(panel.user_id).await.unwrap();
    let server = store.server(id).await.unwrap();
    let (endpoint, bucket) = s3_start(17);
    let _s3 = S3(17);
    let sftp = DebianHost::start(18);

    for db in ["mariadb", "postgresql", "redis"] {
        install(store, id, db, &[]).await;
    }
    let seed = host
        .root(
            "set -e; mysql -e \"CREATE DATABASE shop; USE shop; CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(40)); \
             INSERT INTO orders SELECT seq, CONCAT('item', seq) FROM seq_1_to_500; \
             CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('a'), ('b');\"; \
             cd / && runuser -u postgres -- psql -q -c 'CREATE DATABASE shop' && \
             runuser -u postgres -- psql -q -d shop -c \"CREATE TABLE orders AS SELECT g AS id, 'item' || g AS item FROM generate_series(1, 300) g\"",
        )
        .await;
    assert!(seed.success(), "{}", seed.stderr_text());

    // Storages: S3 (moto), SFTP on a second host (its key authorized there), a directory on the server.
    let s3 = domain
        .add_backup_storage(
            &user,
            &serde_json::from_value::<StorageRequest>(serde_json::json!({
                "name": "moto", "kind": "s3", "endpoint": endpoint, "bucket": bucket,
                "region": "us-east-1", "path_style": true, "access_key_id": "e2ekey",
                "secret_access_key": S3_SECRET,
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(!s3.configuration.to_string().contains(S3_SECRET), "{s3:?}");
    let offsite = domain
        .add_backup_storage(
            &user,
            &serde_json::from_value::<StorageRequest>(serde_json::json!({
                "name": "offsite", "kind": "sftp", "host": sftp.ip, "user": "bfbackup",
                "path": "/home/bfbackup/repos", "host_key_fingerprint": sftp.fingerprint,
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let public_key = offsite.configuration["public_key"].as_str().unwrap();
    let authorize = sftp
        .root(&format!(
            "set -e; useradd -m -s /bin/bash bfbackup; install -d -m 700 -o bfbackup -g bfbackup /home/bfbackup/.ssh /home/bfbackup/repos; \
             echo '{public_key}' > /home/bfbackup/.ssh/authorized_keys; chown bfbackup:bfbackup /home/bfbackup/.ssh/authorized_keys; \
             chmod 600 /home/bfbackup/.ssh/authorized_keys"
        ))
        .await;
    assert!(authorize.success(), "{}", authorize.stderr_text());
    domain
        .add_backup_storage(
            &user,
            &serde_json::from_value::<StorageRequest>(serde_json::json!({
                "name": "disk", "kind": "local", "server_id": id, "path": "/var/backups/brokeforge",
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    // "Test connection" writes, reads back and deletes a small object in each; a bucket that is not there
    // fails with S3's answer.
    for storage in ["moto", "offsite", "disk"] {
        let job = domain
            .check_backup_storage(&user, &server, storage)
            .await
            .unwrap();
        ok(store, job, &format!("checking storage {storage}")).await;
    }
    domain
        .add_backup_storage(
            &user,
            &serde_json::from_value::<StorageRequest>(serde_json::json!({
                "name": "nobucket", "kind": "s3", "endpoint": endpoint, "bucket": "not-there",
                "region": "us-east-1", "path_style": true, "access_key_id": "e2ekey",
                "secret_access_key": S3_SECRET,
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let job = domain
        .check_backup_storage(&user, &server, "nobucket")
        .await
        .unwrap();
    let job = finished(store, job).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(
        job.error.as_deref().unwrap_or("").contains("404"),
        "{job:?}"
    );
    assert!(
        !job.error.as_deref().unwrap_or("").contains(S3_SECRET),
        "{job:?}"
    );

    let plan = |name: &str, database: &str, storage: &str, keep_last: u32| PlanRequest {
        name: name.into(),
        database: database.into(),
        site: String::new(),
        storage: storage.into(),
        schedule: None,
        verify_schedule: None,
        retention: Some(Retention {
            keep_last,
            ..Default::default()
        }),
    };
    let maria = domain
        .create_backup_plan(&user, &server, &plan("maria", "mariadb:shop", "moto", 2))
        .await
        .unwrap();
    domain
        .create_backup_plan(&user, &server, &plan("pg", "postgresql:shop", "offsite", 5))
        .await
        .unwrap();
    domain
        .create_backup_plan(&user, &server, &plan("local", "mariadb:shop", "disk", 3))
        .await
        .unwrap();
    let password = store.backup_plan_password(maria.id).await.unwrap();

    // A backup while something watches `ps` on the server: no secret is ever on a command line.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let watching = watching.clone();
        let root = login(store, id, brokeforge_core::CredentialKind::Root).await;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut polls = 0;
            while watching.load(Ordering::SeqCst) {
                seen.push(run(&root, "ps -eo args").await);
                polls += 1;
            }
            (seen, polls)
        })
    };
    let job = domain.run_backup_now(&server, "maria").await.unwrap();
    let job = ok(store, job, "backup to S3").await;
    watching.store(false, Ordering::SeqCst);
    let (seen, polls) = watcher.await.unwrap();
    assert!(polls >= 3, "ps was read only {polls} times");
    assert!(
        seen.iter().any(|ps| ps.contains("restic")),
        "the watcher never saw restic run: {polls} polls"
    );
    for ps in &seen {
        assert!(
            !ps.contains(password.expose()),
            "the repository password in ps:\n{ps}"
        );
        assert!(!ps.contains(S3_SECRET), "the S3 secret in ps:\n{ps}");
    }
    let logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(!logs.contains(password.expose()) && !logs.contains(S3_SECRET));
    let snaps = domain.backup_snapshots(&server, "maria").await.unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(snaps[0].size_bytes.unwrap_or(0) > 10_000, "{snaps:?}");
    assert_eq!(
        job.result.as_ref().unwrap()["snapshot_id"]
            .as_str()
            .unwrap(),
        &snaps[0].snapshot_id[..8]
    );

    // Download through BrokeForge's API: the dump streamed from the server.
    let token = "bf_e2e_download_token";
    store
        .create_api_token(
            panel.user_id,
            "e2e",
            &brokeforge_domain::accounts::sha256_hex(token),
            "bf_e2e",
        )
        .await
        .unwrap();
    let (status, body) = http_request(
        &panel.addr,
        "GET",
        &panel.addr,
        &format!(
            "/api/v1/servers/{id}/backups/maria/snapshots/{}/download",
            &snaps[0].snapshot_id[..8]
        ),
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("INSERT INTO `orders`") && body.contains("'item500'"),
        "{}",
        &body[..body.len().min(500)]
    );

    // A dropped table comes back; overwriting needs the schema's name as confirmation.
    assert!(
        host.root("mysql -e 'DROP TABLE shop.orders'")
            .await
            .success()
    );
    let refused = domain
        .restore_backup(&server, "maria", &snaps[0].snapshot_id[..8], None, None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("confirm"), "{refused}");
    let job = domain
        .restore_backup(
            &server,
            "maria",
            &snaps[0].snapshot_id[..8],
            None,
            Some("shop"),
        )
        .await
        .unwrap();
    ok(store, job, "restore over shop").await;
    assert_eq!(count(&host, "mariadb", "shop", "orders").await, "500");

    // Into a new schema: the original keeps its own newer rows.
    assert!(
        host.root("mysql -e \"INSERT INTO shop.orders VALUES (501, 'new')\"")
            .await
            .success()
    );
    let job = domain
        .restore_backup(
            &server,
            "maria",
            &snaps[0].snapshot_id,
            Some("shop_copy"),
            None,
        )
        .await
        .unwrap();
    ok(store, job, "restore into shop_copy").await;
    assert_eq!(count(&host, "mariadb", "shop_copy", "orders").await, "500");
    assert_eq!(count(&host, "mariadb", "shop", "orders").await, "501");
    // A new schema that exists already is refused by the job, and nothing is overwritten.
    let job = domain
        .restore_backup(
            &server,
            "maria",
            &snaps[0].snapshot_id,
            Some("shop_copy"),
            None,
        )
        .await
        .unwrap();
    let job = finished(store, job).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(
        job.error.as_deref().unwrap_or("").contains("exists"),
        "{job:?}"
    );

    // A restore drill counts the rows of the newest snapshot and leaves no scratch schema.
    let job = domain.verify_backup_now(&server, "maria").await.unwrap();
    ok(store, job, "restore drill").await;
    let drilled = domain.backup_plan(&server, "maria").await.unwrap();
    let drill = drilled.last_verify.expect("the drill is recorded");
    assert_eq!(drill["ok"], true, "{drill}");
    let tables = drill["tables"].as_array().unwrap();
    assert!(
        tables
            .iter()
            .any(|t| t["table"] == "orders" && t["rows"] == 500),
        "{drill}"
    );
    assert!(
        tables
            .iter()
            .any(|t| t["table"] == "notes" && t["rows"] == 2),
        "{drill}"
    );
    let left = host
        .root("mysql -N -B -e \"SHOW DATABASES LIKE 'bf_verify%'\"")
        .await
        .stdout_text();
    assert!(left.trim().is_empty(), "scratch schema left: {left}");

    // Retention: three runs, keep the last two.
    for _ in 0..2 {
        let job = domain.run_backup_now(&server, "maria").await.unwrap();
        ok(store, job, "another backup").await;
    }
    let snaps = domain.backup_snapshots(&server, "maria").await.unwrap();
    assert_eq!(snaps.len(), 2, "{snaps:?}");

    // The S3 storage out of reach: the run fails with the reason and both snapshots stay.
    assert!(
        host.root("iptables -I OUTPUT -d 10.231.17.1 -p tcp --dport 9000 -j REJECT")
            .await
            .success()
    );
    let job = domain.run_backup_now(&server, "maria").await.unwrap();
    let job = finished(store, job).await;
    assert!(
        host.root("iptables -D OUTPUT -d 10.231.17.1 -p tcp --dport 9000 -j REJECT")
            .await
            .success()
    );
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.clone().unwrap_or_default();
    assert!(
        error.contains("cannot open or create the repository")
            && error.contains("connection refused"),
        "{error}"
    );
    assert_eq!(
        domain.backup_snapshots(&server, "maria").await.unwrap(),
        snaps
    );

    // PostgreSQL over SFTP: the host key is checked against the fingerprint given and pinned; a dropped table
    // comes back; a drill counts its rows.
    let job = domain.run_backup_now(&server, "pg").await.unwrap();
    ok(store, job, "backup over SFTP").await;
    let pinned = store.backup_storage(offsite.id).await.unwrap();
    assert!(
        pinned.configuration["known_hosts"]
            .as_str()
            .is_some_and(|k| k.contains("ssh-ed25519")),
        "{pinned:?}"
    );
    let pg_snaps = domain.backup_snapshots(&server, "pg").await.unwrap();
    assert_eq!(pg_snaps.len(), 1);
    let on_sftp = sftp.root("ls /home/bfbackup/repos").await.stdout_text();
    assert!(
        on_sftp.contains(&format!("brokeforge-{id}-pg")),
        "{on_sftp}"
    );
    assert!(
        host.root("cd / && runuser -u postgres -- psql -q -d shop -c 'DROP TABLE orders'")
            .await
            .success()
    );
    let job = domain
        .restore_backup(&server, "pg", &pg_snaps[0].snapshot_id, None, Some("shop"))
        .await
        .unwrap();
    ok(store, job, "restore PostgreSQL over SFTP").await;
    assert_eq!(count(&host, "postgresql", "shop", "orders").await, "300");
    let job = domain.verify_backup_now(&server, "pg").await.unwrap();
    ok(store, job, "PostgreSQL drill").await;
    let drill = domain
        .backup_plan(&server, "pg")
        .await
        .unwrap()
        .last_verify
        .unwrap();
    assert!(
        drill["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "orders" && t["rows"] == 300),
        "{drill}"
    );

    // The SFTP server gone: a clear failure, the snapshot stays.
    // (The command's own session may go with sshd; what counts is that the port refuses afterwards.)
    let _ = sftp.root("systemctl stop ssh.service").await;
    let mut refused = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect((sftp.ip.as_str(), 22))
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "sshd on the SFTP host did not stop");
    let job = domain.run_backup_now(&server, "pg").await.unwrap();
    let job = finished(store, job).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(
        job.error
            .as_deref()
            .unwrap_or("")
            .contains("cannot open or create the repository"),
        "{job:?}"
    );
    assert_eq!(
        domain.backup_snapshots(&server, "pg").await.unwrap(),
        pg_snaps
    );

    // A directory on the server itself.
    let job = domain.run_backup_now(&server, "local").await.unwrap();
    ok(store, job, "backup to a local directory").await;
    let listed = host
        .root(&format!("ls /var/backups/brokeforge/brokeforge-{id}-local"))
        .await
        .stdout_text();
    assert!(listed.contains("snapshots"), "{listed}");

    // Redis's data: an RDB snapshot streamed from a replica sync; a restore replaces the data set (Redis
    // stopped and started around it), a drill counts the keys of the file without touching the live one.
    let redis_password = store
        .service_secret(id, "redis_admin_password")
        .await
        .unwrap()
        .unwrap();
    let root = login(store, id, brokeforge_core::CredentialKind::Root).await;
    let redis = |cmd: &'static str| {
        let root = &root;
        let pw = redis_password.expose().to_string();
        async move {
            with_stdin(
                root,
                &format!("IFS= read -r REDISCLI_AUTH; export REDISCLI_AUTH; redis-cli {cmd}"),
                &format!("{pw}\n"),
            )
            .await
            .stdout_text()
        }
    };
    assert_eq!(redis("mset a 1 b 2 c 3").await.trim(), "OK");
    domain
        .create_backup_plan(
            &user,
            &server,
            &PlanRequest {
                name: "cache".into(),
                database: "redis".into(),
                site: String::new(),
                storage: "disk".into(),
                schedule: None,
                verify_schedule: None,
                retention: None,
            },
        )
        .await
        .unwrap();
    let job = domain.run_backup_now(&server, "cache").await.unwrap();
    ok(store, job, "Redis backup").await;
    assert_eq!(redis("flushall").await.trim(), "OK");
    assert_eq!(redis("dbsize").await.trim(), "0");
    let snap = domain.backup_snapshots(&server, "cache").await.unwrap()[0]
        .snapshot_id
        .clone();
    let refused = domain
        .restore_backup(&server, "cache", &snap, Some("other"), None)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("one data set"), "{refused}");
    let job = domain
        .restore_backup(&server, "cache", &snap, None, Some("redis"))
        .await
        .unwrap();
    ok(store, job, "Redis restore").await;
    assert_eq!(redis("mget a b c").await, "1\n2\n3\n");
    let job = domain.verify_backup_now(&server, "cache").await.unwrap();
    ok(store, job, "Redis drill").await;
    let drill = domain
        .backup_plan(&server, "cache")
        .await
        .unwrap()
        .last_verify
        .unwrap();
    assert!(
        drill["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "keys" && t["rows"] == 3),
        "{drill}"
    );
    let logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(!logs.contains(redis_password.expose()));

    // The recovery kit restores without BrokeForge: restic with the kit's repository and password.
    let kit = domain.backup_recovery_kit(&server, "local").await.unwrap();
    let kit_password = kit
        .lines()
        .find_map(|l| l.strip_prefix("Repository password: "))
        .unwrap()
        .to_string();
    let by_hand = with_stdin(
        &login(store, id, brokeforge_core::CredentialKind::Root).await,
        &format!(
            "IFS= read -r RESTIC_PASSWORD; export RESTIC_PASSWORD; restic -r /var/backups/brokeforge/brokeforge-{id}-local dump latest /shop.sql | grep -c 'INSERT INTO `orders`'"
        ),
        &format!("{kit_password}\n"),
    )
    .await;
    assert!(by_hand.success(), "{}", by_hand.stderr_text());
}
