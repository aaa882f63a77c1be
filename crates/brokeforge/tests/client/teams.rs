//! `brokeforge team` against a real `serve`: create a team, invite by link, accept it as the invited user,
//! list members; the invited developer sees the team's server and may not install on it.

use super::{Panel, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_invite_and_share_servers() {
    let p = Panel::start().await;
    let dev = p
        .store
        .create_user("dev@example.com", "x", false)
        .await
        .unwrap();
    let dev_token = "bf_test_dev_token_0123456789abcdef";
    p.store
        .create_api_token(
            dev.id,
            "cli",
            &brokeforge_domain::accounts::sha256_hex(dev_token),
            "bf_test",
        )
        .await
        .unwrap();
    let as_dev = |args: &[&str]| p.cli_with(args, &[("BROKEFORGE_TOKEN", dev_token)]);

    let out = p.cli(&["team", "create", "--name", "agency"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&[
        "server",
        "add",
        "--name",
        "shop",
        "--ip",
        "203.0.113.60",
        "--team",
        "agency",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.cli(&[
        "team",
        "invite",
        "--team",
        "agency",
        "--email",
        "dev@example.com",
        "--role",
        "developer",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let link = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        link.starts_with(&p.url) && link.contains("/invitations/"),
        "{link}"
    );
    // Not for the inviter's own account.
    let out = p.cli(&["team", "accept", &link]);
    assert!(!out.status.success());
    assert!(text(&out).contains("another email"), "{}", text(&out));

    let out = as_dev(&["team", "accept", &link]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("you joined agency"));
    let out = as_dev(&["team", "accept", &link]);
    assert!(!out.status.success(), "an invitation works once");

    let out = p.cli(&["--json", "team", "members", "--team", "agency"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roles: Vec<(String, String)> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("ops@example.com".to_string(), "owner".to_string()),
            ("dev@example.com".to_string(), "developer".to_string())
        ]
    );

    let out = as_dev(&["server", "list"]);
    assert!(text(&out).contains("shop"), "{}", text(&out));
    let out = as_dev(&["install", "redis", "--server", "shop"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("forbidden"), "{}", text(&out));
    let out = as_dev(&[
        "team",
        "invite",
        "--team",
        "agency",
        "--email",
        "x@example.com",
        "--role",
        "viewer",
    ]);
    assert!(!out.status.success());

    let out = p.cli(&[
        "team",
        "remove",
        "--team",
        "agency",
        "--email",
        "dev@example.com",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = as_dev(&["server", "show", "shop"]);
    assert!(!out.status.success(), "{}", text(&out));
}
