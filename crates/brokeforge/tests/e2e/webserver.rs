//! Story: the web server package serves PHP and is removed cleanly.

use std::time::Duration;

use brokeforge_store::JobStatus;

use super::harness::*;

/// nginx + PHP-FPM: the default page and PHP answer from the host; installing again converges; removal leaves
/// nothing listening on port 80.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
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

    // The app user owns the default site's directory. If its code points that at /etc/nginx/sites-enabled,
    // the next install must not write there as root (nor hand the directory to the app user): it fails,
    // and nginx's configuration stays root's.
    let swap = host
        .root(
            "su - brokeforge -c 'mv /home/brokeforge/default /home/brokeforge/default.real && \
             ln -s /etc/nginx/sites-enabled /home/brokeforge/default'",
        )
        .await;
    assert!(swap.success(), "{}", swap.stderr_text());
    let job = brokeforge_packages::catalogue::install(store, id, "webserver", &Default::default())
        .await
        .unwrap();
    let job = wait_job(store, job.id, Duration::from_secs(900)).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let etc = host
        .root("stat -c '%U %a' /etc/nginx/sites-enabled; ls -A /etc/nginx/sites-enabled")
        .await
        .stdout_text();
    assert!(
        etc.starts_with("root "),
        "sites-enabled was handed over: {etc}"
    );
    assert!(
        !etc.contains("public") && !etc.contains("index.html"),
        "written through the link: {etc}"
    );
    let back = host
        .root("su - brokeforge -c 'rm /home/brokeforge/default && mv /home/brokeforge/default.real /home/brokeforge/default'")
        .await;
    assert!(back.success(), "{}", back.stderr_text());
    install(store, id, "webserver", &[]).await;

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

/// Memcached answers on 127.0.0.1:11211 over TCP only (no UDP, nothing on other addresses) with the memory
/// asked for, and is gone after removal; Node.js runs a script, serves a Node.js site (with static and proxy
/// sites beside it, see `site_types_serve`) and is gone after removal. Shares the
/// webserver story's kind of host but not its packages: its own host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn memcached_nodejs_and_site_types() {
    if !enabled() {
        return;
    }
    let (host, panel, id) = onboarded(21, "cache").await;
    let store = &panel.store;
    install(store, id, "memcached", &[("memory_mb", "32")]).await;
    let version = host
        .root("bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211; printf \"version\\r\\n\" >&3; head -n1 <&3'")
        .await
        .stdout_text();
    assert!(version.starts_with("VERSION "), "{version}");
    let listening = host
        .root("ss -H -lntu | awk '$5 ~ /:11211$/ {print $1, $5}'")
        .await
        .stdout_text();
    assert_eq!(listening.trim(), "tcp 127.0.0.1:11211", "{listening}");
    let limit = host
        .root("bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211; printf \"stats settings\\r\\nquit\\r\\n\" >&3; cat <&3' | grep -a maxbytes")
        .await
        .stdout_text();
    assert!(
        limit.contains(&(32u64 * 1024 * 1024).to_string()),
        "{limit}"
    );
    assert!(
        tokio::net::TcpStream::connect((host.ip.as_str(), 11211))
            .await
            .is_err(),
        "memcached reachable from outside"
    );
    // Bad input is refused before anything runs.
    let bad = brokeforge_packages::catalogue::install(
        store,
        id,
        "memcached",
        &[("memory_mb".to_string(), "1".to_string())]
            .into_iter()
            .collect(),
    )
    .await;
    assert!(bad.is_err(), "memory_mb=1 was accepted");

    install(store, id, "nodejs", &[]).await;
    assert_eq!(
        host.root("node -e 'console.log(6 * 7)'")
            .await
            .stdout_text()
            .trim(),
        "42"
    );
    assert!(host.root("npm --version").await.success());

    let cli = Cli::new(&panel).await;
    site_types_serve(&host, &panel, &cli).await;
    php_settings_and_extensions(&host, &cli).await;
    isolated_sites(&host, &cli).await;

    remove(store, id, "memcached").await;
    remove(store, id, "nodejs").await;
    assert!(
        !host.root("command -v node").await.success(),
        "node is still there"
    );
    assert!(
        !host
            .root("bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211' 2>/dev/null")
            .await
            .success(),
        "memcached still answers"
    );
    let services = store.services(id).await.unwrap();
    assert!(
        services
            .iter()
            .all(|s| s.service_name != "memcached" && s.service_name != "nodejs"),
        "{services:?}"
    );
}

/// `site create --type`: bad type input is refused before anything runs; a static site serves its files (an
/// SPA fallback, PHP not run); a Node.js app deployed from git answers through nginx, runs as the app user on
/// loopback and restarts in the next release; a proxy site passes requests to a port; removing the Node.js
/// site takes its unit away.
async fn site_types_serve(host: &DebianHost, panel: &Panel, cli: &Cli) {
    install(&panel.store, panel_server(panel).await, "webserver", &[]).await;
    let create = |domain: &str, extra: &[&str]| {
        let mut a = vec![
            "site",
            "create",
            "--server",
            "cache",
            "--domain",
            domain,
            "--shared-user",
        ];
        a.extend_from_slice(extra);
        a.push("--follow");
        cli.run(&a)
    };
    for (extra, why) in [
        (&["--type", "proxy"][..], "port"),
        (&["--type", "proxy", "--proxy-port", "80"][..], "privileged"),
        (
            &["--type", "static", "--proxy-port", "8080"][..],
            "takes no port",
        ),
        (&["--type", "php", "--spa"][..], "static"),
    ] {
        let (code, out, err) = create("bad.test", extra);
        assert_ne!(code, Some(0), "{extra:?} accepted: {out}");
        assert!(err.contains(why), "{extra:?}: {err}");
    }
    assert!(
        !cli.ok(&["site", "list", "--server", "cache"])
            .contains("bad.test"),
        "a refused site was stored"
    );

    // Static files: the placeholder answers every path (SPA fallback); a PHP file is a file, never run.
    let (code, out, err) = create("static.test", &["--type", "static", "--spa"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for path in ["/", "/some/client/route"] {
        let (status, body) = http_request(&host.ip, "GET", "static.test", path, &[], b"").await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            body.contains("ready for its first deployment"),
            "{path}: {body}"
        );
    }
    assert!(
        host.root("printf '<?php echo 6 * 7;' > /home/brokeforge/static.test/current/x.php")
            .await
            .success()
    );
    let (_, body) = http_request(&host.ip, "GET", "static.test", "/x.php", &[], b"").await;
    assert!(body.contains("<?php echo"), "a static site ran PHP: {body}");

    // A Node.js application from git.
    git_server(host).await;
    let app = |msg: &str| {
        format!(
            "require('http').createServer((q, r) => r.end('{msg}')).listen(process.env.PORT, '127.0.0.1', () => console.log('listening on ' + process.env.PORT));"
        )
    };
    let repo = host
        .root(&format!(
            "set -e; rm -rf /srv/git/node.git /tmp/node; git init -q --bare -b main /srv/git/node.git; \
             git init -q -b main /tmp/node; cd /tmp/node; git config user.email t@e; git config user.name t; \
             printf '%s' '{{\"name\":\"t\",\"version\":\"1.0.0\",\"scripts\":{{\"start\":\"node server.js\"}}}}' > package.json; \
             printf '%s' '{{\"name\":\"t\",\"version\":\"1.0.0\",\"lockfileVersion\":3,\"requires\":true,\"packages\":{{\"\":{{\"name\":\"t\",\"version\":\"1.0.0\"}}}}}}' > package-lock.json; \
             printf '%s' {} > server.js; git add .; git commit -qm one; git push -q /srv/git/node.git main; chown -R git:git /srv/git",
            brokeforge_core::shell_quote(&app("node one"))
        ))
        .await;
    assert!(repo.success(), "{}", repo.stderr_text());
    let (code, out, err) = create("node.test", &["--type", "node"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let key = cli.ok(&[
        "site",
        "deploy-key",
        "--server",
        "cache",
        "--domain",
        "node.test",
    ]);
    assert!(
        host.root(&format!(
            "printf '%s\\n' '{}' > /srv/git/.ssh/authorized_keys && chown git:git /srv/git/.ssh/authorized_keys && chmod 600 /srv/git/.ssh/authorized_keys",
            key.trim()
        ))
        .await
        .success()
    );
    cli.ok(&[
        "site",
        "repository",
        "--server",
        "cache",
        "--domain",
        "node.test",
        "--repository",
        "git@127.0.0.1:/srv/git/node.git",
        "--branch",
        "main",
        "--host-key-fingerprint",
        &host.fingerprint,
        "--follow",
    ]);
    let shown = cli.json(&["site", "show", "--server", "cache", "--domain", "node.test"]);
    let port = shown["site"]["configuration"]["proxy_port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        port, 3000,
        "the first Node.js site gets the first port: {shown}"
    );
    let answers = |domain: &'static str, want: &'static str| async move {
        let mut last = String::new();
        for _ in 0..100 {
            last = site_page(&host.ip, domain).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{domain} answers {last:?}, not {want:?}");
    };
    answers("node.test", "node one").await;
    let owner = host
        .root("ss -H -lntp 'sport = :3000' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 | xargs -r ps -o user= -p; ss -H -lnt 'sport = :3000' | awk '{print $4}'")
        .await
        .stdout_text();
    assert_eq!(owner, "brokeforge\n127.0.0.1:3000\n", "who listens on 3000");

    let two = host
        .root(&format!(
            "set -e; cd /tmp/node; printf '%s' {} > server.js; git commit -qam two; git push -q /srv/git/node.git main; chown -R git:git /srv/git",
            brokeforge_core::shell_quote(&app("node two"))
        ))
        .await;
    assert!(two.success(), "{}", two.stderr_text());
    cli.ok(&[
        "site",
        "deploy",
        "--server",
        "cache",
        "--domain",
        "node.test",
        "--follow",
    ]);
    answers("node.test", "node two").await;
    let site_id = shown["site"]["id"].as_i64().unwrap();
    let unit = format!("brokeforge-site-{site_id}-app");
    let log = cli.ok(&[
        "logs", "--server", "cache", "--kind", "unit", "--unit", &unit, "--lines", "50",
    ]);
    assert!(log.contains("listening on 3000"), "{log}");

    // A proxy site in front of a port: here the Node.js app's.
    let (code, out, err) = create("proxy.test", &["--type", "proxy", "--proxy-port", "3000"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    answers("proxy.test", "node two").await;

    cli.ok(&[
        "site",
        "remove",
        "--server",
        "cache",
        "--domain",
        "node.test",
        "--follow",
    ]);
    let gone = host
        .root(&format!(
            "systemctl cat {unit} >/dev/null 2>&1 && echo unit-left; ss -H -lnt 'sport = :3000' | grep -q . && echo still-listening; true"
        ))
        .await
        .stdout_text();
    assert_eq!(gone, "", "the Node.js site's unit or app is left");
    for domain in ["static.test", "proxy.test"] {
        cli.ok(&[
            "site", "remove", "--server", "cache", "--domain", domain, "--follow",
        ]);
    }
}

async fn panel_server(panel: &Panel) -> i64 {
    panel.store.servers_for_user(panel.user_id).await.unwrap()[0].id
}

/// `brokeforge php`: a setting changed shows in what PHP-FPM runs (a page of the default site asks
/// `ini_get`), a bad one is refused; an extension added is loaded by PHP-FPM and listed, removed is gone; a
/// package the sources lack fails the job before anything changes.
async fn php_settings_and_extensions(host: &DebianHost, cli: &Cli) {
    let php = |args: &[&str]| {
        let mut a = vec!["php", args[0], "--server", "cache", "--version", "8.2"];
        a.extend_from_slice(&args[1..]);
        cli.run(&a)
    };
    assert!(
        host.root(
            "printf '%s' \"<?php echo ini_get('memory_limit'), ' ', extension_loaded('bz2') ? 'bz2' : 'no-bz2';\" \
             > /home/brokeforge/default/public/php-state.php"
        )
        .await
        .success()
    );
    let state = || async { http_body(&format!("http://{}/php-state.php", host.ip)).await };
    assert_eq!(state().await, "256M no-bz2");

    let (code, out, err) = php(&["settings", "--set", "memory_limit=512M", "--follow"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(
        state().await,
        "512M no-bz2",
        "PHP-FPM does not run the new memory_limit"
    );
    let shown = php(&["settings"]).1;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with('*') && l.contains("memory_limit") && l.ends_with("512M")),
        "{shown}"
    );
    let (code, _, err) = php(&["settings", "--set", "disable_functions=", "--follow"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is not a setting BrokeForge sets"), "{err}");

    let (code, out, err) = php(&["extensions", "--add", "bz2", "--follow"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(state().await, "512M bz2", "PHP-FPM did not load bz2");
    assert!(php(&["extensions"]).1.lines().any(|l| l == "bz2"));
    let (code, out, err) = php(&["extensions", "--add", "nosuchextension", "--follow"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        format!("{out}{err}").contains("no such package for PHP 8.2"),
        "{out}\n{err}"
    );
    let (code, out, err) = php(&["extensions", "--remove", "bz2", "--follow"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(!php(&["extensions"]).1.lines().any(|l| l == "bz2"));
    assert_eq!(state().await, "512M no-bz2");
    let (code, out, err) = php(&["settings", "--unset", "memory_limit", "--follow"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(state().await, "256M no-bz2");
}

/// Site isolation: two isolated sites each run as their own user (their PHP-FPM workers, `site run`, the
/// deploy from git); one site's PHP cannot read the other's `.env`, nginx cannot read either, and removing a
/// site takes its user, home and pool away while the other keeps answering.
async fn isolated_sites(host: &DebianHost, cli: &Cli) {
    let create = |domain: &str, extra: &[&str]| {
        let mut a = vec!["site", "create", "--server", "cache", "--domain", domain];
        a.extend_from_slice(extra);
        a.push("--follow");
        cli.ok(&a)
    };
    create("iso-a.test", &["--isolated"]);
    create("iso-b.test", &["--max-children", "3"]);
    let id_of = |domain: &str| {
        cli.json(&["site", "show", "--server", "cache", "--domain", domain])["site"]["id"]
            .as_i64()
            .unwrap()
    };
    let (a, b) = (
        format!("site{}", id_of("iso-a.test")),
        format!("site{}", id_of("iso-b.test")),
    );
    let shown = cli.ok(&[
        "site",
        "show",
        "--server",
        "cache",
        "--domain",
        "iso-a.test",
    ]);
    assert!(
        shown.contains(&format!("runs as      {a} (isolated)")),
        "{shown}"
    );

    // Site A deploys from git as its own user (its deploy key in its own home).
    git_server(host).await;
    let key = cli.ok(&[
        "site",
        "deploy-key",
        "--server",
        "cache",
        "--domain",
        "iso-a.test",
    ]);
    assert!(
        host.root(&format!(
            "printf '%s\\n' '{}' > /srv/git/.ssh/authorized_keys && chown git:git /srv/git/.ssh/authorized_keys && chmod 600 /srv/git/.ssh/authorized_keys",
            key.trim()
        ))
        .await
        .success()
    );
    cli.ok(&[
        "site",
        "repository",
        "--server",
        "cache",
        "--domain",
        "iso-a.test",
        "--repository",
        "git@127.0.0.1:/srv/git/app.git",
        "--branch",
        "main",
        "--host-key-fingerprint",
        &host.fingerprint,
        "--follow",
    ]);
    cli.ok(&[
        "site",
        "deploy",
        "--server",
        "cache",
        "--domain",
        "iso-a.test",
        "--follow",
    ]);
    assert_eq!(site_page(&host.ip, "iso-a.test").await, "commit one");

    // A page that says who runs it and whether it can read a file; put in place by `site run`, which runs
    // as the site's user in the live release.
    let page = "<?php echo posix_getpwuid(posix_geteuid())['name'], ' ', @file_get_contents($_GET['f'] ?? '/none') === false ? 'denied' : 'read';";
    let page = brokeforge_core::shell_quote(page);
    for (domain, user) in [("iso-a.test", &a), ("iso-b.test", &b)] {
        let out = cli.ok(&[
            "site", "run", "--server", "cache", "--domain", domain, "--",
            &format!("printf '%s' {page} > public/who.php && whoami && echo $HOME && umask 077 && printf 'SECRET={domain}-only\\n' > ../../shared/.env"),
        ]);
        assert_eq!(out, format!("{user}\n/home/{user}\n"), "{domain}");
    }
    let who = |domain: &'static str, file: String| async move {
        http_request(
            &host.ip,
            "GET",
            domain,
            &format!("/who.php?f={file}"),
            &[],
            b"",
        )
        .await
        .1
    };
    let env_of = |user: &str, domain: &str| format!("/home/{user}/{domain}/shared/.env");
    assert_eq!(
        who("iso-a.test", env_of(&a, "iso-a.test")).await,
        format!("{a} read")
    );
    assert_eq!(
        who("iso-b.test", env_of(&b, "iso-b.test")).await,
        format!("{b} read")
    );
    assert_eq!(
        who("iso-a.test", env_of(&b, "iso-b.test")).await,
        format!("{a} denied"),
        "site A's PHP read site B's .env"
    );
    assert_eq!(
        who("iso-b.test", env_of(&a, "iso-a.test")).await,
        format!("{b} denied"),
        "site B's PHP read site A's .env"
    );
    // PHP-FPM's workers run as each site's user (ondemand: alive for a while after those requests).
    let workers = host
        .root("ps -o user= -C php-fpm8.2 | sort -u")
        .await
        .stdout_text();
    assert!(
        workers.lines().any(|l| l == a) && workers.lines().any(|l| l == b),
        "{workers}"
    );
    let checks = host
        .root(&format!(
            "runuser -u {a} -- cat {benv} >/dev/null 2>&1 && echo a-reads-b; \
             runuser -u www-data -- cat {aenv} >/dev/null 2>&1 && echo nginx-reads-env; \
             runuser -u www-data -- test -r /home/{a}/iso-a.test/current/public/index.php || echo nginx-cannot-serve; \
             stat -c '%a %U' {aenv} /home/{a}",
            benv = env_of(&b, "iso-b.test"),
            aenv = env_of(&a, "iso-a.test"),
        ))
        .await
        .stdout_text();
    assert_eq!(checks, format!("600 {a}\n750 {a}\n"), "who reads what");

    // B's pool gets other settings: `static` keeps exactly that many workers running as B.
    cli.ok(&[
        "site",
        "pool",
        "--server",
        "cache",
        "--domain",
        "iso-b.test",
        "--pm",
        "static",
        "--max-children",
        "2",
        "--follow",
    ]);
    let count = host
        .root(&format!(
            "for i in $(seq 1 50); do n=$(ps -o user= -C php-fpm8.2 | grep -cx {b}); [ \"$n\" = 2 ] && break; sleep 0.2; done; echo $n"
        ))
        .await
        .stdout_text();
    assert_eq!(count.trim(), "2", "site B's static pool workers");
    // Removing site A takes its user, home and pool; B still answers.
    cli.ok(&[
        "site",
        "remove",
        "--server",
        "cache",
        "--domain",
        "iso-a.test",
        "--follow",
    ]);
    let left = host
        .root(&format!(
            "id {a} >/dev/null 2>&1 && echo user-left; test -e /home/{a} && echo home-left; \
             test -e /etc/php/8.2/fpm/pool.d/{a}.conf && echo pool-left; true"
        ))
        .await
        .stdout_text();
    assert_eq!(left, "", "site A left things behind");
    assert_eq!(
        who("iso-b.test", env_of(&b, "iso-b.test")).await,
        format!("{b} read")
    );
    cli.ok(&[
        "site",
        "remove",
        "--server",
        "cache",
        "--domain",
        "iso-b.test",
        "--follow",
    ]);
}
