//! The end-to-end harness: real Debian 12 hosts (debootstrap + systemd-nspawn, `scripts/e2e-hosts.sh`), a
//! panel (store + workers) to onboard them, the test ACME server, and waits and HTTP helpers every story uses.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use brokeforge_core::{CredentialKind, ProvisionStatus, Secret};
use brokeforge_packages::services::server::access::onboarding::{
    AddServer, add_server, start_direct_onboarding,
};
use brokeforge_ssh::{ExecOutput, ExecRequest, HostKeyPolicy, SshSession, SshTarget};
use brokeforge_store::{Job, JobStatus, MasterKey, Store};

pub fn enabled() -> bool {
    if std::env::var("BROKEFORGE_E2E").as_deref() == Ok("1") {
        return true;
    }
    brokeforge_store::testing::backend_missing("BROKEFORGE_E2E");
    eprintln!(
        "end-to-end test not run: set BROKEFORGE_E2E=1 (needs root, see scripts/e2e-hosts.sh)"
    );
    false
}

pub fn script() -> PathBuf {
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

/// A test ACME certificate authority (pebble) for host `index`, stopped when dropped (`scripts/e2e-acme.sh`).
pub struct AcmeServer {
    index: u8,
    pub directory: String,
    pub ca_pem: String,
    /// The CA of pebble's own HTTPS, as a file.
    pub ca_file: String,
}

/// Run a drift check on `server` to its end and return its item `name`.
pub async fn drift_item(
    domain: &brokeforge_domain::Domain,
    store: &Store,
    server: &brokeforge_store::Server,
    name: &str,
) -> brokeforge_packages::services::server::drift::DriftItem {
    let job = domain.check_drift(server).await.unwrap();
    let job = wait_job(store, job.id, Duration::from_secs(120)).await;
    assert_eq!(
        job.status,
        brokeforge_store::JobStatus::Done,
        "drift check: {job:?}"
    );
    let view = domain.drift_report(server).await.unwrap().unwrap();
    view.report
        .items
        .into_iter()
        .find(|i| i.item == name)
        .unwrap_or_else(|| panic!("{name} is not a drift item"))
}

pub async fn wait_job(store: &Store, id: i64, limit: Duration) -> Job {
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

pub async fn login(store: &Store, server_id: i64, credential: CredentialKind) -> SshSession {
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

pub async fn run(s: &SshSession, cmd: &str) -> String {
    let out = s
        .exec(ExecRequest::new(cmd, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(out.success(), "`{cmd}` failed: {}", out.stderr_text());
    out.stdout_text()
}

/// The state base provisioning leaves, to compare runs.
pub async fn provisioned_state(root: &SshSession) -> String {
    run(root, "ufw status verbose; cat /etc/apt/apt.conf.d/20auto-upgrades; timedatectl show -p Timezone; \
               dpkg-query -W -f '${Package} ${Version}\\n' | sort | md5sum; ls /etc/sudoers.d /etc/ssh/sshd_config.d")
        .await
}

pub async fn assert_provisioned(store: &Store, server_id: i64) {
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

pub struct Panel {
    _dir: tempfile::TempDir,
    pub store: Store,
    pub user_id: i64,
    pub child: std::process::Child,
    pub addr: String,
}

/// A host onboarded directly and provisioned, ready for services.
pub async fn onboarded(index: u8, name: &str) -> (DebianHost, Panel, i64) {
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

pub async fn install(store: &Store, id: i64, package: &str, settings: &[(&str, &str)]) -> Job {
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

pub async fn remove(store: &Store, id: i64, package: &str) -> Job {
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

/// Run `cmd` with `input` on its stdin (how the tests hand passwords to clients).
pub async fn with_stdin(s: &SshSession, cmd: &str, input: &str) -> ExecOutput {
    let req = ExecRequest {
        stdin: Some(input.as_bytes()),
        ..ExecRequest::new(cmd, Duration::from_secs(30))
    };
    s.exec(req).await.unwrap()
}

/// GET over plain HTTP/1.1 (enough for the tests; no client library needed).
pub async fn http_body(url: &str) -> String {
    http_get(url).await.1
}

pub async fn http_status(url: &str) -> u16 {
    http_get(url).await.0
}

pub async fn http_get(url: &str) -> (u16, String) {
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

/// An HTTP/1.0 request to `ip` with a `Host` header (how a site is reached before its DNS exists).
pub async fn http_request(
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

pub async fn site_page(ip: &str, domain: &str) -> String {
    http_request(ip, "GET", domain, "/", &[], b"").await.1
}

pub async fn wait_ok(store: &Store, job: &Job, what: &str) -> Job {
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

/// The sites test's daemon writes where it runs: wait until that is `release` of app.test, as the app user.
pub async fn daemon_runs_in(host: &DebianHost, release: &str) {
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
pub async fn git_server(host: &DebianHost) -> String {
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
pub async fn push_commit_two(host: &DebianHost) -> String {
    let push = host
        .root(
            "set -e; cd /tmp/work; printf '<?php echo \"commit two\";' > public/index.php; git commit -qam two; \
             git push -q /srv/git/app.git main; chown -R git:git /srv/git; git rev-parse HEAD",
        )
        .await;
    assert!(push.success(), "{}", push.stderr_text());
    push.stdout_text().trim().to_string()
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
        self.root_with_stdin(command, None).await
    }

    /// The same with `input` on the command's standard input (files sent to the host, passwords).
    pub async fn root_with_stdin(&self, command: &str, input: Option<&[u8]>) -> ExecOutput {
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
            .exec(ExecRequest {
                stdin: input,
                ..ExecRequest::new(command, Duration::from_secs(600))
            })
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
        let ca_file = words.next().expect("ca file").to_string();
        let ca_pem = std::fs::read_to_string(&ca_file).unwrap();
        AcmeServer {
            index,
            directory,
            ca_pem,
            ca_file,
        }
    }

    fn script(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-acme.sh"))
            .args(args)
            .output()
            .expect("run scripts/e2e-acme.sh");
        assert!(
            out.status.success(),
            "e2e-acme.sh {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Make `name` resolve to `ip` for the authority (where it validates challenges).
    pub fn add_a(&self, name: &str, ip: &str) {
        self.script(&["add-a", &self.index.to_string(), name, ip]);
    }

    /// The root the authority's certificates chain to (what a public CA's root is to real clients).
    pub fn issuing_root(&self) -> String {
        self.script(&["root", &self.index.to_string()])
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

impl Panel {
    pub async fn start(bind: &str) -> Panel {
        Self::start_with(bind, &[("BROKEFORGE_INSECURE_PROVISIONING", "1")]).await
    }

    /// `brokeforge serve` with these environment settings only.
    pub async fn start_with(bind: &str, env: &[(&str, &str)]) -> Panel {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("e2e.db").display());
        let key = MasterKey::generate().unwrap();
        let store = Store::open(&url, &key).await.unwrap();
        let user_id = store
            .create_user("e2e@example.com", "x", false)
            .await
            .unwrap()
            .id;
        let (child, addr) = super::super::serve_with(&url, &key, dir.path(), bind, env);
        Panel {
            _dir: dir,
            store,
            user_id,
            child,
            addr,
        }
    }
}

impl Panel {
    /// What `brokeforge serve` wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        super::super::send_sigterm(self.child.id());
        let _ = self.child.wait();
    }
}

/// moto's S3 server on host `index`'s network (`scripts/e2e-s3.sh`): `(ENDPOINT, BUCKET)`; stop it with [`S3`].
pub fn s3_start(index: u8) -> (String, String) {
    let out = Command::new("bash")
        .arg(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/e2e-s3.sh"))
        .args(["start", &index.to_string()])
        .output()
        .expect("run scripts/e2e-s3.sh");
    assert!(
        out.status.success(),
        "the S3 stand-in did not start:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut w = text.split_whitespace();
    (w.next().unwrap().to_string(), w.next().unwrap().to_string())
}

/// Stops the S3 stand-in of host N when dropped.
pub struct S3(pub u8);
impl Drop for S3 {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../scripts/e2e-s3.sh"),
            )
            .args(["stop", &self.0.to_string()])
            .status();
    }
}

/// The `brokeforge` CLI against a panel, signed in with an API token of the panel's user.
pub struct Cli {
    url: String,
    token: String,
    config: tempfile::TempDir,
}

impl Cli {
    pub async fn new(panel: &Panel) -> Cli {
        let token = "bf_e2e_story_token_0123456789";
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
        Cli {
            url: format!("http://{}", panel.addr),
            token: token.into(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    /// Run it; (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", &self.url)
            .env("BROKEFORGE_TOKEN", &self.token)
            .env("XDG_CONFIG_HOME", self.config.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Run it and expect success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code,
            Some(0),
            "brokeforge {}:\n{out}\n{err}",
            args.join(" ")
        );
        out
    }

    /// Run it with `--json` and parse the answer.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}
