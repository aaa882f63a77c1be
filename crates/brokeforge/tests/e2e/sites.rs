//! Story: sites deploy, roll back and survive a failed deploy; webhooks, background work, commands, .env.

use std::time::Duration;

use brokeforge_core::Secret;
use brokeforge_store::JobStatus;

use super::harness::*;

/// Sites end to end: bad domains refused before anything runs; a site with its placeholder; a git repository
/// on an SSH git server (its host key checked); deploy commit 1, then commit 2 through a signed webhook (a bad
/// signature changes nothing), roll back; a failing deploy leaves the live release serving; site commands
/// run literally, are timed out and kept in the history; the .env is written and read without being logged;
/// removal takes the vhost and files away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn sites_deploy_roll_back_and_survive_a_failed_deploy() {
    use brokeforge_packages::PackageInstaller;
    use brokeforge_packages::services::sites::certificate::{self, CertificateRequest};
    use brokeforge_packages::services::sites::command::{CommandRequest, SiteCommandInstaller};
    use brokeforge_packages::services::sites::config::SiteConfig;
    use brokeforge_packages::services::sites::environment::{self, EnvironmentInstaller};
    use brokeforge_packages::services::sites::git as git_repository_installer_keys;
    use brokeforge_packages::services::sites::repository::{
        self as git_repository_installer, RepositoryRequest,
    };
    use brokeforge_packages::services::sites::schedule::{self, SiteTasks};
    use brokeforge_packages::services::sites::site::{self as sites_site, SiteRequest};
    use brokeforge_packages::services::sites::{deployment, rollback, tasks, webhook};
    use brokeforge_store::DeploymentStatus;
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(15, "sites").await;
    let store = &panel.store;
    install(store, id, "webserver", &[]).await;

    // Bad domains: refused, nothing stored or queued.
    let jobs_before = store.jobs_for_server(id).await.unwrap().len();
    for bad in [
        "a.com;touch /tmp/x",
        "../etc",
        "$(id)",
        "app.test/../../etc",
        "-x.com",
    ] {
        let r = sites_site::create_site(
            store,
            id,
            &SiteRequest {
                domain: bad.into(),
                // Sites from before isolation (the shared app user) keep working.
                isolated: Some(false),
                ..Default::default()
            },
        )
        .await;
        assert!(
            matches!(r, Err(brokeforge_packages::PackageError::Validation(_))),
            "{bad}: {r:?}"
        );
    }
    assert!(store.sites(id).await.unwrap().is_empty());
    assert_eq!(store.jobs_for_server(id).await.unwrap().len(), jobs_before);

    let (site, job) = sites_site::create_site(
        store,
        id,
        &SiteRequest {
            domain: "app.test".into(),
            aliases: vec!["www.app.test".into()],
            // Sites from before isolation (the shared app user) keep working.
            isolated: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_ok(store, &job, "site install").await;
    let site = store.site(site.id).await.unwrap();
    assert_eq!(site.status, brokeforge_core::ServiceStatus::Active);
    assert!(
        site_page(&host.ip, "www.app.test")
            .await
            .contains("ready for its first deployment")
    );

    // A git server on the host: user `git`, a bare repository, commit 1 pushed.
    let commit1 = git_server(&host).await;

    // The user adds the deploy key to the git server.
    let (public, _) = git_repository_installer_keys::deploy_key(store, &site)
        .await
        .unwrap();
    let (again, _) = git_repository_installer_keys::deploy_key(store, &site)
        .await
        .unwrap();
    assert_eq!(public, again, "the deploy key is generated once");
    let auth = host
        .root(&format!(
            "printf '%s\\n' '{public}' > /srv/git/.ssh/authorized_keys && chown git:git /srv/git/.ssh/authorized_keys && chmod 600 /srv/git/.ssh/authorized_keys"
        ))
        .await;
    assert!(auth.success());

    // A host key that does not match what the user expects stops the installer.
    let wrong = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    let site = store.site(site.id).await.unwrap();
    let job = git_repository_installer::connect_repository(
        store,
        &site,
        &RepositoryRequest {
            url: "git@127.0.0.1:/srv/git/app.git".into(),
            branch: Some("main".into()),
            host_key_fingerprint: Some(wrong.into()),
        },
        true,
    )
    .await
    .unwrap();
    let failed = wait_job(store, job.id, Duration::from_secs(120)).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("does not match"),
        "{failed:?}"
    );
    assert!(
        SiteConfig::of(&store.site(site.id).await.unwrap())
            .repository
            .is_none()
    );

    // The right fingerprint: connected, and the first deployment is commit 1.
    let job = git_repository_installer::connect_repository(
        store,
        &site,
        &RepositoryRequest {
            url: "git@127.0.0.1:/srv/git/app.git".into(),
            branch: Some("main".into()),
            host_key_fingerprint: Some(host.fingerprint.clone()),
        },
        true,
    )
    .await
    .unwrap();
    let done = wait_ok(store, &job, "repository").await;
    let result = done.result.clone().unwrap();
    assert!(
        result["host_key_fingerprints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == &serde_json::json!(host.fingerprint)),
        "{result}"
    );
    let first = store
        .job(result["deployment_job_id"].as_i64().unwrap())
        .await
        .unwrap();
    wait_ok(store, &first, "first deployment").await;
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    let d1 = store.deployments(site.id, 10).await.unwrap()[0].clone();
    assert_eq!(d1.status, DeploymentStatus::Succeeded);
    assert_eq!(d1.commit_hash.as_deref(), Some(commit1.as_str()));
    assert_eq!(d1.triggered_by, "repository connected");
    let release1 = d1.release.clone().unwrap();

    // Background work: a scheduled command and a daemon with two processes, as the app user in the live
    // release (each writes where it runs); deployments and rollbacks move the daemons along.
    let bad = SiteTasks {
        schedules: vec![schedule::Schedule {
            cron: "* * * * *".into(),
            command: "true\n* * * * * root touch /tmp/owned".into(),
        }],
        daemons: vec![],
    };
    let site = store.site(site.id).await.unwrap();
    assert!(tasks::set_tasks(store, &site, &bad).await.is_err());
    let wanted = SiteTasks::parse(
        "* * * * * pwd -P > \"$HOME/schedule.out\"; id -un >> \"$HOME/schedule.out\"; echo scheduled-ran",
        "2: while true; do pwd -P > \"$HOME/daemon.out\"; sleep 1; done",
    )
    .unwrap();
    let job = tasks::set_tasks(store, &site, &wanted).await.unwrap();
    wait_ok(store, &job, "site tasks").await;
    let units = format!(
        "brokeforge-site-{id}-daemon-0@1 brokeforge-site-{id}-daemon-0@2",
        id = site.id
    );
    let state = host
        .root(&format!(
            "systemctl is-active {units}; cat /etc/cron.d/brokeforge-site-{}",
            site.id
        ))
        .await
        .stdout_text();
    assert!(state.starts_with("active\nactive\n"), "{state}");
    daemon_runs_in(&host, &release1).await;

    // Commit 2, deployed by a GitHub webhook; a wrong signature first changes nothing.
    let commit2 = push_commit_two(&host).await;
    let path = webhook::webhook_path(store, &site).await.unwrap();
    let secret = webhook::signing_secret(store, &site).await.unwrap();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let sign = |key: &str| {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let count = store.deployments(site.id, 100).await.unwrap().len();
    let bad_sig = sign("not the secret");
    let (status, _) = http_request(
        &panel.addr,
        "POST",
        "panel",
        path.expose(),
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &bad_sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http_request(
        &panel.addr,
        "POST",
        "panel",
        &format!("/hooks/sites/{}/deploy/{}", site.id, "0".repeat(48)),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(store.deployments(site.id, 100).await.unwrap().len(), count);
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    // Signed with the URL's id: that is not the key.
    let url_sig = sign(path.expose().rsplit('/').next().unwrap());
    let (status, _) = http_request(
        &panel.addr,
        "POST",
        "panel",
        path.expose(),
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &url_sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 401);
    let good_sig = sign(secret.expose());
    let (status, answer) = http_request(
        &panel.addr,
        "POST",
        "panel",
        path.expose(),
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "e2e-delivery-1"),
            ("X-Hub-Signature-256", &good_sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let hook_job = store.job(answer["job_id"].as_i64().unwrap()).await.unwrap();
    wait_ok(store, &hook_job, "webhook deployment").await;
    assert_eq!(site_page(&host.ip, "app.test").await, "commit two");
    let d2 = store.deployments(site.id, 1).await.unwrap()[0].clone();
    assert_eq!(d2.commit_hash.as_deref(), Some(commit2.as_str()));
    assert_eq!(d2.triggered_by, "webhook:github");
    daemon_runs_in(&host, d2.release.as_deref().unwrap()).await;
    assert!(d2.duration_ms().unwrap() > 0);

    // Roll back to commit 1's release.
    let site = store.site(site.id).await.unwrap();
    let (rb, job) = rollback::rollback(store, &site, &release1, "test")
        .await
        .unwrap();
    wait_ok(store, &job, "rollback").await;
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    let rb = store.deployment(rb.id).await.unwrap();
    assert_eq!(
        (rb.kind.as_str(), rb.status),
        ("rollback", DeploymentStatus::Succeeded)
    );
    assert_eq!(rb.commit_hash.as_deref(), Some(commit1.as_str()));
    daemon_runs_in(&host, &release1).await;
    // cron runs the schedule within a minute, in the live release, as the app user.
    let scheduled = host
        .root("for i in $(seq 1 75); do [ -s /home/brokeforge/schedule.out ] && break; sleep 1; done; cat /home/brokeforge/schedule.out")
        .await
        .stdout_text();
    assert!(
        scheduled.starts_with("/home/brokeforge/app.test/releases/")
            && scheduled.ends_with("\nbrokeforge\n"),
        "{scheduled}"
    );
    // What it printed is in the journal, read back through BrokeForge.
    let output = tasks::SiteTasksInstaller
        .recent_output(
            &brokeforge_packages::Executor::new(store.clone()),
            &brokeforge_packages::RunContext::new(store.server(id).await.unwrap()),
            &store.site(site.id).await.unwrap(),
            50,
        )
        .await
        .unwrap();
    assert!(output.contains("scheduled-ran"), "{output}");

    // A deploy whose script fails: recorded as failed with its log; the live release keeps serving.
    let site = store.site(site.id).await.unwrap();
    let mut config = SiteConfig::of(&site);
    config.deploy_script = Some("echo about to fail\nexit 3\n".into());
    store
        .set_site_configuration(site.id, &config.to_value())
        .await
        .unwrap();
    let site = store.site(site.id).await.unwrap();
    let (bad, job) = deployment::deploy(store, &site, None, "test")
        .await
        .unwrap();
    let failed = wait_job(store, job.id, Duration::from_secs(300)).await;
    assert_eq!(failed.status, JobStatus::Failed);
    let bad = store.deployment(bad.id).await.unwrap();
    assert_eq!(bad.status, DeploymentStatus::Failed);
    assert_eq!(bad.exit_code, Some(3));
    let log: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.job_id == Some(job.id))
        .map(|l| l.chunk.clone())
        .collect();
    assert!(log.contains("about to fail"), "{log}");
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    let releases = host
        .root("ls /home/brokeforge/app.test/releases")
        .await
        .stdout_text();
    assert!(
        !releases.contains(bad.release.as_deref().unwrap()),
        "{releases}"
    );

    // Site commands: literal quoting, exit codes, timeouts, history.
    let executor = brokeforge_packages::Executor::new(store.clone());
    let ctx = brokeforge_packages::RunContext::new(store.server(id).await.unwrap());
    let rec = serde_json::from_value::<brokeforge_store::SiteCommandRecord>(
        SiteCommandInstaller
            .execute(
                &executor,
                &ctx,
                &CommandRequest::new(
                    site.id,
                    "echo \"it's $HOME\" 'a$b'; cat public/index.php",
                    Duration::from_secs(30),
                ),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(rec.success);
    assert_eq!(
        rec.output,
        "it's /home/brokeforge a$b\n<?php echo \"commit one\";"
    );
    let rec = serde_json::from_value::<brokeforge_store::SiteCommandRecord>(
        SiteCommandInstaller
            .execute(
                &executor,
                &ctx,
                &CommandRequest::new(
                    site.id,
                    "echo out; echo err >&2; exit 7",
                    Duration::from_secs(30),
                ),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (rec.success, rec.exit_code, rec.error_output.as_str()),
        (false, Some(7), "err\n")
    );
    let rec = serde_json::from_value::<brokeforge_store::SiteCommandRecord>(
        SiteCommandInstaller
            .execute(
                &executor,
                &ctx,
                &CommandRequest::new(site.id, "sleep 30", Duration::from_secs(2)),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(rec.timed_out && !rec.success, "{rec:?}");
    assert!(rec.duration_ms < 15_000, "{rec:?}");
    let history = store.site_commands(site.id, 10).await.unwrap();
    assert_eq!(history.len(), 3);

    // The .env: written through the channel, read back, never logged.
    let secret = Secret::new("APP_KEY=base64:very-secret-value-42\nDB_PASSWORD='x\"y$z'\n");
    environment::write_env_and_wait(store, &site, &secret, Duration::from_secs(120))
        .await
        .unwrap();
    let read = EnvironmentInstaller
        .read(&executor, &ctx, &site)
        .await
        .unwrap();
    assert_eq!(read.expose(), secret.expose());
    assert_eq!(
        site_page(&host.ip, "app.test").await,
        "commit one",
        "the site still serves"
    );
    let mode = host
        .root("stat -c '%a %U' /home/brokeforge/app.test/shared/.env; readlink /home/brokeforge/app.test/current/.env")
        .await
        .stdout_text();
    assert!(
        mode.starts_with("600 brokeforge\n/home/brokeforge/app.test/shared/.env"),
        "{mode}"
    );
    let all_logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(!all_logs.contains("very-secret-value-42"));
    let (status, _) = http_request(&host.ip, "GET", "app.test", "/.env", &[], b"").await;
    assert_eq!(status, 403);

    // The site's files in a backup (a directory on the server): a lost .env comes back with its owner and
    // mode, a restore beside it leaves the live one alone, a drill counts the files.
    {
        use brokeforge_domain::backups::{PlanRequest, StorageRequest};
        let domain = brokeforge_domain::Domain::new(store.clone());
        let user = store.user(panel.user_id).await.unwrap();
        let server = store.server(id).await.unwrap();
        domain
            .add_backup_storage(
                &user,
                &serde_json::from_value::<StorageRequest>(serde_json::json!({
                    "name": "disk", "kind": "local", "server_id": id, "path": "/var/backups/bf",
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let refused = domain
            .create_backup_plan(
                &user,
                &server,
                &PlanRequest {
                    name: "nosite".into(),
                    database: String::new(),
                    site: "missing.test".into(),
                    storage: "disk".into(),
                    schedule: None,
                    verify_schedule: None,
                    retention: None,
                },
            )
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("no site"), "{refused}");
        domain
            .create_backup_plan(
                &user,
                &server,
                &PlanRequest {
                    name: "files".into(),
                    database: String::new(),
                    site: "app.test".into(),
                    storage: "disk".into(),
                    schedule: None,
                    verify_schedule: None,
                    retention: None,
                },
            )
            .await
            .unwrap();
        let job = domain.run_backup_now(&server, "files").await.unwrap();
        wait_ok(store, &job, "site files backup").await;
        let snap = domain.backup_snapshots(&server, "files").await.unwrap()[0]
            .snapshot_id
            .clone();
        assert!(
            host.root("rm /home/brokeforge/app.test/shared/.env")
                .await
                .success()
        );
        let job = domain
            .restore_backup(&server, "files", &snap, None, Some("app.test"))
            .await
            .unwrap();
        wait_ok(store, &job, "site files restore").await;
        let back = host
            .root("stat -c '%a %U' /home/brokeforge/app.test/shared/.env && grep -c very-secret-value-42 /home/brokeforge/app.test/shared/.env")
            .await
            .stdout_text();
        assert_eq!(back, "600 brokeforge\n1\n");
        let job = domain
            .restore_backup(&server, "files", &snap, Some("before"), None)
            .await
            .unwrap();
        wait_ok(store, &job, "site files restore beside").await;
        assert!(
            host.root("test -f /home/brokeforge/app.test/restored-before/home/brokeforge/app.test/shared/.env")
                .await
                .success()
        );
        let job = domain.verify_backup_now(&server, "files").await.unwrap();
        wait_ok(store, &job, "site files drill").await;
        let drill = domain
            .backup_plan(&server, "files")
            .await
            .unwrap()
            .last_verify
            .unwrap();
        assert!(
            drill["tables"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["table"] == "files" && t["rows"].as_i64().unwrap_or(0) >= 1),
            "{drill}"
        );
        assert!(
            host.root("rm -rf /home/brokeforge/app.test/restored-before")
                .await
                .success()
        );
    }

    // HTTPS from an ACME certificate authority (pebble on this machine, which validates the HTTP-01 challenge
    // for real by fetching it from the site's vhost): the site serves HTTPS with the issued certificate and
    // redirects plain HTTP; removing the certificate serves plain HTTP again.
    let acme = AcmeServer::start(15);
    let jobs_before = store.jobs_for_server(id).await.unwrap().len();
    for bad in [
        CertificateRequest {
            email: Some("not an email".into()),
            ..Default::default()
        },
        CertificateRequest {
            acme_directory: Some("http://insecure.example/dir".into()),
            ..Default::default()
        },
    ] {
        assert!(
            certificate::request_certificate(store, &site, &bad)
                .await
                .is_err()
        );
    }
    assert_eq!(store.jobs_for_server(id).await.unwrap().len(), jobs_before);
    let job = certificate::request_certificate(
        store,
        &site,
        &CertificateRequest {
            email: Some("ops@app.test".into()),
            acme_directory: Some(acme.directory.clone()),
            acme_ca_certificate: Some(acme.ca_pem.clone()),
            hsts: true,
        },
    )
    .await
    .unwrap();
    wait_ok(store, &job, "certificate").await;
    let cert = SiteConfig::of(&store.site(site.id).await.unwrap())
        .certificate
        .expect("certificate recorded");
    assert_eq!(cert.domains, ["app.test", "www.app.test"]);
    assert!(cert.expires.is_some(), "{cert:?}");
    let (status, _) = http_request(&host.ip, "GET", "www.app.test", "/", &[], b"").await;
    assert_eq!(status, 301);
    let https = host
        .root("curl -sSkv --resolve app.test:443:127.0.0.1 https://app.test/ 2>&1")
        .await
        .stdout_text();
    assert!(
        https.contains("Pebble Intermediate")
            && https.contains("strict-transport-security: max-age=31536000")
            && https.ends_with("commit one"),
        "{https}"
    );
    // Renewal as certbot's timer runs it (its service's environment, the saved webroot settings): a new
    // certificate is issued and nginx reloaded to serve it.
    let serial = "echo | openssl s_client -connect 127.0.0.1:443 -servername app.test 2>/dev/null | openssl x509 -noout -serial";
    let before = host.root(serial).await.stdout_text();
    let renew = host
        .root("env $(systemctl show certbot.service -p Environment --value) certbot renew --force-renewal --cert-name app.test --no-random-sleep-on-renew 2>&1")
        .await;
    assert!(renew.success(), "{}", renew.stdout_text());
    let after = host.root(serial).await.stdout_text();
    assert!(
        before.starts_with("serial=") && after.starts_with("serial=") && before != after,
        "{before} {after}"
    );
    certificate_drift(&host, store, id).await;
    let job = certificate::remove_certificate(store, &store.site(site.id).await.unwrap())
        .await
        .unwrap();
    wait_ok(store, &job, "certificate removal").await;
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    assert!(
        SiteConfig::of(&store.site(site.id).await.unwrap())
            .certificate
            .is_none()
    );
    let left = host
        .root("ls /etc/letsencrypt/live; grep -c 443 /etc/nginx/sites-available/app.test.conf")
        .await
        .stdout_text();
    assert!(
        !left.contains("app.test") && left.ends_with("0\n"),
        "{left}"
    );
    drop(acme);

    // The server's default site: a request for a name no site has reaches it; the others keep their names.
    let (second, job) = sites_site::create_site(
        store,
        id,
        &SiteRequest {
            domain: "second.test".into(),
            default_site: true,
            // Sites from before isolation (the shared app user) keep working.
            isolated: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_ok(store, &job, "default site install").await;
    let unknown = site_page(&host.ip, "unknown.example").await;
    assert!(unknown.contains("second.test"), "{unknown}");
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");

    // A vhost nginx refuses (here because of a broken file someone left in conf.d) is taken out again, with
    // everything its default switch touched: second.test stays the default, the others keep serving.
    let vhosts = "ls /etc/nginx/sites-enabled /etc/nginx/sites-available; \
                  grep -c default_server /etc/nginx/sites-available/second.test.conf";
    let before = host.root(vhosts).await.stdout_text();
    assert!(
        host.root("echo 'this is not nginx;' > /etc/nginx/conf.d/broken.conf")
            .await
            .success()
    );
    let (third, job) = sites_site::create_site(
        store,
        id,
        &SiteRequest {
            domain: "third.test".into(),
            default_site: true,
            // Sites from before isolation (the shared app user) keep working.
            isolated: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let failed = wait_job(store, job.id, Duration::from_secs(300)).await;
    assert_eq!(failed.status, JobStatus::Failed, "{failed:?}");
    let log: String = store
        .job_logs(job.id)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(
        log.contains("broken.conf"),
        "nginx's complaint is shown: {log}"
    );
    assert_eq!(
        store.site(third.id).await.unwrap().status,
        brokeforge_core::ServiceStatus::Failed
    );
    assert_eq!(host.root(vhosts).await.stdout_text(), before);
    assert!(
        host.root("rm /etc/nginx/conf.d/broken.conf && nginx -t")
            .await
            .success()
    );
    assert!(
        SiteConfig::of(&store.site(second.id).await.unwrap()).default_site,
        "second.test is still the default in the store"
    );
    assert!(
        site_page(&host.ip, "unknown.example")
            .await
            .contains("second.test")
    );
    assert_eq!(site_page(&host.ip, "app.test").await, "commit one");
    let third = store.site(third.id).await.unwrap();
    let job = sites_site::remove_site(store, &third, false).await.unwrap();
    wait_ok(store, &job, "failed site removal").await;

    // Removing the default site and keeping its files: the vhost goes, the files stay, BrokeForge's own
    // default page answers unknown names again.
    let second = store.site(second.id).await.unwrap();
    let job = sites_site::remove_site(store, &second, true).await.unwrap();
    wait_ok(store, &job, "site removal keeping files").await;
    let left = host
        .root("ls /etc/nginx/sites-enabled; test -d /home/brokeforge/second.test/releases && echo KEPT")
        .await
        .stdout_text();
    assert!(
        !left.contains("second.test") && left.contains("default") && left.contains("KEPT"),
        "{left}"
    );
    let unknown = site_page(&host.ip, "unknown.example").await;
    assert!(!unknown.contains("second.test"), "{unknown}");
    assert!(store.site(second.id).await.is_err());

    // Removal: vhost and files gone, the record too.
    let job = sites_site::remove_site(store, &site, false).await.unwrap();
    wait_ok(store, &job, "site removal").await;
    assert!(store.sites(id).await.unwrap().is_empty());
    let left = host
        .root("ls /etc/nginx/sites-enabled /home/brokeforge; test -e /home/brokeforge/app.test && echo STILL")
        .await
        .stdout_text();
    assert!(
        !left.contains("app.test") && !left.contains("STILL"),
        "{left}"
    );
    assert!(!site_page(&host.ip, "app.test").await.contains("commit"));
    // Its daemons and schedule went with it.
    let left = host
        .root("ls /etc/systemd/system /etc/cron.d; systemctl list-units --all --plain --no-legend 'brokeforge-site-*'")
        .await
        .stdout_text();
    assert!(!left.contains("brokeforge-site-"), "{left}");
}

/// A site's certificate is a drift item read on the host (openssl): with months left it is ok and says when
/// it ends; its chain file gone, it is missing (and carries no repair: renewal is certbot's to do).
async fn certificate_drift(host: &DebianHost, store: &brokeforge_store::Store, id: i64) {
    use brokeforge_packages::services::server::drift::{DriftItem, DriftState};
    let domain = brokeforge_domain::Domain::new(store.clone());
    let server = store.server(id).await.unwrap();
    let check =
        async || -> DriftItem { drift_item(&domain, store, &server, "cert:app.test").await };
    let chain = "/etc/letsencrypt/live/app.test/fullchain.pem";
    // certbot renewed it above (forced): the record still has the first certificate's end, the check says
    // so and brings the record to the end of the certificate the server has.
    let ok = check().await;
    assert_eq!(ok.state, DriftState::Ok, "{ok:?}");
    assert!(ok.detail.starts_with("expires on "), "{ok:?}");
    assert!(ok.detail.contains("renewed on the server"), "{ok:?}");
    let end = host
        .root(&format!(
            "e=$(openssl x509 -noout -enddate -in {chain}) && date -u -d \"${{e#notAfter=}}\" '+%Y-%m-%d %H:%M:%S+00:00'"
        ))
        .await
        .stdout_text();
    let site = store
        .sites(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.domain == "app.test")
        .unwrap();
    let recorded = brokeforge_packages::services::sites::config::SiteConfig::of(&site)
        .certificate
        .and_then(|c| c.expires);
    assert_eq!(recorded.as_deref(), Some(end.trim()), "{ok:?}");
    assert!(!check().await.detail.contains("renewed"));
    let away = host.root(&format!("mv {chain} /root/chain.away")).await;
    assert!(away.success(), "{}", away.stderr_text());
    let gone = check().await;
    assert_eq!(gone.state, DriftState::Missing, "{gone:?}");
    assert!(gone.repair.is_none(), "{gone:?}");
    let back = host.root(&format!("mv /root/chain.away {chain}")).await;
    assert!(back.success(), "{}", back.stderr_text());
}
