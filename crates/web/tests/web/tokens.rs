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
        assert!(ci["expires_at"].as_i64().unwrap() > brokeforge_core::time::now_ms());

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
