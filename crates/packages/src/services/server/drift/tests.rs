use super::*;

fn wanted(item: &str, value: &str, repair: Option<Repair>) -> Wanted {
    Wanted {
        item: item.into(),
        what: item.into(),
        value: value.into(),
        repair,
    }
}

fn run(script: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("bash")
        .arg("-s")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// The script runs in a real bash against real files: same, edited, removed; links right, wrong, gone.
#[test]
fn files_and_links_are_compared_by_the_real_script() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let repair = Repair::SiteVhost {
        site_id: 4,
        domain: "a.test".into(),
    };
    std::fs::write(p("same"), "server {\n  listen 80;\n}\n").unwrap();
    std::fs::write(
        p("edited"),
        "server {\n  listen 8080;\n  # db_password=hunter2\n}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(p("same"), p("link-ok")).unwrap();
    std::os::unix::fs::symlink(p("elsewhere"), p("link-wrong")).unwrap();
    let mut e = Expected::default();
    e.file(p("same"), "same".into(), "server {\n  listen 80;\n}\n".into(), Some(repair.clone()));
    e.file(p("edited"), "edited".into(), "server {\n  listen 80;\n}\n".into(), Some(repair.clone()));
    e.file(p("gone"), "gone".into(), "x\n".into(), None);
    e.links.push((p("link-ok"), wanted("link-ok", &p("same"), None)));
    e.links.push((p("link-wrong"), wanted("link-wrong", &p("same"), None)));
    e.links.push((p("link-gone"), wanted("link-gone", &p("same"), None)));
    e.by_hand.insert(format!("file:{}", p("gone")));
    let report = e.compare(&run(&e.script()));
    let states: Vec<(&str, DriftState, bool)> = report
        .items
        .iter()
        .map(|i| (i.what.as_str(), i.state, i.by_hand))
        .collect();
    assert_eq!(
        states,
        [
            ("same", DriftState::Ok, false),
            ("edited", DriftState::Changed, false),
            ("gone", DriftState::Missing, true),
            ("link-ok", DriftState::Ok, false),
            ("link-wrong", DriftState::Changed, false),
            ("link-gone", DriftState::Missing, false),
        ]
    );
    let diff = report.items[1].diff.as_deref().unwrap();
    assert!(diff.contains("-  listen 80;") && diff.contains("+  listen 8080;"), "{diff}");
    assert!(!diff.contains("hunter2") && diff.contains("db_password= ********"), "{diff}");
    assert_eq!(report.items[1].repair, Some(repair));
    assert!(report.items[4].detail.contains("elsewhere"), "{}", report.items[4].detail);
    assert_eq!(
        (report.summary.ok, report.summary.changed, report.summary.missing),
        (2, 2, 2)
    );
    // By hand: reported, not counted as drift to repair.
    assert_eq!(report.drifted().count(), 3);
}

/// Packages, units, strays in sites-enabled and cron.d, and ufw's rules, from what the server printed.
#[test]
fn packages_units_strays_and_firewall_rules() {
    let mut e = Expected {
        ssh_port: 22,
        firewall: true,
        ..Expected::default()
    };
    e.packages.push(wanted("package:nginx", "nginx", None));
    e.packages.push(wanted("package:redis-server", "redis-server", None));
    e.packages.push(wanted("package:memcached", "memcached", None));
    e.units.push(wanted("unit:nginx", "nginx", None));
    e.units.push(wanted("unit:redis-server", "redis-server", None));
    e.units.push(wanted("unit:gone", "gone", None));
    e.enabled_vhosts.insert("a.test".into());
    e.cron_files.insert("brokeforge-site-4".into());
    e.service_ports.insert("6379".into());
    let hexed = |s: &str| hex::encode(s.as_bytes());
    let output = format!(
        "#BF# packages\nnginx ii \nredis-server rc \n#BF# units\nnginx enabled active\n\
         redis-server disabled inactive\ngone  inactive\n#BF# sites-enabled\na.test\nold.test\n\
         #BF# cron.d\nbrokeforge-site-4\nbrokeforge-site-9\n#BF# firewall\nStatus: active\n\
         ### file /etc/ufw/user.rules\n\
         ### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n\
         ### tuple ### allow tcp 443 0.0.0.0/0 any 0.0.0.0/0 in\n\
         ### tuple ### allow tcp 6379 0.0.0.0/0 any 10.0.0.0/8 in\n\
         ### tuple ### allow tcp 9999 0.0.0.0/0 any 0.0.0.0/0 in\n\
         ### tuple ### allow tcp 8080 0.0.0.0/0 any 0.0.0.0/0 in comment={}\n",
        hexed("brokeforge:ab12 app")
    );
    let r = e.compare(&output);
    let got: Vec<(&str, DriftState)> = r.items.iter().map(|i| (i.item.as_str(), i.state)).collect();
    assert_eq!(
        got,
        [
            ("package:nginx", DriftState::Ok),
            ("package:redis-server", DriftState::Missing),
            ("package:memcached", DriftState::Missing),
            ("unit:nginx", DriftState::Ok),
            ("unit:redis-server", DriftState::Changed),
            ("unit:gone", DriftState::Missing),
            ("vhost-enabled:old.test", DriftState::Unexpected),
            ("file:/etc/cron.d/brokeforge-site-9", DriftState::Unexpected),
            ("firewall:active", DriftState::Ok),
            ("firewall:baseline:22", DriftState::Ok),
            ("firewall:baseline:80", DriftState::Missing),
            ("firewall:baseline:443", DriftState::Ok),
            (r.items[12].item.as_str(), DriftState::Unexpected),
        ]
    );
    assert!(r.items[12].detail.contains("9999"), "{:?}", r.items[12]);
}

#[test]
fn service_parts_cover_the_catalogue() {
    let (p, u, port) = service_parts("webserver", &["8.2".to_string()]);
    assert_eq!(p, ["nginx", "php8.2-fpm"]);
    assert_eq!(u, ["nginx", "php8.2-fpm"]);
    assert_eq!(port, None);
    assert_eq!(service_parts("postgresql", &[]).2, Some(5432));
    assert!(service_parts("unknown", &[]).0.is_empty());
}

/// Users are looked up by the real script: one that exists here (root) is ok, a made-up one is missing.
#[test]
fn users_are_looked_up_by_the_real_script() {
    let mut e = Expected::default();
    e.user("root", "user root".into());
    e.user("bf-no-such-user-4711", "user of a.test".into());
    let r = e.compare(&run(&e.script()));
    let got: Vec<(&str, DriftState)> = r.items.iter().map(|i| (i.item.as_str(), i.state)).collect();
    assert_eq!(
        got,
        [
            ("user:root", DriftState::Ok),
            ("user:bf-no-such-user-4711", DriftState::Missing),
        ]
    );
    assert_eq!(r.items[1].detail, "there is no user bf-no-such-user-4711");
    assert!(r.items[1].repair.is_none());
}

/// A self-signed certificate for `name` that ends `days` from now, as PEM.
fn cert_ending_in(name: &str, days: i64) -> String {
    use chrono::Datelike;
    let end = chrono::DateTime::from_timestamp(brokeforge_core::time::now_ms() / 1000 + days * 86_400, 0)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
    params.self_signed(&key).unwrap().pem()
}

/// Certificates are read on the server by the real script (openssl, date): one with months left is ok and
/// says when the record is older (renewed on the server), one near its end or past it is changed with what to
/// do, a missing one is missing. None carries a repair: renewal is certbot's (or the user's) to do.
#[test]
fn certificates_are_checked_for_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    std::fs::write(p("fresh.pem"), cert_ending_in("fresh.test", 80)).unwrap();
    std::fs::write(p("ending.pem"), cert_ending_in("ending.test", 3)).unwrap();
    std::fs::write(p("expired.pem"), cert_ending_in("expired.test", -2)).unwrap();
    let cert = |name: &str, custom: bool, recorded: &str| WantedCert {
        site_id: name.len() as i64,
        path: p(&format!("{name}.pem")),
        custom,
        wanted: wanted(&format!("cert:{name}.test"), recorded, None),
    };
    let mut e = Expected::default();
    e.certs.push(cert("fresh", false, "2020-01-01 00:00:00+00:00"));
    e.certs.push(cert("ending", false, ""));
    e.certs.push(cert("expired", true, ""));
    e.certs.push(cert("gone", false, ""));
    let report = e.compare(&run(&e.script()));
    let by = |name: &str| {
        report
            .items
            .iter()
            .find(|i| i.item == format!("cert:{name}.test"))
            .unwrap_or_else(|| panic!("no item for {name}: {report:#?}"))
    };
    let fresh = by("fresh");
    assert_eq!(fresh.state, DriftState::Ok, "{fresh:?}");
    assert_eq!(fresh.kind, "certificate");
    assert!(fresh.detail.contains("in 79 days") || fresh.detail.contains("in 80 days"), "{fresh:?}");
    assert!(fresh.detail.contains("renewed on the server"), "{fresh:?}");
    let ending = by("ending");
    assert_eq!(ending.state, DriftState::Changed, "{ending:?}");
    assert!(ending.detail.contains("certbot has not renewed it"), "{ending:?}");
    let expired = by("expired");
    assert_eq!(expired.state, DriftState::Changed, "{expired:?}");
    assert!(expired.detail.starts_with("expired on "), "{expired:?}");
    assert!(expired.detail.contains("upload a renewed certificate"), "{expired:?}");
    assert_eq!(by("gone").state, DriftState::Missing);
    assert!(report.items.iter().all(|i| i.repair.is_none()));
    // The records to bring up to date: every certificate found whose end is not the one recorded (the fresh
    // one's record is older; the others have none), not the missing one.
    let out = run(&e.script());
    let renewed = e.renewed(&out);
    assert_eq!(
        renewed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [5, 6, 7],
        "{renewed:?}"
    );
    assert!(renewed[0].1.ends_with("+00:00"), "{renewed:?}");
    e.certs[0].wanted.value = renewed[0].1.clone();
    assert!(!e.renewed(&out).iter().any(|(id, _)| *id == 5));
    assert!(!e.compare(&out).items[0].detail.contains("renewed"));
}

/// A file that holds a secret is compared by checksum only: edited, it is changed without a diff, and its
/// contents never come back from the server.
#[test]
fn a_file_with_a_secret_is_compared_by_checksum_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("redis.conf").to_string_lossy().into_owned();
    std::fs::write(&path, "requirepass s3cret-value\nmaxclients 5\n").unwrap();
    let mut e = Expected::default();
    e.file(
        path.clone(),
        "settings of redis".into(),
        "requirepass s3cret-value\n".into(),
        None,
    );
    e.secret_files.insert(path.clone());
    let out = run(&e.script());
    assert!(out.lines().any(|l| l == "#BF# file 0 changed"), "{out}");
    let report = e.compare(&out);
    let it = &report.items[0];
    assert_eq!(it.state, DriftState::Changed, "{it:?}");
    assert!(it.diff.is_none() && it.detail.contains("holds a secret"), "{it:?}");
    assert!(!format!("{out}{report:?}").contains("maxclients"), "{out}");
    std::fs::write(&path, "requirepass s3cret-value\n").unwrap();
    assert_eq!(e.compare(&run(&e.script())).items[0].state, DriftState::Ok);
}

/// Repair installs again the services whose record keeps their settings whole, and never the web server or
/// the collector (their parts come from elsewhere): the catalogue entries say which.
#[test]
fn services_repaired_by_reinstall_come_from_the_catalogue() {
    let mut names: Vec<&str> = crate::catalogue::catalogue()
        .into_iter()
        .filter(|e| e.repaired_by_reinstall)
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["mariadb", "memcached", "mysql", "nodejs", "postgresql", "redis"]
    );
}
