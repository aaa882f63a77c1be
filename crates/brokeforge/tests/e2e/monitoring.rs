//! Story: monitoring on a real host, through the CLI and a real `serve`. The collector's reports arrive and
//! match the host; a rule fires once, signed, to a local webhook receiver and resolves once when raised; a
//! stopped service and a stopped collector fire and resolve; removal takes the collector off the host.

use std::time::{Duration, Instant};

use brokeforge_packages::services::server::access::onboarding::{
    AddServer, add_server, start_direct_onboarding,
};
use brokeforge_store::JobStatus;
use serde_json::Value;

use super::harness::*;
use crate::receiver::{Received, receiver, signed_by};

/// The next notice about `rule`, with every notice seen on the way kept in `seen`.
async fn notice_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Received>,
    seen: &mut Vec<(Value, Received)>,
    rule: i64,
    event: &str,
    limit: Duration,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = tokio::time::timeout(left, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {event} notice for rule {rule} within {limit:?}; seen: {:?}",
                    seen.iter().map(|(v, _)| v).collect::<Vec<_>>()
                )
            })
            .expect("the receiver stopped");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let hit = body["rule_id"] == rule && body["event"] == event;
        seen.push((body.clone(), r));
        if hit {
            return body;
        }
    }
}

fn rule_id(rules: &Value, kind: &str) -> i64 {
    rules["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rule: {rules}"))["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(bf_e2e),
    ignore = "end-to-end on real Debian hosts: set BROKEFORGE_E2E=1 (as root; scripts/e2e-hosts.sh setup)"
)]
async fn monitoring_reports_fires_and_resolves() {
    if !enabled() {
        return;
    }
    let host = DebianHost::start(22);
    // The host reports to BrokeForge at its gateway address; the webhook receiver is on this machine.
    let panel = Panel::start_with(
        &format!("{}:0", host.gateway),
        &[
            ("BROKEFORGE_INSECURE_PROVISIONING", "1"),
            ("BROKEFORGE_ALLOW_HTTP_CHANNELS", "1"),
        ],
    )
    .await;
    let added = add_server(
        &panel.store,
        &AddServer {
            user_id: panel.user_id,
            name: "mon".into(),
            public_ip: host.ip.clone(),
            ssh_port: 22,
            host_key_fingerprint: Some(host.fingerprint.clone()),
        },
    )
    .await
    .unwrap();
    let job = start_direct_onboarding(&panel.store, added.server.id, &host.root_key, true)
        .await
        .unwrap();
    let job = wait_job(&panel.store, job.id, Duration::from_secs(900)).await;
    assert_eq!(job.status, JobStatus::Done, "onboarding failed: {job:?}");
    let cli = Cli::new(&panel).await;

    let (url, mut rx) = receiver(0).await;
    let out = cli.ok(&[
        "channel", "add", "--name", "hook", "--kind", "webhook", "--url", &url,
    ]);
    let key = out
        .lines()
        .find_map(|l| {
            l.rsplit_once("): ")
                .filter(|_| l.starts_with("signing key"))
        })
        .map(|(_, k)| k.trim().to_string())
        .unwrap_or_else(|| panic!("no signing key shown: {out}"));
    cli.ok(&["install", "memcached", "--server", "mon", "--follow"]);
    cli.ok(&[
        "install",
        "monitoring",
        "--server",
        "mon",
        "--set",
        "interval_seconds=10",
        "--follow",
    ]);

    // Reports keep coming from the timer (the install sent the first one itself).
    let first = cli.json(&["metrics", "--server", "mon"]);
    assert_eq!(first["installed"], true, "{first}");
    let first_at =
        brokeforge_core::time::from_json(&first["last_report_at"]).expect("a report at install");
    let deadline = Instant::now() + Duration::from_secs(25);
    let metrics = loop {
        let m = cli.json(&["metrics", "--server", "mon"]);
        if brokeforge_core::time::from_json(&m["last_report_at"]) > Some(first_at) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no report from the timer within two intervals: {m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let sample = |name: &str| {
        metrics["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["metric"] == name)
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))["value"]
            .as_f64()
            .unwrap()
    };
    let df = host
        .root("df -P / | awk 'NR==2 {printf \"%.2f\", $3*100/($3+$4)}'")
        .await;
    let df: f64 = df.stdout_text().trim().parse().unwrap();
    assert!(
        (sample("disk_used_percent:/") - df).abs() < 3.0,
        "df says {df}: {metrics}"
    );
    assert_eq!(sample("service_up:memcached"), 1.0, "{metrics}");
    assert!((0.0..=100.0).contains(&sample("memory_used_percent")));
    for name in [
        "cpu_percent",
        "load1",
        "swap_used_percent",
        "net_rx_bytes_per_second",
    ] {
        sample(name);
    }

    // A rule with a low threshold fires once, signed; raised, it resolves once.
    let mut seen = Vec::new();
    let out = cli.json(&[
        "alert",
        "add",
        "--server",
        "mon",
        "--metric",
        "disk_used_percent",
        "--above",
        "1",
        "--for",
        "10s",
        "--channel",
        "hook",
    ]);
    let disk = out["alert"]["id"].as_i64().unwrap();
    let fired = notice_for(&mut rx, &mut seen, disk, "firing", Duration::from_secs(60)).await;
    assert!(
        fired["summary"]
            .as_str()
            .unwrap()
            .contains("disk_used_percent"),
        "{fired}"
    );
    assert!(
        signed_by(&seen.last().unwrap().1, &key),
        "the notice is not signed with the channel's key"
    );
    let listed = cli.json(&["alert", "list", "--server", "mon"]);
    assert_eq!(
        listed["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == disk)
            .unwrap()["state"],
        "firing",
        "{listed}"
    );
    cli.ok(&[
        "alert",
        "set",
        "--server",
        "mon",
        "--rule",
        &disk.to_string(),
        "--above",
        "99",
    ]);
    notice_for(
        &mut rx,
        &mut seen,
        disk,
        "resolved",
        Duration::from_secs(40),
    )
    .await;
    let firings = seen
        .iter()
        .filter(|(b, _)| b["rule_id"] == disk && b["event"] == "firing")
        .count();
    assert_eq!(firings, 1, "notified more than once: {seen:?}");
    assert!(seen.iter().all(|(_, r)| signed_by(r, &key)));

    // The package's default rules: a stopped service, then a stopped collector.
    let rules = cli.json(&["alert", "list", "--server", "mon"]);
    let down = rule_id(&rules, "service_down");
    let silent = rule_id(&rules, "not_reporting");
    assert!(host.root("systemctl stop memcached").await.success());
    let fired = notice_for(&mut rx, &mut seen, down, "firing", Duration::from_secs(60)).await;
    assert!(
        fired["summary"].as_str().unwrap().contains("memcached"),
        "{fired}"
    );
    assert!(host.root("systemctl start memcached").await.success());
    notice_for(
        &mut rx,
        &mut seen,
        down,
        "resolved",
        Duration::from_secs(60),
    )
    .await;
    assert!(
        host.root("systemctl stop brokeforge-monitoring.timer")
            .await
            .success()
    );
    notice_for(
        &mut rx,
        &mut seen,
        silent,
        "firing",
        Duration::from_secs(90),
    )
    .await;
    assert!(
        host.root("systemctl start brokeforge-monitoring.timer")
            .await
            .success()
    );
    notice_for(
        &mut rx,
        &mut seen,
        silent,
        "resolved",
        Duration::from_secs(60),
    )
    .await;
    let log = cli.ok(&["channel", "deliveries", "--name", "hook"]);
    assert!(log.contains("sent") && !log.contains("failed"), "{log}");

    // Removal takes the collector off the host and revokes its token.
    cli.ok(&["remove", "monitoring", "--server", "mon", "--follow"]);
    let gone = host
        .root("test ! -e /etc/brokeforge/monitoring.header && ! systemctl is-enabled brokeforge-monitoring.timer 2>/dev/null && echo gone")
        .await;
    assert_eq!(gone.stdout_text().trim(), "gone", "{}", gone.stderr_text());
    assert_eq!(
        cli.json(&["metrics", "--server", "mon"])["installed"],
        false
    );
}
