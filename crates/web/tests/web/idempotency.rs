//! `Idempotency-Key` on POSTs that queue jobs: a retry with the same key answers the first answer and queues
//! nothing more; the key is the caller's own; reusing it for another request is refused; a refused request
//! keeps no answer, so the key works once the request is fixed. On both backends.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_its_key_queues_once() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "idem@example.com", false).await;
        let bob = user(&app, "idem-other@example.com", false).await;
        let me = app
            .store
            .user_by_email("idem@example.com")
            .await
            .unwrap()
            .unwrap();
        let server = app
            .store
            .create_server(&brokeforge_store::NewServer {
                user_id: me.id,
                name: "idem".into(),
                public_ip: "10.9.9.9".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            })
            .await
            .unwrap();
        let token = |a: &Auth| match a {
            Auth::Token(t) => t.clone(),
            _ => unreachable!(),
        };
        let post = |who: String, path: String, key: &'static str, body: Value| {
            let addr = app.addr.clone();
            async move {
                let auth = format!("Bearer {who}");
                http(
                    &addr,
                    "POST",
                    &format!("/api/v1{path}"),
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                        ("Idempotency-Key", key),
                    ],
                    &body.to_string(),
                )
                .await
            }
        };
        let jobs = || async { app.store.jobs_for_server(server.id).await.unwrap().len() };
        let drift = format!("/servers/{}/drift", server.id);

        let first = post(token(&alice), drift.clone(), "k-1", json!({})).await;
        assert_eq!(first.status, 202, "{n}: {}", first.body);
        assert_eq!(first.header("idempotent-replayed"), Some("false"), "{n}");
        let again = post(token(&alice), drift.clone(), "k-1", json!({})).await;
        assert_eq!(
            (
                again.status,
                again.header("idempotent-replayed"),
                again.json()["job"]["id"].clone()
            ),
            (202, Some("true"), first.json()["job"]["id"].clone()),
            "{n}: {}",
            again.body
        );
        assert_eq!(jobs().await, 1, "{n}: the retry queued a second job");
        // A new key is a new request.
        let other = post(token(&alice), drift.clone(), "k-2", json!({})).await;
        assert_eq!(other.status, 202, "{n}");
        assert_ne!(other.json()["job"]["id"], first.json()["job"]["id"], "{n}");
        assert_eq!(jobs().await, 2, "{n}");
        // The same key for another request is refused, and runs nothing.
        let reused = post(
            token(&alice),
            format!("/servers/{}/firewall", server.id),
            "k-1",
            json!({"port": "8080", "protocol": "tcp", "action": "allow"}),
        )
        .await;
        assert_eq!(
            (reused.status, reused.json()["error"]["code"].clone()),
            (422, json!("idempotency_key_reused")),
            "{n}: {}",
            reused.body
        );
        assert_eq!(jobs().await, 2, "{n}");
        // Another user's key space is their own: bob's k-1 on alice's server is simply not found.
        let theirs = post(token(&bob), drift.clone(), "k-1", json!({})).await;
        assert_eq!(theirs.status, 404, "{n}: {}", theirs.body);
        // A refused request keeps nothing: fixed, the same key runs.
        let bad = post(
            token(&alice),
            format!("/servers/{}/firewall", server.id),
            "k-3",
            json!({"port": "not a port", "protocol": "tcp", "action": "allow"}),
        )
        .await;
        assert_eq!(bad.status, 422, "{n}: {}", bad.body);
        let fixed = post(
            token(&alice),
            format!("/servers/{}/drift", server.id),
            "k-3",
            json!({}),
        )
        .await;
        assert_eq!(fixed.status, 202, "{n}: {}", fixed.body);
        assert_eq!(jobs().await, 3, "{n}");
        // A bad key is refused before anything runs.
        let long: &'static str = Box::leak("x".repeat(256).into_boxed_str());
        let r = post(token(&alice), drift.clone(), long, json!({})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(jobs().await, 3, "{n}");
        // The answer is sealed at rest: the provisioning link a POST /servers answer carries is not in the
        // table as text.
        let added = post(
            token(&alice),
            "/servers".into(),
            "k-4",
            json!({"name": "idem-2", "public_ip": "10.9.9.10"}),
        )
        .await;
        assert_eq!(added.status, 201, "{n}: {}", added.body);
        let script = added.json()["script"].as_str().unwrap().to_string();
        let link = script
            .split_whitespace()
            .find(|w| w.contains("/provision/"))
            .unwrap();
        let token_part = link.rsplit('/').next().unwrap();
        let replay = post(
            token(&alice),
            "/servers".into(),
            "k-4",
            json!({"name": "idem-2", "public_ip": "10.9.9.10"}),
        )
        .await;
        assert_eq!(replay.json()["script"], json!(script), "{n}");
        assert_eq!(
            app.store.servers_for_user(me.id).await.unwrap().len(),
            2,
            "{n}: the replay added a server"
        );
        assert!(token_part.chars().all(|c| c.is_ascii_hexdigit()), "{link}");
        let count = |sql: String| {
            let store = app.store.clone();
            async move {
                brokeforge_store::raw_scalar_i64(store.pool(), &sql)
                    .await
                    .unwrap()
            }
        };
        let clear = if app.store.url().starts_with("sqlite") {
            format!(
                "SELECT count(*) FROM idempotency_keys WHERE instr(body_enc, CAST('{token_part}' AS BLOB)) > 0"
            )
        } else {
            format!(
                "SELECT count(*) FROM idempotency_keys WHERE position(convert_to('{token_part}', 'UTF8') in body_enc) > 0"
            )
        };
        assert_eq!(
            count("SELECT count(*) FROM idempotency_keys WHERE body_enc IS NOT NULL".into()).await,
            4,
            "{n}: the answers kept"
        );
        assert_eq!(
            count(clear).await,
            0,
            "{n}: the answer is stored in the clear"
        );
    }
}
