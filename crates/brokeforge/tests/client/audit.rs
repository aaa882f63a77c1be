//! `brokeforge audit` against a real `serve`.

use super::{Panel, text};

/// What the CLI did is in the log, as JSON lines or a list, filtered by action and time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_what_was_done() {
    let p = Panel::start().await;
    let out = p.cli(&["server", "add", "--name", "audited", "--ip", "203.0.113.50"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&["--json", "audit", "--since", "1h", "--action", "servers"]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", text(&out));
    assert_eq!(lines[0]["action"], "POST /servers");
    assert_eq!(lines[0]["actor"], "ops@example.com (API token)");
    let out = p.cli(&["audit", "--server", "audited"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&["audit", "--since", "3weeks"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}
