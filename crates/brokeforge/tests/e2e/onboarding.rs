//! Stories: onboarding a real host directly (with a root key) and by the one-line script.

use std::time::{Duration, Instant};

use brokeforge_core::{CredentialKind, EventStatus};
use brokeforge_packages::Package;
use brokeforge_packages::services::server::access::onboarding::{
    AddServer, add_server, start_direct_onboarding,
};
use brokeforge_packages::services::server::connection_check::ConnectionCheckInstaller;
use brokeforge_packages::services::server::provision::ServerInstaller;
use brokeforge_store::{JobStatus, JobTarget, LogStream, NewJob};

use super::harness::*;

/// Direct onboarding with the user's root key; base provisioning converges on a second run; a host key
/// changed after pinning stops the next job before any command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn direct_onboarding_provisions_a_real_debian_host() {
    if !enabled() {
        return;
    }
    let host = DebianHost::start(11);
    let panel = Panel::start("127.0.0.1:0").await;
    let store = &panel.store;
    let added = add_server(
        store,
        &AddServer {
            user_id: panel.user_id,
            name: "direct".into(),
            public_ip: host.ip.clone(),
            ssh_port: 22,
            host_key_fingerprint: None,
        },
    )
    .await
    .unwrap();
    let id = added.server.id;
    let job = start_direct_onboarding(store, id, &host.root_key, true)
        .await
        .unwrap();
    let job = wait_job(store, job.id, Duration::from_secs(900)).await;
    assert_eq!(
        job.status,
        JobStatus::Done,
        "{job:?}\n{:#?}",
        store.events(id, 0).await.unwrap()
    );

    let server = store.server(id).await.unwrap();
    assert_eq!(
        server.host_key_fingerprint.as_deref(),
        Some(host.fingerprint.as_str())
    );
    assert!(
        store
            .credential(id, CredentialKind::Bootstrap)
            .await
            .is_err(),
        "the user's key was kept"
    );
    let events = store.events(id, 0).await.unwrap();
    let keys: Vec<&str> = events.iter().map(|e| e.milestone.as_str()).collect();
    assert_eq!(
        keys,
        [
            "create_users",
            "install_keys",
            "configure_sudo",
            "harden_ssh",
            "complete",
            "detect_os",
            "wait_for_apt",
            "update_package_lists",
            "install_base_packages",
            "configure_time",
            "enable_security_updates",
            "configure_swap",
            "configure_firewall",
            "complete",
        ]
    );
    assert!(events.iter().all(|e| e.status == EventStatus::Completed));
    assert_provisioned(store, id).await;

    // Running base provisioning again succeeds and changes nothing.
    let root = login(store, id, CredentialKind::Root).await;
    let before = provisioned_state(&root).await;
    let again = store
        .enqueue(&NewJob {
            target: Some(JobTarget::Server),
            ..NewJob::new(ServerInstaller::JOB, Some(id), serde_json::json!({}))
        })
        .await
        .unwrap();
    assert_eq!(
        wait_job(store, again.id, Duration::from_secs(600))
            .await
            .status,
        JobStatus::Done
    );
    assert_eq!(provisioned_state(&root).await, before);
    root.close().await;

    // The server gets new host keys: the next job refuses before running anything.
    let regen = host
        .root("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
        .await;
    assert!(regen.success(), "{}", regen.stderr_text());
    let check = store
        .enqueue(&NewJob::new(
            ConnectionCheckInstaller::JOB,
            Some(id),
            serde_json::json!({}),
        ))
        .await
        .unwrap();
    let check = wait_job(store, check.id, Duration::from_secs(120)).await;
    assert_eq!(check.status, JobStatus::Failed);
    let error = check.error.unwrap();
    assert!(
        error.contains(&host.fingerprint) && error.contains("has changed"),
        "{error}"
    );
    let ran: Vec<_> = store
        .logs(id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.job_id == Some(check.id) && l.stream != LogStream::System)
        .collect();
    assert!(
        ran.is_empty(),
        "commands ran after the host key changed: {ran:?}"
    );
    assert_eq!(
        store.server(id).await.unwrap().connection_status,
        brokeforge_core::ConnectionStatus::Failed
    );

    // The user checks and re-pins the new key; then BrokeForge's access is taken off the server and the
    // server is forgotten. The user's own keys, the users and their files stay.
    let fp = host
        .root("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")
        .await
        .stdout_text();
    let fp = fp.split_whitespace().nth(1).unwrap().to_string();
    store.pin_host_key(id, Some(&fp)).await.unwrap();
    let keys: Vec<String> = {
        let mut k = Vec::new();
        for c in [
            CredentialKind::Root,
            CredentialKind::User,
            CredentialKind::Worker,
        ] {
            k.push(store.credential(id, c).await.unwrap().public_key);
        }
        k
    };
    let mine = host
        .root("printf '%s\\n' 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnTheUsersOwnKeyStaysThere0000000000 me@laptop' >> /home/brokeforge/.ssh/authorized_keys")
        .await;
    assert!(mine.success(), "{}", mine.stderr_text());
    use brokeforge_packages::services::server::access::remover::{
        AccessRemoval, ServerAccessRemover,
    };
    let removal = store
        .enqueue(
            &brokeforge_packages::base::package::job::<ServerAccessRemover>(
                id,
                &AccessRemoval { forget: true },
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.server(id).await.is_ok() {
        if let Ok(j) = store.job(removal.id).await {
            assert!(
                !j.status.is_finished() || j.status == JobStatus::Done,
                "{j:?}"
            );
        }
        assert!(Instant::now() < deadline, "the server was not forgotten");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let on_host = host
        .root("cat /root/.ssh/authorized_keys /home/brokeforge/.ssh/authorized_keys /home/worker/.ssh/authorized_keys; \
               test ! -e /etc/sudoers.d/brokeforge && id brokeforge >/dev/null && id worker >/dev/null && echo kept")
        .await;
    let text = on_host.stdout_text();
    for k in &keys {
        assert!(
            !text.contains(k.as_str()),
            "{k} is still on the server:\n{text}"
        );
    }
    assert!(
        text.contains("me@laptop"),
        "the user's own key went too:\n{text}"
    );
    assert!(
        text.trim_end().ends_with("kept"),
        "{text}\n{}",
        on_host.stderr_text()
    );
}

/// The one-line script over HTTPS served by BrokeForge itself (an ACME certificate), run as root on a host
/// where another process holds the dpkg lock for 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn script_onboarding_waits_for_the_dpkg_lock_and_provisions() {
    if !enabled() {
        return;
    }
    let host = DebianHost::start(12);
    // BrokeForge serves HTTPS itself, with a certificate for its public name from the test ACME authority
    // (validated by TLS-ALPN-01 on port 443). The host resolves the name and trusts the authority's root, as
    // a real server resolves a real name and trusts Let's Encrypt.
    let acme = AcmeServer::start(12);
    let name = "panel.bf-e2e.test";
    acme.add_a(name, &host.gateway);
    let root_pem = acme.issuing_root();
    let public_url = format!("https://{name}");
    let panel = Panel::start_with(
        &format!("{}:443", host.gateway),
        &[
            ("BROKEFORGE_TLS", "acme"),
            ("BROKEFORGE_PUBLIC_URL", &public_url),
            ("BROKEFORGE_ACME_DIRECTORY", &acme.directory),
            ("BROKEFORGE_ACME_CA_FILE", &acme.ca_file),
        ],
    )
    .await;
    let trust = host
        .root(&format!(
            "printf '%s\\n' {} >> /etc/hosts && printf '%s' {} > /usr/local/share/ca-certificates/e2e-acme.crt && update-ca-certificates >/dev/null",
            brokeforge_core::shell::shell_quote(&format!("{} {name}", host.gateway)),
            brokeforge_core::shell::shell_quote(&root_pem)
        ))
        .await;
    assert!(trust.success(), "{}", trust.stderr_text());
    // The certificate arrives in the background: wait until the host gets a verified answer.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = host
            .root(&format!("curl -fsS -m 5 {public_url}/health"))
            .await;
        if health.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no verified HTTPS answer from BrokeForge: {}\n{}",
            health.stderr_text(),
            panel.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let store = &panel.store;
    let added = add_server(
        store,
        &AddServer {
            user_id: panel.user_id,
            name: "script".into(),
            public_ip: host.ip.clone(),
            ssh_port: 22,
            host_key_fingerprint: None,
        },
    )
    .await
    .unwrap();
    let id = added.server.id;
    // Something else (unattended-upgrades, cloud-init) holds the package manager's lock for a while.
    let hold = host
        .root("nohup setsid sh -c 'exec 9>>/var/lib/dpkg/lock-frontend; sleep 20' >/dev/null 2>&1 < /dev/null &")
        .await;
    assert!(hold.success());
    let started = Instant::now();
    let one_line = format!("curl -fsSL {public_url}/provision/{} | bash", added.token);
    let out = host.root(&one_line).await;
    assert!(
        out.success(),
        "the script failed:\n{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(out.stdout_text().contains("connected to BrokeForge"));
    // It showed the host key fingerprints on the console, to compare with the server page.
    assert!(
        out.stdout_text().contains(&host.fingerprint),
        "{}",
        out.stdout_text()
    );
    // The script reported the host key, and BrokeForge pinned it.
    assert_eq!(
        store
            .server(id)
            .await
            .unwrap()
            .host_key_fingerprint
            .as_deref(),
        Some(host.fingerprint.as_str())
    );
    // The token is used up.
    assert_eq!(
        host.root(&format!("curl -fsS {public_url}/provision/{}", added.token))
            .await
            .exit_code,
        Some(22)
    );

    let job = store
        .jobs_for_server(id)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == ServerInstaller::JOB)
        .expect("base provisioning queued");
    let job = wait_job(store, job.id, Duration::from_secs(900)).await;
    assert_eq!(
        job.status,
        JobStatus::Done,
        "{job:?}\n{:#?}",
        store.events(id, 0).await.unwrap()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "provisioning did not wait for the lock"
    );
    let logs: String = store
        .logs(id, 0)
        .await
        .unwrap()
        .iter()
        .map(|l| l.chunk.clone())
        .collect();
    assert!(
        logs.contains("another package manager is running"),
        "{logs}"
    );
    let events = store.events(id, 0).await.unwrap();
    assert_eq!(events.first().unwrap().milestone, "create_users");
    assert!(
        events.iter().all(|e| e.status == EventStatus::Completed),
        "{events:#?}"
    );
    assert_provisioned(store, id).await;
}
