//! The client commands against a real `brokeforge serve` (child process, SQLite) whose "server" is the
//! in-process SSH server; the harmless demo package stands in for real software.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use brokeforge_core::CredentialKind;
use brokeforge_ssh::testkit::TestSshServer;
use brokeforge_store::{MasterKey, Store};

mod audit;
mod teams;
mod twofactor;

struct Panel {
    dir: tempfile::TempDir,
    key_hex: String,
    url: String,
    token: String,
    child: std::process::Child,
    store: Store,
}

impl Drop for Panel {
    fn drop(&mut self) {
        super::send_sigterm(self.child.id());
        let _ = self.child.wait();
    }
}

impl Panel {
    /// On loopback: the one-line script may travel over HTTP.
    async fn start() -> Panel {
        Self::start_with(&[("BROKEFORGE_INSECURE_PROVISIONING", "1")]).await
    }

    async fn start_with(env: &[(&str, &str)]) -> Panel {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("bf.db").display());
        let key = MasterKey::generate().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("BROKEFORGE_DATABASE_URL", &db)
            .env("BROKEFORGE_MASTER_KEY", key.to_hex().as_str())
            .env("BROKEFORGE_DEMO_PACKAGE", "1")
            .env("BROKEFORGE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.contains("://"), "{line}");
        let admin = |args: &[&str], stdin: &str| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
                .arg("admin")
                .args(args)
                .env("BROKEFORGE_DATABASE_URL", &db)
                .env("BROKEFORGE_MASTER_KEY", key.to_hex().as_str())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "admin {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        admin(
            &[
                "create-user",
                "--email",
                "ops@example.com",
                "--password-stdin",
                "--admin",
            ],
            "a long enough password\n",
        );
        let token = admin(&["create-token", "--email", "ops@example.com"], "")
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        assert!(token.starts_with("bf_"), "{token}");
        let store = Store::open(&db, &key).await.unwrap();
        Panel {
            dir,
            key_hex: key.to_hex().to_string(),
            url,
            token,
            child,
            store,
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(args, &[])
    }

    fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", &self.url)
            .env("BROKEFORGE_TOKEN", &self.token)
            .env("XDG_CONFIG_HOME", self.dir.path())
            // The caller's settings win (another user's token).
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A server backed by the in-process SSH server: added through the CLI, its key trusted there, its host key
/// pinned through the CLI.
async fn server(p: &Panel, ssh: &TestSshServer) -> i64 {
    let out = p.cli(&[
        "server",
        "add",
        "--name",
        "web",
        "--ip",
        "127.0.0.1",
        "--port",
        &ssh.port().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("curl -fsSL http://"),
        "{}",
        text(&out)
    );
    let list = p.cli(&["server", "list", "--json"]);
    let v: serde_json::Value =
        serde_json::from_slice(&list.stdout).expect("server list --json is JSON");
    let id = v["servers"][0]["server"]["id"].as_i64().unwrap();
    let cred = p.store.credential(id, CredentialKind::User).await.unwrap();
    ssh.authorize("brokeforge", &cred.public_key);
    let pin = p.cli(&[
        "server",
        "pin-host-key",
        "web",
        "--fingerprint",
        &ssh.host_key_fingerprint,
    ]);
    assert!(pin.status.success(), "{}", text(&pin));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_follow_plan_json_and_errors() {
    let p = Panel::start().await;
    let ssh = TestSshServer::start().await;
    let id = server(&p, &ssh).await;

    // The plan first: exactly what the job will run.
    let plan = p.cli(&["plan", "demo", "--server", "web", "--set", "step_ms=50"]);
    assert!(plan.status.success(), "{}", text(&plan));
    let plan_text = String::from_utf8_lossy(&plan.stdout).to_string();
    let commands: Vec<String> = plan_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("$ "))
        .map(|l| l.split("  [timeout").next().unwrap().to_string())
        .collect();
    assert_eq!(commands.len(), 4, "{plan_text}");
    assert!(plan_text.contains("[1/4] prepare: Preparing"));

    // Install with --follow: exit 0 and every milestone in the plain output.
    let out = p.cli(&[
        "install",
        "demo",
        "--server",
        "web",
        "--set",
        "step_ms=50",
        "--follow",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for m in [
        "[1/4] Preparing",
        "[2/4] Downloading",
        "[3/4] Configuring",
        "[4/4] Finishing",
        "done",
    ] {
        assert!(err.contains(m), "{m} missing:\n{}", text(&out));
    }
    // The job ran what the plan showed.
    let jobs = p.store.jobs_for_server(id).await.unwrap();
    let ran: String = p
        .store
        .job_logs(jobs.last().unwrap().id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.chunk)
        .collect();
    for c in &commands {
        assert!(ran.contains(&format!("$ {c}")), "`{c}` not run:\n{ran}");
    }

    // A failing package: non-zero exit and the error.
    let out = p.cli(&[
        "install",
        "demo",
        "--server",
        "web",
        "--set",
        "step_ms=20",
        "--set",
        "fail_once_at=download",
        "--follow",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed on purpose") && err.contains("brokeforge jobs retry"),
        "{}",
        text(&out)
    );
    // Retry passes (the demo fails once).
    let failed_id = p
        .store
        .jobs_for_server(id)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let out = p.cli(&["jobs", "retry", &failed_id.to_string(), "--follow"]);
    assert!(out.status.success(), "{}", text(&out));

    // --json output parses.
    for args in [
        vec!["server", "show", "web", "--json"],
        vec!["jobs", "list", "--server", "web", "--json"],
        vec!["events", "--server", "web", "--json"],
        vec!["catalogue", "--json"],
    ] {
        let out = p.cli(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let parsed = if args[0] == "events" {
            stdout
                .lines()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        } else {
            serde_json::from_str::<serde_json::Value>(&stdout).is_ok()
        };
        assert!(parsed, "{args:?} is not JSON: {stdout}");
    }

    // The catalogue for a server: what its OS cannot take says why.
    let web = p.store.servers_for_user(1).await.unwrap();
    let web = web.iter().find(|s| s.name == "web").unwrap();
    p.store.set_server_os(web.id, "debian 12").await.unwrap();
    let out = p.cli(&["catalogue", "--server", "web"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    let mysql = listed.split("\nmysql").nth(1).unwrap_or_default();
    assert!(
        mysql
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("unavailable on this server")),
        "{listed}"
    );
    let mariadb = listed.split("\nmariadb").nth(1).unwrap_or_default();
    assert!(
        !mariadb
            .lines()
            .nth(1)
            .unwrap_or_default()
            .contains("unavailable"),
        "{listed}"
    );

    // Piped into a reader that goes away (`| head`): the CLI stops quietly, as Unix tools do, not with a
    // panic about a broken pipe. The read end is closed before the CLI prints anything.
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["catalogue"])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(13),
        "ended by SIGPIPE: {:?} {stderr}",
        out.status
    );

    // Bad arguments: a usage error, not a panic.
    for args in [
        vec!["install"],
        vec!["install", "demo", "--server", "web", "--set", "novalue"],
        vec!["site", "run", "--server", "web", "--domain", "x.com"],
        vec!["server", "add", "--name", "x"],
    ] {
        let out = p.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage") || err.contains("--help"),
            "{}",
            text(&out)
        );
        assert!(!err.contains("panicked"), "{}", text(&out));
    }
    // Bad values: the server's message.
    let out = p.cli(&["install", "nope", "--server", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown package `nope`"),
        "{}",
        text(&out)
    );
    let out = p.cli(&["server", "show", "nonexistent"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server `nonexistent`"),
        "{}",
        text(&out)
    );
    // A wrong token and no server at all say what to do.
    let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["server", "list"])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", "bf_wrong")
        .env("XDG_CONFIG_HOME", p.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("brokeforge login"),
        "{}",
        text(&out)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["server", "list", "--url", "http://127.0.0.1:1"])
        .env_remove("BROKEFORGE_TOKEN")
        .env("XDG_CONFIG_HOME", p.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach BrokeForge"),
        "{}",
        text(&out)
    );
}

/// `brokeforge login` saves a token (mode 0600) that later commands use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_a_token() {
    let p = Panel::start().await;
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args([
            "login",
            "--url",
            &p.url,
            "--email",
            "ops@example.com",
            "--password-stdin",
        ])
        .env("XDG_CONFIG_HOME", p.dir.path())
        .env_remove("BROKEFORGE_URL")
        .env_remove("BROKEFORGE_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let file = p.dir.path().join("brokeforge/client.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["server", "list"])
        .env("XDG_CONFIG_HOME", p.dir.path())
        .env_remove("BROKEFORGE_URL")
        .env_remove("BROKEFORGE_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no servers yet"));
}

/// On a terminal (a pty from `script`), the progress bar redraws in place and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bar_redraws_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed for the terminal test");
    }
    let p = Panel::start().await;
    let ssh = TestSshServer::start().await;
    server(&p, &ssh).await;
    let cmd = format!(
        "{} install demo --server web --set step_ms=400 --follow",
        env!("CARGO_BIN_EXE_brokeforge")
    );
    let out = Command::new("script")
        .args(["-qefc", &cmd, "/dev/null"])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{raw}");
    // Redrawn in place (carriage returns / line clears), with the bar reaching 4/4 and finishing.
    // The terminal turns every newline into "\r\n": only a carriage return of its own is a redraw.
    assert!(
        raw.replace("\r\n", "\n").contains('\r') || raw.contains("\x1b[2K"),
        "no redraw: {raw:?}"
    );
    assert!(raw.contains("4/4") && raw.contains("done"), "{raw:?}");
    assert!(raw.contains("Configuring"), "{raw:?}");
    assert!(
        !raw.contains("[1/4] Preparing"),
        "plain lines on a terminal: {raw:?}"
    );
}

/// Local admin commands: a reset password works and ends nothing else; completions are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reset_password_and_completions() {
    let p = Panel::start().await;
    let db = format!("sqlite://{}", p.dir.path().join("bf.db").display());
    let key = p.key_hex.clone();
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_DATABASE_URL", &db)
            .env("BROKEFORGE_MASTER_KEY", &key)
            .env("XDG_CONFIG_HOME", p.dir.path())
            .env_remove("BROKEFORGE_URL")
            .env_remove("BROKEFORGE_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = run(
        &[
            "admin",
            "reset-password",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        "short\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"));
    let out = run(
        &[
            "admin",
            "reset-password",
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        "the new long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &[
            "login",
            "--url",
            &p.url,
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the old password still works: {}",
        text(&out)
    );
    let out = run(
        &[
            "login",
            "--url",
            &p.url,
            "--email",
            "ops@example.com",
            "--password-stdin",
        ],
        "the new long password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &[
            "admin",
            "create-user",
            "--email",
            "not-an-email",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("email"),
        "{}",
        text(&out)
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell], "");
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("brokeforge") && script.contains("install"),
            "{shell}"
        );
    }
}

/// `server add --follow` without a root key follows the script's reports; a failed step ends it with exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_add_follow_reports_the_script_steps() {
    use std::io::BufRead;
    let p = Panel::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args([
            "server",
            "add",
            "--name",
            "scripted",
            "--ip",
            "203.0.113.77",
            "--follow",
        ])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut token = None;
    for _ in 0..10 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if let Some(rest) = line.split("/provision/").nth(1) {
            token = rest.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    let token = token.expect("the one-line script");
    let addr = p.url.trim_start_matches("http://").to_string();
    // What the script does: fetch itself, then report.
    let (status, _) = super::http(&addr, "GET", &format!("/provision/{token}"), "");
    assert_eq!(status, 200);
    // The follower reads the stream from its start (after=0): reports made before it connects still reach it.
    for body in [
        r#"{"step":"create_users","status":"in_progress"}"#,
        r#"{"step":"install_keys","status":"in_progress"}"#,
        r#"{"step":"install_keys","status":"failed","message":"authorized_keys: read-only file system"}"#,
    ] {
        let (status, answer) =
            super::http(&addr, "POST", &format!("/provision/{token}/callback"), body);
        assert_eq!(status, 200, "{answer}");
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("] Creating the brokeforge and worker users"),
        "{err}"
    );
    assert!(err.contains("] Installing BrokeForge's SSH keys"), "{err}");
    assert!(err.contains("read-only file system"), "{err}");
}

/// Shutting BrokeForge down while a client follows a job: the live stream does not hold the shutdown up, the
/// running job finishes in the grace period, and the client reconnects to the restarted server and reports
/// how the job ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_survives_a_restart() {
    let mut p = Panel::start().await;
    let ssh = TestSshServer::start().await;
    let server_id = server(&p, &ssh).await;
    let follower = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args([
            "install",
            "demo",
            "--server",
            "web",
            "--set",
            "step_ms=700",
            "--follow",
        ])
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop BrokeForge once the job runs its steps (the follower is following it by then or reconnects).
    let started = std::time::Instant::now();
    loop {
        let jobs = p.store.jobs_for_server(server_id).await.unwrap();
        if let Some(j) = jobs.iter().find(|j| j.kind == "demo_installer")
            && !p.store.job_events(j.id).await.unwrap().is_empty()
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the job never started: {jobs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    super::send_sigterm(p.child.id());
    let started = std::time::Instant::now();
    loop {
        if p.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "serve did not stop while a client was following"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Back on the same address.
    let bind = p.url.trim_start_matches("http://").to_string();
    let db = format!("sqlite://{}", p.dir.path().join("bf.db").display());
    p.child = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(["serve", "--bind", &bind])
        .env("BROKEFORGE_DATABASE_URL", &db)
        .env("BROKEFORGE_MASTER_KEY", &p.key_hex)
        .env("BROKEFORGE_DEMO_PACKAGE", "1")
        .env("BROKEFORGE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("done"),
        "{}",
        text(&out)
    );
}

/// A CA and a certificate it signed for localhost and 127.0.0.1, as PEM files: (ca, cert, key).
fn test_certificate(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

/// `serve` with certificate files speaks HTTPS only; the CLI trusts a private CA when told to
/// (BROKEFORGE_CA_FILE) and refuses the certificate otherwise; the one-line script then comes from an
/// https:// address, with no opt-in needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_from_certificate_files() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_certificate(certs.path());
    let p =
        Panel::start_with(&[("BROKEFORGE_TLS_CERT", &cert), ("BROKEFORGE_TLS_KEY", &key)]).await;
    assert!(p.url.starts_with("https://127.0.0.1:"), "{}", p.url);

    let untrusted = p.cli(&["server", "list"]);
    assert!(!untrusted.status.success(), "{}", text(&untrusted));
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("cannot reach BrokeForge"),
        "{}",
        text(&untrusted)
    );
    let trusted = [("BROKEFORGE_CA_FILE", ca.as_str())];
    let add = p.cli_with(
        &["server", "add", "--name", "web", "--ip", "203.0.113.5"],
        &trusted,
    );
    assert!(add.status.success(), "{}", text(&add));
    let expected = format!("curl -fsSL {}/provision/", p.url);
    assert!(
        String::from_utf8_lossy(&add.stdout).contains(&expected),
        "{}",
        text(&add)
    );

    // Plain HTTP on the same port gets no HTTP answer.
    let addr = p.url.trim_start_matches("https://");
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).starts_with("HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// Certificate settings that cannot work stop `serve` with a message that says which.
#[test]
fn bad_tls_settings_stop_serve_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = test_certificate(dir.path());
    let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let wrong_key = dir.path().join("other.pem");
    std::fs::write(&wrong_key, other_key).unwrap();
    let wrong_key = wrong_key.display().to_string();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("BROKEFORGE_TLS_CERT", &cert)], "go together"),
        (
            &[
                ("BROKEFORGE_TLS_CERT", &cert),
                ("BROKEFORGE_TLS_KEY", &wrong_key),
            ],
            "does not belong to the certificate",
        ),
        (&[("BROKEFORGE_TLS", "acme")], "BROKEFORGE_PUBLIC_URL"),
        (
            &[
                ("BROKEFORGE_TLS", "acme"),
                ("BROKEFORGE_PUBLIC_URL", "https://10.0.0.1"),
            ],
            "needs a DNS name",
        ),
    ];
    for (env, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("BROKEFORGE_DATA_DIR", dir.path())
            .env_remove("BROKEFORGE_DATABASE_URL")
            .env_remove("BROKEFORGE_MASTER_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{env:?}: {}",
            text(&out)
        );
    }
}

/// `brokeforge backup`: the S3 secret only from stdin, plans checked, snapshots listed, an overwriting restore
/// refused without --yes (nothing queued), and the recovery kit printed as the page serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_commands() {
    let p = Panel::start().await;
    let out = p.cli(&["server", "add", "--name", "db-1", "--ip", "203.0.113.30"]);
    assert!(out.status.success(), "{}", text(&out));
    let s3 = [
        "backup",
        "storage",
        "add",
        "--name",
        "offsite",
        "--kind",
        "s3",
        "--endpoint",
        "https://s3.example.com",
        "--bucket",
        "backups",
        "--path-style",
        "--access-key-id",
        "AKIAEXAMPLE",
    ];
    let out = p.cli(&s3);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--secret-stdin"), "{}", text(&out));
    let mut args = s3.to_vec();
    args.push("--secret-stdin");
    let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args(&args)
        .env("BROKEFORGE_URL", &p.url)
        .env("BROKEFORGE_TOKEN", &p.token)
        .env("XDG_CONFIG_HOME", p.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"very-secret-key\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&[
        "backup",
        "storage",
        "add",
        "--name",
        "far",
        "--kind",
        "sftp",
        "--host",
        "backup.example.com",
        "--user",
        "b",
        "--path",
        "/srv/b",
    ]);
    assert!(
        out.status.success() && text(&out).contains("ssh-ed25519 "),
        "{}",
        text(&out)
    );
    let out = p.cli(&["backup", "storage", "list"]);
    assert!(
        text(&out).contains("offsite") && !text(&out).contains("very-secret-key"),
        "{}",
        text(&out)
    );
    let out = p.cli(&[
        "backup",
        "plan",
        "create",
        "--server",
        "db-1",
        "--name",
        "shop",
        "--database",
        "mariadb:shop",
        "--storage",
        "offsite",
        "--schedule",
        "nightly",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("schedule"), "{}", text(&out));
    let out = p.cli(&[
        "backup",
        "plan",
        "create",
        "--server",
        "db-1",
        "--name",
        "shop",
        "--database",
        "mariadb:shop",
        "--storage",
        "offsite",
        "--schedule",
        "0 3 * * *",
        "--keep-last",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&["backup", "plan", "list", "--server", "db-1"]);
    assert!(
        text(&out).contains("shop\tmariadb:shop\t-> offsite\t0 3 * * *\t0 snapshot(s)"),
        "{}",
        text(&out)
    );
    let out = p.cli(&[
        "backup",
        "snapshots",
        "--server",
        "db-1",
        "--plan",
        "shop",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshots"], serde_json::json!([]), "{}", text(&out));
    let plan = p
        .store
        .backup_plan_by_name(
            p.store
                .servers_for_user(1)
                .await
                .unwrap()
                .first()
                .unwrap()
                .id,
            "shop",
        )
        .await
        .unwrap()
        .unwrap();
    p.store
        .sync_backup_snapshots(
            plan.id,
            &[brokeforge_store::SeenSnapshot {
                snapshot_id: "89abcdef".repeat(8),
                taken_at: 1_795_807_776_000,
                job_id: None,
                size_bytes: Some(3 << 20),
                duration_ms: Some(1500),
            }],
        )
        .await
        .unwrap();
    let out = p.cli(&["backup", "snapshots", "--server", "db-1", "--plan", "shop"]);
    assert!(
        text(&out).contains("89abcdef") && text(&out).contains("3.0 MiB"),
        "{}",
        text(&out)
    );
    let jobs_before = p.store.recent_jobs(plan.server_id, 50).await.unwrap().len();
    let out = p.cli(&[
        "backup",
        "restore",
        "--server",
        "db-1",
        "--plan",
        "shop",
        "--snapshot",
        "89abcdef",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("overwrites the tables of schema shop"),
        "{}",
        text(&out)
    );
    assert_eq!(
        p.store.recent_jobs(plan.server_id, 50).await.unwrap().len(),
        jobs_before
    );
    let out = p.cli(&[
        "backup",
        "restore",
        "--server",
        "db-1",
        "--plan",
        "shop",
        "--snapshot",
        "89abcdef",
        "--yes",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("backup_restore"), "{}", text(&out));
    let out = p.cli(&[
        "backup",
        "recovery-kit",
        "--server",
        "db-1",
        "--plan",
        "shop",
    ]);
    let password = p.store.backup_plan_password(plan.id).await.unwrap();
    assert!(
        text(&out).contains(&format!("Repository password: {}", password.expose())),
        "{}",
        text(&out)
    );
}

/// `backup-self` while `serve` runs, sealed with a passphrase, then `restore-self` into an empty data
/// directory: the servers and their sealed keys come back under the copy's master key. A wrong passphrase,
/// a cut file and a non-empty target are refused and leave nothing behind; a bare copy needs the key given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_self_and_restore_self() {
    let p = Panel::start().await;
    let out = p.cli(&["server", "add", "--name", "keep-me", "--ip", "203.0.113.40"]);
    assert!(out.status.success(), "{}", text(&out));
    let db = format!("sqlite://{}", p.dir.path().join("bf.db").display());
    let run = |args: &[&str], env: &[(&str, &str)], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .envs(env.iter().copied())
            .env("BROKEFORGE_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let live = [
        ("BROKEFORGE_DATABASE_URL", db.as_str()),
        ("BROKEFORGE_MASTER_KEY", p.key_hex.as_str()),
    ];
    let sealed = p.dir.path().join("self.bfbackup");
    let sealed_s = sealed.to_str().unwrap();
    let out = run(
        &["backup-self", "--to", sealed_s, "--passphrase-stdin"],
        &live,
        "a long passphrase here\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run(
        &["backup-self", "--to", sealed_s, "--passphrase-stdin"],
        &live,
        "a long passphrase here\n",
    );
    assert!(!out.status.success(), "overwrote a backup: {}", text(&out));

    let target = tempfile::tempdir().unwrap();
    let data = target.path().join("data");
    let data_s = data.to_str().unwrap();
    let fresh = [("BROKEFORGE_DATA_DIR", data_s)];
    let out = run(
        &["restore-self", "--from", sealed_s, "--passphrase-stdin"],
        &fresh,
        "the wrong passphrase!\n",
    );
    assert!(
        !out.status.success() && text(&out).contains("wrong passphrase"),
        "{}",
        text(&out)
    );
    assert!(!data.join("brokeforge.db").exists() && !data.join("master.key").exists());
    // A file cut short is refused too.
    let bytes = std::fs::read(&sealed).unwrap();
    let cut = p.dir.path().join("cut.bfbackup");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = run(
        &[
            "restore-self",
            "--from",
            cut.to_str().unwrap(),
            "--passphrase-stdin",
        ],
        &fresh,
        "a long passphrase here\n",
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!data.join("brokeforge.db").exists());

    let out = run(
        &["restore-self", "--from", sealed_s, "--passphrase-stdin"],
        &fresh,
        "a long passphrase here\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_eq!(key.trim(), p.key_hex);
    let restored = Store::open(
        &format!("sqlite://{}", data.join("brokeforge.db").display()),
        &MasterKey::from_hex(key.trim()).unwrap(),
    )
    .await
    .unwrap();
    let servers = restored.servers_for_user(1).await.unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].name, "keep-me");
    let original = p
        .store
        .credential(servers[0].id, CredentialKind::Root)
        .await
        .unwrap();
    let copy = restored
        .credential(servers[0].id, CredentialKind::Root)
        .await
        .unwrap();
    assert_eq!(copy.private_key.expose(), original.private_key.expose());
    restored.close().await;
    let out = run(
        &["restore-self", "--from", sealed_s, "--passphrase-stdin"],
        &fresh,
        "a long passphrase here\n",
    );
    assert!(
        !out.status.success() && text(&out).contains("exists"),
        "{}",
        text(&out)
    );

    // A bare copy: the database only; restoring it needs the key.
    let bare = p.dir.path().join("self.db");
    let out = run(&["backup-self", "--to", bare.to_str().unwrap()], &live, "");
    assert!(out.status.success(), "{}", text(&out));
    let other = tempfile::tempdir().unwrap();
    let other_s = other.path().to_str().unwrap();
    let out = run(
        &["restore-self", "--from", bare.to_str().unwrap()],
        &[("BROKEFORGE_DATA_DIR", other_s)],
        "",
    );
    assert!(
        !out.status.success() && text(&out).contains("master key"),
        "{}",
        text(&out)
    );
    let out = run(
        &["restore-self", "--from", bare.to_str().unwrap()],
        &[
            ("BROKEFORGE_DATA_DIR", other_s),
            ("BROKEFORGE_MASTER_KEY", p.key_hex.as_str()),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// `brokeforge doctor` on a working panel says there is nothing to fix (exit 0); with the wrong master key,
/// a plain-HTTP public URL or an unreadable certificate it names each problem and exits 1. It creates
/// nothing: no master key appears in an empty data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_what_to_fix() {
    let p = Panel::start().await;
    let db = format!("sqlite://{}", p.dir.path().join("bf.db").display());
    let doctor = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .arg("doctor")
            .env_remove("BROKEFORGE_PUBLIC_URL")
            .envs(env.iter().copied())
            .env("BROKEFORGE_LOG", "warn")
            .output()
            .unwrap()
    };
    let base = [
        ("BROKEFORGE_DATABASE_URL", db.as_str()),
        ("BROKEFORGE_MASTER_KEY", p.key_hex.as_str()),
        ("BROKEFORGE_PUBLIC_URL", "https://panel.example.com"),
    ];
    let out = doctor(&base);
    assert!(out.status.success(), "{}", text(&out));
    for line in [
        "ok       database",
        "ok       schema",
        "ok       master key",
        "nothing to fix",
    ] {
        assert!(text(&out).contains(line), "{line}: {}", text(&out));
    }

    let wrong = brokeforge_store::MasterKey::generate().unwrap();
    let out = doctor(&[
        ("BROKEFORGE_DATABASE_URL", db.as_str()),
        ("BROKEFORGE_MASTER_KEY", wrong.to_hex().as_str()),
        ("BROKEFORGE_PUBLIC_URL", "http://panel.example.com"),
        ("BROKEFORGE_TLS_CERT", "/nonexistent/cert.pem"),
        ("BROKEFORGE_TLS_KEY", "/nonexistent/key.pem"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for line in [
        "PROBLEM  master key",
        "PROBLEM  public URL",
        "PROBLEM  TLS: cannot read /nonexistent/cert.pem",
        "3 problem(s) to fix",
    ] {
        assert!(text(&out).contains(line), "{line}: {}", text(&out));
    }

    let empty = tempfile::tempdir().unwrap();
    let out = doctor(&[("BROKEFORGE_DATA_DIR", empty.path().to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("PROBLEM  master key: none"),
        "{}",
        text(&out)
    );
    assert!(!empty.path().join("master.key").exists());
}

/// `admin rotate-master-key` with a key file: master.key is replaced, every secret opens with the new key
/// (doctor says so) and the old key is refused; with BROKEFORGE_MASTER_KEY set it wants a file for the new
/// key and changes nothing without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let cmd = |args: &[&str], env: &[(&str, &str)], stdin: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_DATA_DIR", &data)
            .env("BROKEFORGE_LOG", "warn")
            .env("BROKEFORGE_PUBLIC_URL", "https://panel.example.com")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = cmd(
        &[
            "admin",
            "create-user",
            "--email",
            "root@example.com",
            "--password-stdin",
            "--admin",
        ],
        &[],
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let old = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let out = cmd(&["admin", "rotate-master-key"], &[], "");
    assert!(out.status.success(), "{}", text(&out));
    let new = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_ne!(old.trim(), new.trim());
    assert!(!dir.path().join("master.key.new").exists());
    let out = cmd(&["doctor"], &[], "");
    assert!(text(&out).contains("ok       master key"), "{}", text(&out));
    let out = cmd(
        &["admin", "list-users"],
        &[("BROKEFORGE_MASTER_KEY", old.trim())],
        "",
    );
    assert!(
        !out.status.success(),
        "the old key still opens: {}",
        text(&out)
    );

    let out = cmd(
        &["admin", "rotate-master-key"],
        &[("BROKEFORGE_MASTER_KEY", new.trim())],
        "",
    );
    assert!(
        !out.status.success() && text(&out).contains("--new-key-file"),
        "{}",
        text(&out)
    );
    let out = cmd(
        &["admin", "list-users"],
        &[("BROKEFORGE_MASTER_KEY", new.trim())],
        "",
    );
    assert!(out.status.success(), "{}", text(&out));
}
