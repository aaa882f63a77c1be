//! Story: BrokeForge itself installed from its Debian package on a real host, run by systemd, used through the
//! CLI to onboard a second host, upgraded, backed up and restored, its master key rotated, removed and purged.

use std::process::{Command, Stdio};

use super::harness::*;

/// `scripts/build-deb.sh` around the binary under test, as package `version`.
fn build_deb(out: &std::path::Path, version: &str) -> std::path::PathBuf {
    let built = Command::new("bash")
        .arg(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-deb.sh"),
        )
        .args(["--binary", env!("CARGO_BIN_EXE_brokeforge"), "--fast"])
        .args(["--version", version, "--out"])
        .arg(out)
        .output()
        .expect("run scripts/build-deb.sh");
    assert!(
        built.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&built.stdout).trim())
}

/// Run `command` as root on `host`; it must succeed. Returns its standard output.
async fn must(host: &DebianHost, command: &str) -> String {
    let out = host.root(command).await;
    assert!(
        out.success(),
        "`{command}` failed:\n{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    out.stdout_text()
}

/// Send `deb` to the host and install it with apt, as a user would.
async fn apt_install(host: &DebianHost, deb: &std::path::Path) {
    let bytes = std::fs::read(deb).unwrap();
    let name = deb.file_name().unwrap().to_str().unwrap();
    let sent = host
        .root_with_stdin(&format!("cat > /root/{name}"), Some(&bytes))
        .await;
    assert!(sent.success(), "{}", sent.stderr_text());
    must(host, &format!("apt-get install -y -q /root/{name}")).await;
}

/// Wait until `url`'s /health answers 200 (the service starts after systemctl returns).
async fn wait_health(url: &str) {
    let started = std::time::Instant::now();
    loop {
        let reached = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::TcpStream::connect(url.trim_start_matches("http://")),
        )
        .await;
        if matches!(reached, Ok(Ok(_))) && http_status(&format!("{url}/health")).await == 200 {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{url}/health did not answer"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The package on a fresh Debian 12 host: systemd runs `brokeforge serve` as its own user with hardening, the
/// configuration is created once and kept, the data directory is 0700; through the CLI from this machine the
/// panel onboards a second host and installs Redis there; an upgrade keeps servers and keys; `backup-self` then
/// `restore-self` into a third data directory gives a panel that runs jobs; rotating the master key keeps every
/// secret readable and refuses the old key; `remove` keeps the data, `purge` deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn debian_package_runs_upgrades_and_keeps_the_panel() {
    if !enabled() {
        return;
    }
    let debs = tempfile::tempdir().unwrap();
    let first = build_deb(debs.path(), "0.1.0-1");
    let second = build_deb(debs.path(), "0.1.0-2");
    let panel = DebianHost::start(19);
    let target = DebianHost::start(20);

    // As a user would: the package lists first (the package recommends restic for the self-backup).
    must(&panel, "apt-get update -q").await;
    apt_install(&panel, &first).await;
    assert_eq!(
        must(&panel, "systemctl is-enabled brokeforge").await.trim(),
        "enabled"
    );
    wait_health_on_host(&panel, "127.0.0.1:8080").await;
    assert_eq!(
        must(&panel, "ps -o user:20= -C brokeforge").await.trim(),
        "brokeforge"
    );
    assert_eq!(
        must(&panel, "stat -c '%a %U' /var/lib/brokeforge /var/lib/brokeforge/master.key /etc/brokeforge/brokeforge.conf").await,
        "700 brokeforge\n600 brokeforge\n640 root\n"
    );
    let hardening = must(
        &panel,
        "systemctl show brokeforge -p ProtectSystem -p ProtectHome -p NoNewPrivileges -p PrivateTmp -p User",
    )
    .await;
    for want in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "User=brokeforge",
    ] {
        assert!(hardening.contains(want), "{want} missing: {hardening}");
    }
    // Logs go to the journal.
    assert!(
        must(&panel, "journalctl -u brokeforge --no-pager -q")
            .await
            .contains("BrokeForge is listening on http://127.0.0.1:8080"),
    );
    // Until configured it answers on the machine only: the first visit would create the administrator.
    let url = format!("http://{}:8080", panel.ip);
    assert!(
        tokio::net::TcpStream::connect(format!("{}:8080", panel.ip))
            .await
            .is_err(),
        "an unconfigured panel is reachable from the network"
    );

    // The administrator opens it to the network (the example lines below the default replace it).
    must(
        &panel,
        &format!(
            "printf '%s\\n' BROKEFORGE_BIND=0.0.0.0:8080 BROKEFORGE_PUBLIC_URL={url} BROKEFORGE_INSECURE_PROVISIONING=1 \
             >> /etc/brokeforge/brokeforge.conf && systemctl restart brokeforge"
        ),
    )
    .await;
    wait_health(&url).await;

    // Root is sent to the service's user for commands on its database.
    let as_root = panel
        .root("brokeforge admin create-token --email nobody@example.com")
        .await;
    assert!(!as_root.success());
    assert!(
        as_root.stderr_text().contains("sudo -u brokeforge"),
        "{}",
        as_root.stderr_text()
    );
    let created = panel
        .root_with_stdin(
            "runuser -u brokeforge -- brokeforge admin create-user --email ops@example.com --password-stdin --admin",
            Some(b"correct horse battery staple\n"),
        )
        .await;
    assert!(created.success(), "{}", created.stderr_text());
    let token = must(
        &panel,
        "runuser -u brokeforge -- brokeforge admin create-token --email ops@example.com",
    )
    .await
    .trim()
    .to_string();
    assert!(token.starts_with("bf_"), "{token}");

    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("root");
    std::fs::write(&key_file, target.root_key.expose()).unwrap();
    let cli = |base: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", base)
            .env("BROKEFORGE_TOKEN", &token)
            .env("XDG_CONFIG_HOME", keys.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(
            out.status.success(),
            "brokeforge {args:?} against {base}:\n{}\n{}",
            text.0,
            text.1
        );
        text.0
    };
    let redis_answers = || async {
        // Redis asks for its password: an answer at all means it runs.
        target
            .root("redis-cli ping")
            .await
            .stdout_text()
            .contains("NOAUTH")
    };

    cli(
        &url,
        &[
            "server",
            "add",
            "--name",
            "target",
            "--ip",
            &target.ip,
            "--root-key",
            key_file.to_str().unwrap(),
            "--host-key-fingerprint",
            &target.fingerprint,
            "--follow",
        ],
    );
    cli(
        &url,
        &["install", "redis", "--server", "target", "--follow"],
    );
    assert!(redis_answers().await, "Redis does not answer after install");

    // Upgrade: the configuration is the administrator's and stays; the service restarts on the new build and
    // still holds the server and its keys (a job on it runs).
    let conf_before = must(&panel, "sha256sum /etc/brokeforge/brokeforge.conf").await;
    let pid_before = must(&panel, "systemctl show -p MainPID --value brokeforge").await;
    apt_install(&panel, &second).await;
    assert_eq!(
        must(&panel, "dpkg-query -W -f '${Version}' brokeforge").await,
        "0.1.0-2"
    );
    assert_eq!(
        must(&panel, "sha256sum /etc/brokeforge/brokeforge.conf").await,
        conf_before
    );
    wait_health(&url).await;
    assert_ne!(
        must(&panel, "systemctl show -p MainPID --value brokeforge").await,
        pid_before,
        "the upgrade did not restart the service"
    );
    assert!(cli(&url, &["server", "list"]).contains("target"));
    cli(&url, &["remove", "redis", "--server", "target", "--follow"]);
    assert!(!redis_answers().await, "Redis still answers after removal");

    // Self-backup while it runs, sealed with a passphrase; restored into a third data directory, that panel
    // runs a job on the same server with the same keys.
    let pass: &[u8] = b"a passphrase for the recovery\n";
    let backed = panel
        .root_with_stdin(
            "runuser -u brokeforge -- brokeforge backup-self --to /var/lib/brokeforge/self.bfbackup --passphrase-stdin",
            Some(pass),
        )
        .await;
    assert!(backed.success(), "{}", backed.stderr_text());
    must(
        &panel,
        "install -d -m 0700 -o brokeforge -g brokeforge /var/lib/brokeforge-restored",
    )
    .await;
    let restored = panel
        .root_with_stdin(
            "runuser -u brokeforge -- env BROKEFORGE_DATA_DIR=/var/lib/brokeforge-restored \
             brokeforge restore-self --from /var/lib/brokeforge/self.bfbackup --passphrase-stdin",
            Some(pass),
        )
        .await;
    assert!(restored.success(), "{}", restored.stderr_text());
    must(
        &panel,
        "systemd-run -q --unit bf-restored --uid brokeforge --gid brokeforge \
         -E BROKEFORGE_DATA_DIR=/var/lib/brokeforge-restored -E BROKEFORGE_BIND=0.0.0.0:8081 /usr/bin/brokeforge serve",
    )
    .await;
    let restored_url = format!("http://{}:8081", panel.ip);
    wait_health(&restored_url).await;
    assert!(cli(&restored_url, &["server", "list"]).contains("target"));
    cli(
        &restored_url,
        &["install", "redis", "--server", "target", "--follow"],
    );
    assert!(
        redis_answers().await,
        "the restored panel's job did not run"
    );
    must(&panel, "systemctl stop bf-restored").await;

    // Master key rotation (service stopped): every secret still opens (a job on the server logs in with its
    // sealed keys), and the old key is refused.
    let old_key = must(&panel, "cat /var/lib/brokeforge/master.key").await;
    must(&panel, "systemctl stop brokeforge").await;
    let rotated = must(
        &panel,
        "runuser -u brokeforge -- brokeforge admin rotate-master-key",
    )
    .await;
    assert!(rotated.contains("re-sealed"), "{rotated}");
    assert_ne!(
        must(&panel, "cat /var/lib/brokeforge/master.key").await,
        old_key
    );
    let refused = panel
        .root(&format!(
            "runuser -u brokeforge -- env BROKEFORGE_MASTER_KEY={} brokeforge migrate",
            old_key.trim()
        ))
        .await;
    assert!(!refused.success(), "the old key still opens the database");
    assert!(
        refused.stderr_text().contains("master key does not match"),
        "{}",
        refused.stderr_text()
    );
    must(&panel, "systemctl start brokeforge").await;
    wait_health(&url).await;
    cli(
        &url,
        &["install", "redis", "--server", "target", "--follow"],
    );
    assert!(redis_answers().await);

    // Scheduled self-backup to S3 (moto), run by the service under its hardening: restic (a Recommends of
    // the package) puts sealed copies into the storage; restic alone with the passphrase gets one back, and
    // restore-self opens it.
    assert!(
        must(&panel, "command -v restic").await.contains("restic"),
        "restic came with the package"
    );
    let (endpoint, bucket) = s3_start(19);
    let _s3 = S3(19);
    let added = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
        .args([
            "backup", "storage", "add", "--name", "offsite", "--kind", "s3",
        ])
        .args(["--endpoint", &endpoint, "--bucket", &bucket, "--path-style"])
        .args(["--access-key-id", "AKIAE2ESELF", "--secret-stdin"])
        .env("BROKEFORGE_URL", &url)
        .env("BROKEFORGE_TOKEN", &token)
        .env("XDG_CONFIG_HOME", keys.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"e2e-self-secret\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let pass = "a passphrase kept offline";
    let enabled = panel
        .root_with_stdin(
            "runuser -u brokeforge -- brokeforge admin self-backup enable --owner ops@example.com --storage offsite \
             --schedule '* * * * *' --keep-last 2 --passphrase-stdin",
            Some(format!("{pass}\n").as_bytes()),
        )
        .await;
    assert!(enabled.success(), "{}", enabled.stderr_text());
    // The service's own scheduler runs it within a minute or so.
    let ran = must(
        &panel,
        "for i in $(seq 1 150); do s=$(runuser -u brokeforge -- brokeforge admin self-backup status); \
         case \"$s\" in *'last run'*' ok: snapshot'*) echo \"$s\"; exit 0 ;; *FAILED*) echo \"$s\"; exit 1 ;; esac; sleep 1; done; \
         echo \"$s\"; exit 1",
    )
    .await;
    assert!(ran.contains("brokeforge-self"), "{ran}");
    let manual = must(
        &panel,
        "runuser -u brokeforge -- brokeforge admin self-backup run",
    )
    .await;
    assert!(manual.contains("snapshot"), "{manual}");
    // No sealed copy is left lying in the data directory.
    must(
        &panel,
        "test ! -e /var/lib/brokeforge/self-backup/copy/brokeforge.bfbackup",
    )
    .await;
    let restic = format!(
        "RESTIC_PASSWORD='{pass}' AWS_ACCESS_KEY_ID=AKIAE2ESELF AWS_SECRET_ACCESS_KEY=e2e-self-secret \
         restic --no-cache -o s3.bucket-lookup=path -r s3:{endpoint}/{bucket}/brokeforge-self"
    );
    let snapshots = must(&panel, &format!("{restic} snapshots --json -q")).await;
    let n = serde_json::from_str::<serde_json::Value>(&snapshots)
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert!((1..=2).contains(&n), "keep-last 2 kept {n}: {snapshots}");
    must(
        &panel,
        &format!(
            "{restic} restore latest --target /srv/from-s3 -q && chown -R brokeforge:brokeforge /srv/from-s3 \
             && install -d -m 0700 -o brokeforge -g brokeforge /var/lib/brokeforge-from-s3"
        ),
    )
    .await;
    let restored = panel
        .root_with_stdin(
            "runuser -u brokeforge -- env BROKEFORGE_DATA_DIR=/var/lib/brokeforge-from-s3 brokeforge restore-self \
             --from /srv/from-s3/var/lib/brokeforge/self-backup/copy/brokeforge.bfbackup --passphrase-stdin",
            Some(format!("{pass}\n").as_bytes()),
        )
        .await;
    assert!(
        restored.success() && restored.stdout_text().contains("1 user(s)"),
        "{}{}",
        restored.stdout_text(),
        restored.stderr_text()
    );

    // Remove keeps the data and the configuration; purge asks nothing and deletes them and the user.
    must(&panel, "apt-get remove -y -q brokeforge").await;
    assert!(!panel.root("systemctl is-active brokeforge").await.success());
    must(
        &panel,
        "test -f /var/lib/brokeforge/brokeforge.db && test -f /var/lib/brokeforge/master.key && test -f /etc/brokeforge/brokeforge.conf",
    )
    .await;
    must(&panel, "apt-get purge -y -q brokeforge").await;
    must(
        &panel,
        "test ! -e /var/lib/brokeforge && test ! -e /etc/brokeforge && ! getent passwd brokeforge",
    )
    .await;
}

/// Wait until the panel answers /health on the host itself (before it listens on the network).
async fn wait_health_on_host(host: &DebianHost, addr: &str) {
    must(
        host,
        &format!(
            "for i in $(seq 1 300); do curl -fsS http://{addr}/health >/dev/null 2>&1 && exit 0; sleep 0.2; done; \
             systemctl status brokeforge --no-pager; journalctl -u brokeforge --no-pager | tail -20; exit 1"
        ),
    )
    .await;
}
