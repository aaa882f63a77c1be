//! Drift on a real host (part of the cli story, host 16): a clean check (provisioning's users, sudo rules and
//! SSH hardening as rendered), then a vhost edited by hand, a
//! schedule's cron file removed, a php.ini setting of BrokeForge's changed and a ufw rule added by hand are
//! reported as changed (with a diff), missing, changed and unexpected; repair writes the vhost, the cron file
//! and the php.ini settings again and leaves the hand-made rule alone; the
//! rule marked "managed by hand" says so. A drift alert rule (evaluated by `serve` every 10 s) fires on the
//! drifted check and resolves once what is left is all managed by hand.

use serde_json::Value;

use super::harness::DebianHost;

pub type Run<'a> = dyn Fn(&[&str]) -> (Option<i32>, String, String) + 'a;

fn json(r: (Option<i32>, String, String), what: &str) -> Value {
    assert_eq!(r.0, Some(0), "{what}: {}\n{}", r.1, r.2);
    serde_json::from_str(&r.1).unwrap_or_else(|e| panic!("{what}: {e}: {}", r.1))
}

fn item<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item"] == name)
        .unwrap_or_else(|| panic!("no item {name} in {report:#}"))
}

fn not_ok(report: &Value) -> Vec<String> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "ok")
        .map(|i| format!("{} {} {}", i["state"], i["item"], i["detail"]))
        .collect()
}

pub async fn drift_is_found_and_repaired(
    host: &DebianHost,
    server: &str,
    domain: &str,
    cli: &Run<'_>,
) {
    let r = cli(&[
        "site",
        "tasks",
        "--server",
        server,
        "--domain",
        domain,
        "--schedule",
        "@daily php -v",
        "--follow",
    ]);
    assert_eq!(r.0, Some(0), "site tasks: {}\n{}", r.1, r.2);
    // A php.ini setting set in BrokeForge: its files (FPM's and the CLI's) are items too.
    let php = host
        .root("ls /etc/php | sort -V | tail -n 1")
        .await
        .stdout_text()
        .trim()
        .to_string();
    let r = cli(&[
        "php",
        "settings",
        "--server",
        server,
        "--version",
        &php,
        "--set",
        "max_input_vars=3000",
        "--follow",
    ]);
    assert_eq!(r.0, Some(0), "php settings: {}\n{}", r.1, r.2);
    let ini = format!("/etc/php/{php}/fpm/conf.d/99-settings-brokeforge.ini");
    let clean = json(
        cli(&["--json", "check", "--server", server, "--follow"]),
        "check (clean)",
    );
    // Only ufw rules made by hand earlier in the story (the firewall part leaves one) may differ.
    let before = not_ok(&clean);
    assert!(
        clean["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] != "ok")
            .all(|i| i["kind"] == "firewall" && i["state"] == "unexpected"),
        "{clean:#}"
    );
    // What provisioning wrote and made is there as rendered (the assertion above: nothing else differs).
    for name in [
        "user:brokeforge",
        "user:worker",
        "file:/etc/sudoers.d/brokeforge",
        "file:/etc/ssh/sshd_config.d/01-brokeforge.conf",
        &format!("file:{ini}"),
        &format!("file:/etc/php/{php}/cli/conf.d/99-settings-brokeforge.ini"),
    ] {
        assert_eq!(item(&clean, name)["state"], "ok", "{name}");
    }
    let vhost = format!("/etc/nginx/sites-available/{domain}.conf");
    let cron = item(&clean, &format!("file:{vhost}"));
    assert_eq!(cron["state"], "ok");
    let cron_file = clean["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["item"].as_str())
        .find(|i| i.starts_with("file:/etc/cron.d/brokeforge-site-"))
        .expect("the schedule's cron file is an item")
        .trim_start_matches("file:")
        .to_string();

    // By hand: a vhost edited, a cron file removed, a firewall rule added.
    let hand = host
        .root(&format!(
            "sed -i 's/^}}$/    # tuned by hand\\n}}/' {vhost} && grep -c 'tuned by hand' {vhost} && \
             rm {cron_file} && sed -i 's/= 3000/= 5000/' {ini} && ufw allow 9998/tcp >/dev/null && echo done"
        ))
        .await;
    assert!(
        hand.stdout_text().ends_with("done\n"),
        "{}",
        hand.stderr_text()
    );
    let drifted = json(
        cli(&["--json", "check", "--server", server, "--follow"]),
        "check (drifted)",
    );
    let v = item(&drifted, &format!("file:{vhost}"));
    assert_eq!(v["state"], "changed", "{v:#}");
    let diff = v["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("+    # tuned by hand"), "{diff}");
    assert_eq!(v["repair"]["package"], "site_vhost");
    assert_eq!(
        item(&drifted, &format!("file:{cron_file}"))["state"],
        "missing"
    );
    let i = item(&drifted, &format!("file:{ini}"));
    assert_eq!(i["state"], "changed", "{i:#}");
    assert!(
        i["diff"]
            .as_str()
            .unwrap_or_default()
            .contains("+max_input_vars = 5000"),
        "{i:#}"
    );
    assert_eq!(i["repair"]["package"], "php_settings");
    let rule = drifted["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["state"] == "unexpected" && i["detail"].as_str().unwrap_or("").contains("9998/tcp")
        })
        .unwrap_or_else(|| panic!("the hand-made rule is not reported: {drifted:#}"))
        .clone();
    assert!(rule["repair"].is_null(), "{rule:#}");
    // The text report shows the diff too.
    let (code, text, _) = cli(&["check", "--server", server, "--last"]);
    assert!(
        code == Some(0) && text.contains("changed") && text.contains("+    # tuned by hand"),
        "{text}"
    );

    // A drift alert rule fires on that report, naming what drifted.
    let added = json(
        cli(&[
            "--json", "alert", "add", "--server", server, "--kind", "drift",
        ]),
        "alert add --kind drift",
    );
    let alert_id = added["alert"]["id"].clone();
    let firing = alert_state(cli, server, &alert_id, "firing").await;
    let detail = firing["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(&format!("file:{vhost} changed")) && detail.contains("missing"),
        "{firing:#}"
    );

    // The plan first: two packages again, the rule left alone; nothing changed on the host yet.
    let plan = json(
        cli(&["--json", "check", "--server", server, "--repair", "--plan"]),
        "repair --plan",
    );
    let packages: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["repair"]["package"].as_str())
        .collect();
    assert_eq!(
        packages,
        ["site_vhost", "site_tasks", "php_settings"],
        "{plan:#}"
    );
    assert!(plan["steps"][0]["job_id"].is_null(), "{plan:#}");
    assert!(
        plan["left"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["item"] == rule["item"]),
        "{plan:#}"
    );
    assert_eq!(
        host.root(&format!("test -e {cron_file} && echo there || echo gone"))
            .await
            .stdout_text(),
        "gone\n"
    );

    let repaired = json(
        cli(&[
            "--json", "check", "--server", server, "--repair", "--follow",
        ]),
        "repair",
    );
    let after = &repaired["after"];
    assert_eq!(
        item(after, &format!("file:{vhost}"))["state"],
        "ok",
        "{after:#}"
    );
    assert_eq!(
        item(after, &format!("file:{cron_file}"))["state"],
        "ok",
        "{after:#}"
    );
    assert_eq!(
        item(after, &format!("file:{ini}"))["state"],
        "ok",
        "{after:#}"
    );
    assert_eq!(
        host.root(&format!("grep -c 'max_input_vars = 3000' {ini}"))
            .await
            .stdout_text(),
        "1\n"
    );
    let mut left = before.clone();
    left.push(format!(
        "\"unexpected\" {} {}",
        rule["item"], rule["detail"]
    ));
    left.sort();
    let mut now = not_ok(after);
    now.sort();
    assert_eq!(now, left, "{after:#}");
    let host_state = host
        .root(&format!(
            "grep -c 'tuned by hand' {vhost}; grep -c schedule-0.sh {cron_file}; ufw status | grep -q 9998 && echo 1"
        ))
        .await
        .stdout_text();
    assert_eq!(host_state, "0\n1\n1\n", "vhost, cron file, hand-made rule");
    // nginx still serves the site after the rewrite.
    let page = host
        .root(&format!(
            "curl -s -o /dev/null -w '%{{http_code}}' -H 'Host: {domain}' http://127.0.0.1/"
        ))
        .await
        .stdout_text();
    assert!(
        page.starts_with('2') || page.starts_with('3') || page == "404",
        "{page}"
    );

    // Managed by hand: reported with the mark; a repair plan leaves it with that reason.
    let name = rule["item"].as_str().unwrap();
    let r = cli(&["check", "--server", server, "--by-hand", name]);
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    let last = json(
        cli(&["--json", "check", "--server", server, "--last"]),
        "check --last",
    );
    assert_eq!(item(&last, name)["by_hand"], true);
    let plan = json(
        cli(&["--json", "check", "--server", server, "--repair", "--plan"]),
        "repair --plan (by hand)",
    );
    assert!(
        plan["left"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["item"] == name && l["why"] == "managed by hand"),
        "{plan:#}"
    );
    let bad = cli(&["check", "--server", server, "--by-hand", "file:/etc/passwd"]);
    assert!(bad.0 != Some(0) && bad.2.contains("no item"), "{bad:?}");
    // What is left (the earlier hand-made rules) all managed by hand: the drift alert resolves.
    for i in last["items"].as_array().unwrap() {
        if i["state"] != "ok" && i["by_hand"] != true {
            let r = cli(&[
                "check",
                "--server",
                server,
                "--by-hand",
                i["item"].as_str().unwrap(),
            ]);
            assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
        }
    }
    alert_state(cli, server, &alert_id, "resolved").await;
    let r = cli(&[
        "alert",
        "remove",
        "--server",
        server,
        "--rule",
        &alert_id.to_string(),
    ]);
    assert_eq!(r.0, Some(0), "{}\n{}", r.1, r.2);
    host.root("ufw delete allow 9998/tcp >/dev/null").await;
}

/// Wait (up to 60 s; `serve` evaluates rules every 10 s) until the alert rule is in `state`; the rule.
async fn alert_state(cli: &Run<'_>, server: &str, id: &Value, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = json(
            cli(&["--json", "alert", "list", "--server", server]),
            "alert list",
        );
        let rule = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| &a["id"] == id)
            .unwrap_or_else(|| panic!("no rule {id}: {list:#}"))
            .clone();
        if rule["state"] == state {
            return rule;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the drift rule is not {state}: {rule:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
