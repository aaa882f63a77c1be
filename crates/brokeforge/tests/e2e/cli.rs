//! Story: the CLI onboards a host, deploys and rolls back, through a real `serve`.

use brokeforge_core::ProvisionStatus;

use super::harness::*;

/// The CLI end to end on a real host: direct onboarding with `--root-key --follow`, the web server, a site, its
/// repository and deployments, rollback to the previous release, site commands with their exit codes, the .env.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
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
