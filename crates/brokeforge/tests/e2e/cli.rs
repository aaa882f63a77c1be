//! Story: the CLI onboards a host, deploys and rolls back, through a real `serve`.

use brokeforge_core::{CredentialKind, ProvisionStatus};

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
                "site",
                "create",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--shared-user",
                "--follow",
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

    // A certificate the user brings: a wrong one is refused before anything runs, the right one is served
    // (its key readable by root only), and removing it serves plain HTTP again.
    // The served one expires in 10 days, for the expiry alert below.
    let in_ten_days = host
        .root("date -u -d '+10 days' '+%Y %m %d'")
        .await
        .stdout_text();
    let ymd: Vec<i32> = in_ten_days
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let make_cert = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(ymd[0], ymd[1] as u8, ymd[2] as u8);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "BrokeForge e2e custom");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            keys.path().join(format!("{name}.crt")),
            keys.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    };
    let (other_crt, other_key) = make_cert("other.test");
    let (crt, key) = make_cert("cli.test");
    let site_cert = |c: &std::path::Path, k: &std::path::Path| {
        cli(
            &[
                "site",
                "certificate",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--cert-file",
                c.to_str().unwrap(),
                "--key-file",
                k.to_str().unwrap(),
                "--follow",
            ],
            None,
        )
    };
    let wrong = site_cert(&other_crt, &other_key);
    assert_eq!(wrong.0, Some(1));
    assert!(wrong.2.contains("does not cover cli.test"), "{}", wrong.2);
    let mismatched = site_cert(&crt, &other_key);
    assert_eq!(mismatched.0, Some(1));
    assert!(mismatched.2.contains("does not belong"), "{}", mismatched.2);
    ok(site_cert(&crt, &key), "site certificate --cert-file");
    let served = host
        .root("curl -sSkv --resolve cli.test:443:127.0.0.1 https://cli.test/ 2>&1")
        .await
        .stdout_text();
    assert!(
        served.contains("BrokeForge e2e custom") && served.contains("commit one"),
        "{served}"
    );
    let mode = host
        .root("stat -c '%a %U' /etc/brokeforge/certs/cli.test/privkey.pem")
        .await
        .stdout_text();
    assert_eq!(mode.trim(), "600 root");
    certificate_expiry_fires(&cli).await;
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
        "site certificate --remove (custom)",
    );
    assert!(
        host.root("test ! -e /etc/brokeforge/certs/cli.test")
            .await
            .success()
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit one");

    logs_are_read_and_followed(&host, &cli, &|args| {
        Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", format!("http://{}", panel.addr))
            .env("BROKEFORGE_TOKEN", token)
            .env("XDG_CONFIG_HOME", keys.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    })
    .await;
    firewall_rules_open_and_close_ports(&host, &cli).await;
    site_checks_follow_nginx(&host, &cli).await;
    deploys_are_checked_and_rolled_back(&host, &cli).await;

    // A team member's own key: the member is invited into a team that holds the server, puts a key on it,
    // logs in with it; removing the member takes the key off the server.
    let member_token = "bf_e2e_member_token_0123456789";
    let member = panel
        .store
        .create_user("member@example.com", "x", false)
        .await
        .unwrap();
    panel
        .store
        .create_api_token(
            member.id,
            "e2e",
            &brokeforge_domain::accounts::sha256_hex(member_token),
            "bf_e2e",
        )
        .await
        .unwrap();
    let as_member = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_brokeforge"))
            .args(args)
            .env("BROKEFORGE_URL", format!("http://{}", panel.addr))
            .env("BROKEFORGE_TOKEN", member_token)
            .env("XDG_CONFIG_HOME", keys.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    personal_keys_follow_membership(&host, &panel, &cli, &as_member, keys.path()).await;
    recipes_run_in_waves(&host, &panel, &cli).await;
    super::drift::drift_is_found_and_repaired(&host, "cli-web", "cli.test", &|a| cli(a, None))
        .await;
}

/// `brokeforge recipe`: a recipe on three servers of the team (the story's host under three names), one at a
/// time after a canary: the second fails, the run stops before the third and says which; resume runs the
/// third. Each part ran on the host as the app user, with its server's name.
async fn recipes_run_in_waves(host: &DebianHost, panel: &Panel, cli: &Cli<'_>) {
    let web = panel
        .store
        .servers_for_user(panel.user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "cli-web")
        .unwrap();
    let creds = panel
        .store
        .credential(web.id, CredentialKind::User)
        .await
        .unwrap();
    for name in ["cli-web-b", "cli-web-c"] {
        let s = panel
            .store
            .create_server_in(
                web.team_id,
                &brokeforge_store::NewServer {
                    user_id: panel.user_id,
                    name: name.into(),
                    public_ip: web.public_ip.clone(),
                    ssh_port: web.ssh_port,
                    host_key_fingerprint: web.host_key_fingerprint.clone(),
                },
            )
            .await
            .unwrap();
        panel
            .store
            .put_credential(
                s.id,
                CredentialKind::User,
                &creds.public_key,
                &creds.private_key,
            )
            .await
            .unwrap();
    }
    for name in ["cli-web", "cli-web-b", "cli-web-c"] {
        let r = cli(&["server", "tag", "--server", name, "--add", "fleet"], None);
        assert_eq!(r.0, Some(0), "{}", r.2);
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("recipe.sh");
    std::fs::write(
        &script,
        r#"rm -f /tmp/recipe-$BROKEFORGE_SERVER
echo "$(id -un) on $BROKEFORGE_SERVER" > /tmp/recipe-$BROKEFORGE_SERVER
if [ "$BROKEFORGE_SERVER" = cli-web-b ]; then echo 'b says no' >&2; exit 4; fi
"#,
    )
    .unwrap();
    let r = cli(
        &[
            "recipe",
            "create",
            "--name",
            "stamp",
            "--file",
            script.to_str().unwrap(),
            "--team",
            "ops",
        ],
        None,
    );
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    let r = cli(
        &[
            "recipe",
            "run",
            "stamp",
            "--tag",
            "fleet",
            "--parallel",
            "1",
            "--plan",
        ],
        None,
    );
    assert_eq!(r.0, Some(0), "{}", r.2);
    assert!(
        r.1.contains("cli-web-b") && r.1.contains("canary"),
        "{}",
        r.1
    );
    let found = host
        .root("ls /tmp | grep -c '^recipe-' || true")
        .await
        .stdout_text();
    assert_eq!(found.trim(), "0", "the plan ran something");

    let r = cli(
        &[
            "recipe",
            "run",
            "stamp",
            "--tag",
            "fleet",
            "--parallel",
            "1",
            "--canary",
            "1",
            "--follow",
        ],
        None,
    );
    assert_ne!(r.0, Some(0), "a stopped run exited 0: {}", r.1);
    assert!(r.2.contains("the run stopped"), "{}", r.2);
    let runs = cli(&["--json", "recipe", "runs"], None);
    let run = serde_json::from_str::<serde_json::Value>(&runs.1).unwrap()["runs"][0]["id"]
        .as_i64()
        .unwrap();
    let show = |run: i64| {
        let r = cli(&["--json", "recipe", "show", &run.to_string()], None);
        let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
        v["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{} {} {}",
                    s["name"].as_str().unwrap(),
                    s["shown_state"].as_str().unwrap(),
                    s["exit_code"]
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        show(run),
        [
            "cli-web done 0",
            "cli-web-b failed 4",
            "cli-web-c skipped null"
        ]
    );
    let stamped = host
        .root("cat /tmp/recipe-cli-web /tmp/recipe-cli-web-b; test -e /tmp/recipe-cli-web-c && echo c-ran; true")
        .await
        .stdout_text();
    assert_eq!(stamped, "brokeforge on cli-web\nbrokeforge on cli-web-b\n");

    let r = cli(&["recipe", "resume", &run.to_string(), "--follow"], None);
    assert_ne!(r.0, Some(0), "a run with a failed server exited 0");
    assert!(r.2.contains("ended failed"), "{}", r.2);
    assert_eq!(
        show(run),
        ["cli-web done 0", "cli-web-b failed 4", "cli-web-c done 0"]
    );
    let c = host.root("cat /tmp/recipe-cli-web-c").await.stdout_text();
    assert_eq!(c, "brokeforge on cli-web-c\n");
}

/// `brokeforge account ssh-key`: a member's key reaches the chosen server for the app user and logs in;
/// root is refused to a developer; removing the member takes the key off the server.
async fn personal_keys_follow_membership(
    host: &DebianHost,
    panel: &Panel,
    cli: &Cli<'_>,
    as_member: &Member<'_>,
    dir: &std::path::Path,
) {
    let ok = |r: (Option<i32>, String, String), what: &str| {
        assert_eq!(r.0, Some(0), "{what}:\n{}\n{}", r.1, r.2);
        r
    };
    ok(
        cli(&["team", "create", "--name", "ops"], None),
        "team create",
    );
    let server = panel
        .store
        .servers_for_user(panel.user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "cli-web")
        .unwrap();
    let team = panel
        .store
        .teams_of(panel.user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.name == "ops")
        .unwrap()
        .0;
    let personal = panel.store.personal_team(panel.user_id).await.unwrap();
    ok(
        cli(&["server", "move", "cli-web", "--team", "ops"], None),
        "server move into ops",
    );
    // A second server of the team, only a record, to narrow the member to.
    panel
        .store
        .create_server_in(
            team.id,
            &brokeforge_store::NewServer {
                user_id: panel.user_id,
                name: "spare".into(),
                public_ip: "192.0.2.10".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            },
        )
        .await
        .unwrap();
    let (_, link, _) = ok(
        cli(
            &[
                "team",
                "invite",
                "--team",
                "ops",
                "--email",
                "member@example.com",
                "--role",
                "developer",
            ],
            None,
        ),
        "team invite",
    );
    ok(as_member(&["team", "accept", link.trim()]), "team accept");

    let kp = brokeforge_ssh::keys::generate_ed25519("member laptop").unwrap();
    let pub_file = dir.join("member.pub");
    std::fs::write(&pub_file, &kp.public_openssh).unwrap();
    ok(
        as_member(&[
            "account",
            "ssh-key",
            "add",
            "--name",
            "laptop",
            "--file",
            pub_file.to_str().unwrap(),
        ]),
        "ssh-key add",
    );
    let root = as_member(&[
        "account", "ssh-key", "deploy", "--key", "laptop", "--server", "cli-web", "--user", "root",
    ]);
    assert_eq!(root.0, Some(1), "a developer put a key on root: {root:?}");
    let deploy = || {
        ok(
            as_member(&[
                "account", "ssh-key", "deploy", "--key", "laptop", "--server", "cli-web",
                "--follow",
            ]),
            "ssh-key deploy",
        )
    };
    deploy();
    let target = brokeforge_ssh::SshTarget {
        host: host.ip.clone(),
        port: 22,
        user: "brokeforge".into(),
        key: kp.private_openssh.clone(),
        host_key: brokeforge_ssh::HostKeyPolicy::Pinned(host.fingerprint.clone()),
        connect_timeout: std::time::Duration::from_secs(20),
    };
    let logs_in = || async {
        match brokeforge_ssh::SshSession::connect(&target).await {
            Ok(session) => {
                assert_eq!(run(&session, "id -un").await.trim(), "brokeforge");
                session.close().await;
                true
            }
            Err(_) => false,
        }
    };
    assert!(logs_in().await, "the member's key logs in");
    let listed = as_member(&["account", "ssh-key", "list"]).1;
    assert!(listed.contains("as brokeforge (active)"), "{listed}");

    // Each change below must queue a removal on cli-web that takes the key off the host.
    let mut seen = newest_job(panel, server.id, "user_key_remover").await;
    // Narrowed to the other server: the key leaves cli-web.
    ok(
        cli(
            &[
                "team",
                "role",
                "--team",
                "ops",
                "--email",
                "member@example.com",
                "--role",
                "developer",
                "--servers",
                "spare",
            ],
            None,
        ),
        "team role --servers spare",
    );
    seen = Some(key_leaves(panel, host, server.id, seen, "narrowing the member").await);
    assert!(
        !logs_in().await,
        "a narrowed-away member's key still logs in"
    );
    ok(
        cli(
            &[
                "team",
                "role",
                "--team",
                "ops",
                "--email",
                "member@example.com",
                "--role",
                "developer",
                "--all-servers",
            ],
            None,
        ),
        "team role --all-servers",
    );
    deploy();
    assert!(
        logs_in().await,
        "the key logs in again once the member has all servers"
    );

    // The server moves to a team the member is not in: the key leaves it.
    let personal_id = personal.to_string();
    ok(
        cli(&["server", "move", "cli-web", "--team", &personal_id], None),
        "server move out of ops",
    );
    seen = Some(key_leaves(panel, host, server.id, seen, "moving the server out").await);
    assert!(
        !logs_in().await,
        "the key still logs in after the server left the team"
    );
    ok(
        cli(&["server", "move", "cli-web", "--team", "ops"], None),
        "server move back",
    );
    deploy();
    assert!(logs_in().await, "the key logs in once the server is back");

    // Removing the member takes the key off every server.
    ok(
        cli(
            &[
                "team",
                "remove",
                "--team",
                "ops",
                "--email",
                "member@example.com",
            ],
            None,
        ),
        "team remove",
    );
    key_leaves(panel, host, server.id, seen, "removing the member").await;
    assert!(!logs_in().await, "the removed member's key still logs in");
}

/// A key removal newer than `after` was queued on the server and took the member's key off the host, leaving
/// BrokeForge's own; returns the removal's job id.
async fn key_leaves(
    panel: &Panel,
    host: &DebianHost,
    server_id: i64,
    after: Option<i64>,
    what: &str,
) -> i64 {
    let removal = panel
        .store
        .recent_jobs(server_id, 20)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == "user_key_remover" && Some(j.id) > after)
        .unwrap_or_else(|| panic!("{what} queued no key removal"));
    wait_ok(&panel.store, &removal, what).await;
    let keys = host
        .root("cat /home/brokeforge/.ssh/authorized_keys")
        .await
        .stdout_text();
    assert!(!keys.contains("brokeforge-user-key"), "{what}: {keys}");
    assert_eq!(
        keys.lines().count(),
        1,
        "BrokeForge's own key stays: {keys}"
    );
    removal.id
}

/// The id of the newest job of `kind` on the server, if any.
async fn newest_job(panel: &Panel, server_id: i64, kind: &str) -> Option<i64> {
    panel
        .store
        .recent_jobs(server_id, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == kind)
        .map(|j| j.id)
}

type Cli<'a> = dyn Fn(&[&str], Option<&str>) -> (Option<i32>, String, String) + 'a;
type Member<'a> = dyn Fn(&[&str]) -> (Option<i32>, String, String) + 'a;

/// Wait up to `limit` for `check`; false when it never held.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `brokeforge logs`: a request made a moment earlier shows in the site's access log, within a time range and
/// not outside it; a followed log shows a new request live and its reader on the server stops when the CLI
/// does; a managed unit's journal reads, an unmanaged one is refused.
async fn logs_are_read_and_followed(
    host: &DebianHost,
    cli: &Cli<'_>,
    spawn: &dyn Fn(&[&str]) -> std::process::Child,
) {
    use std::io::BufRead;
    let (status, _) = http_request(&host.ip, "GET", "cli.test", "/probe-read-1", &[], b"").await;
    assert!(status > 0);
    let read = cli(
        &[
            "logs",
            "--server",
            "cli-web",
            "--site",
            "cli.test",
            "--kind",
            "nginx-access",
            "--lines",
            "20",
        ],
        None,
    );
    assert_eq!(read.0, Some(0), "{}", read.2);
    assert!(read.1.contains("GET /probe-read-1 "), "{}", read.1);
    let recent = cli(
        &[
            "logs",
            "--server",
            "cli-web",
            "--site",
            "cli.test",
            "--kind",
            "nginx-access",
            "--since",
            "10m",
        ],
        None,
    );
    assert!(recent.1.contains("/probe-read-1"), "{recent:?}");
    let old = cli(
        &[
            "logs",
            "--server",
            "cli-web",
            "--site",
            "cli.test",
            "--kind",
            "nginx-access",
            "--until",
            "10m",
        ],
        None,
    );
    assert_eq!(old.0, Some(0), "{}", old.2);
    assert!(!old.1.contains("/probe-read-1"), "{}", old.1);

    let mut child = spawn(&[
        "logs",
        "--server",
        "cli-web",
        "--site",
        "cli.test",
        "--kind",
        "nginx-access",
        "--lines",
        "1",
        "--follow",
    ]);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The reader is running once the existing last line arrived; then a new request must follow.
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the followed log printed its last line");
    http_request(&host.ip, "GET", "cli.test", "/probe-followed-2", &[], b"").await;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the new request reached the follower");
        if line.contains("/probe-followed-2") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(20), || async {
            !host
                .root("pgrep -f '[t]ail -n 1 -F -- /var/log/nginx/cli.test-access.log'")
                .await
                .success()
        })
        .await,
        "the follower's tail still runs on the server:\n{}",
        host.root("ps -eo pid,ppid,args | grep '[t]ail'")
            .await
            .stdout_text()
    );

    let journal = cli(
        &[
            "logs", "--server", "cli-web", "--kind", "unit", "--unit", "nginx", "--lines", "50",
        ],
        None,
    );
    assert_eq!(journal.0, Some(0), "{}", journal.2);
    assert!(journal.1.contains("nginx"), "{}", journal.1);
    let refused = cli(
        &[
            "logs",
            "--server",
            "cli-web",
            "--kind",
            "unit",
            "--unit",
            "systemd-logind",
        ],
        None,
    );
    assert_eq!(refused.0, Some(1));
    assert!(
        refused.2.contains("not a unit BrokeForge manages"),
        "{}",
        refused.2
    );
    let missing = cli(
        &[
            "logs",
            "--server",
            "cli-web",
            "--site",
            "nope.test",
            "--kind",
            "nginx-error",
        ],
        None,
    );
    assert_eq!(missing.0, Some(1));
    assert!(missing.2.contains("not a site"), "{}", missing.2);
}

/// A `cert_expiring` rule reads the certificate the site serves (10 days left): within 14 days fires, naming
/// the site; within 5 stays ok.
async fn certificate_expiry_fires(cli: &Cli<'_>) {
    let add = |days: &str| {
        let r = cli(
            &[
                "--json",
                "alert",
                "add",
                "--server",
                "cli-web",
                "--kind",
                "cert_expiring",
                "--days",
                days,
            ],
            None,
        );
        assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
        serde_json::from_str::<serde_json::Value>(&r.1).unwrap()["alert"]["id"].clone()
    };
    let (soon, later) = (add("14"), add("5"));
    // Certificates are looked at every 30 s, rules evaluated every 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let rules = loop {
        let r = cli(&["--json", "alert", "list", "--server", "cli-web"], None);
        let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
        let state = |id: &serde_json::Value| {
            v["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| &a["id"] == id)
                .unwrap()
                .clone()
        };
        if state(&soon)["state"] == "firing" {
            break (state(&soon), state(&later));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the certificate rule did not fire: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let detail = rules.0["detail"].as_str().unwrap_or("");
    assert!(detail.starts_with("cli.test expires in"), "{}", rules.0);
    let left = rules.0["last_value"].as_f64().unwrap();
    assert!((9.0..=10.1).contains(&left), "{}", rules.0);
    assert_eq!(rules.1["state"], "ok", "{}", rules.1);
    for id in [soon, later] {
        let r = cli(
            &[
                "alert",
                "remove",
                "--server",
                "cli-web",
                "--rule",
                &id.to_string(),
            ],
            None,
        );
        assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    }
}

/// `brokeforge site check`: BrokeForge checks the site every 10 s; it is ok while nginx answers, failing
/// when nginx is stopped, ok again when it is back.
async fn site_checks_follow_nginx(host: &DebianHost, cli: &Cli<'_>) {
    let target = ["--server", "cli-web", "--domain", "cli.test"];
    let set = [
        &["site", "check"][..],
        &target,
        &[
            "--path",
            "/",
            "--expect",
            "200",
            "--interval",
            "10",
            "--timeout",
            "3",
        ],
    ]
    .concat();
    let r = cli(&set, None);
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    let state_becomes = |want: &'static str| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let status = [&["--json", "site", "check"][..], &target, &["--status"]].concat();
            let r = cli(&status, None);
            assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
            let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
            if v["check"]["state"] == want {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the check did not become {want}: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let ok = state_becomes("ok").await;
    assert_eq!(ok["check"]["last_status"], 200, "{ok}");
    assert!(host.root("systemctl stop nginx").await.success());
    let failing = state_becomes("failing").await;
    assert!(
        failing["check"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("connection"),
        "{failing}"
    );
    assert!(host.root("systemctl start nginx").await.success());
    let back = state_becomes("ok").await;
    // Every answer is in the history: up, down, up.
    let ups: Vec<f64> = back["history"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .collect();
    assert!(ups.contains(&0.0) && ups.last() == Some(&1.0), "{back}");
    let r = cli(
        &[&["site", "check"][..], &target, &["--remove"]].concat(),
        None,
    );
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
}

/// A site check run after each deploy: with rollback, a release that answers 500 fails its deployment and
/// the previous release is live again; with fail, the deployment fails and the new release stays live; a
/// good release passes.
async fn deploys_are_checked_and_rolled_back(host: &DebianHost, cli: &Cli<'_>) {
    let push = |php: &str, msg: &str| {
        format!(
            "set -e; cd /tmp/work; printf '%s' {} > public/index.php; git commit -qam {msg}; \
             git push -q /srv/git/app.git main; chown -R git:git /srv/git",
            brokeforge_core::shell_quote(php)
        )
    };
    let check = |mode: &str| {
        let r = cli(
            &[
                "site",
                "check",
                "--server",
                "cli-web",
                "--domain",
                "cli.test",
                "--timeout",
                "3",
                "--after-deploy",
                mode,
            ],
            None,
        );
        assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    };
    let deploy = || {
        cli(
            &[
                "site", "deploy", "--server", "cli-web", "--domain", "cli.test", "--follow",
            ],
            None,
        )
    };
    let before = site_page(&host.ip, "cli.test").await;
    assert!(
        host.root(&push(
            "<?php http_response_code(500); echo \"commit broken\";",
            "broken"
        ))
        .await
        .success()
    );
    check("rollback");
    let r = deploy();
    assert_eq!(
        r.0,
        Some(1),
        "a deploy that answers 500 passed:\n{}\n{}",
        r.1,
        r.2
    );
    let said = format!("{}{}", r.1, r.2);
    assert!(
        said.contains("answered 500") && said.contains("rolled back to"),
        "{said}"
    );
    assert_eq!(site_page(&host.ip, "cli.test").await, before);

    check("fail");
    let r = deploy();
    assert_eq!(r.0, Some(1), "{}\n{}", r.1, r.2);
    let said = format!("{}{}", r.1, r.2);
    assert!(said.contains("this release stays live"), "{said}");
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit broken");

    assert!(
        host.root(&push("<?php echo \"commit good\";", "good"))
            .await
            .success()
    );
    let r = deploy();
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    assert_eq!(site_page(&host.ip, "cli.test").await, "commit good");
    let r = cli(
        &[
            "--json",
            "site",
            "deployments",
            "--server",
            "cli-web",
            "--domain",
            "cli.test",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    let statuses: Vec<&str> = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "failed", "failed"], "{v}");
    let errors: Vec<&str> = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .take(2)
        .map(|d| d["error"].as_str().unwrap())
        .collect();
    // Said plainly, without the script that asked.
    assert!(
        errors[0].starts_with("the site answered 500 at /, expected 200")
            && errors[0].contains("this release stays live"),
        "{v}"
    );
    assert!(
        errors[1].starts_with("the site answered 500 at /, expected 200")
            && errors[1].contains("; rolled back to "),
        "{v}"
    );
    let r = cli(
        &[
            "site", "check", "--server", "cli-web", "--domain", "cli.test", "--remove",
        ],
        None,
    );
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
}

/// `brokeforge firewall`: a rule opens a port that this machine then reaches, and its removal closes it; bad
/// rules, the SSH rule and rules made by hand are refused before anything runs.
async fn firewall_rules_open_and_close_ports(host: &DebianHost, cli: &Cli<'_>) {
    // Something to reach on 8080 (PHP's built-in server, there with the web server).
    let served = host
        .root(
            "mkdir -p /srv/fw && echo fw-open > /srv/fw/index.html && \
             (setsid php -S 0.0.0.0:8080 -t /srv/fw >/dev/null 2>&1 < /dev/null &) && \
             for i in $(seq 50); do curl -fs http://127.0.0.1:8080/ && break; sleep 0.2; done",
        )
        .await;
    assert!(
        served.stdout_text().contains("fw-open"),
        "{}",
        served.stderr_text()
    );
    let reach = || async {
        matches!(
            tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::TcpStream::connect((host.ip.as_str(), 8080)),
            )
            .await,
            Ok(Ok(_))
        )
    };
    assert!(!reach().await, "8080 is open before any rule");

    let list = |cli: &Cli<'_>| {
        let r = cli(&["--json", "firewall", "list", "--server", "cli-web"], None);
        assert_eq!(r.0, Some(0), "{}", r.2);
        serde_json::from_str::<serde_json::Value>(&r.1).unwrap()
    };
    let fw = list(cli);
    assert_eq!(fw["active"], true);
    let ssh = fw["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == "22")
        .cloned()
        .unwrap_or_else(|| panic!("no SSH rule: {fw}"));
    assert_eq!(
        (ssh["origin"].as_str(), ssh["removable"].as_bool()),
        (Some("baseline"), Some(false))
    );
    let refused = cli(
        &[
            "firewall",
            "remove",
            "--server",
            "cli-web",
            "--rule",
            ssh["id"].as_str().unwrap(),
        ],
        None,
    );
    assert_eq!(refused.0, Some(1));
    assert!(refused.2.contains("reaches the server"), "{}", refused.2);
    let bad = cli(
        &[
            "firewall", "add", "--server", "cli-web", "--port", "22", "--deny",
        ],
        None,
    );
    assert_eq!(bad.0, Some(1));
    assert!(bad.2.contains("lock"), "{}", bad.2);
    let bad = cli(
        &[
            "firewall",
            "add",
            "--server",
            "cli-web",
            "--port",
            "8080",
            "--from",
            "10.0.0.0/99",
        ],
        None,
    );
    assert_eq!(bad.0, Some(1));
    assert!(bad.2.contains("source"), "{}", bad.2);

    let add = cli(
        &[
            "firewall",
            "add",
            "--server",
            "cli-web",
            "--port",
            "8080",
            "--name",
            "app preview",
            "--follow",
        ],
        None,
    );
    assert_eq!(
        add.0,
        Some(0),
        "{}
{}",
        add.1,
        add.2
    );
    assert!(
        eventually(std::time::Duration::from_secs(10), &reach).await,
        "8080 stays closed after the rule"
    );
    let again = cli(
        &["firewall", "add", "--server", "cli-web", "--port", "8080"],
        None,
    );
    assert_eq!(again.0, Some(1));
    assert!(again.2.contains("already has this rule"), "{}", again.2);
    let text = cli(&["firewall", "list", "--server", "cli-web"], None).1;
    assert!(
        text.contains("app preview") && text.contains("brokeforge"),
        "{text}"
    );
    let fw = list(cli);
    let app = fw["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "app preview")
        .cloned()
        .unwrap_or_else(|| panic!("the rule is not listed: {fw}"));
    assert_eq!(app["families"], serde_json::json!(["v4", "v6"]), "{app}");

    // A rule made by hand is shown and left alone.
    assert!(host.root("ufw allow 9999/udp").await.success());
    let fw = list(cli);
    let other = fw["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["port"] == "9999")
        .cloned()
        .unwrap_or_else(|| panic!("the hand-made rule is not listed: {fw}"));
    assert_eq!(other["origin"], "other");
    let refused = cli(
        &[
            "firewall",
            "remove",
            "--server",
            "cli-web",
            "--rule",
            other["id"].as_str().unwrap(),
        ],
        None,
    );
    assert_eq!(refused.0, Some(1));
    assert!(
        refused.2.contains("not made by BrokeForge"),
        "{}",
        refused.2
    );

    let rm = cli(
        &[
            "firewall",
            "remove",
            "--server",
            "cli-web",
            "--rule",
            app["id"].as_str().unwrap(),
            "--follow",
        ],
        None,
    );
    assert_eq!(
        rm.0,
        Some(0),
        "{}
{}",
        rm.1,
        rm.2
    );
    assert!(
        eventually(std::time::Duration::from_secs(10), || async {
            !reach().await
        })
        .await,
        "8080 stays open after the rule was removed"
    );
    let ufw = host.root("ufw status").await.stdout_text();
    assert!(!ufw.contains("8080") && ufw.contains("9999/udp"), "{ufw}");
    host.root("pkill -f 'php -S 0.0.0.0:8080'; ufw delete allow 9999/udp")
        .await;
}
