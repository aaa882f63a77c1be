//! API token scopes and expiry: a read token reads (but no secrets) and changes nothing, a deploy token may
//! deploy, roll back and run commands but not install or mint tokens, an expired token is refused.

use serde_json::json;

use super::*;

async fn token(app: &App, full: &Auth, body: Value) -> Auth {
    let r = full.call(app, "POST", "/tokens", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    Auth::Token(r.json()["token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn token_scopes_and_expiry_are_enforced() {
    for app in apps().await {
        let n = app.name;
        let full = user(&app, "scopes@example.com", false).await;
        let r = full
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web-1", "public_ip": "203.0.113.9"})),
            )
            .await;
        let server = r.json()["server"]["id"].as_i64().unwrap();
        let read = token(&app, &full, json!({"name": "dashboards", "scope": "read"})).await;
        let deploy = token(
            &app,
            &full,
            json!({"name": "ci", "scope": "deploy", "expires_in_days": 30}),
        )
        .await;

        // Read: reads, changes nothing, no secrets.
        assert_eq!(
            read.call(&app, "GET", "/servers", None).await.status,
            200,
            "{n}"
        );
        let r = read
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web-2", "public_ip": "203.0.113.10"})),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "forbidden"),
            "{n}: {}",
            r.body
        );
        let r = read
            .call(&app, "POST", "/tokens", Some(json!({"name": "escalate"})))
            .await;
        assert_eq!(r.status, 403, "{n}: a read token minted a token");
        let r = read.call(&app, "GET", "/sites/1/env", None).await;
        assert_eq!(r.status, 403, "{n}: {}", r.body);
        assert!(r.body.contains("secrets"), "{n}: {}", r.body);

        // Deploy: deployments pass the scope (then the site is not found), installs do not.
        let r = deploy
            .call(&app, "POST", "/sites/999/deployments", Some(json!({})))
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        let r = deploy
            .call(
                &app,
                "POST",
                &format!("/servers/{server}/services"),
                Some(json!({"package": "redis"})),
            )
            .await;
        assert_eq!(r.status, 403, "{n}: {}", r.body);
        let r = deploy
            .call(&app, "DELETE", &format!("/servers/{server}"), None)
            .await;
        assert_eq!(r.status, 403, "{n}");
        let still = full
            .call(&app, "GET", &format!("/servers/{server}"), None)
            .await;
        assert_eq!(
            still.status, 200,
            "{n}: the refused deletion removed the server"
        );

        // Listed with scope and expiry.
        let list = full.call(&app, "GET", "/tokens", None).await.json();
        let ci = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "ci")
            .unwrap()
            .clone();
        assert_eq!(ci["scope"], "deploy");
        // Timestamps are RFC 3339 on the wire (`2026-11-29T10:50:22.123Z`).
        let expires = ci["expires_at"].as_str().expect("an RFC 3339 string");
        assert!(expires.ends_with('Z') && expires.contains('T'), "{expires}");
        let expires = brokeforge_core::time::parse_rfc3339(expires).unwrap();
        assert!(expires > brokeforge_core::time::now_ms());
        assert!(
            ci["last_used_at"].is_null() || ci["last_used_at"].is_string(),
            "{ci}"
        );

        // Expired: refused like a revoked one.
        let Auth::Token(t) = &deploy else {
            unreachable!()
        };
        brokeforge_store::raw_execute(
            app.store.pool(),
            &format!(
                "UPDATE api_tokens SET expires_at = 1 WHERE token_hash = '{}'",
                brokeforge_domain::accounts::sha256_hex(t)
            ),
        )
        .await
        .unwrap();
        let r = deploy.call(&app, "GET", "/servers", None).await;
        assert_eq!(r.status, 401, "{n}");
        assert!(r.body.contains("expired"), "{n}: {}", r.body);
        // Bad input is refused.
        let r = full
            .call(
                &app,
                "POST",
                "/tokens",
                Some(json!({"name": "x", "expires_in_days": 0})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}");
        let r = full
            .call(
                &app,
                "POST",
                "/tokens",
                Some(json!({"name": "x", "scope": "root"})),
            )
            .await;
        assert!(r.status == 400 || r.status == 422, "{n}: {}", r.status);
    }
}

/// Browser sessions are listed with where they started, the current one marked; ending another signs that
/// browser out; another user's session cannot be ended.
#[tokio::test]
async fn sessions_are_listed_and_ended() {
    for app in apps().await {
        let n = app.name;
        user(&app, "sessions@example.com", false).await;
        user(&app, "other@example.com", false).await;
        let a = session_of(&login(&app, "sessions@example.com", "correct horse battery").await);
        let b = session_of(&login(&app, "sessions@example.com", "correct horse battery").await);
        let other = session_of(&login(&app, "other@example.com", "correct horse battery").await);
        let list = a.call(&app, "GET", "/sessions", None).await.json();
        let sessions = list["sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{n}: {list}");
        assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
        assert!(!sessions[0]["session"]["ip"].as_str().unwrap().is_empty());
        let b_id = sessions.iter().find(|s| s["current"] == false).unwrap()["session"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let others = other.call(&app, "GET", "/sessions", None).await.json();
        let other_id = others["sessions"][0]["session"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Not theirs: not found, and still signed in.
        let r = a
            .call(&app, "DELETE", &format!("/sessions/{other_id}"), None)
            .await;
        assert_eq!(r.status, 404, "{n}");
        assert_eq!(other.call(&app, "GET", "/me", None).await.status, 200);
        let r = a.call(&app, "DELETE", "/sessions/not-an-id", None).await;
        assert_eq!(r.status, 404, "{n}");
        let r = a
            .call(&app, "DELETE", &format!("/sessions/{b_id}"), None)
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(
            b.call(&app, "GET", "/me", None).await.status,
            401,
            "{n}: still signed in"
        );
        assert_eq!(a.call(&app, "GET", "/me", None).await.status, 200, "{n}");
        let Auth::Session { cookie, .. } = &a else {
            unreachable!()
        };
        let page = http(&app.addr, "GET", "/account", &[("Cookie", cookie)], "").await;
        assert!(page.body.contains("This browser"), "{n}");
    }
}
