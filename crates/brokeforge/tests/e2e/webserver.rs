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
/// asked for, and is gone after removal; Node.js runs a script and is gone after removal. Shares the
/// webserver story's kind of host but not its packages: its own host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn memcached_and_nodejs_install_and_remove() {
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
