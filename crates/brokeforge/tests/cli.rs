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

#[test]
fn serve_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
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
    use brokeforge_packages::jobs::SyntheticPlanJob;
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
                        SyntheticPlanJob::KIND,
                        Some(server.id),
                        SyntheticPlanJob::payload(30, 150),
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
