//! The executor and the sample package against real stores (SQLite, PostgreSQL when configured) and real SSH
//! (the in-process server, and OpenSSH when configured).

use std::time::Duration;

use brokeforge_core::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionType, Secret, ServiceStatus,
    ServiceType,
};
use brokeforge_packages::base::Milestones;
use brokeforge_packages::services::sites::command::{CommandRequest, SiteCommandInstaller};
use brokeforge_packages::{
    Executor, FileContents, FileStep, PackageError, Plan, RunContext, RunStep, StoreChange,
};
use brokeforge_packages::{Package, PackageInstaller};
use brokeforge_ssh::SshError;
use brokeforge_ssh::testkit::{TestHost, test_hosts};
use brokeforge_store::testing::{TestStore, stores};
use brokeforge_store::{LogStream, NewServer, NewSite, Server, SiteCommandRecord, Store};

brokeforge_packages::milestones! {
    pub enum DemoMilestones {
        One => ("one", "Step one"),
        Two => ("two", "Step two"),
        Three => ("three", "Step three"),
    }
}

struct Fx {
    name: String,
    store: Store,
    server: Server,
    host: TestHost,
    executor: Executor,
    _t: std::sync::Arc<TestStore>,
}

impl Fx {
    fn ctx(&self) -> RunContext {
        RunContext::new(self.server.clone())
    }
    fn plan(&self) -> Plan {
        Plan::new::<DemoMilestones>(ServiceType::Server, CredentialKind::User)
    }
    async fn all_logs(&self) -> String {
        self.store
            .logs(self.server.id, 0)
            .await
            .unwrap()
            .iter()
            .map(|l| l.chunk.clone())
            .collect()
    }
    fn scratch(&self, what: &str) -> String {
        let base = match &self.host.server {
            Some(s) => s.dir().display().to_string(),
            None => "/tmp".to_string(),
        };
        format!(
            "{base}/bf-{what}-{}-{}",
            std::process::id(),
            brokeforge_core::time::now_ms()
        )
    }
}

/// Every store crossed with every SSH host, each with a server record pinned to the host's key.
async fn fixtures() -> Vec<Fx> {
    let mut out = Vec::new();
    for t in stores().await {
        let t = std::sync::Arc::new(t);
        for host in test_hosts().await {
            let store = t.store.clone();
            let user = store
                .create_user(&format!("{}@example.com", host.name), "x", false)
                .await
                .unwrap();
            let server = store
                .create_server(&NewServer {
                    user_id: user.id,
                    name: "test".into(),
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
            out.push(Fx {
                name: format!("{}/{}", t.name, host.name),
                executor: Executor::new(store.clone()),
                store,
                server,
                host,
                _t: t.clone(),
            });
        }
    }
    out
}

#[tokio::test]
async fn success_writes_every_milestone_in_order() {
    for fx in fixtures().await {
        let path = fx.scratch("file");
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run("echo hello")
            .track(DemoMilestones::Two)
            .put_file(FileStep {
                path: path.clone(),
                contents: FileContents::Text("line 1\nit's $x\n".into()),
                owner: None,
                mode: 0o640,
                credential: None,
                check: Some("grep -q 'line 1' \"$1\"".into()),
            })
            .run(format!("stat -c %a {path} && cat {path}"))
            .track(DemoMilestones::Three)
            .record(StoreChange::UpsertService {
                name: "demo".into(),
                service_type: ServiceType::Server,
                configuration: serde_json::json!({"v": 1}),
                status: ServiceStatus::Active,
            });
        let report = fx
            .executor
            .run(&fx.ctx(), &plan, ProvisionType::Install)
            .await;
        let report = report.unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        assert_eq!(report.outputs[0].stdout_text(), "hello\n");
        assert_eq!(
            report.outputs[1].stdout_text(),
            "640\nline 1\nit's $x\n",
            "{}",
            fx.name
        );

        let events = fx.store.events(fx.server.id, 0).await.unwrap();
        let keys: Vec<_> = events
            .iter()
            .map(|e| (e.milestone.as_str(), e.current_step, e.total_steps))
            .collect();
        assert_eq!(
            keys,
            [("one", 1, 3), ("two", 2, 3), ("three", 3, 3)],
            "{}",
            fx.name
        );
        assert!(events.iter().all(|e| e.status == EventStatus::Completed));
        assert!(
            events
                .iter()
                .all(|e| e.provision_type == ProvisionType::Install)
        );
        assert_eq!(events[2].progress_percentage(), 100.0);
        assert_eq!(events[0].label, DemoMilestones::One.label());

        let services = fx.store.services(fx.server.id).await.unwrap();
        assert_eq!(services[0].status, ServiceStatus::Active);
        let logs = fx.store.logs(fx.server.id, 0).await.unwrap();
        assert!(
            logs.iter()
                .any(|l| l.stream == LogStream::Stdout && l.chunk == "hello\n")
        );
        assert!(
            logs.iter()
                .any(|l| l.stream == LogStream::System && l.chunk == "$ echo hello\n")
        );
        assert_eq!(
            fx.store
                .server(fx.server.id)
                .await
                .unwrap()
                .connection_status,
            ConnectionStatus::Connected
        );
    }
}

#[tokio::test]
async fn a_failing_command_fails_its_milestone_and_stops_the_plan() {
    for fx in fixtures().await {
        let marker = fx.scratch("never");
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run("echo partial; echo 'something broke' >&2; exit 3")
            .track(DemoMilestones::Two)
            .run(format!("touch {marker}"))
            .record(StoreChange::DeleteService { name: "x".into() });
        let err = fx
            .executor
            .run(&fx.ctx(), &plan, ProvisionType::Install)
            .await
            .unwrap_err();
        match &err {
            PackageError::CommandFailed {
                exit_code,
                timed_out,
                stdout,
                stderr,
                ..
            } => {
                assert_eq!(*exit_code, Some(3));
                assert!(!timed_out);
                assert_eq!(stdout, "partial\n");
                assert_eq!(stderr, "something broke\n");
            }
            e => panic!("{}: {e}", fx.name),
        }
        let events = fx.store.events(fx.server.id, 0).await.unwrap();
        assert_eq!(events.len(), 1, "{}", fx.name);
        assert_eq!(events[0].status, EventStatus::Failed);
        let error = events[0].error.clone().unwrap();
        assert!(
            error.contains("exited with code 3") && error.contains("something broke"),
            "{error}"
        );
        let check = fx
            .executor
            .run(
                &fx.ctx(),
                &fx.plan().run(format!("test ! -e {marker}")),
                ProvisionType::Install,
            )
            .await;
        assert!(check.is_ok(), "{}: a step after the failure ran", fx.name);
    }
}

#[tokio::test]
async fn a_timeout_ends_the_command_and_the_step() {
    for fx in fixtures().await {
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run_with_timeout("sleep 5", Duration::from_secs(1))
            .track(DemoMilestones::Two);
        let started = std::time::Instant::now();
        let err = fx
            .executor
            .run(&fx.ctx(), &plan, ProvisionType::Install)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4), "{}", fx.name);
        assert!(
            matches!(
                err,
                PackageError::CommandFailed {
                    timed_out: true,
                    ..
                }
            ),
            "{}: {err}",
            fx.name
        );
        let events = fx.store.events(fx.server.id, 0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, EventStatus::Failed);
        assert!(
            events[0]
                .error
                .as_deref()
                .unwrap()
                .contains("timed out after 1 s")
        );
    }
}

#[tokio::test]
async fn a_changed_host_key_stops_the_run_before_any_command() {
    for fx in fixtures().await {
        let other = brokeforge_ssh::keys::generate_ed25519("other")
            .unwrap()
            .fingerprint;
        fx.store
            .pin_host_key(fx.server.id, Some(&other))
            .await
            .unwrap();
        let server = fx.store.server(fx.server.id).await.unwrap();
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run("echo should-not-run");
        let err = fx
            .executor
            .run(&RunContext::new(server), &plan, ProvisionType::Install)
            .await
            .unwrap_err();
        assert!(
            matches!(err, PackageError::Ssh(SshError::HostKeyMismatch { .. })),
            "{}: {err}",
            fx.name
        );
        let events = fx.store.events(fx.server.id, 0).await.unwrap();
        assert_eq!(events[0].status, EventStatus::Failed);
        let error = events[0].error.clone().unwrap();
        assert!(
            error.contains(&other) && error.contains(&fx.host.fingerprint),
            "{error}"
        );
        if let Some(s) = &fx.host.server {
            assert!(
                s.commands().is_empty(),
                "{}: commands ran: {:?}",
                fx.name,
                s.commands()
            );
        }
        assert_eq!(
            fx.store
                .server(fx.server.id)
                .await
                .unwrap()
                .connection_status,
            ConnectionStatus::Failed
        );
    }
}

#[tokio::test]
async fn trust_on_first_use_pins_only_when_allowed() {
    for fx in fixtures().await {
        fx.store.pin_host_key(fx.server.id, None).await.unwrap();
        let server = fx.store.server(fx.server.id).await.unwrap();
        let plan = fx.plan().track(DemoMilestones::One).run("true");
        let err = fx
            .executor
            .run(
                &RunContext::new(server.clone()),
                &plan,
                ProvisionType::Install,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, PackageError::Ssh(SshError::HostKeyUnknown { .. })),
            "{}: {err}",
            fx.name
        );
        assert_eq!(
            fx.store
                .server(fx.server.id)
                .await
                .unwrap()
                .host_key_fingerprint,
            None
        );

        let ctx = RunContext {
            trust_on_first_use: true,
            ..RunContext::new(server)
        };
        fx.executor
            .run(&ctx, &plan, ProvisionType::Install)
            .await
            .unwrap();
        assert_eq!(
            fx.store
                .server(fx.server.id)
                .await
                .unwrap()
                .host_key_fingerprint
                .as_deref(),
            Some(fx.host.fingerprint.as_str())
        );
    }
}

#[tokio::test]
async fn secrets_never_reach_events_logs_or_command_lines() {
    for fx in fixtures().await {
        let secret = "S3cr3t-pa55 'w\"o$rd";
        let path = fx.scratch("secret");
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run_step(RunStep {
                command: "cat; echo".into(),
                timeout: Duration::from_secs(10),
                stdin: Some(Secret::new(secret)),
                credential: None,
                private_output: false,
            })
            .put_file(FileStep {
                path: path.clone(),
                contents: FileContents::Secret(Secret::new(secret)),
                owner: None,
                mode: 0o600,
                credential: None,
                check: None,
            })
            .track(DemoMilestones::Two)
            .run(format!("cat {path}; echo; cat {path} >&2; exit 1"));
        let err = fx
            .executor
            .run(&fx.ctx(), &plan, ProvisionType::Install)
            .await
            .unwrap_err();
        // The caller gets the real output only through the report; errors are redacted.
        assert!(!err.to_string().contains(secret), "{}", fx.name);
        let logs = fx.all_logs().await;
        assert!(logs.contains("********"), "{}: {logs}", fx.name);
        assert!(!logs.contains(secret), "{}: {logs}", fx.name);
        for e in fx.store.events(fx.server.id, 0).await.unwrap() {
            let text = format!("{} {} {:?}", e.label, e.details, e.error);
            assert!(!text.contains(secret), "{}: {text}", fx.name);
        }
        if let Some(s) = &fx.host.server {
            assert!(s.commands().iter().all(|c| !c.contains(secret)));
        }
        assert!(!plan.to_string().contains(secret));
    }
}

#[tokio::test]
async fn cancelling_stops_the_run_and_marks_the_milestone() {
    for fx in fixtures().await {
        let ctx = fx.ctx();
        let token = ctx.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            token.cancel();
        });
        let plan = fx
            .plan()
            .track(DemoMilestones::One)
            .run("sleep 10")
            .track(DemoMilestones::Two)
            .run("true");
        let started = std::time::Instant::now();
        let err = fx
            .executor
            .run(&ctx, &plan, ProvisionType::Uninstall)
            .await
            .unwrap_err();
        assert!(matches!(err, PackageError::Cancelled), "{}: {err}", fx.name);
        assert!(started.elapsed() < Duration::from_secs(5));
        let events = fx.store.events(fx.server.id, 0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].status, EventStatus::Cancelled);
        assert_eq!(events[0].provision_type, ProvisionType::Uninstall);
    }
}

#[tokio::test]
async fn site_command_installer_runs_commands_literally_and_keeps_history() {
    for fx in fixtures().await {
        let dir = fx.scratch("site");
        fx.executor
            .run(
                &fx.ctx(),
                &fx.plan().run(format!("mkdir -p {dir}/current")),
                ProvisionType::Install,
            )
            .await
            .unwrap();
        let site = fx
            .store
            .create_site(&NewSite {
                server_id: fx.server.id,
                domain: "example.com".into(),
                document_root: dir.clone(),
                php_version: None,
                status: ServiceStatus::Active,
                configuration: serde_json::json!({}),
            })
            .await
            .unwrap();
        let run = |command: &'static str, timeout: Duration| {
            let (executor, ctx) = (fx.executor.clone(), fx.ctx());
            let request = CommandRequest::new(site.id, command, timeout);
            async move {
                SiteCommandInstaller
                    .execute(&executor, &ctx, &request)
                    .await
                    .map(|v| serde_json::from_value::<SiteCommandRecord>(v).unwrap())
            }
        };
        let ok = run("echo \"a 'b' \\$c\" && pwd", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(ok.success, "{}: {ok:?}", fx.name);
        assert_eq!(
            ok.output,
            format!("a 'b' $c\n{dir}/current\n"),
            "{}",
            fx.name
        );
        assert_eq!(ok.exit_code, Some(0));

        let bad = run("echo no >&2; exit 4", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(!bad.success);
        assert_eq!(bad.exit_code, Some(4));
        assert_eq!(bad.error_output, "no\n");

        let slow = run("sleep 5", Duration::from_secs(1)).await.unwrap();
        assert!(slow.timed_out && !slow.success, "{}: {slow:?}", fx.name);
        assert_eq!(slow.exit_code, None);
        assert!(slow.duration_ms < 4000);

        let empty = run("  ", Duration::from_secs(10)).await;
        assert!(matches!(empty, Err(PackageError::Validation(_))));

        let history = fx.store.site_commands(site.id, 10).await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].command, "sleep 5");
        assert_eq!(history[1].exit_code, Some(4));
        assert!(history[2].success);
        assert_eq!(history[2], ok);
    }
}

mod worker {
    use super::*;
    use brokeforge_packages::jobs::{Worker, WorkerConfig};
    use brokeforge_packages::services::server::synthetic::SyntheticPlan;
    use brokeforge_store::{Job, JobStatus, JobTarget, NewJob};
    use tokio_util::sync::CancellationToken;

    fn config(concurrency: usize) -> WorkerConfig {
        WorkerConfig {
            id: "test-worker".into(),
            concurrency,
            lease: Duration::from_millis(600),
            resume_limit: 3,
            grace: Duration::from_secs(5),
        }
    }

    fn start(store: &Store, cfg: WorkerConfig) -> (tokio::task::JoinHandle<()>, CancellationToken) {
        let stop = CancellationToken::new();
        let worker = Worker::new(store.clone(), brokeforge_packages::registry(), cfg);
        let s = stop.clone();
        (
            tokio::spawn(async move { worker.run(s).await.unwrap() }),
            stop,
        )
    }

    async fn wait(store: &Store, id: i64) -> Job {
        for _ in 0..400 {
            let job = store.job(id).await.unwrap();
            if job.status.is_finished() {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "job {id} did not finish: {:?}",
            store.job(id).await.unwrap()
        );
    }

    async fn second_server(fx: &Fx) -> Server {
        let s = fx
            .store
            .create_server(&NewServer {
                user_id: fx.server.user_id,
                name: "second".into(),
                public_ip: fx.host.host.clone(),
                ssh_port: fx.host.port,
                host_key_fingerprint: Some(fx.host.fingerprint.clone()),
            })
            .await
            .unwrap();
        fx.store
            .put_credential(
                s.id,
                CredentialKind::User,
                &fx.host.public_key,
                &fx.host.key,
            )
            .await
            .unwrap();
        s
    }

    fn synthetic(server: i64, steps: usize, sleep_ms: u64) -> NewJob {
        NewJob::new(
            SyntheticPlan::JOB,
            Some(server),
            SyntheticPlan::payload(steps, sleep_ms),
        )
    }

    #[tokio::test]
    async fn jobs_of_one_server_never_overlap_and_other_servers_run_in_parallel() {
        for fx in fixtures().await {
            let other = second_server(&fx).await;
            // A lease long enough that a busy machine never loses one here: a resumed job keeps its first
            // start time, which would make the spans below meaningless.
            let (handle, stop) = start(
                &fx.store,
                WorkerConfig {
                    lease: Duration::from_secs(3),
                    ..config(4)
                },
            );
            let a1 = fx
                .store
                .enqueue(&synthetic(fx.server.id, 2, 500))
                .await
                .unwrap();
            let a2 = fx
                .store
                .enqueue(&synthetic(fx.server.id, 2, 500))
                .await
                .unwrap();
            let b1 = fx
                .store
                .enqueue(&synthetic(other.id, 2, 500))
                .await
                .unwrap();
            let (a1, a2, b1) = (
                wait(&fx.store, a1.id).await,
                wait(&fx.store, a2.id).await,
                wait(&fx.store, b1.id).await,
            );
            for j in [&a1, &a2, &b1] {
                assert_eq!(j.status, JobStatus::Done, "{}: {j:?}", fx.name);
                assert_eq!(j.attempt, 1, "{}: a job was resumed: {j:?}", fx.name);
            }
            let span = |j: &Job| (j.started_at.unwrap(), j.finished_at.unwrap());
            let (a1s, a1e) = span(&a1);
            let (a2s, _) = span(&a2);
            let (b1s, b1e) = span(&b1);
            // Each timestamp is taken just before its statement, which may then wait for the database's write
            // lock: a claim stamped a moment before the previous job's finish commits can carry the earlier
            // time. A real overlap would be a whole job long (a second here).
            const SKEW_MS: i64 = 50;
            assert!(
                a1e <= a2s + SKEW_MS,
                "{}: jobs of one server overlapped: {a1e} > {a2s}",
                fx.name
            );
            assert!(
                b1s < a1e && a1s < b1e,
                "{}: jobs of two servers did not run in parallel",
                fx.name
            );
            let events = fx.store.events(fx.server.id, 0).await.unwrap();
            assert_eq!(events.len(), 4);
            assert!(
                events
                    .iter()
                    .all(|e| e.job_id.is_some() && e.status == EventStatus::Completed)
            );
            stop.cancel();
            handle.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_cancelled_job_stops_between_steps_and_ends_cancelled() {
        for fx in fixtures().await {
            let (handle, stop) = start(&fx.store, config(2));
            let job = fx
                .store
                .enqueue(&NewJob {
                    target: Some(JobTarget::Service {
                        name: "demo".into(),
                        service_type: ServiceType::Database,
                        provision_type: ProvisionType::Install,
                    }),
                    ..synthetic(fx.server.id, 50, 100)
                })
                .await
                .unwrap();
            // Wait until it runs its steps; the record says installing meanwhile.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while fx.store.job_events(job.id).await.unwrap().is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{}: the job never started",
                    fx.name
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                fx.store.job(job.id).await.unwrap().status,
                JobStatus::Running
            );
            assert_eq!(
                fx.store.services(fx.server.id).await.unwrap()[0].status,
                ServiceStatus::Installing
            );
            fx.store.cancel_job(job.id).await.unwrap();
            let done = wait(&fx.store, job.id).await;
            assert_eq!(done.status, JobStatus::Cancelled, "{}", fx.name);
            let events = fx.store.events(fx.server.id, 0).await.unwrap();
            assert!(events.len() < 50, "{}: ran to the end", fx.name);
            assert_eq!(events.last().unwrap().status, EventStatus::Cancelled);
            let svc = &fx.store.services(fx.server.id).await.unwrap()[0];
            assert_eq!(svc.status, ServiceStatus::Failed);
            assert_eq!(svc.error.as_deref(), Some("cancelled"));
            stop.cancel();
            handle.await.unwrap();
        }
    }

    #[tokio::test]
    async fn lifecycle_marks_records_active_failed_or_removed() {
        for fx in fixtures().await {
            let (handle, stop) = start(&fx.store, config(2));
            let target = |p| JobTarget::Service {
                name: "redis".into(),
                service_type: ServiceType::Database,
                provision_type: p,
            };
            let ok = fx
                .store
                .enqueue(&NewJob {
                    target: Some(target(ProvisionType::Install)),
                    ..synthetic(fx.server.id, 1, 0)
                })
                .await
                .unwrap();
            assert_eq!(wait(&fx.store, ok.id).await.status, JobStatus::Done);
            assert_eq!(
                fx.store.services(fx.server.id).await.unwrap()[0].status,
                ServiceStatus::Active
            );

            let rm = fx
                .store
                .enqueue(&NewJob {
                    target: Some(target(ProvisionType::Uninstall)),
                    ..synthetic(fx.server.id, 1, 0)
                })
                .await
                .unwrap();
            assert_eq!(wait(&fx.store, rm.id).await.status, JobStatus::Done);
            assert!(fx.store.services(fx.server.id).await.unwrap().is_empty());

            // A failure (the server's key changed) marks the record failed with the reason.
            let other = brokeforge_ssh::keys::generate_ed25519("x")
                .unwrap()
                .fingerprint;
            fx.store
                .pin_host_key(fx.server.id, Some(&other))
                .await
                .unwrap();
            let bad = fx
                .store
                .enqueue(&NewJob {
                    target: Some(target(ProvisionType::Install)),
                    ..synthetic(fx.server.id, 1, 0)
                })
                .await
                .unwrap();
            let bad = wait(&fx.store, bad.id).await;
            assert_eq!(bad.status, JobStatus::Failed);
            assert!(
                bad.error.as_deref().unwrap().contains("host key"),
                "{:?}",
                bad.error
            );
            let svc = &fx.store.services(fx.server.id).await.unwrap()[0];
            assert_eq!(svc.status, ServiceStatus::Failed);
            assert!(svc.error.as_deref().unwrap().contains(&other));

            // A failed job for a site: a new one is failed; a serving one (a PHP change that failed) serves on.
            for (before, after) in [
                (ServiceStatus::Installing, ServiceStatus::Failed),
                (ServiceStatus::Active, ServiceStatus::Active),
            ] {
                let site = fx
                    .store
                    .create_site(&NewSite {
                        server_id: fx.server.id,
                        domain: format!("{}.example.com", before.as_str()),
                        document_root: "/var/www/x".into(),
                        php_version: None,
                        status: before,
                        configuration: serde_json::json!({}),
                    })
                    .await
                    .unwrap();
                let job = fx
                    .store
                    .enqueue(&NewJob {
                        target: Some(JobTarget::Site {
                            id: site.id,
                            provision_type: ProvisionType::Install,
                        }),
                        ..synthetic(fx.server.id, 1, 0)
                    })
                    .await
                    .unwrap();
                assert_eq!(wait(&fx.store, job.id).await.status, JobStatus::Failed);
                let now = fx.store.site(site.id).await.unwrap().status;
                assert_eq!(now, after, "{}: a site that was {before:?}", fx.name);
            }
            stop.cancel();
            handle.await.unwrap();
        }
    }

    #[tokio::test]
    async fn site_command_job_runs_through_the_queue() {
        for fx in fixtures().await {
            let dir = fx.scratch("jobsite");
            fx.executor
                .run(
                    &fx.ctx(),
                    &fx.plan().run(format!("mkdir -p {dir}/current")),
                    ProvisionType::Install,
                )
                .await
                .unwrap();
            let site = fx
                .store
                .create_site(&NewSite {
                    server_id: fx.server.id,
                    domain: "jobs.example.com".into(),
                    document_root: dir.clone(),
                    php_version: None,
                    status: ServiceStatus::Active,
                    configuration: serde_json::json!({}),
                })
                .await
                .unwrap();
            let (handle, stop) = start(&fx.store, config(2));
            let job = fx
                .store
                .enqueue(
                    &brokeforge_packages::base::package::job::<SiteCommandInstaller>(
                        fx.server.id,
                        &CommandRequest::new(
                            site.id,
                            "echo hi from $(basename $PWD)",
                            Duration::from_secs(10),
                        ),
                    )
                    .unwrap(),
                )
                .await
                .unwrap();
            let done = wait(&fx.store, job.id).await;
            assert_eq!(done.status, JobStatus::Done, "{}: {done:?}", fx.name);
            let result = done.result.unwrap();
            assert_eq!(result["success"], true);
            assert!(dir.starts_with('/'));
            assert_eq!(result["output"], "hi from current\n");
            assert_eq!(fx.store.site_commands(site.id, 5).await.unwrap().len(), 1);
            stop.cancel();
            handle.await.unwrap();
        }
    }

    #[tokio::test]
    async fn shutdown_releases_unfinished_jobs_for_another_worker() {
        for fx in fixtures().await {
            let (handle, stop) = start(
                &fx.store,
                WorkerConfig {
                    grace: Duration::from_millis(200),
                    ..config(1)
                },
            );
            let job = fx
                .store
                .enqueue(&synthetic(fx.server.id, 20, 100))
                .await
                .unwrap();
            for _ in 0..200 {
                if fx.store.job(job.id).await.unwrap().status == JobStatus::Running {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
            handle.await.unwrap();
            let released = fx.store.job(job.id).await.unwrap();
            assert_eq!(
                released.status,
                JobStatus::Queued,
                "{}: {released:?}",
                fx.name
            );
            // Another worker picks it up and finishes it.
            let (handle, stop) = start(&fx.store, config(1));
            let done = wait(&fx.store, job.id).await;
            assert_eq!(done.status, JobStatus::Done);
            assert_eq!(done.attempt, 2);
            stop.cancel();
            handle.await.unwrap();
        }
    }

    /// Two nodes on one PostgreSQL: a job queued on one wakes an idle worker on the other at once (NOTIFY),
    /// not at its next periodic look (5 s).
    #[tokio::test]
    #[cfg_attr(
        not(bf_postgres),
        ignore = "PostgreSQL only: set BROKEFORGE_TEST_POSTGRES_URL (scripts/test-postgres.sh)"
    )]
    async fn postgres_notify_wakes_workers_on_other_nodes() {
        let url = brokeforge_store::testing::postgres_schema_url()
            .await
            .expect("set BROKEFORGE_TEST_POSTGRES_URL");
        let key = brokeforge_store::MasterKey::generate().unwrap();
        let node_a = Store::open(&url, &key).await.unwrap();
        let node_b = Store::open(&url, &key).await.unwrap();
        let (handle, stop) = start(&node_a, config(2));
        // The worker's node hears other nodes once its listener is subscribed.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !node_a.listening_for_jobs() {
            assert!(
                std::time::Instant::now() < deadline,
                "the job listener never subscribed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = std::time::Instant::now();
        let job = node_b
            .enqueue(&NewJob::new(
                brokeforge_packages::services::NoopJob::KIND,
                None,
                serde_json::json!(null),
            ))
            .await
            .unwrap();
        let done = wait(&node_b, job.id).await;
        assert_eq!(done.status, JobStatus::Done);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}: NOTIFY did not wake the other node",
            started.elapsed()
        );
        stop.cancel();
        handle.await.unwrap();
    }
}

#[path = "fixtures/echo/mod.rs"]
mod echo;

/// A package is its folder: registering the folder puts it in the catalogue, the plan preview and the job
/// registry, with no other edit (the fixture), and the shipped demo package is found the same way.
mod contract {
    use std::collections::BTreeMap;

    use brokeforge_packages::base::registry::Registry;
    use brokeforge_packages::catalogue;
    use brokeforge_store::NewServer;
    use brokeforge_store::testing::stores;
    use serde_json::json;

    #[tokio::test]
    async fn a_package_folder_is_all_it_takes() {
        let mut r = Registry::default();
        super::echo::register(&mut r);
        let entry = r.entry("echo").unwrap();
        let keys: Vec<_> = entry.install_milestones.iter().map(|m| m.key).collect();
        assert_eq!(keys, ["say"]);
        assert_eq!(entry.installer_kind(), "echo_installer");
        assert!(r.get("echo_installer").is_some(), "its job is registered");
        assert!(r.package("echo_installer").is_some());

        brokeforge_packages::services::server::demo::enable();
        let demo = catalogue::entry("demo").unwrap();
        let registry = brokeforge_packages::registry();
        for kind in ["demo_installer", "demo_remover"] {
            assert!(registry.get(kind).is_some(), "{kind}");
        }
        assert_eq!(demo.remover_kind(), Some("demo_remover"));

        for t in stores().await {
            let store = &t.store;
            let user = store
                .create_user("contract@example.com", "x", false)
                .await
                .unwrap();
            let server = store
                .create_server(&NewServer {
                    user_id: user.id,
                    name: "contract".into(),
                    public_ip: "203.0.113.9".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                })
                .await
                .unwrap();
            // The preview is the package's own gathering and plan, run as a dry run.
            let plan = entry
                .installer
                .preview(store, &server, &json!({"word": "hi"}))
                .await
                .unwrap();
            assert!(plan.to_string().contains("$ echo hi"), "{plan}");
            assert!(
                entry
                    .installer
                    .preview(store, &server, &json!({"word": "hi; id"}))
                    .await
                    .is_err(),
                "its own validation runs in the preview"
            );
            let settings = BTreeMap::from([("fail_once_at".to_string(), "download".to_string())]);
            let plan = catalogue::preview(store, &server, "demo", &settings)
                .await
                .unwrap();
            assert!(plan.contains("failed on purpose"), "{plan}");
            // Nothing was queued or stored by previewing.
            assert!(store.jobs_for_server(server.id).await.unwrap().is_empty());
        }
    }
}

/// Concurrent changes of one site's configuration (a deploy recording its release while the user edits
/// settings, two jobs finishing at once) never drop each other: each is applied to the newest revision.
mod site_config {
    use brokeforge_core::ServiceStatus;
    use brokeforge_packages::services::sites::config::{ReleaseInfo, SiteConfig};
    use brokeforge_store::testing::stores;
    use brokeforge_store::{NewServer, NewSite};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_keep_each_other() {
        for t in stores().await {
            let store = t.store.clone();
            let user = store
                .create_user("cfg@example.com", "x", false)
                .await
                .unwrap();
            let server = store
                .create_server(&NewServer {
                    user_id: user.id,
                    name: "cfg".into(),
                    public_ip: "203.0.113.5".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                })
                .await
                .unwrap();
            let site = store
                .create_site(&NewSite {
                    server_id: server.id,
                    domain: "cfg.example.com".into(),
                    document_root: "/home/brokeforge/cfg.example.com".into(),
                    php_version: Some("8.2".into()),
                    status: ServiceStatus::Active,
                    configuration: SiteConfig::default().to_value(),
                })
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for i in 0..16i64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    SiteConfig::update(&store, site.id, |c| {
                        if i % 2 == 0 {
                            c.releases.push(ReleaseInfo {
                                name: format!("release-{i}"),
                                commit: None,
                                deployment_id: None,
                                deployed_at: i,
                            });
                        } else {
                            c.shared_paths.push(format!("path-{i}"));
                        }
                    })
                    .await
                    .unwrap();
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            let c = SiteConfig::of(&store.site(site.id).await.unwrap());
            assert_eq!(c.releases.len(), 8, "{}: {:?}", t.name, c.releases);
            assert_eq!(
                c.shared_paths.len(),
                2 + 8,
                "{}: {:?}",
                t.name,
                c.shared_paths
            );
        }
    }
}

/// Deploy webhooks: pushes while a deployment of the site waits in the queue join it (a flood of pushes is
/// one deployment), and a delivery id is acted on once.
mod webhooks {
    use brokeforge_core::ServiceStatus;
    use brokeforge_packages::services::sites::config::{
        RepositoryConfig, SiteConfig, WebhookSource,
    };
    use brokeforge_packages::services::sites::webhook::{self, WebhookOutcome};
    use brokeforge_store::testing::stores;
    use brokeforge_store::{NewServer, NewSite};

    #[tokio::test]
    async fn pushes_join_a_queued_deploy_and_replays_do_nothing() {
        for t in stores().await {
            let store = t.store.clone();
            let user = store
                .create_user("hook@example.com", "x", false)
                .await
                .unwrap();
            let server = store
                .create_server(&NewServer {
                    user_id: user.id,
                    name: "hook".into(),
                    public_ip: "203.0.113.6".into(),
                    ssh_port: 22,
                    host_key_fingerprint: None,
                })
                .await
                .unwrap();
            let config = SiteConfig {
                webhook_provider: WebhookSource::Generic,
                repository: Some(RepositoryConfig {
                    url: "https://git.example.com/acme/app.git".into(),
                    branch: "main".into(),
                    transport: "https".into(),
                    host: "git.example.com".into(),
                    port: 443,
                    deploy_key_public: None,
                    host_key_fingerprints: Vec::new(),
                    known_hosts: String::new(),
                }),
                ..SiteConfig::default()
            };
            let site = store
                .create_site(&NewSite {
                    server_id: server.id,
                    domain: "hook.example.com".into(),
                    document_root: "/home/brokeforge/hook.example.com".into(),
                    php_version: Some("8.2".into()),
                    status: ServiceStatus::Active,
                    configuration: config.to_value(),
                })
                .await
                .unwrap();
            let url_id = webhook::webhook_token(&store, &site).await.unwrap();
            let secret = webhook::signing_secret(&store, &site).await.unwrap();
            let call = |delivery: &'static str| {
                let secret = secret.expose().to_string();
                move |name: &str| match name {
                    "x-brokeforge-token" => Some(secret.clone()),
                    "x-brokeforge-delivery" => Some(delivery.to_string()),
                    _ => None,
                }
            };
            let first = webhook::handle(&store, site.id, url_id.expose(), call("one"), b"")
                .await
                .unwrap();
            let WebhookOutcome::Deployed(first) = first else {
                panic!("{}: {first:?}", t.name)
            };
            // No worker runs here: the deployment waits in the queue, and the next push joins it.
            let second = webhook::handle(&store, site.id, url_id.expose(), call("two"), b"")
                .await
                .unwrap();
            match second {
                WebhookOutcome::Joined(d) => assert_eq!(d.id, first.0.id, "{}", t.name),
                other => panic!("{}: {other:?}", t.name),
            }
            let replay = webhook::handle(&store, site.id, url_id.expose(), call("one"), b"")
                .await
                .unwrap();
            assert!(
                matches!(replay, WebhookOutcome::Ignored(_)),
                "{}: {replay:?}",
                t.name
            );
            assert_eq!(
                store.deployments(site.id, 10).await.unwrap().len(),
                1,
                "{}",
                t.name
            );
        }
    }
}

/// Commands on the server stop with their job: on cancel, after a lost lease, and when the job's next attempt
/// finds what a lost one left running; and two attempts never run commands on a server at once. The
/// in-process and loopback OpenSSH test servers run their commands on this machine, so the processes are
/// looked for here.
mod remote {
    use super::*;
    use brokeforge_packages::base::package::job;
    use brokeforge_packages::jobs::{Worker, WorkerConfig};
    use brokeforge_packages::services::sites::command::{CommandRequest, SiteCommandInstaller};
    use brokeforge_store::NewSite;
    use tokio_util::sync::CancellationToken;

    /// A `sleep` no other test runs: its argument finds it.
    fn unique_sleep() -> String {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        format!("sleep 3500.{}", u32::from_le_bytes(b) % 1_000_000)
    }

    fn running(pattern: &str) -> bool {
        std::process::Command::new("pgrep")
            .args(["-f", pattern])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    async fn until(what: &str, limit: Duration, f: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn site(fx: &Fx) -> brokeforge_store::ServerSite {
        let dir = fx.scratch("remote");
        fx.executor
            .run(
                &fx.ctx(),
                &fx.plan().run(format!("mkdir -p {dir}/current")),
                ProvisionType::Install,
            )
            .await
            .unwrap();
        fx.store
            .create_site(&NewSite {
                server_id: fx.server.id,
                domain: "remote.example.com".into(),
                document_root: dir,
                php_version: None,
                status: ServiceStatus::Active,
                configuration: serde_json::json!({}),
            })
            .await
            .unwrap()
    }

    fn worker(store: &Store) -> CancellationToken {
        let stop = CancellationToken::new();
        let w = Worker::new(
            store.clone(),
            brokeforge_packages::registry(),
            WorkerConfig {
                id: "remote-test".into(),
                concurrency: 2,
                lease: Duration::from_secs(3),
                ..WorkerConfig::default()
            },
        );
        tokio::spawn(w.run(stop.clone()));
        stop
    }

    #[tokio::test]
    async fn cancel_and_a_lost_lease_stop_the_command_on_the_server() {
        for fx in fixtures().await {
            let site = site(&fx).await;
            let stop = worker(&fx.store);
            for how in ["cancel", "lease"] {
                let sleep = unique_sleep();
                let request = CommandRequest::new(site.id, &sleep, Duration::from_secs(3600));
                let j = fx
                    .store
                    .enqueue(&job::<SiteCommandInstaller>(fx.server.id, &request).unwrap())
                    .await
                    .unwrap();
                until(
                    &format!("{}: the command starts", fx.name),
                    Duration::from_secs(30),
                    || running(&sleep),
                )
                .await;
                match how {
                    "cancel" => {
                        fx.store.cancel_job(j.id).await.unwrap();
                    }
                    _ => {
                        // Another node decides this worker is gone: the lease ends, the job is failed.
                        brokeforge_store::raw_execute(
                            fx.store.pool(),
                            &format!("UPDATE jobs SET lease_expires_at = 1 WHERE id = {}", j.id),
                        )
                        .await
                        .unwrap();
                        let rec = fx.store.recover_expired_jobs(3, |_| false).await.unwrap();
                        assert_eq!(rec.len(), 1, "{}", fx.name);
                    }
                }
                let done = fx
                    .store
                    .wait_for_job(j.id, Duration::from_secs(30))
                    .await
                    .unwrap();
                assert!(done.status.is_finished(), "{}: {done:?}", fx.name);
                until(
                    &format!(
                        "{}: after {how} the command still runs on the server",
                        fx.name
                    ),
                    Duration::from_secs(15),
                    || !running(&sleep),
                )
                .await;
            }
            stop.cancel();
        }
    }

    /// A run that vanished (its worker died mid-command): its shell stops the command when the connection
    /// goes (SIGTERM, SIGKILL five seconds later), so one that ignores SIGTERM still runs when the job's next
    /// attempt starts, which stops it before it runs anything, and says so in the log.
    #[tokio::test]
    async fn the_next_attempt_stops_what_a_lost_one_left_running() {
        for fx in fixtures().await {
            let sleep = unique_sleep();
            let tag = format!(
                "{}-{}-lost{}",
                fx.store.panel_id(),
                fx.server.id,
                std::process::id()
            );
            let ctx = |cancel: CancellationToken| RunContext {
                tag: Some(tag.clone()),
                cancel,
                ..fx.ctx()
            };
            let first = ctx(CancellationToken::new());
            let plan = fx
                .plan()
                .run_with_timeout(format!("trap '' TERM; {sleep}"), Duration::from_secs(3600));
            let executor = fx.executor.clone();
            let lost = tokio::spawn(async move {
                let _ = executor.run(&first, &plan, ProvisionType::Install).await;
            });
            until(
                &format!("{}: the command starts", fx.name),
                Duration::from_secs(30),
                || running(&sleep),
            )
            .await;
            // The worker dies: its task is gone, its connection dropped; the command ignores the SIGTERM.
            lost.abort();
            let _ = lost.await;
            assert!(
                running(&sleep),
                "{}: the command ended with its client",
                fx.name
            );
            let second = ctx(CancellationToken::new());
            fx.executor
                .run(&second, &fx.plan().run("true"), ProvisionType::Install)
                .await
                .unwrap();
            second.connections.close().await;
            until(
                &format!("{}: the next attempt left the old command running", fx.name),
                Duration::from_secs(10),
                || !running(&sleep),
            )
            .await;
            // The command, and the lost attempt's shell (the lock holder) when it still waited for it: which
            // of the two is still there when the next attempt looks depends on timing.
            let logs = fx.all_logs().await;
            let stopped = logs.split("stopped ").skip(1).find_map(|rest| {
                let (n, _) = rest.split_once(" command(s) an earlier attempt")?;
                n.parse::<u32>().ok()
            });
            assert!(matches!(stopped, Some(1 | 2)), "{}: {logs}", fx.name);
        }
    }

    /// Two attempts that both believe they own a server (a database that lost track) still run one after
    /// the other on it: the server's job lock makes the second wait.
    #[tokio::test]
    async fn the_server_lock_keeps_two_attempts_apart() {
        for fx in fixtures().await {
            let lock = format!(
                "/run/lock/brokeforge-test-{}-{}.lock",
                std::process::id(),
                fx.server.id
            );
            let ctx = |tag: &str| RunContext {
                tag: Some(format!("{tag}{}", std::process::id())),
                lock: Some(lock.clone()),
                ..fx.ctx()
            };
            let (a, b) = (ctx("a"), ctx("b"));
            let stamp = "date +%s%N";
            let plan = |s: &str| fx.plan().run(format!("{stamp}; sleep {s}; {stamp}"));
            let (plan_a, plan_b) = (plan("1.5"), plan("0.1"));
            // a holds the lock until its job ends (its connections close); b waits for it.
            let (ra, rb) = tokio::join!(
                async {
                    let r = fx.executor.run(&a, &plan_a, ProvisionType::Install).await;
                    a.connections.close().await;
                    r
                },
                async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    fx.executor.run(&b, &plan_b, ProvisionType::Install).await
                }
            );
            let times = |r: brokeforge_packages::RunReport| -> (u128, u128) {
                let t: Vec<u128> = r.outputs[0]
                    .stdout_text()
                    .lines()
                    .map(|l| l.trim().parse().unwrap())
                    .collect();
                (t[0], t[1])
            };
            let (a_start, a_end) = times(ra.unwrap());
            let (b_start, _) = times(rb.unwrap());
            b.connections.close().await;
            assert!(a_start < b_start, "{}", fx.name);
            assert!(
                b_start >= a_end,
                "{}: b ran while a did ({b_start} < {a_end})",
                fx.name
            );
        }
    }
}
