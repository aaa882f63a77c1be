//! The store suite: every test runs on SQLite and, when `BROKEFORGE_TEST_POSTGRES_URL` is set, on PostgreSQL.

use brokeforge_core::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionStatus, ProvisionType, Secret,
    ServiceStatus, ServiceType,
};
use brokeforge_store::testing::stores;
use brokeforge_store::*;
use serde_json::json;

async fn user_and_server(store: &Store, email: &str) -> (User, Server) {
    let user = store.create_user(email, "hash", false).await.unwrap();
    let server = store
        .create_server(&NewServer {
            user_id: user.id,
            name: "web-1".into(),
            public_ip: "203.0.113.10".into(),
            ssh_port: 22,
            host_key_fingerprint: None,
        })
        .await
        .unwrap();
    (user, server)
}

#[tokio::test]
async fn migrations_are_idempotent_and_ping_works() {
    for t in stores().await {
        t.store.migrate().await.unwrap();
        t.store.migrate().await.unwrap();
        t.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn servers_belong_to_their_user() {
    for t in stores().await {
        let s = &t.store;
        let (alice, server) = user_and_server(s, "Alice@Example.com").await;
        assert_eq!(alice.email, "alice@example.com");
        let bob = s
            .create_user("bob@example.com", "hash", false)
            .await
            .unwrap();
        assert_eq!(server.provision_status, ProvisionStatus::Pending);
        assert_eq!(server.connection_status, ConnectionStatus::Pending);
        assert_eq!(
            s.server_for_user(alice.id, server.id).await.unwrap().name,
            "web-1"
        );
        assert!(
            matches!(
                s.server_for_user(bob.id, server.id).await,
                Err(StoreError::NotFound(_))
            ),
            "{}",
            t.name
        );
        assert!(s.servers_for_user(bob.id).await.unwrap().is_empty());
        // Same name twice for one user is a conflict with a clear message.
        let dup = s
            .create_server(&NewServer {
                user_id: alice.id,
                name: "web-1".into(),
                public_ip: "203.0.113.11".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            })
            .await;
        assert!(
            matches!(dup, Err(StoreError::Conflict(ref m)) if m.contains("web-1")),
            "{}",
            t.name
        );
        assert!(matches!(
            s.create_user("alice@example.com", "x", false).await,
            Err(StoreError::Conflict(_))
        ));

        s.set_provision_status(server.id, ProvisionStatus::Provisioned)
            .await
            .unwrap();
        s.set_connection_status(server.id, ConnectionStatus::Connected)
            .await
            .unwrap();
        s.set_server_os(server.id, "debian 12").await.unwrap();
        assert!(
            s.pin_host_key_if_unset(server.id, "SHA256:first")
                .await
                .unwrap()
        );
        assert!(
            !s.pin_host_key_if_unset(server.id, "SHA256:second")
                .await
                .unwrap()
        );
        let got = s.server(server.id).await.unwrap();
        assert_eq!(got.provision_status, ProvisionStatus::Provisioned);
        assert_eq!(got.connection_status, ConnectionStatus::Connected);
        assert_eq!(got.os.as_deref(), Some("debian 12"));
        assert_eq!(got.host_key_fingerprint.as_deref(), Some("SHA256:first"));
        assert!(matches!(
            s.set_server_os(9999, "x").await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn credentials_are_encrypted_and_bound_to_their_row() {
    for t in stores().await {
        let s = &t.store;
        let (_, server) = user_and_server(s, "a@example.com").await;
        let pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-material\n-----END OPENSSH PRIVATE KEY-----\n";
        s.put_credential(
            server.id,
            CredentialKind::Root,
            "ssh-ed25519 AAAA root",
            &Secret::new(pem),
        )
        .await
        .unwrap();
        let cred = s.credential(server.id, CredentialKind::Root).await.unwrap();
        assert_eq!(cred.private_key.expose(), pem);
        assert_eq!(cred.public_key, "ssh-ed25519 AAAA root");

        // The stored bytes do not contain the key.
        let raw: Vec<u8> = sqlx::Row::get(
            &sqlx::query("SELECT private_key_enc FROM server_credentials WHERE server_id = $1")
                .bind(server.id)
                .fetch_one(s.pool())
                .await
                .unwrap(),
            "private_key_enc",
        );
        assert!(!String::from_utf8_lossy(&raw).contains("secret-material"));

        // Copying the ciphertext to another row does not decrypt there.
        s.put_credential(
            server.id,
            CredentialKind::User,
            "ssh-ed25519 BBBB",
            &Secret::new("other"),
        )
        .await
        .unwrap();
        sqlx::query("UPDATE server_credentials SET private_key_enc = $1 WHERE server_id = $2 AND credential = 'user'")
            .bind(raw)
            .bind(server.id)
            .execute(s.pool())
            .await
            .unwrap();
        assert!(matches!(
            s.credential(server.id, CredentialKind::User).await,
            Err(StoreError::Decrypt { .. })
        ));
        assert!(matches!(
            s.credential(server.id, CredentialKind::Worker).await,
            Err(StoreError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn wrong_master_key_is_refused_clearly() {
    for t in stores().await {
        let other = MasterKey::generate().unwrap();
        let err = Store::open(&t.url, &other)
            .await
            .err()
            .expect("must refuse");
        assert!(
            matches!(err, StoreError::WrongMasterKey),
            "{}: {err}",
            t.name
        );
        assert!(err.to_string().contains("BROKEFORGE_MASTER_KEY"));
    }
}

/// A plan's snapshot list follows what the repository holds: gone ones leave, new ones come, and what was
/// known of a kept one (its size and duration) stays.
#[tokio::test]
async fn backup_snapshots_follow_the_repository() {
    for t in stores().await {
        let s = &t.store;
        let (user, server) = user_and_server(s, "snaps@example.com").await;
        let storage = s
            .create_backup_storage(&brokeforge_store::NewBackupStorage {
                user_id: user.id,
                name: "disk".into(),
                kind: "local".into(),
                configuration: json!({}),
                secret: None,
            })
            .await
            .unwrap();
        let plan = s
            .create_backup_plan(&brokeforge_store::NewBackupPlan {
                server_id: server.id,
                storage_id: storage.id,
                name: "p".into(),
                source: json!({}),
                schedule: None,
                verify_schedule: None,
                retention: json!({}),
                password: Secret::new("pw"),
                next_run_at: None,
                next_verify_at: None,
            })
            .await
            .unwrap();
        let snap = |id: &str, at: i64, size: Option<i64>| SeenSnapshot {
            snapshot_id: id.into(),
            taken_at: at,
            job_id: None,
            size_bytes: size,
            duration_ms: None,
        };
        s.sync_backup_snapshots(plan.id, &[snap("aa", 1, Some(10)), snap("bb", 2, Some(20))])
            .await
            .unwrap();
        s.sync_backup_snapshots(plan.id, &[snap("bb", 2, None), snap("cc", 3, Some(30))])
            .await
            .unwrap();
        let now: Vec<(String, Option<i64>)> = s
            .backup_snapshots(plan.id)
            .await
            .unwrap()
            .into_iter()
            .map(|x| (x.snapshot_id, x.size_bytes))
            .collect();
        assert_eq!(
            now,
            [("cc".to_string(), Some(30)), ("bb".to_string(), Some(20))],
            "{}",
            t.name
        );
        s.sync_backup_snapshots(plan.id, &[]).await.unwrap();
        assert!(
            s.backup_snapshots(plan.id).await.unwrap().is_empty(),
            "{}",
            t.name
        );
    }
}

/// Rotating the master key re-seals every kind of secret: all of them read back under the new key, and the
/// old key is refused.
#[tokio::test]
async fn master_key_rotation_reseals_every_secret() {
    for t in stores().await {
        let s = &t.store;
        let (user, server) = user_and_server(s, "rotate@example.com").await;
        s.put_credential(
            server.id,
            CredentialKind::Root,
            "ssh-ed25519 AAAA",
            &Secret::new("root-private"),
        )
        .await
        .unwrap();
        s.put_service_secret(
            server.id,
            "mariadb_admin_password",
            &Secret::new("db-password"),
        )
        .await
        .unwrap();
        s.set_panel_secret("acme_account", b"acme-account")
            .await
            .unwrap();
        let storage = s
            .create_backup_storage(&brokeforge_store::NewBackupStorage {
                user_id: user.id,
                name: "offsite".into(),
                kind: "s3".into(),
                configuration: json!({}),
                secret: Some(Secret::new("s3-secret")),
            })
            .await
            .unwrap();
        let plan = s
            .create_backup_plan(&brokeforge_store::NewBackupPlan {
                server_id: server.id,
                storage_id: storage.id,
                name: "shop".into(),
                source: json!({}),
                schedule: None,
                verify_schedule: None,
                retention: json!({}),
                password: Secret::new("repo-password"),
                next_run_at: None,
                next_verify_at: None,
            })
            .await
            .unwrap();
        s.enable_totp(user.id, b"totp-secret-20-bytes", 7, &[])
            .await
            .unwrap();
        s.set_totp_pending(user.id, b"pending-secret-bytes")
            .await
            .unwrap();
        let new = MasterKey::generate().unwrap();
        let n = s.rotate_master_key(&new).await.unwrap();
        assert!(n >= 8, "{}: {n}", t.name);
        s.close().await;
        let err = Store::open(&t.url, &t.key)
            .await
            .err()
            .expect("old key refused");
        assert!(
            matches!(err, StoreError::WrongMasterKey),
            "{}: {err}",
            t.name
        );
        let r = Store::open(&t.url, &new).await.unwrap();
        assert_eq!(
            r.credential(server.id, CredentialKind::Root)
                .await
                .unwrap()
                .private_key
                .expose(),
            "root-private"
        );
        assert_eq!(
            r.service_secret(server.id, "mariadb_admin_password")
                .await
                .unwrap()
                .unwrap()
                .expose(),
            "db-password"
        );
        assert_eq!(
            r.panel_secret("acme_account")
                .await
                .unwrap()
                .unwrap()
                .as_slice(),
            b"acme-account"
        );
        assert_eq!(
            r.backup_storage_secret(storage.id)
                .await
                .unwrap()
                .unwrap()
                .expose(),
            "s3-secret"
        );
        assert_eq!(
            r.backup_plan_password(plan.id).await.unwrap().expose(),
            "repo-password"
        );
        let (totp, step) = r.totp_secret(user.id).await.unwrap().unwrap();
        assert_eq!((totp.as_slice(), step), (&b"totp-secret-20-bytes"[..], 7));
        assert_eq!(
            r.totp_pending(user.id).await.unwrap().unwrap().as_slice(),
            b"pending-secret-bytes"
        );
        r.close().await;
    }
}

/// A database a newer BrokeForge migrated is refused with what to do, and nothing is changed.
#[tokio::test]
async fn a_database_from_a_newer_release_is_refused() {
    for t in stores().await {
        let (applied, latest) = t.store.migration_state().await.unwrap();
        assert_eq!(applied, Some(latest), "{}", t.name);
        brokeforge_store::raw_execute(
            t.store.pool(),
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'from the future', 0)",
        )
        .await
        .unwrap();
        let err = Store::open(&t.url, &t.key)
            .await
            .err()
            .expect("must refuse");
        assert!(
            err.to_string().contains("newer BrokeForge (schema 9999"),
            "{}: {err}",
            t.name
        );
    }
}

#[tokio::test]
async fn services_upsert_and_remove() {
    for t in stores().await {
        let s = &t.store;
        let (_, server) = user_and_server(s, "a@example.com").await;
        let svc = s
            .upsert_service(
                server.id,
                "mariadb",
                ServiceType::Database,
                &json!({"version": "10.11"}),
                ServiceStatus::Installing,
            )
            .await
            .unwrap();
        assert_eq!(svc.status, ServiceStatus::Installing);
        s.set_service_status(
            server.id,
            "mariadb",
            ServiceStatus::Failed,
            Some("apt failed"),
        )
        .await
        .unwrap();
        let svc2 = s
            .upsert_service(
                server.id,
                "mariadb",
                ServiceType::Database,
                &json!({"version": "11"}),
                ServiceStatus::Active,
            )
            .await
            .unwrap();
        assert_eq!(svc2.id, svc.id);
        assert_eq!(svc2.configuration["version"], "11");
        assert_eq!(svc2.error, None);
        assert_eq!(s.services(server.id).await.unwrap().len(), 1);
        s.delete_service(server.id, "mariadb").await.unwrap();
        assert!(s.services(server.id).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn events_logs_sites_and_commands() {
    for t in stores().await {
        let s = &t.store;
        let (_, server) = user_and_server(s, "a@example.com").await;
        let ev = s
            .start_event(&NewEvent {
                server_id: server.id,
                job_id: None,
                attempt: None,
                service_type: ServiceType::Site,
                provision_type: ProvisionType::Install,
                milestone: "prepare_execution".into(),
                label: "Preparing execution".into(),
                current_step: 1,
                total_steps: 4,
                details: json!({"k": "v"}),
            })
            .await
            .unwrap();
        assert_eq!(ev.status, EventStatus::InProgress);
        assert_eq!(ev.progress_percentage(), 25.0);
        s.finish_event(ev.id, EventStatus::Failed, Some("exit 3"))
            .await
            .unwrap();
        let evs = s.events(server.id, 0).await.unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].status, EventStatus::Failed);
        assert_eq!(evs[0].error.as_deref(), Some("exit 3"));
        assert_eq!(evs[0].details["k"], "v");
        assert!(s.events(server.id, ev.id).await.unwrap().is_empty());

        s.append_log(server.id, None, Some(ev.id), LogStream::Stdout, "hello\n")
            .await
            .unwrap();
        s.append_log(server.id, None, Some(ev.id), LogStream::Stderr, "oops\n")
            .await
            .unwrap();
        let logs = s.logs(server.id, 0).await.unwrap();
        assert_eq!(
            logs.iter().map(|l| l.stream).collect::<Vec<_>>(),
            [LogStream::Stdout, LogStream::Stderr]
        );

        let site = s
            .create_site(&NewSite {
                server_id: server.id,
                domain: "example.com".into(),
                document_root: "/home/brokeforge/example.com".into(),
                php_version: Some("8.2".into()),
                status: ServiceStatus::Active,
                configuration: json!({}),
            })
            .await
            .unwrap();
        assert_eq!(s.sites(server.id).await.unwrap()[0].domain, "example.com");
        for (i, ok) in [(0, true), (1, false)] {
            s.record_site_command(&SiteCommandRecord {
                id: 0,
                site_id: site.id,
                command: format!("cmd {i}"),
                output: "out".into(),
                error_output: String::new(),
                exit_code: Some(if ok { 0 } else { 2 }),
                ran_at: 1,
                duration_ms: 5,
                success: ok,
                timed_out: false,
            })
            .await
            .unwrap();
        }
        let hist = s.site_commands(site.id, 10).await.unwrap();
        assert_eq!(hist.len(), 2);
        assert_eq!(hist[0].command, "cmd 1");
        assert!(!hist[0].success);
        assert_eq!(hist[0].exit_code, Some(2));

        // Deleting a server removes what hangs off it.
        s.delete_server(server.id).await.unwrap();
        assert!(s.events(server.id, 0).await.unwrap().is_empty());
        assert!(s.site_commands(site.id, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn unsupported_url_says_what_to_use() {
    let err = Store::open("mysql://u:pw@h/db", &MasterKey::generate().unwrap())
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("sqlite://") && msg.contains("****") && !msg.contains("pw@"),
        "{msg}"
    );
}

mod queue {
    use super::*;
    use std::time::Duration;

    const LEASE: Duration = Duration::from_secs(30);

    async fn two_servers(s: &Store) -> (i64, i64) {
        let (user, a) = user_and_server(s, "q@example.com").await;
        let b = s
            .create_server(&NewServer {
                user_id: user.id,
                name: "web-2".into(),
                public_ip: "203.0.113.20".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            })
            .await
            .unwrap();
        (a.id, b.id)
    }

    /// Claiming many at once (one statement on PostgreSQL) takes one job per server, oldest first, and never
    /// a second job of a server that has one running or picked in the same claim.
    #[tokio::test]
    async fn claiming_many_takes_one_job_per_server_in_order() {
        for t in stores().await {
            let s = &t.store;
            let (a, b) = two_servers(s).await;
            let job = |server: Option<i64>| NewJob::new("k", server, json!({}));
            let a1 = s.enqueue(&job(Some(a))).await.unwrap();
            let a2 = s.enqueue(&job(Some(a))).await.unwrap();
            let free = s.enqueue(&job(None)).await.unwrap();
            let b1 = s.enqueue(&job(Some(b))).await.unwrap();
            let ids =
                |jobs: &[brokeforge_store::Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
            let got = s.claim_up_to("w", LEASE, 10).await.unwrap();
            assert_eq!(ids(&got), [a1.id, free.id, b1.id], "{}", t.name);
            assert!(
                got.iter()
                    .all(|j| j.status == JobStatus::Running && j.attempt == 1)
            );
            assert!(
                s.claim_up_to("w", LEASE, 10).await.unwrap().is_empty(),
                "{}",
                t.name
            );
            assert!(
                s.finish_job(a1.id, 1, &Outcome::Done(json!({})))
                    .await
                    .unwrap()
            );
            let got = s.claim_up_to("w", LEASE, 10).await.unwrap();
            assert_eq!(ids(&got), [a2.id], "{}", t.name);
        }
    }

    #[tokio::test]
    async fn one_running_job_per_server() {
        for t in stores().await {
            let s = &t.store;
            let (a, b) = two_servers(s).await;
            let a1 = s
                .enqueue(&NewJob::new("k", Some(a), json!({"n": 1})))
                .await
                .unwrap();
            let a2 = s
                .enqueue(&NewJob::new("k", Some(a), json!({"n": 2})))
                .await
                .unwrap();
            let b1 = s
                .enqueue(&NewJob::new("k", Some(b), json!({})))
                .await
                .unwrap();
            assert_eq!(a1.status, JobStatus::Queued);
            let c1 = s.claim("w1", LEASE).await.unwrap().unwrap();
            assert_eq!(
                (c1.id, c1.attempt, c1.status),
                (a1.id, 1, JobStatus::Running)
            );
            let c2 = s.claim("w2", LEASE).await.unwrap().unwrap();
            assert_eq!(c2.id, b1.id, "{}: server b runs beside server a", t.name);
            assert!(
                s.claim("w3", LEASE).await.unwrap().is_none(),
                "{}: a second job of server a ran",
                t.name
            );

            // The database refuses a second running job for one server, whatever the code does.
            let err = sqlx::query("UPDATE jobs SET status = 'running' WHERE id = $1")
                .bind(a2.id)
                .execute(s.pool())
                .await
                .unwrap_err();
            assert!(
                matches!(&err, sqlx::Error::Database(d) if d.is_unique_violation()),
                "{}: {err}",
                t.name
            );

            assert!(
                s.finish_job(c1.id, 1, &Outcome::Done(json!({"ok": true})))
                    .await
                    .unwrap()
            );
            let c3 = s.claim("w1", LEASE).await.unwrap().unwrap();
            assert_eq!(c3.id, a2.id);
            let done = s.job(a1.id).await.unwrap();
            assert_eq!(done.status, JobStatus::Done);
            assert_eq!(done.result, Some(json!({"ok": true})));
            assert!(done.finished_at.is_some());

            // Listings for pages: newest first with a limit; the unfinished ones only.
            let ids =
                |jobs: Vec<brokeforge_store::Job>| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
            assert_eq!(ids(s.recent_jobs(a, 1).await.unwrap()), [a2.id]);
            assert_eq!(ids(s.recent_jobs(a, 10).await.unwrap()), [a2.id, a1.id]);
            assert_eq!(ids(s.unfinished_jobs(a).await.unwrap()), [a2.id]);
            assert_eq!(ids(s.unfinished_jobs(b).await.unwrap()), [b1.id]);
        }
    }

    #[tokio::test]
    async fn a_lost_worker_is_fenced_out_and_its_job_resumed_or_failed() {
        for t in stores().await {
            let s = &t.store;
            let (a, _) = two_servers(s).await;
            let job = s
                .enqueue(&NewJob {
                    target: Some(JobTarget::Service {
                        name: "redis".into(),
                        service_type: ServiceType::Database,
                        provision_type: ProvisionType::Install,
                    }),
                    ..NewJob::new("k", Some(a), json!({}))
                })
                .await
                .unwrap();
            let first = s.claim("dead", Duration::ZERO).await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let rec = s.recover_expired_jobs(3, |_| true).await.unwrap();
            assert!(
                matches!(&rec[..], [Recovered::Requeued(j)] if j.id == job.id && j.error.as_deref().unwrap().contains("stopped responding")),
                "{}: {rec:?}",
                t.name
            );
            let second = s.claim("alive", LEASE).await.unwrap().unwrap();
            assert_eq!(second.attempt, 2);
            assert_eq!(second.target, job.target);
            // The stale attempt can no longer heartbeat or write a result.
            assert!(
                s.heartbeat(first.id, first.attempt, LEASE)
                    .await
                    .unwrap()
                    .lost
            );
            assert!(
                !s.finish_job(
                    first.id,
                    first.attempt,
                    &Outcome::Failed("stale".into(), None)
                )
                .await
                .unwrap()
            );
            // Nor add to the log or the progress of the attempt that replaced it.
            let log = |attempt: i64| {
                s.append_attempt_log(
                    a,
                    Some(job.id),
                    Some(attempt),
                    None,
                    LogStream::Stdout,
                    "line\n",
                )
            };
            assert!(
                matches!(
                    log(first.attempt).await,
                    Err(StoreError::Superseded { attempt: 1, .. })
                ),
                "{}",
                t.name
            );
            let event = |attempt: i64| NewEvent {
                server_id: a,
                job_id: Some(job.id),
                attempt: Some(attempt),
                service_type: ServiceType::Database,
                provision_type: ProvisionType::Install,
                milestone: "m".into(),
                label: "m".into(),
                current_step: 1,
                total_steps: 1,
                details: json!({}),
            };
            assert!(matches!(
                s.start_event(&event(first.attempt)).await,
                Err(StoreError::Superseded { .. })
            ));
            log(2).await.unwrap();
            let ev = s.start_event(&event(2)).await.unwrap();
            assert!(matches!(
                s.finish_attempt_event(ev.id, Some((job.id, 1)), EventStatus::Completed, None)
                    .await,
                Err(StoreError::Superseded { .. })
            ));
            s.finish_attempt_event(ev.id, Some((job.id, 2)), EventStatus::Completed, None)
                .await
                .unwrap();
            let logs = s.job_logs(job.id).await.unwrap();
            assert_eq!(logs.len(), 1, "{}: {logs:?}", t.name);
            assert!(!s.heartbeat(second.id, 2, LEASE).await.unwrap().lost);
            assert!(
                s.finish_job(second.id, 2, &Outcome::Done(json!(null)))
                    .await
                    .unwrap()
            );
            assert_eq!(s.job(job.id).await.unwrap().status, JobStatus::Done);

            // With no attempts left, recovery fails the job with the reason.
            s.enqueue(&NewJob::new("k", Some(a), json!({})))
                .await
                .unwrap();
            s.claim("dead", Duration::ZERO).await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let rec = s.recover_expired_jobs(1, |_| true).await.unwrap();
            match &rec[..] {
                [Recovered::Failed(j)] => {
                    assert_eq!(j.status, JobStatus::Failed);
                    assert!(
                        j.error
                            .as_deref()
                            .unwrap()
                            .contains("gave up after 1 attempts")
                    );
                }
                other => panic!("{}: {other:?}", t.name),
            }
        }
    }

    #[tokio::test]
    async fn cancel_delay_retry_and_wakeups() {
        for t in stores().await {
            let s = &t.store;
            let (a, b) = two_servers(s).await;
            let queued = s
                .enqueue(&NewJob::new("k", Some(a), json!({})))
                .await
                .unwrap();
            assert_eq!(
                s.cancel_job(queued.id).await.unwrap().status,
                JobStatus::Cancelled
            );
            assert!(s.claim("w", LEASE).await.unwrap().is_none());

            let running = s
                .enqueue(&NewJob::new("k", Some(a), json!({})))
                .await
                .unwrap();
            let c = s.claim("w", LEASE).await.unwrap().unwrap();
            assert_eq!(
                s.cancel_job(running.id).await.unwrap().status,
                JobStatus::Running
            );
            assert!(
                s.heartbeat(c.id, c.attempt, LEASE)
                    .await
                    .unwrap()
                    .cancel_requested
            );
            assert!(
                s.finish_job(c.id, c.attempt, &Outcome::Cancelled)
                    .await
                    .unwrap()
            );

            let retried = s.retry_job(running.id).await.unwrap();
            assert_ne!(retried.id, running.id);
            assert_eq!(retried.status, JobStatus::Queued);
            assert!(matches!(
                s.retry_job(retried.id).await,
                Err(StoreError::Conflict(_))
            ));
            s.cancel_job(retried.id).await.unwrap();

            let later = s
                .enqueue(&NewJob {
                    delay: Duration::from_secs(3600),
                    ..NewJob::new("k", Some(b), json!({}))
                })
                .await
                .unwrap();
            assert!(s.claim("w", LEASE).await.unwrap().is_none());
            assert_eq!(s.next_job_wakeup().await.unwrap(), Some(later.run_at));
            assert_eq!(s.count_jobs(JobStatus::Queued).await.unwrap(), 1);

            // Requeue (retry after an error) is fenced too.
            let now = s.enqueue(&NewJob::new("k", None, json!({}))).await.unwrap();
            let c = s.claim("w", LEASE).await.unwrap().unwrap();
            assert_eq!(c.id, now.id);
            assert!(
                s.requeue_job(c.id, c.attempt, Duration::ZERO, Some("try again"))
                    .await
                    .unwrap()
            );
            assert!(
                !s.requeue_job(c.id, c.attempt, Duration::ZERO, None)
                    .await
                    .unwrap()
            );
            assert_eq!(s.claim("w", LEASE).await.unwrap().unwrap().attempt, 2);
        }
    }

    #[tokio::test]
    async fn concurrent_claimers_never_run_two_jobs_of_one_server() {
        for t in stores().await {
            let s = t.store.clone();
            let (a, b) = two_servers(&s).await;
            for i in 0..40 {
                s.enqueue(&NewJob::new(
                    "k",
                    Some(if i % 2 == 0 { a } else { b }),
                    json!({}),
                ))
                .await
                .unwrap();
            }
            let mut tasks = Vec::new();
            for w in 0..6 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let mut done = 0;
                    let mut idle = 0;
                    while idle < 200 {
                        match s.claim(&format!("w{w}"), LEASE).await.unwrap() {
                            Some(job) => {
                                let running = s
                                    .jobs_for_server(job.server_id.unwrap())
                                    .await
                                    .unwrap()
                                    .iter()
                                    .filter(|j| j.status == JobStatus::Running)
                                    .count();
                                assert_eq!(running, 1);
                                assert!(
                                    s.finish_job(job.id, job.attempt, &Outcome::Done(json!(w)))
                                        .await
                                        .unwrap()
                                );
                                done += 1;
                                idle = 0;
                            }
                            None => {
                                idle += 1;
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    done
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            assert_eq!(total, 40, "{}", t.name);
            assert_eq!(s.count_jobs(JobStatus::Done).await.unwrap(), 40);
        }
    }
}

/// Deployments: queued with their job, settled by how the job ends (succeeded, failed with the reason,
/// cancelled), listed newest first; a site's deletion takes them along.
#[tokio::test]
async fn deployments_follow_their_job() {
    for t in stores().await {
        let s = &t.store;
        let (_, server) = user_and_server(s, "d@example.com").await;
        let site = s
            .create_site(&NewSite {
                server_id: server.id,
                domain: "app.example.com".into(),
                document_root: "/home/brokeforge/app.example.com".into(),
                php_version: Some("8.2".into()),
                status: ServiceStatus::Active,
                configuration: json!({}),
            })
            .await
            .unwrap();
        let lease = std::time::Duration::from_secs(30);
        let (d1, j1) = s
            .queue_deployment(
                &site,
                "deploy",
                Some("main"),
                None,
                "user:d@example.com",
                NewJob::new("site_deploy", Some(server.id), json!({"site_id": site.id})),
            )
            .await
            .unwrap();
        assert_eq!(
            (d1.status, d1.job_id),
            (DeploymentStatus::Queued, Some(j1.id))
        );
        assert_eq!(j1.target, Some(JobTarget::Deployment { id: d1.id }));
        assert_eq!(j1.payload["deployment_id"], d1.id);
        let (d2, j2) = s
            .queue_deployment(
                &site,
                "deploy",
                Some("main"),
                None,
                "webhook:github",
                NewJob::new("site_deploy", Some(server.id), json!({"site_id": site.id})),
            )
            .await
            .unwrap();

        // The first succeeds.
        let c = s.claim("w", lease).await.unwrap().unwrap();
        assert_eq!(c.id, j1.id, "{}", t.name);
        s.start_deployment(d1.id).await.unwrap();
        s.set_deployment_details(d1.id, None, Some("abc123"), Some("20261125-1"), Some(0))
            .await
            .unwrap();
        assert!(
            s.finish_job(c.id, c.attempt, &Outcome::Done(json!({})))
                .await
                .unwrap()
        );
        let d = s.deployment(d1.id).await.unwrap();
        assert_eq!(d.status, DeploymentStatus::Succeeded, "{}", t.name);
        assert_eq!(
            (d.commit_hash.as_deref(), d.release.as_deref()),
            (Some("abc123"), Some("20261125-1"))
        );
        let (started, finished) = (d.started_at.unwrap(), d.finished_at.unwrap());
        assert!(finished >= started, "{}", t.name);
        assert_eq!(d.duration_ms(), Some(finished - started));

        // The second fails: the reason is kept.
        let c = s.claim("w", lease).await.unwrap().unwrap();
        assert_eq!(c.id, j2.id);
        s.start_deployment(d2.id).await.unwrap();
        assert!(
            s.finish_job(
                c.id,
                c.attempt,
                &Outcome::Failed("deploy script exited with 3".into(), Some(3))
            )
            .await
            .unwrap()
        );
        let d = s.deployment(d2.id).await.unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed);
        assert_eq!(d.error.as_deref(), Some("deploy script exited with 3"));

        // A queued one cancelled before it ran.
        let (d3, j3) = s
            .queue_deployment(
                &site,
                "rollback",
                None,
                Some("20261125-1"),
                "cli",
                NewJob::new("site_rollback", Some(server.id), json!({})),
            )
            .await
            .unwrap();
        s.cancel_job(j3.id).await.unwrap();
        assert_eq!(
            s.deployment(d3.id).await.unwrap().status,
            DeploymentStatus::Cancelled,
            "{}",
            t.name
        );

        let list = s.deployments(site.id, 10).await.unwrap();
        assert_eq!(
            list.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![d3.id, d2.id, d1.id]
        );
        s.delete_site(site.id).await.unwrap();
        assert!(s.deployments(site.id, 10).await.unwrap().is_empty());
    }
}

/// The activity feed: output and event changes in one ordered stream per server, resumable by id; logs
/// leave the event rows out; a subscriber hears which server moved.
#[tokio::test]
async fn a_recipe_runs_rows_follow_their_jobs() {
    for t in stores().await {
        let (s, n) = (&t.store, t.name);
        let (user, web1) = user_and_server(s, "r@example.com").await;
        let mut ids = vec![web1.id];
        for name in ["web-2", "web-3"] {
            let server = s
                .create_server(&NewServer {
                    user_id: user.id,
                    name: name.into(),
                    public_ip: "203.0.113.20".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                })
                .await
                .unwrap();
            ids.push(server.id);
        }
        let team = s.personal_team(user.id).await.unwrap();
        let recipe = s
            .create_recipe(team, "check", "true", "brokeforge", user.id)
            .await
            .unwrap();
        let run = s
            .create_recipe_run(
                &recipes::NewRecipeRun {
                    recipe_id: recipe.id,
                    user_id: user.id,
                    script: "true".into(),
                    run_as: "brokeforge".into(),
                    parallel: 3,
                    canary: 0,
                    max_failures: 3,
                },
                &ids,
            )
            .await
            .unwrap();
        let job = |server: i64| {
            let mut new = NewJob::new("recipe", Some(server), json!({}));
            new.target = Some(JobTarget::RecipeRun { id: run.id });
            (server, new)
        };
        let progress = |failed, active, pending, canary_open| recipes::RunProgress {
            failed,
            active,
            pending,
            canary_open,
        };
        // Before anything started: all pending, a canary of two has two open; the next servers in order,
        // within the canary wave when asked, with their names.
        assert_eq!(
            s.recipe_run_progress(run.id, 2).await.unwrap(),
            progress(0, 0, 3, 2),
            "{n}"
        );
        let next = s.run_next_pending(run.id, Some(1), 5).await.unwrap();
        assert_eq!(next, vec![(ids[0], "web-1".to_string())], "{n}");
        let next = s.run_next_pending(run.id, None, 2).await.unwrap();
        assert_eq!(
            next.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            ids[..2],
            "{n}"
        );
        // Started in one go (a server listed twice is taken once).
        let started = s
            .start_run_servers(
                run.id,
                &[job(ids[0]), job(ids[1]), job(ids[2]), job(ids[2])],
            )
            .await
            .unwrap();
        assert_eq!(started.len(), 3, "{n}");
        let mut servers: Vec<i64> = started.iter().map(|(id, _)| *id).collect();
        servers.sort();
        assert_eq!(servers, ids, "{n}");
        for (server, job) in &started {
            assert_eq!(job.server_id, Some(*server), "{n}");
            assert_eq!(job.target, Some(JobTarget::RecipeRun { id: run.id }), "{n}");
        }
        assert_eq!(
            s.recipe_run_progress(run.id, 2).await.unwrap(),
            progress(0, 3, 0, 2),
            "{n}"
        );
        assert!(
            s.run_next_pending(run.id, None, 5)
                .await
                .unwrap()
                .is_empty()
        );
        // A server already taken is not taken twice, and leaves no job behind.
        assert!(
            s.start_run_servers(run.id, &[job(ids[0])])
                .await
                .unwrap()
                .is_empty(),
            "{n}"
        );
        assert_eq!(s.count_jobs(JobStatus::Queued).await.unwrap(), 3, "{n}");
        let states = |rows: Vec<recipes::RunServer>| {
            rows.into_iter()
                .map(|r| (r.state, r.exit_code, r.duration_ms.is_some()))
                .collect::<Vec<_>>()
        };
        let lease = std::time::Duration::from_secs(30);
        let claimed = s.claim_up_to("w", lease, 3).await.unwrap();
        assert_eq!(claimed.len(), 3, "{n}");
        assert_eq!(
            claimed[0].target,
            Some(JobTarget::RecipeRun { id: run.id }),
            "{n}"
        );
        // Claimed: the grid shows them running without a write of its own.
        assert_eq!(
            states(s.recipe_run_servers(run.id).await.unwrap()),
            vec![("running".to_string(), None, false); 3],
            "{n}"
        );
        let by_server = |id: i64| claimed.iter().find(|j| j.server_id == Some(id)).unwrap();
        let (a, b) = (by_server(ids[0]), by_server(ids[1]));
        // The worker's way (it holds the target) and the generic one end a row alike.
        assert!(
            s.finish_claimed_job(a, &Outcome::Done(json!({})))
                .await
                .unwrap()
        );
        // Once ended, the attempt is fenced out whichever way it asks.
        assert!(
            !s.finish_claimed_job(a, &Outcome::Failed("late".into(), Some(9)))
                .await
                .unwrap(),
            "{n}"
        );
        assert!(
            s.finish_job(
                b.id,
                b.attempt,
                &Outcome::Failed("exited with 3".into(), Some(3))
            )
            .await
            .unwrap()
        );
        // The third is cancelled while it runs and ends without an exit code.
        let c = by_server(ids[2]);
        assert!(s.finish_claimed_job(c, &Outcome::Cancelled).await.unwrap());
        assert_eq!(
            states(s.recipe_run_servers(run.id).await.unwrap()),
            vec![
                ("done".to_string(), Some(0), true),
                ("failed".to_string(), Some(3), true),
                ("failed".to_string(), None, true),
            ],
            "{n}"
        );
        // Counted as the grid shows them: one done, two failed, the canary wave closed.
        assert_eq!(
            s.recipe_run_progress(run.id, 2).await.unwrap(),
            progress(2, 0, 0, 0),
            "{n}"
        );
        // A claimed job's end is in its server's feed once, written by the ending (the fenced-out second
        // ending wrote none; the generic finish_job leaves it to the caller); a plain job's too.
        let plain = s
            .enqueue(&NewJob::new("k", Some(ids[0]), json!({})))
            .await
            .unwrap();
        let p = s.claim_up_to("w", lease, 1).await.unwrap().remove(0);
        assert_eq!(p.id, plain.id, "{n}");
        assert!(
            s.finish_claimed_job(&p, &Outcome::Failed("boom".into(), None))
                .await
                .unwrap()
        );
        let ends = |server: i64| async move {
            s.activity(server, 0, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|l| l.stream == LogStream::Job)
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(&l.chunk).unwrap();
                    (
                        l.job_id,
                        v["job_id"].as_i64(),
                        v["kind"].as_str().unwrap().to_string(),
                        v["status"].as_str().unwrap().to_string(),
                        v["error"].as_str().map(str::to_string),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ends(ids[0]).await,
            [
                (Some(a.id), Some(a.id), "recipe".into(), "done".into(), None),
                (
                    Some(p.id),
                    Some(p.id),
                    "k".into(),
                    "failed".into(),
                    Some("boom".into())
                )
            ],
            "{n}"
        );
        assert_eq!(ends(ids[1]).await, [], "{n}");
        assert_eq!(
            ends(ids[2]).await,
            [(
                Some(c.id),
                Some(c.id),
                "recipe".into(),
                "cancelled".into(),
                Some("cancelled".into())
            )],
            "{n}"
        );
    }
}

#[tokio::test]
async fn activity_feed_orders_output_and_event_changes() {
    for t in stores().await {
        let s = &t.store;
        let (_, server) = user_and_server(s, "feed@example.com").await;
        let mut rx = s.subscribe_activity();
        let new = |step: i64| NewEvent {
            server_id: server.id,
            job_id: Some(9),
            attempt: None,
            service_type: ServiceType::Site,
            provision_type: ProvisionType::Install,
            milestone: format!("m{step}"),
            label: format!("Step {step}"),
            current_step: step,
            total_steps: 2,
            details: json!({}),
        };
        let e1 = s.start_event(&new(1)).await.unwrap();
        // A command line and its first output: one statement, in order.
        s.append_attempt_logs(
            server.id,
            Some(9),
            None,
            Some(e1.id),
            &[(LogStream::System, "$ run\n"), (LogStream::Stdout, "one\n")],
        )
        .await
        .unwrap();
        let e2 = s.advance_event(Some(&e1), &new(2)).await.unwrap();
        s.finish_event(e2.id, EventStatus::Failed, Some("exit 1"))
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap(), server.id);

        let feed = s.activity(server.id, 0, 100).await.unwrap();
        let kinds: Vec<String> = feed
            .iter()
            .map(|l| match l.stream {
                LogStream::Event => {
                    let ev: serde_json::Value = serde_json::from_str(&l.chunk).unwrap();
                    format!(
                        "{}:{}",
                        ev["milestone"].as_str().unwrap(),
                        ev["status"].as_str().unwrap()
                    )
                }
                _ => l.chunk.trim().to_string(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "m1:in_progress",
                "$ run",
                "one",
                "m1:completed",
                "m2:in_progress",
                "m2:failed"
            ],
            "{}",
            t.name
        );
        // Each event row is the event as stored then (id, times, every field), and points at it.
        let stored = s.events(server.id, 0).await.unwrap();
        let rows: Vec<(Option<i64>, serde_json::Value)> = feed
            .iter()
            .filter(|l| l.stream == LogStream::Event)
            .map(|l| (l.event_id, serde_json::from_str(&l.chunk).unwrap()))
            .collect();
        let value = |e: &brokeforge_store::ProvisionEvent| serde_json::to_value(e).unwrap();
        assert_eq!(rows[0], (Some(e1.id), value(&e1)), "{}", t.name);
        assert_eq!(rows[1], (Some(e1.id), value(&stored[0])), "{}", t.name);
        assert_eq!(rows[2], (Some(e2.id), value(&e2)), "{}", t.name);
        assert_eq!(rows[3], (Some(e2.id), value(&stored[1])), "{}", t.name);
        // Resuming after the second row gives exactly the rest.
        let rest = s.activity(server.id, feed[1].id, 100).await.unwrap();
        assert_eq!(
            rest.iter().map(|l| l.id).collect::<Vec<_>>(),
            feed[2..].iter().map(|l| l.id).collect::<Vec<_>>()
        );
        assert_eq!(
            (feed[1].stream, feed[1].event_id, feed[2].event_id),
            (LogStream::System, Some(e1.id), Some(e1.id)),
            "{}",
            t.name
        );
        assert_eq!(
            s.activity_head(server.id).await.unwrap(),
            feed.last().unwrap().id
        );
        // Logs are output (and command lines) only.
        let logs = s.logs(server.id, 0).await.unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(s.job_logs(9).await.unwrap().len(), 2);
    }
}

/// Sessions and API tokens are found by their hash only; revoked tokens and expired sessions let nobody
/// in; login failures are counted per key and cleared by a success.
#[tokio::test]
async fn sessions_tokens_and_login_throttling() {
    for t in stores().await {
        let s = &t.store;
        let (user, _) = user_and_server(s, "acct@example.com").await;
        let (other, _) = user_and_server(s, "other@example.com").await;
        s.create_session(user.id, "h1", "csrf1", 60_000, "", "")
            .await
            .unwrap();
        s.create_session(user.id, "h-old", "csrf0", -1, "", "")
            .await
            .unwrap();
        let live = s.session("h1").await.unwrap().unwrap();
        assert_eq!((live.user.id, live.csrf_token.as_str()), (user.id, "csrf1"));
        assert!(s.session("h-old").await.unwrap().is_none(), "{}", t.name);
        assert!(s.session("nope").await.unwrap().is_none());

        let tok = s
            .create_api_token(user.id, "ci", "th1", "bf_abcd")
            .await
            .unwrap();
        assert_eq!(s.api_token_user("th1").await.unwrap().unwrap().id, user.id);
        assert!(
            s.revoke_api_token(other.id, tok.id).await.is_err(),
            "another user's token"
        );
        s.revoke_api_token(user.id, tok.id).await.unwrap();
        assert!(s.api_token_user("th1").await.unwrap().is_none());
        assert!(s.api_tokens(user.id).await.unwrap()[0].revoked_at.is_some());

        // Attempts count as failures from the moment they start; a success clears the account's slate and
        // its own row under any other key.
        for _ in 0..3 {
            s.begin_login_attempt(&["acct@example.com", "addr:192.0.2.1"])
                .await
                .unwrap();
        }
        assert_eq!(s.login_failures("acct@example.com", 0).await.unwrap().0, 3);
        let ids = s
            .begin_login_attempt(&["acct@example.com", "addr:192.0.2.1"])
            .await
            .unwrap();
        assert_eq!(s.login_failures("addr:192.0.2.1", 0).await.unwrap().0, 4);
        s.login_succeeded("acct@example.com", &ids).await.unwrap();
        assert_eq!(s.login_failures("acct@example.com", 0).await.unwrap().0, 0);
        assert_eq!(s.login_failures("addr:192.0.2.1", 0).await.unwrap().0, 3);
        // Old attempts are pruned in batches.
        let later = brokeforge_core::time::now_ms() + 1000;
        assert_eq!(s.prune_login_attempts(later, 2).await.unwrap(), 2);
        assert_eq!(s.prune_login_attempts(later, 100).await.unwrap(), 1);
        assert_eq!(s.login_failures("addr:192.0.2.1", 0).await.unwrap().0, 0);

        // A new password ends the sessions and the API tokens.
        let live = s
            .create_api_token(user.id, "ci2", "th2", "bf_efgh")
            .await
            .unwrap();
        s.set_password_hash(user.id, "new").await.unwrap();
        assert!(s.session("h1").await.unwrap().is_none());
        assert!(s.api_token_user("th2").await.unwrap().is_none());
        assert!(
            s.api_tokens(user.id)
                .await
                .unwrap()
                .iter()
                .find(|t| t.id == live.id)
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert_eq!(s.count_users().await.unwrap(), 2);
    }
}

/// History is bounded: rows older than the cutoff go (jobs only once finished), each server keeps its newest
/// rows up to the limit, other servers are untouched, and the read paths the pages use stay exact.
#[tokio::test]
async fn history_is_pruned_by_age_and_per_server_limits() {
    for t in stores().await {
        let s = &t.store;
        let n = t.name;
        let (user, a) = user_and_server(s, "a@example.com").await;
        let b = s
            .create_server(&NewServer {
                user_id: user.id,
                name: "b".into(),
                public_ip: "203.0.113.2".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            })
            .await
            .unwrap();
        let event = |server_id: i64, job_id: Option<i64>, step: i64| NewEvent {
            server_id,
            job_id,
            attempt: None,
            service_type: ServiceType::Server,
            provision_type: ProvisionType::Install,
            milestone: format!("m{step}"),
            label: format!("step {step}"),
            current_step: step,
            total_steps: 10,
            details: json!({}),
        };
        let job = s
            .enqueue(&NewJob::new("k", Some(a.id), json!({})))
            .await
            .unwrap();
        for step in 1..=10 {
            s.start_event(&event(a.id, Some(job.id), step))
                .await
                .unwrap();
            s.append_log(
                a.id,
                Some(job.id),
                None,
                LogStream::Stdout,
                &format!("a{step}\n"),
            )
            .await
            .unwrap();
            s.start_event(&event(b.id, None, step)).await.unwrap();
            s.append_log(b.id, None, None, LogStream::Stdout, &format!("b{step}\n"))
                .await
                .unwrap();
        }
        // The read paths: per job, the script's steps, the newest few, and one line per server.
        assert_eq!(s.job_events(job.id).await.unwrap().len(), 10, "{n}");
        assert_eq!(s.script_events(b.id).await.unwrap().len(), 10, "{n}");
        assert!(s.script_events(a.id).await.unwrap().is_empty(), "{n}");
        let recent = s.recent_events(a.id, 3).await.unwrap();
        assert_eq!(
            recent.iter().map(|e| e.current_step).collect::<Vec<_>>(),
            [10, 9, 8],
            "{n}"
        );
        let latest = s.latest_events_of(&[a.id, b.id]).await.unwrap();
        assert_eq!(latest.len(), 2, "{n}");
        assert!(
            latest.iter().all(|e| e.current_step == 10),
            "{n}: {latest:?}"
        );
        let page = s.events_page(a.id, 0, 4).await.unwrap();
        assert_eq!(page.len(), 4, "{n}");
        let rest = s.events_page(a.id, page[3].id, 100).await.unwrap();
        assert_eq!(rest.len(), 6, "{n}");

        // Per-server limits: a keeps its newest 3 events and 4 output rows (event changes are activity rows
        // too); b is untouched.
        let b_logs = s.activity(b.id, 0, 1000).await.unwrap().len();
        let removed = s.prune_server_history(a.id, 4, 3, 1000).await.unwrap();
        assert_eq!(removed.events, 7, "{n}");
        let kept: Vec<i64> = s
            .events(a.id, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.current_step)
            .collect();
        assert_eq!(kept, [8, 9, 10], "{n}");
        assert_eq!(s.activity(a.id, 0, 1000).await.unwrap().len(), 4, "{n}");
        assert_eq!(s.events(b.id, 0).await.unwrap().len(), 10, "{n}");
        assert_eq!(
            s.activity(b.id, 0, 1000).await.unwrap().len(),
            b_logs,
            "{n}"
        );
        // Under the limit: nothing more goes.
        assert_eq!(
            s.prune_server_history(a.id, 4, 3, 1000).await.unwrap(),
            Default::default(),
            "{n}"
        );

        // By age: everything above is older than a cutoff in the future, but the unfinished job stays.
        let future = brokeforge_core::time::now_ms() + 60_000;
        let mut removed = brokeforge_store::retention::Removed::default();
        loop {
            let r = s.prune_history_before(future, 5).await.unwrap();
            if r.total() == 0 {
                break;
            }
            removed += r;
        }
        assert_eq!(removed.jobs, 0, "{n}: a queued job is never pruned");
        assert!(s.events(b.id, 0).await.unwrap().is_empty(), "{n}");
        assert!(s.activity(a.id, 0, 1000).await.unwrap().is_empty(), "{n}");
        assert_eq!(s.job(job.id).await.unwrap().id, job.id, "{n}");
        // A cutoff in the past removes nothing.
        s.start_event(&event(a.id, None, 1)).await.unwrap();
        assert_eq!(
            s.prune_history_before(0, 1000).await.unwrap(),
            Default::default(),
            "{n}"
        );
        // Once finished, the job goes too.
        let claimed = s
            .claim("w", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        s.finish_job(claimed.id, claimed.attempt, &Outcome::Done(json!(null)))
            .await
            .unwrap();
        let r = s.prune_history_before(future, 1000).await.unwrap();
        assert_eq!(r.jobs, 1, "{n}");
        assert!(s.job(job.id).await.is_err(), "{n}");
    }
}

/// Reported as ignored, with what to set, when PostgreSQL is not configured: the suite then ran on SQLite only.
#[tokio::test]
#[cfg_attr(
    not(bf_postgres),
    ignore = "every store test ran on SQLite only: set BROKEFORGE_TEST_POSTGRES_URL (scripts/test-postgres.sh) for PostgreSQL too"
)]
async fn postgres_is_in_the_suite() {
    let names: Vec<_> = stores().await.iter().map(|t| t.name).collect();
    assert_eq!(names, ["sqlite", "postgres"]);
}

/// BrokeForge's own backup settings: one row, its passphrase sealed (and re-sealed by a rotation), each
/// occurrence claimed by one node only, its storage kept while in use, and turning it off forgets the
/// passphrase.
#[tokio::test]
async fn self_backup_settings_claims_and_passphrase() {
    for t in stores().await {
        let s = &t.store;
        let (user, _) = user_and_server(s, "self@example.com").await;
        let storage = s
            .create_backup_storage(&NewBackupStorage {
                user_id: user.id,
                name: "offsite".into(),
                kind: "s3".into(),
                configuration: json!({}),
                secret: Some(Secret::new("s3-secret")),
            })
            .await
            .unwrap();
        assert_eq!(s.self_backup().await.unwrap(), None, "{}", t.name);
        s.set_self_backup(
            storage.id,
            "30 2 * * *",
            14,
            1_000,
            &Secret::new("pass one"),
        )
        .await
        .unwrap();
        s.set_self_backup(storage.id, "0 3 * * *", 7, 2_000, &Secret::new("pass two"))
            .await
            .unwrap();
        let sb = s.self_backup().await.unwrap().unwrap();
        assert_eq!(
            (
                sb.schedule.as_str(),
                sb.keep_last,
                sb.next_run_at,
                sb.last_ok
            ),
            ("0 3 * * *", 7, 2_000, None),
            "{}",
            t.name
        );
        assert_eq!(
            s.self_backup_passphrase().await.unwrap().expose(),
            "pass two"
        );
        // Two nodes see the same due time: one claims it.
        assert!(s.claim_self_backup(2_000, 3_000).await.unwrap());
        assert!(!s.claim_self_backup(2_000, 3_000).await.unwrap());
        s.record_self_backup(false, "restic: repository not found")
            .await
            .unwrap();
        let sb = s.self_backup().await.unwrap().unwrap();
        assert_eq!(sb.last_ok, Some(false));
        assert!(sb.last_run_at.is_some());
        let err = s.delete_backup_storage(storage.id).await.unwrap_err();
        assert!(err.to_string().contains("own backup"), "{}: {err}", t.name);

        let new = MasterKey::generate().unwrap();
        s.rotate_master_key(&new).await.unwrap();
        s.close().await;
        let r = Store::open(&t.url, &new).await.unwrap();
        assert_eq!(
            r.self_backup_passphrase().await.unwrap().expose(),
            "pass two"
        );
        r.delete_self_backup().await.unwrap();
        assert_eq!(r.self_backup().await.unwrap(), None);
        assert!(r.self_backup_passphrase().await.is_err());
        r.delete_backup_storage(storage.id).await.unwrap();
        r.close().await;
    }
}

/// Metric rollups: whole 10-minute buckets with min/avg/max from the raw samples, hourly ones from those
/// (weighted by sample counts), written once however often they run, progress only forward; pruning by age.
#[tokio::test]
async fn metric_rollups_summarize_and_expire() {
    for t in stores().await {
        let s = &t.store;
        let n = t.name;
        let (_, server) = user_and_server(s, "ops@example.com").await;
        let hour = 3_600_000i64;
        let base = 1_800_000_000_000i64 / hour * hour; // an hour boundary
        // Two hours of one report a minute: load1 is the minute number, cpu is 10 then 30 each 10 minutes.
        for minute in 0..120i64 {
            let cpu = if minute % 10 < 5 { 10.0 } else { 30.0 };
            s.put_samples(
                server.id,
                base + minute * 60_000,
                &[("load1".into(), minute as f64), ("cpu_percent".into(), cpu)],
            )
            .await
            .unwrap();
        }
        // Nothing before the first whole bucket ends; then buckets of the first hour only (window 1 h).
        assert_eq!(
            s.roll_up(600, base + 300_000, hour).await.unwrap(),
            0,
            "{n}"
        );
        let written = s
            .roll_up(600, base + 2 * hour + 60_000, hour)
            .await
            .unwrap();
        assert_eq!(written, 12, "{n}: 6 buckets x 2 metrics");
        while s
            .roll_up(600, base + 2 * hour + 60_000, hour)
            .await
            .unwrap()
            > 0
        {}
        assert_eq!(
            s.rolled_up_until(600).await.unwrap(),
            Some(base + 2 * hour),
            "{n}"
        );
        // Running again writes nothing twice.
        assert_eq!(
            s.roll_up(600, base + 2 * hour + 60_000, hour)
                .await
                .unwrap(),
            0,
            "{n}"
        );
        let ten = s
            .rollups(server.id, "load1", 600, base, base + 2 * hour)
            .await
            .unwrap();
        assert_eq!(ten.len(), 12, "{n}");
        assert_eq!(
            (ten[0].at, ten[0].value),
            (base, 4.5),
            "{n}: minutes 0..9 average 4.5"
        );
        while s.roll_up(3600, base + 2 * hour, 24 * hour).await.unwrap() > 0 {}
        let hourly = s
            .rollups(server.id, "cpu_percent", 3600, base, base + 2 * hour)
            .await
            .unwrap();
        assert_eq!(hourly.len(), 2, "{n}");
        assert!((hourly[0].value - 20.0).abs() < 1e-9, "{n}: {hourly:?}");
        let hourly_load = s
            .rollups(server.id, "load1", 3600, base, base + 2 * hour)
            .await
            .unwrap();
        assert!(
            (hourly_load[1].value - 89.5).abs() < 1e-9,
            "{n}: {hourly_load:?}"
        );
        // Pruning by age removes the old buckets only.
        while s.prune_rollups_before(600, base + hour).await.unwrap() > 0 {}
        let left = s
            .rollups(server.id, "load1", 600, 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(left.len(), 6, "{n}");
        assert!(left.iter().all(|r| r.at >= base + hour), "{n}");
        assert_eq!(
            s.rollups(server.id, "load1", 3600, 0, i64::MAX)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}

/// The notification delivery log is pruned by age, in batches, newest kept.
#[tokio::test]
async fn notification_deliveries_are_pruned_by_age() {
    for t in stores().await {
        let s = &t.store;
        let n = t.name;
        let (_, server) = user_and_server(s, "ops@example.com").await;
        let channel = s
            .create_channel(
                server.team_id,
                "ops",
                "webhook",
                "https://hooks.example.com/x",
                &Secret::new("k"),
            )
            .await
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                s.start_delivery(channel.id, None, "firing")
                    .await
                    .unwrap()
                    .id,
            );
        }
        // The first two are old.
        raw_execute(
            s.pool(),
            &format!(
                "UPDATE notification_deliveries SET created_at = 1000 WHERE id IN ({}, {})",
                ids[0], ids[1]
            ),
        )
        .await
        .unwrap();
        assert_eq!(
            s.prune_notification_deliveries(2000, 1).await.unwrap(),
            1,
            "{n}"
        );
        assert_eq!(
            s.prune_notification_deliveries(2000, 10).await.unwrap(),
            1,
            "{n}"
        );
        assert_eq!(
            s.prune_notification_deliveries(2000, 10).await.unwrap(),
            0,
            "{n}"
        );
        let left: Vec<i64> = s
            .deliveries(channel.id, 10)
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left, vec![ids[2]], "{n}");
    }
}

#[tokio::test]
async fn idempotency_keys_expire_are_taken_over_and_pruned() {
    for t in stores().await {
        let s = &t.store;
        let n = t.name;
        let (user, _) = user_and_server(s, "keys@example.com").await;
        let req = ("POST", "/api/v1/servers", "hash-a");
        let age = |key: &'static str, by: i64| async move {
            sqlx::query("UPDATE idempotency_keys SET created_at = created_at - $1 WHERE key = $2")
                .bind(by)
                .bind(key)
                .execute(s.pool())
                .await
                .unwrap();
        };
        // A claim without an answer is "in progress" until it is abandoned, then the same request runs.
        assert_eq!(
            s.claim_idempotent(user.id, "k1", req).await.unwrap(),
            Idempotent::Run,
            "{n}"
        );
        assert_eq!(
            s.claim_idempotent(user.id, "k1", req).await.unwrap(),
            Idempotent::InProgress,
            "{n}"
        );
        age("k1", IDEMPOTENCY_STALE_MS + 1000).await;
        // ... but not another request: the key still names the first one.
        let other = ("POST", "/api/v1/servers", "hash-b");
        assert_eq!(
            s.claim_idempotent(user.id, "k1", other).await.unwrap(),
            Idempotent::Mismatch,
            "{n}"
        );
        assert_eq!(
            s.claim_idempotent(user.id, "k1", req).await.unwrap(),
            Idempotent::Run,
            "{n}"
        );
        // Taken over: it is fresh again, so a second retry waits.
        assert_eq!(
            s.claim_idempotent(user.id, "k1", req).await.unwrap(),
            Idempotent::InProgress,
            "{n}"
        );

        // An answered key replays until it expires; an expired one is free for any request.
        assert_eq!(
            s.claim_idempotent(user.id, "k2", req).await.unwrap(),
            Idempotent::Run,
            "{n}"
        );
        s.finish_idempotent(user.id, "k2", 202, b"{\"job\":1}")
            .await
            .unwrap();
        age("k2", IDEMPOTENCY_STALE_MS + 1000).await;
        assert_eq!(
            s.claim_idempotent(user.id, "k2", req).await.unwrap(),
            Idempotent::Replay {
                status: 202,
                body: b"{\"job\":1}".to_vec()
            },
            "{n}"
        );
        age("k2", IDEMPOTENCY_TTL_MS).await;
        assert_eq!(
            s.claim_idempotent(user.id, "k2", other).await.unwrap(),
            Idempotent::Run,
            "{n}"
        );

        // The pruner removes expired keys only.
        assert_eq!(
            s.claim_idempotent(user.id, "k3", req).await.unwrap(),
            Idempotent::Run,
            "{n}"
        );
        age("k3", IDEMPOTENCY_TTL_MS + 1000).await;
        let cutoff = brokeforge_core::time::now_ms() - IDEMPOTENCY_TTL_MS;
        assert_eq!(
            s.prune_idempotency_keys(cutoff, 100).await.unwrap(),
            1,
            "{n}"
        );
        assert_eq!(
            s.prune_idempotency_keys(cutoff, 100).await.unwrap(),
            0,
            "{n}"
        );
        assert_eq!(
            s.claim_idempotent(user.id, "k2", other).await.unwrap(),
            Idempotent::InProgress,
            "{n}"
        );
    }
}

#[tokio::test]
async fn audit_action_filter_matches_its_text_literally() {
    for t in stores().await {
        let s = &t.store;
        let n = t.name;
        for action in ["POST /a_b", "POST /axb", "POST /100%", "POST /1000"] {
            s.append_audit(&NewAuditEntry {
                actor: "ops@example.com".into(),
                action: action.into(),
                status: 200,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let found = |text: &'static str| async move {
            let mut v: Vec<String> = s
                .audit_page(&AuditFilter {
                    action: Some(text.into()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.action)
                .collect();
            v.sort();
            v
        };
        assert_eq!(found("a_b").await, ["POST /a_b"], "{n}");
        assert_eq!(found("100%").await, ["POST /100%"], "{n}");
        assert_eq!(found("/a").await, ["POST /a_b", "POST /axb"], "{n}");
    }
}
