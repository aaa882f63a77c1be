//! The real binary, driven as a user would.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn bin(data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"));
    c.env("BROKEFORGE_DATA_DIR", data)
        .env_remove("BROKEFORGE_DATABASE_URL")
        .env_remove("BROKEFORGE_MASTER_KEY");
    c
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("migrate") && text.contains("BROKEFORGE_DATA_DIR"),
        "{text}"
    );
    let bad = bin(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn catalogue_lists_every_package() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path())
        .args(["catalogue", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let entries: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "webserver",
            "mariadb",
            "mysql",
            "postgresql",
            "redis",
            "memcached",
            "nodejs",
            "monitoring"
        ]
    );
    assert_eq!(entries[0]["install_milestones"][0]["key"], "prepare_system");
    let text = bin(dir.path()).arg("catalogue").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("--set allowed_sources=<string>"));
}

#[test]
fn migrate_creates_the_database_and_a_private_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin(dir.path()).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("brokeforge.db").exists());
    let key = dir.path().join("master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Running again keeps the same key and succeeds.
    let before = std::fs::read_to_string(&key).unwrap();
    assert!(
        bin(dir.path())
            .arg("migrate")
            .output()
            .unwrap()
            .status
            .success()
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), before);

    // Another key for the same database is refused with advice.
    let out = bin(dir.path())
        .arg("migrate")
        .env("BROKEFORGE_MASTER_KEY", "11".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
    let out = bin(dir.path())
        .arg("migrate")
        .env("BROKEFORGE_MASTER_KEY", "nothex")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal"));
}

/// A configuration file sets what the environment does not (a key's last line counts); a foreign key in it is
/// refused clearly.
#[test]
fn config_file_sets_what_the_environment_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let conf = dir.path().join("bf.conf");
    std::fs::write(
        &conf,
        // A key's last line counts (an uncommented example below the default replaces it).
        format!(
            "# BrokeForge\nBROKEFORGE_DATA_DIR={}\nBROKEFORGE_DATA_DIR=\"{}\"\n",
            dir.path().join("first").display(),
            data.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["--config", conf.to_str().unwrap(), "migrate"])
        .env_remove("BROKEFORGE_DATA_DIR")
        .env_remove("BROKEFORGE_DATABASE_URL")
        .env_remove("BROKEFORGE_MASTER_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("brokeforge.db").exists());
    assert!(!dir.path().join("first").exists());
    std::fs::write(&conf, "PATH=/nope\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["--config", conf.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a BrokeForge setting"));
}

/// Root running a database command on the package's data directory (owned by the service user) is told to run
/// it as that user instead of leaving root-owned files the service cannot write.
#[test]
fn root_is_sent_to_the_data_directory_owner() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("not run: only root can own a directory on behalf of another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let out = bin(&data).arg("migrate").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("run this as that user (sudo -u"), "{err}");
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "it created files"
    );
}

/// `serve` answers /health; its address comes from the configuration file (options that default from the
/// environment see what the file sets).
#[test]
fn serve_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("bf.conf");
    std::fs::write(
        &conf,
        "BROKEFORGE_BIND=127.0.0.1:8080\nBROKEFORGE_BIND=127.0.0.1:0\n",
    )
    .unwrap();
    let mut child = bin(dir.path())
        .args(["--config", conf.to_str().unwrap(), "serve"])
        .env_remove("BROKEFORGE_BIND")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("://").next().unwrap().to_string();
    assert_ne!(
        addr, "127.0.0.1:8080",
        "the file's last BROKEFORGE_BIND was not used"
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    // SIGTERM shuts down gracefully.
    send_sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""database":"ok""#), "{resp}");
    assert!(status.success(), "{status:?}");
}

/// A minimal HTTP/1.1 request; returns status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: good enough for assertions on content.
    (status, body)
}

/// `brokeforge serve` on `bind` against the database at `url`; returns the child and its address.
/// The test networks here are loopback and the e2e hosts' own links: the script may travel over HTTP.
fn serve(
    url: &str,
    key: &brokeforge_store::MasterKey,
    data: &std::path::Path,
    bind: &str,
) -> (std::process::Child, String) {
    serve_with(
        url,
        key,
        data,
        bind,
        &[("BROKEFORGE_INSECURE_PROVISIONING", "1")],
    )
}

/// [`serve`] with these environment variables (and no others of BrokeForge's settings).
fn serve_with(
    url: &str,
    key: &brokeforge_store::MasterKey,
    data: &std::path::Path,
    bind: &str,
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let mut child = bin(data)
        .args(["serve", "--bind", bind])
        .env("BROKEFORGE_DATABASE_URL", url)
        .env("BROKEFORGE_MASTER_KEY", key.to_hex().as_str())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        // Kept for the test to show when something fails.
        .stderr(std::fs::File::create(data.join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("://").next().unwrap().to_string();
    (child, addr)
}

fn send_sigterm(pid: u32) {
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
}

mod crash {
    use std::time::Duration;

    use brokeforge_core::{CredentialKind, ProvisionType, ServiceStatus, ServiceType};
    use brokeforge_packages::Package;
    use brokeforge_packages::services::server::synthetic::SyntheticPlan;
    use brokeforge_ssh::testkit::test_hosts;
    use brokeforge_store::{JobStatus, JobTarget, LogStream, MasterKey, NewJob, NewServer, Store};

    fn worker(url: &str, key: &MasterKey, data: &std::path::Path) -> std::process::Child {
        super::bin(data)
            .args(["worker", "--lease-seconds", "2", "--grace-seconds", "1"])
            .env("BROKEFORGE_DATABASE_URL", url)
            .env("BROKEFORGE_MASTER_KEY", key.to_hex().as_str())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A worker killed mid-job: another worker resumes the job after the lease expires, the event log says so,
    /// and no record is left `installing`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_worker_s_job_is_resumed_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let mut urls = vec![format!(
            "sqlite://{}",
            dir.path().join("crash.db").display()
        )];
        if let Some(pg) = brokeforge_store::testing::postgres_schema_url().await {
            urls.push(pg);
        }
        let host = test_hosts().await.remove(0);
        for url in urls {
            let key = MasterKey::generate().unwrap();
            let store = Store::open(&url, &key).await.unwrap();
            let user = store
                .create_user("crash@example.com", "x", false)
                .await
                .unwrap();
            let server = store
                .create_server(&NewServer {
                    user_id: user.id,
                    name: "crash".into(),
                    public_ip: host.host.clone(),
                    ssh_port: host.port,
                    host_key_fingerprint: Some(host.fingerprint.clone()),
                })
                .await
                .unwrap();
            store
                .put_credential(server.id, CredentialKind::User, &host.public_key, &host.key)
                .await
                .unwrap();
            let job = store
                .enqueue(&NewJob {
                    target: Some(JobTarget::Service {
                        name: "crashy".into(),
                        service_type: ServiceType::Database,
                        provision_type: ProvisionType::Install,
                    }),
                    ..NewJob::new(
                        SyntheticPlan::JOB,
                        Some(server.id),
                        SyntheticPlan::payload(30, 150),
                    )
                })
                .await
                .unwrap();

            let mut first = worker(&url, &key, dir.path());
            let mut seen = 0;
            for _ in 0..300 {
                seen = store.events(server.id, 0).await.unwrap().len();
                if seen >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(seen >= 3, "{url}: the first worker never ran the job");
            assert_eq!(
                store.services(server.id).await.unwrap()[0].status,
                ServiceStatus::Installing
            );
            first.kill().unwrap(); // SIGKILL
            first.wait().unwrap();
            assert_eq!(store.job(job.id).await.unwrap().status, JobStatus::Running);

            let mut second = worker(&url, &key, dir.path());
            let mut done = store.job(job.id).await.unwrap();
            for _ in 0..600 {
                done = store.job(job.id).await.unwrap();
                if done.status.is_finished() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            super::send_sigterm(second.id());
            assert!(second.wait().unwrap().success());

            assert_eq!(done.status, JobStatus::Done, "{url}: {done:?}");
            assert_eq!(done.attempt, 2);
            let svc = &store.services(server.id).await.unwrap()[0];
            assert_eq!(svc.status, ServiceStatus::Active);
            let logs = store.logs(server.id, 0).await.unwrap();
            assert!(
                logs.iter().any(|l| l.stream == LogStream::System
                    && l.chunk.contains("resumed after a lost worker")),
                "{url}: no resume note in the log"
            );
            let events = store.events(server.id, 0).await.unwrap();
            assert!(
                events
                    .iter()
                    .all(|e| e.status != brokeforge_core::EventStatus::InProgress),
                "{url}: an event stayed in progress"
            );
            assert!(
                events
                    .iter()
                    .any(|e| e.error.as_deref() == Some("the worker running this step was lost"))
            );
            assert_eq!(events.last().unwrap().current_step, 30);
            store.close().await;
        }
    }
}

mod provisioning {
    use brokeforge_core::{EventStatus, ProvisionStatus};
    use brokeforge_packages::services::server::access::onboarding::{AddServer, add_server};
    use brokeforge_store::{MasterKey, Store};

    /// The script endpoint serves a token once, public keys only; callbacks need a fetched, unfinished token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_script_is_served_once_and_callbacks_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let key = MasterKey::generate().unwrap();
        let store = Store::open(&url, &key).await.unwrap();
        let user = store
            .create_user("p@example.com", "x", false)
            .await
            .unwrap();
        let added = add_server(
            &store,
            &AddServer {
                user_id: user.id,
                name: "web".into(),
                public_ip: "203.0.113.5".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            },
        )
        .await
        .unwrap();
        // Bad input stores nothing.
        for (ip, port) in [
            ("999.1.1.1", 22),
            ("a;b", 22),
            ("203.0.113.6", 0),
            ("203.0.113.6", 70000),
        ] {
            let bad = AddServer {
                user_id: user.id,
                name: "bad".into(),
                public_ip: ip.into(),
                ssh_port: port,
                host_key_fingerprint: None,
            };
            assert!(add_server(&store, &bad).await.is_err());
        }
        assert_eq!(store.servers_for_user(user.id).await.unwrap().len(), 1);

        let (mut child, addr) = super::serve(&url, &key, dir.path(), "127.0.0.1:0");
        let token = added.token.clone();
        let cb =
            |body: &str| super::http(&addr, "POST", &format!("/provision/{token}/callback"), body);
        // Not fetched yet: callbacks are refused.
        assert_eq!(
            cb(r#"{"step":"create_users","status":"in_progress"}"#).0,
            404
        );

        let (status, script) = super::http(&addr, "GET", &format!("/provision/{token}"), "");
        assert_eq!(status, 200, "{script}");
        for kind in [
            brokeforge_core::CredentialKind::Root,
            brokeforge_core::CredentialKind::User,
            brokeforge_core::CredentialKind::Worker,
        ] {
            let cred = store.credential(added.server.id, kind).await.unwrap();
            let b64 = cred
                .public_key
                .split_whitespace()
                .nth(1)
                .unwrap()
                .to_string();
            let private_body: String = cred
                .private_key
                .expose()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            assert!(
                !script.contains(&private_body[..40]),
                "a private key is in the script"
            );
            if kind == brokeforge_core::CredentialKind::Root {
                assert!(script.contains(&b64), "root's public key is missing");
            }
        }
        assert!(!script.contains("PRIVATE KEY"));
        assert!(script.contains(&format!("http://{addr}/provision/{token}/callback")));
        assert_eq!(
            store
                .server(added.server.id)
                .await
                .unwrap()
                .provision_status,
            ProvisionStatus::Installing
        );

        // Used up: a second fetch is refused.
        assert_eq!(
            super::http(&addr, "GET", &format!("/provision/{token}"), "").0,
            404
        );
        assert_eq!(
            super::http(&addr, "GET", "/provision/not-a-token", "").0,
            404
        );

        assert_eq!(
            cb(r#"{"step":"create_users","status":"in_progress"}"#).0,
            200
        );
        assert_eq!(
            cb(r#"{"step":"install_keys","status":"in_progress"}"#).0,
            200
        );
        assert_eq!(cb(r#"{"step":"rm -rf","status":"in_progress"}"#).0, 400);
        assert_eq!(cb("not json").0, 400);
        assert_eq!(cb(r#"{"step":"install_keys","status":"failed","message":"line 9: useradd exited with 1"}"#).0, 200);
        let events = store.events(added.server.id, 0).await.unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| (e.milestone.as_str(), e.status))
                .collect::<Vec<_>>(),
            [
                ("create_users", EventStatus::Completed),
                ("install_keys", EventStatus::Failed)
            ]
        );
        assert!(
            events[1]
                .error
                .as_deref()
                .unwrap()
                .contains("useradd exited with 1")
        );
        assert_eq!(
            store
                .server(added.server.id)
                .await
                .unwrap()
                .provision_status,
            ProvisionStatus::Failed
        );
        // Finished: nothing more is accepted.
        assert_eq!(cb(r#"{"step":"complete","status":"completed","host_keys":["(ED25519) SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]}"#).0, 404);

        // An expired token serves nothing.
        let expired = store
            .create_provision_token(added.server.id, std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            super::http(&addr, "GET", &format!("/provision/{expired}"), "").0,
            404
        );

        super::send_sigterm(child.id());
        child.wait().unwrap();
    }
}

#[path = "e2e/mod.rs"]
mod e2e;

#[path = "client/mod.rs"]
mod client;

#[path = "layout/mod.rs"]
mod layout;

#[path = "upgrade/mod.rs"]
mod upgrade;

#[path = "../../test-receiver.rs"]
mod receiver;
