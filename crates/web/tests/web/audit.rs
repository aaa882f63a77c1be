//! The audit log: state-changing requests and sign-ins each leave one entry with the right actor, webhooks'
//! tokens and request bodies never reach it, users see their own part, filters work, nothing edits it.

use serde_json::json;

use super::*;

async fn entries(app: &App, who: &Auth, query: &str) -> Vec<Value> {
    let r = who.call(app, "GET", &format!("/audit?{query}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_audit_log_records_who_did_what() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "alice@example.com", false).await;
        let bob = user(&app, "bob@example.com", false).await;
        let admin = user(&app, "root@example.com", true).await;

        let r = alice
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web-1", "public_ip": "203.0.113.9"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let server = r.json()["server"]["id"].as_i64().unwrap();
        // A failed sign-in, with the email tried as the actor.
        assert_eq!(
            login(&app, "alice@example.com", "not her password")
                .await
                .status,
            401
        );
        // A new token: its value is in the answer, never in the log.
        let r = alice
            .call(&app, "POST", "/tokens", Some(json!({"name": "ci"})))
            .await;
        let token = r.json()["token"].as_str().unwrap().to_string();
        // A webhook with a (wrong) token in its path.
        let hook = http(
            &app.addr,
            "POST",
            "/hooks/sites/999/deploy/secret-hook-token-123",
            &[("Content-Type", "application/json")],
            "{}",
        )
        .await;
        assert_eq!(hook.status, 404, "{n}");

        let all = entries(&app, &admin, "limit=100").await;
        let text = serde_json::to_string(&all).unwrap();
        assert!(!text.contains(&token), "{n}: a token in the log");
        assert!(
            !text.contains("secret-hook-token-123"),
            "{n}: a webhook token in the log"
        );
        assert!(
            !text.contains("not her password"),
            "{n}: a password in the log"
        );

        let added: Vec<&Value> = all
            .iter()
            .filter(|e| e["action"] == "POST /servers")
            .collect();
        assert_eq!(added.len(), 1, "{n}: {all:#?}");
        assert_eq!(added[0]["actor"], "alice@example.com (API token)");
        assert_eq!(added[0]["status"], 201);
        assert_eq!(
            added[0]["server_id"],
            Value::Null,
            "{n}: no id in the path yet"
        );
        let failed: Vec<&Value> = all.iter().filter(|e| e["action"] == "sign in").collect();
        assert_eq!(failed.len(), 1, "{n}: {all:#?}");
        assert_eq!(
            (failed[0]["actor"].as_str(), failed[0]["status"].as_i64()),
            (Some("alice@example.com"), Some(401))
        );
        assert!(!failed[0]["ip"].as_str().unwrap().is_empty());
        let hooks: Vec<&Value> = all.iter().filter(|e| e["actor"] == "webhook").collect();
        assert_eq!(hooks.len(), 1, "{n}");
        assert_eq!(hooks[0]["target"], "/hooks/sites/999/deploy/{token}");

        // A change on the server names it.
        let r = alice
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/host-key"),
                Some(json!({"fingerprint": "SHA256:nope"})),
            )
            .await;
        let on_server = entries(&app, &alice, &format!("server={server}")).await;
        assert_eq!(on_server.len(), 1, "{n}: {}", r.body);
        assert_eq!(
            on_server[0]["target"],
            format!("/api/v1/servers/{server}/host-key")
        );

        // Alice sees her own; Bob sees nothing of hers; filters by user and action.
        assert!(
            entries(&app, &bob, "")
                .await
                .iter()
                .all(|e| e["actor"] != "alice@example.com (API token)")
        );
        assert!(entries(&app, &alice, "").await.len() >= 3);
        let by_user = entries(&app, &admin, "user=alice%40example.com&action=tokens").await;
        assert_eq!(by_user.len(), 1, "{n}: {by_user:#?}");
        let r = admin
            .call(&app, "GET", "/audit?user=nobody%40example.com", None)
            .await;
        assert_eq!(r.status, 422, "{n}");
        // Newest first, paged.
        let page = admin.call(&app, "GET", "/audit?limit=2", None).await;
        let next = page.json()["next_cursor"].as_str().unwrap().to_string();
        let rest = entries(&app, &admin, &format!("cursor={next}&limit=100")).await;
        // `before`, the name before `cursor`, is read too.
        let old = entries(&app, &admin, &format!("before={next}&limit=100")).await;
        assert_eq!(old.len(), rest.len(), "{n}");
        assert_eq!(
            rest.len() + 2,
            entries(&app, &admin, "limit=100").await.len()
        );
        // There is no way to change it.
        let r = admin.call(&app, "DELETE", "/audit", None).await;
        assert_eq!(r.status, 405, "{n}");

        // The page: Alice's own entries, filtered by action.
        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "alice@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        let cookie = cookie_of(&r);
        let page = http(&app.addr, "GET", "/audit", &[("Cookie", &cookie)], "").await;
        assert_eq!(page.status, 200, "{n}");
        assert!(page.body.contains("POST /servers") && page.body.contains("alice@example.com"));
        assert!(!page.body.contains("secret-hook-token-123"));
        let filtered = http(
            &app.addr,
            "GET",
            "/audit?action=tokens",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert!(
            filtered.body.contains("POST /tokens") && !filtered.body.contains("POST /servers<"),
            "{n}"
        );
    }
}
