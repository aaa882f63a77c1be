//! The web app over real HTTP, in-process: a real store (SQLite, and PostgreSQL when configured), the real
//! router on a loopback port, workers running jobs against the in-process SSH server.

use std::time::Duration;

use brokeforge_core::CredentialKind;
use brokeforge_packages::Package;
use brokeforge_packages::jobs::{Worker, WorkerConfig};
use brokeforge_packages::services::server::synthetic::SyntheticPlan;
use brokeforge_ssh::testkit::TestSshServer;
use brokeforge_store::testing::{TestStore, stores};
use brokeforge_store::{JobStatus, NewJob, Store};
use brokeforge_web::{AppState, WebConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

struct App {
    name: &'static str,
    addr: String,
    store: Store,
    stop: CancellationToken,
    _t: TestStore,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn apps() -> Vec<App> {
    // Loopback only: the one-line script may be handed out over HTTP here.
    apps_with(WebConfig {
        insecure_provisioning: true,
        ..WebConfig::default()
    })
    .await
}

async fn apps_with(config: WebConfig) -> Vec<App> {
    let mut out = Vec::new();
    for t in stores().await {
        let store = t.store.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        store.spawn_activity_listener();
        let state = AppState::new(store.clone(), config.clone());
        // As `serve` does: recipe runs move on by themselves.
        let recipes = state.domain.clone();
        tokio::spawn({
            let stop = stop.clone();
            async move { recipes.run_recipe_runs(stop).await }
        });
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(
                listener,
                brokeforge_web::router(state)
                    .into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .unwrap();
        });
        let worker = Worker::new(
            store.clone(),
            brokeforge_packages::registry(),
            WorkerConfig {
                concurrency: 4,
                ..WorkerConfig::default()
            },
        );
        tokio::spawn(worker.run(stop.clone()));
        out.push(App {
            name: t.name,
            addr,
            store,
            stop,
            _t: t,
        });
    }
    out
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.0 exchange (the answer ends when the server closes).
async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Who is calling: a bearer token, or a session cookie with its CSRF token.
#[derive(Clone)]
enum Auth {
    Token(String),
    Session { cookie: String, csrf: String },
}

impl Auth {
    async fn call(&self, app: &App, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers: Vec<(&str, String)> = vec![("Content-Type", "application/json".into())];
        match self {
            Auth::Token(t) => headers.push(("Authorization", format!("Bearer {t}"))),
            Auth::Session { cookie, csrf } => {
                headers.push(("Cookie", cookie.clone()));
                headers.push(("X-CSRF-Token", csrf.clone()));
            }
        }
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(&app.addr, method, &format!("/api/v1{path}"), &h, &body).await
    }
}

async fn user(app: &App, email: &str, admin: bool) -> Auth {
    let hash = brokeforge_domain::accounts::hash_password("correct horse battery")
        .await
        .unwrap();
    let u = app.store.create_user(email, &hash, admin).await.unwrap();
    let token = format!("bf_test_{}", u.id);
    app.store
        .create_api_token(
            u.id,
            "test",
            &brokeforge_domain::accounts::sha256_hex(&token),
            "bf_test",
        )
        .await
        .unwrap();
    Auth::Token(token)
}

/// A server of the user `email` on a new in-process SSH server, with a `kind` credential (root or brokeforge)
/// whose key that server accepts. Keep the SSH server alive as long as the server is used.
async fn server_on_test_ssh(
    app: &App,
    email: &str,
    name: &str,
    kind: CredentialKind,
) -> (TestSshServer, brokeforge_store::Server) {
    let u = app.store.user_by_email(email).await.unwrap().unwrap();
    let kp = brokeforge_ssh::keys::generate_ed25519("t").unwrap();
    let ssh = TestSshServer::start().await;
    let unix_user = match kind {
        CredentialKind::Root => "root",
        _ => "brokeforge",
    };
    ssh.authorize(unix_user, &kp.public_openssh);
    let server = app
        .store
        .create_server(&brokeforge_store::NewServer {
            user_id: u.id,
            name: name.into(),
            public_ip: "127.0.0.1".into(),
            ssh_port: ssh.port(),
            host_key_fingerprint: Some(ssh.host_key_fingerprint.clone()),
        })
        .await
        .unwrap();
    app.store
        .put_credential(server.id, kind, &kp.public_openssh, &kp.private_openssh)
        .await
        .unwrap();
    (ssh, server)
}

async fn login(app: &App, email: &str, password: &str) -> Resp {
    http(
        &app.addr,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        &json!({"email": email, "password": password}).to_string(),
    )
    .await
}

fn session_of(r: &Resp) -> Auth {
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    Auth::Session {
        cookie,
        csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
    }
}

#[tokio::test]
async fn sessions_csrf_throttling_and_tokens() {
    for app in apps().await {
        let n = app.name;
        user(&app, "alice@example.com", false).await;

        // Not signed in: a JSON error with a stable code.
        let r = http(&app.addr, "GET", "/api/v1/me", &[], "").await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"), "{n}");

        let r = login(&app, "alice@example.com", "wrong password!").await;
        assert_eq!((r.status, r.code().as_str()), (401, "bad_credentials"));
        let r = login(&app, "alice@example.com", "correct horse battery").await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let cookie = r.header("set-cookie").unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let session = session_of(&r);
        let me = session.call(&app, "GET", "/me", None).await;
        assert_eq!(me.json()["user"]["email"], "alice@example.com");
        assert!(me.json()["user"].get("password_hash").is_none());

        // A state-changing request with the cookie but without the CSRF token, or from another origin, is
        // refused and changes nothing.
        let Auth::Session { cookie, csrf } = &session else {
            unreachable!()
        };
        let body = json!({"name": "forged"}).to_string();
        let forged = http(
            &app.addr,
            "POST",
            "/api/v1/tokens",
            &[("Cookie", cookie), ("Content-Type", "application/json")],
            &body,
        )
        .await;
        assert_eq!(forged.status, 403, "{n}");
        let cross = http(
            &app.addr,
            "POST",
            "/api/v1/tokens",
            &[
                ("Cookie", cookie),
                ("X-CSRF-Token", csrf),
                ("Origin", "https://evil.example"),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await;
        assert_eq!(cross.status, 403);
        let form = http(
            &app.addr,
            "POST",
            "/api/v1/tokens",
            &[
                ("Cookie", cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            "name=forged&_csrf=nope",
        )
        .await;
        assert_eq!(form.status, 403);
        let list = session.call(&app, "GET", "/tokens", None).await;
        assert_eq!(
            list.json()["tokens"].as_array().unwrap().len(),
            1,
            "{n}: nothing was created"
        );

        // With the token: a new API token, shown once, works as a bearer; revoked, it does not.
        let made = session
            .call(&app, "POST", "/tokens", Some(json!({"name": "ci"})))
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let token = made.json()["token"].as_str().unwrap().to_string();
        let id = made.json()["record"]["id"].as_i64().unwrap();
        let bearer = Auth::Token(token.clone());
        assert_eq!(bearer.call(&app, "GET", "/me", None).await.status, 200);
        let listed = session.call(&app, "GET", "/tokens", None).await.body;
        assert!(!listed.contains(&token), "the token is shown once only");
        assert_eq!(
            bearer
                .call(&app, "DELETE", &format!("/tokens/{id}"), None)
                .await
                .status,
            200
        );
        let r = bearer.call(&app, "GET", "/me", None).await;
        assert_eq!(r.status, 401, "{n}: a revoked token still works");

        // Logout ends the session.
        assert_eq!(
            session.call(&app, "POST", "/logout", None).await.status,
            200
        );
        assert_eq!(session.call(&app, "GET", "/me", None).await.status, 401);

        // Throttling: after five failures even the right password waits, on every node (it is in the DB).
        for _ in 0..5 {
            assert_eq!(
                login(&app, "alice@example.com", "wrong password!")
                    .await
                    .status,
                401
            );
        }
        let r = login(&app, "alice@example.com", "correct horse battery").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (429, "too_many_attempts"),
            "{n}"
        );
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("try again")
        );
    }
}

/// Parallel guesses cannot slip past the throttle: each attempt counts before its password is checked, so of
/// twenty wrong passwords sent at once at most five are checked at all; the rest wait, as does the right one.
#[tokio::test]
async fn parallel_guesses_are_throttled_like_sequential_ones() {
    for app in apps().await {
        let n = app.name;
        user(&app, "carol@example.com", false).await;
        let tries = (0..20).map(|_| login(&app, "carol@example.com", "wrong password!"));
        let codes: Vec<u16> = futures_util::future::join_all(tries)
            .await
            .iter()
            .map(|r| r.status)
            .collect();
        let checked = codes.iter().filter(|c| **c == 401).count();
        let waited = codes.iter().filter(|c| **c == 429).count();
        assert!(checked <= 5 && checked + waited == 20, "{n}: {codes:?}");
        let r = login(&app, "carol@example.com", "correct horse battery").await;
        assert_eq!(r.status, 429, "{n}");
    }
}

#[tokio::test]
async fn users_see_only_their_own_servers() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "alice@example.com", false).await;
        let bob = user(&app, "bob@example.com", false).await;

        // Bad input: a clear message naming the field; nothing stored.
        for (body, field) in [
            (
                json!({"name": "web", "public_ip": "999.1.1.1"}),
                "public_ip",
            ),
            (
                json!({"name": "web", "public_ip": "203.0.113.9", "ssh_port": 70000}),
                "ssh_port",
            ),
            (json!({"name": "we;b", "public_ip": "203.0.113.9"}), "name"),
            (
                json!({"name": "web", "public_ip": "203.0.113.9", "root_key": "not a key"}),
                "root_key",
            ),
        ] {
            let r = alice.call(&app, "POST", "/servers", Some(body)).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (422, "invalid_input"),
                "{n}: {}",
                r.body
            );
            assert_eq!(r.json()["error"]["field"], field, "{}", r.body);
        }
        let r = alice
            .call(&app, "POST", "/servers", Some(json!({"name": "x"})))
            .await;
        assert_eq!(r.status, 422);
        let r = alice
            .call(&app, "POST", "/servers", Some(json!("nope")))
            .await;
        assert_eq!((r.status, r.code().as_str()), (400, "bad_request"));
        assert!(
            alice.call(&app, "GET", "/servers", None).await.json()["servers"]
                .as_array()
                .unwrap()
                .is_empty()
        );

        let made = alice
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web-1", "public_ip": "203.0.113.10"})),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.body);
        let server_id = made.json()["server"]["id"].as_i64().unwrap();
        let script = made.json()["script"].as_str().unwrap().to_string();
        assert!(
            script.starts_with("curl -fsSL http://") && script.ends_with("| sudo bash"),
            "{script}"
        );

        // A site, a job and a deployment of Alice's, made directly in the store.
        let site = app
            .store
            .create_site(&brokeforge_store::NewSite {
                server_id,
                domain: "alice.example.com".into(),
                document_root: "/home/brokeforge/alice.example.com".into(),
                php_version: Some("8.2".into()),
                status: brokeforge_core::ServiceStatus::Active,
                configuration: json!({}),
            })
            .await
            .unwrap();
        let job = app
            .store
            .enqueue(&NewJob::new("noop", Some(server_id), json!({})))
            .await
            .unwrap();
        let (dep, _) = app
            .store
            .queue_deployment(
                &site,
                "deploy",
                Some("main"),
                None,
                "test",
                NewJob::new("noop", Some(server_id), json!({})),
            )
            .await
            .unwrap();

        for path in [
            format!("/servers/{server_id}"),
            format!("/servers/{server_id}/services"),
            format!("/servers/{server_id}/events"),
            format!("/servers/{server_id}/stream"),
            format!("/servers/{server_id}/jobs"),
            format!("/servers/{server_id}/sites"),
            format!("/sites/{}", site.id),
            format!("/sites/{}/deployments", site.id),
            format!("/sites/{}/commands", site.id),
            format!("/sites/{}/webhook", site.id),
            format!("/jobs/{}", job.id),
            format!("/jobs/{}/logs", job.id),
            format!("/deployments/{}", dep.id),
        ] {
            let r = bob.call(&app, "GET", &path, None).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (404, "not_found"),
                "{n}: bob read {path}"
            );
            assert_eq!(
                alice
                    .call(&app, "GET", &path.replace("/stream", "/events"), None)
                    .await
                    .status,
                200,
                "{path}"
            );
        }
        for (method, path, body) in [
            ("DELETE", format!("/servers/{server_id}"), None),
            (
                "POST",
                format!("/servers/{server_id}/services"),
                Some(json!({"package": "redis"})),
            ),
            ("POST", format!("/jobs/{}/cancel", job.id), None),
            ("POST", format!("/sites/{}/deployments", site.id), None),
            (
                "PUT",
                format!("/sites/{}/tasks", site.id),
                Some(json!({"daemons": [{"command": "sleep 1000"}]})),
            ),
            (
                "POST",
                format!("/sites/{}/certificate", site.id),
                Some(json!({})),
            ),
            ("DELETE", format!("/sites/{}", site.id), None),
        ] {
            let r = bob.call(&app, method, &path, body).await;
            assert_eq!(r.status, 404, "{n}: bob {method} {path}");
        }
        assert!(app.store.server(server_id).await.is_ok());
        assert_ne!(
            app.store.job(job.id).await.unwrap().status,
            JobStatus::Cancelled
        );

        // The web server is not removed from under its sites.
        let r = alice
            .call(
                &app,
                "DELETE",
                &format!("/servers/{server_id}/services/webserver"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("alice.example.com"), "{}", r.body);

        // Only administrators manage users.
        assert_eq!(bob.call(&app, "GET", "/users", None).await.status, 403);
    }
}

#[tokio::test]
async fn deploy_webhooks_check_the_caller_and_the_branch() {
    use brokeforge_packages::services::sites::config::{RepositoryConfig, SiteConfig};
    use hmac::{Hmac, Mac};
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "alice@example.com", false).await;
        // The server is unreachable on purpose: a queued deploy is what this test looks at, not its run.
        let made = alice
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "hooks", "public_ip": "203.0.113.20"})),
            )
            .await;
        let server_id = made.json()["server"]["id"].as_i64().unwrap();
        let config = SiteConfig {
            repository: Some(RepositoryConfig {
                url: "https://git.example.com/acme/app.git".into(),
                branch: "main".into(),
                transport: "https".into(),
                host: "git.example.com".into(),
                port: 443,
                deploy_key_public: None,
                host_key_fingerprints: Vec::new(),
                known_hosts: String::new(),
            }),
            ..SiteConfig::default()
        };
        let site = app
            .store
            .create_site(&brokeforge_store::NewSite {
                server_id,
                domain: "hooks.example.com".into(),
                document_root: "/home/brokeforge/hooks.example.com".into(),
                php_version: Some("8.2".into()),
                status: brokeforge_core::ServiceStatus::Active,
                configuration: serde_json::to_value(&config).unwrap(),
            })
            .await
            .unwrap();
        let hook = alice
            .call(&app, "GET", &format!("/sites/{}/webhook", site.id), None)
            .await
            .json();
        assert_eq!(hook["provider"], "github", "{n}: GitHub by default");
        let secret = hook["secret"].as_str().unwrap().to_string();
        let url = hook["url"].as_str().unwrap();
        let path = url[url.find("/hooks/").unwrap()..].to_string();
        let url_id = path.rsplit('/').next().unwrap().to_string();
        assert_ne!(
            url_id, secret,
            "{n}: the URL does not carry the signing secret"
        );
        let sign = |body: &str| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(body.as_bytes());
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        let deployments = || async { app.store.deployments(site.id, 100).await.unwrap().len() };
        let push_main = r#"{"ref":"refs/heads/main","after":"abc"}"#;
        let push_other = r#"{"ref":"refs/heads/feature","after":"abc"}"#;
        let json_type = ("Content-Type", "application/json");
        let main_sig = sign(push_main);
        let url_sig = {
            // Signed with what is in the URL: no longer the key.
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(url_id.as_bytes()).unwrap();
            mac.update(push_main.as_bytes());
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };

        // Refused without side effects: a wrong URL id, an unknown site, a missing or wrong signature, a
        // signature without GitHub's event header (no longer an unsigned "plain POST"), another provider's
        // request, a plain POST, and the URL's id used as the key.
        let wrong_path = path.replace(&url_id, &"0".repeat(url_id.len()));
        let bad_sig = sign("something else");
        // (path, headers, body, expected status)
        type Call<'a> = (String, Vec<(&'a str, &'a str)>, &'a str, u16);
        let refused: Vec<Call> = vec![
            (
                wrong_path.clone(),
                vec![
                    json_type,
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &main_sig),
                ],
                push_main,
                404,
            ),
            (
                path.replace(&format!("/sites/{}/", site.id), "/sites/999999/"),
                vec![json_type],
                push_main,
                404,
            ),
            (
                path.clone(),
                vec![json_type, ("X-GitHub-Event", "push")],
                push_main,
                401,
            ),
            (
                path.clone(),
                vec![
                    json_type,
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &bad_sig),
                ],
                push_main,
                401,
            ),
            (
                path.clone(),
                vec![json_type, ("X-Hub-Signature-256", &main_sig)],
                push_main,
                401,
            ),
            (
                path.clone(),
                vec![
                    json_type,
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &url_sig),
                ],
                push_main,
                401,
            ),
            (
                path.clone(),
                vec![
                    json_type,
                    ("X-Gitlab-Event", "Push Hook"),
                    ("X-Gitlab-Token", &secret),
                ],
                push_main,
                401,
            ),
            (path.clone(), vec![], "", 401),
            (path.clone(), vec![("X-BrokeForge-Token", &secret)], "", 401),
        ];
        for (p, headers, body, status) in refused {
            let r = http(&app.addr, "POST", &p, &headers, body).await;
            assert_eq!(r.status, status, "{n}: {p} {headers:?}: {}", r.body);
        }
        assert_eq!(
            deployments().await,
            0,
            "{n}: a refused call queued a deploy"
        );

        // Authenticated but nothing to deploy: GitHub's ping, a push to another branch.
        let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        let ping_sig = sign(ping);
        let other_sig = sign(push_other);
        for (headers, body, why) in [
            (
                vec![
                    json_type,
                    ("X-GitHub-Event", "ping"),
                    ("X-Hub-Signature-256", ping_sig.as_str()),
                ],
                ping,
                "pong",
            ),
            (
                vec![
                    json_type,
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", other_sig.as_str()),
                ],
                push_other,
                "push to feature ignored",
            ),
        ] {
            let r = http(&app.addr, "POST", &path, &headers, body).await;
            assert_eq!(r.status, 200, "{n}: {headers:?}: {}", r.body);
            assert!(
                r.json()["ignored"].as_str().unwrap().starts_with(why),
                "{n}: {}",
                r.body
            );
        }
        // A signed push with the event header but a broken body is a bad request.
        let garbage_sig = sign("not json");
        let r = http(
            &app.addr,
            "POST",
            &path,
            &[
                json_type,
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &garbage_sig),
            ],
            "not json",
        )
        .await;
        assert_eq!(r.status, 400, "{n}: {}", r.body);
        assert_eq!(
            deployments().await,
            0,
            "{n}: an ignored call queued a deploy"
        );

        // A signed push deploys, once: the same delivery again is answered and ignored.
        let github = |delivery: &'static str| {
            vec![
                json_type,
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", delivery),
                ("X-Hub-Signature-256", main_sig.as_str()),
            ]
        };
        let r = http(&app.addr, "POST", &path, &github("d-1"), push_main).await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let d = app
            .store
            .deployment(r.json()["deployment_id"].as_i64().unwrap())
            .await
            .unwrap();
        assert_eq!(
            (d.site_id, d.branch.as_deref(), d.triggered_by.as_str()),
            (site.id, Some("main"), "webhook:github"),
            "{n}"
        );
        let r = http(&app.addr, "POST", &path, &github("d-1"), push_main).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(
            r.json()["ignored"]
                .as_str()
                .unwrap()
                .contains("handled already"),
            "{n}"
        );
        assert_eq!(deployments().await, 1, "{n}: a replay deployed again");

        // The site chooses GitLab: GitHub's calls stop working, GitLab's secret token deploys.
        let r = alice
            .call(
                &app,
                "PUT",
                &format!("/sites/{}/webhook", site.id),
                Some(json!({"provider": "gitlab"})),
            )
            .await;
        assert_eq!(
            (r.status, r.json()["provider"].as_str()),
            (200, Some("gitlab")),
            "{n}: {}",
            r.body
        );
        let r = alice
            .call(
                &app,
                "PUT",
                &format!("/sites/{}/webhook", site.id),
                Some(json!({"provider": "svn"})),
            )
            .await;
        assert_eq!(r.status, 422, "{n}");
        let r = http(&app.addr, "POST", &path, &github("d-2"), push_main).await;
        assert_eq!(r.status, 401, "{n}: {}", r.body);
        let r = http(
            &app.addr,
            "POST",
            &path,
            &[
                json_type,
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Event-UUID", "g-1"),
                ("X-Gitlab-Token", secret.as_str()),
            ],
            push_main,
        )
        .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        let gitlab = app
            .store
            .deployment(r.json()["deployment_id"].as_i64().unwrap())
            .await
            .unwrap();
        if r.json()["joined"] == true {
            // The first deployment was still waiting in the queue: the push joined it.
            assert_eq!(gitlab.id, d.id, "{n}");
        } else {
            assert_eq!(gitlab.triggered_by, "webhook:gitlab", "{n}");
        }
    }
}

/// Read SSE events until `done` says stop; returns (id, event, data).
async fn read_sse(
    app: &App,
    auth: &Auth,
    path: &str,
    last_event_id: Option<i64>,
    mut done: impl FnMut(&[(i64, String, String)]) -> bool,
) -> Vec<(i64, String, String)> {
    let Auth::Token(token) = auth else {
        panic!("token auth")
    };
    let mut s = tokio::net::TcpStream::connect(&app.addr).await.unwrap();
    let mut req = format!(
        "GET /api/v1{path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n",
        app.addr
    );
    if let Some(id) = last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("SSE events in time")
            .unwrap()
            .expect("stream open");
        if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            data.push_str(v);
        } else if line.is_empty() && id.is_some() {
            out.push((
                id.take().unwrap(),
                std::mem::take(&mut event),
                std::mem::take(&mut data),
            ));
            if done(&out) {
                return out;
            }
        }
    }
}

/// A watcher disconnected mid-job resumes with Last-Event-ID and gets exactly what it missed: together the
/// two connections saw every row of the feed once, in order.
#[tokio::test]
async fn sse_resumes_without_gaps_or_duplicates() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "alice@example.com", false).await;
        let (_ssh, server) =
            server_on_test_ssh(&app, "alice@example.com", "sse", CredentialKind::User).await;
        let start = app.store.activity_head(server.id).await.unwrap();
        let job = app
            .store
            .enqueue(&NewJob::new(
                SyntheticPlan::JOB,
                Some(server.id),
                SyntheticPlan::payload(12, 150),
            ))
            .await
            .unwrap();
        let path = format!("/servers/{}/stream?after={start}", server.id);
        // First connection: a few events, then hang up mid-job.
        let first = read_sse(&app, &alice, &path, None, |got| got.len() >= 5).await;
        let last = first.last().unwrap().0;
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Reconnect with Last-Event-ID until the job's end arrives.
        let second = read_sse(&app, &alice, &path, Some(last), |got| {
            got.iter()
                .any(|(_, e, d)| e == "job" && d.contains(&format!("\"job_id\":{}", job.id)))
        })
        .await;
        let seen: Vec<i64> = first.iter().chain(second.iter()).map(|e| e.0).collect();
        let feed: Vec<i64> = app
            .store
            .activity(server.id, start, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .filter(|id| *id <= *seen.last().unwrap())
            .collect();
        assert_eq!(seen, feed, "{n}: gaps or duplicates");
        // Milestones tick: every step's event was seen, and the job ended done.
        let done = app.store.job(job.id).await.unwrap();
        assert_eq!(done.status, JobStatus::Done);
        let milestones = first
            .iter()
            .chain(second.iter())
            .filter(|(_, e, d)| e == "milestone" && d.contains("\"completed\""))
            .count();
        assert_eq!(milestones, 12, "{n}");
    }
}

/// On PostgreSQL, output written by another node (another process's store) reaches this node's watchers
/// through LISTEN/NOTIFY.
#[tokio::test]
async fn activity_from_another_node_reaches_watchers() {
    for app in apps().await {
        if app.name != "postgres" {
            continue;
        }
        let alice = user(&app, "alice@example.com", false).await;
        let u = app
            .store
            .user_by_email("alice@example.com")
            .await
            .unwrap()
            .unwrap();
        let server = app
            .store
            .create_server(&brokeforge_store::NewServer {
                user_id: u.id,
                name: "far".into(),
                public_ip: "203.0.113.40".into(),
                ssh_port: 22,
                host_key_fingerprint: None,
            })
            .await
            .unwrap();
        let other_node = Store::open(
            &app._t.url,
            &brokeforge_store::MasterKey::generate().unwrap(),
        )
        .await
        .err();
        // A second node shares the database and the master key; here it only writes output.
        assert!(
            other_node.is_some(),
            "a different master key must be refused"
        );
        let node_b = Store::open(&app._t.url, &app._t.key).await.unwrap();
        let head = app.store.activity_head(server.id).await.unwrap();
        let writer = {
            let node_b = node_b.clone();
            let id = server.id;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                node_b
                    .append_log(
                        id,
                        None,
                        None,
                        brokeforge_store::LogStream::Stdout,
                        "hello from node b\n",
                    )
                    .await
                    .unwrap();
            })
        };
        let started = std::time::Instant::now();
        let got = read_sse(
            &app,
            &alice,
            &format!("/servers/{}/stream?after={head}", server.id),
            None,
            |got| got.iter().any(|(_, _, d)| d.contains("hello from node b")),
        )
        .await;
        writer.await.unwrap();
        assert_eq!(got.len(), 1);
        // Woken by the notification, not by the 30-second safety read.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn openapi_metrics_and_health() {
    for app in apps().await {
        let r = http(&app.addr, "GET", "/api/v1/openapi.json", &[], "").await;
        assert_eq!(r.status, 200);
        let doc = r.json();
        let ops = brokeforge_web::api::operations();
        for op in &ops {
            assert!(
                doc["paths"][format!("/api/v1{}", op.path)][op.method].is_object(),
                "{} {} undocumented",
                op.method,
                op.path
            );
            assert!(
                doc["paths"][format!("/api/v1{}", op.path)][op.method]["tags"][0].is_string(),
                "{} {} has no tag",
                op.method,
                op.path
            );
            // A route that shows an example body takes a typed one: its schema is in the document.
            assert!(
                op.body.is_empty() || op.request.is_some(),
                "{} {} has an example body but no request type",
                op.method,
                op.path
            );
        }
        // Typed operations: each names a route of the table, its answer and body are references to
        // components that exist, and every error is the one error schema.
        let schemas = &doc["components"]["schemas"];
        let resolve = |v: &Value| -> Value {
            let name = v["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .unwrap_or_else(|| panic!("not a component reference: {v}"));
            schemas[name].clone()
        };
        for t in ops.iter().filter(|o| o.answer.is_some()) {
            let op = &doc["paths"][format!("/api/v1{}", t.path)][t.method];
            for (status, _) in t
                .answer
                .iter()
                .chain(t.also.iter())
                .filter(|(s, _)| *s != 204)
            {
                let answer = resolve(
                    &op["responses"][status.to_string()]["content"]["application/json"]["schema"],
                );
                // An object, or one of several (an untagged enum).
                assert!(
                    answer["properties"].is_object() || answer["anyOf"].is_array(),
                    "{} {} {status}: {answer}",
                    t.method,
                    t.path
                );
            }
            if t.request.is_some() {
                let body = &op["requestBody"]["content"]["application/json"]["schema"];
                // A named type, or a map of settings (a package's, typed by its parameters).
                let body = match body["$ref"].is_string() {
                    true => resolve(body),
                    false => body.clone(),
                };
                assert!(
                    body["properties"].is_object()
                        || body["additionalProperties"].is_object()
                        || body["additionalProperties"] == true,
                    "{} {}: {body}",
                    t.method,
                    t.path
                );
            }
        }
        assert_eq!(
            resolve(
                &doc["paths"]["/api/v1/servers"]["get"]["responses"]["default"]["content"]["application/json"]
                    ["schema"]
            )["properties"]["error"]["$ref"],
            "#/components/schemas/ErrorDetail"
        );
        let params: Vec<&str> = doc["paths"]["/api/v1/servers"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(params, ["cursor", "limit", "name", "search", "team"]);
        assert_eq!(
            schemas["JobStatus"]["enum"],
            json!(["queued", "running", "done", "failed", "cancelled"])
        );
        let job = app
            .store
            .enqueue(&NewJob::new("noop", None, json!({})))
            .await
            .unwrap();
        let done = app
            .store
            .wait_for_job(job.id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(done.status, JobStatus::Done);
        // The job counted by this process once it ended (the counter is the process's own).
        let m = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let m = http(&app.addr, "GET", "/metrics", &[], "").await;
                assert_eq!(m.status, 200, "a scraper on this machine is let in");
                if m.body.contains(
                    "brokeforge_job_duration_seconds_count{kind=\"noop\",status=\"done\"}",
                ) {
                    break m;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the finished job shows in /metrics");
        assert!(
            m.body.contains("brokeforge_jobs{state=\"queued\"} 0"),
            "{}",
            m.body
        );
        assert!(m.body.contains("brokeforge_ssh_errors_total"));
        assert_eq!(http(&app.addr, "GET", "/health", &[], "").await.status, 200);
    }
}

/// With a metrics token configured, `/metrics` wants it (a scraper elsewhere cannot read it without).
#[tokio::test]
async fn metrics_need_their_token_when_one_is_set() {
    let t = stores().await.remove(0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = WebConfig {
        metrics_token: Some("scrape-me-please".into()),
        ..WebConfig::default()
    };
    let app = brokeforge_web::router(AppState::new(t.store.clone(), config));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    for (headers, status) in [
        (vec![], 403),
        (vec![("Authorization", "Bearer wrong-token-here")], 403),
        (vec![("Authorization", "Bearer scrape-me-please")], 200),
    ] {
        let r = http(&addr, "GET", "/metrics", &headers, "").await;
        assert_eq!(r.status, status, "{headers:?}: {}", r.body);
    }
}

fn cookie_of(r: &Resp) -> String {
    r.header("set-cookie")
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Post the sign-in or setup form the way a browser does: load the page (its pre-session cookie and token),
/// then post both with the fields.
async fn page_form(app: &App, path: &str, fields: &[(&str, &str)]) -> Resp {
    let page = http(&app.addr, "GET", path, &[], "").await;
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    let cookie = cookie_of(&page);
    let token = csrf_in(&page.body);
    let mut all = fields.to_vec();
    all.push(("_csrf", &token));
    form(app, path, &cookie, &all).await
}

fn csrf_in(html: &str) -> String {
    let i = html
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta")
        + 27;
    html[i..].split('"').next().unwrap().to_string()
}

async fn form(app: &App, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(fields).unwrap();
    http(
        &app.addr,
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await
}

/// First run, sign-in, every page, and forms that re-display bad input with its message and store nothing.
#[tokio::test]
async fn pages_render_and_forms_reject_bad_input() {
    for app in apps().await {
        let n = app.name;
        // First visit on an empty database: create the administrator.
        let r = http(&app.addr, "GET", "/", &[], "").await;
        assert_eq!(
            (r.status, r.header("location")),
            (303, Some("/setup")),
            "{n}"
        );
        let r = http(&app.addr, "GET", "/setup", &[], "").await;
        assert!(r.body.contains("Create administrator"));
        let r = page_form(
            &app,
            "/setup",
            &[("email", "admin@example.com"), ("password", "short")],
        )
        .await;
        assert_eq!(r.status, 422);
        assert!(
            r.body.contains("at least 10 characters") && r.body.contains("admin@example.com"),
            "{}",
            r.body
        );
        assert_eq!(app.store.count_users().await.unwrap(), 0);
        let r = page_form(
            &app,
            "/setup",
            &[
                ("email", "admin@example.com"),
                ("password", "a good long password"),
            ],
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let cookie = cookie_of(&r);
        // A page as the signed-in administrator.
        let get_page = |path: String| {
            let (addr, cookie) = (app.addr.clone(), cookie.clone());
            async move { http(&addr, "GET", &path, &[("Cookie", &cookie)], "").await }
        };
        assert_eq!(app.store.count_users().await.unwrap(), 1);
        assert!(
            app.store
                .user_by_email("admin@example.com")
                .await
                .unwrap()
                .unwrap()
                .is_admin
        );
        // Setup is over.
        assert_eq!(
            http(&app.addr, "GET", "/setup", &[], "")
                .await
                .header("location"),
            Some("/login")
        );
        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "admin@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("wrong email or password"));

        let home = http(&app.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
        assert_eq!(home.status, 200, "{n}");
        assert!(home.body.contains("No servers yet"));
        let csrf = csrf_in(&home.body);
        for page in ["/servers/new", "/account", "/users"] {
            let r = http(&app.addr, "GET", page, &[("Cookie", &cookie)], "").await;
            assert_eq!(r.status, 200, "{n}: {page}");
        }

        // Add server: bad input comes back with the message and the values typed; nothing stored.
        let r = form(
            &app,
            "/servers",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "web-1"),
                ("public_ip", "300.1.2.3"),
                ("ssh_port", "22"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}");
        assert!(
            r.body.contains("public_ip") && r.body.contains("value=\"web-1\""),
            "{}",
            r.body
        );
        let r = form(
            &app,
            "/servers",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "web-1"),
                ("public_ip", "203.0.113.5"),
                ("ssh_port", "nope"),
            ],
        )
        .await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("not a port number"));
        let admin_id = app
            .store
            .user_by_email("admin@example.com")
            .await
            .unwrap()
            .unwrap()
            .id;
        assert!(
            app.store
                .servers_for_user(admin_id)
                .await
                .unwrap()
                .is_empty(),
            "{n}: a refused form stores nothing"
        );
        let admin = app
            .store
            .user_by_email("admin@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(
            app.store
                .servers_for_user(admin.id)
                .await
                .unwrap()
                .is_empty()
        );
        // Without the CSRF field the form is refused.
        let r = form(
            &app,
            "/servers",
            &cookie,
            &[("name", "web-1"), ("public_ip", "203.0.113.5")],
        )
        .await;
        assert_eq!(r.status, 403);

        let r = form(
            &app,
            "/servers",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "web-1"),
                ("public_ip", "203.0.113.5"),
                ("ssh_port", "22"),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("curl -fsSL http://") && r.body.contains("data-copy=\"script\""),
            "{n}"
        );
        let server = app
            .store
            .servers_for_user(admin.id)
            .await
            .unwrap()
            .remove(0);
        let page = get_page(format!("/servers/{}", server.id)).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("data-stream="), "{n}");
        // The workspace: each area is a page of its own, its tab marked current and the others linked.
        for (area, path, _) in brokeforge_web::pages::common::SERVER_AREAS {
            let url = format!("/servers/{}{path}", server.id);
            let r = http(&app.addr, "GET", &url, &[("Cookie", &cookie)], "").await;
            assert_eq!(r.status, 200, "{n}: {area}: {}", r.body);
            assert!(
                r.body
                    .contains(&format!("<a href=\"{url}\" aria-current=\"page\">"))
                    && r.body.matches("aria-current=").count() == 1
                    && r.body
                        .contains(&format!("href=\"/servers/{}/settings\"", server.id)),
                "{n}: {area}: {}",
                r.body
            );
        }
        let services = get_page(format!("/servers/{}/services", server.id)).await;
        assert!(services.body.contains("Install nginx and PHP"), "{n}");
        // A package the server's OS cannot take is shown with the reason, without an install button.
        app.store
            .set_server_os(server.id, "debian 12")
            .await
            .unwrap();
        let services = get_page(format!("/servers/{}/services", server.id)).await;
        let mysql = services.body.split("id=\"install-mysql\"").nth(1).unwrap();
        let mysql = &mysql[..mysql.find("</div>").unwrap()];
        assert!(
            mysql.contains("data-unavailable=\"mysql\"")
                && mysql.contains("package archive. Install MariaDB instead")
                && !mysql.contains("<button")
                && !mysql.contains("<form"),
            "{n}: {mysql}"
        );
        assert!(
            !services.body.contains("data-unavailable=\"mariadb\""),
            "{n}"
        );
        // The API says the same for that server, and nothing without one.
        for (query, mysql_unavailable) in [
            (format!("?server={}", server.id), true),
            (String::new(), false),
        ] {
            let r = http(
                &app.addr,
                "GET",
                &format!("/api/v1/catalogue{query}"),
                &[("Cookie", &cookie)],
                "",
            )
            .await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
            let v = r.json();
            let unavailable = |name: &str| {
                v["packages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == name)
                    .unwrap_or_else(|| panic!("{name} is not in the catalogue"))["unavailable"]
                    .clone()
            };
            assert_eq!(
                unavailable("mysql")
                    .as_str()
                    .is_some_and(|r| r.contains("Install MariaDB instead")),
                mysql_unavailable,
                "{n}: {query}"
            );
            assert!(unavailable("mariadb").is_null(), "{n}");
        }
        let missing = http(
            &app.addr,
            "GET",
            "/api/v1/catalogue?server=999999",
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(missing.status, 404, "{n}: {}", missing.body);
        // A step the one-line script reported shows on the server page.
        app.store
            .start_event(&brokeforge_store::NewEvent {
                server_id: server.id,
                job_id: None,
                attempt: None,
                service_type: brokeforge_core::ServiceType::Server,
                provision_type: brokeforge_core::ProvisionType::Install,
                milestone: "create_users".into(),
                label: "Creating users".into(),
                current_step: 1,
                total_steps: 6,
                details: json!({}),
            })
            .await
            .unwrap();
        let page = get_page(format!("/servers/{}", server.id)).await;
        assert!(
            page.body.contains("Provisioning script") && page.body.contains("Creating users"),
            "{n}"
        );

        // A site with a bad domain is refused on the page.
        let r = form(
            &app,
            &format!("/servers/{}/sites", server.id),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("domain", "a.com;touch /tmp/x"),
                ("web_directory", "public"),
            ],
        )
        .await;
        assert_eq!(r.status, 422);
        assert!(
            r.body.contains("not a valid hostname") && r.body.contains("a.com;touch /tmp/x"),
            "{}",
            r.body
        );
        assert!(app.store.sites(server.id).await.unwrap().is_empty());

        // Site and deployment pages.
        let site = app
            .store
            .create_site(&brokeforge_store::NewSite {
                server_id: server.id,
                domain: "app.example.com".into(),
                document_root: "/home/brokeforge/app.example.com".into(),
                php_version: Some("8.2".into()),
                status: brokeforge_core::ServiceStatus::Active,
                configuration: json!({}),
            })
            .await
            .unwrap();
        let r = get_page(format!("/sites/{}", site.id)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("ssh-ed25519 "), "{n}");
        for (area, path, label) in brokeforge_web::pages::common::SITE_AREAS {
            let url = match *label {
                "Logs" => format!("/servers/{}/logs?site=app.example.com", server.id),
                _ => format!("/sites/{}{path}", site.id),
            };
            let r = http(&app.addr, "GET", &url, &[("Cookie", &cookie)], "").await;
            assert_eq!(r.status, 200, "{n}: {area}: {}", r.body);
            if *label != "Logs" {
                assert!(
                    r.body
                        .contains(&format!("<a href=\"{url}\" aria-current=\"page\">")),
                    "{n}: {area}: {}",
                    r.body
                );
            }
        }
        let r = get_page(format!("/sites/{}/deployments", site.id)).await;
        assert!(r.body.contains("/hooks/sites/"), "{n}");
        // Each area reads what it shows: the overview has the deploy key and no webhook secret, the
        // deployments area the webhook and no deploy key.
        let overview = get_page(format!("/sites/{}", site.id)).await;
        assert!(
            !overview.body.contains("/hooks/sites/") && !r.body.contains("ssh-ed25519 "),
            "{n}"
        );
        let r = form(
            &app,
            &format!("/sites/{}/rollback", site.id),
            &cookie,
            &[("_csrf", &csrf), ("release", "nope")],
        )
        .await;
        assert_eq!(r.status, 422);
        assert!(r.body.contains("not a kept release"));
        // HTTPS: a bad email or ACME directory is refused on the page; nothing is queued.
        let r = get_page(format!("/sites/{}/https", site.id)).await;
        assert!(r.body.contains("Get a certificate"), "{n}");
        let jobs_before = app.store.jobs_for_server(server.id).await.unwrap().len();
        for (field, value, msg) in [
            ("email", "ops at example", "enter an email address"),
            (
                "acme_directory",
                "http://acme.example.com/dir",
                "https:// URL",
            ),
        ] {
            let r = form(
                &app,
                &format!("/sites/{}/certificate", site.id),
                &cookie,
                &[("_csrf", &csrf), (field, value)],
            )
            .await;
            assert_eq!(r.status, 422, "{n}: {field}");
            assert!(r.body.contains(msg), "{}", r.body);
        }
        let r = form(
            &app,
            &format!("/sites/{}/certificate/delete", site.id),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status, 422, "{n}");
        assert!(r.body.contains("has no certificate"), "{}", r.body);
        // Background work: no output before there is any work (nothing is read from the server).
        let r = get_page(format!("/sites/{}/tasks?output=1", site.id)).await;
        assert!(
            r.status == 200 && r.body.contains("(no output yet)"),
            "{n}: {}",
            r.body
        );
        // A bad schedule is refused and shown again as typed; nothing stored.
        let r = form(
            &app,
            &format!("/sites/{}/tasks", site.id),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("schedules", "* * * php artisan schedule:run"),
                ("daemons", "2: php artisan queue:work"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}");
        assert!(
            r.body.contains("is not a schedule")
                && r.body.contains("* * * php artisan schedule:run")
                && r.body.contains("2: php artisan queue:work"),
            "{}",
            r.body
        );
        assert_eq!(
            brokeforge_packages::services::sites::config::SiteConfig::of(
                &app.store.site(site.id).await.unwrap()
            )
            .tasks,
            Default::default()
        );
        assert_eq!(
            app.store.jobs_for_server(server.id).await.unwrap().len(),
            jobs_before
        );
        for (keep, shared, msg) in [
            ("0", ".env", "between 1 and 50"),
            ("3", "../etc/passwd", "not a path inside the release"),
        ] {
            let r = form(
                &app,
                &format!("/sites/{}/settings", site.id),
                &cookie,
                &[
                    ("_csrf", &csrf),
                    ("keep_releases", keep),
                    ("deploy_timeout_secs", "900"),
                    ("shared_paths", shared),
                ],
            )
            .await;
            assert_eq!(r.status, 422, "{n}");
            assert!(r.body.contains(msg), "{}", r.body);
        }
        let r = form(
            &app,
            &format!("/sites/{}/settings", site.id),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("keep_releases", "3"),
                ("deploy_timeout_secs", "600"),
                ("shared_paths", ".env, storage/"),
            ],
        )
        .await;
        assert_eq!(r.status, 303);
        let cfg = brokeforge_packages::services::sites::config::SiteConfig::of(
            &app.store.site(site.id).await.unwrap(),
        );
        assert_eq!((cfg.keep_releases, cfg.deploy_timeout_secs), (3, 600));
        let (d, _) = app
            .store
            .queue_deployment(
                &site,
                "deploy",
                Some("main"),
                None,
                "test",
                NewJob::new("noop", Some(server.id), json!({})),
            )
            .await
            .unwrap();
        let r = get_page(format!("/deployments/{}", d.id)).await;
        assert_eq!(r.status, 200);

        // Databases: what is there, and drop buttons that queue the removal.
        app.store
            .upsert_service(
                server.id,
                "mariadb",
                brokeforge_core::ServiceType::Database,
                &json!({"schemas": [{"name": "app"}], "users": [{"name": "app_rw", "schemas": ["app"]}]}),
                brokeforge_core::ServiceStatus::Active,
            )
            .await
            .unwrap();
        let page = get_page(format!("/servers/{}/databases", server.id)).await;
        assert!(
            page.body.contains("schema <strong>app</strong>")
                && page.body.contains("user <strong>app_rw</strong>"),
            "{n}"
        );
        let r = form(
            &app,
            &format!("/servers/{}/databases/schemas/mariadb/app/drop", server.id),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let r = form(
            &app,
            &format!("/servers/{}/databases/schemas/mariadb/a;b/drop", server.id),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status, 422, "{}", r.body);
        let kinds: Vec<String> = app
            .store
            .jobs_for_server(server.id)
            .await
            .unwrap()
            .iter()
            .map(|j| j.kind.clone())
            .collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|k| *k == "database_schema_remover")
                .count(),
            1,
            "{n}: {kinds:?}"
        );

        // Removal options from the catalogue: a database can be dumped first.
        let page = get_page(format!("/servers/{}/services", server.id)).await;
        assert!(page.body.contains("name=\"set.dump_first\""), "{n}");
        let r = form(
            &app,
            &format!("/servers/{}/services/mariadb/remove", server.id),
            &cookie,
            &[("_csrf", &csrf), ("set.dump_first", "true")],
        )
        .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let removal = app
            .store
            .jobs_for_server(server.id)
            .await
            .unwrap()
            .into_iter()
            .last()
            .unwrap();
        assert_eq!(
            removal.payload["dump_first"], true,
            "{n}: {:?}",
            removal.payload
        );

        // More forms: each bad value comes back with its message, nothing changes.
        for (path, fields, msg) in [
            (
                "/account/tokens".to_string(),
                vec![("name", " ")],
                "name the token",
            ),
            (
                "/users".to_string(),
                vec![("email", "nope"), ("password", "a good long password")],
                "email address",
            ),
            (
                "/users".to_string(),
                vec![("email", "dev@example.com"), ("password", "short")],
                "at least 10",
            ),
            (
                "/account/password".to_string(),
                vec![
                    ("current", "wrong one!"),
                    ("password", "a new long password"),
                ],
                "current password is wrong",
            ),
            (
                format!("/servers/{}/host-key", server.id),
                vec![("fingerprint", "MD5:nope")],
                "fingerprint",
            ),
        ] {
            let mut f = vec![("_csrf", csrf.as_str())];
            f.extend(fields.iter().copied());
            let r = form(&app, &path, &cookie, &f).await;
            assert_eq!(r.status, 422, "{n}: {path}: {}", r.body);
            assert!(
                r.body.contains(msg),
                "{n}: {path} without `{msg}`: {}",
                r.body
            );
        }
        assert_eq!(app.store.count_users().await.unwrap(), 1);
        assert!(app.store.api_tokens(admin.id).await.unwrap().is_empty());
        assert!(
            app.store
                .server(server.id)
                .await
                .unwrap()
                .host_key_fingerprint
                .is_none()
        );

        // A job's own page: milestones, error and output; another user's job is "not found" there too.
        let job_id = app.store.jobs_for_server(server.id).await.unwrap()[0].id;
        app.store
            .append_log(
                server.id,
                Some(job_id),
                None,
                brokeforge_store::LogStream::Stdout,
                "hello from the job\n",
            )
            .await
            .unwrap();
        let r = get_page(format!("/jobs/{job_id}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("hello from the job")
                && r.body.contains(&format!("stream?job={job_id}")),
            "{n}"
        );

        // Another user's server is "not found".
        let hash = brokeforge_domain::accounts::hash_password("another long password")
            .await
            .unwrap();
        app.store
            .create_user("eve@example.com", &hash, false)
            .await
            .unwrap();
        let r = page_form(
            &app,
            "/login",
            &[
                ("email", "eve@example.com"),
                ("password", "another long password"),
            ],
        )
        .await;
        let eve = cookie_of(&r);
        for page in [
            format!("/servers/{}", server.id),
            format!("/sites/{}", site.id),
            format!("/deployments/{}", d.id),
            format!("/jobs/{job_id}"),
        ] {
            let r = http(&app.addr, "GET", &page, &[("Cookie", &eve)], "").await;
            assert_eq!(r.status, 404, "{n}: eve saw {page}");
        }
        assert_eq!(
            http(&app.addr, "GET", "/users", &[("Cookie", &eve)], "")
                .await
                .status,
            403
        );
        // Signed out: pages send you to sign in.
        let r = http(
            &app.addr,
            "GET",
            &format!("/servers/{}", server.id),
            &[],
            "",
        )
        .await;
        assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    }
}

/// Login CSRF: a forged sign-in or setup from another site is refused before any password is checked, and a
/// form post without the token its page handed out is refused too; nothing is recorded or created.
#[tokio::test]
async fn forged_sign_ins_are_refused() {
    for app in apps().await {
        let n = app.name;
        let fields = [
            ("email", "admin@example.com"),
            ("password", "a good long password"),
        ];
        for path in ["/setup", "/login"] {
            for (header, value) in [
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Site", "same-site"),
            ] {
                let body = serde_urlencoded::to_string(fields).unwrap();
                let r = http(
                    &app.addr,
                    "POST",
                    path,
                    &[
                        (header, value),
                        ("Content-Type", "application/x-www-form-urlencoded"),
                    ],
                    &body,
                )
                .await;
                assert_eq!(r.status, 403, "{n}: {path} with {header}: {value}");
            }
            // Same site but without the page's token (e.g. a form on a page BrokeForge did not render).
            let r = form(&app, path, "", &fields).await;
            assert_eq!(r.status, 403, "{n}: {path} without a token");
            let r = form(
                &app,
                path,
                "bf_presession=guess",
                &[("_csrf", "other"), fields[0], fields[1]],
            )
            .await;
            assert_eq!(r.status, 403, "{n}: {path} with a wrong token");
        }
        assert_eq!(app.store.count_users().await.unwrap(), 0, "{n}");
        // The JSON API's sign-in from another site is refused the same way.
        let r = http(
            &app.addr,
            "POST",
            "/api/v1/login",
            &[
                ("Origin", "http://evil.example"),
                ("Content-Type", "application/json"),
            ],
            r#"{"email":"admin@example.com","password":"a good long password"}"#,
        )
        .await;
        assert_eq!(r.status, 403, "{n}");
        // The page's own form works.
        let r = page_form(&app, "/setup", &fields).await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        assert_eq!(app.store.count_users().await.unwrap(), 1, "{n}");
    }
}

/// Pages carry a Content-Security-Policy without inline code, and contain none: names a user typed (an email,
/// a domain) reach the page only as text.
#[tokio::test]
async fn pages_have_no_inline_code_and_strict_headers() {
    for app in apps().await {
        let n = app.name;
        let r = page_form(
            &app,
            "/setup",
            &[
                ("email", "admin@example.com"),
                ("password", "a good long password"),
            ],
        )
        .await;
        let cookie = cookie_of(&r);
        // An email with quotes and a script: it must show as text only.
        let evil = "x'+alert(1)+'@example.com";
        let hash = brokeforge_domain::accounts::hash_password("another long password")
            .await
            .unwrap();
        app.store.create_user(evil, &hash, false).await.unwrap();
        for page in ["/", "/users", "/account", "/servers/new"] {
            let r = http(&app.addr, "GET", page, &[("Cookie", &cookie)], "").await;
            assert_eq!(r.status, 200, "{n}: {page}");
            let csp = r.header("content-security-policy").unwrap_or_default();
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
                "{n}: {page}: {csp}"
            );
            assert_eq!(r.header("x-frame-options"), Some("DENY"), "{n}: {page}");
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(r.header("cache-control"), Some("no-store"), "{n}: {page}");
            let lower = r.body.to_ascii_lowercase();
            for inline in [
                " onsubmit=",
                " onclick=",
                " onload=",
                " style=\"",
                "<script>",
            ] {
                assert!(
                    !lower.contains(inline),
                    "{n}: {page} has inline code `{inline}`"
                );
            }
        }
        let users = http(&app.addr, "GET", "/users", &[("Cookie", &cookie)], "").await;
        assert!(
            users
                .body
                .contains("data-confirm=\"Delete x&#39;+alert(1)+&#39;@example.com"),
            "{}",
            users.body
        );
    }
}

/// Changing one's own password through the API needs the current one, and ends everything signed in with the
/// old one: other sessions and every API token (the caller's included).
#[tokio::test]
async fn password_changes_need_the_current_one_and_end_old_credentials() {
    for app in apps().await {
        let n = app.name;
        let token = user(&app, "pat@example.com", false).await;
        let me = token.call(&app, "GET", "/me", None).await.json()["user"]["id"]
            .as_i64()
            .unwrap();
        let session = login(&app, "pat@example.com", "correct horse battery").await;
        assert_eq!(session.status, 200, "{n}");
        let cookie = cookie_of(&session);
        let path = format!("/users/{me}/password");
        for body in [
            json!({"password": "a brand new password"}),
            json!({"password": "a brand new password", "current_password": "wrong guess"}),
        ] {
            let r = token.call(&app, "POST", &path, Some(body)).await;
            assert_eq!(
                (r.status, r.code()),
                (422, "invalid_input".to_string()),
                "{n}"
            );
        }
        // Nothing changed: the old password still signs in, the token still works.
        assert_eq!(
            login(&app, "pat@example.com", "correct horse battery")
                .await
                .status,
            200
        );
        let r = token
            .call(
                &app,
                "POST",
                &path,
                Some(json!({"password": "a brand new password", "current_password": "correct horse battery"})),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert_eq!(
            token.call(&app, "GET", "/me", None).await.status,
            401,
            "{n}: the token lives on"
        );
        let r = http(&app.addr, "GET", "/api/v1/me", &[("Cookie", &cookie)], "").await;
        assert_eq!(r.status, 401, "{n}: the session lives on");
        assert_eq!(
            login(&app, "pat@example.com", "correct horse battery")
                .await
                .status,
            401
        );
        assert_eq!(
            login(&app, "pat@example.com", "a brand new password")
                .await
                .status,
            200
        );
    }
}

#[path = "web/browser.rs"]
mod browser;

#[path = "web/twofactor.rs"]
mod twofactor;

#[path = "web/audit.rs"]
mod audit;

#[path = "web/tokens.rs"]
mod tokens;

/// The one-line script runs as root: BrokeForge hands it out only from an https:// address unless the
/// operator opted in, and then the page says in red that it is unprotected.
#[tokio::test]
async fn the_script_travels_over_https_unless_the_operator_opts_in() {
    let server = json!({"name": "web-1", "public_ip": "203.0.113.7"});
    for app in apps_with(WebConfig::default()).await {
        let n = app.name;
        let me = user(&app, "ops@example.com", false).await;
        let r = me
            .call(&app, "POST", "/servers", Some(server.clone()))
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "public_url", "{n}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("HTTPS") && message.contains("BROKEFORGE_INSECURE_PROVISIONING"),
            "{n}: {message}"
        );
        let owner = app
            .store
            .user_by_email("ops@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(
            app.store
                .servers_for_user(owner.id)
                .await
                .unwrap()
                .is_empty(),
            "{n}: nothing is created"
        );
        // Onboarding with the user's own root key hands out no script: allowed.
        let key = brokeforge_ssh::keys::generate_ed25519("root").unwrap();
        let direct = json!({"name": "web-2", "public_ip": "203.0.113.8",
            "root_key": key.private_openssh.expose(), "trust_on_first_use": true});
        let r = me.call(&app, "POST", "/servers", Some(direct)).await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        // A link taken over plain HTTP answers with a refusal the shell prints.
        let r = http(&app.addr, "GET", "/provision/abcdef", &[], "").await;
        assert_eq!(r.status, 400, "{n}");
        assert!(
            r.body
                .starts_with("echo 'BrokeForge: the one-line script runs as root"),
            "{n}: {}",
            r.body
        );
    }
    // Behind a proxy that terminates TLS, the public URL says https: the script is handed out.
    let config = WebConfig {
        public_url: Some("https://panel.example.com".into()),
        ..WebConfig::default()
    };
    for app in apps_with(config).await {
        let me = user(&app, "ops@example.com", false).await;
        let r = me
            .call(&app, "POST", "/servers", Some(server.clone()))
            .await;
        assert_eq!(r.status, 201, "{}: {}", app.name, r.body);
        let script = r.json()["script"].as_str().unwrap().to_string();
        assert!(
            script.starts_with("curl -fsSL https://panel.example.com/provision/"),
            "{script}"
        );
    }
    // Opted in: handed out over HTTP, with the warning on the page.
    for app in apps().await {
        let n = app.name;
        let fields = [
            ("email", "ops@example.com"),
            ("password", "a good long password"),
        ];
        let r = page_form(&app, "/setup", &fields).await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        let cookie = cookie_of(&r);
        let home = http(&app.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
        let csrf = csrf_in(&home.body);
        let page = form(
            &app,
            "/servers",
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "web-3"),
                ("public_ip", "203.0.113.9"),
            ],
        )
        .await;
        assert_eq!(page.status, 200, "{n}: {}", page.body);
        assert!(page.body.contains("curl -fsSL http://"), "{n}");
        assert!(
            page.body.contains("id=\"insecure-script\""),
            "{n}: no warning"
        );
    }
}

/// Lists are paged: a limit between 1 and 1000 and a cursor; `next` is the query for the following page,
/// null at the end, and walking the pages yields every row once.
#[tokio::test]
async fn lists_are_paged_with_a_limit_and_a_cursor() {
    for app in apps().await {
        let n = app.name;
        let me = user(&app, "pages@example.com", false).await;
        let r = me
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "p", "public_ip": "203.0.113.3"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let id = r.json()["server"]["id"].as_i64().unwrap();
        for step in 1..=25 {
            app.store
                .start_event(&brokeforge_store::NewEvent {
                    server_id: id,
                    job_id: None,
                    attempt: None,
                    service_type: brokeforge_core::ServiceType::Server,
                    provision_type: brokeforge_core::ProvisionType::Install,
                    milestone: format!("m{step}"),
                    label: format!("step {step}"),
                    current_step: step,
                    total_steps: 25,
                    details: json!({}),
                })
                .await
                .unwrap();
        }
        for bad in ["0", "1001", "-5"] {
            let r = me
                .call(
                    &app,
                    "GET",
                    &format!("/servers/{id}/events?limit={bad}"),
                    None,
                )
                .await;
            assert_eq!(r.status, 422, "{n}: limit={bad}");
            assert_eq!(r.json()["error"]["field"], "limit", "{n}");
        }
        let mut seen = Vec::new();
        let mut query = "limit=10".to_string();
        for _ in 0..10 {
            let r = me
                .call(&app, "GET", &format!("/servers/{id}/events?{query}"), None)
                .await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
            let v = r.json();
            let page: Vec<i64> = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["current_step"].as_i64().unwrap())
                .collect();
            assert!(page.len() <= 10, "{n}");
            seen.extend(page);
            match v["next_cursor"].as_str() {
                Some(cursor) => query = format!("cursor={cursor}&limit=10"),
                None => break,
            }
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>(), "{n}");
        // `after`, the name before `cursor`, is read too; a cursor no page gave is refused.
        let r = me
            .call(
                &app,
                "GET",
                &format!("/servers/{id}/events?after=0&limit=30"),
                None,
            )
            .await;
        assert_eq!(r.json()["events"].as_array().unwrap().len(), 25, "{n}");
        assert!(r.json()["next_cursor"].is_null(), "{n}");
        let r = me
            .call(
                &app,
                "GET",
                &format!("/servers/{id}/events?cursor=abc"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "cursor", "{n}");
        // Newest-first lists page with `cursor` too.
        let r = me
            .call(&app, "GET", &format!("/servers/{id}/jobs?limit=1"), None)
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(
            r.json()["next_cursor"].is_null(),
            "{n}: no jobs, no next page"
        );

        // The server list pages too, shows only the caller's servers and finds one by name.
        let other = user(&app, "other-pages@example.com", false).await;
        let r = other
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "theirs", "public_ip": "203.0.113.9"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        for i in 0..4 {
            let r = me
                .call(
                    &app,
                    "POST",
                    "/servers",
                    Some(json!({"name": format!("q{i}"), "public_ip": "203.0.113.4"})),
                )
                .await;
            assert_eq!(r.status, 201, "{n}: {}", r.body);
        }
        let mut names = Vec::new();
        let mut query = "limit=2".to_string();
        for _ in 0..5 {
            let r = me
                .call(&app, "GET", &format!("/servers?{query}"), None)
                .await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
            let v = r.json();
            let page = v["servers"].as_array().unwrap();
            assert!(page.len() <= 2, "{n}: {}", r.body);
            names.extend(
                page.iter()
                    .map(|s| s["server"]["name"].as_str().unwrap().to_string()),
            );
            match v["next_cursor"].as_str() {
                Some(cursor) => query = format!("cursor={cursor}&limit=2"),
                None => break,
            }
        }
        assert_eq!(names, ["p", "q0", "q1", "q2", "q3"], "{n}");
        let r = me.call(&app, "GET", "/servers?name=q2", None).await;
        let v = r.json();
        assert_eq!(v["servers"].as_array().unwrap().len(), 1, "{n}: {}", r.body);
        assert_eq!(v["servers"][0]["server"]["name"], "q2", "{n}");
        let r = me.call(&app, "GET", "/servers?name=theirs", None).await;
        assert!(
            r.json()["servers"].as_array().unwrap().is_empty(),
            "{n}: another user's server by name: {}",
            r.body
        );
        let r = me.call(&app, "GET", "/servers?limit=0", None).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
    }
}

/// With BROKEFORGE_REFUSE_PRIVATE_ADDRESSES, a server at (or resolving to) a private or loopback address is
/// refused with a clear message and nothing is stored; a public one is added.
#[tokio::test]
async fn private_addresses_are_refused_when_the_operator_says_so() {
    let config = WebConfig {
        insecure_provisioning: true,
        refuse_internal_addresses: true,
        ..WebConfig::default()
    };
    for app in apps_with(config).await {
        let n = app.name;
        let me = user(&app, "ops@example.com", false).await;
        for (i, ip) in [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.20",
            "169.254.169.254",
            "::1",
            "localhost",
        ]
        .iter()
        .enumerate()
        {
            let r = me
                .call(
                    &app,
                    "POST",
                    "/servers",
                    Some(json!({"name": format!("s{i}"), "public_ip": ip})),
                )
                .await;
            assert_eq!(r.status, 422, "{n}: {ip}: {}", r.body);
            assert_eq!(r.json()["error"]["field"], "public_ip", "{n}: {ip}");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("private or loopback"),
                "{n}: {ip}: {}",
                r.body
            );
        }
        let owner = app
            .store
            .user_by_email("ops@example.com")
            .await
            .unwrap()
            .unwrap();
        assert!(
            app.store
                .servers_for_user(owner.id)
                .await
                .unwrap()
                .is_empty(),
            "{n}"
        );
        let r = me
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "pub", "public_ip": "203.0.113.7"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
    }
}

/// Backups over the API: storages and plans are checked before anything is stored, secrets are never
/// answered, other users see none of it, a restore over the plan's schema needs the schema's name, the
/// recovery kit holds the repository and its password, and a due schedule queues one run however often it
/// is looked at.
#[tokio::test]
async fn backups_are_validated_owned_and_confirmed() {
    for app in apps().await {
        let n = app.name;
        let me = user(&app, "backups@example.com", false).await;
        let other = user(&app, "intruder@example.com", false).await;
        let r = me
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "db-1", "public_ip": "203.0.113.21"})),
            )
            .await;
        let id = r.json()["server"]["id"].as_i64().unwrap();
        let s3 = |name: &str, endpoint: &str, bucket: &str| {
            json!({"name": name, "kind": "s3", "endpoint": endpoint, "bucket": bucket, "path_style": true,
                   "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cret-key-value"})
        };
        for (body, field) in [
            (s3("x", "s3.example.com", "backups"), "endpoint"),
            (s3("x", "https://s3.example.com", "Bad_Bucket"), "bucket"),
            (s3("Bad Name", "https://s3.example.com", "backups"), "name"),
            (json!({"name": "x", "kind": "ftp"}), "kind"),
            (
                json!({"name": "x", "kind": "sftp", "host": "backup.example.com", "user": "b", "path": "rel"}),
                "path",
            ),
            (
                json!({"name": "x", "kind": "s3", "endpoint": "https://s3.example.com", "bucket": "backups", "access_key_id": "A"}),
                "secret_access_key",
            ),
        ] {
            let r = me.call(&app, "POST", "/backup-storages", Some(body)).await;
            assert_eq!(r.status, 422, "{n}: {}", r.body);
            assert_eq!(r.json()["error"]["field"], field, "{n}: {}", r.body);
        }
        let r = me
            .call(
                &app,
                "POST",
                "/backup-storages",
                Some(s3("offsite", "https://s3.example.com", "backups")),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert!(!r.body.contains("s3cret-key-value"), "{n}: {}", r.body);
        let r = me
            .call(
                &app,
                "POST",
                "/backup-storages",
                Some(s3("offsite", "https://s3.example.com", "backups")),
            )
            .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);
        let r = me
            .call(
                &app,
                "POST",
                "/backup-storages",
                Some(json!({"name": "far", "kind": "sftp",
                "host": "backup.example.com", "user": "backup", "path": "/srv/backups"})),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        assert!(
            r.json()["storage"]["configuration"]["public_key"]
                .as_str()
                .unwrap()
                .starts_with("ssh-ed25519 "),
            "{n}: {}",
            r.body
        );
        assert!(!r.body.contains("PRIVATE KEY"), "{n}");
        // A local storage is a directory on one of the caller's own servers.
        let r = other
            .call(
                &app,
                "POST",
                "/backup-storages",
                Some(json!({"name": "mine", "kind": "local",
                "server_id": id, "path": "/var/backups"})),
            )
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);

        let plan =
            |name: &str, database: &str, storage: &str, schedule: Option<&str>, keep: u32| {
                json!({"name": name, "database": database, "storage": storage, "schedule": schedule,
                   "retention": {"keep_last": keep}})
            };
        for (body, field) in [
            (plan("p", "redis:cache", "offsite", None, 3), "engine"),
            (plan("p", "mariadb:a;b", "offsite", None, 3), "schema"),
            (plan("p", "mariadb:shop", "nowhere", None, 3), "storage"),
            (
                plan("p", "mariadb:shop", "offsite", Some("every day"), 3),
                "schedule",
            ),
            (plan("p", "mariadb:shop", "offsite", None, 0), "keep_last"),
            (plan("P Q", "mariadb:shop", "offsite", None, 3), "name"),
        ] {
            let r = me
                .call(&app, "POST", &format!("/servers/{id}/backups"), Some(body))
                .await;
            assert_eq!(r.status, 422, "{n}: {}", r.body);
            assert_eq!(r.json()["error"]["field"], field, "{n}: {}", r.body);
        }
        let r = me
            .call(
                &app,
                "POST",
                &format!("/servers/{id}/backups"),
                Some(plan(
                    "shop",
                    "mariadb:shop",
                    "offsite",
                    Some("0 3 * * *"),
                    3,
                )),
            )
            .await;
        assert_eq!(r.status, 201, "{n}: {}", r.body);
        let plan_id = r.json()["plan"]["id"].as_i64().unwrap();
        assert!(
            brokeforge_core::time::from_json(&r.json()["plan"]["next_run_at"]).unwrap() > 0,
            "{n}"
        );
        assert!(!r.body.contains("password"), "{n}: {}", r.body);

        // Someone else sees none of it.
        for path in [
            format!("/servers/{id}/backups"),
            format!("/servers/{id}/backups/shop"),
            format!("/servers/{id}/backups/shop/recovery-kit"),
        ] {
            let r = other.call(&app, "GET", &path, None).await;
            assert_eq!(r.status, 404, "{n}: {path}: {}", r.body);
        }
        let r = other
            .call(
                &app,
                "POST",
                &format!("/servers/{id}/backups/shop/run"),
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{n}");
        let r = other.call(&app, "GET", "/backup-storages", None).await;
        assert_eq!(r.json()["storages"], json!([]), "{n}");
        let r = other
            .call(&app, "DELETE", "/backup-storages/offsite", None)
            .await;
        assert_eq!(r.status, 404, "{n}");

        // "Test connection" runs from one of the caller's servers, on one of the caller's storages.
        let r = me
            .call(
                &app,
                "POST",
                &format!("/servers/{id}/backup-storages/offsite/check"),
                None,
            )
            .await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        assert_eq!(r.json()["job"]["kind"], "backup_storage_check", "{n}");
        let r = other
            .call(
                &app,
                "POST",
                &format!("/servers/{id}/backup-storages/offsite/check"),
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);

        // Restores name a snapshot the plan has; over the plan's own schema only with its name.
        let r = me
            .call(
                &app,
                "POST",
                &format!("/servers/{id}/backups/shop/verify"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{n}: no snapshot yet: {}", r.body);
        app.store
            .sync_backup_snapshots(
                plan_id,
                &[brokeforge_store::SeenSnapshot {
                    snapshot_id: "0123456789abcdef".repeat(4),
                    taken_at: 1,
                    job_id: None,
                    size_bytes: Some(10),
                    duration_ms: Some(5),
                }],
            )
            .await
            .unwrap();
        let restore = |body: Value| {
            let me = me.clone();
            let app = &app;
            async move {
                me.call(
                    app,
                    "POST",
                    &format!("/servers/{id}/backups/shop/restore"),
                    Some(body),
                )
                .await
            }
        };
        let r = restore(json!({"snapshot": "fedcba98"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = restore(json!({"snapshot": "01234567; rm -rf /"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = restore(json!({"snapshot": "01234567"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert_eq!(r.json()["error"]["field"], "confirm", "{n}");
        assert!(
            r.body.contains("shop"),
            "{n}: names what is overwritten: {}",
            r.body
        );
        let r = restore(json!({"snapshot": "01234567", "confirm": "other"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = restore(json!({"snapshot": "01234567", "into": "bad-name"})).await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = restore(json!({"snapshot": "01234567", "confirm": "shop"})).await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);
        assert_eq!(r.json()["job"]["kind"], "backup_restore", "{n}");
        let r = restore(json!({"snapshot": "01234567", "into": "shop_copy"})).await;
        assert_eq!(r.status, 202, "{n}: {}", r.body);

        // Downloads name a snapshot of the plan, and only its owner's.
        let r = me
            .call(
                &app,
                "GET",
                &format!("/servers/{id}/backups/shop/snapshots/fedcba98/download"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = other
            .call(
                &app,
                "GET",
                &format!("/servers/{id}/backups/shop/snapshots/01234567/download"),
                None,
            )
            .await;
        assert_eq!(r.status, 404, "{n}: {}", r.body);
        let r = me
            .call(
                &app,
                "GET",
                &format!("/servers/{id}/backups/shop/recovery-kit"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        let password = app.store.backup_plan_password(plan_id).await.unwrap();
        assert!(r.body.contains(password.expose()), "{n}: {}", r.body);
        assert!(
            r.body.contains(&format!(
                "s3:https://s3.example.com/backups/brokeforge-{id}-shop"
            )),
            "{n}: {}",
            r.body
        );
        assert!(!r.body.contains("s3cret-key-value"), "{n}");
        assert_eq!(r.header("Cache-Control"), Some("no-store"), "{n}");

        // The page: plans with their snapshots and forms; a bad form comes back with its message; restoring
        // over the schema without typing its name is refused there too.
        let r = login(&app, "backups@example.com", "correct horse battery").await;
        let Auth::Session { cookie, csrf } = session_of(&r) else {
            unreachable!()
        };
        let page = http(
            &app.addr,
            "GET",
            &format!("/servers/{id}/backups"),
            &[("Cookie", &cookie)],
            "",
        )
        .await;
        assert_eq!(page.status, 200, "{n}: {}", page.body);
        assert!(
            page.body.contains("mariadb schema shop")
                && page.body.contains("01234567")
                && page.body.contains("Download recovery kit")
                && page.body.contains("0 3 * * * (UTC)"),
            "{n}: {}",
            page.body
        );
        let r = form(
            &app,
            &format!("/servers/{id}/backups"),
            &cookie,
            &[
                ("_csrf", &csrf),
                ("name", "nightly"),
                ("database", "mariadb:shop"),
                ("storage", "offsite"),
                ("schedule", "whenever"),
            ],
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(r.body.contains("is not a schedule"), "{n}: {}", r.body);
        let r = form(
            &app,
            &format!("/servers/{id}/backups/shop/restore"),
            &cookie,
            &[("_csrf", &csrf), ("snapshot", "01234567"), ("confirm", "")],
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        let r = form(
            &app,
            &format!("/servers/{id}/backups/shop/run"),
            &cookie,
            &[("_csrf", &csrf)],
        )
        .await;
        assert_eq!(r.status, 303, "{n}: {}", r.body);
        assert!(
            r.header("location")
                .unwrap_or_default()
                .starts_with("/jobs/"),
            "{n}: {:?}",
            r.headers
        );

        // A storage in use stays.
        let r = me
            .call(&app, "DELETE", "/backup-storages/offsite", None)
            .await;
        assert_eq!(r.status, 409, "{n}: {}", r.body);

        // A due plan is queued once, however many nodes look.
        let plan_row = app.store.backup_plan(plan_id).await.unwrap();
        assert!(
            app.store
                .advance_backup_plan(plan_id, false, plan_row.next_run_at.unwrap(), Some(1))
                .await
                .unwrap()
        );
        let domain = brokeforge_domain::Domain::new(app.store.clone());
        let (a, b) = tokio::join!(domain.queue_due_backups(), domain.queue_due_backups());
        assert_eq!(a.unwrap() + b.unwrap(), 1, "{n}");
        assert_eq!(domain.queue_due_backups().await.unwrap(), 0, "{n}");
        let after = app.store.backup_plan(plan_id).await.unwrap();
        assert!(
            after.next_run_at.unwrap() > brokeforge_core::time::now_ms(),
            "{n}: {after:?}"
        );
    }
}

/// Firewall rules and logs: a bad rule or log request is refused with the field it concerns before anything
/// runs or is queued; another user's server answers 404 for all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_and_log_requests_are_checked_before_anything_runs() {
    for app in apps().await {
        let n = app.name;
        let alice = user(&app, "alice@example.com", false).await;
        let bob = user(&app, "bob@example.com", false).await;
        let made = alice
            .call(
                &app,
                "POST",
                "/servers",
                Some(json!({"name": "web-1", "public_ip": "203.0.113.10"})),
            )
            .await;
        let id = made.json()["server"]["id"].as_i64().unwrap();
        let fw = format!("/servers/{id}/firewall");
        for (body, field) in [
            (json!({"name": "app", "port": "0"}), "port"),
            (json!({"name": "app", "port": "22; ufw disable"}), "port"),
            (json!({"name": "app", "port": "9000-8000"}), "port"),
            (
                json!({"name": "app", "port": "8000-8100", "protocol": "any"}),
                "protocol",
            ),
            (
                json!({"name": "app", "port": "80", "source": "10.0.0.0/40"}),
                "source",
            ),
            (
                json!({"name": "app", "port": "80", "source": "$(reboot)"}),
                "source",
            ),
            (json!({"name": "x'; reboot", "port": "80"}), "name"),
            (json!({"port": "80"}), "name"),
            (
                json!({"name": "app", "port": "80", "action": "reject"}),
                "action",
            ),
            // A deny rule on the SSH port would lock BrokeForge out.
            (
                json!({"name": "no ssh", "port": "20-30", "action": "deny"}),
                "port",
            ),
        ] {
            let r = alice.call(&app, "POST", &fw, Some(body.clone())).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (422, "invalid_input"),
                "{n}: {body}: {}",
                r.body
            );
            assert_eq!(r.json()["error"]["field"], field, "{body}: {}", r.body);
        }
        let logs = |q: &str| format!("/servers/{id}/logs?{q}");
        for (q, field) in [
            ("kind=auth", "kind"),
            ("kind=unit", "unit"),
            ("kind=unit&unit=systemd-logind", "unit"),
            ("kind=unit&unit=ssh%3B%20reboot", "unit"),
            ("kind=nginx-access&site=nope.example.com", "site"),
            ("kind=nginx-access&lines=0", "lines"),
            ("kind=nginx-access&lines=10001", "lines"),
            ("kind=nginx-access&since=2000&until=1000", "until"),
            ("kind=nginx-access&follow=true&until=1000", "until"),
            ("kind=php-fpm", "kind"),
            ("kind=nginx-access&unit=nginx", "unit"),
        ] {
            let r = alice.call(&app, "GET", &logs(q), None).await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (422, "invalid_input"),
                "{n}: {q}: {}",
                r.body
            );
            assert_eq!(r.json()["error"]["field"], field, "{q}: {}", r.body);
        }
        // Nothing was queued for the server.
        let jobs = alice
            .call(&app, "GET", &format!("/servers/{id}/jobs"), None)
            .await;
        assert_eq!(jobs.json()["jobs"], json!([]), "{}", jobs.body);

        for (method, path, body) in [
            ("GET", fw.clone(), None),
            (
                "POST",
                fw.clone(),
                Some(json!({"name": "app", "port": "80"})),
            ),
            ("DELETE", format!("{fw}/abcd1234"), None),
            ("GET", logs("kind=nginx-access"), None),
        ] {
            let r = bob.call(&app, method, &path, body).await;
            assert_eq!(r.status, 404, "{n}: bob {method} {path}: {}", r.body);
        }

        // The logs page: the form, and a bad request shown with its message.
        let cookie = cookie_of(&login(&app, "alice@example.com", "correct horse battery").await);
        let addr = app.addr.clone();
        let page = |path: String, cookie: String| {
            let addr = addr.clone();
            async move { http(&addr, "GET", &path, &[("Cookie", &cookie)], "").await }
        };
        let r = page(format!("/servers/{id}/logs"), cookie.clone()).await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
        assert!(r.body.contains("Follow live") && r.body.contains("<option>ssh</option>"));
        let r = page(
            format!("/servers/{id}/logs?kind=unit&unit=systemd-logind"),
            cookie.clone(),
        )
        .await;
        assert_eq!(r.status, 422, "{n}: {}", r.body);
        assert!(
            r.body.contains("not a unit BrokeForge manages"),
            "{}",
            r.body
        );
        let bob_cookie = cookie_of(&login(&app, "bob@example.com", "correct horse battery").await);
        for path in [
            format!("/servers/{id}/logs"),
            format!("/servers/{id}/firewall"),
        ] {
            let r = page(path.clone(), bob_cookie.clone()).await;
            assert_eq!(r.status, 404, "{n}: bob read {path}");
        }
    }
}

#[path = "web/authz.rs"]
mod authz;

#[path = "web/teams.rs"]
mod teams;

#[path = "../../test-receiver.rs"]
mod receiver;

#[path = "web/monitoring.rs"]
mod monitoring;

#[path = "web/sites.rs"]
mod sites;

#[path = "web/recipes.rs"]
mod recipes;

#[path = "web/drift.rs"]
mod drift;

#[path = "web/dashboard.rs"]
mod dashboard;

#[path = "web/idempotency.rs"]
mod idempotency;
