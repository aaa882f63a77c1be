//! The executor and the sample package against real stores (SQLite, PostgreSQL when configured) and real SSH
//! (the in-process server, and OpenSSH when configured).

use std::time::Duration;

use brokeforge_core::{
    ConnectionStatus, CredentialKind, EventStatus, ProvisionType, Secret, ServiceStatus,
    ServiceType,
};
use brokeforge_packages::base::Milestones;
use brokeforge_packages::services::sites::SiteCommandInstaller;
use brokeforge_packages::{
    Executor, FileContents, FileStep, PackageError, Plan, RunContext, RunStep, StoreChange,
};
use brokeforge_ssh::SshError;
use brokeforge_ssh::testkit::{TestHost, test_hosts};
use brokeforge_store::testing::{TestStore, stores};
use brokeforge_store::{LogStream, NewServer, NewSite, Server, Store};

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
            })
            .put_file(FileStep {
                path: path.clone(),
                contents: FileContents::Secret(Secret::new(secret)),
                owner: None,
                mode: 0o600,
                credential: None,
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
                &fx.plan().run(format!("mkdir -p {dir}")),
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
        let pkg = SiteCommandInstaller::new(site.clone());
        let ok = pkg
            .execute(
                &fx.executor,
                &fx.ctx(),
                "echo \"a 'b' \\$c\" && pwd",
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(ok.success, "{}: {ok:?}", fx.name);
        assert_eq!(ok.output, format!("a 'b' $c\n{dir}\n"), "{}", fx.name);
        assert_eq!(ok.exit_code, Some(0));

        let bad = pkg
            .execute(
                &fx.executor,
                &fx.ctx(),
                "echo no >&2; exit 4",
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(!bad.success);
        assert_eq!(bad.exit_code, Some(4));
        assert_eq!(bad.error_output, "no\n");

        let slow = pkg
            .execute(&fx.executor, &fx.ctx(), "sleep 5", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(slow.timed_out && !slow.success, "{}: {slow:?}", fx.name);
        assert_eq!(slow.exit_code, None);
        assert!(slow.duration_ms < 4000);

        let empty = pkg
            .execute(&fx.executor, &fx.ctx(), "  ", Duration::from_secs(10))
            .await;
        assert!(matches!(empty, Err(PackageError::Validation(_))));

        let history = fx.store.site_commands(site.id, 10).await.unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0].command, "sleep 5");
        assert_eq!(history[1].exit_code, Some(4));
        assert!(history[2].success);
        assert_eq!(history[2], ok);
    }
}
