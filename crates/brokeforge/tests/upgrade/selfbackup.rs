//! `backup-self` / `restore-self` on PostgreSQL: `pg_dump -Fc` sealed with the master key, `pg_restore` into an
//! empty database (each test gets two fresh databases, dropped at the end).

use std::io::Write;
use std::process::{Command, Stdio};

use brokeforge_core::{CredentialKind, Secret};
use brokeforge_store::{MasterKey, NewServer, Store};

fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(args)
        .env_remove("BROKEFORGE_DATA_DIR")
        .env_remove("BROKEFORGE_DATABASE_URL")
        .env_remove("BROKEFORGE_MASTER_KEY")
        .envs(env.iter().copied())
        .env("BROKEFORGE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A panel on PostgreSQL backed up while open, sealed; restored into another, empty database with the key
/// from the copy: the server and its sealed key come back. A non-empty target and a SQLite target are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_self_and_restore_self_on_postgres() {
    let Some(base) = std::env::var("BROKEFORGE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        brokeforge_store::testing::backend_missing("BROKEFORGE_TEST_POSTGRES_URL");
        eprintln!("not run: set BROKEFORGE_TEST_POSTGRES_URL (scripts/test-postgres.sh)");
        return;
    };
    let admin = brokeforge_store::connect_raw(&base).await.unwrap();
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).unwrap();
    let tag = format!(
        "bf_selfbk_{}_{}",
        brokeforge_core::time::now_ms() / 1000,
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let (src, dst) = (format!("{tag}_a"), format!("{tag}_b"));
    for db in [&src, &dst] {
        brokeforge_store::raw_execute(&admin, &format!("CREATE DATABASE {db}"))
            .await
            .expect("CREATE DATABASE (scripts/test-postgres.sh grants CREATEDB to the test role)");
    }
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let src_url = format!("{prefix}/{src}");
    let dst_url = format!("{prefix}/{dst}");

    let key = MasterKey::generate().unwrap();
    let key_hex = key.to_hex().to_string();
    let store = Store::open(&src_url, &key).await.unwrap();
    let user = store
        .create_user("pg@example.com", "x", true)
        .await
        .unwrap();
    let server = store
        .create_server(&NewServer {
            user_id: user.id,
            name: "on-postgres".into(),
            public_ip: "203.0.113.41".into(),
            ssh_port: 22,
            host_key_fingerprint: None,
        })
        .await
        .unwrap();
    store
        .put_credential(
            server.id,
            CredentialKind::Root,
            "ssh-ed25519 AAAA",
            &Secret::new("root-private-on-postgres"),
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg.bfbackup");
    let file_s = file.to_str().unwrap();
    // The copy is taken while the store above holds connections open.
    let (ok, out) = run(
        &["backup-self", "--to", file_s, "--passphrase-stdin"],
        &[
            ("BROKEFORGE_DATABASE_URL", &src_url),
            ("BROKEFORGE_MASTER_KEY", &key_hex),
        ],
        "a passphrase for postgres\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("PostgreSQL"), "{out}");
    let sealed = std::fs::read(&file).unwrap();
    assert!(!sealed.windows(5).any(|w| w == b"PGDMP"), "not sealed");

    // A SQLite data directory cannot take a PostgreSQL copy.
    let sqlite_dir = dir.path().join("sqlite");
    let sqlite_s = sqlite_dir.to_str().unwrap();
    let (ok, out) = run(
        &["restore-self", "--from", file_s, "--passphrase-stdin"],
        &[("BROKEFORGE_DATA_DIR", sqlite_s)],
        "a passphrase for postgres\n",
    );
    assert!(!ok && out.contains("not of a SQLite database"), "{out}");
    assert!(!sqlite_dir.join("master.key").exists());
    assert!(!sqlite_dir.join("brokeforge.db").exists());

    let data = dir.path().join("node");
    let data_s = data.to_str().unwrap();
    let target = [
        ("BROKEFORGE_DATABASE_URL", dst_url.as_str()),
        ("BROKEFORGE_DATA_DIR", data_s),
    ];
    let (ok, out) = run(
        &["restore-self", "--from", file_s, "--passphrase-stdin"],
        &target,
        "a passphrase for postgres\n",
    );
    assert!(ok, "{out}");
    let restored_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_eq!(restored_key.trim(), key_hex);
    let restored = Store::open(&dst_url, &MasterKey::from_hex(restored_key.trim()).unwrap())
        .await
        .unwrap();
    let servers = restored.servers_for_user(user.id).await.unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "on-postgres");
    assert_eq!(
        restored
            .credential(server.id, CredentialKind::Root)
            .await
            .unwrap()
            .private_key
            .expose(),
        "root-private-on-postgres"
    );
    restored.close().await;

    // Again into the now full database: refused, nothing changed.
    std::fs::remove_file(data.join("master.key")).unwrap();
    let (ok, out) = run(
        &["restore-self", "--from", file_s, "--passphrase-stdin"],
        &target,
        "a passphrase for postgres\n",
    );
    assert!(!ok && out.contains("is not empty"), "{out}");
    assert!(!data.join("master.key").exists());

    store.close().await;
    for db in [&src, &dst] {
        brokeforge_store::raw_execute(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
    admin.close().await;
}

/// `admin self-backup enable` takes only what can work (an S3 or pinned SFTP storage of the owner, a real
/// schedule, a passphrase of 12+ characters on stdin) and changes nothing otherwise; a failing run says so in
/// `status` and leaves no copy behind; `disable` turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_backup_schedule_is_set_up_with_checks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = format!("sqlite://{}", data.join("brokeforge.db").display());
    let key = MasterKey::generate().unwrap();
    let key_hex = key.to_hex().to_string();
    let store = Store::open(&url, &key).await.unwrap();
    let user = store
        .create_user("ops@example.com", "x", true)
        .await
        .unwrap();
    for (name, config) in [
        (
            "s3",
            // Nothing listens there: the run must fail and say so.
            serde_json::json!({"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "b", "path_style": true, "access_key_id": "AK"}),
        ),
        (
            "disk",
            serde_json::json!({"kind": "local", "server_id": 1, "path": "/backups"}),
        ),
        (
            "unpinned",
            serde_json::json!({"kind": "sftp", "host": "backup.example.com", "port": 22, "user": "u", "path": "/b", "public_key": "ssh-ed25519 AAAA"}),
        ),
    ] {
        store
            .create_backup_storage(&brokeforge_store::NewBackupStorage {
                user_id: user.id,
                name: name.into(),
                kind: config["kind"].as_str().unwrap().into(),
                configuration: config,
                secret: Some(Secret::new("storage-secret")),
            })
            .await
            .unwrap();
    }
    let data_s = data.to_str().unwrap();
    let env = [
        ("BROKEFORGE_DATA_DIR", data_s),
        ("BROKEFORGE_MASTER_KEY", key_hex.as_str()),
    ];
    let enable = |storage: &str, schedule: &str, pass: &str| {
        run(
            &[
                "admin",
                "self-backup",
                "enable",
                "--owner",
                "ops@example.com",
                "--storage",
                storage,
                "--schedule",
                schedule,
                "--passphrase-stdin",
            ],
            &env,
            pass,
        )
    };
    for (storage, schedule, pass, says) in [
        (
            "disk",
            "30 2 * * *",
            "long enough passphrase\n",
            "S3-compatible or SFTP",
        ),
        (
            "unpinned",
            "30 2 * * *",
            "long enough passphrase\n",
            "not pinned",
        ),
        ("s3", "30 2 * * *", "short\n", "at least 12"),
        ("s3", "tomorrow", "long enough passphrase\n", "--schedule"),
        (
            "nope",
            "30 2 * * *",
            "long enough passphrase\n",
            "no backup storage",
        ),
    ] {
        let (ok, out) = enable(storage, schedule, pass);
        assert!(!ok && out.contains(says), "{storage} {schedule}: {out}");
        assert_eq!(store.self_backup().await.unwrap(), None, "{out}");
    }
    let (ok, out) = enable("s3", "30 2 * * *", "long enough passphrase\n");
    assert!(ok, "{out}");
    assert!(
        out.contains("s3:http://127.0.0.1:9/b/brokeforge-self"),
        "{out}"
    );
    assert_eq!(
        store.self_backup_passphrase().await.unwrap().expose(),
        "long enough passphrase"
    );
    let (ok, out) = run(&["admin", "self-backup", "run"], &env, "");
    assert!(!ok, "{out}");
    let (ok, out) = run(&["admin", "self-backup", "status"], &env, "");
    assert!(ok && out.contains("FAILED"), "{out}");
    assert!(out.contains("30 2 * * * (UTC), keep 14"), "{out}");
    assert!(!data.join("self-backup/copy/brokeforge.bfbackup").exists());
    // The run is in the audit log.
    let audited = store
        .audit_page(&brokeforge_store::AuditFilter {
            action: Some("self-backup".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].actor, "administrator (command line)");
    assert_eq!(audited[0].status, 500);
    let (ok, out) = run(&["admin", "self-backup", "disable"], &env, "");
    assert!(ok, "{out}");
    assert_eq!(store.self_backup().await.unwrap(), None);
    store.close().await;
}
