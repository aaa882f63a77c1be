//! End to end on real Debian 12 hosts (debootstrap + systemd-nspawn, see `scripts/e2e-hosts.sh`).
//! Run when `BROKEFORGE_E2E=1` (`.ci/run` sets it); then a host that cannot start fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use brokeforge_core::{CredentialKind, EventStatus, ProvisionStatus, Secret};
use brokeforge_packages::Package;
use brokeforge_packages::services::database::sql::{Privileges, UserRequest};
use brokeforge_packages::services::database::user::create_user;
use brokeforge_packages::services::server::access::onboarding::{
    AddServer, add_server, start_direct_onboarding,
};
use brokeforge_packages::services::server::connection_check::ConnectionCheckInstaller;
use brokeforge_packages::services::server::provision::ServerInstaller;
use brokeforge_ssh::{ExecOutput, ExecRequest, HostKeyPolicy, SshSession, SshTarget};
use brokeforge_store::{Job, JobStatus, JobTarget, LogStream, MasterKey, NewJob, Store};

pub fn enabled() -> bool {
    if std::env::var("BROKEFORGE_E2E").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "end-to-end test not run: set BROKEFORGE_E2E=1 (needs root, see scripts/e2e-hosts.sh)"
    );
    false
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-hosts.sh")
}

/// A booted Debian 12 host; powered off and deleted when dropped.
pub struct DebianHost {
    pub name: String,
    pub ip: String,
    /// The address of this machine on the host's network (where the host reaches BrokeForge).
    pub gateway: String,
    pub fingerprint: String,
    pub root_key: Secret,
    _keys: tempfile::TempDir,
}

impl DebianHost {
    pub fn start(index: u8) -> DebianHost {
        let name = format!("bfe2e{index}");
        let keys = tempfile::tempdir().unwrap();
        let pair = brokeforge_ssh::keys::generate_ed25519("e2e-root").unwrap();
        let key_file = keys.path().join("root");
        std::fs::write(
            key_file.with_extension("pub"),
            format!("{}\n", pair.public_openssh),
        )
        .unwrap();
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &name, &index.to_string()])
            .arg(&key_file)
            .output()
            .expect("run scripts/e2e-hosts.sh");
        assert!(
            out.status.success(),
            "the end-to-end host {name} did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        let ip = words.next().expect("ip").to_string();
        let fingerprint = words.next().expect("fingerprint").to_string();
        DebianHost {
            gateway: format!("10.231.{index}.1"),
            name,
            ip,
            fingerprint,
            root_key: pair.private_openssh,
            _keys: keys,
        }
    }

    /// Run a command as root with the harness's own key (what the user does in their root shell).
    pub async fn root(&self, command: &str) -> ExecOutput {
        let target = SshTarget {
            host: self.ip.clone(),
            port: 22,
            user: "root".into(),
            key: self.root_key.clone(),
            host_key: HostKeyPolicy::TrustOnFirstUse,
            connect_timeout: Duration::from_secs(20),
        };
        let s = SshSession::connect(&target)
            .await
            .expect("ssh as root to the e2e host");
        let out = s
            .exec(ExecRequest::new(command, Duration::from_secs(600)))
            .await
            .expect("exec");
        s.close().await;
        out
    }
}

impl Drop for DebianHost {
    fn drop(&mut self) {
        if std::env::var("BROKEFORGE_E2E_KEEP").as_deref() == Ok("1") {
            eprintln!(
                "keeping {} at {} (BROKEFORGE_E2E_KEEP=1); root key is not kept",
                self.name, self.ip
            );
            return;
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", &self.name])
            .status();
    }
}

/// A test ACME certificate authority (pebble) for host `index`, stopped when dropped (`scripts/e2e-acme.sh`).
pub struct AcmeServer {
    index: u8,
    pub directory: String,
    pub ca_pem: String,
}

impl AcmeServer {
    pub fn start(index: u8) -> AcmeServer {
        let out = Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-acme.sh"))
            .args(["start", &index.to_string()])
            .output()
            .expect("run scripts/e2e-acme.sh");
        assert!(
            out.status.success(),
            "the test ACME server did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        let directory = words.next().expect("directory").to_string();
        let ca_pem = std::fs::read_to_string(words.next().expect("ca file")).unwrap();
        AcmeServer {
            index,
            directory,
            ca_pem,
        }
    }
}

impl Drop for AcmeServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-acme.sh"))
            .args(["stop", &self.index.to_string()])
            .status();
    }
}

async fn wait_job(store: &Store, id: i64, limit: Duration) -> Job {
    let started = Instant::now();
    loop {
        let job = store.job(id).await.unwrap();
        if job.status.is_finished() {
            return job;
        }
        assert!(
            started.elapsed() < limit,
            "job {id} did not finish in {limit:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn login(store: &Store, server_id: i64, credential: CredentialKind) -> SshSession {
    let server = store.server(server_id).await.unwrap();
    let cred = store.credential(server_id, credential).await.unwrap();
    SshSession::connect(&SshTarget {
        host: server.public_ip.clone(),
        port: server.ssh_port,
        user: cred.unix_user().to_string(),
        key: cred.private_key.clone(),
        host_key: HostKeyPolicy::Pinned(server.host_key_fingerprint.clone().expect("pinned")),
        connect_timeout: Duration::from_secs(20),
    })
    .await
    .unwrap_or_else(|e| panic!("login as {credential}: {e}"))
}

async fn run(s: &SshSession, cmd: &str) -> String {
    let out = s
        .exec(ExecRequest::new(cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(out.success(), "`{cmd}` failed: {}", out.stderr_text());
    out.stdout_text()
}

/// The state base provisioning leaves, to compare runs.
async fn provisioned_state(root: &SshSession) -> String {
    run(root, "ufw status verbose; cat /etc/apt/apt.conf.d/20auto-upgrades; timedatectl show -p Timezone; \
               dpkg-query -W -f '${Package} ${Version}\\n' | sort | md5sum; ls /etc/sudoers.d /etc/ssh/sshd_config.d")
        .await
}

async fn assert_provisioned(store: &Store, server_id: i64) {
    let server = store.server(server_id).await.unwrap();
    assert_eq!(server.provision_status, ProvisionStatus::Provisioned);
    assert_eq!(server.os.as_deref(), Some("debian 12"));

    let user = login(store, server_id, CredentialKind::User).await;
    assert_eq!(run(&user, "id -un").await.trim(), "brokeforge");
    // The sudoers entry allows service commands only, never a shell.
    let denied = user
        .exec(ExecRequest::new(
            "sudo -n /bin/sh -c id",
            Duration::from_secs(20),
        ))
        .await
        .unwrap();
    assert!(!denied.success(), "the app user got a root shell");
    let listed = run(&user, "sudo -n -l").await;
    assert!(
        listed.contains("/usr/bin/systemctl reload nginx"),
        "{listed}"
    );
    let worker = login(store, server_id, CredentialKind::Worker).await;
    assert_eq!(run(&worker, "id -un").await.trim(), "worker");

    let root = login(store, server_id, CredentialKind::Root).await;
    let sshd = run(&root, "sshd -T | grep -Ei '^(passwordauthentication|kbdinteractiveauthentication|permitrootlogin) '").await;
    assert!(sshd.contains("passwordauthentication no"), "{sshd}");
    assert!(sshd.contains("kbdinteractiveauthentication no"), "{sshd}");
    assert!(sshd.contains("permitrootlogin without-password"), "{sshd}");
    // What the server offers a client: public keys only, no passwords.
    let server = store.server(server_id).await.unwrap();
    let offered = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg(format!("brokeforge@{}", server.public_ip))
        .arg("true")
        .output()
        .expect("ssh client");
    let said = String::from_utf8_lossy(&offered.stderr);
    assert!(
        !offered.status.success() && said.contains("Permission denied (publickey)"),
        "{said}"
    );
    let ufw = run(&root, "ufw status").await;
    let rules: Vec<&str> = ufw
        .lines()
        .filter(|l| l.contains("ALLOW"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["22/tcp", "80/tcp", "443/tcp", "22/tcp", "80/tcp", "443/tcp"],
        "{ufw}"
    );
    assert!(ufw.contains("Status: active"));
    assert_eq!(
        run(&root, "timedatectl show -p Timezone --value")
            .await
            .trim(),
        "UTC"
    );
    // Inside a container systemd-timesyncd does not run (the host keeps the clock); it is installed and enabled.
    assert_eq!(
        run(&root, "systemctl is-enabled systemd-timesyncd")
            .await
            .trim(),
        "enabled"
    );
    assert!(
        run(&root, "cat /etc/apt/apt.conf.d/20auto-upgrades")
            .await
            .contains("Unattended-Upgrade \"1\"")
    );
}

struct Panel {
    _dir: tempfile::TempDir,
    store: Store,
    user_id: i64,
    child: std::process::Child,
    addr: String,
}

impl Panel {
    async fn start(bind: &str) -> Panel {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
        let key = MasterKey::generate().unwrap();
        let store = Store::open(&url, &key).await.unwrap();
        let user_id = store
            .create_user("e2e@example.com", "x", false)
            .await
            .unwrap()
            .id;
        let (child, addr) = super::serve(&url, &key, dir.path(), bind);
        Panel {
            _dir: dir,
            store,
            user_id,
            child,
            addr,
        }
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        super::send_sigterm(self.child.id());
        let _ = self.child.wait();
    }
}

/// Direct onboarding with the user's root key; base provisioning converges on a second run; a host key
/// changed after pinning stops the next job before any command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
}

/// The one-line script, run as root on a host where another process holds the dpkg lock for 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_onboarding_waits_for_the_dpkg_lock_and_provisions() {
    if !enabled() {
        return;
    }
    let host = DebianHost::start(12);
    let panel = Panel::start(&format!("{}:0", host.gateway)).await;
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
    let one_line = format!(
        "curl -fsSL http://{}/provision/{} | bash",
        panel.addr, added.token
    );
    let out = host.root(&one_line).await;
    assert!(
        out.success(),
        "the script failed:\n{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    assert!(out.stdout_text().contains("connected to BrokeForge"));
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
        host.root(&format!(
            "curl -fsS http://{}/provision/{}",
            panel.addr, added.token
        ))
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

/// A host onboarded directly and provisioned, ready for services.
async fn onboarded(index: u8, name: &str) -> (DebianHost, Panel, i64) {
    let host = DebianHost::start(index);
    let panel = Panel::start("127.0.0.1:0").await;
    let added = add_server(
        &panel.store,
        &AddServer {
            user_id: panel.user_id,
            name: name.into(),
            public_ip: host.ip.clone(),
            ssh_port: 22,
            host_key_fingerprint: None,
        },
    )
    .await
    .unwrap();
    let job = start_direct_onboarding(&panel.store, added.server.id, &host.root_key, true)
        .await
        .unwrap();
    let job = wait_job(&panel.store, job.id, Duration::from_secs(900)).await;
    assert_eq!(job.status, JobStatus::Done, "onboarding failed: {job:?}");
    (host, panel, added.server.id)
}

async fn install(store: &Store, id: i64, package: &str, settings: &[(&str, &str)]) -> Job {
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let job = brokeforge_packages::catalogue::install(store, id, package, &settings)
        .await
        .unwrap();
    let job = wait_job(store, job.id, Duration::from_secs(900)).await;
    assert_eq!(
        job.status,
        JobStatus::Done,
        "installing {package} failed: {job:?}\n{:#?}",
        store.events(id, 0).await.unwrap().last()
    );
    job
}

async fn remove(store: &Store, id: i64, package: &str) -> Job {
    let job = brokeforge_packages::catalogue::remove(store, id, package, &Default::default())
        .await
        .unwrap();
    let job = wait_job(store, job.id, Duration::from_secs(900)).await;
    assert_eq!(
        job.status,
        JobStatus::Done,
        "removing {package} failed: {job:?}"
    );
    job
}

/// nginx + PHP-FPM: the default page and PHP answer from the host; installing again converges; removal leaves
/// nothing listening on port 80.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webserver_serves_php_and_is_removed_cleanly() {
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(13, "web").await;
    let store = &panel.store;
    install(store, id, "webserver", &[]).await;
    let svc = store
        .services(id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.service_name == "webserver")
        .unwrap();
    assert_eq!(svc.status, brokeforge_core::ServiceStatus::Active);
    assert_eq!(
        svc.configuration["php_versions"],
        serde_json::json!(["8.2"])
    );

    let page = http_body(&format!("http://{}/", host.ip)).await;
    assert!(page.contains("web is ready"), "{page}");
    let put = host
        .root("printf '<?php echo phpversion();' > /home/brokeforge/default/public/info.php && \
                chown brokeforge:brokeforge /home/brokeforge/default/public/info.php && chmod 640 /home/brokeforge/default/public/info.php")
        .await;
    assert!(put.success());
    let version = http_body(&format!("http://{}/info.php", host.ip)).await;
    assert!(version.starts_with("8.2."), "{version}");
    // Composer comes with the distribution's PHP, for deploy scripts.
    let composer = host.root("su - brokeforge -c 'composer --version'").await;
    assert!(
        composer.success() && composer.stdout_text().contains("Composer"),
        "{}",
        composer.stderr_text()
    );
    // PHP runs as the app user, not www-data.
    let who = host
        .root("ps -o user= -C php-fpm8.2 | sort -u")
        .await
        .stdout_text();
    assert!(who.contains("brokeforge"), "{who}");
    // A dotfile is denied.
    assert!(
        host.root("printf secret > /home/brokeforge/default/public/.env")
            .await
            .success()
    );
    assert!(http_status(&format!("http://{}/.env", host.ip)).await == 403);

    // Installing again converges.
    install(store, id, "webserver", &[]).await;
    assert!(
        http_body(&format!("http://{}/info.php", host.ip))
            .await
            .starts_with("8.2.")
    );

    remove(store, id, "webserver").await;
    assert!(
        store
            .services(id)
            .await
            .unwrap()
            .iter()
            .all(|s| s.service_name != "webserver")
    );
    let left = host
        .root("dpkg -l | awk '/^ii/ && ($2 ~ /^nginx/ || $2 ~ /^php/ || $2 ~ /^composer/) {print $2}'")
        .await
        .stdout_text();
    assert!(left.trim().is_empty(), "still installed: {left}");
    assert!(
        tokio::net::TcpStream::connect((host.ip.as_str(), 80))
            .await
            .is_err(),
        "port 80 still open"
    );
}

/// Run `cmd` with `input` on its stdin (how the tests hand passwords to clients).
async fn with_stdin(s: &SshSession, cmd: &str, input: &str) -> ExecOutput {
    let req = ExecRequest {
        stdin: Some(input.as_bytes()),
        ..ExecRequest::new(cmd, Duration::from_secs(30))
    };
    s.exec(req).await.unwrap()
}

/// GET over plain HTTP/1.1 (enough for the tests; no client library needed).
async fn http_body(url: &str) -> String {
    http_get(url).await.1
}

async fn http_status(url: &str) -> u16 {
    http_get(url).await.0
}

async fn http_get(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.write_all(
        // HTTP/1.0: the answer is never chunked.
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// MariaDB, PostgreSQL and Redis on one host: bound to loopback, Redis refuses without its password,
/// MySQL is refused on Debian before touching the server, installers converge, and removing one leaves the
/// others working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_install_bound_to_localhost_and_remove_independently() {
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(14, "db").await;
    let store = &panel.store;

    // MySQL is not in Debian: a clear error, nothing installed.
    let mysql = brokeforge_packages::catalogue::install(store, id, "mysql", &Default::default())
        .await
        .unwrap();
    let mysql = wait_job(store, mysql.id, Duration::from_secs(120)).await;
    assert_eq!(mysql.status, JobStatus::Failed);
    assert!(
        mysql
            .error
            .as_deref()
            .unwrap()
            .contains("MySQL is not in debian 12's package archive"),
        "{mysql:?}"
    );
    assert!(host.root("dpkg -s mysql-server").await.exit_code != Some(0));
    assert!(
        store
            .logs(id, 0)
            .await
            .unwrap()
            .iter()
            .all(|l| l.job_id != Some(mysql.id)),
        "commands ran for mysql"
    );

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

/// An HTTP/1.0 request to `ip` with a `Host` header (how a site is reached before its DNS exists).
async fn http_request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = if addr.contains(':') {
        addr.to_string()
    } else {
        format!("{addr}:80")
    };
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let resp = String::from_utf8_lossy(&resp).to_string();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn site_page(ip: &str, domain: &str) -> String {
    http_request(ip, "GET", domain, "/", &[], b"").await.1
}

async fn wait_ok(store: &Store, job: &Job, what: &str) -> Job {
    let done = wait_job(store, job.id, Duration::from_secs(600)).await;
    let logs: String = store
        .logs(done.server_id.unwrap(), 0)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.job_id == Some(job.id))
        .map(|l| l.chunk.clone())
        .collect();
    assert_eq!(
        done.status,
        JobStatus::Done,
        "{what} failed: {done:?}\n{logs}"
    );
    done
}

/// Sites end to end: bad domains refused before anything runs; a site with its placeholder; a git repository
/// on an SSH git server (its host key checked); deploy commit 1, then commit 2 through a signed webhook (a bad
/// signature changes nothing), roll back; a failing deploy leaves the live release serving; site commands
/// run literally, are timed out and kept in the history; the .env is written and read without being logged;
/// removal takes the vhost and files away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let token = webhook::webhook_token(store, &site).await.unwrap();
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
    let good_sig = sign(token.expose());
    let (status, answer) = http_request(
        &panel.addr,
        "POST",
        "panel",
        path.expose(),
        &[
            ("X-GitHub-Event", "push"),
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
    assert!(d2.duration_ms().unwrap() >= 0);

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

/// The sites test's daemon writes where it runs: wait until that is `release` of app.test, as the app user.
async fn daemon_runs_in(host: &DebianHost, release: &str) {
    let out = host
        .root(&format!(
            "for i in $(seq 1 50); do [ \"$(cat /home/brokeforge/daemon.out 2>/dev/null)\" = /home/brokeforge/app.test/releases/{release} ] \
             && stat -c %U /home/brokeforge/daemon.out && exit 0; sleep 0.2; done; cat /home/brokeforge/daemon.out; exit 1"
        ))
        .await;
    assert!(
        out.success(),
        "the daemon does not run in {release}: {}",
        out.stdout_text()
    );
    assert_eq!(out.stdout_text(), "brokeforge\n");
}

/// A git server on the host: user `git` with a bare repository `/srv/git/app.git`, commit 1 pushed (a page
/// printing "commit one"). Returns the commit.
async fn git_server(host: &DebianHost) -> String {
    let setup = host
        .root(
            "set -e; id git >/dev/null 2>&1 || useradd -m -d /srv/git -s /bin/bash git; \
             install -d -o git -g git -m 700 /srv/git/.ssh; rm -rf /srv/git/app.git /tmp/work; \
             git config --global --add safe.directory '*'; git init -q --bare -b main /srv/git/app.git; \
             git init -q -b main /tmp/work; cd /tmp/work; git config user.email t@e; git config user.name t; \
             mkdir public; printf '<?php echo \"commit one\";' > public/index.php; git add .; git commit -qm one; \
             git push -q /srv/git/app.git main; chown -R git:git /srv/git; git rev-parse HEAD",
        )
        .await;
    assert!(setup.success(), "{}", setup.stderr_text());
    setup.stdout_text().trim().to_string()
}

/// Push commit 2 ("commit two") to the host's git server; returns the commit.
async fn push_commit_two(host: &DebianHost) -> String {
    let push = host
        .root(
            "set -e; cd /tmp/work; printf '<?php echo \"commit two\";' > public/index.php; git commit -qam two; \
             git push -q /srv/git/app.git main; chown -R git:git /srv/git; git rev-parse HEAD",
        )
        .await;
    assert!(push.success(), "{}", push.stderr_text());
    push.stdout_text().trim().to_string()
}

/// The CLI end to end on a real host: direct onboarding with `--root-key --follow`, the web server, a site, its
/// repository and deployments, rollback to the previous release, site commands with their exit codes, the .env.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_onboards_deploys_and_rolls_back() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !enabled() {
        return;
    }
    let host = DebianHost::start(16);
    let panel = Panel::start("127.0.0.1:0").await;
    let token = "bf_e2e_cli_token_0123456789";
    panel
        .store
        .create_api_token(
            panel.user_id,
            "e2e",
            &brokeforge_domain::accounts::sha256_hex(token),
            "bf_e2e",
        )
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("root");
    std::fs::write(&key_file, host.root_key.expose()).unwrap();
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", format!("http://{}", panel.addr))
            .env("BROKEFORGE_TOKEN", token)
            .env("XDG_CONFIG_HOME", keys.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = c.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = c.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let ok = |r: (Option<i32>, String, String), what: &str| {
        assert_eq!(r.0, Some(0), "{what}:\n{}\n{}", r.1, r.2);
        r
    };

    let (_, _, err) = ok(
        cli(
            &[
                "server",
                "add",
                "--name",
                "cli-web",
                "--ip",
                &host.ip,
                "--root-key",
                key_file.to_str().unwrap(),
                "--host-key-fingerprint",
                &host.fingerprint,
                "--follow",
            ],
            None,
        ),
        "server add --follow",
    );
    assert!(
        err.contains("Installing base packages")
            || err.contains("install_base_packages")
            || err.contains("base packages"),
        "{err}"
    );
    let server = panel
        .store
        .servers_for_user(panel.user_id)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        server.provision_status,
        ProvisionStatus::Provisioned,
        "{err}"
    );

    ok(
        cli(
            &["install", "webserver", "--server", "cli-web", "--follow"],
            None,
        ),
        "install webserver",
    );
    ok(
        cli(
            &[
                "site", "create", "--server", "cli-web", "--domain", "cli.test", "--follow",
            ],
            None,
        ),
        "site create",
    );
    let commit1 = git_server(&host).await;
    let (_, key, _) = ok(
        cli(
            &[
                "site",
                "deploy-key",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
            ],
            None,
        ),
        "deploy-key",
    );
    assert!(host
        .root(&format!(
            "printf '%s\\n' '{}' > /srv/git/.ssh/authorized_keys && chown git:git /srv/git/.ssh/authorized_keys && chmod 600 /srv/git/.ssh/authorized_keys",
            key.trim()
        ))
        .await
        .success());
    ok(
        cli(
            &[
                "site",
                "repository",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--repository",
                "git@127.0.0.1:/srv/git/app.git",
                "--branch",
                "main",
                "--host-key-fingerprint",
                &host.fingerprint,
                "--follow",
            ],
            None,
        ),
        "site repository",
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit one");
    push_commit_two(&host).await;
    ok(
        cli(
            &[
                "site", "deploy", "--server", "cli-web", "--domain", "cli.test", "--follow",
            ],
            None,
        ),
        "site deploy",
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit two");
    ok(
        cli(
            &[
                "site", "rollback", "--server", "cli-web", "--domain", "cli.test", "--follow",
            ],
            None,
        ),
        "site rollback",
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit one");
    let (_, out, _) = ok(
        cli(
            &[
                "site",
                "deployments",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--json",
            ],
            None,
        ),
        "deployments",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["deployments"].as_array().unwrap().len(), 3);
    assert_eq!(v["deployments"][2]["commit_hash"], commit1.as_str());

    // Site commands: output streamed, the exit code passed on.
    let (_, out, _) = ok(
        cli(
            &[
                "site",
                "run",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--",
                "echo \"it's $HOME\"; cat public/index.php",
            ],
            None,
        ),
        "site run",
    );
    assert_eq!(out, "it's /home/brokeforge\n<?php echo \"commit one\";");
    let r = cli(
        &[
            "site",
            "run",
            "--server",
            "cli-web",
            "--domain",
            "cli.test",
            "--",
            "echo bad >&2; exit 3",
        ],
        None,
    );
    assert_eq!(r.0, Some(3), "{r:?}");
    assert_eq!(r.2, "bad\n");

    // The .env through stdin and back.
    ok(
        cli(
            &[
                "site", "env", "set", "--server", "cli-web", "--domain", "cli.test",
            ],
            Some("APP_ENV=production\nSECRET='a$b'\n"),
        ),
        "env set",
    );
    let (_, env, _) = ok(
        cli(
            &[
                "site", "env", "get", "--server", "cli-web", "--domain", "cli.test",
            ],
            None,
        ),
        "env get",
    );
    assert_eq!(env, "APP_ENV=production\nSECRET='a$b'\n");

    // Scheduled commands and daemons through the CLI: a bad line is refused before anything is sent; set,
    // listed, cleared.
    let bad = cli(
        &[
            "site",
            "tasks",
            "--server",
            "cli-web",
            "--domain",
            "cli.test",
            "--schedule",
            "* * * * $(id) php x",
        ],
        None,
    );
    assert!(
        bad.0 != Some(0) && bad.2.contains("not a schedule"),
        "{bad:?}"
    );
    ok(
        cli(
            &[
                "site",
                "tasks",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--schedule",
                "@daily php -v",
                "--daemon",
                "2: echo daemon-says-hi; sleep 1000",
                "--follow",
            ],
            None,
        ),
        "site tasks",
    );
    let (_, listed, _) = ok(
        cli(
            &[
                "site", "tasks", "--server", "cli-web", "--domain", "cli.test",
            ],
            None,
        ),
        "site tasks (list)",
    );
    assert!(
        listed.contains("  @daily php -v")
            && listed.contains("  2: echo daemon-says-hi; sleep 1000"),
        "{listed}"
    );
    let (_, out, _) = ok(
        cli(
            &[
                "site", "tasks", "--server", "cli-web", "--domain", "cli.test", "--output",
            ],
            None,
        ),
        "site tasks --output",
    );
    assert!(out.contains("daemon-says-hi"), "{out}");
    assert_eq!(
        host.root(
            "systemctl list-units --plain --no-legend --state=active 'brokeforge-site-*' | wc -l"
        )
        .await
        .stdout_text(),
        "2\n"
    );
    ok(
        cli(
            &[
                "site", "tasks", "--server", "cli-web", "--domain", "cli.test", "--clear",
                "--follow",
            ],
            None,
        ),
        "site tasks --clear",
    );
    assert_eq!(
        host.root("systemctl list-units --plain --no-legend --all 'brokeforge-site-*' | wc -l; ls /etc/cron.d | grep -c brokeforge")
            .await
            .stdout_text(),
        "0\n0\n"
    );

    // HTTPS through the CLI, from the test ACME server; then `site show` reports it, and --remove undoes it.
    let acme = AcmeServer::start(16);
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &acme.ca_pem).unwrap();
    let bad = cli(
        &[
            "site",
            "certificate",
            "--server",
            "cli-web",
            "--domain",
            "cli.test",
            "--email",
            "nope",
        ],
        None,
    );
    assert!(
        bad.0 != Some(0) && bad.2.contains("email address"),
        "{bad:?}"
    );
    let ca_path = ca.path().to_str().unwrap();
    ok(
        cli(
            &[
                "site",
                "certificate",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--email",
                "ops@cli.test",
                "--acme-directory",
                &acme.directory,
                "--acme-ca",
                ca_path,
                "--follow",
            ],
            None,
        ),
        "site certificate",
    );
    let https = host
        .root("curl -sSk --resolve cli.test:443:127.0.0.1 https://cli.test/")
        .await
        .stdout_text();
    assert_eq!(https, "commit one");
    let (_, show, _) = ok(
        cli(
            &[
                "site", "show", "--server", "cli-web", "--domain", "cli.test",
            ],
            None,
        ),
        "site show",
    );
    assert!(show.contains("https        cli.test (expires 20"), "{show}");
    ok(
        cli(
            &[
                "site",
                "certificate",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--remove",
                "--follow",
            ],
            None,
        ),
        "site certificate --remove",
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit one");
}
